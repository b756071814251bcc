#pragma once
// Shared fixtures of the guidance tests: a class-labelled 2-D Gaussian mixture, batches, levels.

#include "support/check.hpp"

#include <diffuse/analytic/gaussian_mixture.hpp>
#include <diffuse/core/philox.hpp>
#include <diffuse/core/tensor.hpp>
#include <diffuse/models/denoiser.hpp>

#include <Eigen/Dense>

#include <cstdint>
#include <vector>

namespace diffuse::test {

/// 3 classes, 4 components in 2-D with full covariances; class 2 has two components.
inline analytic::gaussian_mixture guidance_mixture() {
    Eigen::MatrixXd c0(2, 2), c1(2, 2), c2(2, 2), c3(2, 2);
    c0 << 0.30, 0.10, 0.10, 0.20;
    c1 << 0.25, -0.05, -0.05, 0.40;
    c2 << 0.15, 0.00, 0.00, 0.15;
    c3 << 0.20, 0.08, 0.08, 0.30;
    return analytic::gaussian_mixture({0.3, 0.3, 0.2, 0.2},
                                      {Eigen::Vector2d(-1.5, 0.5), Eigen::Vector2d(1.5, 1.0), Eigen::Vector2d(0.0, -1.5),
                                       Eigen::Vector2d(0.5, -0.5)},
                                      {c0, c1, c2, c3}, {0, 1, 2, 2});
}

/// B rows of standard-normal-ish values scaled by `scale` (fixed seed).
template <class T>
tensor<T, host_space> guidance_batch(std::int64_t b, double scale = 1.5, std::uint64_t seed = 7) {
    philox_rng rng(seed, 0);
    std::vector<double> v(static_cast<std::size_t>(b * 2));
    rng.fill_normal(v.data(), v.size());
    tensor<T, host_space> x(shape{b, 2});
    for (std::int64_t i = 0; i < x.numel(); ++i) x[i] = static_cast<T>(scale * v[static_cast<std::size_t>(i)]);
    return x;
}

/// Levels across the noise range: VP ᾱ from 0.999 to 0.01, a VE σ and one of neither form.
inline std::vector<models::noise_condition> guidance_levels() {
    std::vector<models::noise_condition> out;
    for (double ab : {0.999, 0.9, 0.5, 0.1, 0.01}) out.push_back(models::noise_condition::vp(ab));
    out.push_back(models::noise_condition::ve(2.5));
    out.push_back(models::noise_condition{0.7, 0.4});
    return out;
}

}  // namespace diffuse::test
