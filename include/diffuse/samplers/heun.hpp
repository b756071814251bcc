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
#include <diffuse/samplers/detail/two_stage.hpp>
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

class heun_sampler : public detail::two_stage_base<heun_config> {
public:
    heun_sampler() : two_stage_base(who, begin_allowed) {}
    /// VE levels σ_0 > ... > σ_N >= 0 (N method steps).
    explicit heun_sampler(std::vector<double> sigmas, heun_config config = {})
        : heun_sampler(level_sequence::ve(std::move(sigmas)), config) {}
    /// Any level sequence (VE or VP).
    explicit heun_sampler(level_sequence levels, heun_config config = {})
        : two_stage_base(who, begin_allowed, config) {
        detail::validate_churn(config_.churn, who);
        set_levels(std::move(levels));
    }

    void set_levels(level_sequence levels) {
        begin_levels(std::move(levels));
        for (std::size_t k = 0; k + 1 < levels_.size(); ++k)
            add_method_step(k, detail::churn_of(config_.churn, levels_, k), levels_.sigma(k + 1) > 0.0, levels_[k + 1]);
        end_levels();
    }
    // Inherited: set_begin_index(i) (a stage-0 step; diffusers: t_start·order), levels(), config(),
    // num_method_steps() (N), num_steps() (2N, minus 1 when σ_N = 0), stage_of(i), timestep(i)
    // (σ_k at stage 0, σ_{k+1} at stage 1, without churn), order() (2), init_noise_sigma(),
    // state_level(i) (ℓ_k at stage 0, before churn; ℓ_{k+1} at stage 1), model_input_scale(i),
    // model_level(i), scale_model_input(out, x, i).

    /// γ of method step k of step i (0 without churn; 0 for stage 1).
    using two_stage_base::churn_gamma;
    /// The level x has when the model is called at step i (after prepare_step).
    using two_stage_base::churned_level;
    /// Churn before the first evaluation of a method step (stage 0); nothing at stage 1.
    /// prepare_step_with_noise(i, x, z): the same with the standard normal z given.
    using two_stage_base::prepare_step;
    using two_stage_base::prepare_step_with_noise;

    /// Step i: stage 0 moves x to the Euler predictor at ℓ_{k+1} (or finishes the method step
    /// with Euler when σ_{k+1} = 0); stage 1 moves x to the Heun result at ℓ_{k+1}. Draws no noise.
    template <class T, class S>
    void step(std::type_identity_t<tensor_view<const T, S>> m, prediction_type from, std::size_t i,
              tensor_view<T, S> x, philox_rng& /*rng*/) {
        // stage 0: u = a'·(ŷ + (h/2)·d1), d1 = d_x·x̂ + d_m·m, and x <- the Euler predictor at ℓ_{k+1};
        // stage 1: x' = u + a'(h/2)·d2, d2 = d_x·x2 + d_m·m at ℓ_{k+1}
        churned_two_stage_step<T, S>(m, from, i, x, "heun_sampler.step", 0.5,
                                     [&](tensor_view<T, S> u, tensor_view<const T, S> xc, tensor_view<const T, S> m1,
                                         const noise_condition& hat, const noise_condition& next, double h) {
                                         const affine_estimate d1 =
                                             detail::derivative_of(from, hat, model_level(i), model_input_scale(i));
                                         lincomb(u, next.a * (1.0 / hat.a + 0.5 * h * d1.x), xc,
                                                 next.a * 0.5 * h * d1.m, m1);
                                     });
    }
    template <class T, class S>
    void step(std::type_identity_t<tensor_view<const T, S>> m, std::size_t i, tensor_view<T, S> x, philox_rng& rng) {
        step<T, S>(m, config_.prediction, i, x, rng);
    }

private:
    static constexpr const char* who = "heun_sampler";
    static constexpr const char* begin_allowed = "a first-stage step (even; the second stage cannot start a run)";
};

}  // namespace diffuse::samplers
