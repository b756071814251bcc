#pragma once
// Euler in σ-space (Karras et al. 2022 Alg. 1 without the 2nd-order correction, Alg. 2 churn;
// k-diffusion sample_euler; diffusers EulerDiscreteScheduler; docs/samplers/euler_family.md §1).
//
// State: x at the levels ℓ_0 .. ℓ_N of a level_sequence (levels.hpp; VE x = x0 + σ·eps by
// default, or VP). Step i, level (a, s) -> (a', s'), σ = s/a, σ' = s'/a', r = σ'/σ:
//
//   D  = x0 estimate from the model output m            (x0_from_output: D = dx·x + dm·m)
//   VE: x' = x + (σ' − σ)·(x − D)/σ = r·x + (1 − r)·D
//   any (a, s): the same step on y = x/a, times a':  x' = (s'/s)·x + a'(1 − r)·D
//
// folded on the host into x' = c_x·x + c_m·m and applied with one lincomb. σ' = 0 gives x' = D.
// On VP levels this is DDIM(η = 0) (closed_forms C1; test_euler.cpp checks it).
//
// Churn (euler_config::churn, Karras et al. Alg. 2; k-diffusion s_churn, s_tmin, s_tmax,
// s_noise): before the model call of step i, prepare_step(i, x, rng) raises the level to
// σ̂ = σ·(1 + γ), γ = min(s_churn/N, √2 − 1) when s_tmin <= σ <= s_tmax (else 0):
//   VE: x̂ = x + s_noise·√(σ̂² − σ²)·z;   any (a, s): x̂ = â·(x/a + s_noise·√(σ̂² − σ²)·z)
// with (â, ŝ) = levels.at_sigma(σ̂) (one lincomb). The model is evaluated at σ̂
// (model_level(i)), and the Euler step goes from σ̂ to σ'. state_level(i) is the level before
// churn. Which steps draw normals (churn_config::draws) is documented at noise_draws.
//
// Model input (choice, euler_config::input): model_input::state (default) shows the model x at
// its level (c_in = 1; k-diffusion / EDM and exact models); model_input::vp shows it
// x/√(a²+s²) at the VP level of σ (diffusers' scale_model_input), for VP-trained networks.
// x0 and eps do not depend on which the model saw, so both give the same step. Levels carry a
// timestep when the sequence has one (level_sequence::from_timesteps, diffusers_sigma_levels
// or a timestep map).
//
// diffusers_sigma_levels(schedule, N, spacing, ...) builds the σ levels of diffusers'
// EulerDiscreteScheduler / HeunDiscreteScheduler / LMSDiscreteScheduler / KDPM2 schedulers
// (VE, timesteps attached); diffusers_init_noise_sigma gives their init_noise_sigma.

#include <diffuse/backend/lincomb.hpp>
#include <diffuse/backend/randn.hpp>
#include <diffuse/core/error.hpp>
#include <diffuse/core/philox.hpp>
#include <diffuse/core/tensor.hpp>
#include <diffuse/models/denoiser.hpp>
#include <diffuse/process/parametrization.hpp>
#include <diffuse/samplers/levels.hpp>
#include <diffuse/samplers/sampler.hpp>
#include <diffuse/schedules/beta_schedule.hpp>
#include <diffuse/schedules/discrete_schedule.hpp>
#include <diffuse/schedules/sigmas.hpp>
#include <diffuse/schedules/timesteps.hpp>

#include <algorithm>
#include <any>
#include <cmath>
#include <cstddef>
#include <limits>
#include <string>
#include <utility>
#include <vector>

