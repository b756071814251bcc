#pragma once
// The forward-process posterior q(x_s | x_t, x0) for any s < t, and the reverse-variance
// conventions of DDPM samplers (docs/forward_process.md §4–§5).
//
//   α_{t|s} = ᾱ_t/ᾱ_s,   β_{t|s} = 1 − α_{t|s}          (s = t − 1: α_t, β_t; after respacing: any s < t)
//   q(x_s | x_t, x0) = N(c_x0·x0 + c_xt·x_t, β̃·I)      (Ho et al. 2020, Eqs. 6–7, for s = t − 1)
//     c_x0 = √ᾱ_s·β_{t|s}/(1 − ᾱ_t)
//     c_xt = √α_{t|s}·(1 − ᾱ_s)/(1 − ᾱ_t)
//     β̃    = (1 − ᾱ_s)/(1 − ᾱ_t)·β_{t|s}
//
// Two scalar entry points compute the same numbers: from ᾱ (posterior) and from log ᾱ
// (posterior_log; 1 − ᾱ = −expm1(log ᾱ) and β_{t|s} = −expm1(log ᾱ_t − log ᾱ_s) keep full
// relative precision when 1 − ᾱ is tiny). The first step of a chain has ᾱ_s = 1, so β̃ = 0 exactly
// and log β̃ = −inf; the tables below carry the peers' two conventions for that step.
//
// Tensor operations (posterior_mean, posterior_sample) are one lincomb each; shapes equal
// ([B, C, H, W]), float or double, host or device.

