#pragma once
// Continuous-time noise schedules with closed forms (docs/schedules.md §3). Every schedule
// describes x_t = α(t) x_0 + σ(t) ε and provides, in double:
//
//   log_alpha(t), alpha(t), sigma(t), log_sigma(t)
//   lambda(t)   = log α(t) − log σ(t)   (half-log-SNR, DPM-Solver convention)
//   log_snr(t)  = 2 λ(t)                (VDM convention)
//   sigma_ve(t) = σ(t)/α(t) = e^{−λ(t)} (the VE / EDM / k-diffusion σ)
//   t_of_lambda(λ)                      (the exact inverse of lambda)
//   t_max()                             (the end of the time interval)
//
// Schedules: vp_linear (Score-SDE VP, β(t) = β₀ + t(β₁ − β₀)), vp_cosine (DPM-Solver's
// continuous cosine), edm (σ(t) = t) and ve (σ(t) = σ_min (σ_max/σ_min)^t). For VP schedules
// σ² = 1 − α² is evaluated as −expm1(2 log α) so that it keeps full precision as t → 0.

#include <diffuse/core/error.hpp>
#include <diffuse/schedules/detail/numeric.hpp>

#include <cmath>
#include <concepts>
#include <cstddef>
#include <numbers>
#include <vector>

namespace diffuse::schedules {

/// A continuous schedule (see the header comment for the meaning of each member).
template <class S>
concept continuous_schedule = requires(const S& s, double t) {
    { s.log_alpha(t) } -> std::convertible_to<double>;
    { s.alpha(t) } -> std::convertible_to<double>;
    { s.sigma(t) } -> std::convertible_to<double>;
    { s.log_sigma(t) } -> std::convertible_to<double>;
    { s.lambda(t) } -> std::convertible_to<double>;
    { s.log_snr(t) } -> std::convertible_to<double>;
    { s.sigma_ve(t) } -> std::convertible_to<double>;
    { s.t_of_lambda(t) } -> std::convertible_to<double>;
    { s.t_max() } -> std::convertible_to<double>;
};

namespace detail {

/// From log α of a VP schedule (α² + σ² = 1): log σ = ½ log(1 − α²) = ½ log1mexp(2 log α).
inline double vp_log_sigma(double log_alpha) { return 0.5 * log1mexp(2.0 * log_alpha); }

/// The VP log α with λ: e^{−2λ} = σ²/α² = α^{−2} − 1, so log α = −½ softplus(−2λ).
inline double vp_log_alpha_of_lambda(double lambda) { return -0.5 * softplus(-2.0 * lambda); }

}  // namespace detail

/// What every VP schedule derives from its log α(t) (CRTP: Derived provides log_alpha):
///   σ = √(−expm1(2 log α)), log σ = ½ log(1 − α²), λ = log α − log σ, log SNR = 2λ,
///   σ_ve = √(α^{−2} − 1) = √(expm1(−2 log α)) — each in the cancellation-free form.
template <class Derived>
class vp_from_log_alpha {
public:
    double alpha(double t) const { return std::exp(la(t)); }
    double sigma(double t) const { return std::sqrt(-std::expm1(2.0 * la(t))); }
    double log_sigma(double t) const { return detail::vp_log_sigma(la(t)); }
    double lambda(double t) const { return la(t) - log_sigma(t); }
    double log_snr(double t) const { return 2.0 * lambda(t); }
    double sigma_ve(double t) const { return std::sqrt(std::expm1(-2.0 * la(t))); }

private:
    double la(double t) const { return static_cast<const Derived&>(*this).log_alpha(t); }
};

/// Score-SDE VP with linear β(t) = β₀ + t(β₁ − β₀) on t in [0, 1] (Song et al. 2021, Eq. 11 and
/// App. B; DPM-Solver `NoiseScheduleVP('linear')`; docs/schedules.md §3.1):
///   log α(t) = −¼ t²(β₁ − β₀) − ½ t β₀
///   t(λ) = 2L / (√(β₀² + 2(β₁ − β₀)L) + β₀),  L = softplus(−2λ) = log(1 + e^{−2λ})
class vp_linear : public vp_from_log_alpha<vp_linear> {
public:
    explicit vp_linear(double beta_0 = 0.1, double beta_1 = 20.0) : beta_0_(beta_0), beta_1_(beta_1) {
        require_nonnegative(beta_0, "beta_0");
        require(std::isfinite(beta_1) && beta_1 >= beta_0 && beta_1 > 0, "beta_1", beta_1,
                "a finite number >= beta_0 and > 0");
    }
    double beta_0() const { return beta_0_; }
    double beta_1() const { return beta_1_; }
    double t_max() const { return 1.0; }

