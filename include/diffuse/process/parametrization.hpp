#pragma once
// Model parametrisations and the conversions between them (docs/parametrisations.md).
//
// For a Gaussian path x_t = a·x0 + s·eps (VP: a = √ᾱ, s = √(1−ᾱ); VE / EDM: a = 1, s = σ) a
// model predicts one of
//   epsilon        eps                                   (Ho et al. 2020)
//   sample         x0, the "denoiser" D(x; σ)            (diffusers "sample")
//   v_prediction   v = â·eps − ŝ·x0, (â, ŝ) = (a, s)/√(a² + s²)   (Salimans & Ho 2022, §4 / App. D)
//   score          ∇ log q(x_t) ≈ −eps/s                 (Song et al. 2021)
// Every conversion is linear in (x_t, value): out = c_xt·x_t + c_value·value, with (c_xt,
// c_value) computed in double on the host (conversion_coeffs) and applied with one lincomb.
//
// v in σ-space. v is defined on the variance-preserving variable: with r = √(a² + s²),
// x_t/r = â·x0 + ŝ·eps, so for VP (r = 1) v = a·eps − s·x0 and for VE v is the VP v at the same
// SNR (x_vp = x_ve/√(1+σ²)), which is the convention of k-diffusion's VDenoiser and diffusers'
// Euler scheduler with prediction_type = "v_prediction".
//
// Defined-ness. Conversions that divide by a (eps/score -> x0 or v) are refused at a = 0 (zero
// terminal SNR): x_t is pure noise and eps carries no information about x0 there; use
// v_prediction or sample. Conversions that divide by s (x0 -> eps/score/v) are refused at s = 0.

#include <diffuse/backend/lincomb.hpp>
#include <diffuse/core/error.hpp>
#include <diffuse/core/tensor.hpp>
#include <diffuse/process/detail/checks.hpp>
#include <diffuse/process/detail/views.hpp>

#include <array>
#include <cmath>
#include <string>
#include <string_view>

