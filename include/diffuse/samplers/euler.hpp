#pragma once
// Euler in σ-space (Karras et al. 2022 Alg. 1 without the 2nd-order correction, k-diffusion
// sample_euler with s_churn = 0; docs/samplers.md §3).
//
// State: the VE variable x = x0 + σ·eps on a decreasing σ sequence σ_0 > σ_1 > ... > σ_N >= 0
// (e.g. schedules::karras_sigmas). Step i, σ = σ_i, σ' = σ_{i+1}:
//
//   D  = x0 estimate of the model output m        d = (x − D)/σ
//   x' = x + (σ' − σ)·d = (σ'/σ)·x + (1 − σ'/σ)·D
//
// with D = p_x·(c_in·x) + p_m·m (conversion_coeffs at the level the model saw), folded on the host
// into x' = c_x·x + c_m·m and applied with one lincomb. σ' = 0 gives x' = D.
//
// Model level (choice, euler_config::input):
//   model_input::ve (default)  the model sees x itself at level (a, s) = (1, σ)  (c_in = 1). This is
//                              the k-diffusion / EDM convention and what exact denoisers and any
//                              (a, s)-aware model take directly (models/denoiser.hpp: D_ve(x; σ) =
//                              x0_hat(a·x; a, s), closed_forms A10).
//   model_input::vp            the model sees x_vp = x/√(1+σ²) at level ᾱ = 1/(1+σ²)
//                              (c_in = 1/√(1+σ²); diffusers' scale_model_input), for networks
//                              trained on VP inputs.
// x0 and eps do not depend on which of the two levels the model saw, so both give the same step.
// No timestep is attached to the level (σ-space networks read σ from the level).

#include <diffuse/backend/lincomb.hpp>
#include <diffuse/core/error.hpp>
#include <diffuse/core/philox.hpp>
#include <diffuse/core/tensor.hpp>
#include <diffuse/models/denoiser.hpp>
#include <diffuse/process/parametrization.hpp>
#include <diffuse/samplers/sampler.hpp>
#include <diffuse/schedules/sigmas.hpp>

#include <cmath>
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

namespace diffuse::samplers {

enum class model_input {
    ve,  ///< x at (1, σ)
    vp,  ///< x/√(1+σ²) at (1/√(1+σ²), σ/√(1+σ²))
};

struct euler_config {
    model_input input = model_input::ve;
    prediction_type prediction = prediction_type::sample;  ///< what step(m, i, x, rng) assumes m is
};

/// x' = c_x·x + c_m·m for one Euler step σ -> σ', m a `from` prediction at c_in·x, level (a, s).
struct euler_coeffs {
    double c_x, c_m;
};

inline euler_coeffs euler_coefficients(prediction_type from, double sigma, double sigma_next, double c_in, double a,
                                       double s) {
    require_positive(sigma, "sigma");
    require(std::isfinite(sigma_next) && sigma_next >= 0.0 && sigma_next < sigma, "sigma_next", sigma_next,
            "in [0, sigma = " + std::to_string(sigma) + ")");
    process::conversion p = process::conversion_coeffs(from, prediction_type::sample, a, s);
    if (from == prediction_type::sample) p = {0.0, 1.0};
    const double r = sigma_next / sigma;
    return {r + (1.0 - r) * p.c_xt * c_in, (1.0 - r) * p.c_value};
}

class euler_sampler {
public:
    euler_sampler() = default;
    /// sigmas: σ_0 > σ_1 > ... > σ_N >= 0, N >= 1 (N steps), all finite, only the last may be 0.
    explicit euler_sampler(std::vector<double> sigmas, euler_config config = {}) : config_(config) {
        set_sigmas(std::move(sigmas));
    }

    /// Karras et al. σ: n levels from σ_max to σ_min (rho), then 0 appended when to_zero.
    static euler_sampler karras(int n, double sigma_min, double sigma_max, double rho = 7.0, bool to_zero = true,
                                euler_config config = {}) {
        return euler_sampler(schedules::karras_sigmas(n, sigma_min, sigma_max, rho,
                                                      to_zero ? schedules::final_sigma::zero : schedules::final_sigma::none),
                             config);
    }

    void set_sigmas(std::vector<double> sigmas) {
        require(sigmas.size() >= 2, "sigmas.size()", sigmas.size(), ">= 2 (N + 1 levels for N steps)");
        for (std::size_t k = 0; k < sigmas.size(); ++k) {
            const std::string arg = "sigmas[" + std::to_string(k) + "]";
            const bool last = k + 1 == sigmas.size();
            require(std::isfinite(sigmas[k]) && (sigmas[k] > 0.0 || (last && sigmas[k] == 0.0)), arg, sigmas[k],
                    last ? "finite and >= 0" : "finite and > 0 (only the last σ may be 0)");
            if (k > 0 && !(sigmas[k] < sigmas[k - 1]))
                fail_argument(arg, sigmas[k], "< sigmas[" + std::to_string(k - 1) + "] (strictly decreasing)");
        }
        sigmas_ = std::move(sigmas);
    }

    const std::vector<double>& sigmas() const { return sigmas_; }
    const euler_config& config() const { return config_; }
    std::size_t num_steps() const { return sigmas_.empty() ? 0 : sigmas_.size() - 1; }
    double timestep(std::size_t i) const {
        detail::require_step_index(i, num_steps(), "euler_sampler");
        return sigmas_[i];
    }
    int order() const { return 1; }
    /// σ_0 (k-diffusion: x_T = σ_max·z; diffusers reports √(σ_0² + 1) for "leading" spacing).
    double init_noise_sigma() const { return sigmas_.empty() ? 1.0 : sigmas_.front(); }
    double model_input_scale(std::size_t i) const {
        detail::require_step_index(i, num_steps(), "euler_sampler");
        return config_.input == model_input::ve ? 1.0 : 1.0 / std::sqrt(1.0 + sigmas_[i] * sigmas_[i]);
    }
    noise_condition model_level(std::size_t i) const {
        const double c = model_input_scale(i);
        return noise_condition{c, c * sigmas_[i], {}};
    }
    template <class T, class S>
    void scale_model_input(tensor_view<T, S> out, std::type_identity_t<tensor_view<const T, S>> x, std::size_t i) const {
        lincomb(out, model_input_scale(i), x);
    }

    euler_coeffs coefficients(prediction_type from, std::size_t i) const {
        detail::require_step_index(i, num_steps(), "euler_sampler");
        const noise_condition l = model_level(i);
        return euler_coefficients(from, sigmas_[i], sigmas_[i + 1], model_input_scale(i), l.a, l.s);
    }

    /// x <- x at σ_{i+1}; m a `from` prediction at (c_in·x, model_level(i)). Draws no noise.
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
    std::vector<double> sigmas_;
    euler_config config_{};
};

}  // namespace diffuse::samplers
