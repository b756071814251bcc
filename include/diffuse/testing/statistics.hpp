#pragma once
// The distribution functions the testing kit needs, in double on the host (docs/testing-your-sampler.md §5):
//
//   normal_cdf(x), normal_quantile(p), normal_upper_quantile(q)       N(0, 1)
//   regularized_incomplete_beta(a, b, x)                              I_x(a, b)
//   student_t_cdf(t, nu), student_t_quantile(p, nu), student_t_upper_quantile(q, nu)
//   regularized_gamma_p(a, x), regularized_gamma_q(a, x)              P(a, x), Q(a, x) = 1 − P(a, x)
//   chi_square_cdf(x, k), chi_square_quantile(p, k), chi_square_upper_quantile(q, k)
//
// "upper" functions take the tail probability q = 1 − p directly, so tiny tails (q = 1e-9 /
// 2m after a Bonferroni split) keep their relative precision instead of losing it in 1 − q.
//
// Methods: Φ from std::erfc; Φ⁻¹ from Acklam's rational approximation (relative error < 1.2e-9)
// refined by one Halley step on erfc (then ~1e-15). I_x(a, b) by the continued fraction of
// Abramowitz & Stegun 26.5.8 evaluated with the modified Lentz method (Numerical Recipes §6.4);
// P and Q by their series / continued fraction (A&S 6.5.29 and 6.5.31). The quantiles solve
// CDF(x) = p by Newton's method safeguarded by bisection on a bracket, started from a
// Cornish–Fisher expansion (t) or the Wilson–Hilferty approximation (χ²), to a relative 1e-13
// in x. tests/testing/test_statistics.cpp checks them against 15-digit table values
// (mpmath at 30 digits) and the closed forms for ν = 1, 2 (t) and k = 2 (χ²).

#include <diffuse/core/error.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numbers>
#include <string>

namespace diffuse::testing {

namespace detail {

inline constexpr int stat_max_iterations = 100000;

/// Throws unless 0 < p < 1.
inline void require_probability(double p, const char* name) { require_open(p, 0.0, 1.0, name); }

/// The continued fraction of I_x(a, b) (A&S 26.5.8), modified Lentz; valid and fast for
/// x < (a + 1)/(a + b + 2).
inline double beta_continued_fraction(double a, double b, double x) {
    constexpr double tiny = 1e-300;
    const double qab = a + b, qap = a + 1.0, qam = a - 1.0;
    double c = 1.0, d = 1.0 - qab * x / qap;
    if (std::abs(d) < tiny) d = tiny;
    d = 1.0 / d;
    double h = d;
    for (int m = 1; m <= stat_max_iterations; ++m) {
        const double m2 = 2.0 * m;
        double aa = m * (b - m) * x / ((qam + m2) * (a + m2));  // even step
        d = 1.0 + aa * d;
        if (std::abs(d) < tiny) d = tiny;
        c = 1.0 + aa / c;
        if (std::abs(c) < tiny) c = tiny;
        d = 1.0 / d;
        h *= d * c;
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));  // odd step
        d = 1.0 + aa * d;
        if (std::abs(d) < tiny) d = tiny;
        c = 1.0 + aa / c;
        if (std::abs(c) < tiny) c = tiny;
        d = 1.0 / d;
        const double del = d * c;
        h *= del;
        if (std::abs(del - 1.0) < 1e-16) return h;
    }
    fail("regularized_incomplete_beta: the continued fraction did not converge for a = " + std::to_string(a) +
         ", b = " + std::to_string(b) + ", x = " + std::to_string(x));
}

/// P(a, x) by its series (A&S 6.5.29), for x < a + 1.
inline double gamma_p_series(double a, double x) {
    double sum = 1.0 / a, term = sum, ap = a;
    for (int n = 1; n <= stat_max_iterations; ++n) {
        ap += 1.0;
        term *= x / ap;
        sum += term;
        if (std::abs(term) < std::abs(sum) * 1e-17) return sum * std::exp(-x + a * std::log(x) - std::lgamma(a));
    }
    fail("regularized_gamma_p: the series did not converge for a = " + std::to_string(a) +
         ", x = " + std::to_string(x));
}

/// Q(a, x) by its continued fraction (A&S 6.5.31, modified Lentz), for x >= a + 1.
inline double gamma_q_continued_fraction(double a, double x) {
    constexpr double tiny = 1e-300;
    double b = x + 1.0 - a, c = 1.0 / tiny, d = 1.0 / b, h = d;
    for (int i = 1; i <= stat_max_iterations; ++i) {
        const double an = -i * (i - a);
        b += 2.0;
        d = an * d + b;
        if (std::abs(d) < tiny) d = tiny;
        c = b + an / c;
        if (std::abs(c) < tiny) c = tiny;
        d = 1.0 / d;
        const double del = d * c;
        h *= del;
        if (std::abs(del - 1.0) < 1e-16) return std::exp(-x + a * std::log(x) - std::lgamma(a)) * h;
    }
    fail("regularized_gamma_q: the continued fraction did not converge for a = " + std::to_string(a) +
         ", x = " + std::to_string(x));
}

