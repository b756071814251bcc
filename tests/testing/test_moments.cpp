// testing/moments.hpp: moment_test passes on exact samples and fails on samples with a mean,
// variance or covariance defect of a size derived from its own bound; its bounds equal the
// closed forms (Bonferroni z*, exact χ² interval, closed_forms F3's power table); Eigen,
// tensor and float inputs agree; mixture_weight_test passes on exact mixture samples (even with
// overlapping components) and fails on wrong weights; the Bernstein bound inverts exactly.
#include <diffuse/testing/moments.hpp>

#include <diffuse/analytic/gaussian.hpp>
#include <diffuse/analytic/gaussian_mixture.hpp>
#include <diffuse/core/philox.hpp>
#include <diffuse/core/tensor.hpp>

#include "samplers/fixtures.hpp"
#include "support/check.hpp"

#include <doctest/doctest.h>

#include <Eigen/Dense>

#include <cmath>
#include <string>
#include <vector>

using namespace diffuse;
using namespace diffuse::testing;
using diffuse::test::gaussian3;

namespace {

constexpr Eigen::Index n_samples = 20000;

Eigen::MatrixXd exact_samples(const analytic::gaussian& g, std::uint64_t seed, Eigen::Index n = n_samples) {
    philox_rng rng(seed);
    return g.sample(n, rng);
}

bool contains(const std::string& s, const std::string& frag) { return s.find(frag) != std::string::npos; }

}  // namespace

TEST_CASE("moment test bounds are the Bonferroni normal and exact chi-square quantiles") {
    const auto g = gaussian3();
    const auto r = moment_test(exact_samples(g, 1), g);
    // d = 3: 3 means + 3 variances + 3 covariances = 9 comparisons at 1e-6/9 each.
    CHECK(r.comparisons == 9);
    CHECK(r.n == n_samples);
    // mpmath (test_statistics.cpp): Φ⁻¹(1 − 1e-6/18) and χ²_{19999} quantiles at 1e-6/18 over 19999.
    DIFFUSE_CHECK_CLOSE(r.z_bound, 5.3075457693266415, 0.0, 1e-13);
    DIFFUSE_CHECK_CLOSE(r.variance_ratio_low, 0.94782577553325659, 0.0, 1e-9);
    DIFFUSE_CHECK_CLOSE(r.variance_ratio_high, 1.053985587916409, 0.0, 1e-9);
    DIFFUSE_CHECK_CLOSE(r.detectable_mean_shift, 5.3075457693266415 / std::sqrt(20000.0), 0.0, 1e-13);
    const auto nc = moment_test(exact_samples(g, 1), g, {.covariance = false});
    CHECK(nc.comparisons == 6);
    CHECK(nc.covariance_z.size() == 0);
    DIFFUSE_CHECK_CLOSE(nc.z_bound, 5.2331264178736934, 0.0, 1e-13);  // Φ⁻¹(1 − 1e-6/12)
}

TEST_CASE("moment test reproduces the detectable effects of closed_forms F3") {
    // One coordinate, per-comparison α = 1e-6 (α = 2e-6 over 2 comparisons): z* = 4.8916 and, at
    // n = 1e5, the 50%-power mean shift 0.0155 sd and variance error 2.2% of the F3 table.
    const auto g = analytic::gaussian::isotropic(Eigen::VectorXd::Zero(1), 1.0);
    const auto r = moment_test(exact_samples(g, 3, 100000), g, {.false_alarm = 2e-6});
    DIFFUSE_CHECK_CLOSE(r.z_bound, 4.8916384756985904, 0.0, 1e-13);
    DIFFUSE_CHECK_CLOSE(r.detectable_mean_shift, 0.0155, 5e-5, 0.0);  // table's 3 digits
    DIFFUSE_CHECK_CLOSE(1.0 - r.variance_ratio_low, 0.022, 5e-4, 0.0);
    DIFFUSE_CHECK_CLOSE(r.variance_ratio_high - 1.0, 0.022, 5e-4, 0.0);
    CHECK(r.passed);
}

