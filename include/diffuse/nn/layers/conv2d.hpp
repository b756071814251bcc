#pragma once
// conv2d: 2-D cross-correlation as in torch.nn.Conv2d (groups = 1, dilation = 1), with zero
// padding that may differ per side (diffusers' Downsample2D pads (0, 1, 0, 1) when padding = 0).
// diffusers names: `<prefix>.weight`, `<prefix>.bias`.
//
// Shapes: x [B, Cin, H, W], weight [Cout, Cin, kh, kw], bias [Cout], y [B, Cout, Ho, Wo] with
//   Ho = (H + pad_top + pad_bottom − kh) / stride_h + 1,   Wo likewise.
//
//   y[b, o, p, q] = bias[o] + Σ_{c,i,j} weight[o, c, i, j] · x[b, c, p·s_h − pad_top + i, q·s_w − pad_left + j]
//
// computed as one GEMM per image on the im2col matrix (K = Cin·kh·kw rows, P = Ho·Wo columns):
//   col_b[K, P] = im2col(x_b),   y_b[Cout, P] = W[Cout, K] · col_b + bias.
// Backward (dy_b = ∂L/∂y_b [Cout, P]):
//   dcol_b = Wᵀ dy_b [K, P],  dx_b = col2im(dcol_b)          (overwrites dx)
//   dW += Σ_b dy_b col_bᵀ,    db += Σ_b Σ_p dy_b[:, p]       (accumulate)
// Images run in parallel (OpenMP); the per-image dW terms are summed in image order, so the
// result does not depend on the thread count.

#include <diffuse/core/eigen_adapter.hpp>
#include <diffuse/nn/detail/flops.hpp>
#include <diffuse/nn/detail/parallel.hpp>
#include <diffuse/nn/layer.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

namespace diffuse::nn {

/// Zero padding on each side of the image.
struct padding2d {
    std::int64_t top = 0, bottom = 0, left = 0, right = 0;
    static padding2d same(std::int64_t p) { return {p, p, p, p}; }
};

template <class T>
class conv2d {
public:
    struct cache {
        host_tensor<T> x;  ///< the input [B, Cin, H, W]
        bool filled = false;
    };

    conv2d() = default;
    /// Square kernel k, stride s, the same padding p on every side (torch's Conv2d(cin, cout, k, s, p)).
    conv2d(std::int64_t in_channels, std::int64_t out_channels, std::int64_t kernel, std::int64_t stride = 1,
           std::int64_t padding = 0, bool bias = true)
        : conv2d(in_channels, out_channels, kernel, kernel, stride, padding2d::same(padding), bias) {}
    /// Rectangular kernel kh×kw, stride s in both directions, explicit per-side padding.
    conv2d(std::int64_t in_channels, std::int64_t out_channels, std::int64_t kernel_h, std::int64_t kernel_w,
           std::int64_t stride, padding2d padding, bool bias = true)
        : cin_(in_channels), cout_(out_channels), kh_(kernel_h), kw_(kernel_w), stride_(stride), pad_(padding),
          has_bias_(bias) {
        require_size(in_channels, "in_channels", "conv2d");
        require_size(out_channels, "out_channels", "conv2d");
        require_size(kernel_h, "kernel_h", "conv2d");
        require_size(kernel_w, "kernel_w", "conv2d");
        require_size(stride, "stride", "conv2d");
        if (pad_.top < 0 || pad_.bottom < 0 || pad_.left < 0 || pad_.right < 0)
            fail("conv2d: padding (top " + std::to_string(pad_.top) + ", bottom " + std::to_string(pad_.bottom) +
                 ", left " + std::to_string(pad_.left) + ", right " + std::to_string(pad_.right) +
                 "); expected every side >= 0");
        weight = parameter<T>({cout_, cin_, kh_, kw_});
        if (has_bias_) this->bias = parameter<T>({cout_});
    }

    parameter<T> weight;  ///< [Cout, Cin, kh, kw]
    parameter<T> bias;    ///< [Cout] (empty without bias)

    std::int64_t in_channels() const { return cin_; }
    std::int64_t out_channels() const { return cout_; }
    std::int64_t kernel_h() const { return kh_; }
    std::int64_t kernel_w() const { return kw_; }
    std::int64_t stride() const { return stride_; }
    const padding2d& padding() const { return pad_; }

    void collect(parameter_list<T>& out, const std::string& prefix) {
        out.push_back({join_name(prefix, "weight"), &weight});
        if (has_bias_) out.push_back({join_name(prefix, "bias"), &bias});
    }