#include <diffuse/backend/for_each.hpp>
#include <diffuse/backend/lincomb.hpp>
#include <diffuse/backend/randn.hpp>
#include <diffuse/core/config.hpp>
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
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace diffuse::process {

/// Everything about one posterior step t -> s (s < t).
struct posterior_coeffs {
    double coef_x0;       ///< c_x0 = √ᾱ_s·β_{t|s}/(1 − ᾱ_t)
    double coef_xt;       ///< c_xt = √α_{t|s}·(1 − ᾱ_s)/(1 − ᾱ_t)
    double variance;      ///< β̃ = (1 − ᾱ_s)/(1 − ᾱ_t)·β_{t|s}  (0 exactly when ᾱ_s = 1)
    double log_variance;  ///< log β̃ (−inf when ᾱ_s = 1; not clipped, see posterior_table)
    double alpha;         ///< α_{t|s} = ᾱ_t/ᾱ_s
    double beta;          ///< β_{t|s} = 1 − ᾱ_t/ᾱ_s
};

namespace detail {

/// log(1 − e^x) for x <= 0, accurate everywhere (Mächler 2012): log(−expm1(x)) near 0, log1p(−e^x) below −ln 2.
inline double log1mexp(double x) {
    return x > -0.6931471805599453 ? std::log(-std::expm1(x)) : std::log1p(-std::exp(x));
}

}  // namespace detail

/// Posterior coefficients from ᾱ_t and ᾱ_s: ᾱ_s in (0, 1], ᾱ_t in [0, ᾱ_s) (ᾱ_t = 0 is a
/// zero-terminal-SNR step: then c_xt = 0, c_x0 = √ᾱ_s, β̃ = 1 − ᾱ_s).
/// 1 − ᾱ is formed as 1 − ᾱ (exact for ᾱ >= 1/2) and β_{t|s} as (ᾱ_s − ᾱ_t)/ᾱ_s.
inline posterior_coeffs posterior(double alpha_bar_t, double alpha_bar_s) {
    detail::check_step_order(alpha_bar_t, alpha_bar_s);
    const double om_t = 1.0 - alpha_bar_t;  // 1 − ᾱ_t > 0
    const double om_s = 1.0 - alpha_bar_s;  // 1 − ᾱ_s >= 0
    const double beta = (alpha_bar_s - alpha_bar_t) / alpha_bar_s;
    const double alpha = alpha_bar_t / alpha_bar_s;
    posterior_coeffs c{};
    c.alpha = alpha;
    c.beta = beta;
    c.coef_x0 = std::sqrt(alpha_bar_s) * beta / om_t;
    c.coef_xt = std::sqrt(alpha) * om_s / om_t;
    c.variance = om_s / om_t * beta;
    c.log_variance = om_s == 0.0 ? -std::numeric_limits<double>::infinity()
                                 : std::log(om_s) - std::log(om_t) + std::log(beta);
    return c;
}

/// Posterior coefficients from log ᾱ_t < log ᾱ_s <= 0 (log ᾱ_t = −inf allowed: zero terminal
/// SNR). Uses 1 − ᾱ = −expm1(log ᾱ), β_{t|s} = −expm1(log ᾱ_t − log ᾱ_s), log(1 − ᾱ) = log1mexp.
inline posterior_coeffs posterior_log(double log_alpha_bar_t, double log_alpha_bar_s) {
    require(std::isfinite(log_alpha_bar_s) && log_alpha_bar_s <= 0.0, "log_alpha_bar_s", log_alpha_bar_s,
            "a finite number <= 0 (ᾱ_s in (0, 1])");
    require(!std::isnan(log_alpha_bar_t) && log_alpha_bar_t < log_alpha_bar_s, "log_alpha_bar_t",
            log_alpha_bar_t, "< log_alpha_bar_s (s < t); -inf allowed (zero terminal SNR)");
    const double d = log_alpha_bar_t - log_alpha_bar_s;  // log α_{t|s} < 0
    const double om_t = -std::expm1(log_alpha_bar_t);
    const double om_s = -std::expm1(log_alpha_bar_s);
    const double beta = -std::expm1(d);
    posterior_coeffs c{};
    c.alpha = std::exp(d);
    c.beta = beta;
    c.coef_x0 = std::exp(0.5 * log_alpha_bar_s) * beta / om_t;
    c.coef_xt = std::exp(0.5 * d) * om_s / om_t;
    c.variance = om_s / om_t * beta;
    c.log_variance = log_alpha_bar_s == 0.0
                         ? -std::numeric_limits<double>::infinity()
                         : detail::log1mexp(log_alpha_bar_s) - detail::log1mexp(log_alpha_bar_t) + detail::log1mexp(d);
    return c;
}

/// Posterior step t -> s on a discrete schedule (integer timesteps, diffusers indexing:
/// ᾱ_t = schedule.alpha_bar(t), t in [0, T−1]; s = −1 means ᾱ_s = 1, the clean data).
/// Uses the schedule's accurate log ᾱ.
inline posterior_coeffs posterior_at(const schedules::discrete_schedule& schedule, int t, int s) {
    const int T = schedule.num_train_timesteps();
    require(t >= 0 && t < T, "t", t, "an integer timestep in [0, " + std::to_string(T - 1) + "]");
    require(s >= -1 && s < t, "s", s, "an integer in [-1, t) = [-1, " + std::to_string(t) + ") (s < t; -1: ᾱ = 1)");
    const double ls = s < 0 ? 0.0 : schedule.log_alpha_bar(s);
    return posterior_log(schedule.log_alpha_bar(t), ls);
}

/// Posterior step t -> t − 1 on a discrete schedule (t = 0: to ᾱ = 1).
inline posterior_coeffs posterior_at(const schedules::discrete_schedule& schedule, int t) {
    return posterior_at(schedule, t, t - 1);
}

// ---------------------------------------------------------------------------------------------
// Tables over a grid (improved-diffusion's GaussianDiffusion arrays)

/// Per-step arrays over a grid of N >= 2 noise levels ᾱ_0 > ᾱ_1 > ... > ᾱ_{N−1} (the training
/// grid, or the kept levels of a respaced one); step i goes from level i to level i − 1, with
/// ᾱ_{−1} := 1. Index i as in improved-diffusion (t = 0 is the first step).
struct posterior_table {
    std::vector<double> alphas_cumprod;                ///< ᾱ_i
    std::vector<double> betas;                         ///< β_{i|i−1} (= 1 − ᾱ_0 at i = 0)
    std::vector<double> log_betas;                     ///< log β_{i|i−1}
    std::vector<double> posterior_variance;            ///< β̃_i (0 at i = 0)
    std::vector<double> posterior_log_variance_clipped;  ///< log β̃_i, with log β̃_1 at i = 0 (ID)
    std::vector<double> posterior_mean_coef1;          ///< c_x0 (multiplies x0)
    std::vector<double> posterior_mean_coef2;          ///< c_xt (multiplies x_t)

    std::size_t size() const { return alphas_cumprod.size(); }

    /// The coefficients of step i (log_variance unclipped: −inf at i = 0).
    posterior_coeffs at(std::size_t i) const {
        require(i < size(), "i", i, "a step index in [0, " + std::to_string(size()) + ")");
        return {posterior_mean_coef1[i], posterior_mean_coef2[i], posterior_variance[i],
                i == 0 ? -std::numeric_limits<double>::infinity() : posterior_log_variance_clipped[i],
                1.0 - betas[i], betas[i]};
    }
};

namespace detail {

inline posterior_table table_from_log(std::span<const double> log_ab) {
    const std::size_t n = log_ab.size();
    require(n >= 2, "grid size", n,
            "at least 2 levels (the clipped log-variance of step 0 borrows step 1's value)");
    for (std::size_t i = 0; i < n; ++i) {
        const double l = log_ab[i];
        const std::string arg = "log_alphas_cumprod[" + std::to_string(i) + "]";
        const bool last = i + 1 == n;
        if (std::isnan(l) || !(l < 0.0) || (!last && !std::isfinite(l)))
            fail_argument(arg, l, last ? "< 0 (-inf allowed at the last level: zero terminal SNR)" : "finite and < 0");
        if (i > 0 && !(l < log_ab[i - 1]))
            fail_argument(arg, l, "strictly less than the previous level (ᾱ strictly decreasing)");
    }
    posterior_table tab;
    tab.alphas_cumprod.resize(n);
    tab.betas.resize(n);
    tab.log_betas.resize(n);
    tab.posterior_variance.resize(n);
    tab.posterior_log_variance_clipped.resize(n);
    tab.posterior_mean_coef1.resize(n);
    tab.posterior_mean_coef2.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
        const posterior_coeffs c = posterior_log(log_ab[i], i == 0 ? 0.0 : log_ab[i - 1]);
        tab.alphas_cumprod[i] = std::exp(log_ab[i]);
        tab.betas[i] = c.beta;
        tab.log_betas[i] = std::log(c.beta);
        tab.posterior_variance[i] = c.variance;
        tab.posterior_log_variance_clipped[i] = c.log_variance;
        tab.posterior_mean_coef1[i] = c.coef_x0;
        tab.posterior_mean_coef2[i] = c.coef_xt;
    }
    tab.posterior_log_variance_clipped[0] = tab.posterior_log_variance_clipped[1];  // log β̃_1 at step 0
    return tab;
}

}  // namespace detail

