// Exact Gaussian model (include/diffuse/analytic/gaussian.hpp) against closed forms and
// independent computations: finite differences, Tweedie, plain-Cholesky conditioning of the joint
// Gaussian, 1-D quadrature of Bayes' rule, and numerical integration of the probability-flow ODE
// (docs/exact_models.md §2–§4; closed_forms.md B1, B2, A10).
#include <diffuse/analytic/gaussian.hpp>

#include "support/check.hpp"
#include "support/eigen_check.hpp"
#include "support/ode.hpp"

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
using Eigen::MatrixXd;
using Eigen::VectorXd;

constexpr double u = std::numeric_limits<double>::epsilon() / 2;  // unit roundoff 2^-53

using diffuse::test::level;

// VP levels with ᾱ near 0 and near 1, VE/EDM levels from σ = 80 down to 0.002, and a general one.
std::vector<level> levels() { return diffuse::test::test_levels({1e-4, 0.02, 0.5, 0.98, 0.9999}); }

// A full, well-conditioned 3×3 covariance Σ = A Aᵀ/3 + 0.1 I and a non-zero mean.
MatrixXd test_cov() {
    MatrixXd a(3, 3);
    a << 0.9, -0.4, 0.3, 0.2, 1.1, -0.5, -0.7, 0.3, 0.8;
    return a * a.transpose() / 3.0 + 0.1 * MatrixXd::Identity(3, 3);
}
VectorXd test_mean() { return VectorXd{{0.5, -1.0, 2.0}}; }

// Independent marginal covariance V = a²Σ + s²I (no eigendecomposition).
MatrixXd ref_v(const MatrixXd& cov, double a, double s) {
    return a * a * cov + s * s * MatrixXd::Identity(cov.rows(), cov.cols());
}

// Points typical of x_t: aμ + L z with V = L Lᵀ, for fixed z (|z_i| <= 2), as rows [4, 3].
MatrixXd test_points(const MatrixXd& cov, const VectorXd& mean, double a, double s) {
    MatrixXd z(4, 3);
    z << 0.3, -1.2, 0.8, -2.0, 0.5, 1.5, 1.1, 1.9, -0.4, 0.0, 0.0, 0.0;
    const MatrixXd l = ref_v(cov, a, s).llt().matrixL();
    MatrixXd x = z * l.transpose();
    x.rowwise() += (a * mean).transpose();
    return x;
}

}  // namespace

TEST_CASE("gaussian: score equals central finite differences of log_prob") {
    // D_h = (log p(x + h e_i) − log p(x − h e_i)) / 2h has error h²/6·∂³log p + O(u|log p|/h).
    // log p_t is quadratic in x, so the truncation term is exactly 0 and only rounding is left.
    // h = 1e-4·√v_min (√v_min: the shortest length scale of p_t). Rounding in the two log_prob
    // evaluations is at most 64u(|log p| + d) each (the d-term log-normaliser is computed
    // identically in both and cancels; the bound keeps it anyway), giving the tolerance
    // 64u(|log p| + d)/h. Since the truncation term vanishes, the difference at h and at h/2
    // must agree to the same bound — a check that the rounding-only claim is right.
    const gaussian g(test_mean(), test_cov());
    const double lam_min = g.cov_eigenvalues()(0);
    for (const level& lv : levels()) {
        CAPTURE(lv.name);
        const double h = 1e-4 * std::sqrt(lv.a * lv.a * lam_min + lv.s * lv.s);
        const MatrixXd x = test_points(test_cov(), test_mean(), lv.a, lv.s);
        for (Eigen::Index p = 0; p < x.rows(); ++p) {
            const VectorXd xp = x.row(p).transpose();
            const VectorXd sc = g.score(xp, lv.a, lv.s);
            const double lp = std::abs(g.log_prob(xp, lv.a, lv.s));
            for (Eigen::Index i = 0; i < 3; ++i) {
                const VectorXd e = VectorXd::Unit(3, i);
                const double fd =
                    (g.log_prob(xp + h * e, lv.a, lv.s) - g.log_prob(xp - h * e, lv.a, lv.s)) / (2 * h);
                const double fd2 =
                    (g.log_prob(xp + 0.5 * h * e, lv.a, lv.s) - g.log_prob(xp - 0.5 * h * e, lv.a, lv.s)) / h;
                const double tol = 64 * u * (lp + 3.0) / h;
                DIFFUSE_CHECK_CLOSE(sc(i), fd, tol, 0.0);
                DIFFUSE_CHECK_CLOSE(fd2, fd, 3 * tol, 0.0);
            }
        }
    }
}

