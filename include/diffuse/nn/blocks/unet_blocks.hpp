#pragma once
// The U-Net's level blocks (docs/unet.md §2), diffusers' names and order:
//
//   down_block  = DownBlock2D | AttnDownBlock2D | CrossAttnDownBlock2D
//                 for j < L: h = resnets.j(h, temb); h = attentions.j(h [, context]); skip(h)
//                 then h = downsamplers.0(h [, temb]); skip(h)                 (not on the last level)
//   mid_block   = UNetMidBlock2D | UNetMidBlock2DCrossAttn
//                 h = resnets.0(h, temb); h = attentions.0(h [, context]); h = resnets.1(h, temb)
//   up_block    = UpBlock2D | AttnUpBlock2D | CrossAttnUpBlock2D
//                 for j < L+1: h = resnets.j(concat(h, pop_skip()), temb); h = attentions.j(h [, context])
//                 then h = upsamplers.0(h [, temb])                              (not on the last level)
// "attentions" are spatial_attention (AttnDown/Up, UNetMidBlock2D) or transformer2d (CrossAttn*);
// the resampler is a conv (down/upsample2d) or a resnet block with down/up = True
// (UNet2DModel's downsample_type / upsample_type "resnet", AttnDown/Up blocks only).
//
// Each block's backward takes the gradient of its output and the gradients of the skips it pushed
// (filled in by the up path), and returns the gradient of its input; temb and context gradients
// are added into the caller's accumulators.

#include <diffuse/nn/blocks/resnet_block.hpp>
#include <diffuse/nn/blocks/transformer2d.hpp>
#include <diffuse/nn/layer.hpp>
#include <diffuse/nn/layers/attention.hpp>
#include <diffuse/nn/layers/resample.hpp>
#include <diffuse/nn/layers/tensor_ops.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace diffuse::nn {

/// What a block needs besides its input: the time embedding, the cross-attention context and
/// the dropout randomness of this call.
template <class T>
struct block_context {
    cview<T> temb;                    ///< [B, E]
    std::optional<cview<T>> context;  ///< [B, M, cross_attention_dim] (cross-attention blocks)
    std::optional<dropout_key> dropout;
};

/// Gradient accumulators shared by all blocks of one backward pass.
template <class T>
struct block_gradients {
    host_tensor<T> dtemb;     ///< [B, E]
    host_tensor<T> dcontext;  ///< [B, M, D] (when there is a context)
    bool has_context = false;
};

namespace detail {

template <class T>
void accumulate(host_tensor<T>& acc, host_tensor<T>&& g) {
    add_into(acc.view(), g.cview());
}

/// The resnet's dropout stream: distinct for every resnet of the model (index r) and every call.
inline std::optional<dropout_key> resnet_key(const std::optional<dropout_key>& k, std::int64_t r) {
    if (!k) return std::nullopt;
    return dropout_key{k->seed, k->stream * 1024u + static_cast<std::uint64_t>(r)};
}

}  // namespace detail

/// The attention of a level: spatial self-attention or a transformer with cross-attention.
template <class T>
struct level_attention {
    std::optional<spatial_attention<T>> spatial;
    std::optional<transformer2d<T>> transformer;

    struct cache {
        typename spatial_attention<T>::cache spatial;
        typename transformer2d<T>::cache transformer;
    };

    void collect(parameter_list<T>& out, const std::string& prefix) {
        if (spatial) spatial->collect(out, prefix);
        if (transformer) transformer->collect(out, prefix);
    }

    host_tensor<T> forward(cview<T> h, const block_context<T>& ctx, cache* c) const {
        if (spatial) return spatial->forward(h, c ? &c->spatial : nullptr);
        if (!ctx.context)
            fail("unet2d: a cross-attention block needs encoder_hidden_states [B, M, cross_attention_dim]");
        return transformer->forward(h, *ctx.context, c ? &c->transformer : nullptr);
    }

    host_tensor<T> backward(cview<T> d, const cache& c, block_gradients<T>& g) {
        if (spatial) return spatial->backward(d, c.spatial);
        auto r = transformer->backward(d, c.transformer);
        if (!g.has_context) {
            g.dcontext = std::move(r.dcontext);
            g.has_context = true;
        } else {
            add_into(g.dcontext.view(), r.dcontext.cview());
        }
        return std::move(r.dx);
    }
};

template <class T>
struct down_block {
    std::vector<resnet_block2d<T>> resnets;
    std::vector<level_attention<T>> attentions;  ///< empty for DownBlock2D
    std::optional<downsample2d<T>> downsampler;
    std::optional<resnet_block2d<T>> resnet_downsampler;
    std::int64_t first_resnet = 0;  ///< global index of resnets[0] (dropout streams)

