#pragma once
// Host tensors <-> xtensor (DESIGN.md, "Eigen and xtensor stay on the host"). This is the only
// header of the library that includes xtensor: xtensor 0.24, as the distributions ship it, uses
// flat include paths (<xtensor/xarray.hpp>), so keeping it in one place keeps a future move to
// 0.25+ (<xtensor/containers/xarray.hpp>) a one-file change.
//
//   to_xarray(view)          copy of a host tensor (any rank 0–5) into an xt::xarray<T>, same shape
//   from_xarray(expr)        copy of any xtensor expression into a tensor<T, host_space>, row-major;
//                            rank above 5 throws diffuse::error
//   as_xtensor_view(view)    non-owning xt::adapt over the tensor's memory with its shape: no copy,
//                            writes through (a view of const T gives a read-only adaptor)
//
// Only host_space tensors are accepted (a device tensor must be copied with to_host() first).

#include <diffuse/core/error.hpp>
#include <diffuse/core/memory_space.hpp>
#include <diffuse/core/shape.hpp>
#include <diffuse/core/tensor.hpp>

#include <xtensor/xadapt.hpp>
#include <xtensor/xarray.hpp>
#include <xtensor/xexpression.hpp>
#include <xtensor/xlayout.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <string>
#include <type_traits>
#include <vector>

namespace diffuse {

namespace detail {

inline std::vector<std::size_t> xt_shape_of(const diffuse::shape& s) {
    std::vector<std::size_t> out(static_cast<std::size_t>(s.rank()));
    for (int i = 0; i < s.rank(); ++i) out[static_cast<std::size_t>(i)] = static_cast<std::size_t>(s[i]);
    return out;
}

}  // namespace detail

/// Copies a host tensor into a new row-major xt::xarray with the same shape.
template <class T>
xt::xarray<std::remove_const_t<T>> to_xarray(tensor_view<T, host_space> v) {
    using V = std::remove_const_t<T>;
    xt::xarray<V> out = xt::xarray<V>::from_shape(detail::xt_shape_of(v.shape()));
    std::copy(v.data(), v.data() + v.numel(), out.data());
    return out;
}
template <class T>
xt::xarray<T> to_xarray(const tensor<T, host_space>& t) {
    return to_xarray(t.cview());
}

/// Evaluates an xtensor expression (xarray, xtensor, views, lazy expressions, any layout) and
/// copies it, in row-major order, into a host tensor. Throws diffuse::error for rank > 5.
template <class E>
auto from_xarray(const xt::xexpression<E>& expr) {
    using V = std::decay_t<typename E::value_type>;
    static_assert(std::is_arithmetic_v<V>, "from_xarray: tensor elements are arithmetic");
    const E& e = expr.derived_cast();
    const auto& sh = e.shape();
    const std::size_t rank = static_cast<std::size_t>(std::distance(std::begin(sh), std::end(sh)));
    if (rank > static_cast<std::size_t>(max_rank)) {
        std::string dims = "[";
        for (auto it = std::begin(sh); it != std::end(sh); ++it)
            dims += (it == std::begin(sh) ? "" : ", ") + std::to_string(*it);
        fail("from_xarray: expression of shape " + dims + "] has rank " + std::to_string(rank) +
             "; expected rank at most " + std::to_string(max_rank) + " (diffuse tensors are rank 0-5)");
    }
    const xt::xarray<V, xt::layout_type::row_major> rm = e;  // evaluates and reorders to row-major
    tensor<V, host_space> out(diffuse::shape::from_range(rm.shape().begin(), rm.shape().end()));
    std::copy(rm.data(), rm.data() + rm.size(), out.data());
    return out;
}

/// A non-owning xtensor adaptor over a host tensor's memory, with the tensor's shape
/// (row-major). No copy: writes through the adaptor change the tensor. The tensor must outlive it.
template <class T>
auto as_xtensor_view(tensor_view<T, host_space> v) {
    return xt::adapt(v.data(), static_cast<std::size_t>(v.numel()), xt::no_ownership(),
                     detail::xt_shape_of(v.shape()));
}
template <class T>
auto as_xtensor_view(tensor<T, host_space>& t) {
    return as_xtensor_view(t.view());
}
template <class T>
auto as_xtensor_view(const tensor<T, host_space>& t) {
    return as_xtensor_view(t.cview());
}

}  // namespace diffuse
