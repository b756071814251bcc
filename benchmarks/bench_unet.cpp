// U-Net speed against its limits (issue 4, "Speed"; docs/performance.md §3):
//
//   sgemm          Eigen float GEMM, C[M×N] = A[M×K]·B[K×N], on a square 1024³ and on the shape of the
//                  U-Net's largest convolution (M = 64 output channels, K = 192·9, N = 16·32·32): the
//                  peak the U-Net's GFLOP/s are measured against, in this run
//   unet_forward   the forward pass (inference, no cache), images/s and GEMM GFLOP/s
//   unet_train     one training step: forward with cache, backward of the MSE against a fixed target,
//                  Adam update; images/s, GFLOP/s, and the peak bytes of tensor storage during the
//                  step above what was held before it (core/memory_space.hpp host_memory_usage: the
//                  weights, gradients and Adam moments are held before; activations, caches and
//                  temporaries are the peak)
// Configs (documented in docs/performance.md):
//   small   UNet2DModel 32×32×3, block_out_channels (64, 128, 128), layers_per_block 2,
//           DownBlock2D / AttnDownBlock2D ×2 (attention at 16×16 and 8×8), 11 class embeddings,
//           attention_head_dim 32 (4 heads of 32)
//   cross   UNet2DConditionModel 16×16×4, block_out_channels (64, 128, 128), layers_per_block 2,
//           CrossAttnDownBlock2D ×2 + DownBlock2D, cross_attention_dim 64, 4 heads, 8 context tokens
// Arguments {batch, threads}. GFLOP counts only matrix products (nn::count_flops): the work an SGEMM
// peak bounds. `--save_dir=DIR` (ours) writes each config's config.json + weights, the inputs and our
// forward output to DIR/<config>/ for the PyTorch twin (benchmarks/torch_unet.py).
//
//   build/openmp/benchmarks/bench_unet --benchmark_counters_tabular=true
//   bash benchmarks/compare_torch_unet.sh      (this + PyTorch, one table)

#include <diffuse/backend/host_threads.hpp>
#include <diffuse/io/safetensors.hpp>
#include <diffuse/nn/detail/flops.hpp>
#include <diffuse/nn/init.hpp>
#include <diffuse/nn/optim/adam.hpp>
#include <diffuse/nn/unet2d.hpp>
#include <diffuse/nn/unet_io.hpp>

#include "unet_configs.hpp"

#include <benchmark/benchmark.h>

#include <Eigen/Core>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

using namespace diffuse;
using namespace diffuse::nn;

