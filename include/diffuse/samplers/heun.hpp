#pragma once
// Heun's method in σ-space (Karras et al. 2022 Alg. 1 / Alg. 2 with churn; k-diffusion
// sample_heun; diffusers HeunDiscreteScheduler; docs/samplers/euler_family.md §3).
//
// Method step k goes from level ℓ_k (σ, after churn σ̂, level (â, ŝ)) to ℓ_{k+1} = (a', s')
// (σ' = s'/a') with two model evaluations. In y = x/a and h = σ' − σ̂:
//
//   stage 0 (step i = 2k):     d1 = (ŷ − D1)/σ̂,   y2 = ŷ + h·d1          (the Euler predictor)
//   stage 1 (step i = 2k + 1): d2 = (y2 − D2)/σ', y' = ŷ + (h/2)·(d1 + d2)
//
// with D1 the x0 estimate of the model at σ̂ and D2 at σ' (model_level(2k + 1) = ℓ_{k+1},
// timestep t_{k+1}, as diffusers' repeat_interleave'd timesteps). Coded as lincombs:
//   stage 0:  u  = a'·(ŷ + (h/2)·d1)  (kept inside the sampler),   x <- x2 = a'·y2  (Euler step)
//   stage 1:  x' = u + a'(h/2)·d2     (one lincomb of u, x2, m2)
// When σ' = 0 the method step is ONE plain Euler step to σ' = 0 (x' = D1), as k-diffusion and
// diffusers do. So num_steps() = 2N, or 2N − 1 when the last level is σ_N = 0, and steps count
// model evaluations (diffusers' convention). Churn (heun_config::churn) is euler.hpp's: applied by
// prepare_step(2k, x, rng) before the first evaluation of method step k (k-diffusion's γ uses
// N = the number of method steps); prepare_step of a stage-1 step does nothing.
//
// Steps must run in order: stage 1 of method step k needs stage 0 of k just before it (an error
// otherwise); set_begin_index(i) accepts only stage-0 steps.

#include <diffuse/backend/lincomb.hpp>
#include <diffuse/backend/randn.hpp>
#include <diffuse/core/error.hpp>
#include <diffuse/core/philox.hpp>
#include <diffuse/core/tensor.hpp>
#include <diffuse/samplers/euler.hpp>
#include <diffuse/samplers/levels.hpp>
#include <diffuse/samplers/sampler.hpp>

#include <cmath>
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

namespace diffuse::samplers {

struct heun_config {
    model_input input = model_input::state;
    prediction_type prediction = prediction_type::sample;  ///< what step(m, i, x, rng) assumes m is
    churn_config churn{};                                   ///< off by default (s_churn = 0)
};

class heun_sampler : public begin_index_support {
public:
    heun_sampler() = default;
    /// VE levels σ_0 > ... > σ_N >= 0 (N method steps).
    explicit heun_sampler(std::vector<double> sigmas, heun_config config = {})
        : heun_sampler(level_sequence::ve(std::move(sigmas)), config) {}
    /// Any level sequence (VE or VP).
    explicit heun_sampler(level_sequence levels, heun_config config = {}) : config_(config) {
        detail::validate_churn(config_.churn, "heun_sampler");
        set_levels(std::move(levels));
    }

    void set_levels(level_sequence levels) {
        levels_ = detail::checked_sigma_levels(std::move(levels), "heun_sampler");
        churn_.clear();
        steps_.clear();
        for (std::size_t k = 0; k + 1 < levels_.size(); ++k) {
            churn_.push_back(detail::churn_of(config_.churn, levels_, k));
            steps_.push_back({k, 0});
            if (levels_.sigma(k + 1) > 0.0) steps_.push_back({k, 1});
        }
        pending_ = prepared_ = npos;
        u_.clear();
        reset_begin_index();
    }
    /// Start at step i (a stage-0 step; diffusers: t_start·order).
    void set_begin_index(std::size_t i) {
        store_begin_index(i, num_steps(), "heun_sampler");
        if (steps_[i].stage != 0)
            fail_argument("heun_sampler.set_begin_index: k", i, "a first-stage step (even; the second stage cannot start a run)");
    }

    const level_sequence& levels() const { return levels_; }
    const heun_config& config() const { return config_; }
    /// N, the number of method steps (levels − 1).
    std::size_t num_method_steps() const { return levels_.empty() ? 0 : levels_.size() - 1; }
    /// Model evaluations: 2N, minus 1 when σ_N = 0.
    std::size_t num_steps() const { return steps_.size(); }
    /// Method step and stage of step i.
    stage_index stage_of(std::size_t i) const {
        detail::require_step_index(i, num_steps(), "heun_sampler");
        return steps_[i];
    }
    /// σ of the model evaluation without churn: σ_k (stage 0), σ_{k+1} (stage 1).
    double timestep(std::size_t i) const { return state_level(i).sigma(); }
    int order() const { return 2; }
    double init_noise_sigma() const {
        if (levels_.empty()) return 1.0;
        return levels_.space() == state_space::ve ? levels_.sigma(0) : 1.0;
    }
    /// The level of x when step i begins: ℓ_k (stage 0, before churn) or ℓ_{k+1} (stage 1).
    noise_condition state_level(std::size_t i) const {
        const stage_index s = stage_of(i);
        return levels_[s.stage == 0 ? s.k : s.k + 1];
    }
    /// γ of method step k of step i (0 without churn; 0 for stage 1).
    double churn_gamma(std::size_t i) const {
        const stage_index s = stage_of(i);
        return s.stage == 0 ? churn_[s.k].gamma : 0.0;
    }
    /// The level x has when the model is called at step i (after prepare_step).
    noise_condition churned_level(std::size_t i) const {
        const stage_index s = stage_of(i);
        return s.stage == 0 ? churn_[s.k].hat : levels_[s.k + 1];
    }
    double model_input_scale(std::size_t i) const { return model_input_scale_of(churned_level(i), config_.input); }
    noise_condition model_level(std::size_t i) const { return seen_level(churned_level(i), config_.input); }
    template <class T, class S>
    void scale_model_input(tensor_view<T, S> out, std::type_identity_t<tensor_view<const T, S>> x, std::size_t i) const {
        lincomb(out, model_input_scale(i), x);
    }

