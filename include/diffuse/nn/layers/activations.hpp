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

#include <cmath>
#include <cstdint>
#include <string>

namespace diffuse::nn {

/// Which activation (diffusers' act_fn names: "silu", "gelu", "gelu_tanh").
enum class activation_kind { silu, gelu, gelu_tanh };

namespace detail {

template <class T>
T activation_value(activation_kind k, T x) {
    switch (k) {
        case activation_kind::silu: return x / (T(1) + std::exp(-x));
        case activation_kind::gelu: return T(0.5) * x * (T(1) + std::erf(x * T(0.70710678118654752440)));
        case activation_kind::gelu_tanh: {
            const T u = T(0.79788456080286535588) * (x + T(0.044715) * x * x * x);
            return T(0.5) * x * (T(1) + std::tanh(u));
        }
    }
    return x;
}

template <class T>
T activation_derivative(activation_kind k, T x) {
    switch (k) {
        case activation_kind::silu: {
            const T s = T(1) / (T(1) + std::exp(-x));
            return s * (T(1) + x * (T(1) - s));
        }
        case activation_kind::gelu: {
            const T cdf = T(0.5) * (T(1) + std::erf(x * T(0.70710678118654752440)));
            const T pdf = T(0.39894228040143267794) * std::exp(T(-0.5) * x * x);
            return cdf + x * pdf;
        }
        case activation_kind::gelu_tanh: {
            const T c = T(0.79788456080286535588);
            const T u = c * (x + T(0.044715) * x * x * x);
            const T th = std::tanh(u);
            return T(0.5) * (T(1) + th) + T(0.5) * x * (T(1) - th * th) * c * (T(1) + T(3 * 0.044715) * x * x);
        }
    }
    return T(1);
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
        detail::parallel_for((x.numel() + 4095) / 4096, [&](std::int64_t blk) {
            const std::int64_t e = std::min<std::int64_t>(x.numel(), (blk + 1) * 4096);
            for (std::int64_t i = blk * 4096; i < e; ++i) ys[i] = detail::activation_value(kind_, xs[i]);
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
        detail::parallel_for((dy.numel() + 4095) / 4096, [&](std::int64_t blk) {
            const std::int64_t e = std::min<std::int64_t>(dy.numel(), (blk + 1) * 4096);
            for (std::int64_t i = blk * 4096; i < e; ++i) out[i] = d[i] * detail::activation_derivative(kind_, xs[i]);
        });
        return dx;
    }

private:
    activation_kind kind_;
};

}  // namespace diffuse::nn
