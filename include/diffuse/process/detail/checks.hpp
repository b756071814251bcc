#pragma once
// Internals of process/: argument checks shared by forward, posterior, parametrization and
// losses. Every check throws diffuse::error naming the argument, its value and what is allowed
// (DESIGN.md, "Errors are values users can read").

#include <diffuse/core/error.hpp>

#include <cmath>
#include <sstream>
#include <string>
#include <string_view>

namespace diffuse::process::detail {

/// β of one forward step: in (0, 1), or exactly 1 when `allow_one` (the last step of a
/// zero-terminal-SNR schedule, where x_T is pure noise; docs/forward_process.md §1).
inline void check_beta(double beta, std::string_view name = "beta", bool allow_one = true) {
    const bool ok = std::isfinite(beta) && beta > 0.0 && (beta < 1.0 || (allow_one && beta == 1.0));
    if (!ok)
        fail_argument(name, beta,
                      allow_one ? "in (0, 1] (1 only for a zero-terminal-SNR last step)"
                                : "in the open interval (0, 1)");
}

/// ᾱ in (0, 1], or in [0, 1] when `allow_zero` (zero terminal SNR: ᾱ_T = 0).
inline void check_alpha_bar(double alpha_bar, std::string_view name = "alpha_bar", bool allow_zero = true) {
    const bool ok = std::isfinite(alpha_bar) && alpha_bar <= 1.0 &&
                    (alpha_bar > 0.0 || (allow_zero && alpha_bar == 0.0));
    if (!ok)
        fail_argument(name, alpha_bar,
                      allow_zero ? "in the closed interval [0, 1]" : "in the interval (0, 1]");
}

/// A step from an earlier time s to a later time t has ᾱ_t < ᾱ_s (strictly: s < t).
inline void check_step_order(double alpha_bar_t, double alpha_bar_s, std::string_view t_name = "alpha_bar_t",
                             std::string_view s_name = "alpha_bar_s") {
    check_alpha_bar(alpha_bar_s, s_name, /*allow_zero=*/false);
    check_alpha_bar(alpha_bar_t, t_name, /*allow_zero=*/true);
    if (!(alpha_bar_t < alpha_bar_s)) {
        std::ostringstream allowed;
        allowed.precision(17);
        allowed << "< " << s_name << " = " << alpha_bar_s
                << " (s < t: a step from an earlier time s to a later time t has ᾱ_t < ᾱ_s)";
        fail_argument(t_name, alpha_bar_t, allowed.str());
    }
}

/// A noise level of x_t = a·x0 + s·eps: a, s finite and >= 0, not both zero.
inline void check_level(double a, double s) {
    require_nonnegative(a, "a");
    require_nonnegative(s, "s");
    if (a == 0.0 && s == 0.0)
        fail_argument("s", s, "> 0 when a = 0 (x_t = a·x0 + s·eps with a = s = 0 is identically 0)");
}

/// A log-variance: finite (−inf is allowed only where the caller says so).
inline void check_log_variance(double log_variance, std::string_view name) {
    require(std::isfinite(log_variance), name, log_variance, "a finite log-variance");
}

}  // namespace diffuse::process::detail
