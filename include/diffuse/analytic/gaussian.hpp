#pragma once
// Exact model for Gaussian data x0 ~ N(μ, Σ) (docs/exact_models.md §2–§4).
//
// The noisy point x_t = a·x0 + s·eps (eps ~ N(0, I)) is Gaussian, x_t ~ N(aμ, V) with
// V = a²Σ + s²I. The covariance is decomposed once, Σ = Q diag(λ) Qᵀ, so V = Q diag(v) Qᵀ with
// v_i = a²λ_i + s², and every quantity below is a diagonal map in the eigenbasis:
//
//   E[x0 | x_t]   = μ + a Σ V⁻¹ (x_t − aμ)      = μ + Q diag(aλ/v) Qᵀ (x_t − aμ)
//   E[eps | x_t]  = s V⁻¹ (x_t − aμ)             = Q diag(s/v) Qᵀ (x_t − aμ)
//   ∇ log p_t     = −V⁻¹ (x_t − aμ)              = −Q diag(1/v) Qᵀ (x_t − aμ)
//   Cov[x0 | x_t] = Σ − a² Σ V⁻¹ Σ = s² Σ V⁻¹    = Q diag(λs²/v) Qᵀ
//   min_f E‖eps − f(x_t)‖² = d − s² tr V⁻¹      = Σ_i a²λ_i / v_i
//   PF-ODE map    x_t − a_t μ = V_t^{1/2} V_s^{-1/2} (x_s − a_s μ) = Q diag(√(v_t/v_s)) Qᵀ (x_s − a_s μ)
//
// Tweedie's formula E[x0|x_t] = (x_t + s²∇log p_t)/a and E[eps|x_t] = −s∇log p_t follow; both
// are checked in tests/analytic/test_gaussian.cpp. Any a >= 0, s >= 0 with a > 0 or s > 0 is
// accepted (V is then positive definite), so s = 0 (clean data) and a = 0 (pure noise) work.
//
// Points and batches: methods taking x accept one point (a column vector [d], e.g. VectorXd)
// and return a vector [d] (or a double), or a batch of points as rows (MatrixXd [n, d]) and
// return [n, d] (or [n]). Host-only double math on Eigen types.

#include <diffuse/analytic/detail/checks.hpp>
#include <diffuse/analytic/noise_level.hpp>
#include <diffuse/core/error.hpp>
#include <diffuse/core/philox.hpp>

#include <Eigen/Dense>

#include <cmath>
#include <cstddef>
#include <numbers>
#include <string>
#include <string_view>
#include <utility>

namespace diffuse::analytic {

class gaussian_mixture;

class gaussian {
public:
    /// N(mean, cov). mean: [d], d >= 1, finite. cov: [d, d], symmetric positive definite
    /// (see detail::checked_covariance for the exact tolerances). Throws diffuse::error otherwise.
    gaussian(Eigen::VectorXd mean, Eigen::MatrixXd cov)
        : gaussian(std::move(mean), std::move(cov), "mean", "cov") {}

    /// N(mean, diag(variances)); every variance finite and > 0.
    static gaussian diagonal(Eigen::VectorXd mean, const Eigen::VectorXd& variances) {
        require(variances.size() == mean.size(), "variances.size()", static_cast<long long>(variances.size()),
                "mean.size() = " + std::to_string(mean.size()));
        return gaussian(std::move(mean), Eigen::MatrixXd(variances.asDiagonal()), "mean", "diag(variances)");
    }

    /// N(mean, variance·I); variance finite and > 0.
    static gaussian isotropic(Eigen::VectorXd mean, double variance) {
        require_positive(variance, "variance");
        const Eigen::Index d = mean.size();
        return gaussian(std::move(mean), variance * Eigen::MatrixXd::Identity(d, d), "mean", "variance·I");
    }

    Eigen::Index dimension() const { return mean_.size(); }
    const Eigen::VectorXd& mean() const { return mean_; }
    /// Σ as given (its symmetric part).
    const Eigen::MatrixXd& cov() const { return cov_; }
    /// λ: eigenvalues of Σ, ascending, [d].
    const Eigen::VectorXd& cov_eigenvalues() const { return lambda_; }
    /// Q: orthonormal eigenvectors of Σ as columns, [d, d]; Σ = Q diag(λ) Qᵀ.
    const Eigen::MatrixXd& cov_eigenvectors() const { return q_; }

    /// E[x_t] = aμ, [d].
    Eigen::VectorXd marginal_mean(double a) const {
        require_nonnegative(a, "a");
        return a * mean_;
    }

