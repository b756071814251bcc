#pragma once
// Training losses and likelihood terms (docs/forward_process.md §6, docs/parametrisations.md §4).
//
//   L_simple          mean over non-batch dims of (prediction − target)², per batch item
//                     (Ho et al. 2020, Eq. 14; improved-diffusion `mean_flat`)
//   min-SNR-γ         loss weights that make x0/eps/v losses identical (Hang et al. 2023, §3.4)
//   EDM weight        λ(σ) = (σ² + σ_d²)/(σ·σ_d)² (Karras et al. 2022, Table 1)
//   normal_kl         KL(N(m1, e^{lv1}) || N(m2, e^{lv2})), improved-diffusion `normal_kl`
//   decoder           discretised Gaussian log-likelihood on 256 bins in [−1, 1]
//                     (improved-diffusion `discretized_gaussian_log_likelihood`), with the exact
//                     Φ or improved-diffusion's tanh approximation — the caller names which
//   VLB terms         L_T prior KL, L_{t−1} posterior KL, L_0 decoder NLL, in bits per dim
//                     (Ho et al. 2020, Eq. 5; improved-diffusion `_vb_terms_bpd`, `_prior_bpd`)
//
// Element-wise terms run as for_each functors computing in double (float tensors store the
// rounded result); per-item reductions use the backend's deterministic sums. Tensors are
// [B, ...] (typically [B, C, H, W]); "per item" means one value per leading index.

#include <diffuse/backend/for_each.hpp>
#include <diffuse/backend/lincomb.hpp>
#include <diffuse/backend/reduce.hpp>
#include <diffuse/core/config.hpp>
#include <diffuse/core/error.hpp>
#include <diffuse/core/shape.hpp>
#include <diffuse/core/tensor.hpp>
#include <diffuse/process/detail/checks.hpp>
#include <diffuse/process/detail/views.hpp>
#include <diffuse/process/parametrization.hpp>
#include <diffuse/process/posterior.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <numbers>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace diffuse::process {

// ---------------------------------------------------------------------------------------------
// Reductions and L_simple

/// One value per batch item: the mean of x[b] over its non-batch elements ([B, ...] -> B values;
/// improved-diffusion `mean_flat`).
template <detail::input_tensor X>
std::vector<double> mean_flat(const X& x) {
    const auto v = detail::as_input(x);
    require(v.rank() >= 1, "x.rank()", v.rank(), "at least 1 (a leading batch dimension)");
    const std::int64_t batch = v.size(0);
    require(batch >= 1 && v.numel() / batch >= 1, "x.shape()", v.shape().str(), "at least one element per batch item");
    std::vector<double> out(static_cast<std::size_t>(batch));
    const double per = static_cast<double>(v.numel() / batch);
    for (std::int64_t b = 0; b < batch; ++b) out[static_cast<std::size_t>(b)] = sum(v.item(b)) / per;
    return out;
}

/// L_simple per batch item: mean over non-batch dims of (prediction − target)². Shapes equal.
template <detail::input_tensor P, detail::input_tensor Q>
std::vector<double> mean_flat_squared_error(const P& prediction, const Q& target) {
    static_assert(detail::same_tensor_kind<P, Q>, "mean_flat_squared_error: tensors must share type and space");
    const auto p = detail::as_input(prediction);
    const auto q = detail::as_input(target);
    require_same_shape(p.shape(), "prediction", q.shape(), "target");
    require(p.rank() >= 1, "prediction.rank()", p.rank(), "at least 1 (a leading batch dimension)");
    const std::int64_t batch = p.size(0);
    require(batch >= 1 && p.numel() / batch >= 1, "prediction.shape()", p.shape().str(),
            "at least one element per batch item");
    tensor<detail::value_t<P>, detail::space_t<P>> diff(p.shape());
    lincomb(diff.view(), 1.0, p, -1.0, q);  // prediction − target
    const double per = static_cast<double>(p.numel() / batch);
    std::vector<double> out(static_cast<std::size_t>(batch));
    for (std::int64_t b = 0; b < batch; ++b)
        out[static_cast<std::size_t>(b)] = sum_squares(diff.cview().item(b)) / per;
    return out;
}

/// L_simple over the whole batch: mean of (prediction − target)² over all elements
/// (= the mean of the per-item values, items being equal in size).
template <detail::input_tensor P, detail::input_tensor Q>
double mean_squared_error(const P& prediction, const Q& target) {
    const std::vector<double> per_item = mean_flat_squared_error(prediction, target);
    double acc = 0.0;
    for (double v : per_item) acc += v;
    return acc / static_cast<double>(per_item.size());
}

