#pragma once
// convergence_order: the empirical order of any sampler loop, one call (docs/testing-your-sampler.md §2).
//
// The user runs their sampler at a ladder of step counts N_1 < N_2 < ... and measures the error
// against an exact endpoint (for Gaussian data: analytic::gaussian::pf_ode_flow). Three forms:
//
//   fit_convergence_order(steps, errors, options)                 errors already measured
//   convergence_order(run, steps, options)                        run(int N) -> error (double)
//   convergence_order(run, steps, reference, options)             run(int N, tensor_view<T, S> out)
//                                                                 writes the endpoint; the error is
//                                                                 max|out − reference| (or the RMS)
//
// The fit is the least-squares line through (x_i, y_i) = (log(1/N_i), log err_i) over the last
// `fit_last` points (all by default): err ≈ C·N^(−slope). With k fitted points, residual sum of
// squares SSR and Sxx = Σ(x_i − x̄)², the standard error of the slope is √(SSR/(k − 2) / Sxx) and
// the level-c confidence interval is slope ± t_{(1+c)/2, k−2}·SE (Student t on the regression
// residuals, k − 2 degrees of freedom; statistics.hpp). The interval measures how well a straight
// line fits, not discretisation bias: a pre-asymptotic ladder gives a tight interval around the
// wrong slope, which is why passed = |slope − expected_order| <= tolerance and the pairwise slopes
// log(err_i/err_{i+1}) / log(N_{i+1}/N_i) are reported next to it.
//
// Warnings (in result.warnings and the report; they do not change `passed`):
//   * an error below the round-off floor (options.error_floor; the endpoint form defaults it to
//     1e3·u·max|reference| with u the unit round-off of T, closed_forms §0),
//   * errors that flatten or grow at the fine end (last pairwise slope < expected/2),
//   * a last pairwise slope further than `tolerance` from the expected order (pre-asymptotic).
// Invalid input throws diffuse::error: fewer than 3 fitted points, step counts not strictly
// increasing or < 1, an error that is not finite and > 0 (an exact method has no order).

#include <diffuse/backend/lincomb.hpp>
#include <diffuse/backend/reduce.hpp>
#include <diffuse/core/error.hpp>
#include <diffuse/core/memory_space.hpp>
#include <diffuse/core/tensor.hpp>
#include <diffuse/testing/detail/format.hpp>
#include <diffuse/testing/statistics.hpp>

#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace diffuse::testing {

/// How the endpoint form turns out − reference into one error.
enum class error_norm {
    max_abs,  ///< max_i |out_i − ref_i| (closed_forms C2)
    rms,      ///< √(mean_i (out_i − ref_i)²)
};

struct convergence_options {
    double expected_order = std::numeric_limits<double>::quiet_NaN();  ///< required: the order p to check
    double tolerance = 0.1;     ///< passed iff |slope − expected_order| <= tolerance (closed_forms C2 bands)
    double confidence = 0.95;   ///< level of the Student-t interval on the slope, in (0, 1)
    std::size_t fit_last = 0;   ///< fit the last k points of the ladder (0: all); k >= 3
    error_norm norm = error_norm::max_abs;  ///< endpoint form only
    double error_floor = 0.0;   ///< errors below it are at the round-off floor (0: none, or the endpoint form's default)
    std::string name = "convergence order";  ///< the report's title
};

struct convergence_result {
    std::string name;
    std::vector<int> steps;                ///< the ladder N_i
    std::vector<double> errors;            ///< err_i
    std::vector<double> pairwise_slopes;   ///< log(err_i/err_{i+1}) / log(N_{i+1}/N_i), size − 1 entries
    std::size_t fit_begin = 0;             ///< index of the first fitted point
    std::size_t fit_points = 0;            ///< number of fitted points k
    double slope = 0.0;                    ///< least-squares order
    double constant = 0.0;                 ///< C in err ≈ C·N^(−slope)
    double standard_error = 0.0;           ///< of the slope, √(SSR/(k−2)/Sxx)
    double t_quantile = 0.0;               ///< t_{(1+c)/2, k−2}
    double ci_low = 0.0, ci_high = 0.0;    ///< slope ∓ t_quantile·standard_error
    double confidence = 0.95;
    double expected_order = 0.0;
    double tolerance = 0.0;
    double error_floor = 0.0;              ///< the floor used for the warning (0: none)
    std::vector<std::string> warnings;
    bool passed = false;                   ///< |slope − expected_order| <= tolerance