TEST_CASE("gaussian: Tweedie x0_mean = (x + s^2 score)/a and eps_mean = -s score") {
    // Both sides are O(d) flops from the same eigendecomposition; the right side of Tweedie
    // divides a difference of terms of size |x| and s²|score| by a, so its rounding is
    // ≲ 64u(|x| + s²|score|)/a (a = 0.01 at ᾱ = 1e-4: a 100× amplification, still ~1e-12).
    const gaussian g(test_mean(), test_cov());
    for (const level& lv : levels()) {
        CAPTURE(lv.name);
        const MatrixXd x = test_points(test_cov(), test_mean(), lv.a, lv.s);
        const MatrixXd sc = g.score(x, lv.a, lv.s);
        const MatrixXd x0 = g.x0_mean(x, lv.a, lv.s);
        const MatrixXd eps = g.eps_mean(x, lv.a, lv.s);
        const double scale = (x.cwiseAbs().maxCoeff() + lv.s * lv.s * sc.cwiseAbs().maxCoeff()) / lv.a;
        check_matrices_close(x0, (x + lv.s * lv.s * sc) / lv.a, 64 * u * scale, 64 * u);
        check_matrices_close(eps, -lv.s * sc, 64 * u * eps.cwiseAbs().maxCoeff(), 64 * u);
    }
}

TEST_CASE("gaussian: posterior and marginal quantities equal conditioning of the joint Gaussian (Cholesky)") {
    // Independent route: (x0, x_t) is jointly Gaussian with
    //   Cov[x0] = Σ, Cov[x0, x_t] = aΣ, Cov[x_t] = V = a²Σ + s²I, and Cov[eps, x_t] = sI, so
    //   E[x0|x_t] = μ + aΣ V⁻¹(x_t − aμ),  Cov[x0|x_t] = Σ − a²Σ V⁻¹ Σ,
    //   E[eps|x_t] = s V⁻¹(x_t − aμ),        E‖eps − E[eps|x_t]‖² = tr(I − s² V⁻¹),
    //   ∇log p_t = −V⁻¹(x_t − aμ),            log p_t = log N(x_t; aμ, V),
    // each solved with Eigen::LLT, never the model's eigendecomposition. κ(V) <= κ(Σ) < 20 here and
    // the computations are O(d) long, so both routes agree to ~64u·κ·max(|x|, 1): tolerance 1e-12
    // times the size of the inputs. Cov[x0|x_t] = Σ − a²ΣV⁻¹Σ cancels when s is small (the result
    // is ~s²), so it gets 1e-12·‖Σ‖ absolute.
    const gaussian g(test_mean(), test_cov());
    const MatrixXd cov = test_cov();
    const VectorXd mu = test_mean();
    for (const level& lv : levels()) {
        CAPTURE(lv.name);
        const double a = lv.a, s = lv.s;
        const MatrixXd v = ref_v(cov, a, s);
        const Eigen::LLT<MatrixXd> llt(v);
        const MatrixXd vinv = llt.solve(MatrixXd::Identity(3, 3));
        const MatrixXd x = test_points(cov, mu, a, s);
        const double xs = 1.0 + x.cwiseAbs().maxCoeff();
        check_matrices_close(g.marginal_cov(a, s), v, 1e-12 * v.cwiseAbs().maxCoeff(), 0.0);
        check_vectors_close(g.marginal_mean(a), a * mu, 0.0, 1e-15);
        for (Eigen::Index p = 0; p < x.rows(); ++p) {
            const VectorXd xp = x.row(p).transpose();
            const VectorXd r = xp - a * mu;
            check_vectors_close(g.x0_mean(xp, a, s), mu + a * cov * llt.solve(r), 1e-12 * xs, 1e-12);
            check_vectors_close(g.eps_mean(xp, a, s), s * llt.solve(r), 1e-12 * xs * s * vinv.norm(), 1e-12);
            check_vectors_close(g.score(xp, a, s), -llt.solve(r), 1e-12 * xs * vinv.norm(), 1e-12);
            DIFFUSE_CHECK_CLOSE(g.log_prob(xp, a, s), ref_log_normal(xp, a * mu, v), 1e-12 * xs * xs, 1e-12);
        }
        const MatrixXd post = cov - a * a * cov * llt.solve(cov);
        check_matrices_close(g.x0_cov(a, s), post, 1e-12 * cov.norm(), 1e-12);
        DIFFUSE_CHECK_CLOSE(g.optimal_eps_mse(a, s), 3.0 - s * s * vinv.trace(), 1e-12 * 3.0, 1e-12);
    }
}

