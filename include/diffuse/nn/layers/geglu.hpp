#pragma once
// geglu: the gated GELU feed-forward input of diffusers' FeedForward (Shazeer 2020, "GLU variants";
// diffusers class GEGLU, name `<prefix>.proj`).
//
// Shapes: x [..., D_in], proj: linear D_in -> 2·D_out, y [..., D_out]:
//   [h, g] = split(proj(x)) along the last dimension (h the first D_out features, g the rest)
//   y = h ⊙ gelu(g)
// Backward: dh = dy ⊙ gelu(g), dg = dy ⊙ h ⊙ gelu'(g), then proj's backward on [dh, dg].

#include <diffuse/nn/detail/parallel.hpp>
#include <diffuse/nn/layer.hpp>
#include <diffuse/nn/layers/activations.hpp>
#include <diffuse/nn/layers/linear.hpp>

#include <cstdint>
#include <string>

namespace diffuse::nn {

template <class T>
class geglu {
public:
    struct cache {
        typename linear<T>::cache proj;
        host_tensor<T> hg;  ///< proj(x) [..., 2·D_out]
        bool filled = false;
    };

    geglu() = default;
    geglu(std::int64_t dim_in, std::int64_t dim_out, bool bias = true,
          activation_kind gate = activation_kind::gelu)
        : proj(dim_in, 2 * dim_out, bias), dout_(dim_out), gate_(gate) {}

    linear<T> proj;  ///< D_in -> 2·D_out

    std::int64_t out_features() const { return dout_; }

    void collect(parameter_list<T>& out, const std::string& prefix) { proj.collect(out, join_name(prefix, "proj")); }

    host_tensor<T> forward(cview<T> x, cache* c = nullptr) const {
        host_tensor<T> hg = proj.forward(x, c ? &c->proj : nullptr);
        const std::int64_t N = hg.numel() / (2 * dout_);
        diffuse::shape ys = hg.shape();
        {
            std::int64_t d[max_rank];
            for (int i = 0; i < ys.rank(); ++i) d[i] = ys[i];
            d[ys.rank() - 1] = dout_;
            ys = diffuse::shape::from_range(d, d + ys.rank());
        }
        host_tensor<T> y(ys);
        detail::parallel_for(N, [&](std::int64_t n) {
            const T* h = hg.data() + n * 2 * dout_;
            T* out = y.data() + n * dout_;
            detail::activation_block(gate_, h + dout_, out, dout_);  // gelu(g)
            for (std::int64_t i = 0; i < dout_; ++i) out[i] *= h[i];
        });
        if (c) {
            c->hg = std::move(hg);
            c->filled = true;
        }
        return y;
    }

    host_tensor<T> backward(cview<T> dy, const cache& c) {
        require_cached(c.filled, "geglu");
        const std::int64_t N = c.hg.numel() / (2 * dout_);
        require_shape(dy.numel() == N * dout_, "geglu", "dy", dy.shape(), "the output's shape");
        host_tensor<T> dhg(c.hg.shape());
        detail::parallel_for(N, [&](std::int64_t n) {
            const T* h = c.hg.data() + n * 2 * dout_;
            const T* g = h + dout_;
            const T* d = dy.data() + n * dout_;
            T* dh = dhg.data() + n * 2 * dout_;
            T* dg = dh + dout_;
            detail::activation_block(gate_, g, dh, dout_);  // dh = dy ⊙ gelu(g)
            for (std::int64_t i = 0; i < dout_; ++i) {
                dh[i] *= d[i];
                dg[i] = d[i] * h[i];  // dg = dy ⊙ h ⊙ gelu'(g)
            }
            detail::activation_backward_block(gate_, g, dg, dg, dout_);
        });
        return proj.backward(dhg.cview(), c.proj);
    }

private:
    std::int64_t dout_ = 0;
    activation_kind gate_ = activation_kind::gelu;
};

}  // namespace diffuse::nn