    /// A table of N, error and pairwise slope, the fit, the interval, the verdict and warnings.
    std::string report() const {
        std::string r = detail::format("%s: %s: fitted order %.4f, expected %g +- %g\n", name.c_str(),
                                       detail::verdict(passed), slope, expected_order, tolerance);
        r += detail::format("  %g%% confidence interval [%.4f, %.4f] (standard error %.3g, Student t with %d dof = %.4f)\n",
                            100.0 * confidence, ci_low, ci_high, standard_error, static_cast<int>(fit_points) - 2,
                            t_quantile);
        r += detail::format("  least squares of log(error) on log(1/N) over N = %d..%d (%d of %d points, marked *): "
                            "error ~ %.4g * N^-%.4f\n",
                            steps[fit_begin], steps.back(), static_cast<int>(fit_points),
                            static_cast<int>(steps.size()), constant, slope);
        r += "         N        error   pairwise order\n";
        for (std::size_t i = 0; i < steps.size(); ++i) {
            r += detail::format("  %s %6d   %.4e", i >= fit_begin ? "*" : " ", steps[i], errors[i]);
            if (i > 0) r += detail::format("   %.4f", pairwise_slopes[i - 1]);
            r += "\n";
        }
        for (const std::string& w : warnings) r += "  warning: " + w + "\n";
        return r;
    }
};

namespace detail {

inline void check_ladder(const std::vector<int>& steps) {
    require(steps.size() >= 3, "steps.size()", steps.size(), ">= 3 step counts (a slope and its error need 3 points)");
    for (std::size_t i = 0; i < steps.size(); ++i) {
        require(steps[i] >= 1, "steps[" + std::to_string(i) + "]", steps[i], ">= 1");
        if (i > 0 && steps[i] <= steps[i - 1])
            fail_argument("steps[" + std::to_string(i) + "]", steps[i],
                          "> steps[" + std::to_string(i - 1) + "] = " + std::to_string(steps[i - 1]) +
                              " (strictly increasing step counts)");
    }
}

inline void check_error_value(double e, int n, std::size_t i) {
    if (e == 0.0)
        fail_argument("errors[" + std::to_string(i) + "] (N = " + std::to_string(n) + ")", e,
                      "a finite number > 0; an error of exactly 0 means the method is exact here and has "
                      "no convergence order to measure");
    require(std::isfinite(e) && e > 0.0, "errors[" + std::to_string(i) + "] (N = " + std::to_string(n) + ")", e,
            "a finite number > 0");
}

inline void check_options(const convergence_options& o, std::size_t n) {
    require(std::isfinite(o.expected_order) && o.expected_order > 0.0, "options.expected_order", o.expected_order,
            "a finite number > 0 (set convergence_options::expected_order)");
    require_positive(o.tolerance, "options.tolerance");
    require_open(o.confidence, 0.0, 1.0, "options.confidence");
    require(o.fit_last == 0 || (o.fit_last >= 3 && o.fit_last <= n), "options.fit_last", o.fit_last,
            "0 (all points) or in [3, " + std::to_string(n) + "] (the ladder has " + std::to_string(n) + " points)");
    require_nonnegative(o.error_floor, "options.error_floor");
}

}  // namespace detail

