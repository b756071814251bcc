#pragma once
// Euler ancestral (k-diffusion sample_euler_ancestral with η and s_noise; diffusers
// EulerAncestralDiscreteScheduler is η = 1; docs/samplers/euler_family.md §2).
//
// Step i from level (a, s), σ = s/a, to (a', s'), σ' = s'/a', in y = x/a (VE form):
//
//   σ_up   = min(σ', η·√(σ'²(σ² − σ'²)/σ²))           (k-diffusion get_ancestral_step)
//   σ_down = √(σ'² − σ_up²)
//   y'     = y + (σ_down − σ)·(y − D)/σ + s_noise·σ_up·z,   x' = a'·y'
//
// D = dx·x + dm·m (x0_from_output), so with q = σ_down/σ
//   x' = ((a'/a)·q + a'(1 − q)·dx)·x + a'(1 − q)·dm·m + a'·s_noise·σ_up·z     (one lincomb)
//
// η = 0 is Euler (σ_down = σ', σ_up = 0). For any η in [0, 1] the step on the same levels is
// DDIM(η) (closed_forms C1, peers b.9: σ_up² = σ_η²/ᾱ' and σ_down is DDIM's direction
// coefficient in x/√ᾱ); η = 1 is the DDPM posterior q(x_{σ'} | x_σ, x0 = D). η > 1 adds more
// noise (σ_up is capped at σ', where σ_down = 0).
//
// Noise: step(m, type, i, x, rng) draws x.numel() normals with randn(z, rng) in every step with
// σ' > 0 (noise_draws::k_diffusion, the default; none on a final step to σ = 0, even for η = 0
// k-diffusion draws when σ' > 0) or in every step (noise_draws::diffusers, whose last step
// draws and multiplies by σ_up = 0). step_with_noise(m, type, i, x, z) takes z explicitly.

#include <diffuse/backend/lincomb.hpp>
#include <diffuse/backend/randn.hpp>
#include <diffuse/core/error.hpp>
#include <diffuse/core/philox.hpp>
#include <diffuse/core/tensor.hpp>
#include <diffuse/samplers/detail/level_checks.hpp>
#include <diffuse/samplers/euler.hpp>
#include <diffuse/samplers/levels.hpp>
#include <diffuse/samplers/sampler.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

namespace diffuse::samplers {

/// σ_down and σ_up of an ancestral step σ -> σ' (k-diffusion get_ancestral_step).
struct ancestral_sigmas {
    double down, up;
};

/// σ_up = min(σ', η·√(σ'²(σ² − σ'²)/σ²)), σ_down = √(σ'² − σ_up²); η = 0 gives (σ', 0) exactly.
inline ancestral_sigmas ancestral_step(double sigma, double sigma_next, double eta) {
    require(std::isfinite(sigma) && sigma > 0.0, "sigma", sigma, "a finite number > 0");
    require(!std::isnan(sigma_next) && sigma_next >= 0.0 && sigma_next < sigma, "sigma_next", sigma_next,
            "in [0, sigma = " + std::to_string(sigma) + ")");
    require(std::isfinite(eta) && eta >= 0.0, "eta", eta, "a finite number >= 0");
    if (eta == 0.0) return {sigma_next, 0.0};
    const double up = std::min(
        sigma_next, eta * std::sqrt(sigma_next * sigma_next * (sigma * sigma - sigma_next * sigma_next) / (sigma * sigma)));
    return {std::sqrt(std::max(sigma_next * sigma_next - up * up, 0.0)), up};
}

struct euler_ancestral_config {
    double eta = 1.0;                                      ///< >= 0 (0: Euler; 1: DDPM posterior variance)
    double s_noise = 1.0;                                  ///< >= 0, scales the added noise
    noise_draws draws = noise_draws::k_diffusion;          ///< which steps draw normals
    model_input input = model_input::state;
    prediction_type prediction = prediction_type::sample;  ///< what step(m, i, x, rng) assumes m is
};

/// x' = c_x·x + c_m·m + c_z·z for one Euler-ancestral step.
struct ancestral_coeffs {
    double c_x, c_m, c_z;
};

class euler_ancestral_sampler : public begin_index_support {
public:
    euler_ancestral_sampler() = default;
    /// VE levels σ_0 > ... > σ_N >= 0.
    explicit euler_ancestral_sampler(std::vector<double> sigmas, euler_ancestral_config config = {})
        : euler_ancestral_sampler(level_sequence::ve(std::move(sigmas)), config) {}
    /// Any level sequence (VE or VP).
    explicit euler_ancestral_sampler(level_sequence levels, euler_ancestral_config config = {}) : config_(config) {
        detail::validate_eta(config_.eta, config_.s_noise, "euler_ancestral_sampler");
        set_levels(std::move(levels));
    }

