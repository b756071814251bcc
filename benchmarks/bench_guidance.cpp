// What guidance costs (issue 5; docs/performance.md §4):
//
//   combine_*      the combination formulas of guidance/combine.hpp on c, u [16, 4, 64, 64] float (1 MiB per
//                  item pair half: 4 MiB per tensor), in GB/s of the bytes each must read and write once —
//                  cfg 3 tensors, rescale 3 (+2 reads for the statistics), cfg_zero_star 3 (+2 reads), apg 3
//                  (+3 reads: Δ, norms and the projection) — next to `lincomb2`, the backend's out = a·x + b·y
//                  on the same tensors: the memory-bandwidth limit a one-pass formula can reach.
//   cfg_unet       one guided U-Net evaluation (the small UNet2DModel of bench_unet, class labels + null
//                  label) at batch B: `batched` = one 2B call, `separate` = two B calls; images/s of guided
//                  outputs. The combination itself is < 1 % of it.
// Arguments: {batch} for cfg_unet. Threads: the OpenMP default (OMP_NUM_THREADS).
//
//   build/openmp/benchmarks/bench_guidance --benchmark_counters_tabular=true

#include <diffuse/backend/lincomb.hpp>
#include <diffuse/core/philox.hpp>
#include <diffuse/guidance/guidance.hpp>
#include <diffuse/models/unet_denoiser.hpp>
#include <diffuse/nn/init.hpp>
#include <diffuse/nn/unet2d.hpp>

#include "unet_configs.hpp"

#include <benchmark/benchmark.h>

#include <cstdint>
#include <vector>

using namespace diffuse;
using host = tensor<float, host_space>;

namespace {

const shape big{16, 4, 64, 64};

host filled(std::uint64_t seed) {
    host t(big);
    philox_rng rng(seed);
    rng.fill_normal(t.data(), static_cast<std::size_t>(t.numel()));
    return t;
}

void set_bytes(benchmark::State& state, double tensors) {
    const double bytes = tensors * static_cast<double>(big.numel()) * sizeof(float);
    state.counters["GB/s"] = benchmark::Counter(bytes * static_cast<double>(state.iterations()) / 1e9,
                                                benchmark::Counter::kIsRate);
}

void lincomb2(benchmark::State& state) {
    const host c = filled(1), u = filled(2);
    host out(big);
    for (auto _ : state) {
        lincomb(out.view(), 3.0, c.cview(), -2.0, u.cview());
        benchmark::ClobberMemory();
    }
    set_bytes(state, 3);
}

void combine_cfg(benchmark::State& state) {
    const host c = filled(1), u = filled(2);
    host out(big);
    for (auto _ : state) {
        guidance::cfg_combine(out.view(), c.cview(), u.cview(), 3.0, guidance::cfg_formula::diffusers);
        benchmark::ClobberMemory();
    }
    set_bytes(state, 3);
}

void combine_rescale(benchmark::State& state) {
    const host c = filled(1), u = filled(2);
    host out(big);
    for (auto _ : state) {
        guidance::cfg_combine(out.view(), c.cview(), u.cview(), 3.0, guidance::cfg_formula::diffusers);
        guidance::rescale_guidance(out.view(), c.cview(), 0.7);
        benchmark::ClobberMemory();
    }
    set_bytes(state, 3);
}

void combine_cfg_zero_star(benchmark::State& state) {
    const host c = filled(1), u = filled(2);
    host out(big);
    for (auto _ : state) {
        guidance::cfg_zero_star_combine(out.view(), c.cview(), u.cview(), 3.0, guidance::cfg_formula::diffusers);
        benchmark::ClobberMemory();
    }
    set_bytes(state, 3);
}

void combine_apg(benchmark::State& state) {
    const host c = filled(1), u = filled(2);
    host out(big);
    const guidance::apg_options o{.eta = 0.0, .norm_threshold = 15.0, .momentum = -0.5};
    guidance::apg_state<float, host_space> st;
    for (auto _ : state) {
        guidance::apg_combine(out.view(), c.cview(), u.cview(), 3.0, guidance::cfg_formula::diffusers, o, &st);
        benchmark::ClobberMemory();
    }
    set_bytes(state, 3);
}

void cfg_unet(benchmark::State& state, bool batched) {
    const std::int64_t b = state.range(0);
    nn::unet2d<float> net(bench::small_config());  // 10 classes + the null label 10
    nn::init_parameters<float>(net, 1);
    const models::unet_denoiser<float> model(net);
    const auto guided = guidance::cfg(models::by_ref(model), {.weight = 4.0, .batched = batched});
    host x(shape{b, 3, 32, 32}), out(shape{b, 3, 32, 32});
    philox_rng rng(3);
    rng.fill_normal(x.data(), static_cast<std::size_t>(x.numel()));
    std::vector<int> labels(static_cast<std::size_t>(b));
    for (std::int64_t i = 0; i < b; ++i) labels[static_cast<std::size_t>(i)] = static_cast<int>(i % 10);
    const std::vector<int> nulls = guidance::null_labels(b, net.config().null_class_label());
    const guidance::cfg_condition<models::class_labels> cond{labels, nulls};
    const models::noise_condition level = models::noise_condition::vp(0.5, 500.0);
    for (auto _ : state) {
        guided(out.view(), x.cview(), level, cond);
        benchmark::ClobberMemory();
    }
    state.counters["img/s"] = benchmark::Counter(static_cast<double>(b * state.iterations()), benchmark::Counter::kIsRate);
}

}  // namespace

BENCHMARK(lincomb2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(combine_cfg)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(combine_rescale)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(combine_cfg_zero_star)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(combine_apg)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(cfg_unet, batched, true)->Arg(1)->Arg(8)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(cfg_unet, separate, false)->Arg(1)->Arg(8)->Unit(benchmark::kMillisecond)->UseRealTime();

BENCHMARK_MAIN();
