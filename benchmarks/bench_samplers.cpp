// Sampler speed against its limits (issue 3, "Speed"; docs/performance.md §2):
//
//   triad            a = b + s·c, the STREAM triad on the same loop machinery (reads 2n, writes n):
//                    the memory-bandwidth ceiling a sampler step is measured against, in this run
//   dpmpp_2m_step    one DPM-Solver++(2M) step (dpm_solver_multistep_sampler, midpoint) on a
//                    64×4×64×64 float state. Bytes counted are the ones it moves: the new x0
//                    estimate E = dx·x + dm·m into the history (reads 2n, writes n), then
//                    x' = c·x + w0·E + w1·E_prev (reads 3n, writes n): 7n floats per step.
//                    `min_GB/s` counts only the 5n floats a step must touch (x, m, E_prev read;
//                    x, E written), i.e. the rate a perfectly fused kernel would need.
//   mixture_sampling 1,000,000 2-D points from an 8-component Gaussian mixture with the exact
//                    denoiser and DPM-Solver++(2M), 20 steps on Karras σ (80 → 0.002, then 0),
//                    float64. benchmarks/compare_torch.sh runs the same computation in PyTorch
//                    (benchmarks/torch_mixture_sampling.py) and prints the ratio.
//
// Arguments: {elements or points, threads}. Run:
//   build/openmp/benchmarks/bench_samplers --benchmark_counters_tabular=true
// `--dump_dir=DIR` (ours, removed before Google Benchmark sees argv) first writes the mixture,
// σ levels, x_T and our sample to DIR as .npy for the PyTorch twin.
#include <diffuse/analytic/gaussian_mixture.hpp>
#include <diffuse/backend/backend.hpp>
#include <diffuse/io/npy.hpp>
#include <diffuse/models/exact.hpp>
#include <diffuse/samplers/dpm_solver_multistep.hpp>
#include <diffuse/samplers/sampler.hpp>
#include <diffuse/schedules/sigmas.hpp>

#include <benchmark/benchmark.h>

#include <Eigen/Dense>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <numbers>
#include <string>
#include <vector>

using namespace diffuse;

