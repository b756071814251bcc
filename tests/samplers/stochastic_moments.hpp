#pragma once
// Moments of stochastic samplers with an exact affine denoiser (closed_forms C9 / F1, F3).
//
// exact_output_moments: with an exact Gaussian denoiser every sampler output is affine in
// (x_T, z_1 .. z_J): x_out = c + A x_T + Σ_j B_j z_j. One run on 1 + d + J·d probe rows reads the
// map off exactly (row 0: x_T = E[x_T], all z = 0; rows 1..d: x_T = E[x_T] + L e_k with
// L Lᵀ = Cov[x_T]; then one row per noise injection j and component k: z_j = e_k), so
//   E[x_out] = row 0,  Cov[x_out] = Σ_rows (row − row 0)(row − row 0)ᵀ
// up to rounding, for the real sampler code (step_with_noise), no Monte Carlo.
//
// mc_check: a fixed-seed Monte-Carlo check of n samples against predicted N(m, V), in the
// eigenbasis of V where the components are independent: per component a mean z-test, a
// χ²_{n−1} variance test (Wilson–Hilferty quantiles) and, per pair, a correlation test
// (√n·r ≈ N(0, 1)); Bonferroni over all of them at total false-failure rate alpha (closed_forms F2–F3).
// mc_sampler_check runs the sample() driver on n fixed-seed draws of x_T and applies mc_check.
//
// exact_moment_ladder: exact_output_moments for a ladder of step counts against a target, the
// weak-error protocol of the DPM++ stochastic tests.

#include <diffuse/core/eigen_adapter.hpp>
#include <diffuse/core/philox.hpp>
#include <diffuse/core/tensor.hpp>
#include <diffuse/models/denoiser.hpp>
#include <diffuse/samplers/sampler.hpp>

#include "samplers/fixtures.hpp"

#include <doctest/doctest.h>

#include <Eigen/Dense>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace diffuse::test {

struct gaussian_moments {
    Eigen::VectorXd mean;
    Eigen::MatrixXd cov;
};

/// Runs the stochastic sampler s (members num_steps, uses_noise, model_level, model_input_scale,
/// step_with_noise) on probe rows from x_T ~ N(mean_T, cov_T); returns the exact output moments.
template <class Sm, class M>
gaussian_moments exact_output_moments(Sm& s, const M& model, const Eigen::VectorXd& mean_T, const Eigen::MatrixXd& cov_T) {
    const Eigen::Index d = mean_T.size();
    Eigen::Index J = 0;
    for (std::size_t i = 0; i < s.num_steps(); ++i) J += s.uses_noise(i) ? 1 : 0;
    const Eigen::Index rows = 1 + d + J * d;
    const Eigen::MatrixXd L = cov_T.llt().matrixL();
    Eigen::MatrixXd x0 = mean_T.transpose().replicate(rows, 1);
    for (Eigen::Index k = 0; k < d; ++k) x0.row(1 + k) += L.col(k).transpose();
    tensor<double, host_space> x = to_tensor(x0), in(x.shape()), out(x.shape()), z(x.shape());
    Eigen::Index j = 0;
    for (std::size_t i = 0; i < s.num_steps(); ++i) {
        lincomb(in.view(), s.model_input_scale(i), x.cview());
        model(out.view(), in.cview(), s.model_level(i));
        auto zm = as_eigen_matrix(z);
        zm.setZero();
        if (s.uses_noise(i)) {
            for (Eigen::Index k = 0; k < d; ++k) zm(1 + d + j * d + k, k) = 1.0;
            ++j;
        }
        s.step_with_noise(out.cview(), model.prediction(), i, x.view(), z.cview());
    }
    const Eigen::MatrixXd y = to_matrix(x);
    const Eigen::MatrixXd r = y.bottomRows(rows - 1).rowwise() - y.row(0);
    return {y.row(0).transpose(), r.transpose() * r};
}

/// Φ^{-1}(p) for p in (0, 1), by bisection on erfc (|error| < 1e-12).
inline double normal_quantile(double p) {
    double lo = -40.0, hi = 40.0;
    for (int it = 0; it < 200; ++it) {
        const double mid = 0.5 * (lo + hi);
        if (0.5 * std::erfc(-mid / std::sqrt(2.0)) < p)
            lo = mid;
        else
            hi = mid;
    }
    return 0.5 * (lo + hi);
}

/// Wilson–Hilferty χ²_ν quantile at the standard-normal quantile z (relative error < 1e-4 for ν >= 1000).
inline double chi2_quantile_wh(double nu, double z) {
    const double c = 2.0 / (9.0 * nu);
    const double t = 1.0 - c + z * std::sqrt(c);
    return nu * t * t * t;
}

