#pragma once
// Internals of nn/unet2d.hpp and nn/encoder_classifier.hpp: the construction of the U-Net's encoder half
// (down blocks, mid block) and the resnet / attention factories the decoder reuses, written once so the
// U-Net and the classifier built from its encoder cannot drift apart. Resnets are numbered in build order
// (down, mid, up) for their dropout streams (docs/unet.md §4).

#include <diffuse/nn/blocks/resnet_block.hpp>
#include <diffuse/nn/blocks/unet_blocks.hpp>
#include <diffuse/nn/unet_config.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace diffuse::nn::detail {

template <class T>
class unet_builder {
public:
    explicit unet_builder(const unet_config& c)
        : c_(c), tnorm_(parse_time_embedding_norm(c.resnet_time_scale_shift)) {}

    /// The number of resnets built so far (the index the next one gets).
    std::int64_t resnet_index() const { return index_; }

    resnet_block2d<T> resnet(std::int64_t cin, std::int64_t cout, double scale, resnet_resample rs) {
        resnet_block_options o;
        o.in_channels = cin;
        o.out_channels = cout;
        o.temb_channels = c_.time_embed_dim();
        o.groups = c_.norm_num_groups;
        o.eps = c_.norm_eps;
        o.time_norm = tnorm_;
        o.output_scale_factor = scale;
        o.dropout = c_.dropout;
        o.resample = rs;
        ++index_;
        return resnet_block2d<T>(o);
    }

    /// The spatial self-attention of a level with `ch` channels (groups = 0: no group norm).
    level_attention<T> spatial(std::int64_t ch, double scale, std::int64_t groups) const {
        const std::int64_t head_dim = c_.attention_head_dim.empty() ? ch : c_.attention_head_dim[0];
        level_attention<T> a;
        a.spatial.emplace(ch, ch / head_dim, head_dim, groups, c_.norm_eps, scale);
        return a;
    }

    /// The cross-attention transformer of a level with `ch` channels and `heads` heads.
    level_attention<T> transformer(std::int64_t ch, std::int64_t heads) const {
        level_attention<T> a;
        a.transformer.emplace(ch, heads, ch / heads, c_.transformer_layers_per_block, c_.cross_attention_dim,
                              c_.norm_num_groups, c_.use_linear_projection);
        return a;
    }

    /// The down blocks (DownBlock2D, AttnDownBlock2D, CrossAttnDownBlock2D), each but the last ending in a
    /// downsampler (a resnet for AttnDownBlock2D with downsample_type "resnet").
    std::vector<down_block<T>> down_blocks() {
        const auto& boc = c_.block_out_channels;
        const std::size_t n = boc.size();
        std::vector<down_block<T>> out;
        std::int64_t out_ch = boc[0];
        for (std::size_t i = 0; i < n; ++i) {
            const std::int64_t in_ch = out_ch;
            out_ch = boc[i];
            const std::string& type = c_.down_block_types[i];
            down_block<T> blk;
            blk.first_resnet = index_;
            for (std::int64_t j = 0; j < c_.layers_per_block; ++j) {
                blk.resnets.push_back(resnet(j == 0 ? in_ch : out_ch, out_ch, 1.0, resnet_resample::none));
                if (type == "AttnDownBlock2D") blk.attentions.push_back(spatial(out_ch, 1.0, c_.norm_num_groups));
                if (type == "CrossAttnDownBlock2D") blk.attentions.push_back(transformer(out_ch, c_.heads_at(i)));
            }
            if (i + 1 < n) {
                if (type == "AttnDownBlock2D" && c_.downsample_type == "resnet")
                    blk.resnet_downsampler.emplace(resnet(out_ch, out_ch, 1.0, resnet_resample::down));
                else
                    blk.downsampler.emplace(out_ch, true, out_ch, c_.downsample_padding);
            }
            out.push_back(std::move(blk));
        }
        return out;
    }

    /// The mid block when mid_block_type is set: resnet, attention (spatial for UNet2DModel when
    /// add_attention, the cross-attention transformer for UNet2DConditionModel), resnet.
    std::optional<mid_block<T>> mid() {
        if (!c_.mid_block_type) return std::nullopt;
        const bool cross = c_.kind == unet_kind::unet2d_condition;
        mid_block<T> m;
        m.first_resnet = index_;
        const std::int64_t ch = c_.block_out_channels.back();
        m.resnets.push_back(resnet(ch, ch, c_.mid_block_scale_factor, resnet_resample::none));
        if (!cross && c_.add_attention) {
            // attn groups: attn_norm_num_groups, else norm_num_groups for "default" and none for scale_shift
            const std::int64_t groups = c_.attn_norm_num_groups ? *c_.attn_norm_num_groups
                                        : tnorm_ == time_embedding_norm::default_add ? c_.norm_num_groups
                                                                                     : 0;
            m.attention = spatial(ch, c_.mid_block_scale_factor, groups);
        }
        if (cross) m.attention = transformer(ch, c_.heads_at(c_.block_out_channels.size() - 1));
        m.resnets.push_back(resnet(ch, ch, c_.mid_block_scale_factor, resnet_resample::none));
        return m;
    }

private:
    const unet_config& c_;
    time_embedding_norm tnorm_;
    std::int64_t index_ = 0;
};

}  // namespace diffuse::nn::detail
