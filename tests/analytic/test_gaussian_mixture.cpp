// Exact Gaussian-mixture model (include/diffuse/analytic/gaussian_mixture.hpp): score against finite
// differences, Tweedie, responsibilities and the Bayes classifier against directly computed
// normalised likelihoods, the classifier gradient, 1-D quadrature of Bayes' rule, the
// one-component case against gaussian, and argument errors (docs/exact_models.md §5–§6;
// closed_forms.md B3, B4).
#include <diffuse/analytic/gaussian_mixture.hpp>

#include "support/check.hpp"
#include "support/eigen_check.hpp"

#include <Eigen/Dense>

#include <cmath>
#include <limits>
#include <numbers>
#include <string>
#include <vector>

namespace {

using diffuse::test::check_matrices_close;
using diffuse::test::check_vectors_close;
using diffuse::test::ref_log_normal;

using diffuse::analytic::gaussian;
using diffuse::analytic::gaussian_mixture;
using Eigen::MatrixXd;
using Eigen::VectorXd;

constexpr double u = std::numeric_limits<double>::epsilon() / 2;

using diffuse::test::level;

std::vector<level> levels() { return diffuse::test::test_levels({1e-4, 0.05, 0.5, 0.95, 0.9999}); }

/// Smallest covariance eigenvalue over all components (sets the finite-difference step).
double smallest_eigenvalue(const gaussian_mixture& gm) {
    double lam_min = std::numeric_limits<double>::infinity();
    for (int k = 0; k < gm.n_components(); ++k) lam_min = std::min(lam_min, gm.component(k).cov_eigenvalues()(0));
    return lam_min;
}

MatrixXd spd(double a00, double a01, double a02, double a11, double a12, double a22) {
    MatrixXd l(3, 3);  // Cholesky-like factor, so C = L Lᵀ + 0.05 I is positive definite
    l << a00, 0, 0, a01, a11, 0, a02, a12, a22;
    return l * l.transpose() + 0.05 * MatrixXd::Identity(3, 3);
}

std::vector<VectorXd> test_means() {
    return {VectorXd{{-1.5, 0.5, 0.3}}, VectorXd{{1.2, -0.4, 0.8}}, VectorXd{{0.2, 1.5, -1.0}}};
}
std::vector<MatrixXd> test_covs() {
    return {spd(0.6, 0.2, -0.1, 0.5, 0.15, 0.4), spd(0.4, -0.3, 0.2, 0.7, -0.1, 0.3),
            spd(0.5, 0.1, 0.25, 0.3, 0.2, 0.6)};
}
// Three components, two classes: class 0 = components {0, 2}, class 1 = component {1}.
gaussian_mixture test_mixture() {
    return gaussian_mixture({0.25, 0.45, 0.3}, test_means(), test_covs(), {0, 1, 0});
}

// Points spread over the marginal at level (a, s): near each component and between them, rows [5, 3].
MatrixXd test_points(double a, double s) {
    const auto m = test_means();
    MatrixXd x(5, 3);
    x.row(0) = (a * m[0] + 0.7 * std::sqrt(a * a * 0.3 + s * s) * VectorXd{{1.0, -0.5, 0.2}}).transpose();
    x.row(1) = (a * m[1] + 0.9 * std::sqrt(a * a * 0.3 + s * s) * VectorXd{{-0.4, 1.0, 0.6}}).transpose();
    x.row(2) = (a * m[2] - 1.1 * std::sqrt(a * a * 0.3 + s * s) * VectorXd{{0.3, 0.3, -1.0}}).transpose();
    x.row(3) = (0.5 * a * (m[0] + m[1])).transpose();
    x.row(4) =
        (a * (m[0] + m[1] + m[2]) / 3 + std::sqrt(a * a + s * s) * VectorXd{{0.2, -0.3, 0.1}}).transpose();
    return x;
}

// Central difference of a scalar function of x along e_i with step h, and a check against an
// analytic derivative. log p_t of a mixture is not quadratic, so the difference D(h) has a
// truncation error c·h² (c = ∂³f/6) besides rounding. Richardson: D(h) − D(h/2) = (3/4)c h² +
// O(h⁴), so the truncation error of D(h/2), c h²/4, is estimated by |D(h) − D(h/2)|/3. The
// tolerance is twice that estimate plus the rounding bound 64u(|f| + d)/(h/2) of D(h/2); and the
// estimate itself must be small (< 1e-6/√v_min), so a badly chosen h cannot hide an error.
template <class F>
void check_gradient_fd(F f, const VectorXd& x, const VectorXd& grad, double h, double length) {
    for (Eigen::Index i = 0; i < x.size(); ++i) {
        const VectorXd e = VectorXd::Unit(x.size(), i);
        const double d1 = (f(VectorXd(x + h * e)) - f(VectorXd(x - h * e))) / (2 * h);
        const double d2 = (f(VectorXd(x + 0.5 * h * e)) - f(VectorXd(x - 0.5 * h * e))) / h;
        const double trunc = std::abs(d1 - d2) / 3;
        const double round = 64 * u * (std::abs(f(x)) + static_cast<double>(x.size())) / (0.5 * h);
        CHECK(trunc < 1e-6 / length);
        DIFFUSE_CHECK_CLOSE(grad(i), d2, 2 * trunc + round, 0.0);
    }
}

}  // namespace