    /// β(t) = −2 d log α/dt.
    double beta(double t) const { return beta_0_ + t * (beta_1_ - beta_0_); }
    double log_alpha(double t) const { return -0.25 * t * t * (beta_1_ - beta_0_) - 0.5 * t * beta_0_; }

    /// Solves ½Δβ t² + β₀ t = L (−2 log α = L) for t >= 0 in the rationalised, cancellation-free
    /// form t = 2L/(√(β₀² + 2ΔβL) + β₀), Δβ = β₁ − β₀ (DPM-Solver's expression with Δβ cancelled;
    /// also valid for Δβ = 0).
    double t_of_lambda(double lambda) const {
        const double L = detail::softplus(-2.0 * lambda);
        const double d = beta_1_ - beta_0_;
        return 2.0 * L / (std::sqrt(beta_0_ * beta_0_ + 2.0 * d * L) + beta_0_);
    }

private:
    double beta_0_, beta_1_;
};

/// DPM-Solver's continuous cosine schedule (Nichol & Dhariwal 2021 in continuous time;
/// dpm-solver `NoiseScheduleVP('cosine')`; §3.2): with u(t) = (t + s)/(1 + s)·π/2,
///   log α(t) = log cos u(t) − log cos u(0),  s = 0.008, t in [0, T], T = 0.9946.
/// T < 1 keeps β(t) = π/(1+s)·tan u(t) finite; dpm-solver's `cosine_beta_max = 999` gives the
/// bound t_beta_max() ≈ 0.998 as well. Inverse: cos u = α cos u(0), u = atan2(√(1 − cos²u), cos u),
/// t = 2(1 + s)u/π − s, with 1 − cos u = (1 − α) + α·2 sin²(u(0)/2) (no cancellation).
class vp_cosine : public vp_from_log_alpha<vp_cosine> {
public:
    explicit vp_cosine(double s = 0.008, double t_max = 0.9946) : s_(s), t_max_(t_max) {
        require(std::isfinite(s) && s > 0, "s", s, "a finite number > 0");
        const double t_limit = 1.0;  // u(1) = π/2: α(1) = 0
        require(std::isfinite(t_max) && t_max > 0 && t_max < t_limit, "t_max", t_max, "in the open interval (0, 1)");
        u0_ = s_ / (1.0 + s_) * std::numbers::pi / 2.0;
    }
    double s() const { return s_; }
    double t_max() const { return t_max_; }
    /// dpm-solver's `cosine_t_max`: where β(t) reaches beta_max (999 by default).
    double t_beta_max(double beta_max = 999.0) const {
        return std::atan(beta_max * (1.0 + s_) / std::numbers::pi) * 2.0 * (1.0 + s_) / std::numbers::pi - s_;
    }

    double u(double t) const { return (t + s_) / (1.0 + s_) * std::numbers::pi / 2.0; }
    /// β(t) = −2 d log α/dt = π/(1 + s)·tan u(t).
    double beta(double t) const { return std::numbers::pi / (1.0 + s_) * std::tan(u(t)); }
    /// log(cos(u0 + δ)/cos u0) = log1p(−2 sin²(δ/2) − tan(u0) sin δ), δ = u(t) − u(0) = t/(1+s)·π/2.
    double log_alpha(double t) const {
        const double delta = t / (1.0 + s_) * std::numbers::pi / 2.0;
        const double h = std::sin(0.5 * delta);
        return std::log1p(-2.0 * h * h - std::tan(u0_) * std::sin(delta));
    }

