#!/usr/bin/env python3
"""A PyTorch mirror of diffusers' UNet2DModel and UNet2DConditionModel (supported subset), and reference cases.

diffusers is not installed here, so this file re-implements, from torch.nn / torch.nn.functional only, the
diffusers modules that diffuse's conditional U-Net (include/diffuse/nn/) supports.  Every class below mirrors
one diffusers class (named in its docstring) and uses the same attribute names, so `state_dict()` keys are
exactly diffusers' parameter names (`down_blocks.1.attentions.0.to_q.weight`, `time_embedding.linear_1.bias`,
`mid_block.attentions.0.transformer_blocks.0.ff.net.0.proj.weight`, ...) and a weight file written here loads
into diffusers (and vice versa).  The arithmetic follows diffusers' code paths (torch >= 2, AttnProcessor2_0),
with its quirks noted where they occur.

Supported configuration (anything else raises ValueError):
  UNet2DModel           time_embedding_type "positional"; act_fn "silu"; down blocks DownBlock2D/AttnDownBlock2D;
                        up blocks UpBlock2D/AttnUpBlock2D; mid UNetMidBlock2D or None; downsample_type and
                        upsample_type "conv"/"resnet"; resnet_time_scale_shift "default"/"scale_shift";
                        class_embed_type None (+ num_class_embeds)/"timestep"/"identity"; all other keys.
  UNet2DConditionModel  down CrossAttnDownBlock2D/DownBlock2D; up CrossAttnUpBlock2D/UpBlock2D; mid
                        UNetMidBlock2DCrossAttn or None; int layers_per_block, cross_attention_dim and
                        transformer_layers_per_block; attention_head_dim int or per-block list (it is the NUMBER
                        of heads); use_linear_projection; class_embed_type None/"timestep"/"identity"; odd
                        conv_in_kernel/conv_out_kernel; keys of unsupported features only at their defaults.

Precision.  The float32 model computes what diffusers computes.  Converted with .double(), the same modules
compute everything in float64 except the sinusoidal time embedding, which diffusers always builds in float32
(`timesteps.float()`) and then casts to the model's dtype; the mirror does the same, and so does diffuse, so a
float64 model here and there sees the same embedding.

CLI (see tests/python/README.md for the file format the C++ tests read):
    /usr/bin/python3 tests/python/unet_mirror.py --out DIR [--cases a,b] [--check]
    /usr/bin/python3 tests/python/unet_mirror.py --check            (checks only, writes nothing)
    /usr/bin/python3 tests/python/unet_mirror.py --list
"""
import argparse
import copy
import json
import math
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_lite  # noqa: E402


# ---------------------------------------------------------------------------------------------------------------
# Embeddings (diffusers/models/embeddings.py)
# ---------------------------------------------------------------------------------------------------------------

def get_timestep_embedding(timesteps, embedding_dim, flip_sin_to_cos, downscale_freq_shift, scale=1.0,
                           max_period=10000, dtype=torch.float32):
    """diffusers.models.embeddings.get_timestep_embedding: computed in float32 whatever the model's dtype (as
    diffusers does), then cast to `dtype`.

    emb[:, i] = sin(t * f_i), emb[:, half + i] = cos(t * f_i), f_i = exp(-ln(max_period) * i / (half - shift)),
    i < half = dim // 2; flip_sin_to_cos swaps the halves (cos first); an odd dim gets one zero column."""
    if timesteps.dim() != 1:
        raise ValueError(f"timesteps must be a 1-d tensor, got shape {tuple(timesteps.shape)}")
    half_dim = embedding_dim // 2
    out_dtype, dtype = dtype, torch.float32
    exponent = -math.log(max_period) * torch.arange(0, half_dim, dtype=dtype, device=timesteps.device)
    exponent = exponent / (half_dim - downscale_freq_shift)
    emb = torch.exp(exponent)
    emb = timesteps[:, None].float() * emb[None, :]
    emb = scale * emb
    emb = torch.cat([torch.sin(emb), torch.cos(emb)], dim=-1)
    if flip_sin_to_cos:
        emb = torch.cat([emb[:, half_dim:], emb[:, :half_dim]], dim=-1)
    if embedding_dim % 2 == 1:
        emb = F.pad(emb, (0, 1, 0, 0))
    return emb.to(out_dtype)


class Timesteps(nn.Module):
    """diffusers.models.embeddings.Timesteps (no parameters; scale 1, max_period 10000)."""

    def __init__(self, num_channels, flip_sin_to_cos, downscale_freq_shift):
        super().__init__()
        self.num_channels = num_channels
        self.flip_sin_to_cos = flip_sin_to_cos
        self.downscale_freq_shift = downscale_freq_shift

    def forward(self, timesteps, dtype=torch.float32):
        return get_timestep_embedding(timesteps, self.num_channels, self.flip_sin_to_cos,
                                      self.downscale_freq_shift, dtype=dtype)


class TimestepEmbedding(nn.Module):
    """diffusers.models.embeddings.TimestepEmbedding: linear_1 -> SiLU -> linear_2 (no cond_proj, no post_act)."""

    def __init__(self, in_channels, time_embed_dim):
        super().__init__()
        self.linear_1 = nn.Linear(in_channels, time_embed_dim)
        self.act = nn.SiLU()
        self.linear_2 = nn.Linear(time_embed_dim, time_embed_dim)

    def forward(self, sample):
        return self.linear_2(self.act(self.linear_1(sample)))


# ---------------------------------------------------------------------------------------------------------------
# Resampling and residual blocks (diffusers/models/downsampling.py, upsampling.py, resnet.py)
# ---------------------------------------------------------------------------------------------------------------

class Downsample2D(nn.Module):
    """diffusers.models.downsampling.Downsample2D, with name="op" (the module is stored as `conv`).

    use_conv: 3x3 conv, stride 2, padding `padding`; QUIRK: padding 0 first pads (left 0, right 1, top 0,
    bottom 1) with zeros, so the output is ceil(H/2) like padding 1 but the window is shifted.
    not use_conv: 2x2 average pooling, stride 2 (used inside ResnetBlock2D(down=True))."""

    def __init__(self, channels, use_conv, out_channels=None, padding=1):
        super().__init__()
        self.channels = channels
        self.out_channels = out_channels or channels
        self.use_conv = use_conv
        self.padding = padding
        if use_conv:
            self.conv = nn.Conv2d(channels, self.out_channels, kernel_size=3, stride=2, padding=padding)
        else:
            if self.out_channels != channels:
                raise ValueError("Downsample2D without conv keeps the channel count")
            self.conv = nn.AvgPool2d(kernel_size=2, stride=2)

    def forward(self, hidden_states):
        if self.use_conv and self.padding == 0:
            hidden_states = F.pad(hidden_states, (0, 1, 0, 1), mode="constant", value=0)
        return self.conv(hidden_states)


class Upsample2D(nn.Module):
    """diffusers.models.upsampling.Upsample2D (name="conv"): nearest 2x (or nearest to `output_size`), then an
    optional 3x3 conv, padding 1."""

    def __init__(self, channels, use_conv, out_channels=None):
        super().__init__()
        self.channels = channels
        self.out_channels = out_channels or channels
        self.use_conv = use_conv
        self.conv = nn.Conv2d(channels, self.out_channels, kernel_size=3, padding=1) if use_conv else None

    def forward(self, hidden_states, output_size=None):
        if output_size is None:
            hidden_states = F.interpolate(hidden_states, scale_factor=2.0, mode="nearest")
        else:
            hidden_states = F.interpolate(hidden_states, size=output_size, mode="nearest")
        if self.use_conv:
            hidden_states = self.conv(hidden_states)
        return hidden_states


class ResnetBlock2D(nn.Module):
    """diffusers.models.resnet.ResnetBlock2D (pre-norm, SiLU, no FIR kernel, skip_time_act False).

      h = conv1(resample(SiLU(norm1(x))))                       x' = resample(x)
      "default":     h = SiLU(norm2(h + time_emb_proj(SiLU(temb))))
      "scale_shift": scale, shift = chunk(time_emb_proj(SiLU(temb)), 2); h = SiLU(norm2(h) * (1 + scale) + shift)
      out = (conv_shortcut(x') or x' + conv2(dropout(h))) / output_scale_factor
    conv_shortcut is a 1x1 conv (with bias) exactly when in_channels != out_channels.  resample: up=True nearest
    2x (Upsample2D without conv), down=True 2x2 average pooling (Downsample2D without conv), applied to both the
    normalized branch and the shortcut input."""

    def __init__(self, in_channels, out_channels, temb_channels, groups, eps, time_embedding_norm="default",
                 output_scale_factor=1.0, dropout=0.0, up=False, down=False):
        super().__init__()
        if time_embedding_norm not in ("default", "scale_shift"):
            raise ValueError(f"unknown time_embedding_norm : {time_embedding_norm}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.time_embedding_norm = time_embedding_norm
        self.output_scale_factor = output_scale_factor
        self.norm1 = nn.GroupNorm(num_groups=groups, num_channels=in_channels, eps=eps, affine=True)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1)
        proj_out = out_channels if time_embedding_norm == "default" else 2 * out_channels
        self.time_emb_proj = nn.Linear(temb_channels, proj_out)
        self.norm2 = nn.GroupNorm(num_groups=groups, num_channels=out_channels, eps=eps, affine=True)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, stride=1, padding=1)
        self.nonlinearity = nn.SiLU()
        self.upsample = Upsample2D(in_channels, use_conv=False) if up else None
        self.downsample = Downsample2D(in_channels, use_conv=False, padding=1) if (down and not up) else None
        self.conv_shortcut = None
        if in_channels != out_channels:
            self.conv_shortcut = nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=1, padding=0, bias=True)

    def forward(self, input_tensor, temb):
        hidden_states = self.nonlinearity(self.norm1(input_tensor))
        if self.upsample is not None:
            input_tensor = self.upsample(input_tensor)
            hidden_states = self.upsample(hidden_states)
        elif self.downsample is not None:
            input_tensor = self.downsample(input_tensor)
            hidden_states = self.downsample(hidden_states)
        hidden_states = self.conv1(hidden_states)
        temb = self.time_emb_proj(self.nonlinearity(temb))[:, :, None, None]
        if self.time_embedding_norm == "default":
            hidden_states = self.norm2(hidden_states + temb)
        else:
            time_scale, time_shift = torch.chunk(temb, 2, dim=1)
            hidden_states = self.norm2(hidden_states) * (1 + time_scale) + time_shift
        hidden_states = self.nonlinearity(hidden_states)
        hidden_states = self.conv2(self.dropout(hidden_states))
        if self.conv_shortcut is not None:
            input_tensor = self.conv_shortcut(input_tensor)
        return (input_tensor + hidden_states) / self.output_scale_factor