TEST_CASE("gaussian_mixture: score equals central finite differences of log_prob (log-sum-exp)") {
    // h = 1e-4·√v_min, v_min = a²λ_min + s² over all components (the shortest length scale of p_t).
    const gaussian_mixture gm = test_mixture();
    const double lam_min = smallest_eigenvalue(gm);
    for (const level& lv : levels()) {
        CAPTURE(lv.name);
        const double length = std::sqrt(lv.a * lv.a * lam_min + lv.s * lv.s);
        const MatrixXd x = test_points(lv.a, lv.s);
        for (Eigen::Index p = 0; p < x.rows(); ++p) {
            const VectorXd xp = x.row(p).transpose();
            check_gradient_fd([&](const VectorXd& y) { return gm.log_prob(y, lv.a, lv.s); }, xp,
                              gm.score(xp, lv.a, lv.s), 1e-4 * length, length);
        }
    }
}

TEST_CASE("gaussian_mixture: Tweedie x0_mean = (x + s^2 score)/a and eps_mean = -s score") {
    // x0_mean is computed as Σ_k r_k E_k[x0|x_t] (component posterior means), the score as
    // −Σ_k r_k V_k⁻¹(x − a m_k): two different routes. Rounding as in the Gaussian case,
    // ≲ 64u(|x| + s²|score|)/a plus the spread of the component means (Σ r_k d_k).
    const gaussian_mixture gm = test_mixture();
    for (const level& lv : levels()) {
        CAPTURE(lv.name);
        const MatrixXd x = test_points(lv.a, lv.s);
        const MatrixXd sc = gm.score(x, lv.a, lv.s);
        const double scale = (x.cwiseAbs().maxCoeff() + lv.s * lv.s * sc.cwiseAbs().maxCoeff()) / lv.a + 3.0;
        check_matrices_close(gm.x0_mean(x, lv.a, lv.s), (x + lv.s * lv.s * sc) / lv.a, 64 * u * scale,
                             64 * u);
        const MatrixXd eps = gm.eps_mean(x, lv.a, lv.s);
        check_matrices_close(eps, -lv.s * sc, 64 * u * eps.cwiseAbs().maxCoeff(), 64 * u);
    }
}

