#pragma once
// Resolution changes of the U-Net (docs/unet.md §2), diffusers' Upsample2D / Downsample2D.
//
//   upsample_nearest2x(x)   [B, C, H, W] -> [B, C, 2H, 2W],  y[., ., i, j] = x[., ., ⌊i/2⌋, ⌊j/2⌋]
//                           adjoint: dx[., ., r, s] = Σ of the 2×2 block dy[., ., 2r:2r+2, 2s:2s+2]
//   avg_pool2x2(x)          [B, C, H, W] -> [B, C, ⌊H/2⌋, ⌊W/2⌋], the mean of each 2×2 block
//                           adjoint: each of the 4 inputs of a block gets dy/4 (odd edges get 0)
//
//   upsample2d   nearest 2× then (optionally) a 3×3 conv, padding 1      names: `conv`
//   downsample2d a 3×3 stride-2 conv with padding p — when p = 0, diffusers first pads one zero
//                row at the bottom and one column at the right, i.e. per-side padding (0, 1, 0, 1);
//                or, without a conv, avg_pool2x2                        names: `conv`

#include <diffuse/nn/detail/parallel.hpp>
#include <diffuse/nn/layer.hpp>
#include <diffuse/nn/layers/conv2d.hpp>

#include <cmath>
#include <cstdint>
#include <optional>
#include <string>

