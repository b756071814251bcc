#pragma once
// Classifier guidance (Sohl-Dickstein et al. 2015; Dhariwal & Nichol 2021 §4, Alg. 1–2;
// docs/guidance.md §5) as a Denoiser that wraps a Denoiser.
//
// Bayes' rule on scores: ∇log p_t(x | y) = ∇log p_t(x) + ∇log p_t(y | x). A classifier gives
// g = ∇ₓ log p_t(y | x_t) and a scale s tilts the model's score, in one of the two places
// guided-diffusion applies it:
//
//   condition_score   score' = score + s·g  (ddim_sample's condition_score: eps' = eps − s·σ_vp·g)
//                     — for every sampler. In the wrapper's prediction type P the shift is
//                     s·c·g with c the value coefficient of the conversion score -> P (x0: s_t²/a,
//                     eps: −s_t, v: −â·s_t − ŝ·s_t²/a, score: 1).
//   condition_mean    μ' = μ + s·Σ_i·g  (p_sample's condition_mean) — for an ancestral step
//                     x' = c_x0·x̂0 + c_xt·x + σ_i·z, reached by shifting x̂0 by s·(σ_i²/c_x0)·g. The
//                     per-step factors k_i = σ_i²/c_x0 come from the sampler
//                     (samplers/guidance_tables.hpp: condition_mean_table(ddpm_sampler)); with
//                     clip_sample the shift is applied before clipping (guided-diffusion clips first).
//
// With the exact Bayes classifier of a class-labelled mixture (exact_bayes_classifier below) and s = 1,
// condition_score on the unconditional exact model IS the exact conditional model at every t; at scale s
// it equals CFG at weight w = s (diffusers formula), since then c − u = ∇log p_t(y|x) in score space.
//
// The classifier concept: c.log_prob_grad(x_t, level, labels) returns ∇_{x_t} log p_t(labels[b] | x_t,b)
// as a tensor of x_t's shape (checked: a wrong shape is a diffuse::error); the gradient is taken with
// respect to the denoiser's input at the same level (a, s) the model sees.

#include <diffuse/analytic/gaussian_mixture.hpp>
#include <diffuse/backend/lincomb.hpp>
#include <diffuse/core/eigen_adapter.hpp>
#include <diffuse/core/error.hpp>
#include <diffuse/core/tensor.hpp>
#include <diffuse/guidance/schedule.hpp>
#include <diffuse/models/denoiser.hpp>
#include <diffuse/process/parametrization.hpp>

#include <Eigen/Dense>

#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace diffuse::guidance {

using models::class_labels;
using models::no_condition;
using models::noise_condition;
using process::prediction_type;

/// Cl gives ∇ₓ log p_t(y | x_t) for tensors of T in space S.
template <class Cl, class T, class S = default_space>
concept classifier = requires(const Cl& c, tensor_view<const T, S> x, const noise_condition& level, class_labels y) {
    { c.log_prob_grad(x, level, y) } -> std::same_as<tensor<T, S>>;
};

namespace detail {

inline void require_labels(class_labels labels, std::int64_t batch, int n_classes, const char* who) {
    require(labels.size() == static_cast<std::size_t>(batch), std::string(who) + ": labels.size()", labels.size(),
            "the batch size B = " + std::to_string(batch) + " (one target label per item)");
    for (std::size_t i = 0; i < labels.size(); ++i)
        require(labels[i] >= 0 && labels[i] < n_classes, std::string(who) + ": labels[" + std::to_string(i) + "]",
                labels[i], "a class label in [0, " + std::to_string(n_classes) + ")");
}

}  // namespace detail

/// The exact Bayes classifier p_t(y | x_t) of a class-labelled Gaussian mixture (analytic/gaussian_mixture.hpp):
/// x_t [B, d] (or [B, ...] with d trailing elements), host tensors.
class exact_bayes_classifier {
public:
    explicit exact_bayes_classifier(analytic::gaussian_mixture mixture) : mixture_(std::move(mixture)) {}

    const analytic::gaussian_mixture& mixture() const { return mixture_; }
    int n_classes() const { return mixture_.n_classes(); }

