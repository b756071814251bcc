#pragma once
// Euler in σ-space (Karras et al. 2022 Alg. 1 without the 2nd-order correction, k-diffusion
// sample_euler with s_churn = 0; docs/samplers.md §3).
//
// State: x at the levels ℓ_0 .. ℓ_N of a level_sequence (levels.hpp; VE x = x0 + σ·eps by
// default, or VP). Step i, level (a, s) -> (a', s'), σ = s/a, σ' = s'/a', r = σ'/σ:
//
//   D  = x0 estimate from the model output m            (x0_from_output: D = dx·x + dm·m)
//   VE: x' = x + (σ' − σ)·(x − D)/σ = r·x + (1 − r)·D
//   any (a, s): the same step on x/a, times a':  x' = (s'/s)·x + a'(1 − r)·D
//
// folded on the host into x' = c_x·x + c_m·m and applied with one lincomb. σ' = 0 gives x' = D.
// On VP levels this is DDIM(η = 0) (closed_forms C1; test_euler.cpp checks it).
//
// Model input (choice, euler_config::input): model_input::state (default) shows the model x at
// its level (c_in = 1; k-diffusion / EDM and exact models); model_input::vp shows it
// x/√(a²+s²) at the VP level of σ (diffusers' scale_model_input), for VP-trained networks.
// x0 and eps do not depend on which the model saw, so both give the same step. Levels carry a
// timestep when the sequence has one (level_sequence::from_timesteps or a timestep map).

#include <diffuse/backend/lincomb.hpp>
#include <diffuse/core/error.hpp>
#include <diffuse/core/philox.hpp>
#include <diffuse/core/tensor.hpp>
#include <diffuse/models/denoiser.hpp>
#include <diffuse/process/parametrization.hpp>
#include <diffuse/samplers/levels.hpp>
#include <diffuse/samplers/sampler.hpp>
#include <diffuse/schedules/sigmas.hpp>

#include <cmath>
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

namespace diffuse::samplers {

struct euler_config {
    model_input input = model_input::state;
    prediction_type prediction = prediction_type::sample;  ///< what step(m, i, x, rng) assumes m is
};

/// x' = c_x·x + c_m·m for one Euler step.
struct euler_coeffs {
    double c_x, c_m;
};

/// One Euler step from `from` (state level, σ > 0) to `to` (σ' < σ); m a `from_type` prediction
/// of a model that saw c_in·x at `seen`.
inline euler_coeffs euler_coefficients(prediction_type from_type, const noise_condition& from,
                                       const noise_condition& to, const noise_condition& seen, double c_in) {
    const double sigma = from.sigma(), sigma_next = to.sigma();
    require(std::isfinite(sigma) && sigma > 0.0, "sigma", sigma, "finite and > 0 (Euler needs a finite start level)");
    require(!std::isnan(sigma_next) && sigma_next >= 0.0 && sigma_next < sigma, "sigma_next", sigma_next,
            "in [0, sigma = " + std::to_string(sigma) + ")");
    const affine_estimate d = x0_from_output(from_type, seen, c_in);
    const double r = sigma_next / sigma;
    const double k = to.a * (1.0 - r);
    return {to.s / from.s + k * d.x, k * d.m};
}

/// The VE form kept for callers with σ only: (1, σ) -> (1, σ'), the model saw c_in·x at (a, s).
inline euler_coeffs euler_coefficients(prediction_type from, double sigma, double sigma_next, double c_in, double a,
                                       double s) {
    require_positive(sigma, "sigma");
    return euler_coefficients(from, noise_condition{1.0, sigma, {}}, noise_condition{1.0, sigma_next, {}},
                              noise_condition{a, s, {}}, c_in);
}

class euler_sampler : public begin_index_support {
public:
    euler_sampler() = default;
    /// VE levels σ_0 > σ_1 > ... > σ_N >= 0, N >= 1 (N steps), all finite, only the last may be 0.
    explicit euler_sampler(std::vector<double> sigmas, euler_config config = {}) : config_(config) {
        set_sigmas(std::move(sigmas));
    }
    /// Any level sequence (VE or VP, with or without timesteps).
    explicit euler_sampler(level_sequence levels, euler_config config = {}) : config_(config) {
        set_levels(std::move(levels));
    }

