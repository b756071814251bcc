#pragma once
// resnet_block2d: diffusers' ResnetBlock2D (pre-activation residual block with a time embedding;
// Ho et al. 2020 App. B, Dhariwal & Nichol 2021 §3 for scale_shift; docs/unet.md §3).
// Names: norm1, conv1, time_emb_proj, norm2, conv2, conv_shortcut.
//
// Shapes: x [B, Cin, H, W], temb [B, E] -> y [B, Cout, H', W'] (H' = H, 2H when up, ⌊H/2⌋ when down).
//   h  = conv1(resample(SiLU(norm1(x))))                                  x' = resample(x)
//   τ  = time_emb_proj(SiLU(temb))                    [B, Cout] ("default") or [B, 2·Cout] ("scale_shift")
//   default:      h = SiLU(norm2(h + τ))
//   scale_shift:  (s, t) = split(τ),  h = SiLU(norm2(h)·(1 + s) + t)      (adaptive group norm)
//   y = (shortcut(x') + conv2(dropout(h))) / output_scale_factor,   shortcut = 1×1 conv iff Cin ≠ Cout
// resample: nearest 2× (up) or 2×2 average pool (down), applied to both branches.
// Backward returns dx and this block's contribution to dtemb (the caller sums over blocks).

#include <diffuse/backend/for_each.hpp>
#include <diffuse/nn/detail/parallel.hpp>
#include <diffuse/nn/layer.hpp>
#include <diffuse/nn/layers/activations.hpp>
#include <diffuse/nn/layers/conv2d.hpp>
#include <diffuse/nn/layers/dropout.hpp>
#include <diffuse/nn/layers/group_norm.hpp>
#include <diffuse/nn/layers/linear.hpp>
#include <diffuse/nn/layers/resample.hpp>
#include <diffuse/nn/layers/tensor_ops.hpp>

#include <cstdint>
#include <optional>
#include <string>

namespace diffuse::nn {

/// How the time embedding enters a resnet block (diffusers' resnet_time_scale_shift).
enum class time_embedding_norm { default_add, scale_shift };

inline time_embedding_norm parse_time_embedding_norm(const std::string& s) {
    if (s == "default") return time_embedding_norm::default_add;
    if (s == "scale_shift") return time_embedding_norm::scale_shift;
    fail_argument("resnet_time_scale_shift", s, "\"default\" or \"scale_shift\"");
}

/// Resampling inside a resnet block (diffusers ResnetBlock2D up=True / down=True).
enum class resnet_resample { none, up, down };

struct resnet_block_options {
    std::int64_t in_channels = 0, out_channels = 0, temb_channels = 0;
    std::int64_t groups = 32;
    double eps = 1e-5;
    time_embedding_norm time_norm = time_embedding_norm::default_add;
    double output_scale_factor = 1.0;
    double dropout = 0.0;
    resnet_resample resample = resnet_resample::none;
};

template <class T>
class resnet_block2d {
    resnet_block_options opt_{};

public:
    struct cache {
        typename group_norm<T>::cache n1, n2;
        typename activation<T>::cache a1, a2, at;
        typename conv2d<T>::cache c1, c2, cs;
        typename linear<T>::cache tp;
        typename dropout<T>::cache dr;
        host_tensor<T> norm2_out;  ///< norm2's output (scale_shift: needed for ds)
        host_tensor<T> scale;      ///< 1 + s [B, Cout] (scale_shift)
        std::int64_t H = 0, W = 0, Hr = 0, Wr = 0;  ///< input size and size after resampling
        bool filled = false;
    };

