#pragma once
// Element-wise activations with their derivatives (no parameters).
//
//   silu(x)  = x·σ(x),  σ(x) = 1/(1 + e^{−x})            silu'(x) = σ(x)·(1 + x·(1 − σ(x)))
//   gelu(x)  = x·Φ(x) = ½x(1 + erf(x/√2))                 gelu'(x) = Φ(x) + x·φ(x),  φ(x) = e^{−x²/2}/√(2π)
//   gelu_tanh(x) = ½x(1 + tanh u),  u = √(2/π)(x + 0.044715x³)
//                                     gelu_tanh'(x) = ½(1 + tanh u) + ½x(1 − tanh²u)·√(2/π)(1 + 3·0.044715x²)
// torch names: SiLU, GELU(approximate="none"), GELU(approximate="tanh"). Backward overwrites dx
// with dy ⊙ f'(x); the cache keeps x.

#include <diffuse/nn/detail/parallel.hpp>
#include <diffuse/nn/layer.hpp>

#include <Eigen/Core>
#include <unsupported/Eigen/SpecialFunctions>

#include <cmath>
#include <cstdint>
#include <string>

namespace diffuse::nn {

/// Which activation (diffusers' act_fn names: "silu", "gelu", "gelu_tanh").
enum class activation_kind { silu, gelu, gelu_tanh };

namespace detail {

/// y = f(x) over n contiguous elements, vectorised with Eigen's packet math (exp, erf, tanh are
/// Eigen's, within a few ulp of libm; results do not depend on how a range is split into blocks of
/// whole multiples of the SIMD width, which is how the layers call it).
template <class T>
void activation_block(activation_kind k, const T* x, T* y, std::int64_t n) {
    Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>> X(x, n);
    Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>> Y(y, n);
    switch (k) {
        case activation_kind::silu: Y = X / (T(1) + (-X).exp()); break;
        case activation_kind::gelu: Y = T(0.5) * X * (T(1) + (X * T(0.70710678118654752440)).erf()); break;
        case activation_kind::gelu_tanh:
            Y = T(0.5) * X * (T(1) + (T(0.79788456080286535588) * (X + T(0.044715) * X.cube())).tanh());
            break;
    }
}

/// dx = dy ⊙ f'(x) over n contiguous elements (the derivatives in the header comment).
template <class T>
void activation_backward_block(activation_kind k, const T* x, const T* dy, T* dx, std::int64_t n) {
    Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>> X(x, n), D(dy, n);
    Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>> G(dx, n);
    switch (k) {
        case activation_kind::silu: {
            const Eigen::Array<T, Eigen::Dynamic, 1> s = T(1) / (T(1) + (-X).exp());
            G = D * s * (T(1) + X * (T(1) - s));
            break;
        }
        case activation_kind::gelu:
            G = D * (T(0.5) * (T(1) + (X * T(0.70710678118654752440)).erf()) +
                     X * T(0.39894228040143267794) * (T(-0.5) * X.square()).exp());
            break;
        case activation_kind::gelu_tanh: {
            const T c = T(0.79788456080286535588);
            const Eigen::Array<T, Eigen::Dynamic, 1> th = (c * (X + T(0.044715) * X.cube())).tanh();
            G = D * (T(0.5) * (T(1) + th) + T(0.5) * X * (T(1) - th.square()) * c * (T(1) + T(3 * 0.044715) * X.square()));
            break;
        }
    }
}

}  // namespace detail

/// Parses diffusers' act_fn name; throws naming the accepted ones.
inline activation_kind parse_activation(const std::string& name) {
    if (name == "silu" || name == "swish") return activation_kind::silu;
    if (name == "gelu") return activation_kind::gelu;
    if (name == "gelu_tanh" || name == "gelu-approximate") return activation_kind::gelu_tanh;
    fail_argument("act_fn", name, "one of \"silu\" (\"swish\"), \"gelu\", \"gelu_tanh\"");
}

/// An element-wise activation layer: y = f(x) for any shape.
template <class T>
class activation {
public:
    struct cache {
        host_tensor<T> x;
        bool filled = false;
    };

    explicit activation(activation_kind kind = activation_kind::silu) : kind_(kind) {}

    activation_kind kind() const { return kind_; }

    void collect(parameter_list<T>&, const std::string&) {}

    host_tensor<T> forward(cview<T> x, cache* c = nullptr) const {
        host_tensor<T> y(x.shape());
        const T* xs = x.data();
        T* ys = y.data();
        const std::int64_t n = x.numel();
        detail::parallel_for((n + 4095) / 4096, [&](std::int64_t blk) {
            const std::int64_t b = blk * 4096, e = std::min<std::int64_t>(n, b + 4096);
            detail::activation_block(kind_, xs + b, ys + b, e - b);
        });
        if (c) {
            c->x = copy_of(x);
            c->filled = true;
        }
        return y;
    }

    /// dx = dy ⊙ f'(x).
    host_tensor<T> backward(cview<T> dy, const cache& c) const {
        require_cached(c.filled, "activation");
        require_shape(dy.shape() == c.x.shape(), "activation", "dy", dy.shape(), c.x.shape().str());
        host_tensor<T> dx(dy.shape());
        const T* xs = c.x.data();
        const T* d = dy.data();
        T* out = dx.data();
        const std::int64_t n = dy.numel();
        detail::parallel_for((n + 4095) / 4096, [&](std::int64_t blk) {
            const std::int64_t b = blk * 4096, e = std::min<std::int64_t>(n, b + 4096);
            detail::activation_backward_block(kind_, xs + b, d + b, out + b, e - b);
        });
        return dx;
    }

private:
    activation_kind kind_;
};

}  // namespace diffuse::nn
