#pragma once
// Noise-level (σ, the VE / k-diffusion σ = √((1 − ᾱ)/ᾱ)) sequences for sampling
// (docs/schedules.md §8):
//
//   karras_sigmas            Karras et al. 2022, Eq. 5: (σ_max^{1/ρ} + i/(n−1)(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ
//   exponential_sigmas       exp(linspace(log σ_max, log σ_min, n))
//   polyexponential_sigmas   exp(r_i^ρ (log σ_max − log σ_min) + log σ_min), r = linspace(1, 0, n)
//   vp_sigmas                k-diffusion get_sigmas_vp: √(expm1(β_d t²/2 + β_min t)), t = linspace(1, ε_s, n)
//
// Each returns n decreasing values and, with final_sigma::zero (the default, as k-diffusion's
// append_zero), a final 0: n + 1 values.
//
// σ at (possibly fractional) training timesteps, from the table σ_t, t = 0..T−1, increasing:
//   sigma_interpolation::linear      np.interp in σ (diffusers Euler `interpolation_type="linear"`)
//   sigma_interpolation::log_linear  interpolate log σ between floor t and ceil t
//                                    (k-diffusion DiscreteSchedule.t_to_sigma, stable-diffusion.cpp)
// NB: diffusers' own `interpolation_type="log_linear"` is a different thing: it discards the
// timesteps and returns exp(linspace(log σ_min, log σ_max, N + 1)), i.e. exponential_sigmas.
//
// sigma_to_t: the inverse, by linear interpolation in log σ between neighbouring table entries
// (diffusers `_sigma_to_t`, k-diffusion `sigma_to_t`, stable-diffusion.cpp).

#include <diffuse/core/error.hpp>
#include <diffuse/schedules/detail/numeric.hpp>

#include <cmath>
#include <cstddef>
#include <span>
#include <string>
#include <vector>

