#pragma once
// layer_norm: torch.nn.LayerNorm(D, eps, elementwise_affine) over the last dimension (Ba et al. 2016).
// diffusers names: `<prefix>.weight` (γ), `<prefix>.bias` (β).
//
// Shapes: x [..., D] (N rows of D features), γ, β [D], y like x. Per row:
//   μ = (1/D) Σ_d x_d,  σ² = (1/D) Σ_d (x_d − μ)²,  r = 1/√(σ² + eps),  x̂ = (x − μ) r,  y = γ ⊙ x̂ + β
// Backward, g = γ ⊙ dy (the same derivation as group_norm.hpp with one group per row):
//   dx = r·(g − mean(g) − x̂·mean(g ⊙ x̂))        (overwrites)
//   dγ += Σ_rows dy ⊙ x̂,  dβ += Σ_rows dy         (accumulate)

#include <diffuse/nn/detail/parallel.hpp>
#include <diffuse/nn/layer.hpp>

#include <cmath>
#include <cstdint>
#include <string>

namespace diffuse::nn {

template <class T>
class layer_norm {
public:
    struct cache {
        host_tensor<T> x_hat;  ///< [..., D]
        host_tensor<T> rstd;   ///< [N]
        bool filled = false;
    };

    layer_norm() = default;
    explicit layer_norm(std::int64_t features, double eps = 1e-5, bool affine = true)
        : d_(features), eps_(eps), affine_(affine) {
        require_size(features, "normalized_shape", "layer_norm");
        require_positive(eps, "layer_norm eps");
        if (affine_) {
            weight = parameter<T>({d_});
            bias = parameter<T>({d_});
            std::fill(weight.value.data(), weight.value.data() + d_, T(1));
        }
    }

    parameter<T> weight;  ///< γ [D]
    parameter<T> bias;    ///< β [D]

    std::int64_t features() const { return d_; }

    void collect(parameter_list<T>& out, const std::string& prefix) {
        if (!affine_) return;
        out.push_back({join_name(prefix, "weight"), &weight});
        out.push_back({join_name(prefix, "bias"), &bias});
    }

    /// y = γ ⊙ (x − μ)/√(σ² + eps) + β over the last dimension.
    host_tensor<T> forward(cview<T> x, cache* c = nullptr) const {
        require_shape(x.rank() >= 1 && x.size(x.rank() - 1) == d_, "layer_norm", "x", x.shape(),
                      "[..., " + std::to_string(d_) + "] (last dimension = normalized_shape)");
        const std::int64_t N = x.numel() / d_;
        host_tensor<T> y(x.shape());
        host_tensor<T> rstd({N});
        if (c) c->x_hat = host_tensor<T>(x.shape());
        detail::parallel_for(N, [&](std::int64_t n) {
            const T* xs = x.data() + n * d_;
            double sum = 0;
            for (std::int64_t i = 0; i < d_; ++i) sum += xs[i];
            const double mu = sum / static_cast<double>(d_);
            double ss = 0;
            for (std::int64_t i = 0; i < d_; ++i) ss += (xs[i] - mu) * (xs[i] - mu);
            const double r = 1.0 / std::sqrt(ss / static_cast<double>(d_) + eps_);
            rstd.data()[n] = static_cast<T>(r);
            T* ys = y.data() + n * d_;
            T* xh = c ? c->x_hat.data() + n * d_ : nullptr;
            for (std::int64_t i = 0; i < d_; ++i) {
                const T h = static_cast<T>((xs[i] - mu) * r);
                if (xh) xh[i] = h;
                ys[i] = affine_ ? weight.value.data()[i] * h + bias.value.data()[i] : h;
            }
        });
        if (c) {
            c->rstd = std::move(rstd);
            c->filled = true;
        }
        return y;
    }

    host_tensor<T> backward(cview<T> dy, const cache& c) {
        require_cached(c.filled, "layer_norm");
        require_shape(dy.shape() == c.x_hat.shape(), "layer_norm", "dy", dy.shape(),
                      c.x_hat.shape().str() + " (the output's shape)");
        const std::int64_t N = dy.numel() / d_;
        host_tensor<T> dx(dy.shape());
        detail::parallel_for(N, [&](std::int64_t n) {
            const T* d = dy.data() + n * d_;
            const T* xh = c.x_hat.data() + n * d_;
            double mg = 0, mgx = 0;
            for (std::int64_t i = 0; i < d_; ++i) {
                const double gi = (affine_ ? static_cast<double>(weight.value.data()[i]) : 1.0) * d[i];
                mg += gi;
                mgx += gi * xh[i];
            }
            mg /= static_cast<double>(d_);
            mgx /= static_cast<double>(d_);
            const double r = c.rstd.data()[n];
            T* out = dx.data() + n * d_;
            for (std::int64_t i = 0; i < d_; ++i) {
                const double gi = (affine_ ? static_cast<double>(weight.value.data()[i]) : 1.0) * d[i];
                out[i] = static_cast<T>(r * (gi - mg - xh[i] * mgx));
            }
        });
        if (affine_) {
            detail::parallel_for(d_, [&](std::int64_t i) {
                double sg = 0, sb = 0;
                for (std::int64_t n = 0; n < N; ++n) {
                    sg += static_cast<double>(dy.data()[n * d_ + i]) * c.x_hat.data()[n * d_ + i];
                    sb += dy.data()[n * d_ + i];
                }
                weight.grad.data()[i] += static_cast<T>(sg);
                bias.grad.data()[i] += static_cast<T>(sb);
            });
        }
        return dx;
    }

private:
    std::int64_t d_ = 1;
    double eps_ = 1e-5;
    bool affine_ = true;
};

}  // namespace diffuse::nn