    /// ∇ₓ log p_t(labels[b] | x_t,b) per row [B, ...].
    template <class T, class S>
    tensor<T, S> log_prob_grad(tensor_view<const T, S> x_t, const noise_condition& level, class_labels labels) const {
        tensor<T, S> out(x_t.shape());
        if constexpr (!std::is_same_v<S, host_space>) {
            fail(std::string("exact_bayes_classifier: x_t is in ") + S::name +
                 " memory; expected host_space tensors (the exact models run on the host only)");
        } else {
        const Eigen::MatrixXd x = rows(x_t);
        models::check_noise_condition(level);
        detail::require_labels(labels, x_t.size(0), n_classes(), "exact_bayes_classifier");
        Eigen::MatrixXd g(x.rows(), x.cols());
        for (int y = 0; y < n_classes(); ++y) {
            std::vector<Eigen::Index> idx;
            for (std::size_t i = 0; i < labels.size(); ++i)
                if (labels[i] == y) idx.push_back(static_cast<Eigen::Index>(i));
            if (idx.empty()) continue;
            Eigen::MatrixXd xy(static_cast<Eigen::Index>(idx.size()), x.cols());
            for (std::size_t j = 0; j < idx.size(); ++j) xy.row(static_cast<Eigen::Index>(j)) = x.row(idx[j]);
            const Eigen::MatrixXd gy = mixture_.class_log_posterior_grad(xy, level.a, level.s, y);
            for (std::size_t j = 0; j < idx.size(); ++j) g.row(idx[j]) = gy.row(static_cast<Eigen::Index>(j));
        }
        as_eigen_matrix(out.view(), x.rows(), x.cols()) = g.template cast<T>();
        }
        return out;
    }

    /// log p_t(y | x_t) for every class: [B, C].
    template <class T, class S>
    Eigen::MatrixXd log_posterior(tensor_view<const T, S> x_t, const noise_condition& level) const {
        models::check_noise_condition(level);
        return mixture_.class_log_posterior(rows(x_t), level.a, level.s);
    }

    /// argmax_y p_t(y | x_t) per row (ties: the smaller label).
    template <class T, class S>
    std::vector<int> classify(tensor_view<const T, S> x_t, const noise_condition& level) const {
        const Eigen::MatrixXd lp = log_posterior(x_t, level);
        std::vector<int> out(static_cast<std::size_t>(lp.rows()));
        for (Eigen::Index i = 0; i < lp.rows(); ++i) {
            Eigen::Index k = 0;
            lp.row(i).maxCoeff(&k);
            out[static_cast<std::size_t>(i)] = static_cast<int>(k);
        }
        return out;
    }

private:
    template <class T, class S>
    Eigen::MatrixXd rows(tensor_view<const T, S> x_t) const {
        static_assert(std::is_same_v<S, host_space>, "exact_bayes_classifier::log_posterior runs on the host");
        const Eigen::Index d = mixture_.dimension();
        require(x_t.rank() >= 2 && x_t.numel() == x_t.size(0) * d, "exact_bayes_classifier: x_t.shape()",
                x_t.shape().str(), "[B, d] (or [B, ...] whose trailing dimensions multiply to d = " +
                                       std::to_string(d) + ")");
        return as_eigen_matrix(x_t, x_t.size(0), d).template cast<double>();
    }

    analytic::gaussian_mixture mixture_;
};

/// Where the classifier's gradient enters (the file comment).
enum class classifier_mode { condition_score, condition_mean };

struct classifier_guidance_options {
    double scale = 1.0;                                   ///< s >= 0 (guided-diffusion's classifier_scale)
    classifier_mode mode = classifier_mode::condition_score;
    std::vector<double> mean_shift{};                     ///< condition_mean: k_i per step (condition_mean_table)
    guidance_interval interval{};                         ///< where guidance acts (default: everywhere)
};

inline void check_classifier_guidance_options(const classifier_guidance_options& o) {
    require_nonnegative(o.scale, "scale");
    if (o.mode == classifier_mode::condition_score && !o.mean_shift.empty())
        fail_argument("mean_shift.size()", o.mean_shift.size(),
                      "0 with mode = condition_score (the table is for condition_mean only)");
    if (o.mode == classifier_mode::condition_mean) {
        require(!o.mean_shift.empty(), "mean_shift.size()", 0,
                ">= 1 for condition_mean (the sampler's per-step σ²/c_x0: samplers::condition_mean_table)");
        for (std::size_t i = 0; i < o.mean_shift.size(); ++i)
            require_nonnegative(o.mean_shift[i], "mean_shift[" + std::to_string(i) + "]");
    }
}