TEST_CASE("gaussian: one point and a batch of rows give the same results") {
    const gaussian g(test_mean(), test_cov());
    const double a = 0.8, s = 0.6;
    const MatrixXd x = test_points(test_cov(), test_mean(), a, s);
    const MatrixXd sc = g.score(x, a, s), x0 = g.x0_mean(x, a, s), eps = g.eps_mean(x, a, s);
    const VectorXd lp = g.log_prob(x, a, s);
    const MatrixXd fl = g.pf_ode_flow(x, a, s, 0.1, 0.99);
    REQUIRE(sc.rows() == 4);
    REQUIRE(lp.size() == 4);
    for (Eigen::Index p = 0; p < x.rows(); ++p) {
        const VectorXd xp = x.row(p).transpose();
        check_vectors_close(g.score(xp, a, s), sc.row(p).transpose(), 1e-15, 1e-14);
        check_vectors_close(g.x0_mean(xp, a, s), x0.row(p).transpose(), 1e-15, 1e-14);
        check_vectors_close(g.eps_mean(xp, a, s), eps.row(p).transpose(), 1e-15, 1e-14);
        DIFFUSE_CHECK_CLOSE(g.log_prob(xp, a, s), lp(p), 1e-15, 1e-14);
        check_vectors_close(g.pf_ode_flow(xp, a, s, 0.1, 0.99), fl.row(p).transpose(), 1e-15, 1e-14);
    }
    // A column-vector expression is one point; an empty batch gives an empty result.
    const VectorXd x0p = x.row(0).transpose();
    check_vectors_close(g.score(x0p + 0.0 * x0p, a, s), sc.row(0).transpose(), 1e-15, 1e-14);
    CHECK(g.score(MatrixXd(0, 3), a, s).rows() == 0);
}