TEST_CASE("moment test passes on exact samples and reports z-scores") {
    const auto g = gaussian3();
    for (std::uint64_t seed : {1u, 2u, 3u}) {
        const Eigen::MatrixXd x = exact_samples(g, seed);
        const auto r = moment_test(x, g);
        MESSAGE(r.report());
        CHECK(r.passed);
        CHECK(r.mean_passed);
        CHECK(r.variance_passed);
        CHECK(r.covariance_passed);
        // The statistics, independently: z_j = √n (x̄_j − μ_j)/σ_j, ratio = S_jj/Σ_jj.
        const Eigen::VectorXd mean = x.colwise().mean().transpose();
        const Eigen::MatrixXd c = x.rowwise() - mean.transpose();
        const Eigen::MatrixXd s = c.transpose() * c / (n_samples - 1.0);
        for (Eigen::Index j = 0; j < 3; ++j) {
            // Two-pass sums of 2e4 terms in a different order: 1e-12 relative.
            DIFFUSE_CHECK_CLOSE(r.mean_z(j), std::sqrt(double(n_samples)) * (mean(j) - g.mean()(j)) / std::sqrt(g.cov()(j, j)),
                                1e-10, 1e-10);
            DIFFUSE_CHECK_CLOSE(r.variance_ratio(j), s(j, j) / g.cov()(j, j), 0.0, 1e-12);
            DIFFUSE_CHECK_CLOSE(r.variance_z(j), (s(j, j) / g.cov()(j, j) - 1.0) / std::sqrt(2.0 / (n_samples - 1.0)),
                                1e-9, 1e-9);
        }
        CHECK(contains(r.report(), "moment test: PASSED"));
    }
}

TEST_CASE("moment test fails on a mean shift of twice its bound") {
    const auto g = gaussian3();
    Eigen::MatrixXd x = exact_samples(g, 1);
    const auto base = moment_test(x, g);
    REQUIRE(base.passed);
    // Shifting coordinate 1 by δ = 2 z* σ_1/√n adds exactly 2 z* to its z-score; since the exact
    // samples have |z| <= z*, the shifted |z| >= z* > bound whatever the seed. Variances and
    // covariances are about the sample mean and do not move.
    const double delta = 2.0 * base.z_bound * std::sqrt(g.cov()(1, 1) / n_samples);
    x.col(1).array() += delta;
    const auto r = moment_test(x, g);
    MESSAGE(r.report());
    CHECK_FALSE(r.passed);
    CHECK_FALSE(r.mean_passed);
    CHECK(r.variance_passed);
    CHECK(r.covariance_passed);
    DIFFUSE_CHECK_CLOSE(r.mean_z(1), base.mean_z(1) + 2.0 * base.z_bound, 1e-9, 0.0);
    CHECK(contains(r.worst, "mean z of coordinate 1"));
    CHECK(contains(r.report(), "FAILED"));
    // Half the bound in z is not detected (|z| <= |z_0| + z*/2 < z* when |z_0| < z*/2, true here).
    REQUIRE(std::abs(base.mean_z(1)) < 0.5 * base.z_bound);
    Eigen::MatrixXd y = exact_samples(g, 1);
    y.col(1).array() += 0.25 * delta;  // z*/2 in z
    CHECK(moment_test(y, g).passed);
}

TEST_CASE("moment test fails on a variance scaled past its chi-square interval") {
    const auto g = gaussian3();
    Eigen::MatrixXd x = exact_samples(g, 2);
    const auto base = moment_test(x, g, {.covariance = false});
    REQUIRE(base.passed);
    // Scaling the deviations of coordinate 2 about the sample mean by √f multiplies its variance
    // ratio by f and leaves x̄ (so the mean z) unchanged; with f = hi/lo·1.001 any ratio >= lo
    // becomes > hi.
    const double f = base.variance_ratio_high / base.variance_ratio_low * 1.001;
    const double m = x.col(2).mean();
    x.col(2) = ((x.col(2).array() - m) * std::sqrt(f) + m).matrix();
    const auto r = moment_test(x, g, {.covariance = false});
    MESSAGE(r.report());
    CHECK_FALSE(r.passed);
    CHECK(r.mean_passed);
    CHECK_FALSE(r.variance_passed);
    DIFFUSE_CHECK_CLOSE(r.variance_ratio(2), base.variance_ratio(2) * f, 0.0, 1e-12);
    CHECK(contains(r.worst, "variance ratio of coordinate 2"));
    // An under-dispersed sampler (DDIM's c_i < √(v_{i+1}/v_i), closed_forms C6) fails the same way.
    Eigen::MatrixXd y = exact_samples(g, 2);
    y.col(0) = ((y.col(0).array() - y.col(0).mean()) / std::sqrt(f) + y.col(0).mean()).matrix();
    CHECK_FALSE(moment_test(y, g, {.covariance = false}).variance_passed);
}