TEST_CASE("gaussian_mixture: responsibilities sum to 1 and equal normalised weighted likelihoods") {
    // r_k = π_k N(x; a m_k, V_k) / Σ_j π_j N(x; a m_j, V_j), the densities from a Cholesky solve and
    // exponentiated directly (safe for these moderate points). Relative rounding of the direct
    // route: exp amplifies an absolute error δ in log N to a relative error δ, δ ≲ 64u(|log N| + d):
    // tolerance 1e-12 absolute. Sums: K = 3 terms in [0, 1] → 1e-14 (closed_forms.md B3).
    const gaussian_mixture gm = test_mixture();
    const auto m = test_means();
    const auto c = test_covs();
    const std::vector<double> w{0.25, 0.45, 0.3};
    for (const level& lv : levels()) {
        CAPTURE(lv.name);
        const MatrixXd x = test_points(lv.a, lv.s);
        const MatrixXd r = gm.responsibilities(x, lv.a, lv.s);
        for (Eigen::Index p = 0; p < x.rows(); ++p) {
            DIFFUSE_CHECK_CLOSE(r.row(p).sum(), 1.0, 1e-14, 0.0);
            const VectorXd xp = x.row(p).transpose();
            VectorXd direct(3);
            for (int k = 0; k < 3; ++k) {
                const MatrixXd v = lv.a * lv.a * c[k] + lv.s * lv.s * MatrixXd::Identity(3, 3);
                direct(k) = w[k] * std::exp(ref_log_normal(xp, lv.a * m[k], v));
            }
            if (direct.sum() > 1e-250) {  // direct route only where it does not underflow
                check_vectors_close(r.row(p).transpose(), direct / direct.sum(), 1e-12, 0.0);
            }
            // log p_t = log Σ_k π_k N_k, the same independent route on the log scale.
            double lse = -std::numeric_limits<double>::infinity();
            VectorXd lk(3);
            for (int k = 0; k < 3; ++k) {
                const MatrixXd v = lv.a * lv.a * c[k] + lv.s * lv.s * MatrixXd::Identity(3, 3);
                lk(k) = std::log(w[k]) + ref_log_normal(xp, lv.a * m[k], v);
            }
            lse = lk.maxCoeff() + std::log((lk.array() - lk.maxCoeff()).exp().sum());
            DIFFUSE_CHECK_CLOSE(gm.log_prob(xp, lv.a, lv.s), lse, 1e-12 * (1 + std::abs(lse)), 0.0);
        }
    }
    // Far from every component the likelihoods underflow (log N ≈ −1e8 at σ = 0.002); log-sum-exp
    // keeps the responsibilities exact, finite, and summing to 1.
    const VectorXd far = VectorXd::Constant(3, 40.0);
    const VectorXd r = gm.responsibilities(far, 1.0, 0.002);
    CHECK(r.allFinite());
    DIFFUSE_CHECK_CLOSE(r.sum(), 1.0, 1e-14, 0.0);
    CHECK(std::isfinite(gm.log_prob(far, 1.0, 0.002)));
    CHECK(gm.score(far, 1.0, 0.002).allFinite());
}