    /// Churn before the first evaluation of a method step (stage 0); nothing at stage 1.
    template <class T, class S>
    void prepare_step(std::size_t i, tensor_view<T, S> x, philox_rng& rng) {
        const stage_index s = stage_of(i);
        if (s.stage != 0) return;
        if (churn_[s.k].draws) {
            tensor<T, S> z(x.shape());
            randn(z.view(), rng);
            apply_churn<T, S>(s.k, x, z.cview());
        }
        prepared_ = i;
    }
    /// prepare_step with the standard normal z given.
    template <class T, class S>
    void prepare_step_with_noise(std::size_t i, tensor_view<T, S> x, std::type_identity_t<tensor_view<const T, S>> z) {
        const stage_index s = stage_of(i);
        require_same_shape(z.shape(), "z", x.shape(), "x");
        if (s.stage != 0) return;
        apply_churn<T, S>(s.k, x, z);
        prepared_ = i;
    }

    /// Step i: stage 0 moves x to the Euler predictor at ℓ_{k+1} (or finishes the method step
    /// with Euler when σ_{k+1} = 0); stage 1 moves x to the Heun result at ℓ_{k+1}. Draws no noise.
    template <class T, class S>
    void step(std::type_identity_t<tensor_view<const T, S>> m, prediction_type from, std::size_t i,
              tensor_view<T, S> x, philox_rng& /*rng*/) {
        const stage_index s = stage_of(i);
        detail::require_step_tensors<T, S>(m, x, "heun_sampler.step");
        const tensor_view<const T, S> xc = x;
        const noise_condition hat = churn_[s.k].hat, next = levels_[s.k + 1];
        const double h = next.sigma() - hat.sigma();
        if (s.stage == 0) {
            if (churn_[s.k].gamma > 0.0 && prepared_ != i)
                fail("heun_sampler.step: step " + std::to_string(i) + " has churn (γ = " +
                     std::to_string(churn_[s.k].gamma) + "); call prepare_step(" + std::to_string(i) +
                     ", x, rng) before the model call (sample() does)");
            prepared_ = npos;
            const euler_coeffs e = euler_coefficients(from, hat, next, model_level(i), model_input_scale(i));
            if (next.s == 0.0) {  // plain Euler to σ' = 0
                lincomb(x, e.c_x, xc, e.c_m, m);
                pending_ = npos;
                return;
            }
            // u = a'·(ŷ + (h/2)·d1), d1 = d_x·x̂ + d_m·m
            const affine_estimate d1 = detail::derivative_of(from, hat, model_level(i), model_input_scale(i));
            tensor<T, S>& u = u_.get<T, S>(x.shape());
            lincomb(u.view(), next.a * (1.0 / hat.a + 0.5 * h * d1.x), xc, next.a * 0.5 * h * d1.m, m);
            lincomb(x, e.c_x, xc, e.c_m, m);
            pending_ = s.k;
            return;
        }
        const tensor<T, S>* u = u_.find<T, S>(x.shape());
        if (pending_ != s.k || u == nullptr)
            fail("heun_sampler.step: step " + std::to_string(i) + " is the second stage of method step " +
                 std::to_string(s.k) + "; take step " + std::to_string(i - 1) + " (its first stage) just before it");
        // x' = u + a'(h/2)·d2, d2 = d_x·x2 + d_m·m at ℓ_{k+1}
        const affine_estimate d2 = detail::derivative_of(from, next, model_level(i), model_input_scale(i));
        const double c = next.a * 0.5 * h;
        lincomb(x, 1.0, u->cview(), c * d2.x, xc, c * d2.m, m);
        pending_ = npos;
    }
    template <class T, class S>
    void step(std::type_identity_t<tensor_view<const T, S>> m, std::size_t i, tensor_view<T, S> x, philox_rng& rng) {
        step<T, S>(m, config_.prediction, i, x, rng);
    }

private:
    static constexpr std::size_t npos = static_cast<std::size_t>(-1);

    template <class T, class S>
    void apply_churn(std::size_t k, tensor_view<T, S> x, tensor_view<const T, S> z) const {
        const detail::churn_step& c = churn_[k];
        if (c.gamma > 0.0) lincomb(x, c.c_x, tensor_view<const T, S>(x), c.c_z, z);
    }

    level_sequence levels_;
    heun_config config_{};
    std::vector<detail::churn_step> churn_;
    std::vector<stage_index> steps_;
    std::size_t pending_ = npos;   ///< method step whose stage 1 is due
    std::size_t prepared_ = npos;  ///< step whose churn was applied
    detail::stash u_;
};

}  // namespace diffuse::samplers
