#pragma once
// dropout: y = x ⊙ m / (1 − p) with m_i ∈ {0, 1} kept with probability 1 − p (Srivastava et al. 2014),
// as torch.nn.Dropout in training mode; the identity at inference (forward without a key).
//
// Reproducible: the keep decision of element i is Philox uniform draw i of (seed, stream)
// (core/philox.hpp), kept when u ≥ p. The same (seed, stream) drops the same elements on any
// thread count. The caller chooses a fresh stream per call (e.g. the training step times the number
// of dropout layers plus the layer index) — the layer holds no counter, so it stays const.
// Backward: dx = dy ⊙ m / (1 − p).

#include <diffuse/core/philox.hpp>
#include <diffuse/nn/detail/parallel.hpp>
#include <diffuse/nn/layer.hpp>

#include <cstdint>
#include <optional>
#include <string>

namespace diffuse::nn {

/// The randomness of one dropout call: Philox (seed, stream).
struct dropout_key {
    std::uint64_t seed = 0;
    std::uint64_t stream = 0;
};

template <class T>
class dropout {
public:
    struct cache {
        host_tensor<T> scale;  ///< m / (1 − p) per element (empty when the call was the identity)
        bool identity = true;
        bool filled = false;
    };

    explicit dropout(double p = 0.0) : p_(p) {
        if (!(p >= 0.0 && p < 1.0)) fail_argument("dropout p", p, "a probability in [0, 1)");
    }

    double p() const { return p_; }

    void collect(parameter_list<T>&, const std::string&) {}

    /// Training when key is given and p > 0; otherwise y = x.
    host_tensor<T> forward(cview<T> x, std::optional<dropout_key> key, cache* c = nullptr) const {
        host_tensor<T> y = copy_of(x);
        const bool active = key.has_value() && p_ > 0.0;
        if (c) {
            c->identity = !active;
            c->filled = true;
        }
        if (!active) return y;
        host_tensor<T> scale(x.shape());
        const T keep_scale = static_cast<T>(1.0 / (1.0 - p_));
        T* s = scale.data();
        T* ys = y.data();
        detail::parallel_for(x.numel(), [&](std::int64_t i) {
            const double u = philox_uniform(key->seed, key->stream, static_cast<std::uint64_t>(i));
            s[i] = u >= p_ ? keep_scale : T(0);
            ys[i] *= s[i];
        });
        if (c) c->scale = std::move(scale);
        return y;
    }

    host_tensor<T> backward(cview<T> dy, const cache& c) const {
        require_cached(c.filled, "dropout");
        host_tensor<T> dx = copy_of(dy);
        if (c.identity) return dx;
        require_shape(dy.shape() == c.scale.shape(), "dropout", "dy", dy.shape(), c.scale.shape().str());
        for (std::int64_t i = 0; i < dx.numel(); ++i) dx.data()[i] *= c.scale.data()[i];
        return dx;
    }

private:
    double p_ = 0.0;
};

}  // namespace diffuse::nn
