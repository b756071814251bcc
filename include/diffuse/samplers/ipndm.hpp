#pragma once
// iPNDM: improved pseudo linear multistep (Zhang & Chen 2023, DEIS paper, "iPNDM"; k-diffusion /
// ComfyUI sample_ipndm after zju-pi/diff-sampler; diffusers IPNDMScheduler; docs/samplers/pndm.md).
//
// Levels ℓ_0 .. ℓ_N of a level_sequence (VE or VP, any σ grid). With σ = s/a the probability-flow
// ODE reads d(x/a)/dσ = eps, and iPNDM is Adams–Bashforth on it with the FIXED (uniform-step)
// weights of order k_i = min(max_order, j + 1) (j = i − begin_index(): the order rises
// 1, 2, 3, 4 from the start of a run, no Runge–Kutta or Heun start):
//
//   e_i = eps estimate of the model output at ℓ_i (eps_from_output; kept in the history)
//   E   = Σ_k w^{(k_i)}_k e_{i−k}      w = 1 | (3, −1)/2 | (23, −16, 5)/12 | (55, −59, 37, −9)/24
//   x'  = (a'/a)·x + a'(σ' − σ)·E     (k-diffusion: x + (σ' − σ)·d with d = (x − D)/σ; diffusers:
//                                      x' = a'·(x − s·E)/a + s'·E, the same for a > 0)
//
// A step to σ' = 0 returns the x0 estimate of that step's model output when denoise_at_zero
// (k-diffusion: `if t_next == 0: x_next = denoised`, i.e. first order there); otherwise the AB
// combination is carried to σ = 0 (diffusers IPNDMScheduler: x' = (x − s·E)/a). A VP start at
// σ = +inf (a = 0; diffusers' IPNDM levels) is a first step x' = a'·x0_hat + s'·eps_hat (the limit
// of the formula; diffusers divides by max(a, 1e-8) and so drops the x0_hat term there).
//
// With constant weights the method is AB-k only on grids uniform in σ (ρ); on other grids the
// mismatch of the step ratios leaves it second order (test_ipndm.cpp measures both; cf.
// closed_forms C4.5 for PLMS). One lincomb for the new history entry and one (two at order 4)
// for x per step; no noise is drawn.

#include <diffuse/backend/lincomb.hpp>
#include <diffuse/core/error.hpp>
#include <diffuse/core/philox.hpp>
#include <diffuse/core/tensor.hpp>
#include <diffuse/models/denoiser.hpp>
#include <diffuse/process/parametrization.hpp>
#include <diffuse/samplers/detail/level_checks.hpp>
#include <diffuse/samplers/detail/multistep_history.hpp>
#include <diffuse/samplers/levels.hpp>
#include <diffuse/samplers/pndm.hpp>
#include <diffuse/samplers/sampler.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <limits>
#include <numbers>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace diffuse::samplers {

struct ipndm_config {
    int max_order = 4;                                   ///< in [1, 4]
    bool denoise_at_zero = true;                         ///< a step to σ = 0 returns the x0 estimate (k-diffusion)
    model_input input = model_input::state;              ///< what the model is shown (levels.hpp)
    prediction_type prediction = prediction_type::sample;  ///< what step(m, i, x, rng) assumes m is
};

/// x' = c_x·x + Σ_k c_e[k]·e_{i−k} for one iPNDM step (a > 0).
struct ipndm_coeffs {
    double c_x = 0.0;
    std::array<double, 4> c_e{};
    int order = 1;
};

class ipndm_sampler : public begin_index_support {
public:
    ipndm_sampler() = default;
    /// Any level sequence (VE, or VP possibly starting at σ = +inf).
    explicit ipndm_sampler(level_sequence levels, ipndm_config config = {}) : config_(config) {
        require(config_.max_order >= 1 && config_.max_order <= 4, "max_order", config_.max_order,
                "in [1, 4] (Adams–Bashforth orders with fixed weights)");
        set_levels(std::move(levels));
    }
    /// VE levels σ_0 > ... > σ_N >= 0 (k-diffusion sigmas).
    explicit ipndm_sampler(std::vector<double> sigmas, ipndm_config config = {})
        : ipndm_sampler(level_sequence::ve(std::move(sigmas)), config) {}

    /// diffusers IPNDMScheduler's n + 1 levels: u_k = 1 − k/n, s = sin²(π u/2), a = √(1 − s²)
    /// (VP, σ_0 = +inf, σ_n = 0), timesteps t = (2/π)·atan(σ) (diffusers: atan2(s, a)·2/π).
    static level_sequence diffusers_levels(int n) {
        require(n >= 1, "num_inference_steps", n, ">= 1");
        std::vector<double> sig(static_cast<std::size_t>(n) + 1);
        sig[0] = std::numeric_limits<double>::infinity();
        sig[static_cast<std::size_t>(n)] = 0.0;
        for (int k = 1; k < n; ++k) {
            const double sn = std::sin((1.0 - static_cast<double>(k) / n) * std::numbers::pi / 2);
            const double s = sn * sn;
            sig[static_cast<std::size_t>(k)] = s / std::sqrt(1.0 - s * s);
        }
        return level_sequence::vp(std::move(sig), [](double sigma) { return 2.0 / std::numbers::pi * std::atan(sigma); });
    }

    void set_levels(level_sequence levels) {
        require(levels.size() >= 2, "levels.size()", levels.size(), ">= 2 (N + 1 levels for N steps)");
        levels_ = std::move(levels);
        reset_begin_index();
        last_step_.reset();
    }
    void set_begin_index(std::size_t k) {
        store_begin_index(k, num_steps(), "ipndm_sampler");
        last_step_.reset();
    }