TEST_CASE("gaussian_mixture: the Bayes classifier is the normalised class-weighted likelihood") {
    // p_t(y | x) = Σ_{k: y_k = y} π_k N_k(x) / Σ_k π_k N_k(x), with N_k from a Cholesky solve.
    const gaussian_mixture gm = test_mixture();
    const auto m = test_means();
    const auto c = test_covs();
    const std::vector<double> w{0.25, 0.45, 0.3};
    const std::vector<int> y{0, 1, 0};
    CHECK(gm.n_classes() == 2);
    check_vectors_close(gm.class_priors(), VectorXd{{0.55, 0.45}}, 1e-16, 1e-15);
    for (const level& lv : levels()) {
        CAPTURE(lv.name);
        const MatrixXd x = test_points(lv.a, lv.s);
        const MatrixXd post = gm.class_posterior(x, lv.a, lv.s);
        const MatrixXd log_post = gm.class_log_posterior(x, lv.a, lv.s);
        for (Eigen::Index p = 0; p < x.rows(); ++p) {
            const VectorXd xp = x.row(p).transpose();
            VectorXd joint = VectorXd::Zero(2);
            for (int k = 0; k < 3; ++k) {
                const MatrixXd v = lv.a * lv.a * c[k] + lv.s * lv.s * MatrixXd::Identity(3, 3);
                joint(y[k]) += w[k] * std::exp(ref_log_normal(xp, lv.a * m[k], v));
            }
            DIFFUSE_CHECK_CLOSE(post.row(p).sum(), 1.0, 1e-14, 0.0);
            if (joint.sum() > 1e-250)
                check_vectors_close(post.row(p).transpose(), joint / joint.sum(), 1e-12, 0.0);
            for (int cl = 0; cl < 2; ++cl) {
                // log p(y|x) against the log of the posterior where that is representable
                if (post(p, cl) > 1e-300)
                    DIFFUSE_CHECK_CLOSE(log_post(p, cl), std::log(post(p, cl)), 1e-13, 1e-13);
            }
        }
    }
    // a = 0: x_t carries no information; the posterior is the prior.
    check_vectors_close(gm.class_posterior(VectorXd{{0.3, -0.2, 0.9}}, 0.0, 1.0), VectorXd{{0.55, 0.45}},
                        1e-15, 1e-14);
    check_vectors_close(gm.responsibilities(VectorXd{{0.3, -0.2, 0.9}}, 0.0, 1.0),
                        VectorXd{{0.25, 0.45, 0.3}}, 1e-15, 1e-14);
}

TEST_CASE("gaussian_mixture: grad log p(y|x) = conditional score - score, and matches finite differences") {
    const gaussian_mixture gm = test_mixture();
    const double lam_min = smallest_eigenvalue(gm);
    for (const level& lv : levels()) {
        CAPTURE(lv.name);
        const double length = std::sqrt(lv.a * lv.a * lam_min + lv.s * lv.s);
        const MatrixXd x = test_points(lv.a, lv.s);
        for (int y = 0; y < 2; ++y) {
            CAPTURE(y);
            const gaussian_mixture cond = gm.conditional(y);
            const MatrixXd grad = gm.class_log_posterior_grad(x, lv.a, lv.s, y);
            const MatrixXd cond_score = gm.conditional_score(x, lv.a, lv.s, y);
            const MatrixXd sc = gm.score(x, lv.a, lv.s);
            // Three routes: Σ_k (r_k^(y) − r_k)∇log N_k, the difference of the two scores, and the
            // score of the renormalised class-y mixture. Scores are O(|x − am|/v); 1e-12 of that.
            const double scale = 1e-12 * (1.0 + sc.cwiseAbs().maxCoeff() + cond_score.cwiseAbs().maxCoeff());
            check_matrices_close(grad, cond_score - sc, scale, 0.0);
            check_matrices_close(cond_score, cond.score(x, lv.a, lv.s), scale, 0.0);
            for (Eigen::Index p = 0; p < x.rows(); ++p) {
                const VectorXd xp = x.row(p).transpose();
                check_gradient_fd([&](const VectorXd& z) { return gm.class_log_posterior(z, lv.a, lv.s)(y); },
                                  xp, grad.row(p).transpose(), 1e-4 * length, length);
            }
        }
    }
}

