#pragma once
// Cross-attention conditioning (Rombach et al. 2022 §3.3; docs/unet.md §4): diffusers'
// Transformer2DModel (continuous input) with BasicTransformerBlock (norm_type "layer_norm").
//
// basic_transformer_block, tokens h [B, N, D], context c [B, M, Dc]:
//   h = attn1(norm1(h)) + h                 self-attention            names norm1, attn1
//   h = attn2(norm2(h), c) + h              cross-attention on c      names norm2, attn2
//   h = ff(norm3(h)) + h                    ff = Linear(GEGLU(·))     names norm3, ff.net.0.proj, ff.net.2
// (LayerNorm eps 1e-5; attention projections without bias; feed-forward width 4·D.)
//
// transformer2d, x [B, C, H, W] -> [B, C, H, W], inner width D = heads·dim_head:
//   r = x; h = GroupNorm(x) (eps 1e-6, diffusers' fixed value)               name norm
//   conv projection:   h = proj_in(h) (1×1 conv C→D) -> tokens [B, HW, D]    names proj_in, proj_out
//   linear projection: h -> tokens [B, HW, C] -> proj_in (Linear C→D)        (use_linear_projection)
//   h = blocks(h, c);  back to [B, C, H, W] through proj_out (the mirror of proj_in);  y = h + r

#include <diffuse/nn/layer.hpp>
#include <diffuse/nn/layers/attention.hpp>
#include <diffuse/nn/layers/conv2d.hpp>
#include <diffuse/nn/layers/geglu.hpp>
#include <diffuse/nn/layers/group_norm.hpp>
#include <diffuse/nn/layers/layer_norm.hpp>
#include <diffuse/nn/layers/linear.hpp>
#include <diffuse/nn/layers/tensor_ops.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace diffuse::nn {

template <class T>
class basic_transformer_block {
public:
    struct cache {
        typename layer_norm<T>::cache n1, n2, n3;
        typename multi_head_attention<T>::cache a1, a2;
        typename geglu<T>::cache ff0;
        typename linear<T>::cache ff2;
    };

    basic_transformer_block() = default;
    basic_transformer_block(std::int64_t dim, std::int64_t heads, std::int64_t dim_head, std::int64_t cross_dim)
        : norm1(dim), attn1(dim, heads, dim_head, 0, false), norm2(dim), attn2(dim, heads, dim_head, cross_dim, false),
          norm3(dim), ff_geglu(dim, 4 * dim), ff_out(4 * dim, dim) {}

    layer_norm<T> norm1;
    multi_head_attention<T> attn1;
    layer_norm<T> norm2;
    multi_head_attention<T> attn2;
    layer_norm<T> norm3;
    geglu<T> ff_geglu;  ///< ff.net.0
    linear<T> ff_out;   ///< ff.net.2

    void collect(parameter_list<T>& out, const std::string& prefix) {
        norm1.collect(out, join_name(prefix, "norm1"));
        attn1.collect(out, join_name(prefix, "attn1"));
        norm2.collect(out, join_name(prefix, "norm2"));
        attn2.collect(out, join_name(prefix, "attn2"));
        norm3.collect(out, join_name(prefix, "norm3"));
        ff_geglu.collect(out, join_name(prefix, "ff.net.0"));
        ff_out.collect(out, join_name(prefix, "ff.net.2"));
    }

    host_tensor<T> forward(cview<T> h, cview<T> context, cache* c = nullptr) const {
        host_tensor<T> n = norm1.forward(h, c ? &c->n1 : nullptr);
        host_tensor<T> a = attn1.forward(n.cview(), std::nullopt, c ? &c->a1 : nullptr);
        host_tensor<T> x = add(a.cview(), h);
        n = norm2.forward(x.cview(), c ? &c->n2 : nullptr);
        a = attn2.forward(n.cview(), context, c ? &c->a2 : nullptr);
        add_into(x.view(), a.cview());
        n = norm3.forward(x.cview(), c ? &c->n3 : nullptr);
        a = ff_geglu.forward(n.cview(), c ? &c->ff0 : nullptr);
        a = ff_out.forward(a.cview(), c ? &c->ff2 : nullptr);
        add_into(x.view(), a.cview());
        return x;
    }

    struct gradients {
        host_tensor<T> dh, dcontext;
    };

    gradients backward(cview<T> dy, const cache& c) {
        gradients g;
        // x3 = x2 + ff(norm3(x2))
        host_tensor<T> d = ff_out.backward(dy, c.ff2);
        d = ff_geglu.backward(d.cview(), c.ff0);
        d = norm3.backward(d.cview(), c.n3);
        host_tensor<T> dx2 = add(d.cview(), dy);
        // x2 = x1 + attn2(norm2(x1), context)
        auto ga = attn2.backward(dx2.cview(), c.a2);
        g.dcontext = std::move(ga.dcontext);
        d = norm2.backward(ga.dx.cview(), c.n2);
        add_into(d.view(), dx2.cview());  // dx1
        // x1 = h + attn1(norm1(h))
        auto gs = attn1.backward(d.cview(), c.a1);
        g.dh = norm1.backward(gs.dx.cview(), c.n1);
        add_into(g.dh.view(), d.cview());
        return g;
    }
};

