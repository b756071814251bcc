#pragma once
// Timestep embeddings of the U-Net (docs/unet.md §3; Vaswani et al. 2017 §3.5; Ho et al. 2020 App. B).
//
// sinusoidal_embedding(t, dim, flip_sin_to_cos, freq_shift) -> [B, dim], diffusers' Timesteps /
// get_timestep_embedding with scale 1 and max_period 10000: with half = ⌊dim/2⌋,
//   f_i = exp(−ln(10000) · i / (half − freq_shift)),   i = 0 … half−1
//   e(t) = [sin(t f_0), …, sin(t f_{half−1}), cos(t f_0), …, cos(t f_{half−1})]
//   flip_sin_to_cos swaps the halves ([cos, sin], guided-diffusion's order); an odd dim gets a
//   trailing zero.
// diffusers evaluates this in float32 whatever the model's dtype (timesteps.float()), and so do we:
// every step below is a float operation in the order diffusers performs it, then the result is
// cast to T. A double model therefore sees exactly the embedding a float64 diffusers model sees.
// (In float32, t·f_0 for t ≈ 999 has an ulp of 6e-5: this is part of the convention, not noise.)
//
// timestep_embedding: the MLP after it (diffusers TimestepEmbedding, names `linear_1`, `linear_2`):
//   emb = linear_2(act(linear_1(e)))      [B, in] -> [B, time_embed_dim]

#include <diffuse/nn/layer.hpp>
#include <diffuse/nn/layers/activations.hpp>
#include <diffuse/nn/layers/linear.hpp>

#include <cmath>
#include <cstdint>
#include <span>
#include <string>

namespace diffuse::nn {

/// The sinusoidal embedding of B timesteps (float32 arithmetic, as diffusers), as T: [B, dim].
template <class T>
host_tensor<T> sinusoidal_embedding(std::span<const double> timesteps, std::int64_t dim, bool flip_sin_to_cos,
                                    double freq_shift) {
    require_size(dim, "embedding_dim", "sinusoidal_embedding");
    const std::int64_t half = dim / 2;
    if (half > 0 && !(static_cast<double>(half) - freq_shift != 0.0))
        fail("sinusoidal_embedding: freq_shift = " + std::to_string(freq_shift) +
             " makes the exponent's denominator half_dim − freq_shift zero (half_dim = " + std::to_string(half) +
             "); expected freq_shift != half_dim");
    const std::int64_t B = static_cast<std::int64_t>(timesteps.size());
    host_tensor<T> e({B, dim}, T(0));
    const float neg_log_period = static_cast<float>(-std::log(10000.0));
    const float denom = static_cast<float>(static_cast<double>(half) - freq_shift);
    for (std::int64_t b = 0; b < B; ++b) {
        const double tb = timesteps[static_cast<std::size_t>(b)];
        if (!std::isfinite(tb))
            fail("sinusoidal_embedding: timestep " + std::to_string(b) + " = " + std::to_string(tb) +
                 "; expected a finite number");
        const float t = static_cast<float>(tb);
        for (std::int64_t i = 0; i < half; ++i) {
            const float exponent = (neg_log_period * static_cast<float>(i)) / denom;
            const float arg = t * std::exp(exponent);
            const float s = std::sin(arg), c = std::cos(arg);
            const std::int64_t first = flip_sin_to_cos ? half : 0, second = flip_sin_to_cos ? 0 : half;
            e(b, first + i) = static_cast<T>(s);
            e(b, second + i) = static_cast<T>(c);
        }
    }
    return e;
}

template <class T>
class timestep_embedding {
public:
    struct cache {
        typename linear<T>::cache l1, l2;
        typename activation<T>::cache act;
    };

    timestep_embedding() = default;
    timestep_embedding(std::int64_t in_channels, std::int64_t time_embed_dim,
                       activation_kind act = activation_kind::silu)
        : linear_1(in_channels, time_embed_dim), act_(act), linear_2(time_embed_dim, time_embed_dim) {}

    linear<T> linear_1;
    activation<T> act_;
    linear<T> linear_2;

    std::int64_t out_features() const { return linear_2.out_features(); }

    void collect(parameter_list<T>& out, const std::string& prefix) {
        linear_1.collect(out, join_name(prefix, "linear_1"));
        linear_2.collect(out, join_name(prefix, "linear_2"));
    }

    /// [B, in] -> [B, time_embed_dim].
    host_tensor<T> forward(cview<T> e, cache* c = nullptr) const {
        host_tensor<T> h = linear_1.forward(e, c ? &c->l1 : nullptr);
        h = act_.forward(h.cview(), c ? &c->act : nullptr);
        return linear_2.forward(h.cview(), c ? &c->l2 : nullptr);
    }

    host_tensor<T> backward(cview<T> d, const cache& c) {
        host_tensor<T> g = linear_2.backward(d, c.l2);
        g = act_.backward(g.cview(), c.act);
        return linear_1.backward(g.cview(), c.l1);
    }
};

}  // namespace diffuse::nn