namespace {

std::string g_save_dir;

struct setup {
    unet_config config;
    std::string name;
    std::int64_t size, channels;
};

setup config_of(int which) {
    if (which == 0) return {bench::small_config(), "small", 32, 3};
    return {bench::cross_config(), "cross", 16, 4};
}

// deterministic inputs: x ~ N(0, 1), t spread over [0, 999], labels b mod 11, 8 context tokens
struct inputs {
    host_tensor<float> x, context, target;
    unet_inputs<float> in;
};

inputs make_inputs(const setup& s, std::int64_t B) {
    inputs r;
    r.x = host_tensor<float>({B, s.channels, s.size, s.size});
    r.target = host_tensor<float>({B, s.channels, s.size, s.size});
    for (std::int64_t i = 0; i < r.x.numel(); ++i) {
        r.x.data()[i] = static_cast<float>(philox_normal(7, 0, static_cast<std::uint64_t>(i)));
        r.target.data()[i] = static_cast<float>(philox_normal(7, 1, static_cast<std::uint64_t>(i)));
    }
    for (std::int64_t b = 0; b < B; ++b) r.in.timesteps.push_back(static_cast<double>((b * 997 + 13) % 1000));
    if (s.config.kind == unet_kind::unet2d) {
        for (std::int64_t b = 0; b < B; ++b) r.in.class_labels.push_back(b % 11);
    } else {
        r.context = host_tensor<float>({B, 8, s.config.cross_attention_dim});
        for (std::int64_t i = 0; i < r.context.numel(); ++i)
            r.context.data()[i] = static_cast<float>(philox_normal(7, 2, static_cast<std::uint64_t>(i)));
        r.in.encoder_hidden_states = r.context.cview();
    }
    return r;
}

void set_threads(benchmark::State& state, int arg) {
    set_host_thread_count(static_cast<int>(state.range(arg)));
    Eigen::setNbThreads(static_cast<int>(state.range(arg)));
    state.counters["threads"] = static_cast<double>(host_thread_count());
}

void BM_sgemm(benchmark::State& state) {
    set_threads(state, 3);
    const auto M = state.range(0), K = state.range(1), N = state.range(2);
    Eigen::MatrixXf A = Eigen::MatrixXf::Random(M, K), Bm = Eigen::MatrixXf::Random(K, N), C(M, N);
    for (auto _ : state) {
        C.noalias() = A * Bm;
        benchmark::DoNotOptimize(C.data());
    }
    state.counters["GFLOP/s"] =
        benchmark::Counter(2.0 * M * N * K, benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
}

void BM_unet_forward(benchmark::State& state) {
    const setup s = config_of(static_cast<int>(state.range(0)));
    const std::int64_t B = state.range(1);
    set_threads(state, 2);
    unet2d<float> net(s.config);
    init_parameters<float>(net, 1);
    inputs in = make_inputs(s, B);
    host_tensor<float> y;
    const double flops = count_flops([&] { y = net.forward(in.x.cview(), in.in); });
    if (!g_save_dir.empty() && B == 16) {
        const std::string dir = g_save_dir + "/" + s.name;
        save_unet(net, dir);
        io::safetensors_file f("inputs");
        f.add("sample", in.x.cview());
        f.add("output", y.cview());
        f.add("target", in.target.cview());
        host_tensor<double> t({B});
        for (std::int64_t b = 0; b < B; ++b) t.data()[b] = in.in.timesteps[b];
        f.add("timestep", t.cview());
        if (!in.in.class_labels.empty()) {
            host_tensor<std::int64_t> l({B});
            for (std::int64_t b = 0; b < B; ++b) l.data()[b] = in.in.class_labels[b];
            f.add("class_labels", l.cview());
        }
        if (in.in.encoder_hidden_states) f.add("encoder_hidden_states", in.context.cview());
        f.write(dir + "/inputs.safetensors");
    }
    for (auto _ : state) {
        y = net.forward(in.x.cview(), in.in);
        benchmark::DoNotOptimize(y.data());
    }
    state.SetLabel(s.name);
    state.SetItemsProcessed(state.iterations() * B);
    state.counters["GFLOP/s"] =
        benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
    state.counters["GFLOP"] = flops / 1e9;
}

void BM_unet_train(benchmark::State& state) {
    const setup s = config_of(static_cast<int>(state.range(0)));
    const std::int64_t B = state.range(1);
    set_threads(state, 2);
    unet2d<float> net(s.config);
    init_parameters<float>(net, 1);
    inputs in = make_inputs(s, B);
    adam<float> opt(net.parameters(), adam_options{1e-4});
    auto step = [&] {
        opt.zero_grad();
        unet2d<float>::cache c;
        host_tensor<float> y = net.forward(in.x.cview(), in.in, &c);
        // L = mean (y − target)²: dL/dy = 2 (y − target) / n
        const float k = 2.0f / static_cast<float>(y.numel());
        for (std::int64_t i = 0; i < y.numel(); ++i) y.data()[i] = k * (y.data()[i] - in.target.data()[i]);
        net.backward(y.cview(), c);
        opt.step();
    };
    const std::int64_t before = host_memory_usage().current_bytes;
    reset_host_memory_peak();
    const double flops = count_flops(step);
    const double peak_mb = static_cast<double>(host_memory_usage().peak_bytes - before) / 1e6;
    const double held_mb = static_cast<double>(before) / 1e6;
    for (auto _ : state) step();
    state.SetLabel(s.name);
    state.SetItemsProcessed(state.iterations() * B);
    state.counters["GFLOP/s"] =
        benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
    state.counters["GFLOP"] = flops / 1e9;
    state.counters["peak_MB"] = peak_mb;
    state.counters["held_MB"] = held_mb;
}

}  // namespace

BENCHMARK(BM_sgemm)->Args({1024, 1024, 1024, 1})->Args({1024, 1024, 1024, 2})->Args({64, 1728, 16384, 2})
    ->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_unet_forward)
    ->ArgsProduct({{0, 1}, {1, 16, 64}, {2}})
    ->Args({0, 16, 1})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_unet_train)
    ->ArgsProduct({{0, 1}, {1, 16, 64}, {2}})
    ->Args({0, 16, 1})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

int main(int argc, char** argv) {
    std::vector<char*> args;
    for (int i = 0; i < argc; ++i) {
        if (std::strncmp(argv[i], "--save_dir=", 11) == 0)
            g_save_dir = argv[i] + 11;
        else
            args.push_back(argv[i]);
    }
    int n = static_cast<int>(args.size());
    benchmark::Initialize(&n, args.data());
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