    resnet_block2d() = default;
    explicit resnet_block2d(const resnet_block_options& o)
        : opt_(o),
          norm1(o.groups, o.in_channels, o.eps),
          conv1(o.in_channels, o.out_channels, 3, 1, 1),
          time_emb_proj(o.temb_channels,
                        o.time_norm == time_embedding_norm::scale_shift ? 2 * o.out_channels : o.out_channels),
          norm2(o.groups, o.out_channels, o.eps),
          drop_(o.dropout),
          conv2(o.out_channels, o.out_channels, 3, 1, 1) {
        require_positive(o.output_scale_factor, "output_scale_factor");
        if (o.in_channels != o.out_channels) conv_shortcut.emplace(o.in_channels, o.out_channels, 1);
    }

    const resnet_block_options& options() const { return opt_; }

    group_norm<T> norm1;
    conv2d<T> conv1;
    linear<T> time_emb_proj;
    group_norm<T> norm2;
    dropout<T> drop_{0.0};
    conv2d<T> conv2;
    std::optional<conv2d<T>> conv_shortcut;

    void collect(parameter_list<T>& out, const std::string& prefix) {
        norm1.collect(out, join_name(prefix, "norm1"));
        conv1.collect(out, join_name(prefix, "conv1"));
        time_emb_proj.collect(out, join_name(prefix, "time_emb_proj"));
        norm2.collect(out, join_name(prefix, "norm2"));
        conv2.collect(out, join_name(prefix, "conv2"));
        if (conv_shortcut) conv_shortcut->collect(out, join_name(prefix, "conv_shortcut"));
    }

    /// x [B, Cin, H, W], temb [B, E] -> [B, Cout, H', W']; dropout active when key is given.
    host_tensor<T> forward(cview<T> x, cview<T> temb, std::optional<dropout_key> key = std::nullopt,
                           cache* c = nullptr) const {
        require_shape(temb.rank() == 2 && x.rank() == 4 && temb.size(0) == x.size(0) &&
                          temb.size(1) == opt_.temb_channels,
                      "resnet_block2d", "temb", temb.shape(),
                      "[" + std::to_string(x.rank() == 4 ? x.size(0) : 0) + ", " + std::to_string(opt_.temb_channels) +
                          "] (batch, temb_channels)");
        const activation<T> silu(activation_kind::silu);
        host_tensor<T> h = norm1.forward(x, c ? &c->n1 : nullptr);
        h = silu.forward(h.cview(), c ? &c->a1 : nullptr);
        host_tensor<T> xr;
        cview<T> xs = x;
        if (opt_.resample != resnet_resample::none) {
            h = resample(h.cview());
            xr = resample(x);
            xs = xr.cview();
        }
        if (c) {
            c->H = x.size(2);
            c->W = x.size(3);
            c->Hr = h.size(2);
            c->Wr = h.size(3);
        }
        h = conv1.forward(h.cview(), c ? &c->c1 : nullptr);
        host_tensor<T> ta = silu.forward(temb, c ? &c->at : nullptr);
        host_tensor<T> tau = time_emb_proj.forward(ta.cview(), c ? &c->tp : nullptr);
        const std::int64_t B = x.size(0), C = opt_.out_channels;
        if (opt_.time_norm == time_embedding_norm::default_add) {
            h = add_channel_bias(h.cview(), tau.cview());
            h = norm2.forward(h.cview(), c ? &c->n2 : nullptr);
        } else {
            host_tensor<T> n = norm2.forward(h.cview(), c ? &c->n2 : nullptr);
            const std::int64_t S = n.numel() / (B * C);
            h = host_tensor<T>(n.shape());
            host_tensor<T> sc({B, C});
            detail::parallel_for(B * C, [&](std::int64_t bc) {
                const std::int64_t b = bc / C, ch = bc % C;
                const T s1 = T(1) + tau(b, ch), sh = tau(b, C + ch);
                sc(b, ch) = s1;
                const T* in = n.data() + bc * S;
                T* out = h.data() + bc * S;
                for (std::int64_t k = 0; k < S; ++k) out[k] = in[k] * s1 + sh;
            });
            if (c) {
                c->norm2_out = std::move(n);
                c->scale = std::move(sc);
            }
        }
        h = silu.forward(h.cview(), c ? &c->a2 : nullptr);
        h = drop_.forward(h.cview(), key, c ? &c->dr : nullptr);
        h = conv2.forward(h.cview(), c ? &c->c2 : nullptr);
        host_tensor<T> sc = conv_shortcut ? conv_shortcut->forward(xs, c ? &c->cs : nullptr) : copy_of(xs);
        const T r = static_cast<T>(opt_.output_scale_factor);
        diffuse::for_each<host_space>(h.numel(), [&](std::int64_t i) {
            h.data()[i] = (sc.data()[i] + h.data()[i]) / r;
        });
        if (c) c->filled = true;
        return h;
    }