// ---------------------------------------------------------------------------------------------
// Loss weights

/// min-SNR-γ weight (Hang et al. 2023; diffusers train_text_to_image `snr_gamma`) for a model of
/// the given parametrisation, so that every parametrisation's weighted MSE equals
/// min(SNR, γ)·||x0 − x̂0||² (docs/parametrisations.md §4):
///   sample: min(SNR, γ)      epsilon: min(SNR, γ)/SNR      v_prediction: min(SNR, γ)/(SNR + 1)
///   score (VP, s² = 1/(1 + SNR)): min(SNR, γ)/(SNR·(SNR + 1))
/// SNR in [0, +inf]; the ratios are evaluated as 1 (eps) when SNR < γ, so SNR = 0 (zero terminal
/// SNR) gives the limits 1, 1 and 1, not 0/0. γ > 0 finite (the paper's default is 5).
inline double min_snr_weight(double snr_value, double gamma, prediction_type type) {
    require(!std::isnan(snr_value) && snr_value >= 0.0, "snr", snr_value, "a number >= 0 (+inf allowed)");
    require_positive(gamma, "gamma");
    const double clipped = snr_value < gamma ? snr_value : gamma;          // min(SNR, γ)
    const double eps_w = snr_value < gamma ? 1.0 : gamma / snr_value;      // min(SNR, γ)/SNR
    switch (type) {
        case prediction_type::sample: return clipped;
        case prediction_type::epsilon: return eps_w;
        case prediction_type::v_prediction: return std::isinf(snr_value) ? 0.0 : clipped / (snr_value + 1.0);
        case prediction_type::score: return std::isinf(snr_value) ? 0.0 : eps_w / (snr_value + 1.0);
    }
    fail("min_snr_weight: unknown prediction_type");
}

/// EDM loss weight λ(σ) = (σ² + σ_d²)/(σ·σ_d)² = 1/c_out² (Karras et al. 2022, Table 1), for the
/// denoiser (x0) loss ||D − x0||². σ > 0, σ_d > 0 (EDM's default σ_d = 0.5).
inline double edm_weight(double sigma, double sigma_data = 0.5) {
    require_positive(sigma, "sigma");
    require_positive(sigma_data, "sigma_data");
    const double ss = sigma * sigma_data;
    return (sigma * sigma + sigma_data * sigma_data) / (ss * ss);
}

// ---------------------------------------------------------------------------------------------
// KL between Gaussians

/// KL(N(m1, e^{lv1}) || N(m2, e^{lv2})) = ½(−1 + lv2 − lv1 + e^{lv1−lv2} + (m1 − m2)²·e^{−lv2})
/// (improved-diffusion losses.normal_kl; closed_forms E1). Inputs finite.
inline double normal_kl(double mean1, double logvar1, double mean2, double logvar2) {
    require(std::isfinite(mean1), "mean1", mean1, "a finite number");
    require(std::isfinite(mean2), "mean2", mean2, "a finite number");
    detail::check_log_variance(logvar1, "logvar1");
    detail::check_log_variance(logvar2, "logvar2");
    const double d = mean1 - mean2;
    return 0.5 * (-1.0 + logvar2 - logvar1 + std::exp(logvar1 - logvar2) + d * d * std::exp(-logvar2));
}

namespace detail {

/// Element-wise KL; a null pointer means "use the constant".
template <class T>
struct normal_kl_op {
    T* out;
    const T* m1;
    const T* lv1;
    const T* m2;
    const T* lv2;
    double lv1c, m2c, lv2c;
    DIFFUSE_HOST_DEVICE void operator()(std::int64_t i) const {
        const double a = static_cast<double>(m1[i]);
        const double la = lv1 ? static_cast<double>(lv1[i]) : lv1c;
        const double b = m2 ? static_cast<double>(m2[i]) : m2c;
        const double lb = lv2 ? static_cast<double>(lv2[i]) : lv2c;
        const double d = a - b;
        out[i] = static_cast<T>(0.5 * (-1.0 + lb - la + exp(la - lb) + d * d * exp(-lb)));
    }
};

/// The data pointer of a tensor argument (checked against out's shape), or null for a number.
template <class T, class V>
const T* optional_data(const V& v, const shape& out_shape, const char* name) {
    if constexpr (std::is_arithmetic_v<V>) {
        return nullptr;
    } else {
        const auto view = as_input(v);
        require_same_shape(out_shape, "out", view.shape(), name);
        return view.data();
    }
}

template <class V>
double optional_constant(const V& v, const char* name) {
    if constexpr (std::is_arithmetic_v<V>) {
        require(std::isfinite(static_cast<double>(v)), name, static_cast<double>(v), "a finite number");
        return static_cast<double>(v);
    } else {
        return 0.0;
    }
}

/// A number, or a tensor of the same element type and space as O (a constraint, so the
/// disjunction short-circuits and same_tensor_kind is never formed for a number).
template <class V, class O>
concept tensor_or_number = std::is_arithmetic_v<V> || (input_tensor<V> && same_tensor_kind<O, V>);

}  // namespace detail