TEST_CASE("gaussian: 1-D posterior mean, variance and marginal density equal quadrature of Bayes' rule") {
    // p(x0 | x_t) ∝ N(x0; μ, λ) N(x_t; a x0, s²), integrated by the trapezoid rule on a uniform grid
    // over μ ± 14√λ. For a Gaussian integrand on (effectively) the whole line the trapezoid rule
    // errs by ~2exp(−2π²σ²/h²) (Poisson summation); with h = σ_post/8 that is < 1e-500. The
    // posterior sd is <= min(√λ, s/a) and the posterior mean lies within 2.5√λ of μ for the points
    // used, so the grid covers > 11 posterior sds. What is left is summation rounding, ~√N·u with
    // N <= 2e5 terms: tolerance 1e-10 relative (and 1e-10 absolute for log p_t).
    const double mu = 0.4, lam = 0.7;
    const gaussian g(VectorXd::Constant(1, mu), MatrixXd::Constant(1, 1, lam));
    for (const level& lv : levels()) {
        CAPTURE(lv.name);
        const double a = lv.a, s = lv.s;
        const double v = a * a * lam + s * s;
        const double sd_bound = std::min(std::sqrt(lam), s / a);
        const double h = sd_bound / 8;
        const double lo = mu - 14 * std::sqrt(lam), hi = mu + 14 * std::sqrt(lam);
        const auto n = static_cast<long>(std::ceil((hi - lo) / h));
        for (double z : {-2.5, -0.3, 1.7}) {
            const double x = a * mu + z * std::sqrt(v);
            // log of the unnormalised posterior at grid point x0: log N(x0; μ, λ) + log N(x; a x0, s²)
            auto log_joint = [&](double x0) {
                return -0.5 * (x0 - mu) * (x0 - mu) / lam - 0.5 * std::log(2 * std::numbers::pi * lam) -
                       0.5 * (x - a * x0) * (x - a * x0) / (s * s) -
                       0.5 * std::log(2 * std::numbers::pi * s * s);
            };
            double shift = -std::numeric_limits<double>::infinity();
            for (long i = 0; i <= n; ++i) shift = std::max(shift, log_joint(lo + (hi - lo) * i / n));
            double m0 = 0, m1 = 0, m2 = 0;
            const double step = (hi - lo) / static_cast<double>(n);
            for (long i = 0; i <= n; ++i) {
                const double x0 = lo + (hi - lo) * i / n;
                const double w = (i == 0 || i == n ? 0.5 : 1.0) * std::exp(log_joint(x0) - shift);
                m0 += w;
                m1 += w * x0;
                m2 += w * x0 * x0;
            }
            const double mean = m1 / m0;
            const double var = m2 / m0 - mean * mean;
            const double log_pt = shift + std::log(m0 * step);
            const VectorXd xv = VectorXd::Constant(1, x);
            DIFFUSE_CHECK_CLOSE(g.x0_mean(xv, a, s)(0), mean, 1e-10 * std::sqrt(lam), 1e-10);
            // var = E[x0²] − mean² cancels by a factor ~ (mean²/var); scale the tolerance by it.
            DIFFUSE_CHECK_CLOSE(g.x0_cov(a, s)(0, 0), var, 1e-10 * (mean * mean + var), 1e-10);
            DIFFUSE_CHECK_CLOSE(g.log_prob(xv, a, s), log_pt, 1e-10, 1e-10);
        }
    }
}

