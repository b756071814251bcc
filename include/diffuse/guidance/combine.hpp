#pragma once
// The formulas of classifier-free guidance on tensors (docs/guidance.md §3), each applied per batch
// item b over its flattened trailing dimensions. c = the conditional prediction, u = the unconditional
// (or negative) one, both [B, ...] in the same parametrisation; w the weight.
//
//   cfg_formula::diffusers   g = u + w·(c − u)          (Ho & Salimans' w_HS = w − 1; diffusers,
//                                                         k-diffusion, dpm-solver, sd.cpp)   w >= 0
//   cfg_formula::original    g = c + w·(c − u)          (Ho & Salimans 2022, Eq. 6; diffusers'
//                                                         use_original_formulation)          w >= −1
// Coded as the affine combinations g = w·c + (1 − w)·u and g = (1 + w)·c − w·u (one lincomb), so
// w = 1 / w = 0 (diffusers) and w = 0 / w = −1 (original) reproduce c / u bitwise.
//
//   rescale (Lin et al. 2024 §3.4; diffusers rescale_noise_cfg):
//     g ← φ·g·std(c)/std(g) + (1 − φ)·g,  std over item b; std_convention::unbiased (N − 1; torch's
//     default and diffusers', our default) or ::biased (N). The ratio std(c)/std(g) is the same for
//     both — the normalisation cancels — so they differ only by rounding; an item with std(g) = 0 is
//     left unchanged (diffusers would divide by zero).
//   CFG-Zero* (Fan et al. 2025; diffusers CFGZeroStar guider):
//     α_b = <c_b, u_b>/(‖u_b‖² + 1e-8),  u ← α·u,  then the CFG formula.   (sums in double; diffusers
//     accumulates in float32)
//   APG (Sadat et al. 2024; diffusers normalized_guidance):
//     Δ = c − u;  with momentum β: Δ̄ ← Δ + β·Δ̄ (Δ̄ = 0 before the first step), Δ = Δ̄;
//     with norm threshold r > 0: Δ ← Δ·min(1, r/‖Δ_b‖);
//     Δ∥ = (<Δ_b, c_b>/‖c_b‖²)·c_b (projection on c; ‖c_b‖ floored at 1e-12 like torch's normalize),
//     Δ⊥ = Δ − Δ∥,  update = Δ⊥ + η·Δ∥,
//     g = u + w·update (diffusers)  or  g = c + w·update (original).
//   With η = 1, r = 0 and no momentum, APG is CFG. The paper and stable-diffusion.cpp write
//   g = c + (w − 1)·update: the `original` formula at w − 1 (diffusers' default form differs from the
//   paper when η ≠ 1: it drops the conditional's parallel part along with the guidance's).
//
// Host tensors: per-item sums in double with 8 partial sums (vectorised; serial per item: cheap next to a
// model call). Device tensors: element-wise passes with for_each and backend sums (products rounded to T first).

#include <diffuse/backend/for_each.hpp>
#include <diffuse/backend/lincomb.hpp>
#include <diffuse/backend/reduce.hpp>
#include <diffuse/core/config.hpp>
#include <diffuse/core/error.hpp>
#include <diffuse/core/tensor.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