/// The table from log ᾱ_i (strictly decreasing, < 0; the last may be −inf).
inline posterior_table make_posterior_table_log(std::span<const double> log_alphas_cumprod) {
    return detail::table_from_log(log_alphas_cumprod);
}

/// The table from ᾱ_i (strictly decreasing, in (0, 1); the last may be 0).
inline posterior_table make_posterior_table(std::span<const double> alphas_cumprod) {
    std::vector<double> logs(alphas_cumprod.size());
    for (std::size_t i = 0; i < logs.size(); ++i) {
        const double a = alphas_cumprod[i];
        require(std::isfinite(a) && a >= 0.0 && a < 1.0, "alphas_cumprod[" + std::to_string(i) + "]", a,
                "in [0, 1) (0 only at the last level)");
        logs[i] = std::log(a);
    }
    posterior_table tab = detail::table_from_log(logs);
    // Keep the caller's ᾱ bit for bit.
    for (std::size_t i = 0; i < logs.size(); ++i) tab.alphas_cumprod[i] = alphas_cumprod[i];
    return tab;
}

/// The table of a discrete schedule's training grid (uses its accurate log ᾱ).
inline posterior_table make_posterior_table(const schedules::discrete_schedule& schedule) {
    return detail::table_from_log(schedule.log_alphas_cumprod());
}

// ---------------------------------------------------------------------------------------------
// Reverse-variance conventions (docs/forward_process.md §5)

/// How a DDPM reverse step p(x_s | x_t) = N(μ_θ, σ²_t) chooses σ²_t (diffusers `variance_type`,
/// improved-diffusion `ModelVarType`).
enum class variance_type {
    fixed_small,    ///< σ² = β̃ (posterior variance)
    fixed_large,    ///< σ² = β_{t|s}
    learned,        ///< log σ² = model output
    learned_range,  ///< log σ² = frac·log β + (1 − frac)·log β̃, frac = (v + 1)/2 (Nichol & Dhariwal 2021, Eq. 15)
};