namespace diffuse::samplers {

/// Which peer's consumption of random numbers a stochastic step reproduces. The two give the
/// same output distribution; they differ in which normals of the stream land in which step.
enum class noise_draws {
    /// k-diffusion: churn draws x.numel() normals in EVERY method step when s_churn > 0 (also
    /// where γ = 0 outside [s_tmin, s_tmax]); ancestral steps draw only when σ' > 0 (none on a
    /// final step to σ = 0).
    k_diffusion,
    /// diffusers: churn draws only in steps with γ > 0; Euler ancestral draws in every step,
    /// the last one (σ' = 0, σ_up = 0) included.
    diffusers,
};

/// Karras et al. (2022) Alg. 2 "churn": raise σ to σ̂ = σ(1 + γ) with fresh noise before the
/// model call. Disabled when s_churn = 0 (then nothing is drawn, whatever `draws` says).
struct churn_config {
    double s_churn = 0.0;                                     ///< >= 0; γ = min(s_churn/N, √2 − 1)
    double s_tmin = 0.0;                                      ///< churn only where s_tmin <= σ <= s_tmax
    double s_tmax = std::numeric_limits<double>::infinity();  ///< >= s_tmin (+inf allowed)
    double s_noise = 1.0;                                     ///< >= 0: the added noise is s_noise·√(σ̂² − σ²)·z
    noise_draws draws = noise_draws::k_diffusion;
};

namespace detail {

inline void validate_churn(const churn_config& c, const std::string& who) {
    require(std::isfinite(c.s_churn) && c.s_churn >= 0.0, who + ": s_churn", c.s_churn, "a finite number >= 0");
    require(std::isfinite(c.s_tmin) && c.s_tmin >= 0.0, who + ": s_tmin", c.s_tmin, "a finite number >= 0");
    require(!std::isnan(c.s_tmax) && c.s_tmax >= c.s_tmin, who + ": s_tmax", c.s_tmax,
            ">= s_tmin = " + std::to_string(c.s_tmin) + " (+inf allowed)");
    require(std::isfinite(c.s_noise) && c.s_noise >= 0.0, who + ": s_noise", c.s_noise, "a finite number >= 0");
}

inline void validate_eta(double eta, double s_noise, const std::string& who) {
    require(std::isfinite(eta) && eta >= 0.0, who + ": eta", eta,
            "a finite number >= 0 (0: the ODE step, 1: the DDPM posterior variance)");
    require(std::isfinite(s_noise) && s_noise >= 0.0, who + ": s_noise", s_noise, "a finite number >= 0");
}

/// The churn of one method step: γ, the raised level ĥ and x̂ = c_x·x + c_z·z.
struct churn_step {
    double gamma = 0.0;
    noise_condition hat{};
    double c_x = 1.0, c_z = 0.0;
    bool draws = false;  ///< whether prepare_step draws x.numel() normals for this method step
};

/// Churn of method step k (levels k -> k + 1) of a sequence with n = levels.size() − 1 method steps.
inline churn_step churn_of(const churn_config& c, const level_sequence& levels, std::size_t k) {
    churn_step out;
    const noise_condition& l = levels[k];
    out.hat = l;
    if (c.s_churn == 0.0) return out;
    const double sigma = levels.sigma(k);
    const double n = static_cast<double>(levels.size() - 1);
    if (c.s_tmin <= sigma && sigma <= c.s_tmax) out.gamma = std::min(c.s_churn / n, std::sqrt(2.0) - 1.0);
    out.draws = c.draws == noise_draws::k_diffusion || out.gamma > 0.0;
    if (out.gamma > 0.0) {
        const double sigma_hat = sigma * (out.gamma + 1.0);
        out.hat = levels.at_sigma(sigma_hat);
        // x̂ = â·(x/a + s_noise·√(σ̂² − σ²)·z)
        out.c_x = out.hat.a / l.a;
        out.c_z = out.hat.a * c.s_noise * std::sqrt(sigma_hat * sigma_hat - sigma * sigma);
    }
    return out;
}

/// A level sequence a σ-space sampler can start from: N >= 1 steps, finite σ_0.
inline level_sequence checked_sigma_levels(level_sequence levels, const char* who) {
    require(levels.size() >= 2, std::string(who) + ": levels.size()", levels.size(), ">= 2 (N + 1 levels for N steps)");
    require(std::isfinite(levels.sigma(0)), std::string(who) + ": sigmas[0]", levels.sigma(0),
            "finite (σ-space samplers cannot start at σ = +inf)");
    return levels;
}

/// y-space derivative d = (x/a − D)/σ = d_x·x + d_m·m at a state level `l` (σ > 0), where the
/// model saw c_in·x at `seen` and returned a `type` prediction.
inline affine_estimate derivative_of(prediction_type type, const noise_condition& l, const noise_condition& seen,
                                     double c_in) {
    const affine_estimate d = x0_from_output(type, seen, c_in);
    const double sigma = l.sigma();
    return {(1.0 / l.a - d.x) / sigma, -d.m / sigma};
}

/// A tensor<T, S> a (non-template) sampler keeps between steps: the first stage's partial
/// result of a 2-evaluation method, or a multistep history entry.
class stash {
public:
    /// The stored tensor, (re)allocated when the element type, space or shape differ.
    template <class T, class S>
    tensor<T, S>& get(const shape& s) {
        auto* p = std::any_cast<tensor<T, S>>(&value_);
        if (p == nullptr || p->shape() != s) {
            value_ = tensor<T, S>(s);
            p = std::any_cast<tensor<T, S>>(&value_);
        }
        return *p;
    }
    /// The stored tensor if it has this type and shape, else nullptr.
    template <class T, class S>
    const tensor<T, S>* find(const shape& s) const {
        const auto* p = std::any_cast<tensor<T, S>>(&value_);
        return p != nullptr && p->shape() == s ? p : nullptr;
    }
    void clear() { value_.reset(); }

private:
    std::any value_;
};

}  // namespace detail

/// Step i of a 2-evaluation method: method step k (levels k -> k + 1) and stage 0 or 1.
struct stage_index {
    std::size_t k = 0;
    int stage = 0;
};

struct euler_config {
    model_input input = model_input::state;
    prediction_type prediction = prediction_type::sample;  ///< what step(m, i, x, rng) assumes m is
    churn_config churn{};                                   ///< off by default (s_churn = 0)
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

/// diffusers' σ levels of the Euler family (EulerDiscreteScheduler, EulerAncestral, Heun, LMS,
/// KDPM2 `set_timesteps(N)`), as a VE level_sequence with timesteps:
///   t_0 > ... > t_{N−1}  = schedules::euler_timesteps(T, N, spacing, steps_offset, precision)
///   σ_i = schedules::sigma_at(schedule.sigmas_ve(), t_i, interpolation)   (diffusers: linear = np.interp)
///   σ_N = 0 (last = zero, diffusers' default final_sigmas_type) or σ of ᾱ_0 (sigma_min)
/// With precision::float32 the timesteps and σ are rounded to float, as diffusers stores them.
/// Level i carries timestep t_i exactly; any other σ (churn's σ̂, DPM-2's midpoints) gets the
/// schedule's σ → t map (schedules::sigma_to_t, diffusers `_sigma_to_t`). diffusers'
/// interpolation_type = "log_linear" is a different construction (N + 1 log-uniform σ between
/// the table's ends) and is not this function's log_linear (k-diffusion's per-timestep
/// log interpolation).
inline level_sequence diffusers_sigma_levels(const schedules::discrete_schedule& schedule, int num_inference_steps,
                                             schedules::spacing spacing = schedules::spacing::linspace,
                                             int steps_offset = 0,
                                             schedules::sigma_interpolation interpolation = schedules::sigma_interpolation::linear,
                                             final_level last = final_level::zero,
                                             schedules::precision precision = schedules::precision::float64) {
    const std::vector<double> ts = schedules::euler_timesteps(schedule.num_train_timesteps(), num_inference_steps,
                                                              spacing, steps_offset, precision);
    const std::vector<double> table = schedule.sigmas_ve();
    const bool f32 = precision == schedules::precision::float32;
    std::vector<double> sigmas;
    sigmas.reserve(ts.size() + 1);
    for (double t : ts) {
        const double s = schedules::sigma_at(table, t, interpolation);
        sigmas.push_back(f32 ? static_cast<double>(static_cast<float>(s)) : s);
    }
    const double s_last = last == final_level::zero ? 0.0 : schedule.sigma_ve(0);
    sigmas.push_back(f32 ? static_cast<double>(static_cast<float>(s_last)) : s_last);
    // Exact timesteps at the listed σ, the schedule's σ -> t map elsewhere.
    std::vector<double> listed(sigmas.begin(), sigmas.end() - 1);
    std::vector<double> listed_t = ts;
    if (last == final_level::sigma_min) {
        listed.push_back(sigmas.back());
        listed_t.push_back(0.0);
    }
    level_sequence::timestep_map map = [table, listed, listed_t](double sigma) {
        for (std::size_t k = 0; k < listed.size(); ++k)
            if (sigma == listed[k]) return listed_t[k];
        return schedules::sigma_to_t(table, sigma);
    };
    return level_sequence::ve(std::move(sigmas), std::move(map));
}

/// diffusers' init_noise_sigma of the Euler family: σ_max for "linspace" and "trailing",
/// √(σ_max² + 1) for "leading" (σ_max = σ_0 of the levels).
inline double diffusers_init_noise_sigma(const level_sequence& levels, schedules::spacing spacing) {
    require(!levels.empty(), "levels.size()", levels.size(), ">= 1");
    const double smax = levels.sigma(0);
    return spacing == schedules::spacing::leading ? std::sqrt(smax * smax + 1.0) : smax;
}

class euler_sampler : public begin_index_support {
public:
    euler_sampler() = default;
    /// VE levels σ_0 > σ_1 > ... > σ_N >= 0, N >= 1 (N steps), all finite, only the last may be 0.
    explicit euler_sampler(std::vector<double> sigmas, euler_config config = {}) : config_(config) {
        detail::validate_churn(config_.churn, "euler_sampler");
        set_sigmas(std::move(sigmas));
    }
    /// Any level sequence (VE or VP, with or without timesteps).
    explicit euler_sampler(level_sequence levels, euler_config config = {}) : config_(config) {
        detail::validate_churn(config_.churn, "euler_sampler");
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
        churn_.clear();
        for (std::size_t k = 0; k + 1 < levels_.size(); ++k) churn_.push_back(detail::churn_of(config_.churn, levels_, k));
        prepared_ = npos;
        reset_begin_index();
    }
    void set_begin_index(std::size_t k) { store_begin_index(k, num_steps(), "euler_sampler"); }