namespace diffuse::nn {

template <class T>
host_tensor<T> upsample_nearest2x(cview<T> x) {
    require_shape(x.rank() == 4, "upsample_nearest2x", "x", x.shape(), "[B, C, H, W]");
    const std::int64_t BC = x.size(0) * x.size(1), H = x.size(2), W = x.size(3);
    host_tensor<T> y({x.size(0), x.size(1), 2 * H, 2 * W});
    detail::parallel_for(BC, [&](std::int64_t i) {
        const T* xs = x.data() + i * H * W;
        T* ys = y.data() + i * 4 * H * W;
        for (std::int64_t r = 0; r < 2 * H; ++r)
            for (std::int64_t s = 0; s < 2 * W; ++s) ys[r * 2 * W + s] = xs[(r / 2) * W + s / 2];
    });
    return y;
}

template <class T>
host_tensor<T> upsample_nearest2x_backward(cview<T> dy) {
    require_shape(dy.rank() == 4 && dy.size(2) % 2 == 0 && dy.size(3) % 2 == 0, "upsample_nearest2x", "dy",
                  dy.shape(), "[B, C, 2H, 2W]");
    const std::int64_t BC = dy.size(0) * dy.size(1), H = dy.size(2) / 2, W = dy.size(3) / 2;
    host_tensor<T> dx({dy.size(0), dy.size(1), H, W});
    detail::parallel_for(BC, [&](std::int64_t i) {
        const T* d = dy.data() + i * 4 * H * W;
        T* out = dx.data() + i * H * W;
        for (std::int64_t r = 0; r < H; ++r)
            for (std::int64_t s = 0; s < W; ++s)
                out[r * W + s] = d[(2 * r) * 2 * W + 2 * s] + d[(2 * r) * 2 * W + 2 * s + 1] +
                                 d[(2 * r + 1) * 2 * W + 2 * s] + d[(2 * r + 1) * 2 * W + 2 * s + 1];
    });
    return dx;
}

template <class T>
host_tensor<T> avg_pool2x2(cview<T> x) {
    require_shape(x.rank() == 4 && x.size(2) >= 2 && x.size(3) >= 2, "avg_pool2x2", "x", x.shape(),
                  "[B, C, H, W] with H, W >= 2");
    const std::int64_t BC = x.size(0) * x.size(1), H = x.size(2), W = x.size(3), Ho = H / 2, Wo = W / 2;
    host_tensor<T> y({x.size(0), x.size(1), Ho, Wo});
    detail::parallel_for(BC, [&](std::int64_t i) {
        const T* xs = x.data() + i * H * W;
        T* ys = y.data() + i * Ho * Wo;
        for (std::int64_t r = 0; r < Ho; ++r)
            for (std::int64_t s = 0; s < Wo; ++s)
                ys[r * Wo + s] = (xs[2 * r * W + 2 * s] + xs[2 * r * W + 2 * s + 1] + xs[(2 * r + 1) * W + 2 * s] +
                                  xs[(2 * r + 1) * W + 2 * s + 1]) /
                                 T(4);
    });
    return y;
}

/// dx for avg_pool2x2 on an input of spatial size H×W.
template <class T>
host_tensor<T> avg_pool2x2_backward(cview<T> dy, std::int64_t H, std::int64_t W) {
    require_shape(dy.rank() == 4 && dy.size(2) == H / 2 && dy.size(3) == W / 2, "avg_pool2x2", "dy", dy.shape(),
                  "[B, C, " + std::to_string(H / 2) + ", " + std::to_string(W / 2) + "]");
    const std::int64_t BC = dy.size(0) * dy.size(1), Ho = H / 2, Wo = W / 2;
    host_tensor<T> dx({dy.size(0), dy.size(1), H, W}, T(0));
    detail::parallel_for(BC, [&](std::int64_t i) {
        const T* d = dy.data() + i * Ho * Wo;
        T* out = dx.data() + i * H * W;
        for (std::int64_t r = 0; r < Ho; ++r)
            for (std::int64_t s = 0; s < Wo; ++s) {
                const T g = d[r * Wo + s] / T(4);
                out[2 * r * W + 2 * s] = g;
                out[2 * r * W + 2 * s + 1] = g;
                out[(2 * r + 1) * W + 2 * s] = g;
                out[(2 * r + 1) * W + 2 * s + 1] = g;
            }
    });
    return dx;
}

namespace detail {
// torch's nearest source index for an output of size out from an input of size in (UpSample.h):
// 2× exactly -> i / 2; otherwise ⌊i · s⌋ with s = (float)in / out computed in float, clamped to in − 1.
inline std::int64_t nearest_source(std::int64_t i, std::int64_t in, std::int64_t out) {
    if (out == 2 * in) return i >> 1;
    const float s = static_cast<float>(in) / static_cast<float>(out);
    const auto k = static_cast<std::int64_t>(std::floor(static_cast<float>(i) * s));
    return k < in - 1 ? k : in - 1;
}
}  // namespace detail

/// F.interpolate(x, size=(Ho, Wo), mode="nearest"): [B, C, H, W] -> [B, C, Ho, Wo].
template <class T>
host_tensor<T> upsample_nearest(cview<T> x, std::int64_t Ho, std::int64_t Wo) {
    require_shape(x.rank() == 4, "upsample_nearest", "x", x.shape(), "[B, C, H, W]");
    require_size(Ho, "output height", "upsample_nearest");
    require_size(Wo, "output width", "upsample_nearest");
    const std::int64_t BC = x.size(0) * x.size(1), H = x.size(2), W = x.size(3);
    host_tensor<T> y({x.size(0), x.size(1), Ho, Wo});
    detail::parallel_for(BC, [&](std::int64_t i) {
        const T* xs = x.data() + i * H * W;
        T* ys = y.data() + i * Ho * Wo;
        for (std::int64_t r = 0; r < Ho; ++r) {
            const std::int64_t sr = detail::nearest_source(r, H, Ho);
            for (std::int64_t s = 0; s < Wo; ++s) ys[r * Wo + s] = xs[sr * W + detail::nearest_source(s, W, Wo)];
        }
    });
    return y;
}

/// The adjoint of upsample_nearest: every output gradient goes back to the input it copied.
template <class T>
host_tensor<T> upsample_nearest_backward(cview<T> dy, std::int64_t H, std::int64_t W) {
    require_shape(dy.rank() == 4, "upsample_nearest", "dy", dy.shape(), "[B, C, Ho, Wo]");
    const std::int64_t BC = dy.size(0) * dy.size(1), Ho = dy.size(2), Wo = dy.size(3);
    host_tensor<T> dx({dy.size(0), dy.size(1), H, W}, T(0));
    detail::parallel_for(BC, [&](std::int64_t i) {
        const T* d = dy.data() + i * Ho * Wo;
        T* out = dx.data() + i * H * W;
        for (std::int64_t r = 0; r < Ho; ++r) {
            const std::int64_t sr = detail::nearest_source(r, H, Ho);
            for (std::int64_t s = 0; s < Wo; ++s) out[sr * W + detail::nearest_source(s, W, Wo)] += d[r * Wo + s];
        }
    });
    return dx;
}

/// diffusers Upsample2D (interpolate nearest ×2, then `conv` 3×3 padding 1 when use_conv).
template <class T>
class upsample2d {
public:
    struct cache {
        typename conv2d<T>::cache conv;
        std::int64_t H = 0, W = 0;
        bool to_size = false;
    };

