#pragma once
// Named discrete β schedules (docs/schedules.md §1), with the names and exact conventions of
// diffusers (`beta_schedule=`) and guided-diffusion (`get_named_beta_schedule`):
//
//   name                 β_i, i = 0..T−1                                           peer
//   "linear"             linspace(β_start, β_end, T)                                diffusers
//   "scaled_linear"      linspace(√β_start, √β_end, T)²                             diffusers (LDM/SD)
//   "squaredcos_cap_v2"  min(1 − f((i+1)/T)/f(i/T), max_beta), f(u) = cos²((u+s)/(1+s)·π/2)
//                                                                                   diffusers, GD "cosine"
//   "sigmoid"            sigmoid(linspace(−6, 6, T))·(β_end − β_start) + β_start   diffusers (GeoDiff)
//   "exp"                min(1 − e^{−12(i+1)/T}/e^{−12 i/T}, max_beta)             diffusers Heun
//   "guided_linear"      linspace(β_start·1000/T, β_end·1000/T, T)                  guided-diffusion "linear"
//
// Precision: diffusers builds linear / scaled_linear / sigmoid with torch float32 arithmetic
// and stores every β as float32; guided-diffusion works in float64. precision::float64 (the
// default) computes in double; precision::float32 reproduces the float32 rounding (§1.3).
//
// User-supplied `trained_betas` or `alphas_cumprod` go straight to discrete_schedule
// (discrete_schedule.hpp); validate_betas() is the check every β sequence passes.

#include <diffuse/core/error.hpp>
#include <diffuse/schedules/detail/numeric.hpp>

#include <cmath>
#include <cstddef>
#include <numbers>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace diffuse::schedules {

/// Arithmetic used to build a β schedule (docs/schedules.md §1.3).
enum class precision {
    float64,  ///< double throughout (guided-diffusion; this library's default)
    float32,  ///< torch float32 arithmetic and float32 storage, as diffusers does
};

namespace detail {

inline void require_num_train_timesteps(int num_train_timesteps) {
    require(num_train_timesteps >= 1, "num_train_timesteps", num_train_timesteps, "an integer >= 1");
}

inline std::vector<double> round_to_float(std::vector<double> v) {
    for (double& x : v) x = static_cast<double>(static_cast<float>(x));
    return v;
}

}  // namespace detail

/// Checks a β sequence: T >= 1, every β finite and in the open interval (0, 1); the last β may
/// be exactly 1 when `allow_terminal_one` (a zero-terminal-SNR schedule, ᾱ_{T−1} = 0, §4).
inline void validate_betas(std::span<const double> betas, bool allow_terminal_one = false) {
    require(!betas.empty(), "betas.size()", betas.size(), "at least 1 (num_train_timesteps >= 1)");
    for (std::size_t i = 0; i < betas.size(); ++i) {
        const double b = betas[i];
        const bool last = i + 1 == betas.size();
        if (std::isfinite(b) && b > 0 && (b < 1 || (b == 1 && last && allow_terminal_one))) continue;
        const std::string arg = "betas[" + std::to_string(i) + "]";
        if (b == 1 && !last)
            fail_argument(arg, b,
                          "in the open interval (0, 1); beta = 1 is allowed only at the last "
                          "timestep (zero terminal SNR)");
        fail_argument(arg, b,
                      allow_terminal_one && last
                          ? "in (0, 1] (1 only at the last timestep, zero terminal SNR)"
                          : "in the open interval (0, 1)");
    }
}

/// The unnormalised cosine ᾱ of Nichol & Dhariwal (2021, Eq. 17): f(u) = cos²((u + s)/(1 + s)·π/2),
/// u = t/T in [0, 1]. diffusers' `alpha_bar_fn` for "cosine"; ᾱ(u) = f(u)/f(0).
inline double cosine_alpha_bar(double u, double s = 0.008) {
    const double c = std::cos((u + s) / (1.0 + s) * std::numbers::pi / 2.0);
    return c * c;
}

/// diffusers' "exp" alpha_bar_fn: ᾱ(u) = exp(−12 u).
inline double exp_alpha_bar(double u) { return std::exp(-12.0 * u); }

/// Discretises a continuous ᾱ(u), u in [0, 1] (docs/schedules.md §1.2; diffusers and
/// improved-diffusion `betas_for_alpha_bar`): β_i = min(1 − ᾱ((i+1)/T)/ᾱ(i/T), max_beta),
/// i = 0..T−1. The product telescopes: Π_{j<=i}(1 − β_j) = ᾱ((i+1)/T)/ᾱ(0) while no β is
/// clipped. max_beta must be in (0, 1]; max_beta = 1 leaves ᾱ_{T−1} = 0 when ᾱ(1) = 0.
template <class AlphaBarFn>
    requires std::is_invocable_r_v<double, AlphaBarFn, double>
