#pragma once
// nn/: layers with forward and backward, the conditional U-Net, its diffusers config and weights
// (docs/unet.md). Umbrella for users; library headers include exactly what they use.
//
//   layer.hpp                 the layer interface, parameters and THE gradient rule
//   layers/                   linear, conv2d, group_norm, layer_norm, activations (SiLU, GELU), geglu,
//                             dropout, embedding, timestep_embedding, attention, resample, tensor_ops
//   blocks/                   resnet_block2d, transformer2d (+ basic_transformer_block), unet_blocks
//   unet_config.hpp           diffusers' UNet2DModel / UNet2DConditionModel config keys
//   unet2d.hpp                the model: forward, backward, summary
//   unet_io.hpp               load/save config.json + .safetensors with diffusers' names
//   encoder_classifier.hpp    the U-Net's encoder + pooling head: a noise-conditional classifier p(y | x_t, t)
//                             for classifier guidance; log_softmax, cross_entropy, class_log_prob_grad
//   init.hpp                  PyTorch's default initialisation, reproducible
//   optim/adam.hpp            Adam / AdamW with torch's arithmetic
//   detail/flops.hpp          count_flops(f): GEMM floating-point operations of a call (benchmarks)

#include <diffuse/nn/blocks/resnet_block.hpp>
#include <diffuse/nn/blocks/transformer2d.hpp>
#include <diffuse/nn/blocks/unet_blocks.hpp>
#include <diffuse/nn/detail/flops.hpp>
#include <diffuse/nn/encoder_classifier.hpp>
#include <diffuse/nn/init.hpp>
#include <diffuse/nn/layer.hpp>
#include <diffuse/nn/layers/activations.hpp>
#include <diffuse/nn/layers/attention.hpp>
#include <diffuse/nn/layers/conv2d.hpp>
#include <diffuse/nn/layers/dropout.hpp>
#include <diffuse/nn/layers/embedding.hpp>
#include <diffuse/nn/layers/geglu.hpp>
#include <diffuse/nn/layers/group_norm.hpp>
#include <diffuse/nn/layers/layer_norm.hpp>
#include <diffuse/nn/layers/linear.hpp>
#include <diffuse/nn/layers/resample.hpp>
#include <diffuse/nn/layers/tensor_ops.hpp>
#include <diffuse/nn/layers/timestep_embedding.hpp>
#include <diffuse/nn/optim/adam.hpp>
#include <diffuse/nn/unet2d.hpp>
#include <diffuse/nn/unet_config.hpp>
#include <diffuse/nn/unet_io.hpp>