    struct cache {
        std::vector<typename resnet_block2d<T>::cache> resnets;
        std::vector<typename level_attention<T>::cache> attentions;
        typename downsample2d<T>::cache down;
        typename resnet_block2d<T>::cache resnet_down;
        std::vector<std::size_t> skip_index;  ///< where this block's skips sit in the skip stack
    };

    void collect(parameter_list<T>& out, const std::string& prefix) {
        for (std::size_t j = 0; j < resnets.size(); ++j) {
            resnets[j].collect(out, join_name(prefix, "resnets." + std::to_string(j)));
            if (!attentions.empty()) attentions[j].collect(out, join_name(prefix, "attentions." + std::to_string(j)));
        }
        if (downsampler) downsampler->collect(out, join_name(prefix, "downsamplers.0"));
        if (resnet_downsampler) resnet_downsampler->collect(out, join_name(prefix, "downsamplers.0"));
    }

    host_tensor<T> forward(host_tensor<T> h, const block_context<T>& ctx, std::vector<host_tensor<T>>& skips,
                           cache* c) const {
        if (c) {
            c->resnets.resize(resnets.size());
            c->attentions.resize(attentions.size());
            c->skip_index.clear();
        }
        for (std::size_t j = 0; j < resnets.size(); ++j) {
            h = resnets[j].forward(h.cview(), ctx.temb, detail::resnet_key(ctx.dropout, first_resnet + j),
                                   c ? &c->resnets[j] : nullptr);
            if (!attentions.empty()) h = attentions[j].forward(h.cview(), ctx, c ? &c->attentions[j] : nullptr);
            if (c) c->skip_index.push_back(skips.size());
            skips.push_back(h);
        }
        if (downsampler || resnet_downsampler) {
            if (downsampler)
                h = downsampler->forward(h.cview(), c ? &c->down : nullptr);
            else
                h = resnet_downsampler->forward(h.cview(), ctx.temb,
                                                detail::resnet_key(ctx.dropout, first_resnet + resnets.size()),
                                                c ? &c->resnet_down : nullptr);
            if (c) c->skip_index.push_back(skips.size());
            skips.push_back(h);
        }
        return h;
    }

    /// d: gradient of the block's output (from the next block); dskips: gradients of all skips.
    host_tensor<T> backward(host_tensor<T> d, const cache& c, std::vector<host_tensor<T>>& dskips,
                            block_gradients<T>& g) {
        std::size_t k = c.skip_index.size();
        if (downsampler || resnet_downsampler) {
            add_into(d.view(), dskips[c.skip_index[--k]].cview());
            if (downsampler) {
                d = downsampler->backward(d.cview(), c.down);
            } else {
                auto r = resnet_downsampler->backward(d.cview(), c.resnet_down);
                add_into(g.dtemb.view(), r.dtemb.cview());
                d = std::move(r.dx);
            }
        }
        for (std::size_t j = resnets.size(); j-- > 0;) {
            add_into(d.view(), dskips[c.skip_index[--k]].cview());
            if (!attentions.empty()) d = attentions[j].backward(d.cview(), c.attentions[j], g);
            auto r = resnets[j].backward(d.cview(), c.resnets[j]);
            add_into(g.dtemb.view(), r.dtemb.cview());
            d = std::move(r.dx);
        }
        return d;
    }
};

template <class T>
struct mid_block {
    std::vector<resnet_block2d<T>> resnets;  ///< two
    std::optional<level_attention<T>> attention;
    std::int64_t first_resnet = 0;

    struct cache {
        typename resnet_block2d<T>::cache r0, r1;
        typename level_attention<T>::cache attn;
    };

    void collect(parameter_list<T>& out, const std::string& prefix) {
        resnets[0].collect(out, join_name(prefix, "resnets.0"));
        if (attention) attention->collect(out, join_name(prefix, "attentions.0"));
        resnets[1].collect(out, join_name(prefix, "resnets.1"));
    }

    host_tensor<T> forward(host_tensor<T> h, const block_context<T>& ctx, cache* c) const {
        h = resnets[0].forward(h.cview(), ctx.temb, detail::resnet_key(ctx.dropout, first_resnet),
                               c ? &c->r0 : nullptr);
        if (attention) h = attention->forward(h.cview(), ctx, c ? &c->attn : nullptr);
        return resnets[1].forward(h.cview(), ctx.temb, detail::resnet_key(ctx.dropout, first_resnet + 1),
                                  c ? &c->r1 : nullptr);
    }