std::vector<double> betas_for_alpha_bar(int num_train_timesteps, AlphaBarFn&& alpha_bar_fn,
                                        double max_beta = 0.999) {
    detail::require_num_train_timesteps(num_train_timesteps);
    require(std::isfinite(max_beta) && max_beta > 0 && max_beta <= 1, "max_beta", max_beta,
            "in the interval (0, 1]");
    const double T = static_cast<double>(num_train_timesteps);
    std::vector<double> betas(static_cast<std::size_t>(num_train_timesteps));
    for (int i = 0; i < num_train_timesteps; ++i) {
        const double t1 = i / T;
        const double t2 = (i + 1) / T;
        const double b = 1.0 - alpha_bar_fn(t2) / alpha_bar_fn(t1);  // 1 − ᾱ(t2)/ᾱ(t1)
        betas[static_cast<std::size_t>(i)] = b < max_beta ? b : max_beta;
    }
    return betas;
}

/// "linear": β_i = β_start + i/(T−1)·(β_end − β_start) (Ho et al. 2020; §1.1).
/// float64: numpy's linspace formula; float32: torch.linspace(..., dtype=float32).
inline std::vector<double> linear_betas(int num_train_timesteps, double beta_start = 1e-4,
                                        double beta_end = 0.02, precision prec = precision::float64) {
    detail::require_num_train_timesteps(num_train_timesteps);
    require_open(beta_start, 0.0, 1.0, "beta_start");
    require_open(beta_end, 0.0, 1.0, "beta_end");
    if (prec == precision::float32) return detail::torch_linspace_float32(beta_start, beta_end, num_train_timesteps);
    return detail::numpy_linspace(beta_start, beta_end, num_train_timesteps);
}

/// "scaled_linear": β_i = (√β_start + i/(T−1)·(√β_end − √β_start))² (LDM / Stable Diffusion; §1.1).
/// float32: torch.linspace(√β_start, √β_end, T, dtype=float32) ** 2, squared in float.
inline std::vector<double> scaled_linear_betas(int num_train_timesteps, double beta_start = 0.00085,
                                               double beta_end = 0.012, precision prec = precision::float64) {
    detail::require_num_train_timesteps(num_train_timesteps);
    require_open(beta_start, 0.0, 1.0, "beta_start");
    require_open(beta_end, 0.0, 1.0, "beta_end");
    const double a = std::sqrt(beta_start), b = std::sqrt(beta_end);
    std::vector<double> r = prec == precision::float32
                                ? detail::torch_linspace_float32(a, b, num_train_timesteps)
                                : detail::numpy_linspace(a, b, num_train_timesteps);
    for (double& x : r) {
        x = x * x;  // r_i² (in float32 mode r_i is a float, r_i² exact in double, then rounded)
        if (prec == precision::float32) x = static_cast<double>(static_cast<float>(x));
    }
    return r;
}

/// "sigmoid" (GeoDiff, diffusers): β_i = σ(−6 + 12 i/(T−1))·(β_end − β_start) + β_start, σ the
/// logistic function (§1.1). Not Chen (2023)'s continuous sigmoid schedule. In float32 mode the
/// logistic is evaluated in double and rounded to float (torch's float sigmoid may differ by an ulp).
inline std::vector<double> sigmoid_betas(int num_train_timesteps, double beta_start = 1e-4,
                                         double beta_end = 0.02, precision prec = precision::float64) {
    detail::require_num_train_timesteps(num_train_timesteps);
    require_open(beta_start, 0.0, 1.0, "beta_start");
    require_open(beta_end, 0.0, 1.0, "beta_end");
    const bool f32 = prec == precision::float32;
    std::vector<double> x = f32 ? detail::torch_linspace_float32(-6.0, 6.0, num_train_timesteps)
                                : detail::numpy_linspace(-6.0, 6.0, num_train_timesteps);
    const double range = beta_end - beta_start;  // Python float, as in diffusers
    for (double& v : x) {
        double s = 1.0 / (1.0 + std::exp(-v));  // logistic σ(v)
        if (f32) {
            const float sf = static_cast<float>(s);
            // volatile: no float FMA of σ·range + β_start (see detail::torch_linspace_float32).
            volatile float prod = static_cast<float>(static_cast<double>(sf) * static_cast<float>(range));
            v = static_cast<double>(static_cast<float>(static_cast<double>(prod) +
                                                       static_cast<float>(beta_start)));
        } else {
            v = s * range + beta_start;
        }
    }
    return x;
}