# ---------------------------------------------------------------------------------------------------------------
# Attention (diffusers/models/attention_processor.py, attention.py, activations.py,
#            transformers/transformer_2d.py)
# ---------------------------------------------------------------------------------------------------------------

class Attention(nn.Module):
    """diffusers.models.attention_processor.Attention run by AttnProcessor2_0 (the torch >= 2 default), for the
    two uses in the supported blocks:

    * spatial self-attention of AttnDownBlock2D / AttnUpBlock2D / UNetMidBlock2D (`_from_deprecated_attn_block`):
      bias=True on to_q/to_k/to_v, its own optional `group_norm`, residual_connection=True and
      rescale_output_factor = the block's output_scale_factor.  On a [B, C, H, W] input:
        r = x;  x = x.view(B, C, HW).transpose(1, 2);  x = group_norm over channels (if any);
        out = to_out.0(MHA(to_q x, to_k x, to_v x)) -> [B, C, H, W];  out = (out + r) / rescale_output_factor
      (upcast_softmax=True is a no-op under scaled_dot_product_attention and in float32/64.)
      NOTE: the gradient of `to_k.bias` is analytically zero: it adds q.b_k to every score of a query row, and
      softmax is invariant to that.
    * attn1 / attn2 of BasicTransformerBlock: bias=False on to_q/to_k/to_v, no norm, no residual here.

    MHA: heads of size dim_head, softmax(q k^T * dim_head^-0.5) v; to_out.0 is a Linear with bias, to_out.1 a
    Dropout.  inner_dim = heads * dim_head may differ from query_dim (diffusers allows it)."""

    def __init__(self, query_dim, cross_attention_dim=None, heads=8, dim_head=64, bias=False, norm_num_groups=None,
                 eps=1e-5, rescale_output_factor=1.0, residual_connection=False, dropout=0.0):
        super().__init__()
        if heads < 1:
            raise ValueError(f"Attention needs at least one head (query_dim {query_dim}, dim_head {dim_head})")
        self.heads = heads
        self.dim_head = dim_head
        self.inner_dim = heads * dim_head
        self.scale = dim_head ** -0.5
        self.rescale_output_factor = rescale_output_factor
        self.residual_connection = residual_connection
        kv_dim = cross_attention_dim if cross_attention_dim is not None else query_dim
        self.group_norm = None
        if norm_num_groups is not None:
            self.group_norm = nn.GroupNorm(num_channels=query_dim, num_groups=norm_num_groups, eps=eps, affine=True)
        self.to_q = nn.Linear(query_dim, self.inner_dim, bias=bias)
        self.to_k = nn.Linear(kv_dim, self.inner_dim, bias=bias)
        self.to_v = nn.Linear(kv_dim, self.inner_dim, bias=bias)
        self.to_out = nn.ModuleList([nn.Linear(self.inner_dim, query_dim, bias=True), nn.Dropout(dropout)])

    def forward(self, hidden_states, encoder_hidden_states=None):
        residual = hidden_states
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch, channel, height * width).transpose(1, 2)
        batch = hidden_states.shape[0]
        if self.group_norm is not None:
            hidden_states = self.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query = self.to_q(hidden_states)
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        key = self.to_k(context)
        value = self.to_v(context)
        query = query.view(batch, -1, self.heads, self.dim_head).transpose(1, 2)
        key = key.view(batch, -1, self.heads, self.dim_head).transpose(1, 2)
        value = value.view(batch, -1, self.heads, self.dim_head).transpose(1, 2)
        # F.scaled_dot_product_attention(query, key, value) with its default scale 1/sqrt(dim_head)
        probs = torch.softmax(torch.matmul(query, key.transpose(-1, -2)) * self.scale, dim=-1)
        hidden_states = torch.matmul(probs, value)
        hidden_states = hidden_states.transpose(1, 2).reshape(batch, -1, self.heads * self.dim_head)
        hidden_states = self.to_out[1](self.to_out[0](hidden_states))
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch, channel, height, width)
        if self.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / self.rescale_output_factor


class GEGLU(nn.Module):
    """diffusers.models.activations.GEGLU: proj -> (h, gate) halves of the last dim -> h * gelu(gate) (erf gelu)."""

    def __init__(self, dim_in, dim_out):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, hidden_states):
        hidden_states, gate = self.proj(hidden_states).chunk(2, dim=-1)
        return hidden_states * F.gelu(gate)


class FeedForward(nn.Module):
    """diffusers.models.attention.FeedForward, activation "geglu", mult 4: net = [GEGLU, Dropout, Linear]."""

    def __init__(self, dim, mult=4, dropout=0.0):
        super().__init__()
        inner_dim = int(dim * mult)
        self.net = nn.ModuleList([GEGLU(dim, inner_dim), nn.Dropout(dropout), nn.Linear(inner_dim, dim)])

    def forward(self, hidden_states):
        for module in self.net:
            hidden_states = module(hidden_states)
        return hidden_states


class BasicTransformerBlock(nn.Module):
    """diffusers.models.attention.BasicTransformerBlock, norm_type "layer_norm" (eps 1e-5, affine),
    attention_bias False, only_cross_attention False, double_self_attention False:
        h = attn1(norm1(h)) + h;  h = attn2(norm2(h), encoder_hidden_states) + h;  h = ff(norm3(h)) + h"""

    def __init__(self, dim, num_attention_heads, attention_head_dim, cross_attention_dim, dropout=0.0,
                 norm_eps=1e-5):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps, elementwise_affine=True)
        self.attn1 = Attention(dim, heads=num_attention_heads, dim_head=attention_head_dim, dropout=dropout,
                               bias=False)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps, elementwise_affine=True)
        self.attn2 = Attention(dim, cross_attention_dim=cross_attention_dim, heads=num_attention_heads,
                               dim_head=attention_head_dim, dropout=dropout, bias=False)
        self.norm3 = nn.LayerNorm(dim, eps=norm_eps, elementwise_affine=True)
        self.ff = FeedForward(dim, dropout=dropout)

    def forward(self, hidden_states, encoder_hidden_states):
        hidden_states = self.attn1(self.norm1(hidden_states)) + hidden_states
        hidden_states = self.attn2(self.norm2(hidden_states), encoder_hidden_states) + hidden_states
        return self.ff(self.norm3(hidden_states)) + hidden_states


class Transformer2DModel(nn.Module):
    """diffusers.models.transformers.transformer_2d.Transformer2DModel, continuous input (in_channels set):
        r = x;  x = norm(x)  (GroupNorm, eps 1e-6 fixed, NOT the U-Net's norm_eps)
        conv:   x = proj_in(x) (1x1 conv) -> [B, HW, inner];  blocks;  -> [B, inner, H, W];  x = proj_out(x)
        linear: x -> [B, HW, C];  x = proj_in(x) (Linear);  blocks;  x = proj_out(x);  -> [B, C, H, W]
        out = x + r
    inner_dim = num_attention_heads * attention_head_dim."""

    def __init__(self, num_attention_heads, attention_head_dim, in_channels, num_layers, cross_attention_dim,
                 norm_num_groups, use_linear_projection, dropout=0.0):
        super().__init__()
        self.use_linear_projection = use_linear_projection
        self.inner_dim = num_attention_heads * attention_head_dim
        self.norm = nn.GroupNorm(num_groups=norm_num_groups, num_channels=in_channels, eps=1e-6, affine=True)
        if use_linear_projection:
            self.proj_in = nn.Linear(in_channels, self.inner_dim)
        else:
            self.proj_in = nn.Conv2d(in_channels, self.inner_dim, kernel_size=1, stride=1, padding=0)
        self.transformer_blocks = nn.ModuleList([
            BasicTransformerBlock(self.inner_dim, num_attention_heads, attention_head_dim,
                                  cross_attention_dim=cross_attention_dim, dropout=dropout)
            for _ in range(num_layers)])
        if use_linear_projection:
            self.proj_out = nn.Linear(self.inner_dim, in_channels)
        else:
            self.proj_out = nn.Conv2d(self.inner_dim, in_channels, kernel_size=1, stride=1, padding=0)

    def forward(self, hidden_states, encoder_hidden_states):
        batch, _, height, width = hidden_states.shape
        residual = hidden_states
        hidden_states = self.norm(hidden_states)
        if not self.use_linear_projection:
            hidden_states = self.proj_in(hidden_states)
            inner_dim = hidden_states.shape[1]
            hidden_states = hidden_states.permute(0, 2, 3, 1).reshape(batch, height * width, inner_dim)
        else:
            inner_dim = hidden_states.shape[1]  # QUIRK (harmless): in_channels, taken before proj_in
            hidden_states = hidden_states.permute(0, 2, 3, 1).reshape(batch, height * width, inner_dim)
            hidden_states = self.proj_in(hidden_states)
        for block in self.transformer_blocks:
            hidden_states = block(hidden_states, encoder_hidden_states)
        if not self.use_linear_projection:
            hidden_states = hidden_states.reshape(batch, height, width, inner_dim).permute(0, 3, 1, 2).contiguous()
            hidden_states = self.proj_out(hidden_states)
        else:
            hidden_states = self.proj_out(hidden_states)
            hidden_states = hidden_states.reshape(batch, height, width, inner_dim).permute(0, 3, 1, 2).contiguous()
        return hidden_states + residual


# ---------------------------------------------------------------------------------------------------------------
# U-Net blocks (diffusers/models/unets/unet_2d_blocks.py)
# ---------------------------------------------------------------------------------------------------------------

def _spatial_attention(channels, attention_head_dim, output_scale_factor, eps, norm_num_groups):
    """The Attention that AttnDownBlock2D / AttnUpBlock2D / UNetMidBlock2D build: heads = channels // head_dim."""
    return Attention(channels, heads=channels // attention_head_dim, dim_head=attention_head_dim,
                     rescale_output_factor=output_scale_factor, eps=eps, norm_num_groups=norm_num_groups,
                     residual_connection=True, bias=True)


