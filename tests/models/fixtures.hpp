#pragma once
// Shared fixtures of the models/ tests: a 3-D Gaussian with a full covariance and non-zero
// mean, and a deterministic batch [B, 3].

#include <diffuse/analytic/gaussian.hpp>
#include <diffuse/core/tensor.hpp>

#include <Eigen/Dense>

#include <cmath>
#include <cstdint>

namespace diffuse::test {

inline analytic::gaussian test_gaussian() {
    Eigen::VectorXd mu(3);
    mu << 0.5, -1.0, 2.0;
    Eigen::MatrixXd l(3, 3);
    l << 1.0, 0.0, 0.0, 0.4, 0.8, 0.0, -0.3, 0.2, 1.5;
    return analytic::gaussian(mu, l * l.transpose());
}

/// x(i, j) = 2 sin(1.3 i + 0.7 j + 0.1), rounded to T.
template <class T>
tensor<T, host_space> batch(std::int64_t b) {
    tensor<T, host_space> x(shape{b, 3});
    for (std::int64_t i = 0; i < b; ++i)
        for (std::int64_t j = 0; j < 3; ++j)
            x(i, j) = static_cast<T>(2.0 * std::sin(1.3 * static_cast<double>(i) + 0.7 * static_cast<double>(j) + 0.1));
    return x;
}

}  // namespace diffuse::test
