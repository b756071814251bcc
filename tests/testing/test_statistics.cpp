// testing/statistics.hpp: normal, Student t and χ² distribution and quantile functions against
// table values (computed with mpmath at 30–40 digits: betainc / gammainc / erfinv, bisection to
// 1e-28; the t and χ² 0.975 rows are the classic printed tables' values), closed forms, and
// round trips CDF(quantile(p)) = p.
#include <diffuse/testing/statistics.hpp>

#include "support/check.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <numbers>
#include <vector>

using namespace diffuse;
using namespace diffuse::testing;

TEST_CASE("normal quantile matches table values and inverts the CDF in both tails") {
    // Acklam + one Halley step: ~1e-15 relative; 1e-14 relative is asserted.
    DIFFUSE_CHECK_CLOSE(normal_quantile(0.975), 1.9599639845400539, 0.0, 1e-14);
    DIFFUSE_CHECK_CLOSE(normal_upper_quantile(5e-7), 4.8916384756985904, 0.0, 1e-14);   // closed_forms F2, α = 1e-6
    DIFFUSE_CHECK_CLOSE(normal_upper_quantile(5e-10), 6.1094102048693971, 0.0, 1e-14);  // α = 1e-9
    DIFFUSE_CHECK_CLOSE(normal_upper_quantile(1e-6 / 18), 5.3075457693266415, 0.0, 1e-14);
    CHECK(normal_quantile(0.5) == 0.0);
    CHECK(std::isinf(normal_quantile(0.0)));
    CHECK(normal_quantile(1.0) > 0.0);
    // Round trip in the lower tail, where Φ = ½erfc(−x/√2) has full relative precision.
    for (double p = 1e-300; p < 0.5; p *= 7.3) {
        const double x = normal_quantile(p);
        // Rounding x to double (relative 1.1e-16) moves Φ(x) by x²·1.1e-16 relative (d log Φ/dx ≈ |x|
        // in the tail): allow about ten such units plus erfc's own error.
        DIFFUSE_CHECK_CLOSE(normal_cdf(x), p, 0.0, 1e-15 * (1.0 + x * x) + 1e-14);
        // The upper half by symmetry: 1 − p rounds to a multiple of 2^-53, a relative change of
        // <= 1.1e-16/p in the tail probability, hence <= 1.1e-16/(p·x²) in x; asserted for p >= 1e-6.
        if (p >= 1e-6) DIFFUSE_CHECK_CLOSE(normal_quantile(1.0 - p), -x, 1e-15, 1e-9);
        DIFFUSE_CHECK_CLOSE(normal_upper_quantile(p), -x, 0.0, 0.0);  // the upper form takes the tail directly
    }
    DIFFUSE_CHECK_ERROR(normal_quantile(1.5), "p", "[0, 1]");
    DIFFUSE_CHECK_ERROR(normal_upper_quantile(-0.1), "q");
}

TEST_CASE("regularized incomplete beta equals its closed forms") {
    for (double x : {0.0, 1e-8, 0.1, 0.37, 0.5, 0.9, 0.999, 1.0}) {
        DIFFUSE_CHECK_CLOSE(regularized_incomplete_beta(1.0, 1.0, x), x, 1e-15, 1e-14);
        DIFFUSE_CHECK_CLOSE(regularized_incomplete_beta(3.5, 1.0, x), std::pow(x, 3.5), 1e-15, 1e-13);
        DIFFUSE_CHECK_CLOSE(regularized_incomplete_beta(1.0, 2.5, x), 1.0 - std::pow(1.0 - x, 2.5), 1e-15, 1e-13);
        // I_x(a, b) = 1 − I_{1−x}(b, a).
        DIFFUSE_CHECK_CLOSE(regularized_incomplete_beta(2.5, 7.0, x), 1.0 - regularized_incomplete_beta(7.0, 2.5, 1.0 - x),
                            1e-14, 0.0);
    }
    DIFFUSE_CHECK_ERROR(regularized_incomplete_beta(0.0, 1.0, 0.5), "a");
    DIFFUSE_CHECK_ERROR(regularized_incomplete_beta(1.0, 1.0, 1.5), "x", "[0, 1]");
}