inline std::string_view to_string(variance_type v) {
    switch (v) {
        case variance_type::fixed_small: return "fixed_small";
        case variance_type::fixed_large: return "fixed_large";
        case variance_type::learned: return "learned";
        case variance_type::learned_range: return "learned_range";
    }
    return "unknown";
}

/// Parses diffusers' names. "fixed_small_log" and "fixed_large_log" are diffusers' names for the
/// same variances returned in another form (std or log) and parse to fixed_small / fixed_large.
inline variance_type parse_variance_type(std::string_view name) {
    if (name == "fixed_small" || name == "fixed_small_log") return variance_type::fixed_small;
    if (name == "fixed_large" || name == "fixed_large_log") return variance_type::fixed_large;
    if (name == "learned") return variance_type::learned;
    if (name == "learned_range") return variance_type::learned_range;
    fail_argument("variance_type", name,
                  "one of \"fixed_small\", \"fixed_small_log\", \"fixed_large\", \"fixed_large_log\", "
                  "\"learned\", \"learned_range\"");
}

/// Which peer's first-step (i = 0, ᾱ_s = 1, β̃_0 = 0) convention to follow.
enum class variance_convention {
    /// improved/guided-diffusion: fixed_small and learned_range use posterior_log_variance_clipped
    /// (log β̃_1 at i = 0); fixed_large uses β̃_1 at i = 0 and β_i elsewhere
    /// (`np.append(posterior_variance[1], betas[1:])`); learned_range's upper end is log β_i.
    improved_diffusion,
    /// diffusers DDPMScheduler._get_variance: β̃ clamped to >= 1e-20 (so log β̃_0 = log 1e-20);
    /// fixed_large = β_i at every i (β_0 at i = 0); learned_range interpolates between
    /// log max(β̃_i, 1e-20) and log β_i.
    diffusers,
};

/// diffusers' floor on the posterior variance (`torch.clamp(variance, min=1e-20)`).
inline constexpr double diffusers_variance_floor = 1e-20;

/// learned_range's interpolation for one value: frac = (v + 1)/2, frac·max_log + (1 − frac)·min_log.
/// v is the raw model output (nominally in [−1, 1]; not clamped, as in both peers).
inline double learned_range_log_variance(double v, double min_log, double max_log) {
    require(std::isfinite(v), "v", v, "a finite model output");
    require(std::isfinite(min_log), "min_log", min_log, "a finite log-variance");
    require(std::isfinite(max_log), "max_log", max_log, "a finite log-variance");
    const double frac = 0.5 * (v + 1.0);
    return frac * max_log + (1.0 - frac) * min_log;
}

/// The (min_log, max_log) ends of learned_range at step i under a convention.
struct log_variance_range {
    double min_log;
    double max_log;
};

inline log_variance_range learned_range_bounds(const posterior_table& tab, std::size_t i,
                                               variance_convention conv) {
    require(i < tab.size(), "i", i, "a step index in [0, " + std::to_string(tab.size()) + ")");
    const double min_log = conv == variance_convention::improved_diffusion
                               ? tab.posterior_log_variance_clipped[i]
                               : std::log(std::fmax(tab.posterior_variance[i], diffusers_variance_floor));
    return {min_log, tab.log_betas[i]};
}

/// log σ² of reverse step i under a variance type and convention. model_output: the model's log σ²
/// (learned) or v (learned_range); ignored by the fixed types.
inline double reverse_log_variance(const posterior_table& tab, std::size_t i, variance_type type,
                                   variance_convention conv, double model_output = 0.0) {
    require(i < tab.size(), "i", i, "a step index in [0, " + std::to_string(tab.size()) + ")");
    const bool id = conv == variance_convention::improved_diffusion;
    switch (type) {
        case variance_type::fixed_small:
            return id ? tab.posterior_log_variance_clipped[i]
                      : std::log(std::fmax(tab.posterior_variance[i], diffusers_variance_floor));
        case variance_type::fixed_large:
            return id && i == 0 ? std::log(tab.posterior_variance[1]) : tab.log_betas[i];
        case variance_type::learned:
            require(std::isfinite(model_output), "model_output", model_output, "a finite log-variance");
            return model_output;
        case variance_type::learned_range: {
            const log_variance_range r = learned_range_bounds(tab, i, conv);
            return learned_range_log_variance(model_output, r.min_log, r.max_log);
        }
    }
    fail("reverse_log_variance: unknown variance_type");
}

