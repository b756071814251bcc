#pragma once
// Tiny U-Net configurations and the parameter randomisation shared by the nn and guidance tests.

#include <diffuse/core/philox.hpp>
#include <diffuse/nn/init.hpp>
#include <diffuse/nn/unet_config.hpp>

#include <cstdint>
#include <string>

namespace diffuse::test {

using nn::unet_config;
using nn::unet_kind;

inline unet_config tiny_unet2d() {
    unet_config c = unet_config::defaults(unet_kind::unet2d);
    c.in_channels = 3;
    c.out_channels = 2;
    c.block_out_channels = {4, 8};
    c.layers_per_block = 1;
    c.down_block_types = {"DownBlock2D", "AttnDownBlock2D"};
    c.up_block_types = {"AttnUpBlock2D", "UpBlock2D"};
    c.norm_num_groups = 2;
    c.attention_head_dim = {4};
    c.num_class_embeds = 3;
    c.resnet_time_scale_shift = "scale_shift";
    c.center_input_sample = true;
    return c;
}

inline unet_config tiny_cond() {
    unet_config c = unet_config::defaults(unet_kind::unet2d_condition);
    c.in_channels = 2;
    c.out_channels = 2;
    c.block_out_channels = {4, 8};
    c.layers_per_block = 1;
    c.down_block_types = {"CrossAttnDownBlock2D", "DownBlock2D"};
    c.up_block_types = {"UpBlock2D", "CrossAttnUpBlock2D"};
    c.norm_num_groups = 2;
    c.attention_head_dim = {2};
    c.cross_attention_dim = 3;
    c.use_linear_projection = true;
    return c;
}

// weights ~ U(±1/√fan_in) as torch, then norm parameters perturbed so they are not at 1 / 0
// (any model with parameters(): unet2d, encoder_classifier)
template <class M>
void randomize_parameters(M& m, std::uint64_t seed) {
    nn::init_parameters<double>(m, seed);
    std::uint64_t k = 0;
    for (auto& p : m.parameters()) {
        ++k;
        if (p.name.find("norm") == std::string::npos) continue;
        for (std::int64_t i = 0; i < p.param->numel(); ++i)
            p.param->value.data()[i] += 0.1 * philox_normal(seed + 1, k, static_cast<std::uint64_t>(i));
    }
}

}  // namespace diffuse::test