/// Element-wise KL, out[i] = normal_kl(mean1[i], logvar1[i], mean2[i], logvar2[i]) in nats.
/// mean1 is a tensor; logvar1, mean2 and logvar2 are each a tensor of out's shape or a number
/// (a fixed variance, or mean2 = 0 for the prior). Computed in double per element.
template <detail::output_tensor Out, detail::input_tensor M1, class LV1, class M2, class LV2>
    requires(detail::tensor_or_number<LV1, Out> && detail::tensor_or_number<M2, Out> &&
             detail::tensor_or_number<LV2, Out>)
void normal_kl(Out&& out, const M1& mean1, const LV1& logvar1, const M2& mean2, const LV2& logvar2) {
    static_assert(detail::same_tensor_kind<Out, M1>, "normal_kl: tensors must share element type and space");
    const auto o = detail::as_output(out);
    const auto m1 = detail::as_input(mean1);
    require_same_shape(o.shape(), "out", m1.shape(), "mean1");
    using T = detail::value_t<M1>;
    detail::normal_kl_op<T> op{o.data(),
                               m1.data(),
                               detail::optional_data<T>(logvar1, o.shape(), "logvar1"),
                               detail::optional_data<T>(mean2, o.shape(), "mean2"),
                               detail::optional_data<T>(logvar2, o.shape(), "logvar2"),
                               detail::optional_constant(logvar1, "logvar1"),
                               detail::optional_constant(mean2, "mean2"),
                               detail::optional_constant(logvar2, "logvar2")};
    for_each<detail::space_t<M1>>(o.numel(), op);
}

// ---------------------------------------------------------------------------------------------
// Normal CDFs and the discretised decoder

/// Which standard normal CDF the decoder uses.
enum class normal_cdf {
    exact,        ///< Φ(x) = ½·erfc(−x/√2), with tails taken as erfc of the positive side
    tanh_approx,  ///< ½(1 + tanh(√(2/π)(x + 0.044715·x³))), improved-diffusion's
                  ///< approx_standard_normal_cdf; max |error| ≈ 1.789e-4 (at x ≈ −2.592)
};

inline std::string_view to_string(normal_cdf c) { return c == normal_cdf::exact ? "exact" : "tanh_approx"; }

namespace detail {

inline constexpr double inv_sqrt2 = 0.70710678118654752440;
inline constexpr double sqrt_2_over_pi = 0.79788456080286535588;  // √(2/π)

DIFFUSE_HOST_DEVICE inline double phi_exact(double x) { return 0.5 * erfc(-x * inv_sqrt2); }
DIFFUSE_HOST_DEVICE inline double phi_tanh(double x) {
    return 0.5 * (1.0 + tanh(sqrt_2_over_pi * (x + 0.044715 * x * x * x)));
}

/// log P(bin of x) for one element (improved-diffusion's formula; see discretized_gaussian_log_likelihood).
DIFFUSE_HOST_DEVICE inline double discretized_ll(double x, double mean, double log_scale, bool exact) {
    const double c = x - mean;
    const double inv_std = exp(-log_scale);
    const double hi = inv_std * (c + 1.0 / 255.0);  // upper bin edge, standardised
    const double lo = inv_std * (c - 1.0 / 255.0);  // lower bin edge, standardised
    const double clamp_min = 1e-12;  // improved-diffusion's clamp(min=1e-12)
    double p;
    if (x < -0.999) {
        p = exact ? phi_exact(hi) : phi_tanh(hi);  // P(X <= upper edge)
    } else if (x > 0.999) {
        p = exact ? 0.5 * erfc(lo * inv_sqrt2) : 1.0 - phi_tanh(lo);  // P(X > lower edge)
    } else if (exact) {
        // Φ(hi) − Φ(lo), evaluated on the side of 0 where it does not cancel.
        p = lo > 0.0 ? 0.5 * (erfc(lo * inv_sqrt2) - erfc(hi * inv_sqrt2))
                     : 0.5 * (erfc(-hi * inv_sqrt2) - erfc(-lo * inv_sqrt2));
    } else {
        p = phi_tanh(hi) - phi_tanh(lo);
    }
    return log(p > clamp_min ? p : clamp_min);
}

template <class T>
struct discretized_ll_op {
    T* out;
    const T* x;
    const T* mean;
    const T* log_scale;
    double log_scale_c;
    bool exact;
    DIFFUSE_HOST_DEVICE void operator()(std::int64_t i) const {
        const double ls = log_scale ? static_cast<double>(log_scale[i]) : log_scale_c;
        out[i] = static_cast<T>(discretized_ll(static_cast<double>(x[i]), static_cast<double>(mean[i]), ls, exact));
    }
};

}  // namespace detail

