#pragma once
// The forward (noising) process (docs/forward_process.md §1–§3).
//
//   one step        q(x_t | x_{t−1}) = N(√(1−β_t)·x_{t−1}, β_t·I)           (Ho et al. 2020, Eq. 2)
//   marginal        q(x_t | x_0)     = N(a_t·x_0, s_t²·I)                    (Ho et al. 2020, Eq. 4)
//                   VP:  a = √ᾱ_t, s = √(1−ᾱ_t), ᾱ_t = Π_{i<=t}(1−β_i)
//                   VE / EDM: a = 1, s = σ  (x = x0 + σ·eps; Karras et al. 2022)
//   s -> t, s < t   q(x_t | x_s)     = N(√α_{t|s}·x_s, β_{t|s}·I),  α_{t|s} = ᾱ_t/ᾱ_s, β_{t|s} = 1 − α_{t|s}
//                   (the kernel of a respaced grid; two steps compose: 1 − β = (1 − β_1)(1 − β_2))
//
// Every tensor function computes its coefficients in double on the host (the `*_coeffs`
// functions, exposed and tested on their own) and applies them with one backend lincomb, plus
// randn for the noise (DESIGN.md, "Scalar math in double"). Tensors are float or double, host or
// device, any shape ([B, C, H, W] typically); all tensor arguments have the same shape.
// `out` may be one of the inputs (x = a·x + s·eps in place).
//
// A batch whose items sit at different noise levels (training) uses the per-item overload of
// q_sample, or calls the scalar form on `x.item(b)` views.

#include <diffuse/backend/lincomb.hpp>
#include <diffuse/backend/randn.hpp>
#include <diffuse/core/error.hpp>
#include <diffuse/core/philox.hpp>
#include <diffuse/core/shape.hpp>
#include <diffuse/core/tensor.hpp>
#include <diffuse/process/detail/checks.hpp>
#include <diffuse/process/detail/views.hpp>
#include <diffuse/schedules/discrete_schedule.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <utility>