    const level_sequence& levels() const { return levels_; }
    const ipndm_config& config() const { return config_; }
    std::size_t num_steps() const { return ::diffuse::samplers::detail::steps_of(levels_); }
    /// The level's timestep when it has one, else σ_i.
    double timestep(std::size_t i) const {
        return ::diffuse::samplers::detail::timestep_or_sigma(levels_, i, "ipndm_sampler");
    }
    int order() const { return config_.max_order; }
    double init_noise_sigma() const { return ::diffuse::samplers::detail::init_noise_sigma_of(levels_); }
    noise_condition state_level(std::size_t i) const {
        return ::diffuse::samplers::detail::step_level(levels_, i, "ipndm_sampler");
    }
    double model_input_scale(std::size_t i) const { return model_input_scale_of(state_level(i), config_.input); }
    noise_condition model_level(std::size_t i) const { return seen_level(state_level(i), config_.input); }
    template <class T, class S>
    void scale_model_input(tensor_view<T, S> out, std::type_identity_t<tensor_view<const T, S>> x, std::size_t i) const {
        lincomb(out, model_input_scale(i), x);
    }

    /// The Adams–Bashforth order of step i (runs start at begin_index()).
    int step_order(std::size_t i) const {
        ::diffuse::samplers::detail::require_step_index(i, num_steps(), "ipndm_sampler");
        require(i >= begin_index(), "step index", i, ">= begin_index() = " + std::to_string(begin_index()));
        if (config_.denoise_at_zero && levels_.sigma(i + 1) == 0.0) return 1;
        return static_cast<int>(std::min<std::size_t>(static_cast<std::size_t>(config_.max_order), i - begin_index() + 1));
    }

    /// The coefficient table of step i on the eps history (requires a_i > 0).
    ipndm_coeffs coefficients(std::size_t i) const {
        const int k = step_order(i);
        const noise_condition& from = levels_[i];
        const noise_condition& to = levels_[i + 1];
        require(from.a > 0.0, "level.a", from.a, "> 0 (use step() for a start at σ = +inf)");
        ipndm_coeffs c;
        c.order = k;
        c.c_x = to.a / from.a;
        const double d = to.a * (levels_.sigma(i + 1) - levels_.sigma(i));  // a'(σ' − σ) = s' − a'σ
        const std::array<double, 4> w = adams_bashforth_weights(k);
        for (std::size_t j = 0; j < 4; ++j) c.c_e[j] = d * w[j];
        return c;
    }

    /// x <- x at level i + 1; m a `from` prediction at (c_in·x, model_level(i)). Steps run in
    /// order from begin_index(); step begin_index() restarts the history. Draws no noise.
    template <class T, class S>
    void step(std::type_identity_t<tensor_view<const T, S>> m, prediction_type from, std::size_t i,
              tensor_view<T, S> x, philox_rng& /*rng*/) {
        namespace sd = ::diffuse::samplers::detail;
        sd::require_step_index(i, num_steps(), "ipndm_sampler.step");
        sd::require_step_tensors<T, S>(m, x, "ipndm_sampler.step");
        std::vector<tensor<T, S>>* hist = nullptr;
        if (i == begin_index()) {
            hist = &history_.reset<T, S>(4, x.shape());
            head_ = 0;
        } else {
            hist = history_.find<T, S>();
            if (!last_step_ || *last_step_ + 1 != i || !hist)
                fail_argument("ipndm_sampler.step: step index", i,
                              "the next step " + (last_step_ ? std::to_string(*last_step_ + 1) : std::string("(none)")) +
                                  " or begin_index() = " + std::to_string(begin_index()) +
                                  " (history samplers run their steps in order)");
            if ((*hist)[0].shape() != x.shape())
                fail("ipndm_sampler.step: x has shape " + x.shape().str() + " but the history has shape " +
                     (*hist)[0].shape().str() + "; expected the shape of the run's first step");
        }
        const noise_condition seen = model_level(i);
        const double c_in = model_input_scale(i);
        const affine_estimate e = eps_from_output(from, seen, c_in);
        const tensor_view<const T, S> xc = x;
        head_ = (head_ + 3) % 4;
        tensor<T, S>& ei = (*hist)[head_];
        lincomb(ei.view(), e.x, xc, e.m, m);
        last_step_ = i;
        const noise_condition& l = levels_[i];
        const noise_condition& to = levels_[i + 1];
        if (l.a == 0.0) {  // start at σ = +inf: x' = a'·x0_hat + s'·eps_hat (first order)
            const affine_estimate d = x0_from_output(from, seen, c_in);
            lincomb(x, to.a * d.x + to.s * e.x, xc, to.a * d.m + to.s * e.m, m);
            return;
        }
        if (config_.denoise_at_zero && to.s == 0.0) {  // x' = a'·x0_hat
            const affine_estimate d = x0_from_output(from, seen, c_in);
            lincomb(x, to.a * d.x, xc, to.a * d.m, m);
            return;
        }
        const ipndm_coeffs c = coefficients(i);
        auto t = [&](std::size_t k) {
            return sd::term<T, S>{c.c_e[k], (*hist)[(head_ + (k < 4 ? k : 0)) % 4].cview()};
        };
        sd::lincomb_many<T, S, 5>(x, {sd::term<T, S>{c.c_x, xc}, t(0), t(1), t(2), t(3)});
    }

    template <class T, class S>
    void step(std::type_identity_t<tensor_view<const T, S>> m, std::size_t i, tensor_view<T, S> x, philox_rng& rng) {
        step<T, S>(m, config_.prediction, i, x, rng);
    }

private:
    level_sequence levels_;
    ipndm_config config_{};
    detail::history_store history_;
    std::size_t head_ = 0;
    std::optional<std::size_t> last_step_;
};

}  // namespace diffuse::samplers
