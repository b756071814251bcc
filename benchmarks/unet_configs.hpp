#pragma once
// The U-Net configurations the benchmarks measure (docs/performance.md §3): one definition for
// bench_unet, bench_guidance and the PyTorch twin's saved config.json.
//   small   UNet2DModel 32×32×3, block_out_channels (64, 128, 128), layers_per_block 2,
//           DownBlock2D / AttnDownBlock2D ×2 (attention at 16×16 and 8×8), 11 class embeddings
//           (10 classes + the null label 10 of classifier-free guidance), attention_head_dim 32
//   cross   UNet2DConditionModel 16×16×4, block_out_channels (64, 128, 128), layers_per_block 2,
//           CrossAttnDownBlock2D ×2 + DownBlock2D, cross_attention_dim 64, 4 heads

#include <diffuse/nn/unet_config.hpp>

namespace bench {

inline diffuse::nn::unet_config small_config() {
    using namespace diffuse::nn;
    unet_config c = unet_config::defaults(unet_kind::unet2d);
    c.sample_size = {32};
    c.in_channels = c.out_channels = 3;
    c.block_out_channels = {64, 128, 128};
    c.layers_per_block = 2;
    c.down_block_types = {"DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"};
    c.up_block_types = {"AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"};
    c.attention_head_dim = {32};
    c.num_class_embeds = 11;
    return c;
}

inline diffuse::nn::unet_config cross_config() {
    using namespace diffuse::nn;
    unet_config c = unet_config::defaults(unet_kind::unet2d_condition);
    c.sample_size = {16};
    c.in_channels = c.out_channels = 4;
    c.block_out_channels = {64, 128, 128};
    c.layers_per_block = 2;
    c.down_block_types = {"CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"};
    c.up_block_types = {"UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"};
    c.attention_head_dim = {4};
    c.cross_attention_dim = 64;
    return c;
}

}  // namespace bench