TEST_CASE(
    "gaussian_mixture: 1-D posterior mean, variance, marginal density and class posterior equal quadrature") {
    // p(x0 | x_t) ∝ Σ_k π_k N(x0; m_k, λ_k) N(x_t; a x0, s²) on a uniform grid (trapezoid rule). The
    // integrand is a sum of Gaussians, for which the trapezoid rule's error is ~exp(−2π²σ²/h²)
    // (σ >= the smallest posterior sd, h = σ/8): negligible. Tolerance: summation rounding 1e-10.
    const std::vector<double> w{0.2, 0.5, 0.3};
    const std::vector<double> mk{-2.0, 0.5, 1.5};
    const std::vector<double> lk{0.3, 0.8, 0.15};
    const gaussian_mixture gm(
        w, {VectorXd::Constant(1, mk[0]), VectorXd::Constant(1, mk[1]), VectorXd::Constant(1, mk[2])},
        {MatrixXd::Constant(1, 1, lk[0]), MatrixXd::Constant(1, 1, lk[1]), MatrixXd::Constant(1, 1, lk[2])},
        {0, 1, 1});
    for (const level& lv : levels()) {
        CAPTURE(lv.name);
        const double a = lv.a, s = lv.s;
        const double sd = std::min(std::sqrt(0.15), s / a);
        const double lo = -2.0 - 14 * std::sqrt(0.8), hi = 1.5 + 14 * std::sqrt(0.8);
        const auto n = static_cast<long>(std::ceil((hi - lo) / (sd / 8)));
        const double step = (hi - lo) / static_cast<double>(n);
        for (double x : {-1.9 * a, 0.1 * a + 0.3 * s, 1.2 * a - 0.5 * s}) {
            CAPTURE(x);
            // log p(x0, k, x_t) for each component at grid point x0
            auto log_joint = [&](double x0, int k) {
                return std::log(w[k]) - 0.5 * (x0 - mk[k]) * (x0 - mk[k]) / lk[k] -
                       0.5 * std::log(2 * std::numbers::pi * lk[k]) -
                       0.5 * (x - a * x0) * (x - a * x0) / (s * s) -
                       0.5 * std::log(2 * std::numbers::pi * s * s);
            };
            double shift = -std::numeric_limits<double>::infinity();
            for (long i = 0; i <= n; ++i)
                for (int k = 0; k < 3; ++k) shift = std::max(shift, log_joint(lo + (hi - lo) * i / n, k));
            double m0 = 0, m1 = 0, m2 = 0, c1 = 0;
            for (long i = 0; i <= n; ++i) {
                const double x0 = lo + (hi - lo) * i / n;
                const double tw = (i == 0 || i == n) ? 0.5 : 1.0;
                for (int k = 0; k < 3; ++k) {
                    const double wt = tw * std::exp(log_joint(x0, k) - shift);
                    m0 += wt;
                    m1 += wt * x0;
                    m2 += wt * x0 * x0;
                    if (k > 0) c1 += wt;  // class 1 = components 1 and 2
                }
            }
            const double mean = m1 / m0, var = m2 / m0 - mean * mean;
            const VectorXd xv = VectorXd::Constant(1, x);
            DIFFUSE_CHECK_CLOSE(gm.x0_mean(xv, a, s)(0), mean, 1e-10, 1e-10);
            DIFFUSE_CHECK_CLOSE(gm.x0_cov(xv, a, s)(0, 0), var, 1e-10 * (mean * mean + var), 1e-10);
            DIFFUSE_CHECK_CLOSE(gm.log_prob(xv, a, s), shift + std::log(m0 * step), 1e-10, 1e-10);
            DIFFUSE_CHECK_CLOSE(gm.class_posterior(xv, a, s)(1), c1 / m0, 1e-10, 1e-10);
        }
    }
}