    struct gradients {
        host_tensor<T> dx;     ///< [B, Cin, H, W]
        host_tensor<T> dtemb;  ///< [B, E]
    };

    gradients backward(cview<T> dy, const cache& c) {
        require_cached(c.filled, "resnet_block2d");
        const activation<T> silu(activation_kind::silu);
        const T r = static_cast<T>(opt_.output_scale_factor);
        host_tensor<T> d(dy.shape());
        diffuse::for_each<host_space>(d.numel(), [&](std::int64_t i) { d.data()[i] = dy.data()[i] / r; });
        // shortcut branch
        host_tensor<T> dxs = conv_shortcut ? conv_shortcut->backward(d.cview(), c.cs) : copy_of(d.cview());
        // main branch
        host_tensor<T> g = conv2.backward(d.cview(), c.c2);
        g = drop_.backward(g.cview(), c.dr);
        g = silu.backward(g.cview(), c.a2);
        const std::int64_t B = g.size(0), C = opt_.out_channels, S = g.numel() / (B * C);
        host_tensor<T> dtau;
        if (opt_.time_norm == time_embedding_norm::default_add) {
            g = norm2.backward(g.cview(), c.n2);
            dtau = sum_spatial(g.cview());  // ∂/∂τ of h + τ
        } else {
            dtau = host_tensor<T>({B, 2 * C});
            host_tensor<T> dn(g.shape());
            detail::parallel_for(B * C, [&](std::int64_t bc) {
                const std::int64_t b = bc / C, ch = bc % C;
                const T* gi = g.data() + (b * C + ch) * S;
                const T* ni = c.norm2_out.data() + (b * C + ch) * S;
                T* out = dn.data() + (b * C + ch) * S;
                const T s1 = c.scale(b, ch);
                T ds = 0, dt = 0;
                for (std::int64_t k = 0; k < S; ++k) {
                    out[k] = gi[k] * s1;
                    ds += gi[k] * ni[k];
                    dt += gi[k];
                }
                dtau(b, ch) = ds;
                dtau(b, C + ch) = dt;
            });
            g = norm2.backward(dn.cview(), c.n2);
        }
        host_tensor<T> dta = time_emb_proj.backward(dtau.cview(), c.tp);
        gradients out;
        out.dtemb = silu.backward(dta.cview(), c.at);
        g = conv1.backward(g.cview(), c.c1);
        if (opt_.resample != resnet_resample::none) {
            g = resample_backward(g.cview(), c);
            dxs = resample_backward(dxs.cview(), c);
        }
        g = silu.backward(g.cview(), c.a1);
        out.dx = norm1.backward(g.cview(), c.n1);
        add_into(out.dx.view(), dxs.cview());
        return out;
    }

private:
    host_tensor<T> resample(cview<T> x) const {
        return opt_.resample == resnet_resample::up ? upsample_nearest2x(x) : avg_pool2x2(x);
    }
    host_tensor<T> resample_backward(cview<T> d, const cache& c) const {
        return opt_.resample == resnet_resample::up ? upsample_nearest2x_backward(d) : avg_pool2x2_backward(d, c.H, c.W);
    }
};

}  // namespace diffuse::nn
