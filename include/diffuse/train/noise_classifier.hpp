#pragma once
// train_noise_classifier: fits a noise-conditional classifier p_φ(y | x_t, t) (nn/encoder_classifier.hpp)
// on noisy labelled data, as guided-diffusion's classifier_train.py does with noised = True
// (Dhariwal & Nichol 2021, §4.1; docs/unet.md §9). Each step:
//
//   (x0 [B, C, H, W], y [B]) = data_fn(B, data_rng)
//   t_b ~ U{0, …, T−1},   eps ~ N(0, I)                             (Philox, seed and stream 1)
//   x_t[b] = √ᾱ_{t_b} x0[b] + √(1 − ᾱ_{t_b}) eps[b]                (process/forward.hpp, per-item q_sample)
//   L = mean_b −log softmax(f_φ(x_t, t))[y_b]                       (nn::cross_entropy)
//   zero_grad; backward; AdamW step                                 (nn/optim/adam.hpp)
//
// The classifier sees the training timestep t itself (as unet_denoiser passes level.timestep). Returns the
// loss of every step (before its update). Deterministic for a fixed seed: the data stream is
// philox_rng(seed, 0), timesteps and noise come from philox_rng(seed, 1), dropout (when the config has
// dropout > 0) from dropout_key{seed, step + 1}; thread counts do not change the result beyond the
// summation order of the layers' GEMMs.

#include <diffuse/core/error.hpp>
#include <diffuse/core/philox.hpp>
#include <diffuse/nn/encoder_classifier.hpp>
#include <diffuse/nn/layers/dropout.hpp>
#include <diffuse/nn/optim/adam.hpp>
#include <diffuse/process/forward.hpp>
#include <diffuse/schedules/discrete_schedule.hpp>

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace diffuse::train {

/// One batch of labelled clean data: x0 [B, C, H, W] and a class label per item, each in [0, K).
template <class T>
struct labelled_batch {
    nn::host_tensor<T> x0;
    std::vector<int> labels;
};

struct noise_classifier_options {
    std::int64_t steps = 1000;    ///< optimiser steps (>= 0)
    std::int64_t batch = 64;      ///< items per step (>= 1)
    double lr = 3e-4;             ///< AdamW learning rate (guided-diffusion's classifier example uses 3e-4)
    double weight_decay = 0.05;   ///< AdamW decoupled weight decay (ditto, 0.05)
    std::uint64_t seed = 0;       ///< all randomness of the run
};

/// data_fn(batch, rng) -> labelled_batch<T> with x0 [batch, in_channels, H, W].
template <class F, class T>
concept labelled_data_source = requires(F& f, std::int64_t n, philox_rng& rng) {
    { f(n, rng) } -> std::convertible_to<labelled_batch<T>>;
};

/// Trains `classifier` in place; returns the per-step mean cross-entropy (nats).
template <class T, class DataFn>
    requires labelled_data_source<DataFn, T>
std::vector<double> train_noise_classifier(nn::encoder_classifier<T>& classifier, DataFn&& data_fn,
                                           const schedules::discrete_schedule& schedule,
                                           const noise_classifier_options& options = {}) {
    const std::string who = "train_noise_classifier";
    require(options.steps >= 0, who + ": options.steps", options.steps, "an integer >= 0");
    require(options.batch >= 1, who + ": options.batch", options.batch, "an integer >= 1");
    require_positive(options.lr, who + ": options.lr");
    require_nonnegative(options.weight_decay, who + ": options.weight_decay");
    const int T_train = schedule.num_train_timesteps();
    const std::int64_t B = options.batch, K = classifier.num_classes(), Cin = classifier.in_channels();

    nn::adam_options ao;
    ao.lr = options.lr;
    ao.weight_decay = options.weight_decay;
    ao.decoupled_weight_decay = true;
    nn::adam<T> opt(classifier.parameters(), ao);

    philox_rng data_rng(options.seed, 0);
    philox_rng noise_rng(options.seed, 1);
    const bool use_dropout = classifier.config().unet.dropout > 0;
    std::vector<double> losses;
    losses.reserve(static_cast<std::size_t>(options.steps));
    std::vector<double> t(static_cast<std::size_t>(B)), a(t.size()), s(t.size());
    for (std::int64_t step = 0; step < options.steps; ++step) {
        labelled_batch<T> data = data_fn(B, data_rng);
        const auto& xs = data.x0.shape();
        if (!(xs.rank() == 4 && xs[0] == B && xs[1] == Cin))
            fail(who + ": data_fn returned x0 of shape " + xs.str() + "; expected [" + std::to_string(B) + ", " +
                 std::to_string(Cin) + ", H, W] (batch, in_channels, H, W)");
        if (static_cast<std::int64_t>(data.labels.size()) != B)
            fail(who + ": data_fn returned " + std::to_string(data.labels.size()) + " labels for a batch of " +
                 std::to_string(B) + "; expected one per item");
        for (std::size_t b = 0; b < data.labels.size(); ++b)
            if (data.labels[b] < 0 || data.labels[b] >= K)
                fail_argument(who + ": data_fn labels[" + std::to_string(b) + "]", data.labels[b],
                              "a class in [0, " + std::to_string(K) + ")");
        // t_b uniform on {0, …, T−1}; x_t = √ᾱ_t x0 + √(1 − ᾱ_t) eps
        for (std::size_t b = 0; b < t.size(); ++b) {
            const int tb = std::min(T_train - 1, static_cast<int>(noise_rng.uniform() * T_train));
            t[b] = tb;
            a[b] = schedule.alpha(tb);
            s[b] = schedule.sigma(tb);
        }
        nn::host_tensor<T> eps(xs);
        noise_rng.fill_normal(eps.data(), static_cast<std::size_t>(eps.numel()));
        nn::host_tensor<T> x_t(xs);
        process::q_sample(x_t.view(), data.x0.cview(), std::span<const double>(a), std::span<const double>(s),
                          eps.cview());
        // cross-entropy, backward, AdamW
        opt.zero_grad();
        typename nn::encoder_classifier<T>::cache cache;
        const std::optional<nn::dropout_key> drop =
            use_dropout ? std::optional(nn::dropout_key{options.seed, static_cast<std::uint64_t>(step) + 1})
                        : std::nullopt;
        const nn::host_tensor<T> logits = classifier.forward(x_t.cview(), t, &cache, drop);
        const nn::cross_entropy_result<T> ce = nn::cross_entropy(logits.cview(), std::span<const int>(data.labels));
        if (!std::isfinite(ce.loss))
            fail(who + ": the loss at step " + std::to_string(step) + " is " + std::to_string(ce.loss) +
                 "; expected a finite number (lower options.lr?)");
        classifier.backward(ce.dlogits.cview(), cache);
        opt.step();
        losses.push_back(ce.loss);
    }
    return losses;
}

}  // namespace diffuse::train
