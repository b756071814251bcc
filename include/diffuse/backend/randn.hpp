#pragma once
// randn(out, rng): fills out with standard normal draws from the Philox stream of rng
// (core/philox.hpp). Element i receives normal number rng.normal_offset() + i of
// (seed, stream), and the offset advances by out.numel(). The values depend only on
// (seed, stream, offset, i): serial, OpenMP with any thread count and CUDA agree.

#include <diffuse/backend/for_each.hpp>
#include <diffuse/core/philox.hpp>
#include <diffuse/core/tensor.hpp>

#include <cstdint>

namespace diffuse {

namespace detail {

/// One Box–Muller pair per call: pair k covers normal numbers 2(j0 + k) and 2(j0 + k) + 1,
/// written to out[2(j0 + k) − first] and the next element when they fall inside [0, n).
/// (One Philox block and one log per two numbers; elements stay independent of the split.)
template <class T>
struct randn_pair_op {
    T* out;
    std::uint64_t seed;
    std::uint64_t stream;
    std::uint64_t first;  // normal number of out[0]
    std::uint64_t n;      // elements of out
    DIFFUSE_HOST_DEVICE void operator()(std::int64_t k) const {
        const std::uint64_t j = (first >> 1) + static_cast<std::uint64_t>(k);
        double z0, z1;
        philox_normal_pair(seed, stream, j, z0, z1);
        const std::uint64_t n0 = 2 * j;  // normal number of z0
        if (n0 >= first && n0 - first < n) out[n0 - first] = static_cast<T>(z0);
        if (n0 + 1 >= first && n0 + 1 - first < n) out[n0 + 1 - first] = static_cast<T>(z1);
    }
};

}  // namespace detail

template <class T, class S>
void randn(tensor_view<T, S> out, philox_rng& rng) {
    static_assert(std::is_floating_point_v<T>, "randn fills float or double tensors");
    const auto n = static_cast<std::uint64_t>(out.numel());
    const std::uint64_t first = rng.reserve_normals(n);
    if (n == 0) return;
    const std::uint64_t pairs = ((first + n - 1) >> 1) - (first >> 1) + 1;
    for_each<S>(static_cast<std::int64_t>(pairs), detail::randn_pair_op<T>{out.data(), rng.seed(), rng.stream(), first, n});
}

template <class T, class S>
void randn(tensor<T, S>& out, philox_rng& rng) {
    randn(out.view(), rng);
}

/// A new tensor of the given shape filled with normal draws.
template <class T, class S = default_space>
tensor<T, S> randn(shape s, philox_rng& rng) {
    tensor<T, S> t(s);
    randn(t.view(), rng);
    return t;
}

}  // namespace diffuse
