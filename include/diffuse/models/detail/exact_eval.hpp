#pragma once
// Internals of models/exact.hpp: batch tensors [B, ...] <-> Eigen [B, d] in double, and the
// four predictions of an analytic model (gaussian or gaussian_mixture) at a level (a, s).

#include <diffuse/core/config.hpp>
#include <diffuse/core/eigen_adapter.hpp>
#include <diffuse/core/error.hpp>
#include <diffuse/core/memory_space.hpp>
#include <diffuse/core/tensor.hpp>
#include <diffuse/process/parametrization.hpp>

#include <Eigen/Dense>

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <exception>
#include <string>
#include <type_traits>

namespace diffuse::models::detail {

/// Anything with double members a and s (models::noise_condition; avoids including denoiser.hpp).
template <class L>
concept noise_condition_like = requires(const L& l) {
    { l.a } -> std::convertible_to<double>;
    { l.s } -> std::convertible_to<double>;
};

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

/// Rows per block of predict_row_blocks: fixed, so results do not depend on the thread count.
inline constexpr std::int64_t exact_row_block = 4096;

/// out = the `type` prediction of `model` for every row of x_t, computed in blocks of
/// exact_row_block rows (in parallel with OpenMP). Each row's result depends only on that row,
/// and the blocking is the same for every backend and thread count, so the output is bitwise
/// the same for serial and OpenMP builds.
template <class Model, class T>
void predict_row_blocks(const Model& model, process::prediction_type type, tensor_view<T, host_space> out,
                        tensor_view<const T, host_space> x_t, const noise_condition_like auto& level) {
    const std::int64_t n = x_t.size(0);
    const Eigen::Index d = static_cast<Eigen::Index>(n == 0 ? 0 : x_t.numel() / n);
    const std::int64_t blocks = (n + exact_row_block - 1) / exact_row_block;
    std::exception_ptr first_error;
#if DIFFUSE_HAS_OPENMP
#pragma omp parallel for schedule(static) if (blocks > 1)
#endif
    for (std::int64_t b = 0; b < blocks; ++b) {
        // An exception must not leave an OpenMP region: keep the first and rethrow after it.
        try {
            const std::int64_t r0 = b * exact_row_block, rows = std::min(exact_row_block, n - r0);
            const Eigen::MatrixXd x = as_eigen_matrix(x_t, n, d).middleRows(r0, rows).template cast<double>();
            as_eigen_matrix(out, n, d).middleRows(r0, rows) =
                exact_prediction(model, type, x, level.a, level.s).template cast<T>();
        } catch (...) {
#if DIFFUSE_HAS_OPENMP
#pragma omp critical(diffuse_exact_rows)
#endif
            if (!first_error) first_error = std::current_exception();
        }
    }
    if (first_error) std::rethrow_exception(first_error);
}

}  // namespace diffuse::models::detail
