#pragma once
// group_norm: torch.nn.GroupNorm(num_groups, num_channels, eps, affine=True) (Wu & He 2018).
// diffusers names: `<prefix>.weight` (γ), `<prefix>.bias` (β).
//
// Shapes: x [B, C, *] (any trailing spatial dims, S elements per channel), γ, β [C], y like x.
// The C channels form G groups of C/G consecutive channels; for image b and group g with the
// n = (C/G)·S elements x_i of that group:
//   μ = (1/n) Σ x_i,  σ² = (1/n) Σ (x_i − μ)²   (biased, as torch),  r = 1/√(σ² + eps)
//   x̂_i = (x_i − μ)·r,   y_i = γ_c x̂_i + β_c
// Backward (dy = ∂L/∂y), with g_i = γ_c dy_i:
//   dx_i = r·(g_i − mean(g) − x̂_i·mean(g ⊙ x̂))                       (overwrites)
//   dγ_c += Σ_{b, s} dy·x̂,   dβ_c += Σ_{b, s} dy                       (accumulate)
// The first line is the derivative of the normalisation: ∂x̂_j/∂x_i = r(δ_ij − 1/n − x̂_i x̂_j / n).
// Statistics are accumulated in double for float tensors too (two passes), so they do not lose
// digits on large groups.

#include <diffuse/nn/detail/parallel.hpp>
#include <diffuse/nn/layer.hpp>

#include <cmath>
#include <cstdint>
#include <string>

namespace diffuse::nn {

template <class T>
class group_norm {
public:
    struct cache {
        host_tensor<T> x_hat;  ///< normalised input [B, C, *]
        host_tensor<T> rstd;   ///< 1/√(σ² + eps) per (image, group) [B, G]
        bool filled = false;
    };

    group_norm() = default;
    group_norm(std::int64_t num_groups, std::int64_t num_channels, double eps = 1e-5, bool affine = true)
        : groups_(num_groups), channels_(num_channels), eps_(eps), affine_(affine) {
        require_size(num_groups, "num_groups", "group_norm");
        require_size(num_channels, "num_channels", "group_norm");
        if (num_channels % num_groups != 0)
            fail("group_norm: num_channels = " + std::to_string(num_channels) + " is not divisible by num_groups = " +
                 std::to_string(num_groups) + "; expected num_groups to divide the channel count");
        require_positive(eps, "group_norm eps");
        if (affine_) {
            weight = parameter<T>({channels_});
            bias = parameter<T>({channels_});
            std::fill(weight.value.data(), weight.value.data() + channels_, T(1));
        }
    }

    parameter<T> weight;  ///< γ [C] (ones at construction)
    parameter<T> bias;    ///< β [C] (zeros at construction)

    std::int64_t num_groups() const { return groups_; }
    std::int64_t num_channels() const { return channels_; }
    double eps() const { return eps_; }

    void collect(parameter_list<T>& out, const std::string& prefix) {
        if (!affine_) return;
        out.push_back({join_name(prefix, "weight"), &weight});
        out.push_back({join_name(prefix, "bias"), &bias});
    }

