#pragma once
// Independent references and element-wise checks on Eigen vectors and matrices, for the tests
// of the exact models.

#include "support/check.hpp"

#include <diffuse/analytic/noise_level.hpp>

#include <Eigen/Dense>

#include <cmath>
#include <initializer_list>
#include <numbers>
#include <string>
#include <vector>

namespace diffuse::test {

/// A named noise level (a, s) of x_t = a·x0 + s·eps.
struct level {
    std::string name;
    double a;
    double s;
};

/// VP levels at the given ᾱ, VE/EDM levels σ = 80, 1, 0.002, and one level of neither form
/// (a² + s² ≠ 1, a ≠ 1).
inline std::vector<level> test_levels(std::initializer_list<double> alpha_bars) {
    std::vector<level> out;
    for (double ab : alpha_bars) {
        const auto [a, s] = analytic::vp_level(ab);
        out.push_back({"VP alpha_bar=" + std::to_string(ab), a, s});
    }
    for (double sigma : {80.0, 1.0, 0.002}) {
        const auto [a, s] = analytic::ve_level(sigma);
        out.push_back({"VE sigma=" + std::to_string(sigma), a, s});
    }
    out.push_back({"general a=0.6 s=0.3", 0.6, 0.3});
    return out;
}

/// log N(x; m, V) by a plain Cholesky solve (independent of the models' eigendecompositions).
inline double ref_log_normal(const Eigen::VectorXd& x, const Eigen::VectorXd& m, const Eigen::MatrixXd& v) {
    const Eigen::LLT<Eigen::MatrixXd> llt(v);
    const Eigen::VectorXd r = x - m;
    return -0.5 * r.dot(llt.solve(r)) - llt.matrixLLT().diagonal().array().log().sum() -
           0.5 * static_cast<double>(x.size()) * std::log(2.0 * std::numbers::pi);
}

/// DIFFUSE_CHECK_CLOSE on every element.
inline void check_vectors_close(const Eigen::VectorXd& actual, const Eigen::VectorXd& expected, double atol,
                                double rtol) {
    REQUIRE(actual.size() == expected.size());
    for (Eigen::Index i = 0; i < actual.size(); ++i) DIFFUSE_CHECK_CLOSE(actual(i), expected(i), atol, rtol);
}

inline void check_matrices_close(const Eigen::MatrixXd& actual, const Eigen::MatrixXd& expected, double atol,
                                 double rtol) {
    REQUIRE(actual.rows() == expected.rows());
    REQUIRE(actual.cols() == expected.cols());
    for (Eigen::Index j = 0; j < actual.cols(); ++j)
        for (Eigen::Index i = 0; i < actual.rows(); ++i) DIFFUSE_CHECK_CLOSE(actual(i, j), expected(i, j), atol, rtol);
}

}  // namespace diffuse::test