TEST_CASE("gaussian: the closed-form PF-ODE map equals numerical integration of the probability-flow ODE") {
    // Reference: Dormand–Prince 5(4), rtol 1e-12, atol 1e-13 (tests/support/ode.hpp; its own test
    // shows ~1e-11 relative accuracy); tolerance 1e-9 absolute + 1e-9 relative (closed_forms.md §0).
    const gaussian g(test_mean(), test_cov());
    const MatrixXd cov = test_cov();
    const VectorXd mu = test_mean();
    MatrixXd z(4, 3);
    z << 0.3, -1.2, 0.8, -2.0, 0.5, 1.5, 1.1, 1.9, -0.4, 0.0, 0.0, 0.0;

    // Integrates the ODE for every row of x_start (stacked into one state vector).
    auto integrate = [](auto rhs, double t0, const MatrixXd& x_start, double t1) {
        const Eigen::Index d = x_start.cols();
        VectorXd y0(x_start.size());
        for (Eigen::Index p = 0; p < x_start.rows(); ++p) y0.segment(p * d, d) = x_start.row(p).transpose();
        const auto res = diffuse::test::dopri5(
            [&](double t, const VectorXd& y) {
                VectorXd dy(y.size());
                for (Eigen::Index p = 0; p < y.size() / d; ++p)
                    dy.segment(p * d, d) = rhs(t, VectorXd(y.segment(p * d, d)));
                return dy;
            },
            t0, y0, t1);
        MatrixXd out(x_start.rows(), d);
        for (Eigen::Index p = 0; p < x_start.rows(); ++p) out.row(p) = res.y.segment(p * d, d).transpose();
        return out;
    };
    auto check_flow = [&](const MatrixXd& numeric, const MatrixXd& closed) {
        check_matrices_close(closed, numeric, 1e-9, 1e-9);
    };
    // The commonly quoted map without the mean shift, V_t^{1/2} V_s^{-1/2} x_s: wrong when μ ≠ 0.
    auto unshifted = [&](const MatrixXd& xs, double as, double ss, double at, double st) {
        return MatrixXd(xs * g.pf_ode_matrix(as, ss, at, st).transpose());
    };

    SUBCASE("VP-linear (beta0 = 0.1, beta1 = 20): dx/dt = -beta(t)/2 (x + score), t from 1 to 1e-3") {
        const double b0 = 0.1, b1 = 20.0;
        auto log_a = [&](double t) { return -0.25 * t * t * (b1 - b0) - 0.5 * t * b0; };
        auto a_of = [&](double t) { return std::exp(log_a(t)); };
        auto s_of = [&](double t) { return std::sqrt(-std::expm1(2 * log_a(t))); };
        auto beta = [&](double t) { return b0 + t * (b1 - b0); };
        const double t0 = 1.0, t1 = 1e-3;
        MatrixXd xs = z * ref_v(cov, a_of(t0), s_of(t0)).llt().matrixL().transpose();
        xs.rowwise() += (a_of(t0) * mu).transpose();
        const MatrixXd numeric = integrate(
            [&](double t, const VectorXd& x) {
                return VectorXd(-0.5 * beta(t) * (x + g.score(x, a_of(t), s_of(t))));
            },
            t0, xs, t1);
        check_flow(numeric, g.pf_ode_flow(xs, a_of(t0), s_of(t0), a_of(t1), s_of(t1)));
        const double miss =
            (unshifted(xs, a_of(t0), s_of(t0), a_of(t1), s_of(t1)) - numeric).cwiseAbs().maxCoeff();
        CHECK(miss > 0.1);  // the mean shift matters: the unshifted map misses by O(|μ|)
    }
    SUBCASE("VE/EDM: dx/dsigma = -sigma score(x, sigma), sigma from 80 to 0.002") {
        const double s0 = 80.0, s1 = 0.002;
        MatrixXd xs = z * ref_v(cov, 1.0, s0).llt().matrixL().transpose();
        xs.rowwise() += mu.transpose();
        const MatrixXd numeric = integrate(
            [&](double sigma, const VectorXd& x) { return VectorXd(-sigma * g.score(x, 1.0, sigma)); }, s0,
            xs, s1);
        check_flow(numeric, g.pf_ode_flow(xs, 1.0, s0, 1.0, s1));
        const double miss = (unshifted(xs, 1.0, s0, 1.0, s1) - numeric).cwiseAbs().maxCoeff();
        CHECK(miss > 0.1);
    }
    SUBCASE("a path of neither form: a = 1 - tau, s = tau (rectified flow), tau from 0.999 to 0.001") {
        // General PF-ODE for x = a x0 + s eps: dx/dτ = f x − ½g² score with f = ȧ/a and
        // g² = 2sṡ − 2f s². Here f = −1/(1−τ), g² = 2τ + 2τ²/(1−τ) = 2τ/(1−τ).
        const double t0 = 0.999, t1 = 0.001;
        MatrixXd xs = z * ref_v(cov, 1 - t0, t0).llt().matrixL().transpose();
        xs.rowwise() += ((1 - t0) * mu).transpose();
        const MatrixXd numeric = integrate(
            [&](double tau, const VectorXd& x) {
                const double f = -1.0 / (1.0 - tau), g2 = 2 * tau / (1.0 - tau);
                return VectorXd(f * x - 0.5 * g2 * g.score(x, 1 - tau, tau));
            },
            t0, xs, t1);
        check_flow(numeric, g.pf_ode_flow(xs, 1 - t0, t0, 1 - t1, t1));
        const double miss = (unshifted(xs, 1 - t0, t0, 1 - t1, t1) - numeric).cwiseAbs().maxCoeff();
        CHECK(miss > 0.1);
    }
}