namespace diffuse::process {

/// What a model predicts. Names as diffusers' `prediction_type` (plus "score").
enum class prediction_type {
    epsilon,       ///< "epsilon": the noise eps
    sample,        ///< "sample": the clean data x0 (the denoiser D)
    v_prediction,  ///< "v_prediction": v = â·eps − ŝ·x0
    score,         ///< "score": ∇_x log q_t(x) = −E[eps | x_t]/s
};

inline constexpr std::array<prediction_type, 4> all_prediction_types = {
    prediction_type::epsilon, prediction_type::sample, prediction_type::v_prediction, prediction_type::score};

inline std::string_view to_string(prediction_type p) {
    switch (p) {
        case prediction_type::epsilon: return "epsilon";
        case prediction_type::sample: return "sample";
        case prediction_type::v_prediction: return "v_prediction";
        case prediction_type::score: return "score";
    }
    return "unknown";
}

/// Parses "epsilon", "sample", "v_prediction" or "score" (exact, case-sensitive, as diffusers).
inline prediction_type parse_prediction_type(std::string_view name) {
    for (prediction_type p : all_prediction_types)
        if (name == to_string(p)) return p;
    fail_argument("prediction_type", name, "one of \"epsilon\", \"sample\", \"v_prediction\", \"score\"");
}

/// out = c_xt·x_t + c_value·value.
struct conversion {
    double c_xt;
    double c_value;
};

namespace detail {

inline std::string conversion_name(prediction_type from, prediction_type to) {
    return std::string(to_string(from)) + " -> " + std::string(to_string(to));
}

[[noreturn]] inline void refuse_a_zero(prediction_type from, prediction_type to, double a) {
    fail_argument("a", a,
                  "> 0 for the conversion " + conversion_name(from, to) +
                      ": at a = 0 (zero terminal SNR) x_t is pure noise and " + std::string(to_string(from)) +
                      " carries no information about x0; use v_prediction or sample (x0) prediction there");
}

[[noreturn]] inline void refuse_s_zero(prediction_type from, prediction_type to, double s) {
    fail_argument("s", s,
                  "> 0 for the conversion " + conversion_name(from, to) +
                      ": at s = 0 (no noise) x_t = x0 and the noise is undetermined");
}

}  // namespace detail

/// The coefficients of from -> to at level (a, s) of x_t = a·x0 + s·eps (docs/parametrisations.md §2):
///   x0 and eps from each type (r = √(a² + s²), â = a/r, ŝ = s/r):
///     sample:   x0 = value,                    eps = (x_t − a·x0)/s
///     epsilon:  eps = value,                   x0 = (x_t − s·eps)/a
///     v:        x0 = â·x_t/r − ŝ·v,            eps = ŝ·x_t/r + â·v
///     score:    eps = −s·score,                x0 = (x_t + s²·score)/a
///   and each type from (x0, eps):  v = â·eps − ŝ·x0,  score = −eps/s.
/// from == to gives (0, 1). Throws where the target is undefined (a = 0 or s = 0, see above).
inline conversion conversion_coeffs(prediction_type from, prediction_type to, double a, double s) {
    detail::check_level(a, s);
    if (from == to) return {0.0, 1.0};
    const double r = std::hypot(a, s);
    const double ah = a / r, sh = s / r;
    // x0 = x0c.c_xt·x_t + x0c.c_value·value and eps likewise, where defined.
    conversion x0c{}, epsc{};
    bool has_x0 = true, has_eps = true;
    switch (from) {
        case prediction_type::sample:
            x0c = {0.0, 1.0};
            has_eps = s > 0.0;
            if (has_eps) epsc = {1.0 / s, -a / s};
            break;
        case prediction_type::epsilon:
            epsc = {0.0, 1.0};
            has_x0 = a > 0.0;
            if (has_x0) x0c = {1.0 / a, -s / a};
            break;
        case prediction_type::v_prediction:
            x0c = {ah / r, -sh};
            epsc = {sh / r, ah};
            break;
        case prediction_type::score:
            epsc = {0.0, -s};
            has_x0 = a > 0.0;
            if (has_x0) x0c = {1.0 / a, s * s / a};
            break;
    }
    switch (to) {
        case prediction_type::sample:
            if (!has_x0) detail::refuse_a_zero(from, to, a);
            return x0c;
        case prediction_type::epsilon:
            if (!has_eps) detail::refuse_s_zero(from, to, s);
            return epsc;
        case prediction_type::v_prediction:
            if (!has_x0) detail::refuse_a_zero(from, to, a);
            if (!has_eps) detail::refuse_s_zero(from, to, s);
            // v = â·eps − ŝ·x0 (same-sign terms are added, so the sums below do not cancel for
            // the closed forms of §2: e.g. sample -> v is (a/(r s), −r/s)).
            return {ah * epsc.c_xt - sh * x0c.c_xt, ah * epsc.c_value - sh * x0c.c_value};
        case prediction_type::score:
            if (!has_eps) detail::refuse_s_zero(from, to, s);
            if (s == 0.0) detail::refuse_s_zero(from, to, s);
            return {-epsc.c_xt / s, -epsc.c_value / s};
    }
    fail("conversion_coeffs: unknown prediction_type");
}

/// conversion_coeffs in σ-space (VE / EDM / k-diffusion: x = x0 + σ·eps, D = x0): level (1, σ).
inline conversion conversion_coeffs_ve(prediction_type from, prediction_type to, double sigma) {
    require_nonnegative(sigma, "sigma");
    return conversion_coeffs(from, to, 1.0, sigma);
}

/// out = the `to` parametrisation of `value` (a `from` prediction) at x_t, level (a, s).
/// Shapes equal ([B, C, H, W]); out may alias value or x_t.
template <detail::output_tensor Out, detail::input_tensor V, detail::input_tensor Xt>
void convert(Out&& out, prediction_type from, const V& value, prediction_type to, const Xt& x_t, double a, double s) {
    static_assert(detail::same_tensor_kind<Out, V, Xt>, "convert: tensors must share element type and space");
    const conversion c = conversion_coeffs(from, to, a, s);
    lincomb(detail::as_output(out), c.c_xt, detail::as_input(x_t), c.c_value, detail::as_input(value));
}

/// convert in σ-space (x = x0 + σ·eps).
template <detail::output_tensor Out, detail::input_tensor V, detail::input_tensor Xt>
void convert_ve(Out&& out, prediction_type from, const V& value, prediction_type to, const Xt& x_t, double sigma) {
    require_nonnegative(sigma, "sigma");
    convert(out, from, value, to, x_t, 1.0, sigma);
}

/// The v target from the clean data and the noise (diffusers `get_velocity`):
/// out = â·eps − ŝ·x0, (â, ŝ) = (a, s)/√(a² + s²); for VP v = a·eps − s·x0.
template <detail::output_tensor Out, detail::input_tensor X0, detail::input_tensor Eps>
void velocity(Out&& out, const X0& x0, const Eps& eps, double a, double s) {
    static_assert(detail::same_tensor_kind<Out, X0, Eps>, "velocity: tensors must share element type and space");
    detail::check_level(a, s);
    const double r = std::hypot(a, s);
    lincomb(detail::as_output(out), a / r, detail::as_input(eps), -s / r, detail::as_input(x0));
}

/// The regression target of a `type` model for the pair (x0, eps) at level (a, s):
/// epsilon -> eps, sample -> x0, v_prediction -> â·eps − ŝ·x0, score -> −eps/s (the
/// denoising-score-matching target ∇ log q(x_t | x0)). Shapes equal.
template <detail::output_tensor Out, detail::input_tensor X0, detail::input_tensor Eps>
void training_target(Out&& out, prediction_type type, const X0& x0, const Eps& eps, double a, double s) {
    static_assert(detail::same_tensor_kind<Out, X0, Eps>, "training_target: tensors must share type and space");
    detail::check_level(a, s);
    const auto o = detail::as_output(out);
    switch (type) {
        case prediction_type::epsilon: lincomb(o, 0.0, detail::as_input(x0), 1.0, detail::as_input(eps)); return;
        case prediction_type::sample: lincomb(o, 1.0, detail::as_input(x0), 0.0, detail::as_input(eps)); return;
        case prediction_type::v_prediction: velocity(o, x0, eps, a, s); return;
        case prediction_type::score:
            if (s == 0.0) fail_argument("s", s, "> 0 for the score target −eps/s");
            lincomb(o, 0.0, detail::as_input(x0), -1.0 / s, detail::as_input(eps));
            return;
    }
}

}  // namespace diffuse::process