/// The standard normal CDF of the chosen kind.
inline double standard_normal_cdf(double x, normal_cdf kind) {
    require(!std::isnan(x), "x", x, "a number (not NaN)");
    return kind == normal_cdf::exact ? detail::phi_exact(x) : detail::phi_tanh(x);
}

/// log-probability (nats) of the 8-bit bin containing x under N(mean, e^{2·log_scale}), data
/// rescaled to [−1, 1] (bin k has centre k/127.5 − 1, half-width 1/255):
///   interior     log[Φ((x − mean + 1/255)/σ) − Φ((x − mean − 1/255)/σ)]
///   x < −0.999   log Φ((x − mean + 1/255)/σ)          (the bin extends to −∞)
///   x > 0.999    log[1 − Φ((x − mean − 1/255)/σ)]     (the bin extends to +∞)
/// with each probability clamped to >= 1e-12 before the log (improved-diffusion L50–77).
/// `cdf` names the CDF: normal_cdf::tanh_approx reproduces improved-diffusion; normal_cdf::exact
/// is the true likelihood (tail bins via erfc, no cancellation). The 256 probabilities telescope
/// to 1 for either CDF when no clamp is active.
inline double discretized_gaussian_log_likelihood(double x, double mean, double log_scale, normal_cdf cdf) {
    require(std::isfinite(x), "x", x, "a finite number (data rescaled to [-1, 1])");
    require(std::isfinite(mean), "mean", mean, "a finite number");
    detail::check_log_variance(log_scale, "log_scale");
    return detail::discretized_ll(x, mean, log_scale, cdf == normal_cdf::exact);
}

/// Element-wise decoder log-likelihood (nats): out[i] = discretized_gaussian_log_likelihood(x[i],
/// means[i], log_scales[i], cdf). log_scales is a tensor of x's shape or one number.
template <detail::output_tensor Out, detail::input_tensor X, detail::input_tensor M, class LS>
    requires detail::tensor_or_number<LS, Out>
void discretized_gaussian_log_likelihood(Out&& out, const X& x, const M& means, const LS& log_scales, normal_cdf cdf) {
    static_assert(detail::same_tensor_kind<Out, X, M>, "discretized_gaussian_log_likelihood: tensors must share type and space");
    const auto o = detail::as_output(out);
    const auto xv = detail::as_input(x);
    const auto mv = detail::as_input(means);
    require_same_shape(o.shape(), "out", xv.shape(), "x");
    require_same_shape(o.shape(), "out", mv.shape(), "means");
    using T = detail::value_t<X>;
    detail::discretized_ll_op<T> op{o.data(), xv.data(), mv.data(), detail::optional_data<T>(log_scales, o.shape(), "log_scales"),
                                    detail::optional_constant(log_scales, "log_scales"), cdf == normal_cdf::exact};
    for_each<detail::space_t<X>>(o.numel(), op);
}

/// Continuous Gaussian log-density log N(x; mean, e^{log_variance}) in nats (a decoder for
/// continuous data; closed_forms E3's L_0).
inline double gaussian_log_likelihood(double x, double mean, double log_variance) {
    require(std::isfinite(x), "x", x, "a finite number");
    require(std::isfinite(mean), "mean", mean, "a finite number");
    detail::check_log_variance(log_variance, "log_variance");
    const double d = x - mean;
    return -0.5 * (std::log(2.0 * std::numbers::pi) + log_variance + d * d * std::exp(-log_variance));
}

// ---------------------------------------------------------------------------------------------
// VLB terms and units

/// nats -> bits.
inline double nats_to_bits(double nats) { return nats / std::numbers::ln2; }