    /// y = γ·(x − μ)/√(σ² + eps) + β per group; x [B, C, *] -> y [B, C, *].
    host_tensor<T> forward(cview<T> x, cache* c = nullptr) const {
        require_shape(x.rank() >= 2 && x.size(1) == channels_, "group_norm", "x", x.shape(),
                      "[B, " + std::to_string(channels_) + ", ...] (num_channels = " + std::to_string(channels_) + ")");
        const std::int64_t B = x.size(0), S = x.numel() / (B * channels_), cg = channels_ / groups_, n = cg * S;
        host_tensor<T> y(x.shape());
        host_tensor<T> rstd({B, groups_});
        if (c) c->x_hat = host_tensor<T>(x.shape());
        detail::parallel_for(B * groups_, [&](std::int64_t bg) {
            const std::int64_t b = bg / groups_, g = bg % groups_;
            const std::int64_t off = (b * channels_ + g * cg) * S;
            const T* xs = x.data() + off;
            double sum = 0;
            for (std::int64_t i = 0; i < n; ++i) sum += xs[i];
            const double mu = sum / static_cast<double>(n);
            double ss = 0;
            for (std::int64_t i = 0; i < n; ++i) ss += (xs[i] - mu) * (xs[i] - mu);
            const double r = 1.0 / std::sqrt(ss / static_cast<double>(n) + eps_);
            rstd.data()[bg] = static_cast<T>(r);
            T* ys = y.data() + off;
            T* xh = c ? c->x_hat.data() + off : nullptr;
            for (std::int64_t k = 0; k < cg; ++k) {
                const std::int64_t ch = g * cg + k;
                const T gam = affine_ ? weight.value.data()[ch] : T(1);
                const T bet = affine_ ? bias.value.data()[ch] : T(0);
                for (std::int64_t s = 0; s < S; ++s) {
                    const std::int64_t i = k * S + s;
                    const T h = static_cast<T>((xs[i] - mu) * r);
                    if (xh) xh[i] = h;
                    ys[i] = gam * h + bet;
                }
            }
        });
        if (c) {
            c->rstd = std::move(rstd);
            c->filled = true;
        }
        return y;
    }

    /// dx = r·(g − mean(g) − x̂·mean(g x̂)) with g = γ dy; dγ += Σ dy x̂; dβ += Σ dy.
    host_tensor<T> backward(cview<T> dy, const cache& c) {
        require_cached(c.filled, "group_norm");
        require_shape(dy.shape() == c.x_hat.shape(), "group_norm", "dy", dy.shape(),
                      c.x_hat.shape().str() + " (the output's shape)");
        const std::int64_t B = dy.size(0), S = dy.numel() / (B * channels_), cg = channels_ / groups_, n = cg * S;
        host_tensor<T> dx(dy.shape());
        detail::parallel_for(B * groups_, [&](std::int64_t bg) {
            const std::int64_t b = bg / groups_, g = bg % groups_;
            const std::int64_t off = (b * channels_ + g * cg) * S;
            const T* d = dy.data() + off;
            const T* xh = c.x_hat.data() + off;
            double mg = 0, mgx = 0;
            for (std::int64_t k = 0; k < cg; ++k) {
                const double gam = affine_ ? weight.value.data()[g * cg + k] : 1.0;
                for (std::int64_t s = 0; s < S; ++s) {
                    const std::int64_t i = k * S + s;
                    const double gi = gam * d[i];
                    mg += gi;
                    mgx += gi * xh[i];
                }
            }
            mg /= static_cast<double>(n);
            mgx /= static_cast<double>(n);
            const double r = c.rstd.data()[bg];
            T* out = dx.data() + off;
            for (std::int64_t k = 0; k < cg; ++k) {
                const double gam = affine_ ? weight.value.data()[g * cg + k] : 1.0;
                for (std::int64_t s = 0; s < S; ++s) {
                    const std::int64_t i = k * S + s;
                    out[i] = static_cast<T>(r * (gam * d[i] - mg - xh[i] * mgx));
                }
            }
        });
        if (affine_) {
            // per-channel sums in image order (thread-count independent)
            detail::parallel_for(channels_, [&](std::int64_t ch) {
                double sg = 0, sb = 0;
                for (std::int64_t b = 0; b < B; ++b) {
                    const T* d = dy.data() + (b * channels_ + ch) * S;
                    const T* xh = c.x_hat.data() + (b * channels_ + ch) * S;
                    for (std::int64_t s = 0; s < S; ++s) {
                        sg += static_cast<double>(d[s]) * xh[s];
                        sb += d[s];
                    }
                }
                weight.grad.data()[ch] += static_cast<T>(sg);
                bias.grad.data()[ch] += static_cast<T>(sb);
            });
        }
        return dx;
    }

private:
    std::int64_t groups_ = 1, channels_ = 1;
    double eps_ = 1e-5;
    bool affine_ = true;
};

}  // namespace diffuse::nn