/// The least-squares order of measured errors: steps strictly increasing (>= 1), errors finite
/// and > 0, same length >= 3.
inline convergence_result fit_convergence_order(const std::vector<int>& steps, const std::vector<double>& errors,
                                                const convergence_options& options) {
    detail::check_ladder(steps);
    require(errors.size() == steps.size(), "errors.size()", errors.size(),
            "steps.size() = " + std::to_string(steps.size()));
    detail::check_options(options, steps.size());
    for (std::size_t i = 0; i < errors.size(); ++i) detail::check_error_value(errors[i], steps[i], i);

    convergence_result r;
    r.name = options.name;
    r.steps = steps;
    r.errors = errors;
    r.expected_order = options.expected_order;
    r.tolerance = options.tolerance;
    r.confidence = options.confidence;
    r.error_floor = options.error_floor;
    const std::size_t n = steps.size();
    for (std::size_t i = 0; i + 1 < n; ++i)
        r.pairwise_slopes.push_back(std::log(errors[i] / errors[i + 1]) /
                                    std::log(static_cast<double>(steps[i + 1]) / steps[i]));
    r.fit_points = options.fit_last == 0 ? n : options.fit_last;
    r.fit_begin = n - r.fit_points;

    // Least squares of y = log err on x = log(1/N), centred sums.
    const double k = static_cast<double>(r.fit_points);
    double mx = 0.0, my = 0.0;
    for (std::size_t i = r.fit_begin; i < n; ++i) {
        mx += -std::log(static_cast<double>(steps[i]));
        my += std::log(errors[i]);
    }
    mx /= k;
    my /= k;
    double sxx = 0.0, sxy = 0.0;
    for (std::size_t i = r.fit_begin; i < n; ++i) {
        const double dx = -std::log(static_cast<double>(steps[i])) - mx;
        sxx += dx * dx;
        sxy += dx * (std::log(errors[i]) - my);
    }
    r.slope = sxy / sxx;
    const double intercept = my - r.slope * mx;
    r.constant = std::exp(intercept);
    double ssr = 0.0;
    for (std::size_t i = r.fit_begin; i < n; ++i) {
        const double res = std::log(errors[i]) - (intercept - r.slope * std::log(static_cast<double>(steps[i])));
        ssr += res * res;
    }
    const double dof = k - 2.0;
    r.standard_error = std::sqrt(ssr / dof / sxx);
    r.t_quantile = student_t_upper_quantile(0.5 * (1.0 - options.confidence), dof);
    r.ci_low = r.slope - r.t_quantile * r.standard_error;
    r.ci_high = r.slope + r.t_quantile * r.standard_error;
    r.passed = std::abs(r.slope - options.expected_order) <= options.tolerance;

    // Warnings.
    if (r.error_floor > 0.0) {
        for (std::size_t i = 0; i < n; ++i)
            if (errors[i] < r.error_floor)
                r.warnings.push_back(detail::format(
                    "N = %d: error %.3e is below the round-off floor %.3e; the slope there measures rounding, "
                    "not the method (use fewer steps, or double precision)",
                    steps[i], errors[i], r.error_floor));
    }
    const double last = r.pairwise_slopes.back();
    if (last < 0.5 * options.expected_order) {
        r.warnings.push_back(detail::format(
            "the errors flatten at the fine end (pairwise order %.3f from N = %d to %d, expected %g): a round-off "
            "floor, or an error term that does not vanish with the step size (a biased endpoint or final step)",
            last, steps[n - 2], steps[n - 1], options.expected_order));
    } else if (std::abs(last - options.expected_order) > options.tolerance) {
        r.warnings.push_back(detail::format(
            "the last pairwise order %.3f (N = %d to %d) is more than %g from %g: the ladder may still be "
            "pre-asymptotic (use finer steps, a logSNR-uniform grid, or fit_last to drop the coarsest N)",
            last, steps[n - 2], steps[n - 1], options.tolerance, options.expected_order));
    }
    return r;
}

/// The error form: run(N) returns the sampler's error at N steps.
template <class Run>
    requires(std::invocable<Run&, int> && std::convertible_to<std::invoke_result_t<Run&, int>, double>)