    double t_of_lambda(double lambda) const {
        const double log_a = detail::vp_log_alpha_of_lambda(lambda);
        const double a = std::exp(log_a);
        const double h = std::sin(0.5 * u0_);
        const double c = a * std::cos(u0_);                        // cos u
        const double one_minus_c = -std::expm1(log_a) + a * 2.0 * h * h;  // 1 − cos u
        const double sin_u = std::sqrt(one_minus_c * (1.0 + c));
        const double uu = std::atan2(sin_u, c);
        return 2.0 * (1.0 + s_) * uu / std::numbers::pi - s_;
    }

private:
    double s_, t_max_, u0_ = 0.0;
};

/// EDM (Karras et al. 2022, Table 1): σ(t) = t, α = 1; λ = −log t, t(λ) = e^{−λ} (§3.3).
/// Here sigma() is the VE σ (no VP pair): sigma(t) = sigma_ve(t) = t.
class edm {
public:
    explicit edm(double sigma_min = 0.002, double sigma_max = 80.0) : sigma_min_(sigma_min), sigma_max_(sigma_max) {
        require_positive(sigma_min, "sigma_min");
        require(std::isfinite(sigma_max) && sigma_max > sigma_min, "sigma_max", sigma_max,
                "a finite number > sigma_min");
    }
    double sigma_min() const { return sigma_min_; }
    double t_max() const { return sigma_max_; }
    double log_alpha(double) const { return 0.0; }
    double alpha(double) const { return 1.0; }
    double sigma(double t) const { return t; }
    double log_sigma(double t) const { return std::log(t); }
    double lambda(double t) const { return -std::log(t); }
    double log_snr(double t) const { return -2.0 * std::log(t); }
    double sigma_ve(double t) const { return t; }
    double t_of_lambda(double lambda) const { return std::exp(-lambda); }

private:
    double sigma_min_, sigma_max_;
};

/// Score-SDE VE (Song et al. 2021, Eq. 9 and App. C): σ(t) = σ_min (σ_max/σ_min)^t on
/// t in [0, 1], α = 1; λ = −log σ, t(λ) = (−λ − log σ_min)/log(σ_max/σ_min) (§3.3).
class ve {
public:
    explicit ve(double sigma_min = 0.01, double sigma_max = 50.0) : sigma_min_(sigma_min), sigma_max_(sigma_max) {
        require_positive(sigma_min, "sigma_min");
        require(std::isfinite(sigma_max) && sigma_max > sigma_min, "sigma_max", sigma_max,
                "a finite number > sigma_min");
        log_ratio_ = std::log(sigma_max_ / sigma_min_);
    }
    double sigma_min() const { return sigma_min_; }
    double sigma_max() const { return sigma_max_; }
    double t_max() const { return 1.0; }
    double log_alpha(double) const { return 0.0; }
    double alpha(double) const { return 1.0; }
    double log_sigma(double t) const { return std::log(sigma_min_) + t * log_ratio_; }
    double sigma(double t) const { return std::exp(log_sigma(t)); }
    double lambda(double t) const { return -log_sigma(t); }
    double log_snr(double t) const { return -2.0 * log_sigma(t); }
    double sigma_ve(double t) const { return sigma(t); }
    double t_of_lambda(double lambda) const { return (-lambda - std::log(sigma_min_)) / log_ratio_; }

private:
    double sigma_min_, sigma_max_, log_ratio_ = 0.0;
};

/// DPM-Solver's `get_time_steps(skip_type, t_T, t_0, N)` (§3.4): N + 1 decreasing times from t_T to t_0.
enum class time_skip {
    time_uniform,    ///< linspace(t_T, t_0, N + 1)
    logsnr,          ///< t(linspace(λ(t_T), λ(t_0), N + 1)): uniform in λ
    time_quadratic,  ///< linspace(√t_T, √t_0, N + 1)²
};

template <continuous_schedule S>
std::vector<double> time_steps(const S& schedule, time_skip skip, double t_T, double t_0, int N) {
    require(N >= 1, "N", N, "an integer >= 1");
    require(std::isfinite(t_0) && t_0 > 0, "t_0", t_0, "a finite number > 0");
    require(std::isfinite(t_T) && t_T > t_0, "t_T", t_T, "a finite number > t_0");
    std::vector<double> out;
    switch (skip) {
        case time_skip::time_uniform:
            out = detail::numpy_linspace(t_T, t_0, N + 1);
            break;
        case time_skip::logsnr:
            out = detail::numpy_linspace(schedule.lambda(t_T), schedule.lambda(t_0), N + 1);
            for (double& l : out) l = schedule.t_of_lambda(l);
            break;
        case time_skip::time_quadratic:
            out = detail::numpy_linspace(std::sqrt(t_T), std::sqrt(t_0), N + 1);
            for (double& r : out) r = r * r;
            break;
    }
    return out;
}

}  // namespace diffuse::schedules