namespace {

void set_threads(benchmark::State& state) {
    set_host_thread_count(static_cast<int>(state.range(1)));
    state.counters["threads"] = static_cast<double>(host_thread_count());
}

void BM_triad(benchmark::State& state) {
    set_threads(state);
    const std::int64_t n = state.range(0);
    tensor<float, host_space> a(shape{n}, 0.0f), b(shape{n}, 1.0f), c(shape{n}, 2.0f);
    struct op {
        float* a;
        const float* b;
        const float* c;
        float s;
        void operator()(std::int64_t i) const { a[i] = b[i] + s * c[i]; }
    };
    for (auto _ : state) {
        for_each<host_space>(n, op{a.data(), b.data(), c.data(), 0.5f});
        benchmark::DoNotOptimize(a.data());
        benchmark::ClobberMemory();
    }
    state.SetBytesProcessed(state.iterations() * n * 3 * static_cast<std::int64_t>(sizeof(float)));
}

/// 1000 log-uniform σ levels: the benchmark cycles through them, so every step is a full
/// second-order step with history (the first step of each pass is first order: 1 in 999).
samplers::dpm_solver_multistep_sampler make_2m() {
    samplers::dpm_multistep_config cfg;
    cfg.order = 2;
    cfg.lower_order_final = false;
    cfg.prediction = process::prediction_type::epsilon;
    return samplers::dpm_solver_multistep_sampler(
        samplers::level_sequence::vp(schedules::exponential_sigmas(1000, 0.01, 80.0)), cfg);
}

void BM_dpmpp_2m_step(benchmark::State& state) {
    set_threads(state);
    const shape sh{64, 4, 64, 64};
    tensor<float, host_space> x(sh), m(sh);
    philox_rng rng(1);
    randn(x, rng);
    randn(m, rng);
    auto s = make_2m();
    std::size_t i = 0;
    for (auto _ : state) {
        s.step(m.cview(), i, x.view(), rng);
        if (++i == s.num_steps()) {
            state.PauseTiming();
            i = 0;
            s.set_begin_index(0);
            state.ResumeTiming();
        }
        benchmark::DoNotOptimize(x.data());
        benchmark::ClobberMemory();
    }
    const std::int64_t n = sh.numel();
    state.SetBytesProcessed(state.iterations() * n * 7 * static_cast<std::int64_t>(sizeof(float)));
    state.counters["min_GB/s"] = benchmark::Counter(static_cast<double>(n) * 5 * sizeof(float) * 1e-9,
                                                    benchmark::Counter::kIsIterationInvariantRate);
}

/// The benchmark mixture: 8 components on a circle of radius 4, anisotropic covariances
/// rotated with the component's angle, unequal weights.
analytic::gaussian_mixture bench_mixture() {
    std::vector<double> w;
    std::vector<Eigen::VectorXd> means;
    std::vector<Eigen::MatrixXd> covs;
    for (int k = 0; k < 8; ++k) {
        const double th = 2.0 * std::numbers::pi * k / 8.0;
        Eigen::Vector2d mu(4.0 * std::cos(th), 4.0 * std::sin(th));
        Eigen::Matrix2d r;
        r << std::cos(th), -std::sin(th), std::sin(th), std::cos(th);
        const Eigen::Matrix2d d = Eigen::Vector2d(0.5, 0.05).asDiagonal();
        means.push_back(mu);
        covs.push_back(r * d * r.transpose());
        w.push_back(1.0 + 0.25 * k);
    }
    double total = 0;
    for (double v : w) total += v;
    for (double& v : w) v /= total;
    return analytic::gaussian_mixture(w, means, covs);
}

std::vector<double> bench_sigmas() {
    return schedules::karras_sigmas(20, 0.002, 80.0, 7.0, schedules::final_sigma::zero);
}

/// x_T = σ_0·z for n points, then 20 DPM-Solver++(2M) steps (k-diffusion's sample_dpmpp_2m).
void run_mixture(const models::exact_mixture_denoiser& model, tensor<double, host_space>& x) {
    samplers::dpm_multistep_config cfg;
    cfg.order = 2;
    cfg.prediction = process::prediction_type::sample;
    samplers::dpm_solver_multistep_sampler s(samplers::level_sequence::ve(bench_sigmas()), cfg);
    philox_rng rng(0);
    samplers::sample(model, s, x, rng);
}

tensor<double, host_space> mixture_start(std::int64_t n) {
    tensor<double, host_space> x(shape{n, 2});
    philox_rng rng(2024);
    randn(x, rng);
    lincomb(x, bench_sigmas().front(), x);
    return x;
}

void BM_mixture_sampling(benchmark::State& state) {
    set_threads(state);
    const models::exact_mixture_denoiser model(bench_mixture(), process::prediction_type::sample);
    const tensor<double, host_space> start = mixture_start(state.range(0));
    for (auto _ : state) {
        state.PauseTiming();
        tensor<double, host_space> x = start;
        state.ResumeTiming();
        run_mixture(model, x);
        benchmark::DoNotOptimize(x.data());
    }
    state.SetItemsProcessed(state.iterations() * state.range(0));
}

void dump(const std::string& dir) {
    std::filesystem::create_directories(dir);
    const analytic::gaussian_mixture mix = bench_mixture();
    const int K = 8;
    tensor<double, host_space> w(shape{K}), mu(shape{K, 2}), cov(shape{K, 2, 2});
    for (int k = 0; k < K; ++k) {
        const auto& g = mix.component(k);
        w.data()[k] = mix.weights()[static_cast<std::size_t>(k)];
        for (int i = 0; i < 2; ++i) {
            mu.data()[2 * k + i] = g.mean()(i);
            for (int j = 0; j < 2; ++j) cov.data()[4 * k + 2 * i + j] = g.cov()(i, j);
        }
    }
    const auto sig = bench_sigmas();
    tensor<double, host_space> sigmas(shape{static_cast<std::int64_t>(sig.size())});
    std::copy(sig.begin(), sig.end(), sigmas.data());
    tensor<double, host_space> x = mixture_start(1'000'000);
    io::save_npy(dir + "/mixture_weights.npy", w);
    io::save_npy(dir + "/mixture_means.npy", mu);
    io::save_npy(dir + "/mixture_covs.npy", cov);
    io::save_npy(dir + "/sigmas.npy", sigmas);
    io::save_npy(dir + "/x_T.npy", x);
    run_mixture(models::exact_mixture_denoiser(mix, process::prediction_type::sample), x);
    io::save_npy(dir + "/x_0.npy", x);
    std::cout << "wrote the mixture, sigmas, x_T and x_0 to " << dir << "\n";
}

}  // namespace

BENCHMARK(BM_triad)->Args({64 * 4 * 64 * 64, 1})->Args({64 * 4 * 64 * 64, 2})->UseRealTime();
BENCHMARK(BM_dpmpp_2m_step)->Args({64 * 4 * 64 * 64, 1})->Args({64 * 4 * 64 * 64, 2})->UseRealTime();
BENCHMARK(BM_mixture_sampling)
    ->Args({1'000'000, 1})
    ->Args({1'000'000, 2})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond)
    ->Iterations(2);

int main(int argc, char** argv) {
    std::vector<char*> rest;
    for (int i = 0; i < argc; ++i) {
        if (std::strncmp(argv[i], "--dump_dir=", 11) == 0)
            dump(argv[i] + 11);
        else
            rest.push_back(argv[i]);
    }
    int n = static_cast<int>(rest.size());
    benchmark::Initialize(&n, rest.data());
    if (benchmark::ReportUnrecognizedArguments(n, rest.data())) return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
