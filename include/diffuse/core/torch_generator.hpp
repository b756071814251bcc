#pragma once
// A port of PyTorch's CPU generator for `torch.manual_seed(seed); torch.randn(n)` (float32 and
// float64, contiguous tensors), so that tests can reproduce seeded oracles of peers that draw
// their noise with a CPU torch.Generator (diffusers' scheduler tests; docs/random.md).
//
// What torch does (ATen CPUGeneratorImpl.cpp, core/DistributionsHelper.h,
// core/TransformationHelper.h, native/cpu/DistributionTemplates.h):
//
//   engine       mt19937 seeded with the low 32 bits of the seed (the standard initialisation
//                state[0] = seed, state[j] = 1812433253·(state[j−1] ^ (state[j−1] >> 30)) + j;
//                identical to std::mt19937); manual_seed also drops the cached normal.
//   random()     one 32-bit engine output;  random64() = (first << 32) | second.
//   uniform<float>   (random()   & (2^24 − 1))·2^−24  in float
//   uniform<double>  (random64() & (2^53 − 1))·2^−53  in double
//   randn(n), n >= 16 (normal_fill):
//                fill all n entries with uniform<T>; then for each full block of 16 at
//                offset k = 0, 16, ...: for j < 8, u1 = 1 − d[k+j], u2 = d[k+j+8],
//                r = √(−2 log u1), θ = 2π·u2 (2π·u2 formed in double, rounded to T),
//                d[k+j] = r·cos θ, d[k+j+8] = r·sin θ (all in T). If n % 16 != 0 the LAST 16
//                entries d[n−16 .. n−1] are refilled with 16 fresh uniforms and transformed
//                again (so n + 16 uniforms are drawn, and the tail overwrites part of the
//                last full block).
//   randn(n), n < 16: element by element from normal_distribution<double> (whatever the
//                dtype): if the generator holds a cached normal, return it (and drop it);
//                else u1, u2 = uniform<double>, r = √(−2·log1p(−u2)), θ = 2π·u1, cache
//                r·sin θ, return r·cos θ. The cached value survives across randn calls (a
//                large randn in between neither uses nor clears it).
//
// Parity. float64: the same operations in the same order, so values agree with torch to the
// last bit wherever libm's log/log1p/cos/sin agree (glibc is correctly rounded in practice).
// float32 with n >= 16: torch builds dispatched to AVX2 use a vectorised path
// (normal_fill_16_AVX2 with avx_mathfun's log256_ps/sincos256_ps, θ = float(2π)·u2 in float);
// this port implements the scalar normal_fill, which agrees with the AVX2 results to a few
// float ulps (tests/core/test_torch_generator.cpp states the measured difference).

#include <diffuse/core/error.hpp>
#include <diffuse/core/memory_space.hpp>
#include <diffuse/core/tensor.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <random>
#include <type_traits>

namespace diffuse {

/// The state of a CPU torch.Generator after manual_seed(seed), and torch.randn on it.
class torch_cpu_generator {
public:
    /// torch.manual_seed(seed) (only the low 32 bits reach mt19937, as in torch).
    explicit torch_cpu_generator(std::uint64_t seed) { manual_seed(seed); }

    /// Re-seeds: the engine restarts and the cached normal is dropped.
    void manual_seed(std::uint64_t seed) {
        seed_ = seed;
        engine_.seed(static_cast<std::uint32_t>(seed & 0xffffffffu));
        cached_normal_.reset();
    }

    std::uint64_t initial_seed() const { return seed_; }

    /// One 32-bit engine output (torch's random()).
    std::uint32_t random() { return static_cast<std::uint32_t>(engine_()); }

    /// Two engine outputs, the first in the high word (torch's random64()).
    std::uint64_t random64() {
        const std::uint64_t hi = random();
        const std::uint64_t lo = random();
        return (hi << 32) | lo;
    }

    /// uniform_real_distribution<float>(0, 1): 24 low bits of one output.
    float uniform_float() { return static_cast<float>(random() & 0xffffffu) * (1.0f / 16777216.0f); }

    /// uniform_real_distribution<double>(0, 1): 53 low bits of random64().
    double uniform_double() {
        return static_cast<double>(random64() & ((std::uint64_t{1} << 53) - 1)) * (1.0 / 9007199254740992.0);
    }

    /// normal_distribution<double>(0, 1): one value, using and refilling the cached normal.
    double normal_double() {
        if (cached_normal_) {
            const double v = *cached_normal_;
            cached_normal_.reset();
            return v;
        }
        const double u1 = uniform_double();
        const double u2 = uniform_double();
        const double r = std::sqrt(-2.0 * std::log1p(-u2));
        const double theta = 2.0 * pi * u1;
        cached_normal_ = r * std::sin(theta);
        return r * std::cos(theta);
    }

    /// torch.randn(n, dtype=torch.float32, generator=g) into out[0 .. n).
    void randn(float* out, std::size_t n) { fill(out, n); }

    /// torch.randn(n, dtype=torch.float64, generator=g) into out[0 .. n).
    void randn(double* out, std::size_t n) { fill(out, n); }

    /// torch.randn(x.shape, dtype, generator=g) into a contiguous host tensor (row-major, as
    /// torch fills a contiguous tensor).
    template <class T>
    void randn(tensor_view<T, host_space> x) {
        static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                      "torch_cpu_generator.randn fills float or double tensors");
        fill(x.data(), static_cast<std::size_t>(x.numel()));
    }

    template <class T>
    void randn(tensor<T, host_space>& x) {
        randn(x.view());
    }

    /// Whether a normal is cached (the second value of the last n < 16 Box–Muller pair).
    bool has_cached_normal() const { return cached_normal_.has_value(); }

private:
    static constexpr double pi = 3.14159265358979323846;

    template <class T>
    T uniform() {
        if constexpr (std::is_same_v<T, double>)
            return uniform_double();
        else
            return uniform_float();
    }

    /// normal_fill_16: 8 Box–Muller pairs from d[0..7] (u1 = 1 − d) and d[8..15].
    template <class T>
    static void fill16(T* d) {
        for (int j = 0; j < 8; ++j) {
            const T u1 = T(1) - d[j];
            const T u2 = d[j + 8];
            const T radius = std::sqrt(T(-2) * std::log(u1));
            const T theta = static_cast<T>(2.0 * pi * static_cast<double>(u2));
            d[j] = radius * std::cos(theta);
            d[j + 8] = radius * std::sin(theta);
        }
    }

    template <class T>
    void fill(T* out, std::size_t n) {
        if (n == 0) return;
        require(out != nullptr, "out", "nullptr", "a buffer of n values");
        if (n < 16) {
            for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<T>(normal_double());
            return;
        }
        for (std::size_t i = 0; i < n; ++i) out[i] = uniform<T>();
        for (std::size_t k = 0; k + 16 <= n; k += 16) fill16(out + k);
        if (n % 16 != 0) {
            T* tail = out + (n - 16);
            for (int i = 0; i < 16; ++i) tail[i] = uniform<T>();
            fill16(tail);
        }
    }

    std::mt19937 engine_;
    std::optional<double> cached_normal_;
    std::uint64_t seed_ = 0;
};

}  // namespace diffuse