TEST_CASE("gaussian_mixture: x0_cov is symmetric positive semidefinite and batch equals point") {
    const gaussian_mixture gm = test_mixture();
    const double a = 0.7, s = std::sqrt(1 - 0.49);
    const MatrixXd x = test_points(a, s);
    const std::vector<MatrixXd> covs = gm.x0_covs(x, a, s);
    REQUIRE(covs.size() == 5);
    const MatrixXd sc = gm.score(x, a, s), x0 = gm.x0_mean(x, a, s), eps = gm.eps_mean(x, a, s);
    const MatrixXd r = gm.responsibilities(x, a, s), cp = gm.class_posterior(x, a, s);
    const MatrixXd clp = gm.class_log_posterior(x, a, s), lj = gm.component_log_joint(x, a, s);
    const MatrixXd gr = gm.class_log_posterior_grad(x, a, s, 1), cs = gm.conditional_score(x, a, s, 1);
    const VectorXd lp = gm.log_prob(x, a, s);
    for (Eigen::Index p = 0; p < x.rows(); ++p) {
        const VectorXd xp = x.row(p).transpose();
        const MatrixXd cov = gm.x0_cov(xp, a, s);
        check_matrices_close(cov, covs[static_cast<std::size_t>(p)], 1e-15, 1e-14);
        check_matrices_close(cov, cov.transpose(), 1e-16, 1e-15);
        CHECK(Eigen::SelfAdjointEigenSolver<MatrixXd>(cov).eigenvalues().minCoeff() > 0);
        check_vectors_close(gm.score(xp, a, s), sc.row(p).transpose(), 1e-15, 1e-14);
        check_vectors_close(gm.x0_mean(xp, a, s), x0.row(p).transpose(), 1e-15, 1e-14);
        check_vectors_close(gm.eps_mean(xp, a, s), eps.row(p).transpose(), 1e-15, 1e-14);
        check_vectors_close(gm.responsibilities(xp, a, s), r.row(p).transpose(), 1e-15, 1e-14);
        check_vectors_close(gm.class_posterior(xp, a, s), cp.row(p).transpose(), 1e-15, 1e-14);
        check_vectors_close(gm.class_log_posterior(xp, a, s), clp.row(p).transpose(), 1e-15, 1e-14);
        check_vectors_close(gm.component_log_joint(xp, a, s), lj.row(p).transpose(), 1e-15, 1e-14);
        check_vectors_close(gm.class_log_posterior_grad(xp, a, s, 1), gr.row(p).transpose(), 1e-15, 1e-14);
        check_vectors_close(gm.conditional_score(xp, a, s, 1), cs.row(p).transpose(), 1e-15, 1e-14);
        DIFFUSE_CHECK_CLOSE(gm.log_prob(xp, a, s), lp(p), 1e-15, 1e-14);
    }
}

TEST_CASE("gaussian_mixture: one component equals gaussian exactly") {
    // With K = 1 the responsibility is exp(0)/1 = 1 and log π = 0, so every mixture quantity is the
    // component's value times 1 plus 0: bitwise equal.
    const gaussian g(test_means()[1], test_covs()[1]);
    const gaussian_mixture gm({1.0}, {test_means()[1]}, {test_covs()[1]});
    const gaussian_mixture gm2({1.0}, std::vector<gaussian>{g});
    for (const level& lv : levels()) {
        CAPTURE(lv.name);
        const MatrixXd x = test_points(lv.a, lv.s);
        check_matrices_close(gm.score(x, lv.a, lv.s), g.score(x, lv.a, lv.s), 0.0, 0.0);
        check_matrices_close(gm.x0_mean(x, lv.a, lv.s), g.x0_mean(x, lv.a, lv.s), 0.0, 0.0);
        check_matrices_close(gm.eps_mean(x, lv.a, lv.s), g.eps_mean(x, lv.a, lv.s), 0.0, 0.0);
        check_vectors_close(gm.log_prob(x, lv.a, lv.s), g.log_prob(x, lv.a, lv.s), 0.0, 0.0);
        check_matrices_close(gm2.score(x, lv.a, lv.s), g.score(x, lv.a, lv.s), 0.0, 0.0);
        check_matrices_close(gm.responsibilities(x, lv.a, lv.s), MatrixXd::Ones(5, 1), 0.0, 0.0);
        check_matrices_close(gm.class_posterior(x, lv.a, lv.s), MatrixXd::Ones(5, 1), 0.0, 0.0);
        check_matrices_close(gm.class_log_posterior_grad(x, lv.a, lv.s, 0), MatrixXd::Zero(5, 3), 0.0, 0.0);
        const VectorXd x0 = x.row(0).transpose();
        check_matrices_close(gm.x0_cov(x0, lv.a, lv.s), g.x0_cov(lv.a, lv.s), 0.0, 0.0);
    }
    diffuse::philox_rng r1(7, 3), r2(7, 3);
    const MatrixXd xs = g.sample(50, r1);
    const auto ms = gm.sample(50, r2);
    check_matrices_close(ms.x, xs, 0.0, 0.0);
    CHECK(ms.component == std::vector<int>(50, 0));
    CHECK(ms.label == std::vector<int>(50, 0));
    CHECK(r1.normal_offset() == r2.normal_offset());
}

