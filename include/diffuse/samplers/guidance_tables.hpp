#pragma once
// Per-step tables that tie guidance (guidance/) to a sampler's coefficients (docs/guidance.md §6–§7).
// They live here because guidance/ sits below samplers/ and knows no sampler.
//
// CFG++ (Chung et al. 2024; stable-diffusion.cpp sample_euler_cfg_pp / euler_a_cfg_pp) for an Euler step
// from σ̂_i (the model's level) to σ' in VE form y = x/a:
//     y' = D_λ + σ'·(y − D_u)/σ̂          D_λ = D_u + λ·(D_c − D_u),  λ in [0, 1]
// (the ancestral variant uses σ_down for σ' and adds σ_up·z). The plain Euler step with a denoised
// estimate D is y' = D + r·(y − D), r = σ'/σ̂. Solving D + r(y − D) = D_λ + r(y − D_u) for D gives
//     D = D_u + w_i·(D_c − D_u),   w_i = λ/(1 − r_i)
// — CFG++ is CFG (diffusers formula) with the step-size dependent weight w_i, applied to any prediction
// type (the combination is affine). cfg_pp_weights builds that table for guidance::cfg_options::weight.
//
// condition_mean (guided-diffusion p_sample): the ancestral step x' = c_x0·x̂0 + c_xt·x + σ_i·z with
// the mean shifted by s·σ_i²·g is the same step with x̂0 shifted by s·k_i·g, k_i = σ_i²/c_x0
// (ddpm_step_coeffs; σ_i² is the step's model variance, guided-diffusion's p_variance: on the last step
// of the improved_diffusion convention that is the β̃ of the step before, though no noise is added, and
// 1e-20 in the diffusers convention). condition_mean_table builds k_i for
// guidance::classifier_guidance_options::mean_shift.

#include <diffuse/core/error.hpp>
#include <diffuse/guidance/schedule.hpp>
#include <diffuse/samplers/ddpm.hpp>
#include <diffuse/samplers/euler.hpp>
#include <diffuse/samplers/euler_ancestral.hpp>

#include <cmath>
#include <cstddef>
#include <vector>

namespace diffuse::samplers {

namespace detail {

inline void require_cfg_pp_lambda(double lambda) {
    require(std::isfinite(lambda) && lambda >= 0.0 && lambda <= 1.0, "cfg_pp_weights: lambda", lambda,
            "a CFG++ scale in [0, 1] (0: unconditional, 1: conditional)");
}

/// r = σ'/σ̂ of step i must be < 1 (σ decreasing), else the weight λ/(1 − r) is infinite or negative.
inline void require_cfg_pp_step(double r, std::size_t i) {
    if (!(r >= 0.0 && r < 1.0))
        fail_argument("cfg_pp_weights: σ_next/σ at step " + std::to_string(i), r,
                      "in [0, 1) (strictly decreasing σ; CFG++'s weight λ/(1 − σ_next/σ) is undefined otherwise)");
}

}  // namespace detail

/// CFG++ weights w_i = λ/(1 − σ_{i+1}/σ̂_i) for euler_sampler (diffusers CFG formula).
inline guidance::guidance_weight cfg_pp_weights(const euler_sampler& sampler, double lambda) {
    detail::require_cfg_pp_lambda(lambda);
    const std::size_t n = sampler.num_steps();
    require(n >= 1, "cfg_pp_weights: sampler.num_steps()", n, ">= 1 (call set_timesteps first)");
    std::vector<double> w(n);
    for (std::size_t i = 0; i < n; ++i) {
        // σ' of the step over the model's σ̂ (churn raises σ_i to σ̂_i before the model call)
        const double r = sampler.levels().sigma(i + 1) / sampler.churned_level(i).sigma();
        detail::require_cfg_pp_step(r, i);
        w[i] = lambda / (1.0 - r);
    }
    return guidance::guidance_weight::per_step(std::move(w));
}

/// CFG++ weights w_i = λ/(1 − σ_down,i/σ_i) for euler_ancestral_sampler (its σ_down at its η).
inline guidance::guidance_weight cfg_pp_weights(const euler_ancestral_sampler& sampler, double lambda) {
    detail::require_cfg_pp_lambda(lambda);
    const std::size_t n = sampler.num_steps();
    require(n >= 1, "cfg_pp_weights: sampler.num_steps()", n, ">= 1 (call set_timesteps first)");
    std::vector<double> w(n);
    for (std::size_t i = 0; i < n; ++i) {
        const double r = sampler.sigmas_down_up(i).down / sampler.state_level(i).sigma();
        detail::require_cfg_pp_step(r, i);
        w[i] = lambda / (1.0 - r);
    }
    return guidance::guidance_weight::per_step(std::move(w));
}

/// condition_mean's per-step x̂0 shift k_i = σ_i²/c_x0 of a DDPM sampler with a fixed variance type.
inline std::vector<double> condition_mean_table(const ddpm_sampler& sampler) {
    const std::size_t n = sampler.num_steps();
    require(n >= 1, "condition_mean_table: sampler.num_steps()", n, ">= 1 (call set_timesteps first)");
    std::vector<double> k(n);
    for (std::size_t i = 0; i < n; ++i) {
        const ddpm_step_coeffs& c = sampler.step_coeffs(i);
        if (std::isnan(c.variance))
            fail("condition_mean_table: the sampler's variance type is learned (σ² comes from the model output); "
                 "expected fixed_small or fixed_large");
        k[i] = c.variance / c.coef_x0;
    }
    return k;
}

}  // namespace diffuse::samplers
