#pragma once
// Shared helpers of the samplers/ tests: Eigen <-> tensor copies, points of an exact marginal,
// and the least-squares convergence order. The Gaussian fixture is the models/ tests' one.

#include <diffuse/analytic/gaussian.hpp>
#include <diffuse/core/eigen_adapter.hpp>
#include <diffuse/core/philox.hpp>
#include <diffuse/core/tensor.hpp>

#include "models/fixtures.hpp"

#include <Eigen/Dense>

#include <cmath>
#include <cstdint>
#include <vector>

namespace diffuse::test {

/// The 3-D Gaussian with full covariance and non-zero mean used by the sampler tests.
inline analytic::gaussian gaussian3() { return test_gaussian(); }

inline tensor<double, host_space> to_tensor(const Eigen::MatrixXd& m) {
    tensor<double, host_space> t(shape{m.rows(), m.cols()});
    as_eigen_matrix(t) = m;
    return t;
}

inline Eigen::MatrixXd to_matrix(const tensor<double, host_space>& t) { return as_eigen_matrix(t); }

/// 16 points of the exact marginal at level (a, s): a·x0 + s·eps.
inline Eigen::MatrixXd marginal_points(const analytic::gaussian& g, double a, double s, std::uint64_t seed) {
    philox_rng rng(seed);
    const Eigen::MatrixXd x0 = g.sample(16, rng);
    Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> z(16, g.dimension());
    rng.fill_normal(z.data(), static_cast<std::size_t>(z.size()));
    return a * x0 + s * Eigen::MatrixXd(z);
}

/// Least-squares slope of log err against log(1/N).
inline double fitted_order(const std::vector<int>& n, const std::vector<double>& err) {
    const std::size_t k = n.size();
    double mx = 0, my = 0;
    for (std::size_t i = 0; i < k; ++i) {
        mx += std::log(1.0 / n[i]);
        my += std::log(err[i]);
    }
    mx /= k;
    my /= k;
    double sxy = 0, sxx = 0;
    for (std::size_t i = 0; i < k; ++i) {
        const double dx = std::log(1.0 / n[i]) - mx;
        sxy += dx * (std::log(err[i]) - my);
        sxx += dx * dx;
    }
    return sxy / sxx;
}

}  // namespace diffuse::test