    void set_levels(level_sequence levels) {
        levels_ = detail::checked_sigma_levels(std::move(levels), "euler_ancestral_sampler");
        reset_begin_index();
    }
    void set_begin_index(std::size_t k) { store_begin_index(k, num_steps(), "euler_ancestral_sampler"); }

    const level_sequence& levels() const { return levels_; }
    const euler_ancestral_config& config() const { return config_; }
    std::size_t num_steps() const { return detail::steps_of(levels_); }
    double timestep(std::size_t i) const { return state_level(i).sigma(); }
    int order() const { return 1; }
    double init_noise_sigma() const { return detail::init_noise_sigma_of(levels_); }
    noise_condition state_level(std::size_t i) const { return detail::step_level(levels_, i, "euler_ancestral_sampler"); }
    double model_input_scale(std::size_t i) const { return model_input_scale_of(state_level(i), config_.input); }
    noise_condition model_level(std::size_t i) const { return seen_level(state_level(i), config_.input); }
    template <class T, class S>
    void scale_model_input(tensor_view<T, S> out, std::type_identity_t<tensor_view<const T, S>> x, std::size_t i) const {
        lincomb(out, model_input_scale(i), x);
    }

    /// σ_down, σ_up of step i.
    ancestral_sigmas sigmas_down_up(std::size_t i) const {
        detail::require_step_index(i, num_steps(), "euler_ancestral_sampler");
        return ancestral_step(levels_.sigma(i), levels_.sigma(i + 1), config_.eta);
    }
    /// Whether step(…, rng) draws x.numel() normals at step i.
    bool draws_noise(std::size_t i) const {
        detail::require_step_index(i, num_steps(), "euler_ancestral_sampler");
        return config_.draws == noise_draws::diffusers || levels_.sigma(i + 1) > 0.0;
    }

    ancestral_coeffs coefficients(prediction_type from, std::size_t i) const {
        const ancestral_sigmas du = sigmas_down_up(i);
        const noise_condition& l = levels_[i];
        const noise_condition& ln = levels_[i + 1];
        const affine_estimate d = x0_from_output(from, model_level(i), model_input_scale(i));
        const double q = du.down / levels_.sigma(i);
        const double k = ln.a * (1.0 - q);
        return {ln.a / l.a * q + k * d.x, k * d.m, ln.a * config_.s_noise * du.up};
    }

    /// x <- x at level i + 1, drawing z with randn(z, rng) when draws_noise(i).
    template <class T, class S>
    void step(std::type_identity_t<tensor_view<const T, S>> m, prediction_type from, std::size_t i,
              tensor_view<T, S> x, philox_rng& rng) const {
        detail::require_step_index(i, num_steps(), "euler_ancestral_sampler.step");
        detail::require_step_tensors<T, S>(m, x, "euler_ancestral_sampler.step");
        const ancestral_coeffs c = coefficients(from, i);
        if (draws_noise(i)) {
            tensor<T, S> z(x.shape());
            randn(z.view(), rng);
            lincomb(x, c.c_x, tensor_view<const T, S>(x), c.c_m, m, c.c_z, z.cview());
        } else {
            lincomb(x, c.c_x, tensor_view<const T, S>(x), c.c_m, m);
        }
    }
    template <class T, class S>
    void step(std::type_identity_t<tensor_view<const T, S>> m, std::size_t i, tensor_view<T, S> x,
              philox_rng& rng) const {
        step<T, S>(m, config_.prediction, i, x, rng);
    }
    /// The step with the standard normal z given (z is used even where c_z = 0).
    template <class T, class S>
    void step_with_noise(std::type_identity_t<tensor_view<const T, S>> m, prediction_type from, std::size_t i,
                         tensor_view<T, S> x, std::type_identity_t<tensor_view<const T, S>> z) const {
        detail::require_step_index(i, num_steps(), "euler_ancestral_sampler.step_with_noise");
        detail::require_step_tensors<T, S>(m, x, "euler_ancestral_sampler.step_with_noise");
        require_same_shape(z.shape(), "z", x.shape(), "x");
        const ancestral_coeffs c = coefficients(from, i);
        lincomb(x, c.c_x, tensor_view<const T, S>(x), c.c_m, m, c.c_z, z);
    }

private:
    level_sequence levels_;
    euler_ancestral_config config_{};
};

}  // namespace diffuse::samplers