/// σ² = exp(reverse_log_variance(...)). diffusers fixed_small at i = 0 gives 1e-20; both peers
/// add no noise on the last sampling step (i = 0) whatever σ² is.
inline double reverse_variance(const posterior_table& tab, std::size_t i, variance_type type,
                               variance_convention conv, double model_output = 0.0) {
    return std::exp(reverse_log_variance(tab, i, type, conv, model_output));
}

// ---------------------------------------------------------------------------------------------
// Tensor operations

namespace detail {

template <class T>
struct learned_range_op {
    T* out;
    const T* v;
    double min_log;
    double max_log;
    DIFFUSE_HOST_DEVICE void operator()(std::int64_t i) const {
        const double frac = 0.5 * (static_cast<double>(v[i]) + 1.0);
        out[i] = static_cast<T>(frac * max_log + (1.0 - frac) * min_log);
    }
};

}  // namespace detail

/// Element-wise learned_range: out = (v + 1)/2·max_log + (1 − (v + 1)/2)·min_log. Shapes equal
/// (v is the variance half of the model output, [B, C, H, W]).
template <detail::output_tensor Out, detail::input_tensor V>
void learned_range_log_variance(Out&& out, const V& v, double min_log, double max_log) {
    static_assert(detail::same_tensor_kind<Out, V>, "learned_range_log_variance: tensors must share type and space");
    require(std::isfinite(min_log), "min_log", min_log, "a finite log-variance");
    require(std::isfinite(max_log), "max_log", max_log, "a finite log-variance");
    const auto o = detail::as_output(out);
    const auto x = detail::as_input(v);
    require_same_shape(o.shape(), "out", x.shape(), "v");
    using T = detail::value_t<V>;
    for_each<detail::space_t<V>>(o.numel(), detail::learned_range_op<T>{o.data(), x.data(), min_log, max_log});
}

/// μ̃ = c_x0·x0 + c_xt·x_t (improved-diffusion q_posterior_mean_variance's mean). Shapes equal.
template <detail::output_tensor Out, detail::input_tensor X0, detail::input_tensor Xt>
void posterior_mean(Out&& out, const X0& x0, const Xt& x_t, const posterior_coeffs& c) {
    static_assert(detail::same_tensor_kind<Out, X0, Xt>, "posterior_mean: tensors must share type and space");
    lincomb(detail::as_output(out), c.coef_x0, detail::as_input(x0), c.coef_xt, detail::as_input(x_t));
}

/// A draw from q(x_s | x_t, x0): out = c_x0·x0 + c_xt·x_t + √β̃·z with explicit noise z.
template <detail::output_tensor Out, detail::input_tensor X0, detail::input_tensor Xt, detail::input_tensor Z>
void posterior_sample(Out&& out, const X0& x0, const Xt& x_t, const posterior_coeffs& c, const Z& z) {
    static_assert(detail::same_tensor_kind<Out, X0, Xt, Z>, "posterior_sample: tensors must share type and space");
    require_nonnegative(c.variance, "variance");
    lincomb(detail::as_output(out), c.coef_x0, detail::as_input(x0), c.coef_xt, detail::as_input(x_t),
            std::sqrt(c.variance), detail::as_input(z));
}

/// A draw from q(x_s | x_t, x0) with z ~ N(0, I) from rng.
template <detail::output_tensor Out, detail::input_tensor X0, detail::input_tensor Xt>
void posterior_sample(Out&& out, const X0& x0, const Xt& x_t, const posterior_coeffs& c, philox_rng& rng) {
    using T = detail::value_t<X0>;
    using S = detail::space_t<X0>;
    const auto x = detail::as_input(x0);
    tensor<T, S> z(x.shape());
    randn(z.view(), rng);
    posterior_sample(std::forward<Out>(out), x0, x_t, c, z.cview());
}

}  // namespace diffuse::process