convergence_result convergence_order(Run&& run, const std::vector<int>& steps, const convergence_options& options) {
    detail::check_ladder(steps);
    detail::check_options(options, steps.size());
    std::vector<double> errors;
    errors.reserve(steps.size());
    for (std::size_t i = 0; i < steps.size(); ++i) {
        errors.push_back(static_cast<double>(run(steps[i])));
        detail::check_error_value(errors.back(), steps[i], i);
    }
    return fit_convergence_order(steps, errors, options);
}

/// max_i |a_i − b_i| of two tensors of the same shape (any memory space; NaN if any element is NaN).
template <class T, class S>
double max_abs_error(tensor_view<const T, S> a, std::type_identity_t<tensor_view<const T, S>> b) {
    require_same_shape(a.shape(), "a", b.shape(), "b");
    if constexpr (std::is_same_v<S, host_space>) {
        double m = 0.0;
        for (std::int64_t i = 0; i < a.numel(); ++i) {
            const double d = std::abs(static_cast<double>(a[i]) - static_cast<double>(b[i]));
            if (std::isnan(d)) return d;  // NaN is never silently ignored
            if (d > m) m = d;
        }
        return m;
    } else {
        tensor<T, S> d(a.shape());
        lincomb(d.view(), 1.0, a, -1.0, b);
        return max_abs(d.cview());
    }
}

/// √(mean_i (a_i − b_i)²) of two tensors of the same shape (any memory space).
template <class T, class S>
double rms_error(tensor_view<const T, S> a, std::type_identity_t<tensor_view<const T, S>> b) {
    require_same_shape(a.shape(), "a", b.shape(), "b");
    if (a.empty()) return 0.0;
    if constexpr (std::is_same_v<S, host_space>) {
        double s = 0.0;
        for (std::int64_t i = 0; i < a.numel(); ++i) {
            const double d = static_cast<double>(a[i]) - static_cast<double>(b[i]);
            s += d * d;
        }
        return std::sqrt(s / static_cast<double>(a.numel()));
    } else {
        tensor<T, S> d(a.shape());
        lincomb(d.view(), 1.0, a, -1.0, b);
        return std::sqrt(sum_squares(d.cview()) / static_cast<double>(a.numel()));
    }
}

/// The endpoint form: run(N, out) writes the sampler's endpoint at N steps into out (shape of
/// reference, uninitialised on entry); the error is options.norm of out − reference. Unless
/// options.error_floor is set, the round-off floor is 1e3·u·max|reference|, u = ε(T)/2.
template <class Run, class T, class S>
    requires std::invocable<Run&, int, tensor_view<T, S>>
convergence_result convergence_order(Run&& run, const std::vector<int>& steps, tensor_view<const T, S> reference,
                                     convergence_options options) {
    static_assert(std::is_floating_point_v<T>, "convergence_order: the endpoint must be float or double");
    detail::check_ladder(steps);
    detail::check_options(options, steps.size());
    const double ref_max = max_abs(reference);
    require_finite(ref_max, "max |reference|");
    if (options.error_floor == 0.0)
        options.error_floor = 1e3 * 0.5 * static_cast<double>(std::numeric_limits<T>::epsilon()) * ref_max;
    tensor<T, S> out(reference.shape());
    std::vector<double> errors;
    errors.reserve(steps.size());
    for (std::size_t i = 0; i < steps.size(); ++i) {
        run(steps[i], out.view());
        errors.push_back(options.norm == error_norm::rms ? rms_error(out.cview(), reference)
                                                          : max_abs_error(out.cview(), reference));
        detail::check_error_value(errors.back(), steps[i], i);
    }
    return fit_convergence_order(steps, errors, options);
}

/// The endpoint form with an owning reference tensor.
template <class Run, class T, class S>
    requires std::invocable<Run&, int, tensor_view<T, S>>
convergence_result convergence_order(Run&& run, const std::vector<int>& steps, const tensor<T, S>& reference,
                                     const convergence_options& options) {
    return convergence_order(std::forward<Run>(run), steps, reference.cview(), options);
}

}  // namespace diffuse::testing