    /// Cov[x_t] = V = a²Σ + s²I, [d, d].
    Eigen::MatrixXd marginal_cov(double a, double s) const {
        detail::check_noise_level(a, s);
        Eigen::MatrixXd v = (a * a) * cov_;
        v.diagonal().array() += s * s;
        return v;
    }

    /// E[x0 | x_t] = μ + aΣV⁻¹(x_t − aμ). x: [d] or [n, d]; result has the shape of x.
    template <class Derived>
    auto x0_mean(const Eigen::MatrixBase<Derived>& x, double a, double s) const {
        detail::check_noise_level(a, s);
        const Eigen::MatrixXd r = centred_rows(x, a, "x");
        const Eigen::ArrayXd v = noisy_eigenvalues(a, s);
        Eigen::MatrixXd out = spectral_map(r, (a * lambda_.array() / v).matrix());
        out.rowwise() += mean_.transpose();
        return detail::rows_result<Derived>(std::move(out));
    }

    /// E[eps | x_t] = sV⁻¹(x_t − aμ). x: [d] or [n, d]; result has the shape of x.
    template <class Derived>
    auto eps_mean(const Eigen::MatrixBase<Derived>& x, double a, double s) const {
        detail::check_noise_level(a, s);
        const Eigen::MatrixXd r = centred_rows(x, a, "x");
        const Eigen::ArrayXd v = noisy_eigenvalues(a, s);
        return detail::rows_result<Derived>(spectral_map(r, (s / v).matrix()));
    }

    /// ∇ₓ log p_t(x) = −V⁻¹(x − aμ). x: [d] or [n, d]; result has the shape of x.
    template <class Derived>
    auto score(const Eigen::MatrixBase<Derived>& x, double a, double s) const {
        detail::check_noise_level(a, s);
        const Eigen::MatrixXd r = centred_rows(x, a, "x");
        const Eigen::ArrayXd v = noisy_eigenvalues(a, s);
        return detail::rows_result<Derived>(spectral_map(r, (-1.0 / v).matrix()));
    }

    /// log p_t(x) = log N(x; aμ, V) = −½ Σ_i y_i²/v_i − ½ Σ_i log v_i − (d/2) log 2π, y = Qᵀ(x − aμ).
    /// x: [d] -> double, or [n, d] -> [n].
    template <class Derived>
    auto log_prob(const Eigen::MatrixBase<Derived>& x, double a, double s) const {
        detail::check_noise_level(a, s);
        return detail::scalar_result<Derived>(log_prob_rows(centred_rows(x, a, "x"), a, s));
    }

    /// Cov[x0 | x_t] = s²ΣV⁻¹ = Q diag(λs²/v) Qᵀ, [d, d] (the same for every x_t).
    Eigen::MatrixXd x0_cov(double a, double s) const {
        detail::check_noise_level(a, s);
        const Eigen::ArrayXd v = noisy_eigenvalues(a, s);
        return symmetric_spectral((lambda_.array() * (s * s) / v).matrix());
    }

    /// The optimal denoising loss min_f E‖eps − f(x_t)‖² = E‖eps − E[eps|x_t]‖² = d − s² tr V⁻¹,
    /// computed as Σ_i a²λ_i/v_i (no cancellation when s²/v_i ≈ 1).
    double optimal_eps_mse(double a, double s) const {
        detail::check_noise_level(a, s);
        const Eigen::ArrayXd v = noisy_eigenvalues(a, s);
        return ((a * a) * lambda_.array() / v).sum();
    }

    /// M = V_t^{1/2} V_s^{-1/2} = Q diag(√(v_t/v_s)) Qᵀ, [d, d]: the linear part of the exact
    /// probability-flow ODE map from level (a_s, s_s) to level (a_t, s_t).
    Eigen::MatrixXd pf_ode_matrix(double a_s, double s_s, double a_t, double s_t) const {
        return symmetric_spectral(flow_factors(a_s, s_s, a_t, s_t).matrix());
    }

    /// The exact solution of the probability-flow ODE started at x_s on level (a_s, s_s), read at
    /// level (a_t, s_t):  x_t = a_t μ + V_t^{1/2} V_s^{-1/2} (x_s − a_s μ).
    /// Valid for every path (a(τ), s(τ)) between the two levels — VP, VE/EDM, or any other — and in
    /// both directions (docs/exact_models.md §4). x_s: [d] or [n, d]; result has the shape of x_s.
    template <class Derived>
    auto pf_ode_flow(const Eigen::MatrixBase<Derived>& x_s, double a_s, double s_s, double a_t,
                     double s_t) const {
        const Eigen::ArrayXd f = flow_factors(a_s, s_s, a_t, s_t);
        const Eigen::MatrixXd r = centred_rows(x_s, a_s, "x_s");
        Eigen::MatrixXd out = spectral_map(r, f.matrix());
        out.rowwise() += (a_t * mean_).transpose();
        return detail::rows_result<Derived>(std::move(out));
    }