    const level_sequence& levels() const { return levels_; }
    const std::vector<double>& sigmas() const { return levels_.sigmas(); }
    const euler_config& config() const { return config_; }
    std::size_t num_steps() const { return levels_.empty() ? 0 : levels_.size() - 1; }
    /// σ_i (what the callback reports; the level before churn).
    double timestep(std::size_t i) const {
        detail::require_step_index(i, num_steps(), "euler_sampler");
        return levels_.sigma(i);
    }
    int order() const { return 1; }
    /// σ_0 for a VE state (k-diffusion: x_T = σ_max·z; diffusers reports √(σ_0² + 1) for
    /// "leading" spacing, see diffusers_init_noise_sigma), 1 for VP.
    double init_noise_sigma() const {
        if (levels_.empty()) return 1.0;
        return levels_.space() == state_space::ve ? levels_.sigma(0) : 1.0;
    }
    /// The level of x when step i begins (before churn).
    noise_condition state_level(std::size_t i) const {
        detail::require_step_index(i, num_steps(), "euler_sampler");
        return levels_[i];
    }
    /// γ_i of the churn (0 without churn).
    double churn_gamma(std::size_t i) const {
        detail::require_step_index(i, num_steps(), "euler_sampler");
        return churn_[i].gamma;
    }
    /// The level of x after prepare_step(i): at σ̂_i = σ_i(1 + γ_i) (state_level(i) when γ_i = 0).
    noise_condition churned_level(std::size_t i) const {
        detail::require_step_index(i, num_steps(), "euler_sampler");
        return churn_[i].hat;
    }
    double model_input_scale(std::size_t i) const { return model_input_scale_of(churned_level(i), config_.input); }
    noise_condition model_level(std::size_t i) const { return seen_level(churned_level(i), config_.input); }
    template <class T, class S>
    void scale_model_input(tensor_view<T, S> out, std::type_identity_t<tensor_view<const T, S>> x, std::size_t i) const {
        lincomb(out, model_input_scale(i), x);
    }