class DownBlock2D(nn.Module):
    """diffusers DownBlock2D: num_layers resnets (in -> out, then out -> out), then a stride-2 conv Downsample2D
    (padding downsample_padding) unless final.  QUIRK: get_down_block does not pass downsample_type to it, so it
    downsamples with a conv even when the U-Net's downsample_type is "resnet".
    Returns (h, skips): one skip per resnet plus one after the downsampler."""

    def __init__(self, in_channels, out_channels, temb_channels, num_layers, eps, groups, time_scale_shift,
                 add_downsample, downsample_padding, dropout=0.0):
        super().__init__()
        self.resnets = nn.ModuleList([
            ResnetBlock2D(in_channels if i == 0 else out_channels, out_channels, temb_channels, groups, eps,
                          time_scale_shift, dropout=dropout)
            for i in range(num_layers)])
        self.downsamplers = None
        if add_downsample:
            self.downsamplers = nn.ModuleList([
                Downsample2D(out_channels, use_conv=True, out_channels=out_channels, padding=downsample_padding)])

    def forward(self, hidden_states, temb, encoder_hidden_states=None):
        output_states = ()
        for resnet in self.resnets:
            hidden_states = resnet(hidden_states, temb)
            output_states += (hidden_states,)
        if self.downsamplers is not None:
            for downsampler in self.downsamplers:
                hidden_states = downsampler(hidden_states)
            output_states += (hidden_states,)
        return hidden_states, output_states


class AttnDownBlock2D(nn.Module):
    """diffusers AttnDownBlock2D: (resnet, spatial attention) pairs; the attention's group norm always has the
    U-Net's norm_num_groups (not attn_norm_num_groups) and eps norm_eps.  downsample_type "conv": Downsample2D;
    "resnet": ResnetBlock2D(out, out, down=True) called with temb; None (final block): no downsampler."""

    def __init__(self, in_channels, out_channels, temb_channels, num_layers, eps, groups, time_scale_shift,
                 attention_head_dim, downsample_padding, downsample_type, dropout=0.0):
        super().__init__()
        self.downsample_type = downsample_type
        self.resnets = nn.ModuleList([
            ResnetBlock2D(in_channels if i == 0 else out_channels, out_channels, temb_channels, groups, eps,
                          time_scale_shift, dropout=dropout)
            for i in range(num_layers)])
        self.attentions = nn.ModuleList([
            _spatial_attention(out_channels, attention_head_dim, 1.0, eps, groups) for _ in range(num_layers)])
        if downsample_type == "conv":
            self.downsamplers = nn.ModuleList([
                Downsample2D(out_channels, use_conv=True, out_channels=out_channels, padding=downsample_padding)])
        elif downsample_type == "resnet":
            self.downsamplers = nn.ModuleList([
                ResnetBlock2D(out_channels, out_channels, temb_channels, groups, eps, time_scale_shift,
                              dropout=dropout, down=True)])
        else:
            self.downsamplers = None

    def forward(self, hidden_states, temb, encoder_hidden_states=None):
        output_states = ()
        for resnet, attn in zip(self.resnets, self.attentions):
            hidden_states = attn(resnet(hidden_states, temb))
            output_states += (hidden_states,)
        if self.downsamplers is not None:
            for downsampler in self.downsamplers:
                if self.downsample_type == "resnet":
                    hidden_states = downsampler(hidden_states, temb)
                else:
                    hidden_states = downsampler(hidden_states)
            output_states += (hidden_states,)
        return hidden_states, output_states


class CrossAttnDownBlock2D(nn.Module):
    """diffusers CrossAttnDownBlock2D: (resnet, Transformer2DModel(heads, out // heads)) pairs, the transformer's
    GroupNorm with the U-Net's norm_num_groups; Downsample2D unless final."""

    def __init__(self, in_channels, out_channels, temb_channels, num_layers, eps, groups, time_scale_shift,
                 num_attention_heads, transformer_layers, cross_attention_dim, use_linear_projection,
                 add_downsample, downsample_padding, dropout=0.0):
        super().__init__()
        self.resnets = nn.ModuleList([
            ResnetBlock2D(in_channels if i == 0 else out_channels, out_channels, temb_channels, groups, eps,
                          time_scale_shift, dropout=dropout)
            for i in range(num_layers)])
        self.attentions = nn.ModuleList([
            Transformer2DModel(num_attention_heads, out_channels // num_attention_heads, out_channels,
                               transformer_layers, cross_attention_dim, groups, use_linear_projection)
            for _ in range(num_layers)])
        self.downsamplers = None
        if add_downsample:
            self.downsamplers = nn.ModuleList([
                Downsample2D(out_channels, use_conv=True, out_channels=out_channels, padding=downsample_padding)])

    def forward(self, hidden_states, temb, encoder_hidden_states=None):
        output_states = ()
        for resnet, attn in zip(self.resnets, self.attentions):
            hidden_states = attn(resnet(hidden_states, temb), encoder_hidden_states)
            output_states += (hidden_states,)
        if self.downsamplers is not None:
            for downsampler in self.downsamplers:
                hidden_states = downsampler(hidden_states)
            output_states += (hidden_states,)
        return hidden_states, output_states


class UNetMidBlock2D(nn.Module):
    """diffusers UNetMidBlock2D (num_layers 1): resnet, [attention], resnet; resnets and the attention use
    output_scale_factor = mid_block_scale_factor.  Attention: heads = C // attention_head_dim, eps norm_eps,
    group norm with attn_groups groups, where QUIRK: attn_groups None means norm_num_groups when
    resnet_time_scale_shift == "default" and NO group norm when it is "scale_shift".  add_attention False:
    attentions = [None] (no parameters, skipped)."""

    def __init__(self, in_channels, temb_channels, eps, groups, attn_groups, time_scale_shift, attention_head_dim,
                 output_scale_factor, add_attention, dropout=0.0):
        super().__init__()
        if attn_groups is None:
            attn_groups = groups if time_scale_shift == "default" else None
        if attention_head_dim is None:
            attention_head_dim = in_channels
        self.resnets = nn.ModuleList([
            ResnetBlock2D(in_channels, in_channels, temb_channels, groups, eps, time_scale_shift,
                          output_scale_factor=output_scale_factor, dropout=dropout)
            for _ in range(2)])
        attention = None
        if add_attention:
            attention = _spatial_attention(in_channels, attention_head_dim, output_scale_factor, eps, attn_groups)
        self.attentions = nn.ModuleList([attention])

    def forward(self, hidden_states, temb, encoder_hidden_states=None):
        hidden_states = self.resnets[0](hidden_states, temb)
        for attn, resnet in zip(self.attentions, self.resnets[1:]):
            if attn is not None:
                hidden_states = attn(hidden_states)
            hidden_states = resnet(hidden_states, temb)
        return hidden_states


class UNetMidBlock2DCrossAttn(nn.Module):
    """diffusers UNetMidBlock2DCrossAttn (num_layers 1): resnet, Transformer2DModel(heads, C // heads), resnet;
    resnets use output_scale_factor = mid_block_scale_factor (the transformer has no rescale)."""

    def __init__(self, in_channels, temb_channels, eps, groups, time_scale_shift, num_attention_heads,
                 transformer_layers, cross_attention_dim, use_linear_projection, output_scale_factor, dropout=0.0):
        super().__init__()
        self.resnets = nn.ModuleList([
            ResnetBlock2D(in_channels, in_channels, temb_channels, groups, eps, time_scale_shift,
                          output_scale_factor=output_scale_factor, dropout=dropout)
            for _ in range(2)])
        self.attentions = nn.ModuleList([
            Transformer2DModel(num_attention_heads, in_channels // num_attention_heads, in_channels,
                               transformer_layers, cross_attention_dim, groups, use_linear_projection)])

    def forward(self, hidden_states, temb, encoder_hidden_states=None):
        hidden_states = self.resnets[0](hidden_states, temb)
        for attn, resnet in zip(self.attentions, self.resnets[1:]):
            hidden_states = resnet(attn(hidden_states, encoder_hidden_states), temb)
        return hidden_states


def _up_resnet_channels(i, num_layers, in_channels, prev_output_channel, out_channels):
    """Input channels of the i-th resnet of an up block: its input (prev_output_channel for i == 0, else
    out_channels) concatenated with the popped skip (in_channels for the last resnet, else out_channels)."""
    res_skip_channels = in_channels if i == num_layers - 1 else out_channels
    resnet_in_channels = prev_output_channel if i == 0 else out_channels
    return resnet_in_channels + res_skip_channels


class UpBlock2D(nn.Module):
    """diffusers UpBlock2D: per resnet, h = resnet(cat([h, skips.pop()], dim=1)); then Upsample2D(use_conv) unless
    final (nearest 2x or to upsample_size).  QUIRK: it ignores upsample_type (always a conv upsampler)."""

    def __init__(self, in_channels, prev_output_channel, out_channels, temb_channels, num_layers, eps, groups,
                 time_scale_shift, add_upsample, dropout=0.0):
        super().__init__()
        self.resnets = nn.ModuleList([
            ResnetBlock2D(_up_resnet_channels(i, num_layers, in_channels, prev_output_channel, out_channels),
                          out_channels, temb_channels, groups, eps, time_scale_shift, dropout=dropout)
            for i in range(num_layers)])
        self.upsamplers = None
        if add_upsample:
            self.upsamplers = nn.ModuleList([Upsample2D(out_channels, use_conv=True, out_channels=out_channels)])

    def forward(self, hidden_states, res_hidden_states_tuple, temb, encoder_hidden_states=None, upsample_size=None):
        for resnet in self.resnets:
            res_hidden_states = res_hidden_states_tuple[-1]
            res_hidden_states_tuple = res_hidden_states_tuple[:-1]
            hidden_states = resnet(torch.cat([hidden_states, res_hidden_states], dim=1), temb)
        if self.upsamplers is not None:
            for upsampler in self.upsamplers:
                hidden_states = upsampler(hidden_states, upsample_size)
        return hidden_states


class AttnUpBlock2D(nn.Module):
    """diffusers AttnUpBlock2D: per resnet, h = attn(resnet(cat([h, skips.pop()]))); upsample_type "conv":
    Upsample2D(use_conv); "resnet": ResnetBlock2D(out, out, up=True) called with temb; None (final): none.
    (It takes no upsample_size: UNet2DModel never passes one.)"""

    def __init__(self, in_channels, prev_output_channel, out_channels, temb_channels, num_layers, eps, groups,
                 time_scale_shift, attention_head_dim, upsample_type, dropout=0.0):
        super().__init__()
        self.upsample_type = upsample_type
        self.resnets = nn.ModuleList([
            ResnetBlock2D(_up_resnet_channels(i, num_layers, in_channels, prev_output_channel, out_channels),
                          out_channels, temb_channels, groups, eps, time_scale_shift, dropout=dropout)
            for i in range(num_layers)])
        self.attentions = nn.ModuleList([
            _spatial_attention(out_channels, attention_head_dim, 1.0, eps, groups) for _ in range(num_layers)])
        if upsample_type == "conv":
            self.upsamplers = nn.ModuleList([Upsample2D(out_channels, use_conv=True, out_channels=out_channels)])
        elif upsample_type == "resnet":
            self.upsamplers = nn.ModuleList([
                ResnetBlock2D(out_channels, out_channels, temb_channels, groups, eps, time_scale_shift,
                              dropout=dropout, up=True)])
        else:
            self.upsamplers = None

    def forward(self, hidden_states, res_hidden_states_tuple, temb, encoder_hidden_states=None, upsample_size=None):
        for resnet, attn in zip(self.resnets, self.attentions):
            res_hidden_states = res_hidden_states_tuple[-1]
            res_hidden_states_tuple = res_hidden_states_tuple[:-1]
            hidden_states = attn(resnet(torch.cat([hidden_states, res_hidden_states], dim=1), temb))
        if self.upsamplers is not None:
            for upsampler in self.upsamplers:
                if self.upsample_type == "resnet":
                    hidden_states = upsampler(hidden_states, temb)
                else:
                    hidden_states = upsampler(hidden_states)
        return hidden_states