/// Solves g(x) = 0 for an increasing g on [lo, hi] with g(lo) <= 0 <= g(hi): Newton steps
/// x -= g/g' when they stay inside the bracket, bisection otherwise; stops when a step or the
/// bracket is below 1e-13·|x| + 1e-15.
template <class G, class DG>
double safeguarded_newton(G&& g, DG&& dg, double lo, double hi, double x) {
    if (!(x > lo && x < hi)) x = 0.5 * (lo + hi);
    for (int it = 0; it < 400; ++it) {
        const double gx = g(x);
        if (gx == 0.0) return x;
        if (gx < 0.0) lo = x;
        else hi = x;
        const double d = dg(x);
        double next = (d > 0.0 && std::isfinite(d)) ? x - gx / d : lo - 1.0;
        if (!(next > lo && next < hi)) next = 0.5 * (lo + hi);
        const double tol = 1e-13 * std::abs(next) + 1e-15;
        if (std::abs(next - x) <= tol || hi - lo <= tol) return next;
        x = next;
    }
    return x;
}

}  // namespace detail

/// Φ(x) = P(Z <= x) for Z ~ N(0, 1), accurate in both tails (erfc of the far side).
inline double normal_cdf(double x) { return 0.5 * std::erfc(-x / std::numbers::sqrt2); }

/// Φ⁻¹(p) for p in [0, 1] (−inf at 0, +inf at 1): Acklam's approximation plus one Halley step.
inline double normal_quantile(double p) {
    require(std::isfinite(p) && p >= 0.0 && p <= 1.0, "p", p, "a probability in [0, 1]");
    if (p == 0.0) return -std::numeric_limits<double>::infinity();
    if (p == 1.0) return std::numeric_limits<double>::infinity();
    if (p > 0.5) return -normal_quantile(1.0 - p);  // symmetric; the lower tail keeps precision
    static constexpr double a[] = {-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02,
                                   1.383577518672690e+02,  -3.066479806614716e+01, 2.506628277459239e+00};
    static constexpr double b[] = {-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
                                   6.680131188771972e+01,  -1.328068155288572e+01};
    static constexpr double c[] = {-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
                                   -2.549732539343734e+00, 4.374664141464968e+00,  2.938163982698783e+00};
    static constexpr double d[] = {7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
                                   3.754408661907416e+00};
    double x;
    if (p < 0.02425) {  // lower tail
        const double q = std::sqrt(-2.0 * std::log(p));
        x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
            ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1.0);
    } else {  // central region
        const double q = p - 0.5, r = q * q;
        x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
            (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1.0);
    }
    // One Halley step on Φ(x) − p (x <= 0 here, so erfc has no cancellation).
    const double e = normal_cdf(x) - p;
    const double u = e * std::sqrt(2.0 * std::numbers::pi) * std::exp(0.5 * x * x);
    return x - u / (1.0 + 0.5 * x * u);
}

/// z with P(Z > z) = q, q in [0, 1]: the two-sided bound for a false-alarm rate α is
/// normal_upper_quantile(α/2).
inline double normal_upper_quantile(double q) {
    require(std::isfinite(q) && q >= 0.0 && q <= 1.0, "q", q, "a tail probability in [0, 1]");
    return -normal_quantile(q);
}

namespace detail {

/// log Γ(a + b) − log Γ(a). For a >= 100 by the difference of Stirling series, so that the two
/// large lgamma values (6e6 at a = 5e5) do not cancel: (a − ½)·log1p(b/a) + b·log(a + b) − b plus
/// the difference of 1/(12x) − 1/(360x³) + 1/(1260x⁵) (truncation < 1/(1680·a⁷) <= 6e-18).
inline double log_gamma_ratio(double a, double b) {
    if (a < 100.0) return std::lgamma(a + b) - std::lgamma(a);
    auto c = [](double x) {
        const double r = 1.0 / (x * x);
        return (1.0 / 12.0 - r * (1.0 / 360.0 - r / 1260.0)) / x;
    };
    return (a - 0.5) * std::log1p(b / a) + b * std::log(a + b) - b + (c(a + b) - c(a));
}

/// I_x(a, b) with x and y = 1 − x both given, so that neither loses digits near 0 or 1.
inline double incomplete_beta_xy(double a, double b, double x, double y) {
    if (x <= 0.0) return 0.0;
    if (y <= 0.0) return 1.0;
    const double log_x = x > 0.5 ? std::log1p(-y) : std::log(x);
    const double log_y = y > 0.5 ? std::log1p(-x) : std::log(y);
    // log B(a, b)⁻¹ = log Γ(a+b) − log Γ(a) − log Γ(b), the large argument paired with the sum.
    const double log_inv_beta = a >= b ? log_gamma_ratio(a, b) - std::lgamma(b) : log_gamma_ratio(b, a) - std::lgamma(a);
    const double front = std::exp(log_inv_beta + a * log_x + b * log_y);
    if (x < (a + 1.0) / (a + b + 2.0)) return front * beta_continued_fraction(a, b, x) / a;
    return 1.0 - front * beta_continued_fraction(b, a, y) / b;  // I_x(a, b) = 1 − I_y(b, a)
}

}  // namespace detail