    euler_coeffs coefficients(prediction_type from, std::size_t i) const {
        detail::require_step_index(i, num_steps(), "euler_sampler");
        return euler_coefficients(from, churn_[i].hat, levels_[i + 1], model_level(i), model_input_scale(i));
    }

    /// Churn of step i (x at state_level(i) -> x at churned_level(i)); draws x.numel() normals
    /// when the step draws (noise_draws), nothing without churn. The driver calls it.
    template <class T, class S>
    void prepare_step(std::size_t i, tensor_view<T, S> x, philox_rng& rng) const {
        detail::require_step_index(i, num_steps(), "euler_sampler.prepare_step");
        const detail::churn_step& c = churn_[i];
        if (c.draws) {
            tensor<T, S> z(x.shape());
            randn(z.view(), rng);
            apply_churn<T, S>(i, x, z.cview());
        }
        prepared_ = i;
    }
    /// prepare_step with the standard normal z given (tests inject identical noise).
    template <class T, class S>
    void prepare_step_with_noise(std::size_t i, tensor_view<T, S> x, std::type_identity_t<tensor_view<const T, S>> z) const {
        detail::require_step_index(i, num_steps(), "euler_sampler.prepare_step");
        require_same_shape(z.shape(), "z", x.shape(), "x");
        apply_churn<T, S>(i, x, z);
        prepared_ = i;
    }