TEST_CASE(
    "gaussian: PF-ODE map algebra: group law, inverse, VP/VE equivalence, the defining properties of M") {
    // Exact identities of the closed form, to rounding (O(d) flops on O(1) data: 1e-13):
    //   flow(s→t) = flow(u→t) ∘ flow(s→u);  flow(t→s) ∘ flow(s→t) = id;
    //   VE form of the same map: x_ve = x_vp/a, σ = s/a, so flow_VP(x)/a_t = flow_VE(x/a_s);
    //   M = V_t^{1/2}V_s^{-1/2} is the unique symmetric M with M Σ = Σ M and M V_s M = V_t (M ≻ 0).
    const gaussian g(test_mean(), test_cov());
    const MatrixXd x = test_points(test_cov(), test_mean(), 0.3, std::sqrt(1 - 0.09));
    const double as = 0.3, ss = std::sqrt(1 - 0.09), au = 0.7, su = std::sqrt(1 - 0.49), at = 0.99,
                 st = std::sqrt(1 - 0.99 * 0.99);
    const MatrixXd direct = g.pf_ode_flow(x, as, ss, at, st);
    check_matrices_close(g.pf_ode_flow(MatrixXd(g.pf_ode_flow(x, as, ss, au, su)), au, su, at, st), direct,
                         1e-13, 1e-13);
    check_matrices_close(g.pf_ode_flow(direct, at, st, as, ss), x, 1e-13, 1e-13);
    check_matrices_close(MatrixXd(direct / at),
                         MatrixXd(g.pf_ode_flow(MatrixXd(x / as), 1.0, ss / as, 1.0, st / at)), 1e-13, 1e-13);
    const MatrixXd m = g.pf_ode_matrix(as, ss, at, st);
    const MatrixXd cov = test_cov();
    check_matrices_close(m, m.transpose(), 0.0, 0.0);
    check_matrices_close(m * cov, cov * m, 1e-13, 1e-13);
    check_matrices_close(m * ref_v(cov, as, ss) * m, ref_v(cov, at, st), 1e-13, 1e-13);
    CHECK(Eigen::SelfAdjointEigenSolver<MatrixXd>(m).eigenvalues().minCoeff() > 0);
}

TEST_CASE("gaussian: boundary levels s = 0 (clean data) and a = 0 (pure noise)") {
    const gaussian g(test_mean(), test_cov());
    const VectorXd x{{0.2, -0.7, 1.1}};
    // s = 0: x_t = a x0 exactly, so E[x0|x_t] = x/a, E[eps|x_t] = 0, Cov[x0|x_t] = 0, and the
    // optimal eps-loss is d (nothing about eps can be learnt).
    check_vectors_close(g.x0_mean(x, 0.5, 0.0), x / 0.5, 1e-14, 1e-14);
    check_vectors_close(g.eps_mean(x, 0.5, 0.0), VectorXd::Zero(3), 0.0, 0.0);
    check_matrices_close(g.x0_cov(0.5, 0.0), MatrixXd::Zero(3, 3), 0.0, 0.0);
    DIFFUSE_CHECK_CLOSE(g.optimal_eps_mse(0.5, 0.0), 3.0, 0.0, 1e-15);
    // a = 0: x_t = s eps carries no information on x0: E[x0|x_t] = μ, Cov[x0|x_t] = Σ, E[eps|x_t] = x/s.
    check_vectors_close(g.x0_mean(x, 0.0, 2.0), test_mean(), 1e-15, 1e-15);
    check_matrices_close(g.x0_cov(0.0, 2.0), test_cov(), 1e-14, 1e-14);
    check_vectors_close(g.eps_mean(x, 0.0, 2.0), x / 2.0, 1e-15, 1e-14);
    DIFFUSE_CHECK_CLOSE(g.optimal_eps_mse(0.0, 2.0), 0.0, 0.0, 0.0);
}

