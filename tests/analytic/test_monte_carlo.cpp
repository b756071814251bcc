// Monte-Carlo checks of the exact models against their own sampling distribution, with fixed
// Philox seeds (closed_forms.md B1, B3, F). Every check is a z-test of E[g] = 0 for a statistic g
// whose expectation is exactly 0 under the model: z = mean(g) / (sd(g)/√n) with the sample sd.
// Threshold: per test case a false-failure budget α = 1e-6, Bonferroni-split over its m
// assertions, so each asserts |z| < z_{1−α/(2m)} (= 4.89 for m = 1). By the CLT z is N(0, 1) up
// to O(1/√n) with n >= 4e4 here. The seeds are fixed, so the outcome is deterministic; α says how
// likely a change of seed is to fail spuriously.
#include <diffuse/analytic/gaussian.hpp>
#include <diffuse/analytic/gaussian_mixture.hpp>
#include <diffuse/core/philox.hpp>

#include "support/check.hpp"

#include <Eigen/Dense>

#include <cmath>
#include <cstddef>
#include <string>
#include <vector>

namespace {

using diffuse::philox_rng;
using diffuse::analytic::gaussian;
using diffuse::analytic::gaussian_mixture;
using Eigen::MatrixXd;
using Eigen::VectorXd;

// Two-sided normal quantile: the z with P(|Z| > z) = erfc(z/√2) = alpha, by bisection.
double z_threshold(double alpha) {
    double lo = 0.0, hi = 40.0;
    for (int i = 0; i < 200; ++i) {
        const double mid = 0.5 * (lo + hi);
        (std::erfc(mid / std::sqrt(2.0)) > alpha ? lo : hi) = mid;
    }
    return hi;
}

// z = mean(g) / (sd(g)/√n), sd with n − 1 degrees of freedom.
double z_statistic(const VectorXd& g) {
    const double n = static_cast<double>(g.size());
    const double mean = g.mean();
    const double var = (g.array() - mean).square().sum() / (n - 1);
    return mean / std::sqrt(var / n);
}

// Collects the statistics of one test case, then asserts each against the Bonferroni threshold.
class z_tests {
public:
    void add(std::string name, VectorXd g) { stats_.push_back({std::move(name), std::move(g)}); }
    void check() const {
        const double thr = z_threshold(1e-6 / static_cast<double>(stats_.size()));
        for (const auto& [name, g] : stats_) {
            const double z = z_statistic(g);
            CHECK_MESSAGE(std::abs(z) < thr, name << ": |z| = " << std::abs(z) << ", threshold " << thr
                                                  << " (m = " << stats_.size()
                                                  << " assertions, n = " << g.size() << ")");
        }
    }

private:
    struct stat {
        std::string name;
        VectorXd g;
    };
    std::vector<stat> stats_;
};

MatrixXd test_cov() {
    MatrixXd a(3, 3);
    a << 0.9, -0.4, 0.3, 0.2, 1.1, -0.5, -0.7, 0.3, 0.8;
    return a * a.transpose() / 3.0 + 0.1 * MatrixXd::Identity(3, 3);
}

MatrixXd standard_normals(Eigen::Index n, Eigen::Index d, philox_rng& rng) {
    Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> z(n, d);
    rng.fill_normal(z.data(), static_cast<std::size_t>(n * d));
    return z;
}

gaussian_mixture test_mixture() {
    MatrixXd c0(3, 3), c1(3, 3), c2(3, 3);
    c0 << 0.5, 0.1, -0.05, 0.1, 0.3, 0.05, -0.05, 0.05, 0.4;
    c1 << 0.2, -0.05, 0.02, -0.05, 0.6, -0.1, 0.02, -0.1, 0.25;
    c2 << 0.35, 0.12, 0.0, 0.12, 0.3, 0.08, 0.0, 0.08, 0.5;
    return gaussian_mixture(
        {0.25, 0.45, 0.3},
        {VectorXd{{-1.5, 0.5, 0.3}}, VectorXd{{1.2, -0.4, 0.8}}, VectorXd{{0.2, 1.5, -1.0}}}, {c0, c1, c2},
        {0, 1, 0});
}

}  // namespace