class CrossAttnUpBlock2D(nn.Module):
    """diffusers CrossAttnUpBlock2D: per resnet, h = transformer(resnet(cat([h, skips.pop()])), context);
    Upsample2D(use_conv) unless final (to upsample_size when given)."""

    def __init__(self, in_channels, prev_output_channel, out_channels, temb_channels, num_layers, eps, groups,
                 time_scale_shift, num_attention_heads, transformer_layers, cross_attention_dim,
                 use_linear_projection, add_upsample, dropout=0.0):
        super().__init__()
        self.resnets = nn.ModuleList([
            ResnetBlock2D(_up_resnet_channels(i, num_layers, in_channels, prev_output_channel, out_channels),
                          out_channels, temb_channels, groups, eps, time_scale_shift, dropout=dropout)
            for i in range(num_layers)])
        self.attentions = nn.ModuleList([
            Transformer2DModel(num_attention_heads, out_channels // num_attention_heads, out_channels,
                               transformer_layers, cross_attention_dim, groups, use_linear_projection)
            for _ in range(num_layers)])
        self.upsamplers = None
        if add_upsample:
            self.upsamplers = nn.ModuleList([Upsample2D(out_channels, use_conv=True, out_channels=out_channels)])

    def forward(self, hidden_states, res_hidden_states_tuple, temb, encoder_hidden_states=None, upsample_size=None):
        for resnet, attn in zip(self.resnets, self.attentions):
            res_hidden_states = res_hidden_states_tuple[-1]
            res_hidden_states_tuple = res_hidden_states_tuple[:-1]
            hidden_states = resnet(torch.cat([hidden_states, res_hidden_states], dim=1), temb)
            hidden_states = attn(hidden_states, encoder_hidden_states)
        if self.upsamplers is not None:
            for upsampler in self.upsamplers:
                hidden_states = upsampler(hidden_states, upsample_size)
        return hidden_states


# ---------------------------------------------------------------------------------------------------------------
# The two U-Nets (diffusers/models/unets/unet_2d.py, unet_2d_condition.py)
# ---------------------------------------------------------------------------------------------------------------

def _fill_config(class_name, defaults, config):
    unknown = sorted(set(config) - set(defaults) - {"_class_name", "_diffusers_version", "_name_or_path"})
    if unknown:
        raise ValueError(f"{class_name}: unknown config keys {unknown}")
    if config.get("_class_name", class_name) != class_name:
        raise ValueError(f"{class_name}: config _class_name is {config['_class_name']!r}")
    full = dict(defaults)
    full.update({k: v for k, v in config.items() if not k.startswith("_")})
    for key, value in full.items():
        if isinstance(value, tuple):
            full[key] = list(value)
    return full


def _require(condition, message):
    if not condition:
        raise ValueError(message)


def _check_groups(class_name, groups, channels):
    _require(isinstance(groups, int) and groups > 0,
             f"{class_name}: norm_num_groups must be a positive int, got {groups!r}")
    for c in channels:
        _require(c % groups == 0, f"{class_name}: norm_num_groups {groups} does not divide block channels {c}")


def _timesteps_tensor(timestep, sample, python_float_dtype):
    """The [B] timestep tensor both U-Nets build: a scalar is broadcast to the batch.  A Python number becomes
    torch.long in UNet2DModel (QUIRK: 10.5 -> 10) and float64 (int64 for ints) in UNet2DConditionModel."""
    if not torch.is_tensor(timestep):
        dtype = python_float_dtype if isinstance(timestep, float) else torch.int64
        timestep = torch.tensor([timestep], dtype=dtype, device=sample.device)
    elif timestep.dim() == 0:
        timestep = timestep[None].to(sample.device)
    if timestep.dim() != 1 or timestep.shape[0] not in (1, sample.shape[0]):
        raise ValueError(f"timestep of shape {tuple(timestep.shape)} does not match batch {sample.shape[0]}")
    return timestep.expand(sample.shape[0])