/// "squaredcos_cap_v2" / guided-diffusion "cosine" (Nichol & Dhariwal 2021, Eq. 17; §1.2):
/// betas_for_alpha_bar with f(u) = cos²((u + 0.008)/1.008·π/2) and the max_beta = 0.999 clip.
/// diffusers computes in float64 and then stores float32 (precision::float32 rounds the result).
inline std::vector<double> cosine_betas(int num_train_timesteps, double max_beta = 0.999,
                                        precision prec = precision::float64, double s = 0.008) {
    require(std::isfinite(s) && s >= 0, "s", s, "a finite offset >= 0");
    auto betas = betas_for_alpha_bar(num_train_timesteps, [s](double u) { return cosine_alpha_bar(u, s); }, max_beta);
    return prec == precision::float32 ? detail::round_to_float(std::move(betas)) : betas;
}

/// guided-diffusion / improved-diffusion "linear" (`get_named_beta_schedule`): the DDPM linear
/// schedule rescaled so that it is the same curve for every T: scale = 1000/T,
/// β_i = linspace(scale·β_start, scale·β_end, T) in float64 (§1.1).
inline std::vector<double> guided_linear_betas(int num_train_timesteps, double beta_start = 1e-4,
                                               double beta_end = 0.02) {
    detail::require_num_train_timesteps(num_train_timesteps);
    const double scale = 1000.0 / num_train_timesteps;
    require_open(scale * beta_start, 0.0, 1.0, "beta_start*1000/num_train_timesteps");
    require_open(scale * beta_end, 0.0, 1.0, "beta_end*1000/num_train_timesteps");
    return detail::numpy_linspace(scale * beta_start, scale * beta_end, num_train_timesteps);
}

/// The names make_betas accepts.
inline constexpr std::string_view beta_schedule_names[] = {
    "linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid", "exp", "guided_linear"};

/// Options of make_betas beyond the endpoints.
struct beta_options {
    double max_beta = 0.999;                ///< clip of the alpha-bar schedules (cosine, exp)
    precision prec = precision::float64;    ///< float32: reproduce diffusers' float32 betas
};

/// β schedule by name (see the table at the top of this header). beta_start / beta_end are
/// used by linear, scaled_linear, sigmoid and guided_linear, and ignored by the alpha-bar
/// schedules (squaredcos_cap_v2, exp), as in diffusers. Unknown name: diffuse::error listing
/// the allowed names.
inline std::vector<double> make_betas(std::string_view name, int num_train_timesteps, double beta_start = 1e-4,
                                      double beta_end = 0.02, beta_options options = {}) {
    if (name == "linear") return linear_betas(num_train_timesteps, beta_start, beta_end, options.prec);
    if (name == "scaled_linear") return scaled_linear_betas(num_train_timesteps, beta_start, beta_end, options.prec);
    if (name == "squaredcos_cap_v2") return cosine_betas(num_train_timesteps, options.max_beta, options.prec);
    if (name == "sigmoid") return sigmoid_betas(num_train_timesteps, beta_start, beta_end, options.prec);
    if (name == "exp") {
        auto b = betas_for_alpha_bar(num_train_timesteps, exp_alpha_bar, options.max_beta);
        return options.prec == precision::float32 ? detail::round_to_float(std::move(b)) : b;
    }
    if (name == "guided_linear") {
        auto b = guided_linear_betas(num_train_timesteps, beta_start, beta_end);
        return options.prec == precision::float32 ? detail::round_to_float(std::move(b)) : b;
    }
    fail_argument("beta_schedule", name,
                  detail::one_of({"linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid", "exp", "guided_linear"}));
}

/// Recovers β from a cumulative product (docs/schedules.md §2): β_0 = 1 − ᾱ_0,
/// β_t = (ᾱ_{t−1} − ᾱ_t)/ᾱ_{t−1}. The subtraction of neighbours is exact (Sterbenz) where
/// they are within a factor 2, so β keeps full relative precision even when tiny.
inline std::vector<double> betas_from_alphas_cumprod(std::span<const double> alphas_cumprod) {
    std::vector<double> betas(alphas_cumprod.size());
    for (std::size_t t = 0; t < alphas_cumprod.size(); ++t) {
        const double prev = t == 0 ? 1.0 : alphas_cumprod[t - 1];
        betas[t] = (prev - alphas_cumprod[t]) / prev;
    }
    return betas;
}

}  // namespace diffuse::schedules