TEST_CASE("gaussian_mixture: conditional(y), accessors, mean and covariance of the data") {
    const gaussian_mixture gm = test_mixture();
    CHECK(gm.dimension() == 3);
    CHECK(gm.n_components() == 3);
    CHECK(gm.labels() == std::vector<int>{0, 1, 0});
    const gaussian_mixture c0 = gm.conditional(0);
    CHECK(c0.n_components() == 2);
    CHECK(c0.n_classes() == 1);
    DIFFUSE_CHECK_CLOSE(c0.weights()[0], 0.25 / 0.55, 0.0, 1e-15);
    DIFFUSE_CHECK_CLOSE(c0.weights()[1], 0.3 / 0.55, 0.0, 1e-15);
    // The single-component class is exactly that component.
    const gaussian_mixture c1 = gm.conditional(1);
    const VectorXd x{{0.4, -0.2, 0.1}};
    check_vectors_close(c1.score(x, 0.8, 0.6), gm.component(1).score(x, 0.8, 0.6), 0.0, 0.0);
    // Data moments: E x0 = Σ π_k m_k; Cov x0 = Σ π_k (C_k + m_k m_kᵀ) − E x0 E x0ᵀ (another route).
    const auto m = test_means();
    const auto c = test_covs();
    const std::vector<double> w{0.25, 0.45, 0.3};
    VectorXd mean = VectorXd::Zero(3);
    MatrixXd second = MatrixXd::Zero(3, 3);
    for (int k = 0; k < 3; ++k) {
        mean += w[k] * m[k];
        second += w[k] * (c[k] + m[k] * m[k].transpose());
    }
    check_vectors_close(gm.mean(), mean, 1e-15, 1e-14);
    check_matrices_close(gm.cov(), second - mean * mean.transpose(), 1e-14, 1e-14);
    // The mixture's x0_mean at a = 0 is the data mean; as s → 0 (a = 1) it returns x.
    check_vectors_close(gm.x0_mean(x, 0.0, 1.0), mean, 1e-15, 1e-14);
    check_vectors_close(gm.x0_mean(x, 1.0, 0.0), x, 1e-15, 1e-14);
    // Unlabelled: one class per component, and the class posterior is the responsibilities.
    const gaussian_mixture un({0.25, 0.45, 0.3}, test_means(), test_covs());
    CHECK(un.n_classes() == 3);
    check_vectors_close(un.class_posterior(x, 0.8, 0.6), un.responsibilities(x, 0.8, 0.6), 1e-15, 1e-14);
}