    /// x <- x at level i + 1; m a `from` prediction at (c_in·x, model_level(i)). Draws no noise
    /// (churn noise is drawn by prepare_step, which must precede step i when γ_i > 0).
    template <class T, class S>
    void step(std::type_identity_t<tensor_view<const T, S>> m, prediction_type from, std::size_t i,
              tensor_view<T, S> x, philox_rng& /*rng*/) const {
        detail::require_step_index(i, num_steps(), "euler_sampler.step");
        detail::require_step_tensors<T, S>(m, x, "euler_sampler.step");
        if (churn_[i].gamma > 0.0 && prepared_ != i)
            fail("euler_sampler.step: step " + std::to_string(i) + " has churn (γ = " + std::to_string(churn_[i].gamma) +
                 "); call prepare_step(" + std::to_string(i) + ", x, rng) before the model call (sample() does)");
        const euler_coeffs c = coefficients(from, i);
        lincomb(x, c.c_x, tensor_view<const T, S>(x), c.c_m, m);
        prepared_ = npos;
    }
    template <class T, class S>
    void step(std::type_identity_t<tensor_view<const T, S>> m, std::size_t i, tensor_view<T, S> x,
              philox_rng& rng) const {
        step<T, S>(m, config_.prediction, i, x, rng);
    }

private:
    static constexpr std::size_t npos = static_cast<std::size_t>(-1);

    template <class T, class S>
    void apply_churn(std::size_t i, tensor_view<T, S> x, tensor_view<const T, S> z) const {
        const detail::churn_step& c = churn_[i];
        if (c.gamma > 0.0) lincomb(x, c.c_x, tensor_view<const T, S>(x), c.c_z, z);
    }

    level_sequence levels_;
    euler_config config_{};
    std::vector<detail::churn_step> churn_;
    mutable std::size_t prepared_ = npos;
};

}  // namespace diffuse::samplers