TEST_CASE("monte carlo: gaussian::sample has mean mu and covariance Sigma") {
    const VectorXd mu{{0.5, -1.0, 2.0}};
    const gaussian g(mu, test_cov());
    philox_rng rng(20240611, 1);
    const Eigen::Index n = 40000;
    const MatrixXd x = g.sample(n, rng);
    REQUIRE(x.rows() == n);
    z_tests t;
    const MatrixXd c = x.rowwise() - mu.transpose();
    for (int i = 0; i < 3; ++i) t.add("E[x_" + std::to_string(i) + " - mu]", c.col(i));
    for (int i = 0; i < 3; ++i)
        for (int j = i; j < 3; ++j)
            t.add("E[(x-mu)_" + std::to_string(i) + "(x-mu)_" + std::to_string(j) + " - Sigma_ij]",
                  (c.col(i).array() * c.col(j).array() - test_cov()(i, j)).matrix());
    t.check();
}

TEST_CASE(
    "monte carlo: gaussian denoiser: optimal loss d - s^2 tr V^-1, unbiased residuals, orthogonality, "
    "posterior covariance") {
    // For (x0, eps) drawn from the model and x_t = a x0 + s eps (closed_forms.md B1):
    //   E‖eps − E[eps|x_t]‖² = d − s² tr V⁻¹,   E[eps − E[eps|x_t]] = 0,
    //   E[(x0 − E[x0|x_t]) x_tᵀ] = 0 (the residual is orthogonal to every function of x_t),
    //   E[(x0 − x̂0)(x0 − x̂0)ᵀ] = Cov[x0|x_t] (constant in x_t for Gaussian data).
    const VectorXd mu{{0.5, -1.0, 2.0}};
    const gaussian g(mu, test_cov());
    philox_rng rng(7, 2);
    const Eigen::Index n = 50000;
    z_tests t;
    struct lv {
        const char* name;
        double a, s;
    };
    for (const lv& l : {lv{"VP abar=0.1", std::sqrt(0.1), std::sqrt(0.9)},
                        lv{"VP abar=0.7", std::sqrt(0.7), std::sqrt(0.3)}, lv{"VE sigma=2", 1.0, 2.0}}) {
        const std::string nm = l.name;
        const MatrixXd x0 = g.sample(n, rng);
        const MatrixXd eps = standard_normals(n, 3, rng);
        const MatrixXd xt = l.a * x0 + l.s * eps;
        const MatrixXd eps_res = eps - g.eps_mean(xt, l.a, l.s);
        const MatrixXd x0_res = x0 - g.x0_mean(xt, l.a, l.s);
        const MatrixXd post = g.x0_cov(l.a, l.s);
        t.add(nm + " |eps - eps_mean|^2 - optimal_eps_mse",
              (eps_res.rowwise().squaredNorm().array() - g.optimal_eps_mse(l.a, l.s)).matrix());
        for (int i = 0; i < 3; ++i) {
            t.add(nm + " (eps - eps_mean)_" + std::to_string(i), eps_res.col(i));
            for (int j = 0; j < 3; ++j)
                t.add(nm + " (x0 - x0_mean)_" + std::to_string(i) + " x_t," + std::to_string(j),
                      x0_res.col(i).cwiseProduct(xt.col(j)));
            for (int j = i; j < 3; ++j)
                t.add(nm + " residual outer product - x0_cov, entry " + std::to_string(i) + std::to_string(j),
                      (x0_res.col(i).array() * x0_res.col(j).array() - post(i, j)).matrix());
        }
    }
    t.check();
}

TEST_CASE("monte carlo: gaussian_mixture::sample: component frequencies, mean and covariance") {
    const gaussian_mixture gm = test_mixture();
    philox_rng rng(99, 5);
    const Eigen::Index n = 60000;
    const auto smp = gm.sample(n, rng);
    REQUIRE(smp.x.rows() == n);
    z_tests t;
    for (int k = 0; k < 3; ++k) {
        VectorXd ind(n);
        for (Eigen::Index i = 0; i < n; ++i)
            ind(i) = smp.component[static_cast<std::size_t>(i)] == k ? 1.0 : 0.0;
        t.add("1{k=" + std::to_string(k) + "} - pi_k",
              (ind.array() - gm.weights()[static_cast<std::size_t>(k)]).matrix());
    }
    const VectorXd mean = gm.mean();
    const MatrixXd cov = gm.cov();
    const MatrixXd c = smp.x.rowwise() - mean.transpose();
    for (int i = 0; i < 3; ++i) t.add("x_" + std::to_string(i) + " - E x", c.col(i));
    for (int i = 0; i < 3; ++i)
        for (int j = i; j < 3; ++j)
            t.add("centred outer product - Cov x, entry " + std::to_string(i) + std::to_string(j),
                  (c.col(i).array() * c.col(j).array() - cov(i, j)).matrix());
    t.check();
    // Labels are the components' classes; the draw is reproducible from the same seed and stream.
    for (Eigen::Index i = 0; i < n; ++i)
        CHECK(smp.label[static_cast<std::size_t>(i)] ==
              gm.labels()[static_cast<std::size_t>(smp.component[static_cast<std::size_t>(i)])]);
    philox_rng again(99, 5);
    const auto smp2 = gm.sample(n, again);
    CHECK(smp2.x == smp.x);
    CHECK(smp2.component == smp.component);
}

