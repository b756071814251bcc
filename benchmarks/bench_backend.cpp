// Backend primitives against the memory-bandwidth limit on the same data:
//   copy      — a plain std::copy loop: the practical bandwidth ceiling (reads n, writes n)
//   lincomb_k — out = Σ_{k} c_k x_k: reads k·n, writes n elements
//   randn     — Philox normal draws: writes n (compute bound: 10 Philox rounds + log/sin/cos
//               per pair of numbers)
// Bytes counted are the bytes the operation must move (reads + writes), so GB/s for lincomb is
// directly comparable with copy's. Arguments: {elements, threads}. Run:
//   build/openmp/benchmarks/bench_backend --benchmark_counters_tabular=true
#include <diffuse/backend/backend.hpp>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>

using namespace diffuse;

namespace {

tensor<float, host_space> filled(std::int64_t n, float v) { return tensor<float, host_space>(shape{n}, v); }

void set_threads(benchmark::State& state) {
    set_host_thread_count(static_cast<int>(state.range(1)));
    state.counters["threads"] = static_cast<double>(host_thread_count());
}

void BM_copy(benchmark::State& state) {
    set_threads(state);
    const std::int64_t n = state.range(0);
    auto x = filled(n, 1.0f), out = filled(n, 0.0f);
    for (auto _ : state) {
        // the same parallel loop machinery as lincomb, with no arithmetic
        struct op {
            float* o;
            const float* x;
            void operator()(std::int64_t i) const { o[i] = x[i]; }
        };
        for_each<host_space>(n, op{out.data(), x.data()});
        benchmark::DoNotOptimize(out.data());
        benchmark::ClobberMemory();
    }
    state.SetBytesProcessed(state.iterations() * n * 2 * static_cast<std::int64_t>(sizeof(float)));
}

template <int K>
void BM_lincomb(benchmark::State& state) {
    set_threads(state);
    const std::int64_t n = state.range(0);
    auto x0 = filled(n, 1.0f), x1 = filled(n, 2.0f), x2 = filled(n, 3.0f), x3 = filled(n, 4.0f), out = filled(n, 0.0f);
    for (auto _ : state) {
        if constexpr (K == 1) lincomb(out, 0.5, x0);
        if constexpr (K == 2) lincomb(out, 0.5, x0, 0.25, x1);
        if constexpr (K == 3) lincomb(out, 0.5, x0, 0.25, x1, 0.125, x2);
        if constexpr (K == 4) lincomb(out, 0.5, x0, 0.25, x1, 0.125, x2, 0.0625, x3);
        benchmark::DoNotOptimize(out.data());
        benchmark::ClobberMemory();
    }
    state.SetBytesProcessed(state.iterations() * n * (K + 1) * static_cast<std::int64_t>(sizeof(float)));
}

void BM_randn(benchmark::State& state) {
    set_threads(state);
    const std::int64_t n = state.range(0);
    auto out = filled(n, 0.0f);
    philox_rng rng(1);
    for (auto _ : state) {
        randn(out, rng);
        benchmark::DoNotOptimize(out.data());
        benchmark::ClobberMemory();
    }
    state.SetBytesProcessed(state.iterations() * n * static_cast<std::int64_t>(sizeof(float)));
    state.SetItemsProcessed(state.iterations() * n);
}

// 2^16 floats (256 KiB: in cache) and 2^24 floats (64 MiB: main memory); 1 and 2 threads.
void sizes(benchmark::internal::Benchmark* b) {
    for (std::int64_t n : {std::int64_t{1} << 16, std::int64_t{1} << 24})
        for (int t : {1, 2}) b->Args({n, t});
    b->UseRealTime();
}

}  // namespace

BENCHMARK(BM_copy)->Apply(sizes);
BENCHMARK(BM_lincomb<1>)->Apply(sizes);
BENCHMARK(BM_lincomb<2>)->Apply(sizes);
BENCHMARK(BM_lincomb<3>)->Apply(sizes);
BENCHMARK(BM_lincomb<4>)->Apply(sizes);
BENCHMARK(BM_randn)->Apply(sizes);

BENCHMARK_MAIN();
