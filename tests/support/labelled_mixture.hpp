#pragma once
// A class-labelled Gaussian mixture of tiny images for classifier (and classifier-guidance) tests:
// d = 16 points seen as [1, 4, 4] images, three classes with equal weight,
//   class k ~ N(mu·p_k, sd²·I),
//   p_0 = +1 on the top two rows, −1 on the bottom two      (a horizontal edge)
//   p_1 = +1 on the left two columns, −1 on the right two   (a vertical edge)
//   p_2 = (−1)^(row + column)                               (a checkerboard)
// The patterns are orthogonal with |p_k|² = 16, so ‖m_i − m_j‖ = mu·√32 for every pair, and at a VP
// level (a, s) every class is N(a·mu·p_k, (a²sd² + s²) I): the exact Bayes classifier
// (gaussian_mixture::class_posterior) is argmax_k <x, p_k>, with an accuracy that falls from its t = 0
// value towards 1/3 as a → 0. With sd = 1 the class covariance stays I at every VP level.
//
// mixture_batch(mixture, n, rng) draws n labelled images as a train::labelled_batch: x0 [n, 1, 4, 4].
// mixture_classifier_config() is the small encoder_classifier U-Net config that learns it in a few hundred
// steps (tests/train/test_noise_classifier.cpp: 500 steps of 64, lr 3e-3, within 0.02 of Bayes accuracy).

#include <diffuse/analytic/gaussian_mixture.hpp>
#include <diffuse/core/philox.hpp>
#include <diffuse/nn/unet_config.hpp>
#include <diffuse/train/noise_classifier.hpp>

#include <Eigen/Dense>

#include <cstdint>
#include <vector>

namespace diffuse::test {

/// The three 4×4 mean patterns p_k as vectors [16] (row-major images).
inline std::vector<Eigen::VectorXd> mixture_patterns() {
    std::vector<Eigen::VectorXd> p(3, Eigen::VectorXd(16));
    for (int r = 0; r < 4; ++r)
        for (int c = 0; c < 4; ++c) {
            p[0](r * 4 + c) = r < 2 ? 1.0 : -1.0;
            p[1](r * 4 + c) = c < 2 ? 1.0 : -1.0;
            p[2](r * 4 + c) = (r + c) % 2 == 0 ? 1.0 : -1.0;
        }
    return p;
}

/// Σ_k (1/3) N(mu·p_k, sd² I) in d = 16, component k = class k.
inline analytic::gaussian_mixture three_class_image_mixture(double mu = 0.6, double sd = 1.0) {
    std::vector<Eigen::VectorXd> means = mixture_patterns();
    for (auto& m : means) m *= mu;
    const std::vector<Eigen::MatrixXd> covs(3, sd * sd * Eigen::MatrixXd::Identity(16, 16));
    return analytic::gaussian_mixture({1.0 / 3, 1.0 / 3, 1.0 / 3}, means, covs);
}

/// n labelled draws as images: x0 [n, 1, 4, 4], labels [n].
template <class T>
train::labelled_batch<T> mixture_batch(const analytic::gaussian_mixture& mixture, std::int64_t n, philox_rng& rng) {
    const analytic::mixture_sample s = mixture.sample(static_cast<Eigen::Index>(n), rng);
    train::labelled_batch<T> out{nn::host_tensor<T>({n, 1, 4, 4}), s.label};
    for (std::int64_t i = 0; i < n; ++i)
        for (std::int64_t j = 0; j < 16; ++j) out.x0.data()[i * 16 + j] = static_cast<T>(s.x(i, j));
    return out;
}

/// [1, 4, 4] -> two levels (8 and 16 channels, one DownBlock2D each: 4x4 then 2x2), no mid block, 4 groups.
inline nn::unet_config mixture_classifier_config() {
    nn::unet_config c = nn::unet_config::defaults(nn::unet_kind::unet2d);
    c.in_channels = 1;
    c.block_out_channels = {8, 16};
    c.layers_per_block = 1;
    c.down_block_types = {"DownBlock2D", "DownBlock2D"};
    c.up_block_types = {"UpBlock2D", "UpBlock2D"};  // ignored by the classifier
    c.mid_block_type.reset();
    c.attention_head_dim.clear();
    c.norm_num_groups = 4;
    return c;
}

}  // namespace diffuse::test
