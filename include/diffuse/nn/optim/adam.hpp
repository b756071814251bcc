#pragma once
// adam: Adam and AdamW (Kingma & Ba 2015, Alg. 1; Loshchilov & Hutter 2019), with the arithmetic of
// torch.optim.Adam / AdamW (single-tensor path), so a step here and there agree to rounding.
//
// For each parameter θ with gradient g, at step t = 1, 2, …:
//   AdamW: θ ← θ·(1 − lr·λ)                      (decoupled weight decay)
//   Adam:  g ← g + λ·θ                            (L2 weight decay, when λ > 0)
//   m ← β₁·m + (1 − β₁)·g,     v ← β₂·v + (1 − β₂)·g²
//   θ ← θ − (lr / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + ε)
// Closed form used by the tests: for a constant gradient g, m/(1 − β₁ᵗ) = g and v/(1 − β₂ᵗ) = g²
// exactly, so every step moves θ by lr·g/(|g| + ε).

#include <diffuse/core/error.hpp>
#include <diffuse/nn/detail/parallel.hpp>
#include <diffuse/nn/layer.hpp>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace diffuse::nn {

struct adam_options {
    double lr = 1e-3;
    double beta1 = 0.9;
    double beta2 = 0.999;
    double eps = 1e-8;
    double weight_decay = 0.0;
    bool decoupled_weight_decay = false;  ///< true: AdamW
};

template <class T>
class adam {
public:
    adam(parameter_list<T> params, adam_options options = {}) : params_(std::move(params)), opt_(options) {
        require_positive(opt_.lr, "adam lr");
        if (!(opt_.beta1 >= 0 && opt_.beta1 < 1)) fail_argument("adam beta1", opt_.beta1, "in [0, 1)");
        if (!(opt_.beta2 >= 0 && opt_.beta2 < 1)) fail_argument("adam beta2", opt_.beta2, "in [0, 1)");
        require_positive(opt_.eps, "adam eps");
        require_nonnegative(opt_.weight_decay, "adam weight_decay");
        for (auto& p : params_) {
            m_.emplace_back(p.param->shape(), T(0));
            v_.emplace_back(p.param->shape(), T(0));
        }
    }

    const adam_options& options() const { return opt_; }
    void set_lr(double lr) {
        require_positive(lr, "adam lr");
        opt_.lr = lr;
    }
    std::int64_t steps() const { return t_; }

    /// One update of every parameter from its accumulated gradient (gradients are not cleared).
    void step() {
        ++t_;
        const double bc1 = 1.0 - std::pow(opt_.beta1, static_cast<double>(t_));
        const double bc2 = 1.0 - std::pow(opt_.beta2, static_cast<double>(t_));
        const T step_size = static_cast<T>(opt_.lr / bc1), bc2_sqrt = static_cast<T>(std::sqrt(bc2));
        const T b1 = static_cast<T>(opt_.beta1), b2 = static_cast<T>(opt_.beta2), eps = static_cast<T>(opt_.eps);
        const T one_b1 = static_cast<T>(1.0 - opt_.beta1), one_b2 = static_cast<T>(1.0 - opt_.beta2);
        const T wd = static_cast<T>(opt_.weight_decay), decay = static_cast<T>(1.0 - opt_.lr * opt_.weight_decay);
        for (std::size_t k = 0; k < params_.size(); ++k) {
            T* th = params_[k].param->value.data();
            const T* g = params_[k].param->grad.data();
            T* m = m_[k].data();
            T* v = v_[k].data();
            const std::int64_t n = params_[k].param->numel();
            const bool l2 = opt_.weight_decay > 0 && !opt_.decoupled_weight_decay;
            const bool adamw = opt_.weight_decay > 0 && opt_.decoupled_weight_decay;
            detail::parallel_for((n + 8191) / 8192, [&](std::int64_t blk) {
                const std::int64_t e = std::min<std::int64_t>(n, (blk + 1) * 8192);
                for (std::int64_t i = blk * 8192; i < e; ++i) {
                    if (adamw) th[i] *= decay;
                    const T gi = l2 ? g[i] + wd * th[i] : g[i];
                    m[i] = m[i] * b1 + one_b1 * gi;
                    v[i] = v[i] * b2 + one_b2 * gi * gi;
                    const T denom = std::sqrt(v[i]) / bc2_sqrt + eps;
                    th[i] -= step_size * (m[i] / denom);
                }
            });
        }
    }

    void zero_grad() {
        for (auto& p : params_) p.param->zero_grad();
    }

private:
    parameter_list<T> params_;
    adam_options opt_;
    std::vector<host_tensor<T>> m_, v_;
    std::int64_t t_ = 0;
};

}  // namespace diffuse::nn