/// Checks the rows of `samples` [n, d] against N(m, V) (see the file comment) at total
/// false-failure rate alpha; returns the largest |z| seen (for the log).
inline double mc_check(const Eigen::MatrixXd& samples, const Eigen::VectorXd& m, const Eigen::MatrixXd& V, double alpha) {
    const Eigen::Index n = samples.rows(), d = samples.cols();
    const Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(V);
    const Eigen::MatrixXd y = (samples.rowwise() - m.transpose()) * es.eigenvectors();  // independent columns
    const Eigen::VectorXd lam = es.eigenvalues();
    const double tests = static_cast<double>(2 * d + d * (d - 1) / 2);
    const double z = normal_quantile(1.0 - alpha / tests / 2.0);  // two-sided, Bonferroni
    const double nu = static_cast<double>(n - 1);
    const double chi_lo = chi2_quantile_wh(nu, -z), chi_hi = chi2_quantile_wh(nu, z);
    double worst = 0.0;
    const Eigen::VectorXd ybar = y.colwise().mean();
    const Eigen::MatrixXd yc = y.rowwise() - ybar.transpose();
    const Eigen::MatrixXd S = yc.transpose() * yc / nu;
    for (Eigen::Index k = 0; k < d; ++k) {
        const double zm = ybar(k) / std::sqrt(lam(k) / static_cast<double>(n));
        const double stat = nu * S(k, k) / lam(k);
        const double zv = (stat - nu) / std::sqrt(2.0 * nu);
        worst = std::max({worst, std::abs(zm), std::abs(zv)});
        CHECK_MESSAGE(std::abs(zm) < z, "component " << k << ": mean z = " << zm << ", bound " << z);
        CHECK_MESSAGE((stat > chi_lo && stat < chi_hi),
                      "component " << k << ": (n−1)S²/λ = " << stat << " outside [" << chi_lo << ", " << chi_hi << "]");
        for (Eigen::Index l = k + 1; l < d; ++l) {
            const double rz = S(k, l) / std::sqrt(S(k, k) * S(l, l)) * std::sqrt(static_cast<double>(n));
            worst = std::max(worst, std::abs(rz));
            CHECK_MESSAGE(std::abs(rz) < z, "components " << k << ", " << l << ": √n·r = " << rz << ", bound " << z);
        }
    }
    return worst;
}

/// n rows of N(mean, cov): mean + L z with L Lᵀ = cov (Cholesky) and z [n, d] row-major standard
/// normals drawn from rng.
inline Eigen::MatrixXd gaussian_rows(const Eigen::VectorXd& mean, const Eigen::MatrixXd& cov, Eigen::Index n, philox_rng& rng) {
    const Eigen::MatrixXd L = cov.llt().matrixL();
    Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> z(n, mean.size());
    rng.fill_normal(z.data(), static_cast<std::size_t>(z.size()));
    Eigen::MatrixXd x = Eigen::MatrixXd(z) * L.transpose();
    x.rowwise() += mean.transpose();
    return x;
}

/// The Monte-Carlo moment test of a stochastic sampler (closed_forms F3): n rows x_T ~ N(mean_T,
/// cov_T) drawn from philox_rng(seed), the sample() driver continuing on the same rng, then
/// mc_check of the outputs against N(expect.mean, expect.cov) at total false-failure rate alpha.
/// Returns the largest |z| seen.
template <class M, class Sm>
double mc_sampler_check(const M& model, Sm& s, const Eigen::VectorXd& mean_T, const Eigen::MatrixXd& cov_T, Eigen::Index n,
                        std::uint64_t seed, const gaussian_moments& expect, double alpha) {
    philox_rng rng(seed);
    auto x = to_tensor(gaussian_rows(mean_T, cov_T, n, rng));
    samplers::sample(model, s, x, rng);
    return mc_check(to_matrix(x), expect.mean, expect.cov, alpha);
}

/// For each K in ks: the exact output moments of make(K) from x_T ~ N(mean_T, cov_T) against the
/// target N(target.mean, target.cov). Logs "name, K = k: |mean error| .., max |Cov − target| .."
/// and checks max |mean − target.mean| < 1e-12 for each K (the map is affine about the mean, which
/// every step preserves: rounding only). Returns max |Cov − target.cov| for each K.
template <class Make, class M>
std::vector<double> exact_moment_ladder(Make make, const M& model, const Eigen::VectorXd& mean_T, const Eigen::MatrixXd& cov_T,
                                        const gaussian_moments& target, const std::vector<int>& ks, const std::string& name) {
    std::vector<double> errs;
    for (int K : ks) {
        auto s = make(K);
        const gaussian_moments mo = exact_output_moments(s, model, mean_T, cov_T);
        const double mean_err = (mo.mean - target.mean).cwiseAbs().maxCoeff();
        errs.push_back((mo.cov - target.cov).cwiseAbs().maxCoeff());
        MESSAGE(name << ", K = " << K << ": |mean error| " << mean_err << ", max |Cov − target| " << errs.back());
        CHECK(mean_err < 1e-12);
    }
    return errs;
}

}  // namespace diffuse::test
