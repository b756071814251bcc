#pragma once
// Philox4x32-10 counter-based random numbers (Salmon et al. 2011, "Parallel random numbers:
// as easy as 1, 2, 3", SC'11), and the normal and uniform draws built on it.
//
// Counter-based means: the n-th number of a stream is a pure function of (seed, stream, n).
// No state is carried between elements, so serial loops, any number of OpenMP threads and
// CUDA threads produce the same numbers (DESIGN.md, "Counter-based randomness").
//
// Layout (docs/random.md):
//   key     = (seed_lo, seed_hi)                      — 64-bit seed
//   counter = (j_lo, j_hi, stream_lo, stream_hi|kind) — j = pair index, 63-bit stream, kind bit
//   kind    = 0 for normal draws, 1 (bit 31 of the last word) for uniform draws.
// Normal draw n of (seed, stream) is component n % 2 of the Box–Muller pair j = n / 2, computed
// in double from the 4 words of philox(counter(j), key):
//   u1 = (((w0 << 32 | w1) >> 11) + 0.5) · 2^-53  ∈ (0, 1)
//   u2 =  ((w2 << 32 | w3) >> 11)        · 2^-53  ∈ [0, 1)
//   z0 = √(−2 ln u1) · cos(2π u2),   z1 = √(−2 ln u1) · sin(2π u2)
// Uniform draw n is component n % 2 of pair j = n / 2: u = ((w_{2c} << 32 | w_{2c+1}) >> 11) · 2^-53.
// float tensors receive the double draw rounded to float, so float and double runs see the
// same noise up to rounding.

#include <diffuse/core/config.hpp>
#include <diffuse/core/error.hpp>

#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>

namespace diffuse {

/// One 128-bit Philox block: 4 words of counter, 2 words of key.
struct philox_block {
    std::uint32_t v[4];
};

namespace detail {

inline constexpr std::uint32_t philox_m0 = 0xD2511F53u;  // round multipliers
inline constexpr std::uint32_t philox_m1 = 0xCD9E8D57u;
inline constexpr std::uint32_t philox_w0 = 0x9E3779B9u;  // key schedule (Weyl) increments
inline constexpr std::uint32_t philox_w1 = 0xBB67AE85u;

DIFFUSE_HOST_DEVICE inline void mulhilo32(std::uint32_t a, std::uint32_t b, std::uint32_t& hi,
                                          std::uint32_t& lo) {
    const std::uint64_t p = static_cast<std::uint64_t>(a) * b;
    hi = static_cast<std::uint32_t>(p >> 32);
    lo = static_cast<std::uint32_t>(p);
}

}  // namespace detail

/// Philox4x32 with R rounds: out = bijection_key(counter). R = 10 is the standard strength.
template <int Rounds = 10>
DIFFUSE_HOST_DEVICE inline philox_block philox4x32(philox_block ctr, std::uint32_t k0,
                                                   std::uint32_t k1) {
    for (int r = 0; r < Rounds; ++r) {
        if (r > 0) {  // key bump before every round but the first
            k0 += detail::philox_w0;
            k1 += detail::philox_w1;
        }
        std::uint32_t hi0, lo0, hi1, lo1;
        detail::mulhilo32(detail::philox_m0, ctr.v[0], hi0, lo0);
        detail::mulhilo32(detail::philox_m1, ctr.v[2], hi1, lo1);
        ctr = philox_block{{hi1 ^ ctr.v[1] ^ k0, lo1, hi0 ^ ctr.v[3] ^ k1, lo0}};
    }
    return ctr;
}

namespace detail {

inline constexpr std::uint32_t uniform_kind_bit = 0x80000000u;
inline constexpr double two_pi = 6.283185307179586476925286766559;
inline constexpr double two_m53 = 1.1102230246251565404236316680908203125e-16;  // 2^-53

/// The Philox block for pair j of (seed, stream) and draw kind.
DIFFUSE_HOST_DEVICE inline philox_block philox_pair_block(std::uint64_t seed, std::uint64_t stream,
                                                          std::uint64_t j, std::uint32_t kind) {
    const philox_block ctr{{static_cast<std::uint32_t>(j), static_cast<std::uint32_t>(j >> 32),
                            static_cast<std::uint32_t>(stream),
                            static_cast<std::uint32_t>(stream >> 32) | kind}};
    return philox4x32<10>(ctr, static_cast<std::uint32_t>(seed),
                          static_cast<std::uint32_t>(seed >> 32));
}

DIFFUSE_HOST_DEVICE inline std::uint64_t top53(std::uint32_t hi, std::uint32_t lo) {
    return ((static_cast<std::uint64_t>(hi) << 32) | lo) >> 11;
}

}  // namespace detail

/// Normal draws 2j and 2j + 1 of (seed, stream): one Philox block, one Box–Muller pair.
DIFFUSE_HOST_DEVICE inline void philox_normal_pair(std::uint64_t seed, std::uint64_t stream,
                                                   std::uint64_t j, double& z0, double& z1) {
    const philox_block w = detail::philox_pair_block(seed, stream, j, 0u);
    const double u1 = (static_cast<double>(detail::top53(w.v[0], w.v[1])) + 0.5) * detail::two_m53;
    const double u2 = static_cast<double>(detail::top53(w.v[2], w.v[3])) * detail::two_m53;
    const double r = sqrt(-2.0 * log(u1));
    const double theta = detail::two_pi * u2;
    z0 = r * cos(theta);
    z1 = r * sin(theta);
}

/// Normal draw n of (seed, stream), exactly as documented above. Callable on host and device.
DIFFUSE_HOST_DEVICE inline double philox_normal(std::uint64_t seed, std::uint64_t stream,
                                                std::uint64_t n) {
    double z0, z1;
    philox_normal_pair(seed, stream, n >> 1, z0, z1);
    return (n & 1u) ? z1 : z0;
}

/// Uniform draw n of (seed, stream) in [0, 1), 53 random bits.
DIFFUSE_HOST_DEVICE inline double philox_uniform(std::uint64_t seed, std::uint64_t stream,
                                                 std::uint64_t n) {
    const philox_block w = detail::philox_pair_block(seed, stream, n >> 1, detail::uniform_kind_bit);
    const std::uint64_t bits = (n & 1u) ? detail::top53(w.v[2], w.v[3]) : detail::top53(w.v[0], w.v[1]);
    return static_cast<double>(bits) * detail::two_m53;
}

/// Largest stream number: the top bit of the counter's last word is the draw kind.
inline constexpr std::uint64_t philox_max_stream = (std::uint64_t{1} << 63) - 1;

/// A (seed, stream) pair with two running offsets, one for normal and one for uniform draws.
/// Each draw advances its offset, so successive fills never reuse numbers, and a fill of n
/// numbers at offset k gives the same values as n single draws starting at k.
class philox_rng {
public:
    explicit philox_rng(std::uint64_t seed, std::uint64_t stream = 0) : seed_(seed), stream_(stream) {
        require(stream <= philox_max_stream, "stream", stream, "at most 2^63 - 1");
    }