    /// Maps standard-normal rows z [n, d] to data rows x = μ + Q diag(√λ) z, [n, d]
    /// (x ~ N(μ, Σ) when z ~ N(0, I)).
    Eigen::MatrixXd from_standard_normal(const Eigen::MatrixXd& z) const {
        require(z.cols() == dimension(), "z.cols()", static_cast<long long>(z.cols()),
                "the model dimension d = " + std::to_string(dimension()));
        Eigen::MatrixXd out = z * (lambda_.array().sqrt().matrix().asDiagonal() * q_.transpose());
        out.rowwise() += mean_.transpose();
        return out;
    }

    /// n samples of the data distribution N(μ, Σ) as rows, [n, d]. Draws n·d normals from rng
    /// (row i uses draws i·d … i·d + d − 1 of this call) and maps them with from_standard_normal.
    Eigen::MatrixXd sample(Eigen::Index n, philox_rng& rng) const {
        require(n >= 0, "n", static_cast<long long>(n), ">= 0");
        Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> z(n, dimension());
        rng.fill_normal(z.data(), static_cast<std::size_t>(n * dimension()));
        return from_standard_normal(z);
    }

private:
    friend class gaussian_mixture;

    // Validating constructor; the names are those of the caller's arguments, for the messages.
    gaussian(Eigen::VectorXd mean, Eigen::MatrixXd cov, std::string_view mean_name, std::string_view cov_name)
        : mean_(std::move(mean)) {
        if (mean_.size() < 1) {
            fail_argument(std::string(mean_name) + ".size()", static_cast<long long>(mean_.size()), ">= 1");
        }
        detail::check_finite_vector(mean_, mean_name);
        const auto eig = detail::checked_covariance(cov, mean_.size(), cov_name);
        cov_ = 0.5 * (cov + cov.transpose());
        lambda_ = eig.eigenvalues();
        q_ = eig.eigenvectors();
    }

    // v_i = a²λ_i + s², the eigenvalues of V.
    Eigen::ArrayXd noisy_eigenvalues(double a, double s) const { return (a * a) * lambda_.array() + s * s; }

    // √(v_t,i / v_s,i): the PF-ODE factors per eigendirection.
    Eigen::ArrayXd flow_factors(double a_s, double s_s, double a_t, double s_t) const {
        detail::check_noise_level(a_s, s_s, "a_s", "s_s");
        detail::check_noise_level(a_t, s_t, "a_t", "s_t");
        return (noisy_eigenvalues(a_t, s_t) / noisy_eigenvalues(a_s, s_s)).sqrt();
    }

    // Rows of x minus aμ, [n, d], with the dimension check.
    template <class Derived>
    Eigen::MatrixXd centred_rows(const Eigen::MatrixBase<Derived>& x, double a, std::string_view name) const {
        Eigen::MatrixXd r = detail::as_rows(x, dimension(), name);
        r.rowwise() -= (a * mean_).transpose();
        return r;
    }

    // Rows r [n, d] -> rows of (Q diag(c) Qᵀ r), i.e. r Q diag(c) Qᵀ.
    Eigen::MatrixXd spectral_map(const Eigen::MatrixXd& r, const Eigen::VectorXd& c) const {
        return ((r * q_) * c.asDiagonal()) * q_.transpose();
    }

    // Q diag(c) Qᵀ, symmetrised against rounding.
    Eigen::MatrixXd symmetric_spectral(const Eigen::VectorXd& c) const {
        const Eigen::MatrixXd m = q_ * c.asDiagonal() * q_.transpose();
        return 0.5 * (m + m.transpose());
    }

    // log N(x; aμ, V) for centred rows r = x − aμ, [n].
    Eigen::VectorXd log_prob_rows(const Eigen::MatrixXd& r, double a, double s) const {
        const Eigen::ArrayXd v = noisy_eigenvalues(a, s);
        const Eigen::MatrixXd y = r * q_;  // rows of Qᵀ(x − aμ)
        const double log_norm =
            -0.5 * v.log().sum() - 0.5 * static_cast<double>(dimension()) * std::log(2.0 * std::numbers::pi);
        Eigen::VectorXd out(r.rows());
        for (Eigen::Index i = 0; i < r.rows(); ++i) {
            out(i) = -0.5 * (y.row(i).transpose().array().square() / v).sum() + log_norm;
        }
        return out;
    }

    Eigen::VectorXd mean_;
    Eigen::MatrixXd cov_;
    Eigen::VectorXd lambda_;
    Eigen::MatrixXd q_;
};

}  // namespace diffuse::analytic