TEST_CASE("moment test fails on a wrong correlation with exact marginal variances") {
    // Samples of Σ' = Σ except Σ'_01 = Σ_01 + 0.1·√(Σ_00 Σ_11): the covariance z is about
    // 0.1·√n/√(1 + ρ²) ≈ 13 standard errors, against a bound of 5.31; the diagonal is exact.
    const auto g = gaussian3();
    Eigen::MatrixXd cov = g.cov();
    cov(0, 1) = cov(1, 0) = cov(0, 1) + 0.1 * std::sqrt(cov(0, 0) * cov(1, 1));
    const analytic::gaussian wrong(g.mean(), cov);
    const auto r = moment_test(exact_samples(wrong, 4), g);
    MESSAGE(r.report());
    CHECK_FALSE(r.passed);
    CHECK(r.mean_passed);
    CHECK(r.variance_passed);
    CHECK_FALSE(r.covariance_passed);
    CHECK(r.covariance_z(0, 1) > r.z_bound);
    CHECK(r.covariance_z(1, 0) == r.covariance_z(0, 1));
    CHECK(contains(r.worst, "covariance z of coordinates (0, 1)"));
    // Without the covariance comparisons the defect is invisible.
    CHECK(moment_test(exact_samples(wrong, 4), g, {.covariance = false}).passed);
}

TEST_CASE("moment test takes Eigen matrices, tensors of any rank, float, and an explicit mean and covariance") {
    const auto g = gaussian3();
    const Eigen::MatrixXd x = exact_samples(g, 5);
    const auto ref = moment_test(x, g);
    tensor<double, host_space> t(shape{n_samples, 1, 3});  // trailing dimensions flattened to d = 3
    as_eigen_matrix(t.view(), n_samples, 3) = x;
    const auto rt = moment_test(t, g);
    const auto rv = moment_test(t.view(), g);
    const auto rm = moment_test(x, g.mean(), g.cov());
    for (Eigen::Index j = 0; j < 3; ++j) {
        CHECK(rt.mean_z(j) == ref.mean_z(j));
        CHECK(rv.variance_z(j) == ref.variance_z(j));
        CHECK(rm.mean_z(j) == ref.mean_z(j));
    }
    tensor<float, host_space> tf(shape{n_samples, 3});
    for (Eigen::Index i = 0; i < n_samples; ++i)
        for (Eigen::Index j = 0; j < 3; ++j) tf(i, j) = static_cast<float>(x(i, j));
    const auto rf = moment_test(tf, g);
    // Rounding the samples to float moves each z by ~√n·6e-8·|x|/σ ≈ 1e-5.
    for (Eigen::Index j = 0; j < 3; ++j) DIFFUSE_CHECK_CLOSE(rf.mean_z(j), ref.mean_z(j), 1e-4, 0.0);
    CHECK(rf.passed);
}

TEST_CASE("moment test rejects bad samples and options") {
    const auto g = gaussian3();
    Eigen::MatrixXd x = exact_samples(g, 6, 10);
    DIFFUSE_CHECK_ERROR(moment_test(Eigen::MatrixXd(x.topRows(1)), g), "number of samples", ">= 2");
    DIFFUSE_CHECK_ERROR(moment_test(Eigen::MatrixXd(x.leftCols(2)), g), "dimension 2", "the target has 3");
    x(4, 2) = NAN;
    DIFFUSE_CHECK_ERROR(moment_test(x, g), "sample 4, coordinate 2", "finite");
    x(4, 2) = 0.0;
    DIFFUSE_CHECK_ERROR(moment_test(x, g, {.false_alarm = 0.0}), "false_alarm", "(0, 1)");
    DIFFUSE_CHECK_ERROR(moment_test(x, g, {.false_alarm = 1.0}), "false_alarm");
    Eigen::MatrixXd not_spd = Eigen::MatrixXd::Identity(3, 3);
    not_spd(2, 2) = -1.0;
    DIFFUSE_CHECK_ERROR(moment_test(x, g.mean(), not_spd), "cov");
    tensor<double, host_space> scalar(shape{}, 1.0);
    DIFFUSE_CHECK_ERROR(moment_test(scalar, g), "rank");
}