TEST_CASE("gaussian: constructors, accessors and convenience forms") {
    const gaussian g(test_mean(), test_cov());
    CHECK(g.dimension() == 3);
    check_vectors_close(g.mean(), test_mean(), 0.0, 0.0);
    check_matrices_close(g.cov(), test_cov(), 0.0, 0.0);
    const MatrixXd q = g.cov_eigenvectors();
    check_matrices_close(q * g.cov_eigenvalues().asDiagonal() * q.transpose(), test_cov(), 1e-14, 1e-14);
    check_matrices_close(q.transpose() * q, MatrixXd::Identity(3, 3), 1e-15, 0.0);

    const gaussian dg = gaussian::diagonal(VectorXd{{1.0, 2.0}}, VectorXd{{0.5, 3.0}});
    check_matrices_close(dg.cov(), MatrixXd(VectorXd{{0.5, 3.0}}.asDiagonal()), 0.0, 0.0);
    const gaussian ig = gaussian::isotropic(VectorXd{{1.0, 2.0}}, 0.25);
    check_matrices_close(ig.cov(), 0.25 * MatrixXd::Identity(2, 2), 0.0, 0.0);
    // Isotropic N(m, τ²I): E[x0|x_t] = m + aτ²/(a²τ² + s²)(x − am) coordinate-wise.
    const VectorXd x{{0.3, -0.1}};
    const double a = 0.6, s = 0.8, t2 = 0.25;
    check_vectors_close(ig.x0_mean(x, a, s),
                        VectorXd{{1.0, 2.0}} + a * t2 / (a * a * t2 + s * s) * (x - a * VectorXd{{1.0, 2.0}}),
                        1e-15, 1e-14);

    const auto vp = diffuse::analytic::vp_level(0.36);
    DIFFUSE_CHECK_CLOSE(vp.a, 0.6, 0.0, 1e-15);
    DIFFUSE_CHECK_CLOSE(vp.s, 0.8, 0.0, 1e-15);
    const auto ve = diffuse::analytic::ve_level(80.0);
    CHECK(ve.a == 1.0);
    CHECK(ve.s == 80.0);
}