    host_tensor<T> backward(host_tensor<T> d, const cache& c, block_gradients<T>& g) {
        auto r1 = resnets[1].backward(d.cview(), c.r1);
        add_into(g.dtemb.view(), r1.dtemb.cview());
        d = std::move(r1.dx);
        if (attention) d = attention->backward(d.cview(), c.attn, g);
        auto r0 = resnets[0].backward(d.cview(), c.r0);
        add_into(g.dtemb.view(), r0.dtemb.cview());
        return std::move(r0.dx);
    }
};

template <class T>
struct up_block {
    std::vector<resnet_block2d<T>> resnets;
    std::vector<level_attention<T>> attentions;  ///< empty for UpBlock2D
    std::optional<upsample2d<T>> upsampler;
    std::optional<resnet_block2d<T>> resnet_upsampler;
    std::int64_t first_resnet = 0;

    struct cache {
        std::vector<typename resnet_block2d<T>::cache> resnets;
        std::vector<typename level_attention<T>::cache> attentions;
        std::vector<std::size_t> skip_index;  ///< the skip each resnet consumed
        std::vector<std::int64_t> h_channels;  ///< channels of h before each concat
        typename upsample2d<T>::cache up;
        typename resnet_block2d<T>::cache resnet_up;
    };

    void collect(parameter_list<T>& out, const std::string& prefix) {
        for (std::size_t j = 0; j < resnets.size(); ++j) {
            resnets[j].collect(out, join_name(prefix, "resnets." + std::to_string(j)));
            if (!attentions.empty()) attentions[j].collect(out, join_name(prefix, "attentions." + std::to_string(j)));
        }
        if (upsampler) upsampler->collect(out, join_name(prefix, "upsamplers.0"));
        if (resnet_upsampler) resnet_upsampler->collect(out, join_name(prefix, "upsamplers.0"));
    }

    /// Pops resnets.size() skips; upsamples to (out_h, out_w) when given (else 2×).
    host_tensor<T> forward(host_tensor<T> h, const block_context<T>& ctx, std::vector<host_tensor<T>>& skips,
                           std::size_t& top, cache* c, std::int64_t out_h = 0, std::int64_t out_w = 0) const {
        if (c) {
            c->resnets.resize(resnets.size());
            c->attentions.resize(attentions.size());
            c->skip_index.clear();
            c->h_channels.clear();
        }
        for (std::size_t j = 0; j < resnets.size(); ++j) {
            const std::size_t s = --top;
            const host_tensor<T>& skip = skips[s];
            if (skip.size(2) != h.size(2) || skip.size(3) != h.size(3))
                fail("unet2d: the up path has spatial size " + std::to_string(h.size(2)) + "x" +
                     std::to_string(h.size(3)) + " but the skip connection has " + std::to_string(skip.size(2)) +
                     "x" + std::to_string(skip.size(3)) +
                     "; UNet2DModel needs H and W divisible by 2^(number of levels − 1)");
            if (c) {
                c->skip_index.push_back(s);
                c->h_channels.push_back(h.size(1));
            }
            h = concat_channels(h.cview(), skip.cview());
            h = resnets[j].forward(h.cview(), ctx.temb, detail::resnet_key(ctx.dropout, first_resnet + j),
                                   c ? &c->resnets[j] : nullptr);
            if (!attentions.empty()) h = attentions[j].forward(h.cview(), ctx, c ? &c->attentions[j] : nullptr);
        }
        if (upsampler) h = upsampler->forward(h.cview(), c ? &c->up : nullptr, out_h, out_w);
        if (resnet_upsampler)
            h = resnet_upsampler->forward(h.cview(), ctx.temb,
                                          detail::resnet_key(ctx.dropout, first_resnet + resnets.size()),
                                          c ? &c->resnet_up : nullptr);
        return h;
    }

    host_tensor<T> backward(host_tensor<T> d, const cache& c, std::vector<host_tensor<T>>& dskips,
                            block_gradients<T>& g) {
        if (upsampler) d = upsampler->backward(d.cview(), c.up);
        if (resnet_upsampler) {
            auto r = resnet_upsampler->backward(d.cview(), c.resnet_up);
            add_into(g.dtemb.view(), r.dtemb.cview());
            d = std::move(r.dx);
        }
        for (std::size_t j = resnets.size(); j-- > 0;) {
            if (!attentions.empty()) d = attentions[j].backward(d.cview(), c.attentions[j], g);
            auto r = resnets[j].backward(d.cview(), c.resnets[j]);
            add_into(g.dtemb.view(), r.dtemb.cview());
            auto [dh, ds] = split_channels(r.dx.cview(), c.h_channels[j]);
            dskips[c.skip_index[j]] = std::move(ds);
            d = std::move(dh);
        }
        return d;
    }
};

}  // namespace diffuse::nn