/// The condition of a classifier-guided call: target labels for the classifier, and the wrapped
/// model's own condition (guided-diffusion guides a class-conditional model with the same labels).
template <class C>
struct classifier_condition {
    class_labels labels{};
    C model_condition{};
};

template <class M, class Cl>
class classifier_guidance_denoiser {
public:
    classifier_guidance_denoiser(M model, Cl classifier, classifier_guidance_options options)
        : model_(std::move(model)), classifier_(std::move(classifier)), options_(std::move(options)) {
        check_classifier_guidance_options(options_);
    }

    prediction_type prediction() const { return model_.prediction(); }
    const M& inner() const { return model_; }
    const Cl& guide() const { return classifier_; }
    const classifier_guidance_options& options() const { return options_; }

    /// The unconditional model guided towards labels.
    template <class T, class S>
        requires(models::denoiser<M, T, S, no_condition> && classifier<Cl, T, S>)
    void operator()(tensor_view<T, S> out, std::type_identity_t<tensor_view<const T, S>> x_t,
                    const noise_condition& level, class_labels labels) const {
        run(out, x_t, level, labels, no_condition{});
    }

    /// The model called with its own condition, guided towards cond.labels.
    template <class T, class S, class C>
        requires(models::denoiser<M, T, S, C> && classifier<Cl, T, S>)
    void operator()(tensor_view<T, S> out, std::type_identity_t<tensor_view<const T, S>> x_t,
                    const noise_condition& level, const classifier_condition<C>& cond) const {
        run(out, x_t, level, cond.labels, cond.model_condition);
    }

private:
    template <class T, class S, class C>
    void run(tensor_view<T, S> out, tensor_view<const T, S> x_t, const noise_condition& level, class_labels labels,
             const C& model_condition) const {
        models::detail::check_call_tensors(out, x_t, "classifier_guidance");
        models::check_noise_condition(level);
        require(labels.size() == static_cast<std::size_t>(x_t.size(0)), "classifier_guidance: labels.size()",
                labels.size(), "the batch size B = " + std::to_string(x_t.size(0)) + " (one target label per item)");
        if (options_.scale == 0.0 || !options_.interval.contains(level)) {  // unguided
            model_(out, x_t, level, model_condition);
            return;
        }
        // The coefficient c of the shift s·c·g in the model's prediction type, computed (and so
        // checked) before the model runs.
        const prediction_type to = model_.prediction();
        double c = 0.0;
        if (options_.mode == classifier_mode::condition_score) {
            c = process::conversion_coeffs(prediction_type::score, to, level.a, level.s).c_value;
        } else {
            const std::size_t i = detail::require_step(level, "condition_mean");
            if (options_.mean_shift.size() != level.num_steps)
                fail_argument("mean_shift.size()", options_.mean_shift.size(),
                              "the run's number of steps, level.num_steps = " + std::to_string(level.num_steps));
            c = options_.mean_shift[i] * process::conversion_coeffs(prediction_type::sample, to, level.a, level.s).c_value;
        }
        model_(out, x_t, level, model_condition);
        const tensor<T, S> g = classifier_.log_prob_grad(x_t, level, labels);
        if (g.shape() != x_t.shape())
            fail("classifier_guidance: the classifier's gradient has shape " + g.shape().str() +
                 "; expected the shape of x_t, " + x_t.shape().str());
        lincomb(out, 1.0, tensor_view<const T, S>(out), options_.scale * c, g.cview());
    }

    M model_;
    Cl classifier_;
    classifier_guidance_options options_;
};

/// classifier_guidance(model, classifier, options): both held by value (models::by_ref to refer).
template <class M, class Cl>
classifier_guidance_denoiser<std::decay_t<M>, std::decay_t<Cl>> classifier_guidance(
    M&& model, Cl&& classifier, classifier_guidance_options options = {}) {
    return classifier_guidance_denoiser<std::decay_t<M>, std::decay_t<Cl>>(
        std::forward<M>(model), std::forward<Cl>(classifier), std::move(options));
}

}  // namespace diffuse::guidance