TEST_CASE(
    "monte carlo: gaussian_mixture calibration: responsibilities, Bayes classifier, orthogonality, posterior "
    "covariance") {
    // Under the model (closed_forms.md B3, B4), with k the true component and y its class:
    //   E[1{k=j} − r_j(x_t)] = 0 and E[(1{k=j} − r_j(x_t)) x_t] = 0   (r is p(k|x_t));
    //   E[1{y=c} − p_t(c|x_t)] = 0                                     (the Bayes classifier);
    //   E[(x0 − x̂0) x_tᵀ] = 0;  E[(x0 − x̂0)(x0 − x̂0)ᵀ − Cov[x0|x_t]] = 0 (law of total variance);
    //   E[‖eps − ε̂‖² − (a²/s²) tr Cov[x0|x_t]] = 0, since eps = (x_t − a x0)/s given x_t.
    const gaussian_mixture gm = test_mixture();
    philox_rng rng(31337, 0);
    const Eigen::Index n = 60000;
    z_tests t;
    struct lv {
        const char* name;
        double a, s;
    };
    for (const lv& l : {lv{"VP abar=0.2", std::sqrt(0.2), std::sqrt(0.8)},
                        lv{"VP abar=0.8", std::sqrt(0.8), std::sqrt(0.2)}, lv{"VE sigma=0.5", 1.0, 0.5}}) {
        const std::string nm = l.name;
        const auto smp = gm.sample(n, rng);
        const MatrixXd eps = standard_normals(n, 3, rng);
        const MatrixXd xt = l.a * smp.x + l.s * eps;
        const MatrixXd r = gm.responsibilities(xt, l.a, l.s);
        const MatrixXd cp = gm.class_posterior(xt, l.a, l.s);
        const MatrixXd x0_res = smp.x - gm.x0_mean(xt, l.a, l.s);
        const MatrixXd eps_res = eps - gm.eps_mean(xt, l.a, l.s);
        const std::vector<MatrixXd> post = gm.x0_covs(xt, l.a, l.s);
        for (int k = 0; k < 3; ++k) {
            VectorXd ind(n);
            for (Eigen::Index i = 0; i < n; ++i)
                ind(i) = smp.component[static_cast<std::size_t>(i)] == k ? 1.0 : 0.0;
            const VectorXd res = ind - r.col(k);
            t.add(nm + " 1{k=" + std::to_string(k) + "} - r_k", res);
            for (int i = 0; i < 3; ++i)
                t.add(nm + " (1{k=" + std::to_string(k) + "} - r_k) x_t," + std::to_string(i),
                      res.cwiseProduct(xt.col(i)));
        }
        for (int c = 0; c < 2; ++c) {
            VectorXd ind(n);
            for (Eigen::Index i = 0; i < n; ++i)
                ind(i) = smp.label[static_cast<std::size_t>(i)] == c ? 1.0 : 0.0;
            t.add(nm + " 1{y=" + std::to_string(c) + "} - p(y|x_t)", ind - cp.col(c));
        }
        VectorXd mse(n);
        for (Eigen::Index i = 0; i < n; ++i)
            mse(i) = eps_res.row(i).squaredNorm() -
                     l.a * l.a / (l.s * l.s) * post[static_cast<std::size_t>(i)].trace();
        t.add(nm + " |eps - eps_mean|^2 - (a/s)^2 tr x0_cov", mse);
        for (int i = 0; i < 3; ++i) {
            for (int j = 0; j < 3; ++j)
                t.add(nm + " (x0 - x0_mean)_" + std::to_string(i) + " x_t," + std::to_string(j),
                      x0_res.col(i).cwiseProduct(xt.col(j)));
            for (int j = i; j < 3; ++j) {
                VectorXd gij(n);
                for (Eigen::Index p = 0; p < n; ++p)
                    gij(p) = x0_res(p, i) * x0_res(p, j) - post[static_cast<std::size_t>(p)](i, j);
                t.add(nm + " residual outer product - x0_cov, entry " + std::to_string(i) + std::to_string(j),
                      gij);
            }
        }
    }
    t.check();
}