TEST_CASE("gaussian: argument errors name the argument, the value and what is allowed") {
    const VectorXd mu = test_mean();
    MatrixXd asym = test_cov();
    asym(0, 1) += 0.5;
    DIFFUSE_CHECK_ERROR(gaussian(mu, asym), "cov(1,0) - cov(0,1)", "-0.5", "symmetric");
    MatrixXd indefinite = test_cov();
    indefinite(2, 2) = -1.0;
    DIFFUSE_CHECK_ERROR(gaussian(mu, indefinite), "smallest eigenvalue of cov", "positive definite");
    MatrixXd singular = MatrixXd::Zero(3, 3);
    singular(0, 0) = 1.0;
    singular(1, 1) = 1.0;
    DIFFUSE_CHECK_ERROR(gaussian(mu, singular), "smallest eigenvalue of cov = 0", "positive definite");
    DIFFUSE_CHECK_ERROR(gaussian(mu, MatrixXd::Identity(2, 2)), "cov shape", "\"2x2\"", "3x3");
    DIFFUSE_CHECK_ERROR(gaussian(mu, MatrixXd::Identity(3, 2)), "cov shape", "\"3x2\"");
    DIFFUSE_CHECK_ERROR(gaussian(VectorXd(0), MatrixXd(0, 0)), "mean.size() = 0", ">= 1");
    MatrixXd nan_cov = test_cov();
    nan_cov(1, 2) = std::numeric_limits<double>::quiet_NaN();
    DIFFUSE_CHECK_ERROR(gaussian(mu, nan_cov), "cov(1,2)", "finite");
    VectorXd nan_mean = mu;
    nan_mean(2) = std::numeric_limits<double>::infinity();
    DIFFUSE_CHECK_ERROR(gaussian(nan_mean, test_cov()), "mean[2] = inf", "finite");
    DIFFUSE_CHECK_ERROR(gaussian::diagonal(VectorXd{{1.0, 2.0}}, VectorXd{{0.5, -3.0}}),
                        "smallest eigenvalue of diag(variances) = -3");
    DIFFUSE_CHECK_ERROR(gaussian::diagonal(VectorXd{{1.0, 2.0}}, VectorXd{{0.5}}), "variances.size() = 1");
    DIFFUSE_CHECK_ERROR(gaussian::isotropic(VectorXd{{1.0}}, 0.0), "variance = 0", "> 0");

    const gaussian g(mu, test_cov());
    const VectorXd x{{0.1, 0.2, 0.3}};
    DIFFUSE_CHECK_ERROR(g.score(x, 0.5, -0.1), "s = -0.10000000000000001", ">= 0");
    DIFFUSE_CHECK_ERROR(g.x0_mean(x, -0.5, 0.1), "a = -0.5", ">= 0");
    DIFFUSE_CHECK_ERROR(g.log_prob(x, 0.0, 0.0), "s = 0", "> 0 when a = 0");
    DIFFUSE_CHECK_ERROR(g.eps_mean(x, 1.0, std::numeric_limits<double>::infinity()), "s = inf", "finite");
    DIFFUSE_CHECK_ERROR(g.x0_cov(std::nan(""), 1.0), "a = nan");
    DIFFUSE_CHECK_ERROR(g.optimal_eps_mse(1.0, -1.0), "s = -1");
    DIFFUSE_CHECK_ERROR(g.marginal_cov(0.0, 0.0), "s = 0");
    DIFFUSE_CHECK_ERROR(g.marginal_mean(-1.0), "a = -1");
    DIFFUSE_CHECK_ERROR(g.pf_ode_flow(x, 1.0, -2.0, 1.0, 0.5), "s_s = -2");
    DIFFUSE_CHECK_ERROR(g.pf_ode_flow(x, 1.0, 2.0, 0.0, 0.0), "s_t = 0", "when a_t = 0");
    DIFFUSE_CHECK_ERROR(g.pf_ode_matrix(-1.0, 2.0, 1.0, 0.5), "a_s = -1");
    DIFFUSE_CHECK_ERROR(g.score(VectorXd{{0.1, 0.2}}, 0.5, 0.5), "x.size() = 2", "d = 3");
    DIFFUSE_CHECK_ERROR(g.log_prob(MatrixXd::Zero(5, 2), 0.5, 0.5), "x.cols() = 2", "d = 3", "[n, d]");
    DIFFUSE_CHECK_ERROR(g.pf_ode_flow(MatrixXd::Zero(5, 4), 0.5, 0.5, 1.0, 0.1), "x_s.cols() = 4");
    DIFFUSE_CHECK_ERROR(g.from_standard_normal(MatrixXd::Zero(5, 4)), "z.cols() = 4");
    diffuse::philox_rng rng(1);
    DIFFUSE_CHECK_ERROR(g.sample(-1, rng), "n = -1", ">= 0");
    DIFFUSE_CHECK_ERROR(diffuse::analytic::vp_level(1.5), "alpha_bar = 1.5", "[0, 1]");
    DIFFUSE_CHECK_ERROR(diffuse::analytic::vp_level(-0.1), "alpha_bar = -0.10000000000000001");
    DIFFUSE_CHECK_ERROR(diffuse::analytic::ve_level(-1.0), "sigma = -1", ">= 0");
}