/// A total in nats over `dims` dimensions -> bits per dimension.
inline double bits_per_dim(double nats, std::int64_t dims) {
    require(dims >= 1, "dims", dims, "an integer >= 1 (C·H·W)");
    return nats / (std::numbers::ln2 * static_cast<double>(dims));
}

/// L_T for one element: KL(q(x_T | x0) || N(0, 1)) = normal_kl(√ᾱ_T·x0, log(1 − ᾱ_T), 0, 0) nats.
/// ᾱ_T in [0, 1).
inline double prior_kl(double x0, double alpha_bar_T) {
    require(std::isfinite(alpha_bar_T) && alpha_bar_T >= 0.0 && alpha_bar_T < 1.0, "alpha_bar_T", alpha_bar_T,
            "in [0, 1)");
    return normal_kl(std::sqrt(alpha_bar_T) * x0, std::log1p(-alpha_bar_T), 0.0, 0.0);
}

/// L_T per batch item in bits per dim (improved-diffusion `_prior_bpd`): mean_flat of the
/// element-wise prior KL, divided by ln 2. x0: [B, ...].
template <detail::input_tensor X0>
std::vector<double> prior_bits_per_dim(const X0& x0, double alpha_bar_T) {
    require(std::isfinite(alpha_bar_T) && alpha_bar_T >= 0.0 && alpha_bar_T < 1.0, "alpha_bar_T", alpha_bar_T,
            "in [0, 1)");
    const auto x = detail::as_input(x0);
    using T = detail::value_t<X0>;
    using S = detail::space_t<X0>;
    tensor<T, S> mean(x.shape()), kl(x.shape());
    lincomb(mean.view(), std::sqrt(alpha_bar_T), x);
    normal_kl(kl, mean, std::log1p(-alpha_bar_T), 0.0, 0.0);
    std::vector<double> out = mean_flat(kl);
    for (double& v : out) v = nats_to_bits(v);
    return out;
}

/// One VLB term per batch item in bits per dim (improved-diffusion `_vb_terms_bpd`) for reverse
/// step i of a posterior table, given the model's mean μ_θ ([B, ...]) and log-variance (a tensor
/// of the same shape, or one number for the fixed types):
///   i > 0:  L_{i−1} = mean_flat KL(q(x_{i−1} | x_i, x0) || N(μ_θ, σ²)) / ln 2, with q's
///           log-variance = posterior_log_variance_clipped[i]
///   i = 0:  L_0 = mean_flat −log p_decoder(x0 | μ_θ, σ) / ln 2, the discretised decoder of
///           `cdf`, log_scale = ½·log σ² (x0 rescaled to [−1, 1])
template <detail::input_tensor X0, detail::input_tensor Xt, detail::input_tensor M, class LV>
    requires detail::tensor_or_number<LV, X0>
std::vector<double> vb_term_bits_per_dim(const X0& x0, const Xt& x_t, const M& model_mean, const LV& model_log_variance,
                                         const posterior_table& tab, std::size_t i, normal_cdf cdf) {
    static_assert(detail::same_tensor_kind<X0, Xt, M>, "vb_term_bits_per_dim: tensors must share type and space");
    require(i < tab.size(), "i", i, "a step index in [0, " + std::to_string(tab.size()) + ")");
    const auto x = detail::as_input(x0);
    const auto xt = detail::as_input(x_t);
    const auto mm = detail::as_input(model_mean);
    require_same_shape(x.shape(), "x0", xt.shape(), "x_t");
    require_same_shape(x.shape(), "x0", mm.shape(), "model_mean");
    using T = detail::value_t<X0>;
    using S = detail::space_t<X0>;
    tensor<T, S> term(x.shape());
    if (i == 0) {
        tensor<T, S> ll(x.shape());
        if constexpr (std::is_arithmetic_v<LV>) {
            discretized_gaussian_log_likelihood(ll, x, mm, 0.5 * static_cast<double>(model_log_variance), cdf);
        } else {
            tensor<T, S> half(x.shape());
            lincomb(half.view(), 0.5, detail::as_input(model_log_variance));
            discretized_gaussian_log_likelihood(ll, x, mm, half, cdf);
        }
        lincomb(term.view(), -1.0, ll.cview());  // NLL
    } else {
        tensor<T, S> true_mean(x.shape());
        posterior_mean(true_mean, x, xt, tab.at(i));
        normal_kl(term, true_mean, tab.posterior_log_variance_clipped[i], mm, model_log_variance);
    }
    std::vector<double> out = mean_flat(term);
    for (double& v : out) v = nats_to_bits(v);
    return out;
}

}  // namespace diffuse::process