namespace {

analytic::gaussian_mixture mixture3(std::vector<double> w, double separation) {
    std::vector<Eigen::VectorXd> means(3, Eigen::VectorXd(2));
    means[0] << 0.0, 0.0;
    means[1] << separation, 0.0;
    means[2] << 0.0, separation;
    Eigen::MatrixXd c(2, 2);
    c << 1.0, 0.3, 0.3, 0.5;
    return analytic::gaussian_mixture(std::move(w), means, {c, Eigen::MatrixXd::Identity(2, 2), 0.5 * c}, {0, 1, 1});
}

}  // namespace

TEST_CASE("mixture weight test passes on exact samples, even for overlapping components") {
    for (double sep : {6.0, 1.0}) {  // well separated, and overlapping (posteriors far from 0/1)
        const auto mix = mixture3({0.2, 0.5, 0.3}, sep);
        philox_rng rng(11);
        const analytic::mixture_sample s = mix.sample(n_samples, rng);
        const auto r = mixture_weight_test(s.x, mix);
        MESSAGE(r.report());
        CHECK(r.passed);
        CHECK(r.target_weights.size() == 3);
        DIFFUSE_CHECK_CLOSE(r.target_weights[1], 0.5, 0.0, 1e-15);
        for (std::size_t k = 0; k < 3; ++k) CHECK(std::abs(r.sample_weights[k] - r.target_weights[k]) <= r.bound[k]);
        // Classes {0}, {1, 2}: priors 0.2 and 0.8.
        const auto rc = mixture_weight_test(s.x, mix, {.group = mixture_group::classes});
        CHECK(rc.passed);
        CHECK(rc.target_weights.size() == 2);
        DIFFUSE_CHECK_CLOSE(rc.target_weights[1], 0.8, 0.0, 1e-15);
        // Soft class weights are sums of soft component weights.
        DIFFUSE_CHECK_CLOSE(rc.sample_weights[1], r.sample_weights[1] + r.sample_weights[2], 1e-12, 0.0);
    }
}

TEST_CASE("mixture weight test fails on samples with the wrong weights") {
    // Samples with weights (0.3, 0.4, 0.3) tested against (0.2, 0.5, 0.3): |Δ| = 0.1 against a
    // Bernstein half-width ≈ √(2·0.25·log(6e6)/n) ≈ 0.0197 at n = 2e4.
    const auto truth = mixture3({0.3, 0.4, 0.3}, 6.0);
    const auto claimed = mixture3({0.2, 0.5, 0.3}, 6.0);
    philox_rng rng(12);
    const auto r = mixture_weight_test(truth.sample(n_samples, rng).x, claimed);
    MESSAGE(r.report());
    CHECK_FALSE(r.passed);
    CHECK(std::abs(r.sample_weights[0] - 0.2) > r.bound[0]);
    CHECK(r.z[0] > 0.0);
    CHECK(r.z[1] < 0.0);
    CHECK(contains(r.report(), "FAILED"));
}

TEST_CASE("the Bernstein half-width inverts the Bernstein tail bound") {
    for (double p : {0.5, 0.1, 1e-3})
        for (double n : {100.0, 2e4, 1e7})
            for (double a : {1e-3, 1e-6 / 3}) {
                const double v = p * (1.0 - p), b = std::max(p, 1.0 - p);
                const double t = testing::detail::bernstein_half_width(n, v, b, a);
                // 2 exp(−n t²/(2v + 2bt/3)) = a, to the rounding of one exp/log pair.
                DIFFUSE_CHECK_CLOSE(2.0 * std::exp(-n * t * t / (2.0 * v + 2.0 * b * t / 3.0)), a, 0.0, 1e-12);
            }
}

TEST_CASE("mixture weight test takes tensors and rejects bad input") {
    const auto mix = mixture3({0.2, 0.5, 0.3}, 3.0);
    philox_rng rng(13);
    const Eigen::MatrixXd x = mix.sample(1000, rng).x;
    tensor<double, host_space> t(shape{1000, 2});
    as_eigen_matrix(t.view()) = x;
    const auto a = mixture_weight_test(x, mix);
    const auto b = mixture_weight_test(t, mix);
    for (std::size_t k = 0; k < 3; ++k) CHECK(a.sample_weights[k] == b.sample_weights[k]);
    DIFFUSE_CHECK_ERROR(mixture_weight_test(Eigen::MatrixXd(x.leftCols(1)), mix), "dimension 1");
    DIFFUSE_CHECK_ERROR(mixture_weight_test(x, mix, {.false_alarm = 2.0}), "false_alarm");
}
