#pragma once
// Dynamic thresholding of the x0 estimate (Saharia et al. 2022, Imagen, §2.3) and plain clipping
// (docs/samplers/ddpm.md, "Thresholding").
//
// Per batch item b (dim 0), over its C·H·W elements:
//
//   q_b = quantile(|x0_b|, ratio)          torch.quantile, linear interpolation (type 7):
//                                          rank = ratio·(n − 1) between order statistics
//   s_b = clamp(q_b, 1, max_value)         threshold_convention::diffusers (`_threshold_sample`)
//   s_b = max(q_b, max_value)              threshold_convention::dpm_solver (`dynamic_thresholding_fn`
//                                          of dpm-solver / UniPC)
//   x0_b <- clamp(x0_b, −s_b, s_b) / s_b
//
// The two peers disagree. diffusers (since PR #3003) keeps s in [1, sample_max_value]: with its
// default sample_max_value = 1 thresholding is exactly clipping to [−1, 1], and values are never
// scaled up. dpm-solver's thresholding_max_val is a floor with no cap: s >= max_value, so with
// max_value = 1 a batch item whose quantile is below 1 is left unchanged, and one above is
// divided by its quantile (Imagen's rule).
//
// The quantile is computed in double (backend/reduce.hpp quantile_abs_per_batch; host, or a
// thrust sort per item on the device); the clamp/divide is one for_each per batch item in T.

#include <diffuse/backend/for_each.hpp>
#include <diffuse/backend/reduce.hpp>
#include <diffuse/core/config.hpp>
#include <diffuse/core/error.hpp>
#include <diffuse/core/tensor.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

namespace diffuse::samplers {

/// How the threshold s is formed from the per-item quantile q.
enum class threshold_convention {
    diffusers,   ///< s = clamp(q, 1, max_value)   (diffusers `_threshold_sample`, `sample_max_value`)
    dpm_solver,  ///< s = max(q, max_value)        (dpm-solver / UniPC `dynamic_thresholding_fn`, `thresholding_max_val`)
};

/// Dynamic-thresholding settings (diffusers: thresholding, dynamic_thresholding_ratio,
/// sample_max_value; dpm-solver: correcting_x0_fn = "dynamic_thresholding", dynamic_thresholding_ratio,
/// thresholding_max_val).
struct thresholding {
    bool enabled = false;
    threshold_convention convention = threshold_convention::diffusers;
    double ratio = 0.995;     ///< the quantile level p, in (0, 1]
    double max_value = 1.0;   ///< diffusers: the cap on s (>= 1 to matter); dpm_solver: the floor on s. > 0, finite
};

inline threshold_convention parse_threshold_convention(std::string_view name) {
    if (name == "diffusers") return threshold_convention::diffusers;
    if (name == "dpm_solver") return threshold_convention::dpm_solver;
    fail_argument("threshold_convention", name, "one of \"diffusers\", \"dpm_solver\"");
}

inline std::string_view to_string(threshold_convention c) {
    switch (c) {
        case threshold_convention::diffusers: return "diffusers";
        case threshold_convention::dpm_solver: return "dpm_solver";
    }
    return "unknown";
}

/// Validates cfg (whether or not it is enabled): ratio in (0, 1], max_value > 0 and finite.
inline void check_thresholding(const thresholding& cfg) {
    require(std::isfinite(cfg.ratio) && cfg.ratio > 0.0 && cfg.ratio <= 1.0, "thresholding.ratio", cfg.ratio,
            "a quantile level in (0, 1] (dynamic_thresholding_ratio; 0.995 in both peers)");
    require(std::isfinite(cfg.max_value) && cfg.max_value > 0.0, "thresholding.max_value", cfg.max_value,
            "a finite number > 0 (sample_max_value / thresholding_max_val)");
}

/// The threshold s of one batch item from its quantile q under cfg's convention.
inline double threshold_scale(double q, const thresholding& cfg) {
    if (cfg.convention == threshold_convention::dpm_solver) return std::max(q, cfg.max_value);
    // torch.clamp(q, min=1, max=max_value): max first, then min (so max_value < 1 gives max_value).
    return std::min(std::max(q, 1.0), cfg.max_value);
}

namespace detail {

/// x[i] <- clamp(x[i], −s, s)/s on one batch item.
template <class T>
struct threshold_item_op {
    T* x;
    T s;
    DIFFUSE_HOST_DEVICE void operator()(std::int64_t i) const {
        const T v = x[i];
        x[i] = (v < -s ? -s : (v > s ? s : v)) / s;
    }
};

/// x[i] <- clamp(x[i], lo, hi).
template <class T>
struct clip_sample_op {
    T* x;
    T lo, hi;
    DIFFUSE_HOST_DEVICE void operator()(std::int64_t i) const {
        const T v = x[i];
        x[i] = v < lo ? lo : (v > hi ? hi : v);
    }
};

}  // namespace detail

/// The per-item thresholds s_b of x0 ([B, ...]) under cfg (the quantiles mapped by threshold_scale).
template <class T, class S>
std::vector<double> threshold_scales(tensor_view<const T, S> x0, const thresholding& cfg) {
    check_thresholding(cfg);
    std::vector<double> s = quantile_abs_per_batch(x0, cfg.ratio);
    for (double& v : s) v = threshold_scale(v, cfg);
    return s;
}

/// Dynamic thresholding in place: for each batch item b (dim 0) x0_b <- clamp(x0_b, −s_b, s_b)/s_b.
/// Does nothing when !cfg.enabled (cfg is validated either way). x0.rank() >= 1; host or device.
template <class T, class S>
void apply_thresholding(tensor_view<T, S> x0, const thresholding& cfg) {
    check_thresholding(cfg);
    require(x0.rank() >= 1, "x0.rank()", x0.rank(), ">= 1 (a batch [B, ...])");
    if (!cfg.enabled || x0.empty()) return;
    const std::vector<double> s = threshold_scales(tensor_view<const T, S>(x0), cfg);
    const std::int64_t per = x0.numel() / x0.size(0);
    for (std::int64_t b = 0; b < x0.size(0); ++b)
        for_each<S>(per, detail::threshold_item_op<T>{x0.data() + b * per, static_cast<T>(s[static_cast<std::size_t>(b)])});
}

template <class T, class S>
void apply_thresholding(tensor<T, S>& x0, const thresholding& cfg) {
    apply_thresholding(x0.view(), cfg);
}

/// Static clipping in place: x <- clamp(x, −range, range) (diffusers clip_sample /
/// clip_sample_range; guided-diffusion clip_denoised with range 1). range > 0 and finite.
template <class T, class S>
void clip_sample(tensor_view<T, S> x, double range) {
    require(std::isfinite(range) && range > 0.0, "clip_sample_range", range, "a finite number > 0");
    const T r = static_cast<T>(range);
    for_each<S>(x.numel(), detail::clip_sample_op<T>{x.data(), static_cast<T>(-r), r});
}

template <class T, class S>
void clip_sample(tensor<T, S>& x, double range) {
    clip_sample(x.view(), range);
}

}  // namespace diffuse::samplers
