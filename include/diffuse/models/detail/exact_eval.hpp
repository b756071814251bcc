#pragma once
// Internals of models/exact.hpp: batch tensors [B, ...] <-> Eigen [B, d] in double, and the
// four predictions of an analytic model (gaussian or gaussian_mixture) at a level (a, s).

#include <diffuse/core/eigen_adapter.hpp>
#include <diffuse/core/error.hpp>
#include <diffuse/core/memory_space.hpp>
#include <diffuse/core/tensor.hpp>
#include <diffuse/process/parametrization.hpp>

#include <Eigen/Dense>

#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>

namespace diffuse::models::detail {

/// x_t [B, ...] whose trailing dimensions multiply to d; out the same shape; host memory.
template <class T, class S>
void check_exact_call(tensor_view<T, S> out, tensor_view<const T, S> x_t, Eigen::Index d, const char* who) {
    if constexpr (!std::is_same_v<S, host_space>) {
        fail(std::string(who) + ": x_t is in " + S::name +
             " memory; expected host_space tensors (the exact models run on the host only: copy with "
             "to<host_space>())");
    }
    require(x_t.rank() >= 2, std::string(who) + ": x_t.shape()", x_t.shape().str(),
            "[B, d] (or [B, ...] whose trailing dimensions multiply to d = " + std::to_string(d) + ")");
    const std::int64_t inner = x_t.size(0) == 0 ? x_t.shape().drop_front().numel() : x_t.numel() / x_t.size(0);
    require(inner == d, std::string(who) + ": x_t.shape()", x_t.shape().str(),
            "[B, d] with d = " + std::to_string(d) + " (the model's dimension), or [B, ...] whose trailing "
            "dimensions multiply to d");
    require_same_shape(out.shape(), "out", x_t.shape(), "x_t");
    if (!out.empty() && static_cast<const void*>(out.data()) == static_cast<const void*>(x_t.data()))
        fail(std::string(who) + ": out aliases x_t; expected distinct memory");
}

/// The `type` prediction of an analytic model for the rows of x [n, d] at level (a, s), in double:
/// sample = E[x0|x_t], epsilon = E[eps|x_t], score = ∇log p_t, v = â·E[eps|x_t] − ŝ·E[x0|x_t].
template <class Model>
Eigen::MatrixXd exact_prediction(const Model& model, process::prediction_type type, const Eigen::MatrixXd& x,
                                 double a, double s) {
    using pt = process::prediction_type;
    switch (type) {
        case pt::sample: return model.x0_mean(x, a, s);
        case pt::epsilon: return model.eps_mean(x, a, s);
        case pt::score: return model.score(x, a, s);
        case pt::v_prediction: {
            const double r = std::hypot(a, s);
            const Eigen::MatrixXd eps = model.eps_mean(x, a, s);
            const Eigen::MatrixXd x0 = model.x0_mean(x, a, s);
            return (a / r) * eps - (s / r) * x0;
        }
    }
    fail("exact_prediction: unknown prediction_type");
}

/// Rows of a host view [B, ...] as a double matrix [B, d].
template <class T>
Eigen::MatrixXd rows_as_double(tensor_view<const T, host_space> x, Eigen::Index d) {
    const Eigen::Index b = static_cast<Eigen::Index>(x.size(0));
    return as_eigen_matrix(x, b, d).template cast<double>();
}

/// Writes a double matrix [B, d] into a host view [B, ...] (rounded to T).
template <class T>
void write_rows(tensor_view<T, host_space> out, const Eigen::MatrixXd& m) {
    as_eigen_matrix(out, m.rows(), m.cols()) = m.template cast<T>();
}

}  // namespace diffuse::models::detail