TEST_CASE("gaussian_mixture: argument errors name the argument, the value and what is allowed") {
    const auto m = test_means();
    const auto c = test_covs();
    DIFFUSE_CHECK_ERROR(gaussian_mixture({0.5, 0.6, -0.1}, m, c), "weights[2] = -0.10000000000000001", "> 0");
    DIFFUSE_CHECK_ERROR(gaussian_mixture({0.5, 0.5, 0.0}, m, c), "weights[2] = 0", "> 0");
    DIFFUSE_CHECK_ERROR(gaussian_mixture({0.2, 0.2, 0.2}, m, c), "sum of weights = 0.6",
                        "1 (to within 1e-12)");
    DIFFUSE_CHECK_ERROR(gaussian_mixture({0.5, 0.5}, m, c), "weights.size() = 2", "number of components, 3");
    DIFFUSE_CHECK_ERROR(gaussian_mixture({std::nan(""), 0.5, 0.5}, m, c), "weights[0] = nan");
    DIFFUSE_CHECK_ERROR(gaussian_mixture({0.5, 0.5}, m, {c[0], c[1]}), "covs.size() = 2", "means.size() = 3");
    DIFFUSE_CHECK_ERROR(gaussian_mixture({}, std::vector<VectorXd>{}, std::vector<MatrixXd>{}),
                        "means.size() = 0");
    DIFFUSE_CHECK_ERROR(gaussian_mixture({0.5, 0.5}, {m[0], VectorXd{{1.0, 2.0}}}, {c[0], c[1]}),
                        "means[1].size() = 2", "means[0].size() = 3");
    MatrixXd asym = c[2];
    asym(2, 0) += 1e-3;
    DIFFUSE_CHECK_ERROR(gaussian_mixture({0.2, 0.3, 0.5}, m, {c[0], c[1], asym}),
                        "covs[2](2,0) - covs[2](0,2)", "symmetric");
    MatrixXd neg = c[1];
    neg(1, 1) = -2.0;
    DIFFUSE_CHECK_ERROR(gaussian_mixture({0.2, 0.3, 0.5}, m, {c[0], neg, c[2]}),
                        "smallest eigenvalue of covs[1]", "positive definite");
    DIFFUSE_CHECK_ERROR(gaussian_mixture({0.2, 0.3, 0.5}, m, c, {0, -1, 0}), "labels[1] = -1", ">= 0");
    DIFFUSE_CHECK_ERROR(gaussian_mixture({0.2, 0.3, 0.5}, m, c, {0, 2, 0}), "no component with label 1",
                        "at least one component");
    DIFFUSE_CHECK_ERROR(gaussian_mixture({0.2, 0.3, 0.5}, m, c, {0, 1}), "labels.size() = 2");
    const gaussian g2(VectorXd{{0.0, 0.0}}, MatrixXd::Identity(2, 2));
    const gaussian g3(m[0], c[0]);
    DIFFUSE_CHECK_ERROR(gaussian_mixture({0.5, 0.5}, std::vector<gaussian>{g3, g2}),
                        "components[1].dimension() = 2");
    DIFFUSE_CHECK_ERROR(gaussian_mixture({}, std::vector<gaussian>{}), "components.size() = 0");

    const gaussian_mixture gm = test_mixture();
    const VectorXd x{{0.1, 0.2, 0.3}};
    DIFFUSE_CHECK_ERROR(gm.score(x, 0.5, -0.5), "s = -0.5", ">= 0");
    DIFFUSE_CHECK_ERROR(gm.responsibilities(x, -0.5, 0.5), "a = -0.5");
    DIFFUSE_CHECK_ERROR(gm.log_prob(x, 0.0, 0.0), "s = 0", "when a = 0");
    DIFFUSE_CHECK_ERROR(gm.x0_covs(MatrixXd::Zero(2, 3), 1.0, -1.0), "s = -1");
    DIFFUSE_CHECK_ERROR(gm.class_posterior(VectorXd{{0.1}}, 0.5, 0.5), "x.size() = 1", "d = 3");
    DIFFUSE_CHECK_ERROR(gm.x0_mean(MatrixXd::Zero(4, 2), 0.5, 0.5), "x.cols() = 2", "d = 3");
    DIFFUSE_CHECK_ERROR(gm.class_log_posterior_grad(x, 0.5, 0.5, 2), "y = 2", "[0, 2)");
    DIFFUSE_CHECK_ERROR(gm.conditional_score(x, 0.5, 0.5, -1), "y = -1", "[0, 2)");
    DIFFUSE_CHECK_ERROR(gm.conditional(5), "y = 5");
    DIFFUSE_CHECK_ERROR(gm.component(3), "k = 3", "[0, 3)");
    diffuse::philox_rng rng(1);
    DIFFUSE_CHECK_ERROR(gm.sample(-2, rng), "n = -2", ">= 0");
}