namespace diffuse::schedules {

/// Whether a σ sequence ends with an appended 0 (k-diffusion's append_zero; diffusers'
/// final_sigmas_type="zero").
enum class final_sigma {
    none,  ///< n values, the last is σ_min
    zero,  ///< n + 1 values, the last is 0
};

namespace detail {

inline void require_sigma_range(int n, double sigma_min, double sigma_max) {
    require(n >= 1, "n", n, "an integer >= 1");
    require_positive(sigma_min, "sigma_min");
    require(std::isfinite(sigma_max) && sigma_max >= sigma_min, "sigma_max", sigma_max,
            "a finite number >= sigma_min");
}

inline std::vector<double> finish(std::vector<double> s, final_sigma f) {
    if (f == final_sigma::zero) s.push_back(0.0);
    return s;
}

}  // namespace detail

/// Karras et al. (2022) Eq. 5 (k-diffusion get_sigmas_karras, diffusers _convert_to_karras;
/// §8.1): σ_i = (σ_max^{1/ρ} + i/(n−1)·(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ, i = 0..n−1; σ_0 = σ_max,
/// σ_{n−1} = σ_min (n = 1 gives σ_max).
inline std::vector<double> karras_sigmas(int n, double sigma_min, double sigma_max, double rho = 7.0,
                                         final_sigma f = final_sigma::zero) {
    detail::require_sigma_range(n, sigma_min, sigma_max);
    require_positive(rho, "rho");
    const double min_inv_rho = std::pow(sigma_min, 1.0 / rho);
    const double max_inv_rho = std::pow(sigma_max, 1.0 / rho);
    std::vector<double> ramp = detail::numpy_linspace(0.0, 1.0, n);
    for (double& r : ramp) r = std::pow(max_inv_rho + r * (min_inv_rho - max_inv_rho), rho);
    return detail::finish(std::move(ramp), f);
}

/// Uniform in log σ (k-diffusion get_sigmas_exponential; diffusers' "log_linear" sigmas and
/// `use_exponential_sigmas`, Lu et al.'s uniform-λ steps; §8.2): exp(linspace(log σ_max, log σ_min, n)).
inline std::vector<double> exponential_sigmas(int n, double sigma_min, double sigma_max,
                                              final_sigma f = final_sigma::zero) {
    detail::require_sigma_range(n, sigma_min, sigma_max);
    std::vector<double> l = detail::numpy_linspace(std::log(sigma_max), std::log(sigma_min), n);
    for (double& v : l) v = std::exp(v);
    return detail::finish(std::move(l), f);
}

/// k-diffusion get_sigmas_polyexponential (§8.2): σ_i = exp(r_i^ρ (log σ_max − log σ_min) + log σ_min),
/// r = linspace(1, 0, n). ρ = 1 is exponential_sigmas.
inline std::vector<double> polyexponential_sigmas(int n, double sigma_min, double sigma_max, double rho = 1.0,
                                                  final_sigma f = final_sigma::zero) {
    detail::require_sigma_range(n, sigma_min, sigma_max);
    require_positive(rho, "rho");
    const double lmin = std::log(sigma_min), lmax = std::log(sigma_max);
    std::vector<double> r = detail::numpy_linspace(1.0, 0.0, n);
    for (double& v : r) v = std::exp(std::pow(v, rho) * (lmax - lmin) + lmin);
    return detail::finish(std::move(r), f);
}

/// k-diffusion get_sigmas_vp (§8.2): the continuous VP-linear schedule's σ_ve at
/// t = linspace(1, ε_s, n): σ = √(exp(β_d t²/2 + β_min t) − 1), computed with expm1.
inline std::vector<double> vp_sigmas(int n, double beta_d = 19.9, double beta_min = 0.1, double eps_s = 1e-3,
                                     final_sigma f = final_sigma::zero) {
    require(n >= 1, "n", n, "an integer >= 1");
    require_positive(beta_d, "beta_d");
    require_nonnegative(beta_min, "beta_min");
    require_open(eps_s, 0.0, 1.0, "eps_s");
    std::vector<double> t = detail::numpy_linspace(1.0, eps_s, n);
    for (double& v : t) v = std::sqrt(std::expm1(beta_d * v * v / 2.0 + beta_min * v));
    return detail::finish(std::move(t), f);
}

/// How σ at a fractional training timestep is read from the table σ_0..σ_{T−1}.
enum class sigma_interpolation {
    linear,      ///< linear in σ (diffusers np.interp)
    log_linear,  ///< linear in log σ between floor t and ceil t (k-diffusion, stable-diffusion.cpp)
};

namespace detail {

inline void require_sigma_table(std::span<const double> sigmas) {
    require(sigmas.size() >= 2, "sigmas.size()", sigmas.size(), "at least 2 (a table over t = 0..T-1)");
    for (std::size_t i = 0; i < sigmas.size(); ++i) {
        const double s = sigmas[i];
        const bool last = i + 1 == sigmas.size();
        if (!(s > 0 && (std::isfinite(s) || (last && s == INFINITY))))
            fail_argument("sigmas[" + std::to_string(i) + "]", s,
                          last ? "> 0 (+inf allowed at the last timestep)" : "a finite number > 0");
        if (i > 0 && !(s > sigmas[i - 1]))
            fail_argument("sigmas[" + std::to_string(i) + "]", s,
                          "greater than sigmas[" + std::to_string(i - 1) + "] (the table must increase with t)");
    }
}

}  // namespace detail

/// σ at a (possibly fractional) training timestep t in [0, T−1] (§8.3). `sigmas` is the table
/// σ_0 < σ_1 < ... < σ_{T−1} (discrete_schedule::sigmas_ve()).
///   linear:     σ_j + (t − j)(σ_{j+1} − σ_j), j = floor t (numpy's np.interp formula)
///   log_linear: exp((1 − w) log σ_j + w log σ_{j+1}), w = t − j
/// At integer t both return σ_t exactly (also for an infinite σ_{T−1}).
inline double sigma_at(std::span<const double> sigmas, double t, sigma_interpolation interp) {
    detail::require_sigma_table(sigmas);
    const double last = static_cast<double>(sigmas.size() - 1);
    if (!(t >= 0 && t <= last))
        fail_argument("t", t, "in [0, " + std::to_string(sigmas.size() - 1) + "] (num_train_timesteps - 1)");
    const double j_d = std::floor(t);
    const auto j = static_cast<std::size_t>(j_d);
    const double w = t - j_d;
    if (w == 0.0) return sigmas[j];
    if (interp == sigma_interpolation::linear) {
        const double slope = sigmas[j + 1] - sigmas[j];
        return slope * w + sigmas[j];
    }
    return std::exp((1.0 - w) * std::log(sigmas[j]) + w * std::log(sigmas[j + 1]));
}

/// sigma_at for every timestep of a sequence.
inline std::vector<double> sigmas_at(std::span<const double> sigmas, std::span<const double> timesteps,
                                     sigma_interpolation interp) {
    std::vector<double> out(timesteps.size());
    for (std::size_t i = 0; i < timesteps.size(); ++i) out[i] = sigma_at(sigmas, timesteps[i], interp);
    return out;
}

/// The fractional training timestep of a noise level σ (§8.4; diffusers `_sigma_to_t`,
/// k-diffusion `DiscreteSchedule.sigma_to_t`, stable-diffusion.cpp):
///   σ ← max(σ, 1e-10) (diffusers' clamp); j = clip(#{t : log σ_t <= log σ} − 1, 0, T − 2);
///   w = clip((log σ_j − log σ)/(log σ_j − log σ_{j+1}), 0, 1); t = (1 − w) j + w (j + 1).
/// So σ below σ_0 maps to 0 and σ above σ_{T−1} maps to T − 1; σ = +∞ maps to T − 1.
inline double sigma_to_t(std::span<const double> sigmas, double sigma) {
    detail::require_sigma_table(sigmas);
    require(!std::isnan(sigma) && sigma >= 0, "sigma", sigma, "a number >= 0");
    const double log_sigma = std::log(sigma > 1e-10 ? sigma : 1e-10);
    std::size_t count = 0;
    for (double s : sigmas)
        if (log_sigma - std::log(s) >= 0) ++count;
    const std::size_t T = sigmas.size();
    std::size_t low = count == 0 ? 0 : count - 1;
    if (low > T - 2) low = T - 2;
    const double lo = std::log(sigmas[low]), hi = std::log(sigmas[low + 1]);
    double w = (lo - log_sigma) / (lo - hi);
    if (std::isnan(w)) w = 1.0;  // σ = σ_{T−1} = +∞: (−∞)/(−∞)
    w = w < 0 ? 0.0 : (w > 1 ? 1.0 : w);
    return (1.0 - w) * static_cast<double>(low) + w * static_cast<double>(low + 1);
}

}  // namespace diffuse::schedules