template <class T>
class transformer2d {
public:
    struct cache {
        typename group_norm<T>::cache norm;
        typename conv2d<T>::cache pin_conv, pout_conv;
        typename linear<T>::cache pin_lin, pout_lin;
        std::vector<typename basic_transformer_block<T>::cache> blocks;
        std::int64_t H = 0, W = 0;
        bool filled = false;
    };

    transformer2d() = default;
    transformer2d(std::int64_t channels, std::int64_t heads, std::int64_t dim_head, std::int64_t layers,
                  std::int64_t cross_dim, std::int64_t norm_groups, bool use_linear_projection)
        : norm(norm_groups, channels, 1e-6), linear_(use_linear_projection), channels_(channels),
          inner_(heads * dim_head) {
        require_size(layers, "transformer_layers_per_block", "transformer2d");
        if (linear_) {
            proj_in_lin = linear<T>(channels, inner_);
            proj_out_lin = linear<T>(inner_, channels);
        } else {
            proj_in_conv = conv2d<T>(channels, inner_, 1);
            proj_out_conv = conv2d<T>(inner_, channels, 1);
        }
        for (std::int64_t i = 0; i < layers; ++i) blocks.emplace_back(inner_, heads, dim_head, cross_dim);
    }

    group_norm<T> norm;
    conv2d<T> proj_in_conv, proj_out_conv;  ///< used without use_linear_projection
    linear<T> proj_in_lin, proj_out_lin;    ///< used with use_linear_projection
    std::vector<basic_transformer_block<T>> blocks;

    void collect(parameter_list<T>& out, const std::string& prefix) {
        norm.collect(out, join_name(prefix, "norm"));
        if (linear_)
            proj_in_lin.collect(out, join_name(prefix, "proj_in"));
        else
            proj_in_conv.collect(out, join_name(prefix, "proj_in"));
        for (std::size_t i = 0; i < blocks.size(); ++i)
            blocks[i].collect(out, join_name(prefix, "transformer_blocks." + std::to_string(i)));
        if (linear_)
            proj_out_lin.collect(out, join_name(prefix, "proj_out"));
        else
            proj_out_conv.collect(out, join_name(prefix, "proj_out"));
    }

    /// x [B, C, H, W], context [B, M, cross_dim] -> [B, C, H, W].
    host_tensor<T> forward(cview<T> x, cview<T> context, cache* c = nullptr) const {
        require_shape(x.rank() == 4 && x.size(1) == channels_, "transformer2d", "x", x.shape(),
                      "[B, " + std::to_string(channels_) + ", H, W]");
        const std::int64_t H = x.size(2), W = x.size(3);
        if (c) {
            c->blocks.resize(blocks.size());
            c->H = H;
            c->W = W;
        }
        host_tensor<T> h = norm.forward(x, c ? &c->norm : nullptr);
        host_tensor<T> tok;
        if (linear_) {
            tok = channels_to_tokens(h.cview());
            tok = proj_in_lin.forward(tok.cview(), c ? &c->pin_lin : nullptr);
        } else {
            h = proj_in_conv.forward(h.cview(), c ? &c->pin_conv : nullptr);
            tok = channels_to_tokens(h.cview());
        }
        for (std::size_t i = 0; i < blocks.size(); ++i)
            tok = blocks[i].forward(tok.cview(), context, c ? &c->blocks[i] : nullptr);
        if (linear_) {
            tok = proj_out_lin.forward(tok.cview(), c ? &c->pout_lin : nullptr);
            h = tokens_to_channels(tok.cview(), H, W);
        } else {
            h = tokens_to_channels(tok.cview(), H, W);
            h = proj_out_conv.forward(h.cview(), c ? &c->pout_conv : nullptr);
        }
        add_into(h.view(), x);
        if (c) c->filled = true;
        return h;
    }

    struct gradients {
        host_tensor<T> dx, dcontext;
    };

    gradients backward(cview<T> dy, const cache& c) {
        require_cached(c.filled, "transformer2d");
        gradients g;
        host_tensor<T> tok;
        if (linear_) {
            tok = channels_to_tokens(dy);
            tok = proj_out_lin.backward(tok.cview(), c.pout_lin);
        } else {
            host_tensor<T> d = proj_out_conv.backward(dy, c.pout_conv);
            tok = channels_to_tokens(d.cview());
        }
        for (std::size_t k = blocks.size(); k-- > 0;) {
            auto gb = blocks[k].backward(tok.cview(), c.blocks[k]);
            tok = std::move(gb.dh);
            if (k + 1 == blocks.size())
                g.dcontext = std::move(gb.dcontext);  // every block reads the same context: sum
            else
                add_into(g.dcontext.view(), gb.dcontext.cview());
        }
        host_tensor<T> d;
        if (linear_) {
            tok = proj_in_lin.backward(tok.cview(), c.pin_lin);
            d = tokens_to_channels(tok.cview(), c.H, c.W);
        } else {
            d = tokens_to_channels(tok.cview(), c.H, c.W);
            d = proj_in_conv.backward(d.cview(), c.pin_conv);
        }
        g.dx = norm.backward(d.cview(), c.norm);
        add_into(g.dx.view(), dy);
        return g;
    }

private:
    bool linear_ = false;
    std::int64_t channels_ = 0, inner_ = 0;
};

}  // namespace diffuse::nn