namespace diffuse::process {

// ---------------------------------------------------------------------------------------------
// Noise levels (docs/forward_process.md §2)

/// The scaling a and noise standard deviation s of x_t = a·x0 + s·eps. Aggregate, so
/// `auto [a, s] = vp_level(0.3);` works. analytic/ re-exports it as analytic::noise_level.
struct noise_level {
    double a;
    double s;
};

/// VP form: a = √ᾱ, s = √(1 − ᾱ), ᾱ in [0, 1] (ᾱ = 0 is a zero-terminal-SNR endpoint).
inline noise_level vp_level(double alpha_bar) {
    detail::check_alpha_bar(alpha_bar, "alpha_bar", /*allow_zero=*/true);
    return {std::sqrt(alpha_bar), std::sqrt(1.0 - alpha_bar)};
}

/// VE / EDM form: a = 1, s = σ, σ >= 0 finite.
inline noise_level ve_level(double sigma) {
    require_nonnegative(sigma, "sigma");
    return {1.0, sigma};
}

/// The VP level with the same signal-to-noise ratio as σ: a = 1/√(1+σ²), s = σ/√(1+σ²)
/// (x_vp = x_ve/√(1+σ²), docs/forward_process.md §2.2). σ = +inf gives (0, 1).
inline noise_level vp_level_from_sigma(double sigma) {
    require(!std::isnan(sigma) && sigma >= 0.0, "sigma", sigma, "a number >= 0 (+inf allowed)");
    if (std::isinf(sigma)) return {0.0, 1.0};
    const double r = std::hypot(1.0, sigma);  // √(1 + σ²) without overflow
    return {1.0 / r, sigma / r};
}

/// σ = √((1 − ᾱ)/ᾱ) = s/a, the VE noise level of a VP ᾱ (+inf at ᾱ = 0).
inline double sigma_from_alpha_bar(double alpha_bar) {
    detail::check_alpha_bar(alpha_bar, "alpha_bar", /*allow_zero=*/true);
    return std::sqrt((1.0 - alpha_bar) / alpha_bar);
}

/// ᾱ = 1/(1 + σ²), the inverse of sigma_from_alpha_bar.
inline double alpha_bar_from_sigma(double sigma) {
    require(!std::isnan(sigma) && sigma >= 0.0, "sigma", sigma, "a number >= 0 (+inf allowed)");
    return 1.0 / (1.0 + sigma * sigma);
}

/// The VP level of training timestep t of a discrete schedule: (√ᾱ_t, √(1 − ᾱ_t)) from the
/// schedule's accurate log ᾱ and 1 − ᾱ (diffusers indexing, t in [0, T−1]).
inline noise_level level_at(const schedules::discrete_schedule& schedule, int t) {
    return {schedule.alpha(t), schedule.sigma(t)};
}

/// Signal-to-noise ratio a²/s² of a level (+inf at s = 0).
inline double snr(double a, double s) {
    detail::check_level(a, s);
    return (a * a) / (s * s);
}

/// SNR of a VP ᾱ: ᾱ/(1 − ᾱ).
inline double snr_from_alpha_bar(double alpha_bar) {
    detail::check_alpha_bar(alpha_bar, "alpha_bar", /*allow_zero=*/true);
    return alpha_bar / (1.0 - alpha_bar);
}

// ---------------------------------------------------------------------------------------------
// One step and transitions (docs/forward_process.md §1, §3)

/// x_t = mean·x_prev + std·z, z ~ N(0, I).
struct step_coeffs {
    double mean;
    double std;
};

/// q(x_t | x_{t−1}): (√(1 − β), √β), β in (0, 1] (1: a zero-terminal-SNR last step).
inline step_coeffs q_step_coeffs(double beta) {
    detail::check_beta(beta, "beta");
    return {std::sqrt(1.0 - beta), std::sqrt(beta)};
}

/// β_{t|s} = 1 − ᾱ_t/ᾱ_s of the kernel q(x_t | x_s), s < t, computed as (ᾱ_s − ᾱ_t)/ᾱ_s
/// (one rounding; no cancellation when ᾱ_t ≈ ᾱ_s).
inline double transition_beta(double alpha_bar_t, double alpha_bar_s) {
    detail::check_step_order(alpha_bar_t, alpha_bar_s);
    return (alpha_bar_s - alpha_bar_t) / alpha_bar_s;
}

/// The same from log ᾱ (for ᾱ so close to 1 that ᾱ itself loses 1 − ᾱ): β_{t|s} = −expm1(log ᾱ_t − log ᾱ_s).
inline double transition_beta_log(double log_alpha_bar_t, double log_alpha_bar_s) {
    require(!std::isnan(log_alpha_bar_s) && log_alpha_bar_s <= 0.0 && std::isfinite(log_alpha_bar_s),
            "log_alpha_bar_s", log_alpha_bar_s, "a finite number <= 0");
    require(!std::isnan(log_alpha_bar_t) && log_alpha_bar_t < log_alpha_bar_s, "log_alpha_bar_t",
            log_alpha_bar_t, "< log_alpha_bar_s (s < t); -inf allowed (zero terminal SNR)");
    return -std::expm1(log_alpha_bar_t - log_alpha_bar_s);
}

/// q(x_t | x_s) for s < t: (√(ᾱ_t/ᾱ_s), √β_{t|s}). With s = t − 1 this is q_step_coeffs(β_t).
inline step_coeffs transition_coeffs(double alpha_bar_t, double alpha_bar_s) {
    const double beta = transition_beta(alpha_bar_t, alpha_bar_s);
    return {std::sqrt(alpha_bar_t / alpha_bar_s), std::sqrt(beta)};
}

/// Two steps in a row, β_1 then β_2, are one step with 1 − β = (1 − β_1)(1 − β_2):
/// β = β_1 + β_2 − β_1·β_2 (computed so, without the cancellation of 1 − (1−β_1)(1−β_2)).
inline double compose_betas(double beta1, double beta2) {
    detail::check_beta(beta1, "beta1");
    detail::check_beta(beta2, "beta2");
    return beta1 + beta2 * (1.0 - beta1);
}

/// VE step σ_prev -> σ: x = x_prev + √(σ² − σ_prev²)·z, so (1, √(σ² − σ_prev²)); needs σ >= σ_prev >= 0.
inline step_coeffs ve_step_coeffs(double sigma_prev, double sigma) {
    require_nonnegative(sigma_prev, "sigma_prev");
    require_nonnegative(sigma, "sigma");
    if (sigma < sigma_prev)
        fail_argument("sigma", sigma, ">= sigma_prev = " + diffuse::detail::format_value(sigma_prev) +
                                          " (the forward process only adds noise)");
    return {1.0, std::sqrt((sigma - sigma_prev) * (sigma + sigma_prev))};
}

/// Mean coefficient m and variance v of q(x_t | x0) = N(m·x0, v·I).
struct marginal_moments {
    double mean;
    double variance;
};

/// One step of the moment recursion (closed_forms A1): m_t = √(1−β)·m_{t−1},
/// v_t = (1−β)·v_{t−1} + β. From (1, 0), t steps give (√ᾱ_t, 1 − ᾱ_t).
inline marginal_moments q_step_moments(marginal_moments prev, double beta) {
    detail::check_beta(beta, "beta");
    return {std::sqrt(1.0 - beta) * prev.mean, (1.0 - beta) * prev.variance + beta};
}

// ---------------------------------------------------------------------------------------------
// Tensor operations

namespace detail {

template <class T, class S>
tensor<T, S> standard_normal_like(const shape& sh, philox_rng& rng) {
    tensor<T, S> z(sh);
    randn(z.view(), rng);
    return z;
}

}  // namespace detail

/// q_sample with explicit noise: out = a·x0 + s·eps (diffusers `add_noise`, improved-diffusion
/// `q_sample`). Shapes: out, x0, eps all equal ([B, C, H, W]). (a, s): any level, a, s >= 0.
template <detail::output_tensor Out, detail::input_tensor X0, detail::input_tensor Eps>
void q_sample(Out&& out, const X0& x0, double a, double s, const Eps& eps) {
    static_assert(detail::same_tensor_kind<Out, X0, Eps>, "q_sample: tensors must share element type and space");
    detail::check_level(a, s);
    lincomb(detail::as_output(out), a, detail::as_input(x0), s, detail::as_input(eps));
}

/// q_sample drawing eps ~ N(0, I) from rng (out.numel() normals are consumed).
template <detail::output_tensor Out, detail::input_tensor X0>
void q_sample(Out&& out, const X0& x0, double a, double s, philox_rng& rng) {
    static_assert(detail::same_tensor_kind<Out, X0>, "q_sample: tensors must share element type and space");
    detail::check_level(a, s);
    using T = detail::value_t<X0>;
    using S = detail::space_t<X0>;
    const auto x = detail::as_input(x0);
    require_same_shape(detail::as_output(out).shape(), "out", x.shape(), "x0");
    const tensor<T, S> z = detail::standard_normal_like<T, S>(x.shape(), rng);
    lincomb(detail::as_output(out), a, x, s, z.cview());
}

/// q_sample at a noise_level.
template <detail::output_tensor Out, detail::input_tensor X0, class Noise>
void q_sample(Out&& out, const X0& x0, noise_level level, Noise&& noise) {
    q_sample(std::forward<Out>(out), x0, level.a, level.s, std::forward<Noise>(noise));
}

/// VP: out = √ᾱ·x0 + √(1−ᾱ)·noise, ᾱ in [0, 1]; noise is a tensor or a philox_rng.
template <detail::output_tensor Out, detail::input_tensor X0, class Noise>
void q_sample_vp(Out&& out, const X0& x0, double alpha_bar, Noise&& noise) {
    q_sample(std::forward<Out>(out), x0, vp_level(alpha_bar), std::forward<Noise>(noise));
}

/// VP at training timestep t of a discrete schedule: out = √ᾱ_t·x0 + √(1−ᾱ_t)·noise
/// (diffusers `add_noise(x0, noise, t)`); noise is a tensor or a philox_rng.
template <detail::output_tensor Out, detail::input_tensor X0, class Noise>
void q_sample(Out&& out, const X0& x0, const schedules::discrete_schedule& schedule, int t, Noise&& noise) {
    q_sample(std::forward<Out>(out), x0, level_at(schedule, t), std::forward<Noise>(noise));
}

/// VE / EDM: out = x0 + σ·noise, σ >= 0; noise is a tensor or a philox_rng.
template <detail::output_tensor Out, detail::input_tensor X0, class Noise>
void q_sample_ve(Out&& out, const X0& x0, double sigma, Noise&& noise) {
    q_sample(std::forward<Out>(out), x0, ve_level(sigma), std::forward<Noise>(noise));
}

/// Per-item levels (a batch of different timesteps, as in training): item b of out
/// ([B, ...]) is a[b]·x0[b] + s[b]·eps[b]. a.size() and s.size() must equal B.
template <detail::output_tensor Out, detail::input_tensor X0, detail::input_tensor Eps>
void q_sample(Out&& out, const X0& x0, std::span<const double> a, std::span<const double> s, const Eps& eps) {
    static_assert(detail::same_tensor_kind<Out, X0, Eps>, "q_sample: tensors must share element type and space");
    const auto o = detail::as_output(out);
    const auto x = detail::as_input(x0);
    const auto e = detail::as_input(eps);
    require_same_shape(o.shape(), "out", x.shape(), "x0");
    require_same_shape(o.shape(), "out", e.shape(), "eps");
    require(o.rank() >= 1, "out.rank()", o.rank(), "at least 1 (a leading batch dimension)");
    const auto batch = static_cast<std::size_t>(o.size(0));
    require(a.size() == batch, "a.size()", a.size(), "the batch size out.size(0) = " + std::to_string(batch));
    require(s.size() == batch, "s.size()", s.size(), "the batch size out.size(0) = " + std::to_string(batch));
    for (std::size_t b = 0; b < batch; ++b) {
        detail::check_level(a[b], s[b]);
        const auto i = static_cast<std::int64_t>(b);
        lincomb(o.item(i), a[b], x.item(i), s[b], e.item(i));
    }
}

/// One forward step with explicit noise z: out = √(1−β)·x_prev + √β·z.
template <detail::output_tensor Out, detail::input_tensor X, detail::input_tensor Z>
void q_step(Out&& out, const X& x_prev, double beta, const Z& z) {
    static_assert(detail::same_tensor_kind<Out, X, Z>, "q_step: tensors must share element type and space");
    const step_coeffs c = q_step_coeffs(beta);
    lincomb(detail::as_output(out), c.mean, detail::as_input(x_prev), c.std, detail::as_input(z));
}

/// One forward step drawing z ~ N(0, I) from rng.
template <detail::output_tensor Out, detail::input_tensor X>
void q_step(Out&& out, const X& x_prev, double beta, philox_rng& rng) {
    static_assert(detail::same_tensor_kind<Out, X>, "q_step: tensors must share element type and space");
    const step_coeffs c = q_step_coeffs(beta);
    const auto x = detail::as_input(x_prev);
    require_same_shape(detail::as_output(out).shape(), "out", x.shape(), "x_prev");
    const auto z = detail::standard_normal_like<detail::value_t<X>, detail::space_t<X>>(x.shape(), rng);
    lincomb(detail::as_output(out), c.mean, x, c.std, z.cview());
}

/// q(x_t | x_s), s < t (a respaced step): out = √(ᾱ_t/ᾱ_s)·x_s + √β_{t|s}·noise;
/// noise is a tensor or a philox_rng.
template <detail::output_tensor Out, detail::input_tensor X, class Noise>
void q_transition(Out&& out, const X& x_s, double alpha_bar_t, double alpha_bar_s, Noise&& noise) {
    const step_coeffs c = transition_coeffs(alpha_bar_t, alpha_bar_s);
    q_sample(std::forward<Out>(out), x_s, c.mean, c.std, std::forward<Noise>(noise));
}

/// VE step σ_prev -> σ: out = x_prev + √(σ² − σ_prev²)·noise; noise is a tensor or a philox_rng.
template <detail::output_tensor Out, detail::input_tensor X, class Noise>
void q_step_ve(Out&& out, const X& x_prev, double sigma_prev, double sigma, Noise&& noise) {
    const step_coeffs c = ve_step_coeffs(sigma_prev, sigma);
    q_sample(std::forward<Out>(out), x_prev, c.mean, c.std, std::forward<Noise>(noise));
}

}  // namespace diffuse::process
