#pragma once
// A noise level (a, s) of the forward process x_t = a·x0 + s·eps, eps ~ N(0, I)
// (docs/exact_models.md §1). Every exact model in analytic/ takes (a, s) as two doubles, so one
// formula serves both common forms:
//
//   VP (DDPM, DDIM, DPM-Solver): a = √ᾱ, s = √(1 − ᾱ), so a² + s² = 1       -> vp_level(ᾱ)
//   VE / EDM (Karras et al.):    a = 1,  s = σ                               -> ve_level(σ)
//
// The two are the same process up to the scaling x_ve = x_vp / a, σ = s / a.

#include <diffuse/core/error.hpp>

#include <cmath>

namespace diffuse::analytic {

/// The scaling a and noise standard deviation s of x_t = a·x0 + s·eps.
/// Aggregate, so `auto [a, s] = vp_level(0.3);` works.
struct noise_level {
    double a;
    double s;
};

/// VP form: a = √ᾱ, s = √(1 − ᾱ), for ᾱ in [0, 1].
inline noise_level vp_level(double alpha_bar) {
    require(std::isfinite(alpha_bar) && alpha_bar >= 0.0 && alpha_bar <= 1.0, "alpha_bar", alpha_bar,
            "in the closed interval [0, 1]");
    return {std::sqrt(alpha_bar), std::sqrt(1.0 - alpha_bar)};
}

/// VE / EDM form: a = 1, s = σ, for σ >= 0 finite.
inline noise_level ve_level(double sigma) {
    require_nonnegative(sigma, "sigma");
    return {1.0, sigma};
}

}  // namespace diffuse::analytic
