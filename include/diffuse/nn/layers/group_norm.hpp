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
// Statistics and the backward's sums are accumulated in double for float tensors too (two passes,
// Eigen's vectorised reductions), so they do not lose digits on large groups.

#include <diffuse/nn/detail/parallel.hpp>
#include <diffuse/nn/layer.hpp>

#include <Eigen/Core>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

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
            const std::int64_t g = bg % groups_;
            const std::int64_t off = bg * n;  // the group's elements are contiguous: (b·C + g·cg)·S
            const carray X(x.data() + off, n);
            // two-pass statistics in double (vectorised reductions)
            const double mu = X.template cast<double>().sum() / static_cast<double>(n);
            const double var = (X.template cast<double>() - mu).square().sum() / static_cast<double>(n);
            const double r = 1.0 / std::sqrt(var + eps_);
            rstd.data()[bg] = static_cast<T>(r);
            for (std::int64_t k = 0; k < cg; ++k) {
                const std::int64_t ch = g * cg + k, o = off + k * S;
                const T gam = affine_ ? weight.value.data()[ch] : T(1);
                const T bet = affine_ ? bias.value.data()[ch] : T(0);
                const carray Xc(x.data() + o, S);
                array Y(y.data() + o, S);
                if (c) {
                    array H(c->x_hat.data() + o, S);
                    H = (Xc - static_cast<T>(mu)) * static_cast<T>(r);  // x̂
                    Y = H * gam + bet;
                } else {
                    Y = (Xc - static_cast<T>(mu)) * static_cast<T>(r * gam) + bet;
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
        // per (image, channel): Σ_s dy and Σ_s dy·x̂ (double) — the mean terms of dx and dβ, dγ
        std::vector<double> sum_d(static_cast<std::size_t>(B * channels_)), sum_dx(sum_d.size());
        detail::parallel_for(B * groups_, [&](std::int64_t bg) {
            const std::int64_t b = bg / groups_, g = bg % groups_, off = bg * n;
            double mg = 0, mgx = 0;
            for (std::int64_t k = 0; k < cg; ++k) {
                const std::int64_t ch = g * cg + k, o = off + k * S;
                const carray D(dy.data() + o, S), H(c.x_hat.data() + o, S);
                const double sd = D.template cast<double>().sum();
                const double sdx = (D.template cast<double>() * H.template cast<double>()).sum();
                sum_d[static_cast<std::size_t>(b * channels_ + ch)] = sd;
                sum_dx[static_cast<std::size_t>(b * channels_ + ch)] = sdx;
                const double gam = affine_ ? static_cast<double>(weight.value.data()[ch]) : 1.0;
                mg += gam * sd;
                mgx += gam * sdx;
            }
            mg /= static_cast<double>(n);
            mgx /= static_cast<double>(n);
            const double r = c.rstd.data()[bg];
            for (std::int64_t k = 0; k < cg; ++k) {
                const std::int64_t ch = g * cg + k, o = off + k * S;
                const T gam = affine_ ? weight.value.data()[ch] : T(1);
                const carray D(dy.data() + o, S), H(c.x_hat.data() + o, S);
                array(dx.data() + o, S) = (D * static_cast<T>(r * gam) - static_cast<T>(r * mg)) -
                                          H * static_cast<T>(r * mgx);
            }
        });
        if (affine_) {
            for (std::int64_t ch = 0; ch < channels_; ++ch) {  // image order: thread-count independent
                double sg = 0, sb = 0;
                for (std::int64_t b = 0; b < B; ++b) {
                    sg += sum_dx[static_cast<std::size_t>(b * channels_ + ch)];
                    sb += sum_d[static_cast<std::size_t>(b * channels_ + ch)];
                }
                weight.grad.data()[ch] += static_cast<T>(sg);
                bias.grad.data()[ch] += static_cast<T>(sb);
            }
        }
        return dx;
    }

private:
    using array = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
    using carray = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;

    std::int64_t groups_ = 1, channels_ = 1;
    double eps_ = 1e-5;
    bool affine_ = true;
};

}  // namespace diffuse::nn