    /// Karras et al. σ: n levels from σ_max to σ_min (rho), then 0 appended when to_zero.
    static euler_sampler karras(int n, double sigma_min, double sigma_max, double rho = 7.0, bool to_zero = true,
                                euler_config config = {}) {
        return euler_sampler(schedules::karras_sigmas(n, sigma_min, sigma_max, rho,
                                                      to_zero ? schedules::final_sigma::zero : schedules::final_sigma::none),
                             config);
    }

    void set_sigmas(std::vector<double> sigmas) { set_levels(level_sequence::ve(std::move(sigmas))); }
    void set_levels(level_sequence levels) {
        require(levels.size() >= 2, "levels.size()", levels.size(), ">= 2 (N + 1 levels for N steps)");
        require(std::isfinite(levels.sigma(0)), "sigmas[0]", levels.sigma(0), "finite (Euler cannot start at σ = +inf)");
        levels_ = std::move(levels);
        reset_begin_index();
    }
    void set_begin_index(std::size_t k) { store_begin_index(k, num_steps(), "euler_sampler"); }

    const level_sequence& levels() const { return levels_; }
    const std::vector<double>& sigmas() const { return levels_.sigmas(); }
    const euler_config& config() const { return config_; }
    std::size_t num_steps() const { return levels_.empty() ? 0 : levels_.size() - 1; }
    /// σ_i (what the callback reports).
    double timestep(std::size_t i) const {
        detail::require_step_index(i, num_steps(), "euler_sampler");
        return levels_.sigma(i);
    }
    int order() const { return 1; }
    /// σ_0 for a VE state (k-diffusion: x_T = σ_max·z; diffusers reports √(σ_0² + 1) for
    /// "leading" spacing), 1 for VP.
    double init_noise_sigma() const {
        if (levels_.empty()) return 1.0;
        return levels_.space() == state_space::ve ? levels_.sigma(0) : 1.0;
    }
    noise_condition state_level(std::size_t i) const {
        detail::require_step_index(i, num_steps(), "euler_sampler");
        return levels_[i];
    }
    double model_input_scale(std::size_t i) const { return model_input_scale_of(state_level(i), config_.input); }
    noise_condition model_level(std::size_t i) const { return seen_level(state_level(i), config_.input); }
    template <class T, class S>
    void scale_model_input(tensor_view<T, S> out, std::type_identity_t<tensor_view<const T, S>> x, std::size_t i) const {
        lincomb(out, model_input_scale(i), x);
    }

    euler_coeffs coefficients(prediction_type from, std::size_t i) const {
        detail::require_step_index(i, num_steps(), "euler_sampler");
        return euler_coefficients(from, levels_[i], levels_[i + 1], model_level(i), model_input_scale(i));
    }

    /// x <- x at level i + 1; m a `from` prediction at (c_in·x, model_level(i)). Draws no noise.
    template <class T, class S>
    void step(std::type_identity_t<tensor_view<const T, S>> m, prediction_type from, std::size_t i,
              tensor_view<T, S> x, philox_rng& /*rng*/) const {
        detail::require_step_tensors<T, S>(m, x, "euler_sampler.step");
        const euler_coeffs c = coefficients(from, i);
        lincomb(x, c.c_x, tensor_view<const T, S>(x), c.c_m, m);
    }
    template <class T, class S>
    void step(std::type_identity_t<tensor_view<const T, S>> m, std::size_t i, tensor_view<T, S> x,
              philox_rng& rng) const {
        step<T, S>(m, config_.prediction, i, x, rng);
    }

private:
    level_sequence levels_;
    euler_config config_{};
};

}  // namespace diffuse::samplers