    /// Output spatial size for an input of height h, width w.
    std::int64_t out_h(std::int64_t h) const { return (h + pad_.top + pad_.bottom - kh_) / stride_ + 1; }
    std::int64_t out_w(std::int64_t w) const { return (w + pad_.left + pad_.right - kw_) / stride_ + 1; }

    /// y = conv(x) + bias; x [B, Cin, H, W] -> y [B, Cout, Ho, Wo].
    host_tensor<T> forward(cview<T> x, cache* c = nullptr) const {
        check_input(x.shape());
        const std::int64_t B = x.size(0), H = x.size(2), W = x.size(3);
        const std::int64_t Ho = out_h(H), Wo = out_w(W), P = Ho * Wo, K = cin_ * kh_ * kw_;
        host_tensor<T> y({B, cout_, Ho, Wo});
        auto Wm = as_eigen_matrix(weight.value.cview(), cout_, K);
        const bool direct = is_pointwise();
        detail::parallel_for(B, [&](std::int64_t b) {
            cview<T> xb = x.item(b);
            auto Y = as_eigen_matrix(y.view().item(b), cout_, P);
            if (direct) {
                Y.noalias() = Wm * as_eigen_matrix(xb, cin_, P);
            } else {
                host_tensor<T> col({K, P});
                im2col(xb.data(), H, W, Ho, Wo, col.data());
                Y.noalias() = Wm * as_eigen_matrix(col.cview(), K, P);
            }
            if (has_bias_) Y.colwise() += as_eigen_vector(bias.value.cview());
        });
        detail::add_gemm_flops(B * cout_, P, K);
        if (c) {
            c->x = copy_of(x);
            c->filled = true;
        }
        return y;
    }

    /// dx = col2im(Wᵀ dy); dW += Σ_b dy_b col_bᵀ; db += Σ dy over images and positions.
    host_tensor<T> backward(cview<T> dy, const cache& c) {
        require_cached(c.filled, "conv2d");
        const std::int64_t B = c.x.size(0), H = c.x.size(2), W = c.x.size(3);
        const std::int64_t Ho = out_h(H), Wo = out_w(W), P = Ho * Wo, K = cin_ * kh_ * kw_;
        const diffuse::shape ys{B, cout_, Ho, Wo};
        require_shape(dy.shape() == ys, "conv2d", "dy", dy.shape(), ys.str() + " (the output's shape)");
        host_tensor<T> dx(c.x.shape());
        auto Wm = as_eigen_matrix(weight.value.cview(), cout_, K);
        const bool direct = is_pointwise();
        // per-image weight gradients, summed in image order below (thread-count independent)
        host_tensor<T> dw_parts({B, cout_, K});
        detail::parallel_for(B, [&](std::int64_t b) {
            auto dY = as_eigen_matrix(dy.item(b), cout_, P);
            auto dWb = as_eigen_matrix(dw_parts.view().item(b), cout_, K);
            if (direct) {
                dWb.noalias() = dY * as_eigen_matrix(c.x.cview().item(b), cin_, P).transpose();
                as_eigen_matrix(dx.view().item(b), cin_, P).noalias() = Wm.transpose() * dY;
            } else {
                host_tensor<T> col({K, P});
                im2col(c.x.cview().item(b).data(), H, W, Ho, Wo, col.data());
                dWb.noalias() = dY * as_eigen_matrix(col.cview(), K, P).transpose();
                as_eigen_matrix(col.view(), K, P).noalias() = Wm.transpose() * dY;  // dcol
                col2im(col.data(), H, W, Ho, Wo, dx.view().item(b).data());
            }
        });
        detail::add_gemm_flops(2 * B * cout_, P, K);
        T* gw = weight.grad.data();
        const T* parts = dw_parts.data();
        const std::int64_t nw = cout_ * K;
        detail::parallel_for(nw, [&](std::int64_t i) {
            T s = gw[i];
            for (std::int64_t b = 0; b < B; ++b) s += parts[b * nw + i];
            gw[i] = s;
        });
        if (has_bias_) {
            T* gb = bias.grad.data();
            for (std::int64_t b = 0; b < B; ++b) {
                const T* d = dy.item(b).data();
                for (std::int64_t o = 0; o < cout_; ++o) {
                    T s = 0;
                    for (std::int64_t p = 0; p < P; ++p) s += d[o * P + p];
                    gb[o] += s;
                }
            }
        }
        return dx;
    }

private:
    bool is_pointwise() const {
        return kh_ == 1 && kw_ == 1 && stride_ == 1 && pad_.top == 0 && pad_.bottom == 0 && pad_.left == 0 &&
               pad_.right == 0;
    }

