#pragma once
// Independent references and element-wise checks on Eigen vectors and matrices, for the tests
// of the exact models.

#include "support/check.hpp"

#include <Eigen/Dense>

#include <cmath>
#include <numbers>

namespace diffuse::test {

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