/// I_x(a, b), the regularized incomplete beta function; a > 0, b > 0, x in [0, 1].
inline double regularized_incomplete_beta(double a, double b, double x) {
    require_positive(a, "a");
    require_positive(b, "b");
    require(std::isfinite(x) && x >= 0.0 && x <= 1.0, "x", x, "in [0, 1]");
    return detail::incomplete_beta_xy(a, b, x, 1.0 - x);
}

namespace detail {

/// P(T > t) for t >= 0: ½ I_x(ν/2, ½) with x = ν/(ν + t²) and 1 − x = t²/(ν + t²) formed
/// separately (for t² << ν, 1 − x computed as 1 − x would lose the digits of a small tail).
inline double student_t_upper_tail(double t, double nu) {
    if (std::isinf(nu)) return normal_cdf(-t);
    const double t2 = t * t;
    return 0.5 * incomplete_beta_xy(0.5 * nu, 0.5, nu / (nu + t2), t2 / (nu + t2));
}

/// The density of Student's t with ν degrees of freedom.
inline double student_t_pdf(double t, double nu) {
    if (std::isinf(nu)) return std::exp(-0.5 * t * t) / std::sqrt(2.0 * std::numbers::pi);
    const double log_c = log_gamma_ratio(0.5 * nu, 0.5) - 0.5 * std::log(nu * std::numbers::pi);
    return std::exp(log_c - 0.5 * (nu + 1.0) * std::log1p(t * t / nu));
}

inline void require_dof(double nu, const char* name) {
    require(nu > 0.0 && !std::isnan(nu), name, nu, "degrees of freedom > 0 (+inf for the normal limit)");
}

}  // namespace detail

/// P(T <= t) for Student's t with ν > 0 degrees of freedom (ν = +inf: the normal).
inline double student_t_cdf(double t, double nu) {
    detail::require_dof(nu, "nu");
    require(!std::isnan(t), "t", t, "a number");
    if (std::isinf(t)) return t > 0 ? 1.0 : 0.0;
    return t >= 0.0 ? 1.0 - detail::student_t_upper_tail(t, nu) : detail::student_t_upper_tail(-t, nu);
}

/// t with P(T > t) = q, q in (0, 1), for Student's t with ν degrees of freedom. The confidence
/// interval of level c uses student_t_upper_quantile((1 − c)/2, ν).
inline double student_t_upper_quantile(double q, double nu) {
    detail::require_probability(q, "q");
    detail::require_dof(nu, "nu");
    if (q > 0.5) return -student_t_upper_quantile(1.0 - q, nu);
    if (q == 0.5) return 0.0;
    if (std::isinf(nu)) return normal_upper_quantile(q);
    if (nu == 1.0) return std::tan(std::numbers::pi * (0.5 - q));  // Cauchy: closed form
    if (nu == 2.0) return (1.0 - 2.0 * q) / std::sqrt(2.0 * q * (1.0 - q));  // closed form
    // Cornish–Fisher expansion of t in z (A&S 26.7.5) as the starting point.
    const double z = normal_upper_quantile(q), z2 = z * z;
    const double g1 = (z2 + 1.0) * z / 4.0;
    const double g2 = ((5.0 * z2 + 16.0) * z2 + 3.0) * z / 96.0;
    const double g3 = (((3.0 * z2 + 19.0) * z2 + 17.0) * z2 - 15.0) * z / 384.0;
    const double g4 = ((((79.0 * z2 + 776.0) * z2 + 1482.0) * z2 - 1920.0) * z2 - 945.0) * z / 92160.0;
    const double start = z + g1 / nu + g2 / (nu * nu) + g3 / (nu * nu * nu) + g4 / (nu * nu * nu * nu);
    // Bracket: the upper tail decreases in t; grow hi until P(T > hi) < q.
    double hi = std::max(2.0 * z, 1.0);
    while (detail::student_t_upper_tail(hi, nu) > q) hi *= 2.0;
    return detail::safeguarded_newton([&](double t) { return q - detail::student_t_upper_tail(t, nu); },
                                      [&](double t) { return detail::student_t_pdf(t, nu); }, 0.0, hi, start);
}

