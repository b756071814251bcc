#pragma once
// Internals of process/: the tensor arguments of process/ functions may be owning tensors or
// views. These helpers turn either into the view the backend primitives take:
//   as_input(x)  -> tensor_view<const T, S>   (from tensor<T, S> const& or tensor_view<[const] T, S>)
//   as_output(x) -> tensor_view<T, S>         (from tensor<T, S>& or tensor_view<T, S>)
// and the concepts input_tensor / output_tensor that constrain the public templates, so a
// philox_rng argument is never mistaken for a noise tensor.

#include <diffuse/core/tensor.hpp>

#include <type_traits>

namespace diffuse::process::detail {

template <class T, class S>
tensor_view<const T, S> as_input(const tensor<T, S>& x) {
    return x.cview();
}
template <class T, class S>
tensor_view<const std::remove_const_t<T>, S> as_input(const tensor_view<T, S>& x) {
    return tensor_view<const std::remove_const_t<T>, S>(x.data(), x.shape());
}

template <class T, class S>
tensor_view<T, S> as_output(tensor<T, S>& x) {
    return x.view();
}
template <class T, class S>
    requires(!std::is_const_v<T>)
tensor_view<T, S> as_output(const tensor_view<T, S>& x) {
    return x;
}

/// A tensor<T, S> or tensor_view<T, S> (T possibly const) to read from.
template <class X>
concept input_tensor = requires(const std::remove_cvref_t<X>& x) { detail::as_input(x); };

/// A tensor<T, S>& or tensor_view<T, S> (T not const) to write to.
template <class X>
concept output_tensor = requires(X& x) { detail::as_output(x); };

/// The element type and the memory space of a tensor argument.
template <class X>
using value_t = typename decltype(detail::as_input(std::declval<const std::remove_cvref_t<X>&>()))::value_type;
template <class X>
using space_t = typename decltype(detail::as_input(std::declval<const std::remove_cvref_t<X>&>()))::space;

/// True when every tensor argument has the same element type and memory space.
template <class X, class... Y>
inline constexpr bool same_tensor_kind =
    ((std::is_same_v<value_t<X>, value_t<Y>> && std::is_same_v<space_t<X>, space_t<Y>>) && ...);

}  // namespace diffuse::process::detail