TEST_CASE("student t CDF equals the closed forms for 1 and 2 degrees of freedom") {
    for (double t : {-30.0, -2.0, -0.1, 0.0, 0.3, 1.0, 4.0, 100.0}) {
        DIFFUSE_CHECK_CLOSE(student_t_cdf(t, 1.0), 0.5 + std::atan(t) / std::numbers::pi, 1e-15, 1e-13);
        DIFFUSE_CHECK_CLOSE(student_t_cdf(t, 2.0), 0.5 + t / (2.0 * std::sqrt(2.0 + t * t)), 1e-15, 1e-13);
        DIFFUSE_CHECK_CLOSE(student_t_cdf(t, INFINITY), normal_cdf(t), 0.0, 1e-15);
    }
}

TEST_CASE("student t tails keep their relative precision for large and small degrees of freedom") {
    // mpmath betainc at 30 digits. For t² << ν the tail is ½I_x(ν/2, ½) with x = ν/(ν + t²) near 1;
    // forming 1 − x by subtraction would cost ~1e-16/tail relative (7e-8 at ν = 1e4, t = 6.368).
    struct row {
        double nu, t, tail;
    };
    for (const row& r : {row{1e4, 6.368, 9.9961934255659549e-11}, row{1e6, 5.0, 2.8669989354453708e-7},
                         row{0.7, 1e6, 1.9611984380372085e-5}, row{3.0, 2225.7692846830942, 9.9999999999999868e-11}})
        DIFFUSE_CHECK_CLOSE(student_t_cdf(-r.t, r.nu), r.tail, 0.0, 1e-11);  // ~1e-13 measured; CF and lgamma rounding
}

TEST_CASE("student t quantiles match table values to 1e-9") {
    struct row {
        double p, nu, t;
    };
    // mpmath, 30 digits (first column: the printed 97.5% table).
    const std::vector<row> table = {
        {0.975, 1, 12.7062047361747},   {0.975, 2, 4.30265272974946},    {0.975, 3, 3.18244630528371},
        {0.975, 4, 2.77644510519779},   {0.975, 5, 2.57058183563631},    {0.975, 10, 2.22813885198627},
        {0.975, 30, 2.04227245630124},  {0.975, 100, 1.98397151852355},  {0.995, 1, 63.6567411628715},
        {0.995, 2, 9.92484320091829},   {0.995, 3, 5.84090930973336},    {0.995, 4, 4.60409487134999},
        {0.995, 5, 4.03214298355523},   {0.995, 10, 3.16927267261695},   {0.995, 30, 2.74999565356722},
        {0.995, 100, 2.62589052143802}, {0.9995, 1, 636.61924876879},    {0.9995, 2, 31.5990545764454},
        {0.9995, 3, 12.923978636688},   {0.9995, 4, 8.61030158137952},   {0.9995, 5, 6.86882662588128},
        {0.9995, 10, 4.58689385870271}, {0.9995, 30, 3.64595863504206},  {0.9995, 100, 3.39049131116426}};
    for (const row& r : table) {
        // 1e-9 relative: the table has 15 digits; the solver stops at 1e-13 relative, and the
        // quantile of p given in double (p = 0.9995 is inexact) moves t by ~1e-16/f(t) relative.
        DIFFUSE_CHECK_CLOSE(student_t_quantile(r.p, r.nu), r.t, 0.0, 1e-9);
        DIFFUSE_CHECK_CLOSE(student_t_upper_quantile(1.0 - r.p, r.nu), r.t, 0.0, 1e-9);
        DIFFUSE_CHECK_CLOSE(student_t_quantile(1.0 - r.p, r.nu), -r.t, 0.0, 1e-9);
    }
    // Round trips, including fractional ν and deep tails.
    for (double nu : {0.7, 1.5, 3.0, 7.25, 50.0, 1e4})
        for (double q : {0.4, 0.1, 1e-3, 1e-6, 1e-10}) {
            const double t = student_t_upper_quantile(q, nu);
            DIFFUSE_CHECK_CLOSE(student_t_cdf(-t, nu), q, 0.0, 1e-11);
        }
    CHECK(student_t_quantile(0.5, 3.0) == 0.0);
    DIFFUSE_CHECK_CLOSE(student_t_quantile(0.975, INFINITY), 1.9599639845400539, 0.0, 1e-14);
    DIFFUSE_CHECK_ERROR(student_t_quantile(0.975, 0.0), "nu", "degrees of freedom");
    DIFFUSE_CHECK_ERROR(student_t_quantile(1.0, 3.0), "p", "(0, 1)");
    DIFFUSE_CHECK_ERROR(student_t_cdf(NAN, 3.0), "t");
}