/// t with P(T <= t) = p, p in (0, 1).
inline double student_t_quantile(double p, double nu) {
    detail::require_probability(p, "p");
    return p >= 0.5 ? student_t_upper_quantile(1.0 - p, nu) : -student_t_upper_quantile(p, nu);
}

/// P(a, x) = γ(a, x)/Γ(a), the regularized lower incomplete gamma function; a > 0, x >= 0.
inline double regularized_gamma_p(double a, double x) {
    require_positive(a, "a");
    require(x >= 0.0 && !std::isnan(x), "x", x, ">= 0");
    if (x == 0.0) return 0.0;
    if (std::isinf(x)) return 1.0;
    return x < a + 1.0 ? detail::gamma_p_series(a, x) : 1.0 - detail::gamma_q_continued_fraction(a, x);
}

/// Q(a, x) = 1 − P(a, x), computed directly in the upper tail.
inline double regularized_gamma_q(double a, double x) {
    require_positive(a, "a");
    require(x >= 0.0 && !std::isnan(x), "x", x, ">= 0");
    if (x == 0.0) return 1.0;
    if (std::isinf(x)) return 0.0;
    return x < a + 1.0 ? 1.0 - detail::gamma_p_series(a, x) : detail::gamma_q_continued_fraction(a, x);
}

/// P(X <= x) for X ~ χ²_k, k > 0.
inline double chi_square_cdf(double x, double k) {
    require_positive(k, "k");
    return regularized_gamma_p(0.5 * k, std::max(x, 0.0) * 0.5);
}

/// P(X > x) for X ~ χ²_k.
inline double chi_square_upper_tail(double x, double k) {
    require_positive(k, "k");
    return regularized_gamma_q(0.5 * k, std::max(x, 0.0) * 0.5);
}

namespace detail {

/// Solves F(x) = p (lower = true) or 1 − F(x) = p (lower = false) for χ²_k, in u = log x so
/// that tiny lower quantiles (k = 1, p = 1e-8 gives x ≈ 1.6e-16) converge as fast as large ones.
inline double chi_square_solve(double p, double k, bool lower) {
    const double a = 0.5 * k;
    // Wilson–Hilferty start: x ≈ k (1 − 2/(9k) + z √(2/(9k)))³.
    const double z = lower ? normal_quantile(p) : normal_upper_quantile(p);
    const double h = 2.0 / (9.0 * k);
    double start = k * std::pow(std::max(1.0 - h + z * std::sqrt(h), 1e-3), 3.0);
    // Small-x start for the lower tail: P(a, x/2) ≈ (x/2)^a / Γ(a + 1).
    if (lower && start < 1e-2 * k) start = 2.0 * std::exp((std::log(p) + std::lgamma(a + 1.0)) / a);
    auto tail = [&](double u) {  // increasing in u
        const double x = std::exp(u);
        return lower ? regularized_gamma_p(a, 0.5 * x) - p : p - regularized_gamma_q(a, 0.5 * x);
    };
    auto dtail = [&](double u) {  // d/du F(e^u) = f(x)·x, f the χ² density
        const double x = std::exp(u);
        return std::exp((a - 1.0) * std::log(0.5 * x) - 0.5 * x - std::lgamma(a)) * 0.5 * x;
    };
    double lo = std::log(start) - 1.0, hi = std::log(start) + 1.0;
    while (tail(lo) > 0.0) lo -= 2.0 * (1.0 + std::abs(lo));
    while (tail(hi) < 0.0) hi += 1.0 + 0.5 * std::abs(hi);
    return std::exp(safeguarded_newton(tail, dtail, lo, hi, std::log(start)));
}

}  // namespace detail

/// x with P(X <= x) = p for X ~ χ²_k; p in (0, 1), k > 0.
inline double chi_square_quantile(double p, double k) {
    detail::require_probability(p, "p");
    require_positive(k, "k");
    return p <= 0.5 ? detail::chi_square_solve(p, k, true) : detail::chi_square_solve(1.0 - p, k, false);
}

/// x with P(X > x) = q for X ~ χ²_k; q in (0, 1), k > 0.
inline double chi_square_upper_quantile(double q, double k) {
    detail::require_probability(q, "q");
    require_positive(k, "k");
    return q <= 0.5 ? detail::chi_square_solve(q, k, false) : detail::chi_square_solve(1.0 - q, k, true);
}

}  // namespace diffuse::testing