namespace diffuse::guidance {

/// Which CFG formula a weight w refers to.
enum class cfg_formula {
    diffusers,  ///< u + w·(c − u): w = 1 is the conditional model, w = 0 the unconditional one
    original,   ///< c + w·(c − u): w = 0 is the conditional model, w = −1 the unconditional one
};

/// The normalisation of the standard deviation in guidance rescale.
enum class std_convention {
    unbiased,  ///< divide by N − 1 (torch.std's default; diffusers)
    biased,    ///< divide by N
};

/// The weight at which `formula` returns the conditional prediction (1 or 0).
inline double identity_weight(cfg_formula formula) { return formula == cfg_formula::diffusers ? 1.0 : 0.0; }

/// Throws unless w is a weight of `formula`: finite and >= 0 (diffusers) or >= −1 (original), i.e. the
/// weight on the conditional prediction is >= 0 in both.
inline void require_weight(double w, cfg_formula formula, const std::string& name = "guidance weight") {
    if (formula == cfg_formula::diffusers)
        require(std::isfinite(w) && w >= 0.0, name, w,
                "a finite number >= 0 (u + w·(c − u): 0 is unconditional, 1 conditional)");
    else
        require(std::isfinite(w) && w >= -1.0, name, w,
                "a finite number >= −1 (c + w·(c − u): −1 is unconditional, 0 conditional)");
}

namespace detail {

template <class T>
struct product_op {  // out[i] = a[i]·b[i]
    T* out;
    const T* a;
    const T* b;
    DIFFUSE_HOST_DEVICE void operator()(std::int64_t i) const { out[i] = a[i] * b[i]; }
};

template <class T>
struct fill_op {  // out[i] = v
    T* out;
    T v;
    DIFFUSE_HOST_DEVICE void operator()(std::int64_t i) const { out[i] = v; }
};

template <class T>
struct squared_deviation_op {  // out[i] = (a[i] − m)²
    T* out;
    const T* a;
    T m;
    DIFFUSE_HOST_DEVICE void operator()(std::int64_t i) const {
        const T d = a[i] - m;
        out[i] = d * d;
    }
};

template <class T, class S>
void require_pair(tensor_view<T, S> out, tensor_view<const T, S> c, tensor_view<const T, S> u, const char* who) {
    require(c.rank() >= 1, std::string(who) + ": cond.rank()", c.rank(), ">= 1 (a batch [B, ...])");
    require_same_shape(u.shape(), "uncond", c.shape(), "cond");
    require_same_shape(out.shape(), "out", c.shape(), "cond");
}

/// Σ_i f(i) in double with 8 independent partial sums (the compiler vectorises the 8 lanes; one
/// accumulator would be bound by the latency of its additions). Fixed order: the same on every thread count.
template <class F>
double sum8(std::int64_t n, const F& f) {
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    std::int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; ++k) acc[k] += f(i + k);
    for (int k = 0; i < n; ++i, ++k) acc[k] += f(i);
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

/// Σ_i a_i·b_i over one item, in double.
template <class T, class S>
double dot(tensor_view<const T, S> a, tensor_view<const T, S> b) {
    if constexpr (std::is_same_v<S, host_space>) {
        // products and sum in double (as diffusers' APG projection in float64)
        const T* pa = a.data();
        const T* pb = b.data();
        return sum8(a.numel(), [=](std::int64_t i) { return static_cast<double>(pa[i]) * static_cast<double>(pb[i]); });
    } else {
        tensor<T, S> p(a.shape());
        for_each<S>(a.numel(), product_op<T>{p.data(), a.data(), b.data()});
        return sum(p.cview());
    }
}

/// Σ_i (a_i − mean)² and the mean over one item, in double (two passes).
struct item_moments {
    double mean = 0.0, ss = 0.0;
};

template <class T, class S>
item_moments moments(tensor_view<const T, S> a) {
    const auto n = static_cast<double>(a.numel());
    item_moments m;
    if (a.numel() == 0) return m;
    if constexpr (std::is_same_v<S, host_space>) {
        const T* p = a.data();
        m.mean = sum8(a.numel(), [=](std::int64_t i) { return static_cast<double>(p[i]); }) / n;
        const double mean = m.mean;
        m.ss = sum8(a.numel(), [=](std::int64_t i) {
            const double d = static_cast<double>(p[i]) - mean;
            return d * d;
        });
    } else {
        m.mean = sum(a) / n;
        tensor<T, S> p(a.shape());
        for_each<S>(a.numel(), squared_deviation_op<T>{p.data(), a.data(), static_cast<T>(m.mean)});
        m.ss = sum(p.cview());
    }
    return m;
}

}  // namespace detail

/// out = the CFG combination of c and u at weight w (the file comment). out may alias c or u.
template <class T, class S>
void cfg_combine(tensor_view<T, S> out, std::type_identity_t<tensor_view<const T, S>> c,
                 std::type_identity_t<tensor_view<const T, S>> u, double w, cfg_formula formula) {
    detail::require_pair(out, c, u, "cfg_combine");
    require_weight(w, formula);
    if (formula == cfg_formula::diffusers)
        lincomb(out, w, c, 1.0 - w, u);
    else
        lincomb(out, 1.0 + w, c, -w, u);
}

/// Per item: std(c)/std(g) with the given convention (1 where std(g) = 0, or where N − 1 = 0).
template <class T, class S>
std::vector<double> rescale_ratios(std::type_identity_t<tensor_view<const T, S>> g,
                                   std::type_identity_t<tensor_view<const T, S>> c, std_convention convention) {
    require_same_shape(g.shape(), "guided", c.shape(), "cond");
    const std::int64_t b = g.size(0);
    std::vector<double> r(static_cast<std::size_t>(b), 1.0);
    for (std::int64_t i = 0; i < b; ++i) {
        const double n = static_cast<double>(g.item(i).numel());
        const double denom = convention == std_convention::unbiased ? n - 1.0 : n;
        if (!(denom > 0.0)) continue;
        const double sg = std::sqrt(detail::moments(g.item(i)).ss / denom);
        const double sc = std::sqrt(detail::moments(c.item(i)).ss / denom);
        if (sg > 0.0) r[static_cast<std::size_t>(i)] = sc / sg;
    }
    return r;
}

/// Guidance rescale in place: g ← φ·g·std(c)/std(g) + (1 − φ)·g per item, φ in [0, 1].
template <class T, class S>
void rescale_guidance(tensor_view<T, S> g, std::type_identity_t<tensor_view<const T, S>> c, double phi,
                      std_convention convention = std_convention::unbiased) {
    require(std::isfinite(phi) && phi >= 0.0 && phi <= 1.0, "guidance_rescale", phi, "a number in [0, 1]");
    require(g.rank() >= 1, "rescale_guidance: guided.rank()", g.rank(), ">= 1 (a batch [B, ...])");
    if (phi == 0.0) return;
    const std::vector<double> r = rescale_ratios<T, S>(tensor_view<const T, S>(g), c, convention);
    for (std::int64_t i = 0; i < g.size(0); ++i) {
        const double f = phi * r[static_cast<std::size_t>(i)] + (1.0 - phi);
        lincomb(g.item(i), f, tensor_view<const T, S>(g.item(i)));
    }
}

/// CFG-Zero*'s per-item scale α_b = <c_b, u_b>/(‖u_b‖² + 1e-8).
template <class T, class S>
std::vector<double> cfg_zero_star_scale(std::type_identity_t<tensor_view<const T, S>> c,
                                        std::type_identity_t<tensor_view<const T, S>> u) {
    require_same_shape(u.shape(), "uncond", c.shape(), "cond");
    std::vector<double> alpha(static_cast<std::size_t>(c.size(0)));
    for (std::int64_t i = 0; i < c.size(0); ++i)
        alpha[static_cast<std::size_t>(i)] =
            detail::dot<T, S>(c.item(i), u.item(i)) / (detail::dot<T, S>(u.item(i), u.item(i)) + 1e-8);
    return alpha;
}

/// out = CFG of c and α·u (CFG-Zero*, the file comment). out may alias c or u.
template <class T, class S>
void cfg_zero_star_combine(tensor_view<T, S> out, std::type_identity_t<tensor_view<const T, S>> c,
                           std::type_identity_t<tensor_view<const T, S>> u, double w, cfg_formula formula) {
    detail::require_pair(out, c, u, "cfg_zero_star_combine");
    require_weight(w, formula);
    const std::vector<double> alpha = cfg_zero_star_scale<T, S>(c, u);
    for (std::int64_t i = 0; i < c.size(0); ++i) {
        const double a = alpha[static_cast<std::size_t>(i)];
        // diffusers: (1 − w)·(α u) + w·c;  original: (1 + w)·c − w·(α u)
        if (formula == cfg_formula::diffusers)
            lincomb(out.item(i), w, c.item(i), (1.0 - w) * a, u.item(i));
        else
            lincomb(out.item(i), 1.0 + w, c.item(i), -w * a, u.item(i));
    }
}

/// APG's parameters (diffusers AdaptiveProjectedGuidance names in comments).
struct apg_options {
    double eta = 1.0;              ///< weight of the parallel part (`eta`), >= 0; 1 keeps it (then APG = CFG)
    double norm_threshold = 0.0;   ///< r (`adaptive_projected_guidance_rescale`), >= 0; 0 = no threshold
    std::optional<double> momentum{};  ///< β (`adaptive_projected_guidance_momentum`); none = no running average
};

inline void check_apg_options(const apg_options& o) {
    require(std::isfinite(o.eta) && o.eta >= 0.0, "apg.eta", o.eta, "a finite number >= 0");
    require_nonnegative(o.norm_threshold, "apg.norm_threshold");
    if (o.momentum) require_finite(*o.momentum, "apg.momentum");
}

/// APG's running average Δ̄ (momentum); empty before the first step of a run.
template <class T, class S>
struct apg_state {
    std::optional<tensor<T, S>> running;
    void reset() { running.reset(); }
};

/// out = APG of c and u (the file comment). state: the momentum buffer (used when o.momentum is set;
/// its shape must match or be empty). out may alias c or u (each item is read before it is written).
template <class T, class S>
void apg_combine(tensor_view<T, S> out, std::type_identity_t<tensor_view<const T, S>> c,
                 std::type_identity_t<tensor_view<const T, S>> u, double w, cfg_formula formula, const apg_options& o,
                 std::type_identity_t<apg_state<T, S>>* state = nullptr) {
    detail::require_pair(out, c, u, "apg_combine");
    require_weight(w, formula);
    check_apg_options(o);
    tensor<T, S> diff(c.shape());
    lincomb(diff.view(), 1.0, c, -1.0, u);  // Δ = c − u
    if (o.momentum) {
        if (state == nullptr) fail("apg_combine: momentum is set but no apg_state was given");
        if (state->running && state->running->shape() != c.shape())
            fail("apg_combine: the momentum buffer has shape " + state->running->shape().str() +
                 " but the predictions have " + c.shape().str() + "; expected equal shapes (state.reset() between runs)");
        if (!state->running) {
            state->running.emplace(c.shape());
            lincomb(state->running->view(), 1.0, diff.cview());  // Δ̄ = Δ + β·0
        } else {
            lincomb(state->running->view(), 1.0, diff.cview(), *o.momentum, state->running->cview());
        }
        lincomb(diff.view(), 1.0, state->running->cview());
    }
    const tensor_view<const T, S> base = formula == cfg_formula::diffusers ? u : c;
    for (std::int64_t i = 0; i < c.size(0); ++i) {
        const tensor_view<const T, S> di = diff.cview().item(i), ci = c.item(i);
        double scale = 1.0;  // norm threshold: Δ ← Δ·min(1, r/‖Δ‖)
        if (o.norm_threshold > 0.0) {
            const double norm = std::sqrt(detail::dot<T, S>(di, di));
            scale = std::min(1.0, o.norm_threshold / norm);
        }
        const double cc = std::max(std::sqrt(detail::dot<T, S>(ci, ci)), 1e-12);
        const double k = scale * detail::dot<T, S>(di, ci) / (cc * cc);  // Δ∥ = k·c
        // update = scale·Δ + (η − 1)·Δ∥;  g = base + w·update
        lincomb(out.item(i), 1.0, base.item(i), w * scale, di, w * (o.eta - 1.0) * k, ci);
    }
}

}  // namespace diffuse::guidance