    std::uint64_t seed() const { return seed_; }
    std::uint64_t stream() const { return stream_; }
    std::uint64_t normal_offset() const { return normal_offset_; }
    std::uint64_t uniform_offset() const { return uniform_offset_; }

    /// Moves the normal offset (e.g. to restore a saved state or skip ahead).
    void set_normal_offset(std::uint64_t offset) { normal_offset_ = offset; }
    void set_uniform_offset(std::uint64_t offset) { uniform_offset_ = offset; }

    /// Reserves n normal draws and returns the offset of the first (used by tensor fills).
    std::uint64_t reserve_normals(std::uint64_t n) {
        const std::uint64_t first = normal_offset_;
        normal_offset_ += n;
        return first;
    }

    double normal() { return philox_normal(seed_, stream_, normal_offset_++); }
    double uniform() { return philox_uniform(seed_, stream_, uniform_offset_++); }

    /// Fills out[0..n) with consecutive normal draws (host memory).
    template <class T>
    void fill_normal(T* out, std::size_t n) {
        const std::uint64_t first = reserve_normals(n);
        for (std::size_t i = 0; i < n; ++i)
            out[i] = static_cast<T>(philox_normal(seed_, stream_, first + i));
    }

    /// Fills out[0..n) with consecutive uniform draws in [0, 1) (host memory).
    template <class T>
    void fill_uniform(T* out, std::size_t n) {
        for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<T>(uniform());
    }

    /// An independent generator: same seed, another stream.
    philox_rng split(std::uint64_t stream) const { return philox_rng(seed_, stream); }

private:
    std::uint64_t seed_;
    std::uint64_t stream_;
    std::uint64_t normal_offset_ = 0;
    std::uint64_t uniform_offset_ = 0;
};

}  // namespace diffuse
