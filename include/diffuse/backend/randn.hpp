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

template <class T>
struct randn_op {
    T* out;
    std::uint64_t seed;
    std::uint64_t stream;
    std::uint64_t first;
    DIFFUSE_HOST_DEVICE void operator()(std::int64_t i) const {
        out[i] = static_cast<T>(philox_normal(seed, stream, first + static_cast<std::uint64_t>(i)));
    }
};

}  // namespace detail

template <class T, class S>
void randn(tensor_view<T, S> out, philox_rng& rng) {
    static_assert(std::is_floating_point_v<T>, "randn fills float or double tensors");
    const std::uint64_t first = rng.reserve_normals(static_cast<std::uint64_t>(out.numel()));
    for_each<S>(out.numel(), detail::randn_op<T>{out.data(), rng.seed(), rng.stream(), first});
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