    upsample2d() = default;
    upsample2d(std::int64_t channels, bool use_conv, std::int64_t out_channels = 0) {
        if (use_conv) conv.emplace(channels, out_channels > 0 ? out_channels : channels, 3, 1, 1);
    }

    std::optional<conv2d<T>> conv;

    void collect(parameter_list<T>& out, const std::string& prefix) {
        if (conv) conv->collect(out, join_name(prefix, "conv"));
    }

    /// x [B, C, H, W] -> [B, C', 2H, 2W], or [B, C', Ho, Wo] when an output size is given
    /// (diffusers' upsample_size, used by UNet2DConditionModel for sizes not divisible by 2^levels).
    host_tensor<T> forward(cview<T> x, cache* c = nullptr, std::int64_t out_h = 0, std::int64_t out_w = 0) const {
        const bool to_size = out_h > 0 && out_w > 0;
        host_tensor<T> u = to_size ? upsample_nearest(x, out_h, out_w) : upsample_nearest2x(x);
        if (c) {
            c->H = x.rank() == 4 ? x.size(2) : 0;
            c->W = x.rank() == 4 ? x.size(3) : 0;
            c->to_size = to_size;
        }
        return conv ? conv->forward(u.cview(), c ? &c->conv : nullptr) : u;
    }

    host_tensor<T> backward(cview<T> dy, const cache& c) {
        host_tensor<T> du = conv ? conv->backward(dy, c.conv) : copy_of(dy);
        return c.to_size ? upsample_nearest_backward(du.cview(), c.H, c.W) : upsample_nearest2x_backward(du.cview());
    }
};

/// diffusers Downsample2D (`conv` 3×3 stride 2, padding p or (0,1,0,1) when p = 0; or avg-pool 2×2).
template <class T>
class downsample2d {
public:
    struct cache {
        typename conv2d<T>::cache conv;
        std::int64_t H = 0, W = 0;
    };

    downsample2d() = default;
    downsample2d(std::int64_t channels, bool use_conv, std::int64_t out_channels = 0, std::int64_t padding = 1) {
        if (padding < 0) fail_argument("downsample_padding", padding, "an integer >= 0");
        if (use_conv) {
            const padding2d pad = padding == 0 ? padding2d{0, 1, 0, 1} : padding2d::same(padding);
            conv.emplace(channels, out_channels > 0 ? out_channels : channels, 3, 3, 2, pad);
        } else if (out_channels > 0 && out_channels != channels) {
            fail("downsample2d: avg-pool downsampling keeps the channel count (" + std::to_string(channels) +
                 "); out_channels = " + std::to_string(out_channels) + " needs use_conv");
        }
    }

    std::optional<conv2d<T>> conv;

    void collect(parameter_list<T>& out, const std::string& prefix) {
        if (conv) conv->collect(out, join_name(prefix, "conv"));
    }

    host_tensor<T> forward(cview<T> x, cache* c = nullptr) const {
        if (c) {
            c->H = x.rank() == 4 ? x.size(2) : 0;
            c->W = x.rank() == 4 ? x.size(3) : 0;
        }
        return conv ? conv->forward(x, c ? &c->conv : nullptr) : avg_pool2x2(x);
    }

    host_tensor<T> backward(cview<T> dy, const cache& c) {
        return conv ? conv->backward(dy, c.conv) : avg_pool2x2_backward(dy, c.H, c.W);
    }
};

}  // namespace diffuse::nn