    void check_input(const diffuse::shape& s) const {
        const std::string expected = "[B, " + std::to_string(cin_) + ", H, W] (in_channels = " +
                                     std::to_string(cin_) + ")";
        require_shape(s.rank() == 4 && s[1] == cin_, "conv2d", "x", s, expected);
        require_shape(s[2] + pad_.top + pad_.bottom >= kh_ && s[3] + pad_.left + pad_.right >= kw_, "conv2d", "x",
                      s,
                      "a padded image at least as large as the " + std::to_string(kh_) + "x" + std::to_string(kw_) +
                          " kernel");
    }

    // The output columns q whose input column q·s − left + j lies inside [0, W): [q_lo, q_hi).
    void valid_columns(std::int64_t j, std::int64_t W, std::int64_t Wo, std::int64_t& q_lo,
                       std::int64_t& q_hi) const {
        const std::int64_t shift = pad_.left - j;  // input column = q·s − shift
        q_lo = shift > 0 ? (shift + stride_ - 1) / stride_ : 0;
        q_hi = (W - 1 + shift) >= 0 ? (W - 1 + shift) / stride_ + 1 : 0;
        q_lo = std::min(q_lo, Wo);
        q_hi = std::max(q_lo, std::min(q_hi, Wo));
    }

    // col[(c·kh + i)·kw + j, p·Wo + q] = x[c, p·s − top + i, q·s − left + j] (0 outside the image);
    // each output row is zeros, a contiguous (stride 1) or strided copy, zeros.
    void im2col(const T* x, std::int64_t H, std::int64_t W, std::int64_t Ho, std::int64_t Wo, T* col) const {
        const std::int64_t P = Ho * Wo;
        for (std::int64_t ch = 0; ch < cin_; ++ch)
            for (std::int64_t i = 0; i < kh_; ++i)
                for (std::int64_t j = 0; j < kw_; ++j) {
                    T* row = col + ((ch * kh_ + i) * kw_ + j) * P;
                    const T* xc = x + ch * H * W;
                    std::int64_t q_lo, q_hi;
                    valid_columns(j, W, Wo, q_lo, q_hi);
                    for (std::int64_t p = 0; p < Ho; ++p) {
                        const std::int64_t r = p * stride_ - pad_.top + i;
                        T* out = row + p * Wo;
                        if (r < 0 || r >= H) {
                            std::fill(out, out + Wo, T(0));
                            continue;
                        }
                        const T* xr = xc + r * W - pad_.left + j;  // xr[q·s] = x[c, r, q·s − left + j]
                        std::fill(out, out + q_lo, T(0));
                        if (stride_ == 1)
                            std::copy(xr + q_lo, xr + q_hi, out + q_lo);
                        else
                            for (std::int64_t q = q_lo; q < q_hi; ++q) out[q] = xr[q * stride_];
                        std::fill(out + q_hi, out + Wo, T(0));
                    }
                }
    }

    // the adjoint of im2col: dx[c, r, s] = Σ of dcol entries that read x[c, r, s] (overwrites dx)
    void col2im(const T* col, std::int64_t H, std::int64_t W, std::int64_t Ho, std::int64_t Wo, T* dx) const {
        const std::int64_t P = Ho * Wo;
        std::fill(dx, dx + cin_ * H * W, T(0));
        for (std::int64_t ch = 0; ch < cin_; ++ch)
            for (std::int64_t i = 0; i < kh_; ++i)
                for (std::int64_t j = 0; j < kw_; ++j) {
                    const T* row = col + ((ch * kh_ + i) * kw_ + j) * P;
                    T* xc = dx + ch * H * W;
                    std::int64_t q_lo, q_hi;
                    valid_columns(j, W, Wo, q_lo, q_hi);
                    for (std::int64_t p = 0; p < Ho; ++p) {
                        const std::int64_t r = p * stride_ - pad_.top + i;
                        if (r < 0 || r >= H) continue;
                        const T* in = row + p * Wo;
                        T* xr = xc + r * W - pad_.left + j;
                        if (stride_ == 1)
                            for (std::int64_t q = q_lo; q < q_hi; ++q) xr[q] += in[q];
                        else
                            for (std::int64_t q = q_lo; q < q_hi; ++q) xr[q * stride_] += in[q];
                    }
                }
    }

    std::int64_t cin_ = 0, cout_ = 0, kh_ = 1, kw_ = 1, stride_ = 1;
    padding2d pad_{};
    bool has_bias_ = true;
};

}  // namespace diffuse::nn