UNET2D_DEFAULTS = {
    "sample_size": None, "in_channels": 3, "out_channels": 3, "center_input_sample": False,
    "time_embedding_type": "positional", "time_embedding_dim": None, "freq_shift": 0, "flip_sin_to_cos": True,
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"],
    "mid_block_type": "UNetMidBlock2D",
    "up_block_types": ["AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
    "block_out_channels": [224, 448, 672, 896], "layers_per_block": 2, "mid_block_scale_factor": 1,
    "downsample_padding": 1, "downsample_type": "conv", "upsample_type": "conv", "dropout": 0.0,
    "act_fn": "silu", "attention_head_dim": 8, "norm_num_groups": 32, "attn_norm_num_groups": None,
    "norm_eps": 1e-5, "resnet_time_scale_shift": "default", "add_attention": True, "class_embed_type": None,
    "num_class_embeds": None, "num_train_timesteps": None,
}


class UNet2DModel(nn.Module):
    """diffusers.models.unets.unet_2d.UNet2DModel (positional time embedding).

    forward(sample [B, in, H, W], timestep [B] or scalar, class_labels) -> [B, out, H, W]:
      center_input_sample: x = 2x - 1
      emb = time_embedding(Timesteps(t));  + class_embedding(labels)  (nn.Embedding for class_embed_type None with
        num_class_embeds; TimestepEmbedding of the sinusoidal embedding of the labels for "timestep";
        the labels themselves, float [B, time_embed_dim], for "identity")
      h = conv_in(x) (3x3);  skips = (h,);  down blocks append their skips;  mid block;
      up block i pops len(resnets) = layers_per_block + 1 skips;  conv_out(SiLU(conv_norm_out(h))) (3x3)
    time_embed_dim = time_embedding_dim or 4 * block_out_channels[0].  attention_head_dim None: one head of
    size channels (block channels).  H and W must be divisible by 2^(levels - 1) (no upsample_size here)."""

    def __init__(self, **config):
        super().__init__()
        name = "UNet2DModel"
        c = _fill_config(name, UNET2D_DEFAULTS, config)
        self.config = c
        boc = list(c["block_out_channels"])
        n = len(boc)
        _require(c["time_embedding_type"] == "positional",
                 f"{name}: time_embedding_type {c['time_embedding_type']!r} is not supported (positional only)")
        _require(c["act_fn"] == "silu", f"{name}: act_fn {c['act_fn']!r} is not supported (silu only)")
        _require(len(c["down_block_types"]) == len(c["up_block_types"]) == n,
                 f"{name}: down_block_types, up_block_types and block_out_channels must have the same length")
        _require(all(t in ("DownBlock2D", "AttnDownBlock2D") for t in c["down_block_types"]),
                 f"{name}: unsupported down_block_types {c['down_block_types']}")
        _require(all(t in ("UpBlock2D", "AttnUpBlock2D") for t in c["up_block_types"]),
                 f"{name}: unsupported up_block_types {c['up_block_types']}")
        _require(c["mid_block_type"] in ("UNetMidBlock2D", None),
                 f"{name}: unsupported mid_block_type {c['mid_block_type']!r}")
        _require(c["downsample_type"] in ("conv", "resnet"), f"{name}: downsample_type {c['downsample_type']!r}")
        _require(c["upsample_type"] in ("conv", "resnet"), f"{name}: upsample_type {c['upsample_type']!r}")
        _require(c["resnet_time_scale_shift"] in ("default", "scale_shift"),
                 f"{name}: resnet_time_scale_shift {c['resnet_time_scale_shift']!r}")
        _require(c["class_embed_type"] in (None, "timestep", "identity"),
                 f"{name}: class_embed_type {c['class_embed_type']!r} is not supported")
        _require(isinstance(c["layers_per_block"], int) and c["layers_per_block"] >= 1,
                 f"{name}: layers_per_block must be a positive int")
        _check_groups(name, c["norm_num_groups"], boc)
        ahd = c["attention_head_dim"]
        _require(ahd is None or (isinstance(ahd, int) and ahd > 0), f"{name}: attention_head_dim {ahd!r}")
        groups, eps, shift, dropout = c["norm_num_groups"], c["norm_eps"], c["resnet_time_scale_shift"], c["dropout"]
        time_embed_dim = c["time_embedding_dim"] or boc[0] * 4

        self.conv_in = nn.Conv2d(c["in_channels"], boc[0], kernel_size=3, padding=(1, 1))
        self.time_proj = Timesteps(boc[0], c["flip_sin_to_cos"], c["freq_shift"])
        self.time_embedding = TimestepEmbedding(boc[0], time_embed_dim)
        if c["class_embed_type"] is None and c["num_class_embeds"] is not None:
            self.class_embedding = nn.Embedding(c["num_class_embeds"], time_embed_dim)
        elif c["class_embed_type"] == "timestep":  # num_class_embeds is ignored
            self.class_embedding = TimestepEmbedding(boc[0], time_embed_dim)
        elif c["class_embed_type"] == "identity":
            self.class_embedding = nn.Identity()
        else:
            self.class_embedding = None

        self.down_blocks = nn.ModuleList([])
        output_channel = boc[0]
        for i, block_type in enumerate(c["down_block_types"]):
            input_channel, output_channel = output_channel, boc[i]
            is_final = i == n - 1
            if block_type == "DownBlock2D":
                block = DownBlock2D(input_channel, output_channel, time_embed_dim, c["layers_per_block"], eps, groups,
                                    shift, not is_final, c["downsample_padding"], dropout)
            else:
                block = AttnDownBlock2D(input_channel, output_channel, time_embed_dim, c["layers_per_block"], eps,
                                        groups, shift, ahd if ahd is not None else output_channel,
                                        c["downsample_padding"], None if is_final else c["downsample_type"], dropout)
            self.down_blocks.append(block)

        self.mid_block = None
        if c["mid_block_type"] is not None:
            self.mid_block = UNetMidBlock2D(boc[-1], time_embed_dim, eps, groups, c["attn_norm_num_groups"], shift,
                                            ahd if ahd is not None else boc[-1], c["mid_block_scale_factor"],
                                            c["add_attention"], dropout)

        self.up_blocks = nn.ModuleList([])
        reversed_boc = list(reversed(boc))
        output_channel = reversed_boc[0]
        for i, block_type in enumerate(c["up_block_types"]):
            prev_output_channel, output_channel = output_channel, reversed_boc[i]
            input_channel = reversed_boc[min(i + 1, n - 1)]
            is_final = i == n - 1
            if block_type == "UpBlock2D":
                block = UpBlock2D(input_channel, prev_output_channel, output_channel, time_embed_dim,
                                  c["layers_per_block"] + 1, eps, groups, shift, not is_final, dropout)
            else:
                block = AttnUpBlock2D(input_channel, prev_output_channel, output_channel, time_embed_dim,
                                      c["layers_per_block"] + 1, eps, groups, shift,
                                      ahd if ahd is not None else output_channel,
                                      None if is_final else c["upsample_type"], dropout)
            self.up_blocks.append(block)

        self.conv_norm_out = nn.GroupNorm(num_channels=boc[0], num_groups=groups, eps=eps)
        self.conv_act = nn.SiLU()
        self.conv_out = nn.Conv2d(boc[0], c["out_channels"], kernel_size=3, padding=1)

    def forward(self, sample, timestep, class_labels=None):
        dtype = self.conv_in.weight.dtype
        if self.config["center_input_sample"]:
            sample = 2 * sample - 1.0
        timesteps = _timesteps_tensor(timestep, sample, torch.int64)
        emb = self.time_embedding(self.time_proj(timesteps, dtype).to(dtype))
        if self.class_embedding is not None:
            if class_labels is None:
                raise ValueError("class_labels should be provided when doing class conditioning")
            if self.config["class_embed_type"] == "timestep":
                class_labels = self.time_proj(class_labels, dtype)
            emb = emb + self.class_embedding(class_labels).to(dtype)
        elif class_labels is not None:
            raise ValueError("class_embedding needs to be initialized in order to use class conditioning")

        sample = self.conv_in(sample)
        down_block_res_samples = (sample,)
        for block in self.down_blocks:
            sample, res_samples = block(sample, emb)
            down_block_res_samples += res_samples
        if self.mid_block is not None:
            sample = self.mid_block(sample, emb)
        for block in self.up_blocks:
            res_samples = down_block_res_samples[-len(block.resnets):]
            down_block_res_samples = down_block_res_samples[:-len(block.resnets)]
            sample = block(sample, res_samples, emb)
        return self.conv_out(self.conv_act(self.conv_norm_out(sample)))


UNET2D_CONDITION_DEFAULTS = {
    "sample_size": None, "in_channels": 4, "out_channels": 4, "center_input_sample": False,
    "flip_sin_to_cos": True, "freq_shift": 0,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "only_cross_attention": False, "block_out_channels": [320, 640, 1280, 1280], "layers_per_block": 2,
    "downsample_padding": 1, "mid_block_scale_factor": 1, "dropout": 0.0, "act_fn": "silu", "norm_num_groups": 32,
    "norm_eps": 1e-5, "cross_attention_dim": 1280, "transformer_layers_per_block": 1,
    "reverse_transformer_layers_per_block": None, "encoder_hid_dim": None, "encoder_hid_dim_type": None,
    "attention_head_dim": 8, "num_attention_heads": None, "dual_cross_attention": False,
    "use_linear_projection": False, "class_embed_type": None, "addition_embed_type": None,
    "addition_time_embed_dim": None, "num_class_embeds": None, "upcast_attention": False,
    "resnet_time_scale_shift": "default", "resnet_skip_time_act": False, "resnet_out_scale_factor": 1.0,
    "time_embedding_type": "positional", "time_embedding_dim": None, "time_embedding_act_fn": None,
    "timestep_post_act": None, "time_cond_proj_dim": None, "conv_in_kernel": 3, "conv_out_kernel": 3,
    "projection_class_embeddings_input_dim": None, "attention_type": "default", "class_embeddings_concat": False,
    "mid_block_only_cross_attention": None, "cross_attention_norm": None, "addition_embed_type_num_heads": 64,
}

# Keys that must keep their default (features not mirrored).  Not listed, and accepted with any value because
# diffusers ignores them for the supported block types: resnet_skip_time_act, resnet_out_scale_factor,
# cross_attention_norm, mid_block_only_cross_attention (Simple* blocks only), addition_embed_type_num_heads
# (addition_embed_type "text" only), upcast_attention (no effect under scaled_dot_product_attention, and a no-op
# in float32), sample_size and dropout (eval mode).
_CONDITION_FIXED = ["only_cross_attention", "reverse_transformer_layers_per_block", "encoder_hid_dim",
                    "encoder_hid_dim_type", "num_attention_heads", "dual_cross_attention", "addition_embed_type",
                    "addition_time_embed_dim", "time_embedding_act_fn", "timestep_post_act", "time_cond_proj_dim",
                    "projection_class_embeddings_input_dim", "attention_type", "class_embeddings_concat"]


class UNet2DConditionModel(nn.Module):
    """diffusers.models.unets.unet_2d_condition.UNet2DConditionModel (supported subset, see the module doc).

    forward(sample [B, in, H, W], timestep, encoder_hidden_states [B, S, cross_attention_dim], class_labels):
    as UNet2DModel, plus: QUIRK attention_head_dim is the NUMBER of heads per block (num_attention_heads =
    attention_head_dim; head size = channels // heads); the mid block uses the last block's heads, up block i the
    reversed list's i-th; conv_in / conv_out have odd kernels k with padding (k - 1) // 2; the time embedding of
    class_embed_type "timestep" labels is cast to the sample dtype first; when H or W is not divisible by
    2^(number of upsamplers), each non-final up block upsamples to the size of the next skip (nearest)."""

    def __init__(self, **config):
        super().__init__()
        name = "UNet2DConditionModel"
        c = _fill_config(name, UNET2D_CONDITION_DEFAULTS, config)
        self.config = c
        for key in _CONDITION_FIXED:
            _require(c[key] == UNET2D_CONDITION_DEFAULTS[key],
                     f"{name}: {key} = {c[key]!r} is not supported (only {UNET2D_CONDITION_DEFAULTS[key]!r})")
        boc = list(c["block_out_channels"])
        n = len(boc)
        _require(c["time_embedding_type"] == "positional",
                 f"{name}: time_embedding_type {c['time_embedding_type']!r} is not supported (positional only)")
        _require(c["act_fn"] == "silu", f"{name}: act_fn {c['act_fn']!r} is not supported (silu only)")
        _require(len(c["down_block_types"]) == len(c["up_block_types"]) == n,
                 f"{name}: down_block_types, up_block_types and block_out_channels must have the same length")
        _require(all(t in ("CrossAttnDownBlock2D", "DownBlock2D") for t in c["down_block_types"]),
                 f"{name}: unsupported down_block_types {c['down_block_types']}")
        _require(all(t in ("CrossAttnUpBlock2D", "UpBlock2D") for t in c["up_block_types"]),
                 f"{name}: unsupported up_block_types {c['up_block_types']}")
        _require(c["mid_block_type"] in ("UNetMidBlock2DCrossAttn", None),
                 f"{name}: unsupported mid_block_type {c['mid_block_type']!r}")
        _require(c["resnet_time_scale_shift"] in ("default", "scale_shift"),
                 f"{name}: resnet_time_scale_shift {c['resnet_time_scale_shift']!r}")
        _require(c["class_embed_type"] in (None, "timestep", "identity"),
                 f"{name}: class_embed_type {c['class_embed_type']!r} is not supported")
        _require(isinstance(c["layers_per_block"], int) and c["layers_per_block"] >= 1,
                 f"{name}: layers_per_block must be a positive int")
        _require(isinstance(c["transformer_layers_per_block"], int) and c["transformer_layers_per_block"] >= 1,
                 f"{name}: transformer_layers_per_block must be a positive int")
        _require(isinstance(c["cross_attention_dim"], int) and c["cross_attention_dim"] > 0,
                 f"{name}: cross_attention_dim must be a positive int")
        for key in ("conv_in_kernel", "conv_out_kernel"):
            _require(isinstance(c[key], int) and c[key] >= 1 and c[key] % 2 == 1,
                     f"{name}: {key} must be an odd positive int, got {c[key]!r}")
        _check_groups(name, c["norm_num_groups"], boc)
        heads = c["attention_head_dim"]
        if isinstance(heads, int):
            heads = [heads] * n
        _require(isinstance(heads, list) and len(heads) == n and all(isinstance(h, int) and h > 0 for h in heads),
                 f"{name}: attention_head_dim must be an int or a list of {n} ints, got {c['attention_head_dim']!r}")
        for i, t in enumerate(c["down_block_types"]):
            if t == "CrossAttnDownBlock2D":
                _require(boc[i] % heads[i] == 0, f"{name}: block {i}: {heads[i]} heads do not divide {boc[i]}")
        groups, eps, shift, dropout = c["norm_num_groups"], c["norm_eps"], c["resnet_time_scale_shift"], c["dropout"]
        lpb, tl, cross = c["layers_per_block"], c["transformer_layers_per_block"], c["cross_attention_dim"]
        linear = c["use_linear_projection"]
        time_embed_dim = c["time_embedding_dim"] or boc[0] * 4

        self.conv_in = nn.Conv2d(c["in_channels"], boc[0], kernel_size=c["conv_in_kernel"],
                                 padding=(c["conv_in_kernel"] - 1) // 2)
        self.time_proj = Timesteps(boc[0], c["flip_sin_to_cos"], c["freq_shift"])
        self.time_embedding = TimestepEmbedding(boc[0], time_embed_dim)
        if c["class_embed_type"] is None and c["num_class_embeds"] is not None:
            self.class_embedding = nn.Embedding(c["num_class_embeds"], time_embed_dim)
        elif c["class_embed_type"] == "timestep":  # num_class_embeds is ignored
            self.class_embedding = TimestepEmbedding(boc[0], time_embed_dim)
        elif c["class_embed_type"] == "identity":
            self.class_embedding = nn.Identity()
        else:
            self.class_embedding = None

        self.down_blocks = nn.ModuleList([])
        output_channel = boc[0]
        for i, block_type in enumerate(c["down_block_types"]):
            input_channel, output_channel = output_channel, boc[i]
            add_downsample = i != n - 1
            if block_type == "DownBlock2D":
                block = DownBlock2D(input_channel, output_channel, time_embed_dim, lpb, eps, groups, shift,
                                    add_downsample, c["downsample_padding"], dropout)
            else:
                block = CrossAttnDownBlock2D(input_channel, output_channel, time_embed_dim, lpb, eps, groups, shift,
                                             heads[i], tl, cross, linear, add_downsample, c["downsample_padding"],
                                             dropout)
            self.down_blocks.append(block)

        self.mid_block = None
        if c["mid_block_type"] is not None:
            _require(boc[-1] % heads[-1] == 0, f"{name}: mid block: {heads[-1]} heads do not divide {boc[-1]}")
            self.mid_block = UNetMidBlock2DCrossAttn(boc[-1], time_embed_dim, eps, groups, shift, heads[-1], tl,
                                                     cross, linear, c["mid_block_scale_factor"], dropout)

        self.num_upsamplers = 0
        self.up_blocks = nn.ModuleList([])
        reversed_boc = list(reversed(boc))
        reversed_heads = list(reversed(heads))
        output_channel = reversed_boc[0]
        for i, block_type in enumerate(c["up_block_types"]):
            prev_output_channel, output_channel = output_channel, reversed_boc[i]
            input_channel = reversed_boc[min(i + 1, n - 1)]
            add_upsample = i != n - 1
            self.num_upsamplers += int(add_upsample)
            if block_type == "UpBlock2D":
                block = UpBlock2D(input_channel, prev_output_channel, output_channel, time_embed_dim, lpb + 1, eps,
                                  groups, shift, add_upsample, dropout)
            else:
                _require(output_channel % reversed_heads[i] == 0,
                         f"{name}: up block {i}: {reversed_heads[i]} heads do not divide {output_channel}")
                block = CrossAttnUpBlock2D(input_channel, prev_output_channel, output_channel, time_embed_dim,
                                           lpb + 1, eps, groups, shift, reversed_heads[i], tl, cross, linear,
                                           add_upsample, dropout)
            self.up_blocks.append(block)

        self.conv_norm_out = nn.GroupNorm(num_channels=boc[0], num_groups=groups, eps=eps)
        self.conv_act = nn.SiLU()
        self.conv_out = nn.Conv2d(boc[0], c["out_channels"], kernel_size=c["conv_out_kernel"],
                                  padding=(c["conv_out_kernel"] - 1) // 2)

    def forward(self, sample, timestep, encoder_hidden_states, class_labels=None):
        if encoder_hidden_states is None:
            raise ValueError("UNet2DConditionModel: encoder_hidden_states is required")
        dtype = self.conv_in.weight.dtype
        up_factor = 2 ** self.num_upsamplers
        forward_upsample_size = any(d % up_factor != 0 for d in sample.shape[-2:])
        if self.config["center_input_sample"]:
            sample = 2 * sample - 1.0
        timesteps = _timesteps_tensor(timestep, sample, torch.float64)
        emb = self.time_embedding(self.time_proj(timesteps, dtype).to(sample.dtype))
        if self.class_embedding is not None:
            if class_labels is None:
                raise ValueError("class_labels should be provided when num_class_embeds > 0")
            if self.config["class_embed_type"] == "timestep":
                class_labels = self.time_proj(class_labels, dtype).to(sample.dtype)
            emb = emb + self.class_embedding(class_labels).to(sample.dtype)

        sample = self.conv_in(sample)
        down_block_res_samples = (sample,)
        for block in self.down_blocks:
            sample, res_samples = block(sample, emb, encoder_hidden_states)
            down_block_res_samples += res_samples
        if self.mid_block is not None:
            sample = self.mid_block(sample, emb, encoder_hidden_states)
        upsample_size = None
        for i, block in enumerate(self.up_blocks):
            is_final = i == len(self.up_blocks) - 1
            res_samples = down_block_res_samples[-len(block.resnets):]
            down_block_res_samples = down_block_res_samples[:-len(block.resnets)]
            if not is_final and forward_upsample_size:
                upsample_size = down_block_res_samples[-1].shape[2:]
            sample = block(sample, res_samples, emb, encoder_hidden_states, upsample_size)
        return self.conv_out(self.conv_act(self.conv_norm_out(sample)))


MODEL_CLASSES = {"UNet2DModel": UNet2DModel, "UNet2DConditionModel": UNet2DConditionModel}


def from_config(config):
    """Builds the mirror from a diffusers config dict (its "_class_name" picks the class)."""
    return MODEL_CLASSES[config["_class_name"]](**{k: v for k, v in config.items() if k != "_class_name"})


def diffusers_config(model):
    """The config.json dict diffusers would save: every __init__ key (lists for tuples) plus _class_name."""
    out = {"_class_name": type(model).__name__}
    out.update(model.config)
    return out


# ---------------------------------------------------------------------------------------------------------------
# Reference cases
# ---------------------------------------------------------------------------------------------------------------

def init_weights(model, seed):
    """Random weights (not diffusers' init; nothing zero): conv/linear weight ~ N(0, 1/fan_in), bias ~ N(0, 0.1^2);
    norm weight ~ 1 + N(0, 0.1^2), norm bias ~ N(0, 0.1^2); embedding ~ N(0, 1).  Deterministic for a seed."""
    g = torch.Generator().manual_seed(seed)

    def normal(p, std, mean=0.0):
        with torch.no_grad():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64).mul_(std).add_(mean).to(p.dtype))

    for _, module in sorted(model.named_modules(), key=lambda kv: kv[0]):
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            fan_in = module.weight[0].numel()
            normal(module.weight, fan_in ** -0.5)
            if module.bias is not None:
                normal(module.bias, 0.1)
        elif isinstance(module, (nn.GroupNorm, nn.LayerNorm)):
            normal(module.weight, 0.1, 1.0)
            normal(module.bias, 0.1)
        elif isinstance(module, nn.Embedding):
            normal(module.weight, 1.0)


# Each case: config (diffusers keys), batch, height, width, timesteps, and for the conditional U-Net the
# sequence length.  class_labels: a list of ints, or "identity" (random float [B, time_embed_dim]).
CASES = {
    "u2d_basic": dict(
        config=dict(_class_name="UNet2DModel", sample_size=8, in_channels=3, out_channels=3,
                    block_out_channels=[16, 32], layers_per_block=1,
                    down_block_types=["DownBlock2D", "AttnDownBlock2D"], up_block_types=["AttnUpBlock2D", "UpBlock2D"],
                    norm_num_groups=8, attention_head_dim=8, num_class_embeds=5),
        batch=2, height=8, width=8, timesteps=[3.0, 917.0], class_labels=[1, 4]),
    # three levels, attention in the two lower ones; scale_shift (so the mid attention has NO group norm);
    # sin-first embedding with shift 1; padding-0 downsampling (asymmetric pad); centring; one head of size C;
    # class_embed_type "timestep" (num_class_embeds is legal there and ignored); fractional timesteps
    "u2d_scale_shift": dict(
        config=dict(_class_name="UNet2DModel", sample_size=8, in_channels=3, out_channels=3,
                    block_out_channels=[16, 32, 32], layers_per_block=2,
                    down_block_types=["DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"],
                    up_block_types=["AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
                    norm_num_groups=8, attention_head_dim=None, resnet_time_scale_shift="scale_shift",
                    flip_sin_to_cos=False, freq_shift=1, downsample_padding=0, center_input_sample=True,
                    class_embed_type="timestep", num_class_embeds=4),
        batch=3, height=8, width=8, timesteps=[0.25, 10.5, 999.0], class_labels=[0, 3, 2]),
    # concatenation conditioning (5 input channels); resnet down/upsampling: used by the AttnDown/AttnUp blocks
    # only, DownBlock2D / UpBlock2D keep their convs (diffusers quirk); add_attention False (mid block without
    # attention); no class embedding
    "u2d_concat": dict(
        config=dict(_class_name="UNet2DModel", sample_size=16, in_channels=5, out_channels=3,
                    block_out_channels=[16, 32, 32], layers_per_block=1,
                    down_block_types=["AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
                    up_block_types=["UpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D"],
                    norm_num_groups=8, attention_head_dim=8, downsample_type="resnet", upsample_type="resnet",
                    add_attention=False),
        batch=1, height=16, width=16, timesteps=[500.0], class_labels=None),
    # the mid block's options: attn_norm_num_groups with scale_shift (group norm present, 4 groups),
    # mid_block_scale_factor sqrt(2) (resnets and attention rescale), norm_eps 1e-6, time_embedding_dim 48,
    # class_embed_type "identity" (class_labels are float [B, 48], added to the time embedding)
    "u2d_mid_options": dict(
        config=dict(_class_name="UNet2DModel", sample_size=8, in_channels=3, out_channels=2,
                    block_out_channels=[32, 32], layers_per_block=1,
                    down_block_types=["AttnDownBlock2D", "AttnDownBlock2D"],
                    up_block_types=["AttnUpBlock2D", "AttnUpBlock2D"],
                    norm_num_groups=8, attention_head_dim=16, resnet_time_scale_shift="scale_shift",
                    attn_norm_num_groups=4, mid_block_scale_factor=math.sqrt(2.0), norm_eps=1e-6,
                    time_embedding_dim=48, class_embed_type="identity"),
        batch=2, height=8, width=8, timesteps=[1.0, 250.75], class_labels="identity"),
    # no mid block; dropout 0.1 (eval: identity); norm_eps 1e-4; head size 4 (4 and 6 heads); 16 and 24 channels
    "u2d_mid_none": dict(
        config=dict(_class_name="UNet2DModel", sample_size=8, in_channels=3, out_channels=3,
                    block_out_channels=[16, 24], layers_per_block=1,
                    down_block_types=["AttnDownBlock2D", "DownBlock2D"],
                    up_block_types=["UpBlock2D", "AttnUpBlock2D"], mid_block_type=None,
                    norm_num_groups=4, attention_head_dim=4, dropout=0.1, norm_eps=1e-4),
        batch=2, height=8, width=8, timesteps=[37.5, 640.0], class_labels=None),
    "cond_basic": dict(
        config=dict(_class_name="UNet2DConditionModel", sample_size=8, in_channels=4, out_channels=4,
                    block_out_channels=[32, 64], layers_per_block=1,
                    down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"],
                    up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"], mid_block_type="UNetMidBlock2DCrossAttn",
                    cross_attention_dim=16, attention_head_dim=2, norm_num_groups=8),
        batch=2, height=8, width=8, timesteps=[5.0, 801.0], class_labels=None, seq_len=5),
    # linear projections, two transformer layers per block, per-block head counts [2, 4] (the mid block takes 4,
    # the up blocks the reversed list), class embedding table, scale_shift, sin-first/shift 1, padding-0 downsampling
    "cond_linear_proj": dict(
        config=dict(_class_name="UNet2DConditionModel", sample_size=8, in_channels=4, out_channels=4,
                    block_out_channels=[32, 64], layers_per_block=1,
                    down_block_types=["CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
                    up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
                    mid_block_type="UNetMidBlock2DCrossAttn", cross_attention_dim=16, attention_head_dim=[2, 4],
                    norm_num_groups=8, use_linear_projection=True, transformer_layers_per_block=2,
                    num_class_embeds=3, resnet_time_scale_shift="scale_shift", flip_sin_to_cos=False, freq_shift=1,
                    downsample_padding=0),
        batch=3, height=8, width=8, timesteps=[0.5, 99.25, 998.0], class_labels=[2, 0, 1], seq_len=4),
    # class_embed_type "timestep", 1x1 conv_in and 5x5 conv_out, centring, no mid block, time_embedding_dim 64,
    # upcast_attention (numerically a no-op), three levels with two resnets each, norm_eps 1e-6, 24-dim context
    "cond_timestep_class": dict(
        config=dict(_class_name="UNet2DConditionModel", sample_size=8, in_channels=3, out_channels=3,
                    block_out_channels=[32, 32, 64], layers_per_block=2,
                    down_block_types=["CrossAttnDownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"],
                    up_block_types=["CrossAttnUpBlock2D", "UpBlock2D", "CrossAttnUpBlock2D"],
                    mid_block_type=None, cross_attention_dim=24, attention_head_dim=4, norm_num_groups=8,
                    class_embed_type="timestep", conv_in_kernel=1, conv_out_kernel=5, center_input_sample=True,
                    time_embedding_dim=64, upcast_attention=True, norm_eps=1e-6),
        batch=2, height=8, width=8, timesteps=[12.0, 700.5], class_labels=[7, 123], seq_len=3),
    # H, W not divisible by 2^(levels - 1): the up blocks upsample to the skip's size (7x6 -> 4x3 -> 7x6)
    "cond_odd_size": dict(
        config=dict(_class_name="UNet2DConditionModel", sample_size=[7, 6], in_channels=4, out_channels=4,
                    block_out_channels=[32, 32], layers_per_block=1,
                    down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"],
                    up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"], mid_block_type="UNetMidBlock2DCrossAttn",
                    cross_attention_dim=8, attention_head_dim=4, norm_num_groups=8),
        batch=1, height=7, width=6, timesteps=[321.0], class_labels=None, seq_len=2),
}


def case_seed(name):
    return sum((i + 1) * ord(ch) for i, ch in enumerate(name)) % 100003


def build_case(name):
    """Returns (model float32 eval, config dict, inputs dict of tensors as stored)."""
    spec = CASES[name]
    seed = case_seed(name)
    torch.manual_seed(seed)
    config = spec["config"]
    model = from_config(config).eval()
    init_weights(model, seed)
    g = torch.Generator().manual_seed(seed + 1)
    c = model.config
    inputs = {
        "sample": torch.randn(spec["batch"], c["in_channels"], spec["height"], spec["width"], generator=g),
        "timestep": torch.tensor(spec["timesteps"], dtype=torch.float64),
    }
    if isinstance(model, UNet2DConditionModel):
        inputs["encoder_hidden_states"] = torch.randn(spec["batch"], spec["seq_len"], c["cross_attention_dim"],
                                                      generator=g)
    if spec["class_labels"] == "identity":
        time_embed_dim = c["time_embedding_dim"] or c["block_out_channels"][0] * 4
        inputs["class_labels"] = torch.randn(spec["batch"], time_embed_dim, generator=g)
    elif spec["class_labels"] is not None:
        inputs["class_labels"] = torch.tensor(spec["class_labels"], dtype=torch.int64)
    return model, diffusers_config(model), inputs


def _call(model, inputs):
    args = [inputs["sample"], inputs["timestep"]]
    if isinstance(model, UNet2DConditionModel):
        args.append(inputs["encoder_hidden_states"])
    return model(*args, class_labels=inputs.get("class_labels"))


def _cast_inputs(inputs, float_dtype):
    return {k: (v.to(float_dtype) if (v.is_floating_point() and k != "timestep") else v) for k, v in inputs.items()}


def run_case(name):
    """Computes everything a case writes: config, weights, inputs (with cotangent), outputs (with gradients)."""
    model, config, inputs = build_case(name)
    with torch.no_grad():
        output = _call(model, inputs)  # float32; the F64 timesteps are cast as diffusers casts them
    model64 = copy.deepcopy(model).double()
    inputs64 = _cast_inputs(inputs, torch.float64)
    wrt = ["sample"] + (["encoder_hidden_states"] if "encoder_hidden_states" in inputs else [])
    for k in wrt:
        inputs64[k].requires_grad_(True)
    output64 = _call(model64, inputs64)
    g = torch.Generator().manual_seed(case_seed(name) + 2)
    cotangent = torch.randn(output64.shape, generator=g, dtype=torch.float64)
    params = list(model64.named_parameters())
    grads = torch.autograd.grad((output64 * cotangent).sum(), [inputs64[k] for k in wrt] + [p for _, p in params])
    outputs = {"output": output, "output_f64": output64.detach()}
    for k, gr in zip(wrt, grads[:len(wrt)]):
        outputs[f"grad/{k}"] = gr
    for (pname, _), gr in zip(params, grads[len(wrt):]):
        outputs[f"grad/{pname}"] = gr
    inputs = dict(inputs)
    inputs["cotangent"] = cotangent
    return dict(model=model, model64=model64, config=config, inputs=inputs, inputs64=inputs64, outputs=outputs)


def write_case(result, directory):
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(result["config"], f, indent=2)
    safetensors_lite.save_file({k: v.float() for k, v in result["model"].state_dict().items()},
                               os.path.join(directory, "diffusion_pytorch_model.safetensors"),
                               metadata={"format": "pt"})
    safetensors_lite.save_file(result["inputs"], os.path.join(directory, "inputs.safetensors"))
    safetensors_lite.save_file(result["outputs"], os.path.join(directory, "outputs.safetensors"))


# ---------------------------------------------------------------------------------------------------------------
# --check: invariants testable in Python
# ---------------------------------------------------------------------------------------------------------------

_RESNET = ["norm1.weight", "norm1.bias", "conv1.weight", "conv1.bias", "time_emb_proj.weight",
           "time_emb_proj.bias", "norm2.weight", "norm2.bias", "conv2.weight", "conv2.bias"]
_SHORTCUT = ["conv_shortcut.weight", "conv_shortcut.bias"]
_SPATIAL_ATTN = ["group_norm.weight", "group_norm.bias", "to_q.weight", "to_q.bias", "to_k.weight", "to_k.bias",
                 "to_v.weight", "to_v.bias", "to_out.0.weight", "to_out.0.bias"]
_TRANSFORMER = ["norm.weight", "norm.bias", "proj_in.weight", "proj_in.bias", "proj_out.weight", "proj_out.bias",
                "transformer_blocks.0.norm1.weight", "transformer_blocks.0.norm1.bias",
                "transformer_blocks.0.attn1.to_q.weight", "transformer_blocks.0.attn1.to_k.weight",
                "transformer_blocks.0.attn1.to_v.weight", "transformer_blocks.0.attn1.to_out.0.weight",
                "transformer_blocks.0.attn1.to_out.0.bias",
                "transformer_blocks.0.norm2.weight", "transformer_blocks.0.norm2.bias",
                "transformer_blocks.0.attn2.to_q.weight", "transformer_blocks.0.attn2.to_k.weight",
                "transformer_blocks.0.attn2.to_v.weight", "transformer_blocks.0.attn2.to_out.0.weight",
                "transformer_blocks.0.attn2.to_out.0.bias",
                "transformer_blocks.0.norm3.weight", "transformer_blocks.0.norm3.bias",
                "transformer_blocks.0.ff.net.0.proj.weight", "transformer_blocks.0.ff.net.0.proj.bias",
                "transformer_blocks.0.ff.net.2.weight", "transformer_blocks.0.ff.net.2.bias"]


def _under(prefix, leaves):
    return [f"{prefix}.{leaf}" for leaf in leaves]


# Written from reading diffusers' UNet2DModel / UNet2DConditionModel and their blocks for the two basic configs.
EXPECTED_KEYS = {
    "u2d_basic": (
        ["conv_in.weight", "conv_in.bias", "time_embedding.linear_1.weight", "time_embedding.linear_1.bias",
         "time_embedding.linear_2.weight", "time_embedding.linear_2.bias", "class_embedding.weight"]
        + _under("down_blocks.0.resnets.0", _RESNET)                                  # 16 -> 16
        + ["down_blocks.0.downsamplers.0.conv.weight", "down_blocks.0.downsamplers.0.conv.bias"]
        + _under("down_blocks.1.resnets.0", _RESNET + _SHORTCUT)                      # 16 -> 32
        + _under("down_blocks.1.attentions.0", _SPATIAL_ATTN)                         # final: no downsampler
        + _under("mid_block.resnets.0", _RESNET) + _under("mid_block.attentions.0", _SPATIAL_ATTN)
        + _under("mid_block.resnets.1", _RESNET)
        + _under("up_blocks.0.resnets.0", _RESNET + _SHORTCUT)                        # 32 + 32 -> 32
        + _under("up_blocks.0.resnets.1", _RESNET + _SHORTCUT)                        # 32 + 16 -> 32
        + _under("up_blocks.0.attentions.0", _SPATIAL_ATTN) + _under("up_blocks.0.attentions.1", _SPATIAL_ATTN)
        + ["up_blocks.0.upsamplers.0.conv.weight", "up_blocks.0.upsamplers.0.conv.bias"]
        + _under("up_blocks.1.resnets.0", _RESNET + _SHORTCUT)                        # 32 + 16 -> 16
        + _under("up_blocks.1.resnets.1", _RESNET + _SHORTCUT)                        # 16 + 16 -> 16
        + ["conv_norm_out.weight", "conv_norm_out.bias", "conv_out.weight", "conv_out.bias"]),
    "cond_basic": (
        ["conv_in.weight", "conv_in.bias", "time_embedding.linear_1.weight", "time_embedding.linear_1.bias",
         "time_embedding.linear_2.weight", "time_embedding.linear_2.bias"]
        + _under("down_blocks.0.resnets.0", _RESNET) + _under("down_blocks.0.attentions.0", _TRANSFORMER)
        + ["down_blocks.0.downsamplers.0.conv.weight", "down_blocks.0.downsamplers.0.conv.bias"]
        + _under("down_blocks.1.resnets.0", _RESNET + _SHORTCUT)                      # 32 -> 64
        + _under("mid_block.resnets.0", _RESNET) + _under("mid_block.attentions.0", _TRANSFORMER)
        + _under("mid_block.resnets.1", _RESNET)
        + _under("up_blocks.0.resnets.0", _RESNET + _SHORTCUT)                        # 64 + 64 -> 64
        + _under("up_blocks.0.resnets.1", _RESNET + _SHORTCUT)                        # 64 + 32 -> 64
        + ["up_blocks.0.upsamplers.0.conv.weight", "up_blocks.0.upsamplers.0.conv.bias"]
        + _under("up_blocks.1.resnets.0", _RESNET + _SHORTCUT)                        # 64 + 32 -> 32
        + _under("up_blocks.1.resnets.1", _RESNET + _SHORTCUT)                        # 32 + 32 -> 32
        + _under("up_blocks.1.attentions.0", _TRANSFORMER) + _under("up_blocks.1.attentions.1", _TRANSFORMER)
        + ["conv_norm_out.weight", "conv_norm_out.bias", "conv_out.weight", "conv_out.bias"]),
}

EXPECTED_SHAPES = {
    "u2d_basic": {
        "class_embedding.weight": [5, 64], "time_embedding.linear_1.weight": [64, 16],
        "down_blocks.1.attentions.0.to_q.weight": [32, 32], "down_blocks.1.attentions.0.group_norm.weight": [32],
        "up_blocks.0.resnets.1.conv_shortcut.weight": [32, 48, 1, 1], "up_blocks.1.resnets.0.conv1.weight":
            [16, 48, 3, 3], "down_blocks.0.resnets.0.time_emb_proj.weight": [16, 64], "conv_out.weight": [3, 16, 3, 3]},
    "cond_basic": {
        "down_blocks.0.attentions.0.proj_in.weight": [32, 32, 1, 1],
        "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight": [32, 16],
        "mid_block.attentions.0.transformer_blocks.0.ff.net.0.proj.weight": [512, 64],
        "mid_block.attentions.0.transformer_blocks.0.ff.net.2.weight": [64, 256],
        "up_blocks.1.resnets.0.conv1.weight": [32, 96, 3, 3], "time_embedding.linear_2.weight": [128, 128]},
    "u2d_scale_shift": {"down_blocks.0.resnets.0.time_emb_proj.weight": [32, 64],
                        "class_embedding.linear_1.weight": [64, 16]},
}

# Parameters whose gradient is analytically zero: the key bias of the biased spatial attention (softmax is
# invariant to adding q.b_k to a whole row of scores).
_ZERO_GRADIENT_SUFFIXES = (".to_k.bias",)


def check_case(name, result, directory=None):
    """Asserts the invariants of one computed case; returns a list of one-line findings."""
    model, outputs, inputs = result["model"], result["outputs"], result["inputs"]
    notes = []
    keys = sorted(model.state_dict().keys())
    if name in EXPECTED_KEYS:
        expected = sorted(EXPECTED_KEYS[name])
        missing, extra = sorted(set(expected) - set(keys)), sorted(set(keys) - set(expected))
        assert not missing and not extra and len(expected) == len(set(expected)), \
            f"{name}: state_dict keys differ from diffusers': missing {missing}, unexpected {extra}"
        notes.append(f"{len(keys)} state_dict keys match the hand-written diffusers list")
    for key, shape in EXPECTED_SHAPES.get(name, {}).items():
        actual = list(model.state_dict()[key].shape)
        assert actual == shape, f"{name}: {key} has shape {actual}, diffusers has {shape}"
    # float32 vs float64.  The relative difference of a float32 forward through ~20-40 layers is ~1e-6..1e-5;
    # 1e-4 of max|output| leaves room and still catches any real discrepancy (a dtype-dependent code path).
    out32, out64 = outputs["output"].double(), outputs["output_f64"]
    scale = out64.abs().max().item()
    rel = (out32 - out64).abs().max().item() / scale
    assert rel < 1e-4, f"{name}: float32 and float64 outputs differ by {rel:.2e} relative"
    notes.append(f"f32 vs f64 max rel diff {rel:.1e}")
    # every parameter influences L (except the analytically zero ones, which must be ~0)
    for key, grad in outputs.items():
        if not key.startswith("grad/"):
            continue
        gmax = grad.abs().max().item()
        if key.endswith(_ZERO_GRADIENT_SUFFIXES) and not key.startswith("grad/sample"):
            assert gmax < 1e-9, f"{name}: {key} should have an analytically zero gradient, max |g| = {gmax:.2e}"
        else:
            assert gmax > 1e-8, f"{name}: {key} has a zero gradient (max |g| = {gmax:.2e})"
    n_params = sum(1 for k in outputs if k.startswith("grad/")) - (2 if "grad/encoder_hidden_states" in outputs else 1)
    assert n_params == len(keys), f"{name}: {n_params} parameter gradients for {len(keys)} parameters"
    # directional finite difference of L in float64 along a random unit direction of all parameters and inputs
    model64 = copy.deepcopy(result["model64"])
    inputs64 = {k: v.detach() for k, v in result["inputs64"].items()}
    wrt = [k for k in ("sample", "encoder_hidden_states") if k in inputs64]
    g = torch.Generator().manual_seed(case_seed(name) + 3)
    params = dict(model64.named_parameters())
    directions = {k: torch.randn(p.shape, generator=g, dtype=torch.float64) for k, p in params.items()}
    directions.update({k: torch.randn(inputs64[k].shape, generator=g, dtype=torch.float64) for k in wrt})
    norm = math.sqrt(sum((d * d).sum().item() for d in directions.values()))
    directions = {k: d / norm for k, d in directions.items()}
    predicted = sum((outputs[f"grad/{k}"] * d).sum().item() for k, d in directions.items())
    cot = inputs["cotangent"]

    def loss_at(step):
        with torch.no_grad():
            m = copy.deepcopy(model64)
            for k, p in m.named_parameters():
                p.add_(step * directions[k])
            shifted = dict(inputs64)
            for k in wrt:
                shifted[k] = inputs64[k] + step * directions[k]
            return (_call(m, shifted) * cot).sum().item()

    # Richardson-extrapolated central differences, h = 1e-2 and 5e-3: error O(h^4) ~ 1e-12 relative (measured),
    # so 1e-8 relative is ample and still far below any real gradient error.
    h = 1e-2
    fd_h = (loss_at(h) - loss_at(-h)) / (2 * h)
    fd_half = (loss_at(h / 2) - loss_at(-h / 2)) / h
    fd = (4 * fd_half - fd_h) / 3
    err = abs(fd - predicted) / max(abs(predicted), 1e-3)
    assert err < 1e-8, f"{name}: directional derivative {predicted:.12e} vs finite difference {fd:.12e}"
    notes.append(f"directional derivative matches finite differences ({err:.1e} relative)")
    if directory is not None:
        # the written files round-trip: a model rebuilt from config.json + the weights file reproduces `output`
        with open(os.path.join(directory, "config.json")) as f:
            config = json.load(f)
        rebuilt = from_config(config).eval()
        rebuilt.load_state_dict(safetensors_lite.load_file(
            os.path.join(directory, "diffusion_pytorch_model.safetensors")), strict=True)
        stored_in = safetensors_lite.load_file(os.path.join(directory, "inputs.safetensors"))
        stored_out = safetensors_lite.load_file(os.path.join(directory, "outputs.safetensors"))
        with torch.no_grad():
            again = _call(rebuilt, stored_in)
        assert torch.equal(again, stored_out["output"]), f"{name}: the written files do not reproduce 'output'"
        assert stored_in["timestep"].dtype == torch.float64 and stored_out["output_f64"].dtype == torch.float64
        notes.append("files round-trip (config.json + weights reproduce output bit for bit)")
    return notes


def check_rejections():
    """Unsupported options raise ValueError."""
    bad = [
        ("UNet2DModel", dict(time_embedding_type="fourier")),
        ("UNet2DModel", dict(act_fn="gelu")),
        ("UNet2DModel", dict(down_block_types=["SkipDownBlock2D"] * 4)),
        ("UNet2DModel", dict(class_embed_type="projection")),
        ("UNet2DModel", dict(resnet_time_scale_shift="spatial")),
        ("UNet2DModel", dict(norm_num_groups=7)),
        ("UNet2DModel", dict(bogus_key=1)),
        ("UNet2DConditionModel", dict(only_cross_attention=True)),
        ("UNet2DConditionModel", dict(addition_embed_type="text_time")),
        ("UNet2DConditionModel", dict(conv_in_kernel=2)),
        ("UNet2DConditionModel", dict(mid_block_type="UNetMidBlock2DSimpleCrossAttn")),
        ("UNet2DConditionModel", dict(cross_attention_dim=[8, 8, 8, 8])),
        ("UNet2DConditionModel", dict(layers_per_block=[1, 1, 1, 1])),
        ("UNet2DConditionModel", dict(num_attention_heads=8)),
        ("UNet2DConditionModel", dict(attention_head_dim=[8, 8])),
    ]
    for class_name, overrides in bad:
        config = dict(_class_name=class_name, block_out_channels=[32, 32, 32, 32], norm_num_groups=8)
        config.update(overrides)
        try:
            from_config(config)
        except ValueError:
            continue
        raise AssertionError(f"{class_name} accepted unsupported {overrides}")
    return len(bad)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", help="directory to write the cases to (one subdirectory per case)")
    parser.add_argument("--cases", help="comma-separated case names (default: all)")
    parser.add_argument("--check", action="store_true", help="assert the mirror's invariants")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    args = parser.parse_args(argv)
    if args.list:
        for name in CASES:
            print(name)
        return 0
    if args.out is None and not args.check:
        parser.error("give --out DIR and/or --check")
    names = list(CASES) if not args.cases else [s.strip() for s in args.cases.split(",") if s.strip()]
    unknown = [n for n in names if n not in CASES]
    if unknown:
        parser.error(f"unknown cases {unknown}; known: {', '.join(CASES)}")
    total = time.perf_counter()
    if args.check:
        print(f"check: {check_rejections()} unsupported configurations raise ValueError")
    for name in names:
        start = time.perf_counter()
        result = run_case(name)
        directory = None
        if args.out is not None:
            directory = os.path.join(args.out, name)
            write_case(result, directory)
        n_params = sum(p.numel() for p in result["model"].parameters())
        print(f"{name}: {n_params} parameters, output {list(result['outputs']['output'].shape)}, "
              f"max|output| {result['outputs']['output'].abs().max().item():.4f}, "
              f"{time.perf_counter() - start:.2f} s")
        if args.check:
            for note in check_case(name, result, directory):
                print(f"  check: {note}")
    print(f"total {time.perf_counter() - total:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