TEST_CASE("chi-square quantiles match table values and the closed form for 2 degrees of freedom") {
    struct row {
        double p, k, x;
        bool upper;  // p is the upper tail
    };
    const std::vector<row> table = {
        {0.025, 1, 0.000982069117175256, false}, {0.025, 10, 3.24697278023684, false},
        {0.025, 100, 74.2219274749237, false},   {0.025, 9999, 9723.73223701499, false},
        {0.025, 1, 5.02388618731489, true},      {0.025, 10, 20.4831773508074, true},
        {0.025, 100, 129.561197185837, true},    {0.025, 9999, 10278.0563202569, true},
        {5e-8, 10, 0.183353305534079, false},    {5e-8, 100, 41.8849876767347, false},
        {5e-8, 9999, 9263.88372515251, false},   {5e-8, 1, 29.7167854897631, true},
        {5e-8, 10, 53.930056932072, true},       {5e-8, 100, 194.357660687273, true},
        {5e-8, 9999, 10770.6123586539, true},    {1e-6 / 18, 1999, 0.84107790268338576 * 1999, false},
        {1e-6 / 18, 1999, 1.1770381885612187 * 1999, true},
        {1e-6 / 18, 19999, 0.94782577553325659 * 19999, false},
        {1e-6 / 18, 19999, 1.053985587916409 * 19999, true}};
    for (const row& r : table) {
        const double x = r.upper ? chi_square_upper_quantile(r.p, r.k) : chi_square_quantile(r.p, r.k);
        // 1e-9 relative: 15-digit table; P and Q are accurate to ~1e-13 relative here.
        DIFFUSE_CHECK_CLOSE(x, r.x, 0.0, 1e-9);
    }
    // k = 2: F(x) = 1 − exp(−x/2), so x_p = −2 log(1 − p); deep lower tail x ≈ 2p.
    for (double p : {1e-12, 1e-5, 0.025, 0.5, 0.9, 0.999}) {
        DIFFUSE_CHECK_CLOSE(chi_square_quantile(p, 2.0), -2.0 * std::log1p(-p), 0.0, 1e-11);
        DIFFUSE_CHECK_CLOSE(chi_square_cdf(-2.0 * std::log1p(-p), 2.0), p, 0.0, 1e-12);
        DIFFUSE_CHECK_CLOSE(chi_square_upper_quantile(p, 2.0), -2.0 * std::log(p), 0.0, 1e-11);
    }
    // k = 1: P(χ²_1 <= x) = P(|Z| <= √x), so the p-quantile is z² with z = Φ⁻¹(½ + p/2) ≈ p·√(π/2) for small p.
    const double x1 = chi_square_quantile(5e-8, 1.0);
    DIFFUSE_CHECK_CLOSE(x1, std::pow(5e-8 * std::sqrt(std::numbers::pi / 2.0), 2.0), 0.0, 1e-7);
    for (double k : {0.5, 1.0, 3.0, 40.0, 1e5})
        for (double q : {0.3, 1e-3, 1e-9}) {
            DIFFUSE_CHECK_CLOSE(chi_square_upper_tail(chi_square_upper_quantile(q, k), k), q, 0.0, 1e-10);
            DIFFUSE_CHECK_CLOSE(chi_square_cdf(chi_square_quantile(q, k), k), q, 0.0, 1e-10);
        }
    DIFFUSE_CHECK_ERROR(chi_square_quantile(0.5, -1.0), "k");
    DIFFUSE_CHECK_ERROR(chi_square_upper_quantile(0.0, 3.0), "q", "(0, 1)");
}

// The umbrella header brings the whole kit (what docs/testing-your-sampler.md includes).
#include <diffuse/testing/testing.hpp>

TEST_CASE("testing.hpp brings convergence_order, moment_test and reference_trajectory") {
    const auto r = diffuse::testing::fit_convergence_order({10, 20, 40, 80}, {1.0, 0.25, 0.0625, 0.015625},
                                                           diffuse::testing::convergence_options{.expected_order = 2.0});
    CHECK(r.passed);
    DIFFUSE_CHECK_CLOSE(r.slope, 2.0, 1e-12, 0.0);  // an exact power law N^-2
    diffuse::testing::reference_trajectory<double> traj;
    CHECK(traj.size() == 0);
    static_assert(sizeof(diffuse::testing::moment_options) > 0);
}
