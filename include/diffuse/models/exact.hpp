#pragma once
// Exact denoisers (docs/denoisers.md §5; closed_forms B1–B4): the analytic models of analytic/
// presented as denoisers, so every sampler and guidance wrapper can be run against the exact
// E[x0 | x_t], E[eps | x_t], v or score.
//
//   exact_gaussian_denoiser(gaussian, type)   x0 ~ N(μ, Σ)
//   exact_mixture_denoiser(mixture, type)     x0 ~ Σ_k π_k N(m_k, C_k); called with no_condition it
//                                             is the unconditional model, with class_labels (one per
//                                             batch item) row b uses mixture.conditional(labels[b]),
//                                             and the null label n_classes() (null_class_label())
//                                             the whole mixture, as a U-Net trained with condition
//                                             dropout does (guidance/ batches cond + null in one call)
// type is any prediction_type (default epsilon), computed directly from the analytic model in
// double (v = â·E[eps|x_t] − ŝ·E[x0|x_t]) and rounded once to T. Any level the analytic model
// accepts works, including a = 0 and s = 0.
//
// Tensors: x_t and out [B, d] (or [B, ...] whose trailing dimensions multiply to d), float or
// double. HOST ONLY for now: a device tensor compiles (so generic code instantiates) but throws
// diffuse::error naming the memory space; copy with to<host_space>().

#include <diffuse/analytic/gaussian.hpp>
#include <diffuse/analytic/gaussian_mixture.hpp>
#include <diffuse/core/error.hpp>
#include <diffuse/core/tensor.hpp>
#include <diffuse/models/denoiser.hpp>
#include <diffuse/models/detail/exact_eval.hpp>

#include <Eigen/Dense>

#include <cstddef>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace diffuse::models {

/// The exact denoiser of Gaussian data N(μ, Σ).
class exact_gaussian_denoiser {
public:
    explicit exact_gaussian_denoiser(analytic::gaussian model, prediction_type type = prediction_type::epsilon)
        : model_(std::move(model)), type_(type) {}

    prediction_type prediction() const { return type_; }
    const analytic::gaussian& model() const { return model_; }
    Eigen::Index dimension() const { return model_.dimension(); }

    template <class T, class S>
    void operator()(tensor_view<T, S> out, std::type_identity_t<tensor_view<const T, S>> x_t,
                    const noise_condition& level, no_condition = {}) const {
        detail::check_exact_call(out, x_t, dimension(), "exact_gaussian_denoiser");
        check_noise_condition(level);
        if constexpr (std::is_same_v<S, host_space>) {
            const Eigen::MatrixXd x = detail::rows_as_double(x_t, dimension());
            detail::write_rows(out, detail::exact_prediction(model_, type_, x, level.a, level.s));
        }
    }

private:
    analytic::gaussian model_;
    prediction_type type_;
};

/// The exact denoiser of Gaussian-mixture data, unconditional or class-conditional.
class exact_mixture_denoiser {
public:
    explicit exact_mixture_denoiser(analytic::gaussian_mixture model, prediction_type type = prediction_type::epsilon)
        : model_(std::move(model)), type_(type) {
        conditionals_.reserve(static_cast<std::size_t>(model_.n_classes()));
        for (int y = 0; y < model_.n_classes(); ++y) conditionals_.push_back(model_.conditional(y));
    }

    prediction_type prediction() const { return type_; }
    const analytic::gaussian_mixture& model() const { return model_; }
    Eigen::Index dimension() const { return model_.dimension(); }
    int n_classes() const { return model_.n_classes(); }
    /// The label that asks for the unconditional prediction: n_classes() (the same convention as
    /// nn::unet_config::null_class_label(), num_class_embeds − 1 for a table of K + 1 rows).
    int null_class_label() const { return model_.n_classes(); }

    /// Unconditional: the prediction of the whole mixture.
    template <class T, class S>
    void operator()(tensor_view<T, S> out, std::type_identity_t<tensor_view<const T, S>> x_t,
                    const noise_condition& level, no_condition = {}) const {
        detail::check_exact_call(out, x_t, dimension(), "exact_mixture_denoiser");
        check_noise_condition(level);
        if constexpr (std::is_same_v<S, host_space>) detail::predict_row_blocks(model_, type_, out, x_t, level);
    }

    /// Class-conditional: row b is the prediction of p(x0 | y = labels[b]) = mixture.conditional(labels[b]),
    /// or of the whole mixture when labels[b] = null_class_label(). labels.size() == B, every label in
    /// [0, n_classes()].
    template <class T, class S>
    void operator()(tensor_view<T, S> out, std::type_identity_t<tensor_view<const T, S>> x_t,
                    const noise_condition& level, class_labels labels) const {
        detail::check_exact_call(out, x_t, dimension(), "exact_mixture_denoiser");
        check_noise_condition(level);
        const auto b = static_cast<std::size_t>(x_t.size(0));
        require(labels.size() == b, "labels.size()", labels.size(),
                "the batch size B = " + std::to_string(b) + " (one label per batch item)");
        for (std::size_t i = 0; i < labels.size(); ++i)
            require(labels[i] >= 0 && labels[i] <= n_classes(), "labels[" + std::to_string(i) + "]", labels[i],
                    "a class label in [0, " + std::to_string(n_classes()) + ") or the null label " +
                        std::to_string(n_classes()) + " (unconditional)");
        if constexpr (std::is_same_v<S, host_space>) {
            const Eigen::MatrixXd x = detail::rows_as_double(x_t, dimension());
            Eigen::MatrixXd result(x.rows(), x.cols());
            // One evaluation per class present (and for the null label), on the rows carrying that label.
            for (int y = 0; y <= n_classes(); ++y) {
                std::vector<Eigen::Index> rows;
                for (std::size_t i = 0; i < b; ++i)
                    if (labels[i] == y) rows.push_back(static_cast<Eigen::Index>(i));
                if (rows.empty()) continue;
                Eigen::MatrixXd xy(static_cast<Eigen::Index>(rows.size()), x.cols());
                for (std::size_t j = 0; j < rows.size(); ++j) xy.row(static_cast<Eigen::Index>(j)) = x.row(rows[j]);
                const Eigen::MatrixXd py =
                    y == n_classes() ? detail::exact_prediction(model_, type_, xy, level.a, level.s)
                                     : detail::exact_prediction(conditionals_[static_cast<std::size_t>(y)], type_, xy,
                                                                level.a, level.s);
                for (std::size_t j = 0; j < rows.size(); ++j) result.row(rows[j]) = py.row(static_cast<Eigen::Index>(j));
            }
            detail::write_rows(out, result);
        }
    }

private:
    analytic::gaussian_mixture model_;
    prediction_type type_;
    std::vector<analytic::gaussian_mixture> conditionals_;
};

}  // namespace diffuse::models
