#pragma once
// lincomb(out, c0, x0, c1, x1, ...): out = Σ_k c_k · x_k for 1 to 4 inputs, element-wise.
// Every sampler step is one call (DESIGN.md, "Samplers are coefficient tables"): the
// coefficients c_k are computed on the host in double and applied in T.
// out may be one of the inputs (x = a·x + b·eps is allowed): element i is read before it is
// written. All tensors must have the same shape and live in the same memory space.

#include <diffuse/backend/for_each.hpp>
#include <diffuse/core/error.hpp>
#include <diffuse/core/tensor.hpp>

#include <cmath>
#include <cstdint>
#include <string>
#include <utility>

namespace diffuse {

namespace detail {

/// The element-wise functor: out[i] = Σ_k c[k] · x[k][i], accumulated in T.
template <class T, int N>
struct lincomb_op {
    T* out;
    const T* x[N];
    T c[N];
    DIFFUSE_HOST_DEVICE void operator()(std::int64_t i) const {
        T acc = c[0] * x[0][i];
        for (int k = 1; k < N; ++k) acc += c[k] * x[k][i];
        out[i] = acc;
    }
};

template <class T, int N>
void check_lincomb_args(const shape& out, const shape (&xs)[N], const double (&cs)[N]) {
    for (int k = 0; k < N; ++k) {
        std::string name = "c";
        name += std::to_string(k);
        require(std::isfinite(cs[k]), name, cs[k], "a finite coefficient");
        if (xs[k] != out)
            fail("shape mismatch: out has shape " + out.str() + " but x" + std::to_string(k) +
                 " has shape " + xs[k].str() + "; expected equal shapes");
    }
}

template <class T, class S, int N>
lincomb_op<T, N> make_lincomb_op(tensor_view<T, S> out, const tensor_view<const T, S> (&xs)[N],
                                 const double (&cs)[N]) {
    shape shapes[N];
    for (int k = 0; k < N; ++k) shapes[k] = xs[k].shape();
    check_lincomb_args<T, N>(out.shape(), shapes, cs);
    lincomb_op<T, N> op{};
    op.out = out.data();
    for (int k = 0; k < N; ++k) {
        op.x[k] = xs[k].data();
        op.c[k] = static_cast<T>(cs[k]);
    }
    return op;
}

}  // namespace detail

template <class T, class S>
void lincomb(tensor_view<T, S> out, double c0, tensor_view<const T, S> x0) {
    const tensor_view<const T, S> xs[] = {x0};
    const double cs[] = {c0};
    for_each<S>(out.numel(), detail::make_lincomb_op<T, S, 1>(out, xs, cs));
}

template <class T, class S>
void lincomb(tensor_view<T, S> out, double c0, tensor_view<const T, S> x0, double c1,
             tensor_view<const T, S> x1) {
    const tensor_view<const T, S> xs[] = {x0, x1};
    const double cs[] = {c0, c1};
    for_each<S>(out.numel(), detail::make_lincomb_op<T, S, 2>(out, xs, cs));
}

template <class T, class S>
void lincomb(tensor_view<T, S> out, double c0, tensor_view<const T, S> x0, double c1,
             tensor_view<const T, S> x1, double c2, tensor_view<const T, S> x2) {
    const tensor_view<const T, S> xs[] = {x0, x1, x2};
    const double cs[] = {c0, c1, c2};
    for_each<S>(out.numel(), detail::make_lincomb_op<T, S, 3>(out, xs, cs));
}

template <class T, class S>
void lincomb(tensor_view<T, S> out, double c0, tensor_view<const T, S> x0, double c1,
             tensor_view<const T, S> x1, double c2, tensor_view<const T, S> x2, double c3,
             tensor_view<const T, S> x3) {
    const tensor_view<const T, S> xs[] = {x0, x1, x2, x3};
    const double cs[] = {c0, c1, c2, c3};
    for_each<S>(out.numel(), detail::make_lincomb_op<T, S, 4>(out, xs, cs));
}

namespace detail {
// Helpers for the owning-tensor form below.
template <class T, class S>
void lincomb_tensors(tensor_view<T, S> out, double c0, const tensor<T, S>& x0) {
    lincomb<T, S>(out, c0, x0.cview());
}
template <class T, class S>
void lincomb_tensors(tensor_view<T, S> out, double c0, const tensor<T, S>& x0, double c1,
                     const tensor<T, S>& x1) {
    lincomb<T, S>(out, c0, x0.cview(), c1, x1.cview());
}
template <class T, class S>
void lincomb_tensors(tensor_view<T, S> out, double c0, const tensor<T, S>& x0, double c1,
                     const tensor<T, S>& x1, double c2, const tensor<T, S>& x2) {
    lincomb<T, S>(out, c0, x0.cview(), c1, x1.cview(), c2, x2.cview());
}
template <class T, class S>
void lincomb_tensors(tensor_view<T, S> out, double c0, const tensor<T, S>& x0, double c1,
                     const tensor<T, S>& x1, double c2, const tensor<T, S>& x2, double c3,
                     const tensor<T, S>& x3) {
    lincomb<T, S>(out, c0, x0.cview(), c1, x1.cview(), c2, x2.cview(), c3, x3.cview());
}

}  // namespace detail

/// Owning-tensor form: lincomb(out, c0, x0, c1, x1, ...) with tensor<T, S> arguments.
template <class T, class S, class... Rest>
void lincomb(tensor<T, S>& out, double c0, const tensor<T, S>& x0, Rest&&... rest) {
    detail::lincomb_tensors(out.view(), c0, x0, std::forward<Rest>(rest)...);
}

}  // namespace diffuse
