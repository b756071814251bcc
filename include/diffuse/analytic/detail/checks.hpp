#pragma once
// Internals of analytic/: argument checks shared by gaussian and gaussian_mixture, and the
// point/batch dispatch of their methods.
//
// Point or batch: a method called with an expression whose column count is 1 at compile time
// (Eigen::VectorXd, or any column-vector expression such as `x + h * e`) treats it as ONE point
// of shape [d] and returns a vector; anything else (Eigen::MatrixXd, a row vector) is a batch of
// points stored as rows, shape [n, d], and the method returns one result row per point.

#include <diffuse/core/error.hpp>

#include <Eigen/Dense>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <string_view>

namespace diffuse::analytic::detail {

/// True when Derived is a column vector at compile time, i.e. one point of shape [d].
template <class Derived>
inline constexpr bool is_point = Derived::ColsAtCompileTime == 1;

/// Checks a noise level x_t = a·x0 + s·eps: a >= 0 and s >= 0 finite, not both 0 (at a = s = 0
/// x_t ≡ 0 has no density). With a covariance that is positive definite, every quantity below is
/// then finite: the eigenvalues a²λ + s² of V = a²Σ + s²I are > 0.
inline void check_noise_level(double a, double s, std::string_view a_name = "a",
                              std::string_view s_name = "s") {
    require_nonnegative(a, a_name);
    require_nonnegative(s, s_name);
    if (a == 0.0 && s == 0.0) {
        fail_argument(s_name, s,
                      std::string("> 0 when ") + std::string(a_name) +
                          " = 0 (x_t = a·x0 + s·eps needs a > 0 or s > 0 to have a density)");
    }
}

/// Copies a point ([d], as one row) or a batch ([n, d]) into an [n, d] matrix of rows,
/// checking the dimension against d.
template <class Derived>
Eigen::MatrixXd as_rows(const Eigen::MatrixBase<Derived>& x, Eigen::Index d, std::string_view name) {
    if constexpr (is_point<Derived>) {
        if (x.size() != d) {
            fail_argument(std::string(name) + ".size()", static_cast<long long>(x.size()),
                          "the model dimension d = " + std::to_string(d));
        }
        return x.transpose();
    } else {
        if (x.cols() != d) {
            fail_argument(std::string(name) + ".cols()", static_cast<long long>(x.cols()),
                          "the model dimension d = " + std::to_string(d) +
                              " (a batch holds one point per row, shape [n, d])");
        }
        return x;
    }
}

/// The inverse of as_rows for per-point vector results: a point gets its single row back as a
/// column vector [d]; a batch gets the [n, d] matrix.
template <class Derived>
auto rows_result(Eigen::MatrixXd rows) {
    if constexpr (is_point<Derived>) {
        return Eigen::VectorXd(rows.row(0).transpose());
    } else {
        return rows;
    }
}

/// Per-point scalar results: a point gets a double, a batch a vector [n].
template <class Derived>
auto scalar_result(Eigen::VectorXd values) {
    if constexpr (is_point<Derived>) {
        return values(0);
    } else {
        return values;
    }
}

/// Checks the entries of a vector are finite.
inline void check_finite_vector(const Eigen::VectorXd& v, std::string_view name) {
    for (Eigen::Index i = 0; i < v.size(); ++i) {
        if (!std::isfinite(v(i))) {
            fail_argument(std::string(name) + "[" + std::to_string(i) + "]", v(i), "a finite number");
        }
    }
}

/// Validates a covariance matrix for a model of dimension d and returns its eigendecomposition
/// Σ = Q diag(λ) Qᵀ (λ ascending). Requirements, each with its own message:
///   * shape d×d;
///   * finite entries;
///   * symmetric: |Σ_ij − Σ_ji| <= 64·u·max|Σ| (u = 2^-53); the symmetric part is decomposed;
///   * positive definite: λ_min > 8·d·u·λ_max. Below that threshold the sign of λ_min is not
///     resolved by a backward-stable eigensolver (its eigenvalue error is O(d·u·‖Σ‖)).
inline Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> checked_covariance(const Eigen::MatrixXd& cov,
                                                                         Eigen::Index d,
                                                                         std::string_view name) {
    const std::string nm(name);
    if (cov.rows() != d || cov.cols() != d) {
        fail_argument(nm + " shape", std::to_string(cov.rows()) + "x" + std::to_string(cov.cols()),
                      "a square " + std::to_string(d) + "x" + std::to_string(d) +
                          " matrix (d = the dimension of the mean)");
    }
    for (Eigen::Index j = 0; j < d; ++j) {
        for (Eigen::Index i = 0; i < d; ++i) {
            if (!std::isfinite(cov(i, j))) {
                fail_argument(nm + "(" + std::to_string(i) + "," + std::to_string(j) + ")", cov(i, j),
                              "a finite number");
            }
        }
    }
    constexpr double u = std::numeric_limits<double>::epsilon() / 2;
    const double scale = cov.cwiseAbs().maxCoeff();
    const double sym_tol = 64 * u * scale;
    for (Eigen::Index j = 0; j < d; ++j) {
        for (Eigen::Index i = j + 1; i < d; ++i) {
            const double asym = cov(i, j) - cov(j, i);
            if (!(std::abs(asym) <= sym_tol)) {
                fail_argument(nm + "(" + std::to_string(i) + "," + std::to_string(j) + ") - " + nm + "(" +
                                  std::to_string(j) + "," + std::to_string(i) + ")",
                              asym,
                              "a symmetric matrix (|" + nm + "(i,j) - " + nm +
                                  "(j,i)| <= " + ::diffuse::detail::format_value(sym_tol) + ")");
            }
        }
    }
    const Eigen::MatrixXd sym = 0.5 * (cov + cov.transpose());
    Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> eig(sym);
    if (eig.info() != Eigen::Success) {
        fail(nm + ": the symmetric eigensolver did not converge");
    }
    const double lmin = eig.eigenvalues()(0);
    const double lmax = eig.eigenvalues()(d - 1);
    const double pd_tol = 8.0 * static_cast<double>(d) * u * std::max(lmax, 0.0);
    if (!(lmin > pd_tol) || !(lmin > 0.0)) {
        fail_argument("smallest eigenvalue of " + nm, lmin,
                      "> " + ::diffuse::detail::format_value(pd_tol) + " (" + nm +
                          " must be positive definite: every eigenvalue above 8·d·2^-53 times the largest, " +
                          ::diffuse::detail::format_value(lmax) + ")");
    }
    return eig;
}

}  // namespace diffuse::analytic::detail
