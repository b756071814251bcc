#pragma once
// A process-wide counter of the floating-point operations the nn/ layers perform in their matrix
// products (2 per multiply-add: linear, conv2d, attention scores and mixing; forward and backward).
// Element-wise work (norms, activations) is not counted, so GFLOP/s figures are GEMM work per
// second — the quantity an SGEMM peak bounds. Benchmarks read it with nn::count_flops(f).

#include <atomic>
#include <cstdint>

namespace diffuse::nn::detail {

inline std::atomic<std::uint64_t>& flop_counter() {
    static std::atomic<std::uint64_t> counter{0};
    return counter;
}

/// Adds 2·m·n·k (one m×k by k×n product).
inline void add_gemm_flops(std::int64_t m, std::int64_t n, std::int64_t k) {
    flop_counter().fetch_add(static_cast<std::uint64_t>(2 * m * n * k), std::memory_order_relaxed);
}

}  // namespace diffuse::nn::detail

namespace diffuse::nn {

/// The GEMM floating-point operations performed by f() (nn/ layers only).
template <class F>
double count_flops(F&& f) {
    const std::uint64_t before = detail::flop_counter().load();
    f();
    return static_cast<double>(detail::flop_counter().load() - before);
}

}  // namespace diffuse::nn
