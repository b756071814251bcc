#pragma once
// Linear multistep (Adams–Bashforth in σ) on the σ-space PF-ODE dy/dσ = (y − D(y, σ))/σ
// (k-diffusion sample_lms, diffusers LMSDiscreteScheduler; docs/samplers/euler_family.md §6).
//
// Step i from level ℓ_i (a, s), σ_i, to ℓ_{i+1} (a', s'), in y = x/a, with p = the order of
// this step = min(i − begin_index() + 1, order) (lower orders while the history fills, as both
// peers do) and the derivatives d_j = (y_j − D_j)/σ_j of the last p steps:
//
//   y' = y + Σ_{j<p} c_j·d_{i−j},   c_j = ∫_{σ_i}^{σ_{i+1}} Π_{k<p, k≠j} (τ − σ_{i−k})/(σ_{i−j} − σ_{i−k}) dτ
//   x' = a'·y' = (a'/a)·x + a'·Σ_j c_j·d_{i−j}
//
// The coefficients integrate the Lagrange basis polynomial (degree p − 1) EXACTLY: Gauss–Legendre
// with ⌊p/2⌋ + 1 nodes (exact to degree 2⌊p/2⌋ + 1 >= p − 1), not the peers' adaptive
// scipy.integrate.quad(epsrel = 1e-4) (lms_coefficients). Order 1 is Euler.
//
// Work per step: the new derivative d_i = d_x·x + d_m·m is kept (one lincomb, skipped when
// order = 1 or on the last step), then x' is one lincomb of x, d_i (or m) and up to two older
// derivatives, plus one more lincomb per further 3 history entries (orders >= 4). The
// history holds `order` tensors (the sampler's memory). Steps must run in order from
// begin_index(): step begin_index() restarts the history (img2img starts with order 1, as
// k-diffusion on the sliced σ list); any other step i must follow step i − 1 (an error
// otherwise). diffusers' LMS, started at a later step, computes coefficients of order
// min(step_index + 1, 4) but pairs them with the shorter history it has (zip truncation); this
// library does not reproduce that.

#include <diffuse/backend/lincomb.hpp>
#include <diffuse/core/error.hpp>
#include <diffuse/core/philox.hpp>
#include <diffuse/core/tensor.hpp>
#include <diffuse/samplers/detail/level_checks.hpp>
#include <diffuse/samplers/euler.hpp>
#include <diffuse/samplers/levels.hpp>
#include <diffuse/samplers/sampler.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <numbers>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace diffuse::samplers {

/// Gauss–Legendre nodes and weights on [−1, 1] (exact for polynomials of degree <= 2n − 1).
struct gauss_legendre_rule {
    std::vector<double> nodes, weights;
};

/// The n-point Gauss–Legendre rule (Newton iteration on P_n from Chebyshev-like guesses).
inline gauss_legendre_rule gauss_legendre(int n) {
    require(n >= 1, "n", n, ">= 1");
    gauss_legendre_rule r;
    r.nodes.assign(static_cast<std::size_t>(n), 0.0);
    r.weights.assign(static_cast<std::size_t>(n), 0.0);
    for (int k = 0; k < (n + 1) / 2; ++k) {
        double z = std::cos(std::numbers::pi * (k + 0.75) / (n + 0.5));
        double dp = 1.0;
        for (int it = 0; it < 100; ++it) {
            double p0 = 1.0, p1 = z;  // P_0, P_1
            for (int j = 2; j <= n; ++j) {
                const double p2 = ((2.0 * j - 1.0) * z * p1 - (j - 1.0) * p0) / j;
                p0 = p1;
                p1 = p2;
            }
            if (n == 1) p0 = 1.0;
            // P_n = p1, P_{n−1} = p0; P_n' = n (z P_n − P_{n−1})/(z² − 1)
            dp = n * (z * p1 - p0) / (z * z - 1.0);
            const double dz = p1 / dp;
            z -= dz;
            if (std::abs(dz) <= 1e-16) break;
        }
        const auto lo = static_cast<std::size_t>(k), hi = static_cast<std::size_t>(n - 1 - k);
        const double w = 2.0 / ((1.0 - z * z) * dp * dp);
        r.nodes[lo] = -z;
        r.nodes[hi] = z;
        r.weights[lo] = r.weights[hi] = w;
    }
    if (n % 2 == 1) r.nodes[static_cast<std::size_t>(n / 2)] = 0.0;
    return r;
}

/// The LMS coefficients c_0 .. c_{p−1} of step i on σ_0 > σ_1 > ... (see the file comment):
/// c_j = ∫_{σ_i}^{σ_{i+1}} L_j(τ) dτ with L_j the Lagrange basis on σ_i, σ_{i−1}, ..., σ_{i−p+1}.
/// Needs p >= 1, i >= p − 1 and i + 1 < sigmas.size().
inline std::vector<double> lms_coefficients(std::span<const double> sigmas, std::size_t i, int p) {
    require(p >= 1, "order", p, ">= 1");
    require(i + 1 < sigmas.size(), "i", i, "< sigmas.size() − 1 = " + std::to_string(sigmas.size() - 1));
    require(static_cast<std::size_t>(p - 1) <= i, "order", p,
            "<= i + 1 = " + std::to_string(i + 1) + " (not enough earlier levels)");
    const gauss_legendre_rule g = gauss_legendre(p / 2 + 1);
    const double a = sigmas[i], b = sigmas[i + 1];
    const double mid = 0.5 * (a + b), half = 0.5 * (b - a);
    std::vector<double> c(static_cast<std::size_t>(p), 0.0);
    for (int j = 0; j < p; ++j) {
        const double sj = sigmas[i - static_cast<std::size_t>(j)];
        double acc = 0.0;
        for (std::size_t q = 0; q < g.nodes.size(); ++q) {
            const double tau = mid + half * g.nodes[q];
            double prod = 1.0;
            for (int k = 0; k < p; ++k) {
                if (k == j) continue;
                const double sk = sigmas[i - static_cast<std::size_t>(k)];
                prod *= (tau - sk) / (sj - sk);
            }
            acc += g.weights[q] * prod;
        }
        c[static_cast<std::size_t>(j)] = half * acc;
    }
    return c;
}

struct lms_config {
    int order = 4;  ///< >= 1 (k-diffusion and diffusers default 4)
    model_input input = model_input::state;
    prediction_type prediction = prediction_type::sample;  ///< what step(m, i, x, rng) assumes m is
};

class lms_sampler : public begin_index_support {
public:
    lms_sampler() = default;
    explicit lms_sampler(std::vector<double> sigmas, lms_config config = {})
        : lms_sampler(level_sequence::ve(std::move(sigmas)), config) {}
    explicit lms_sampler(level_sequence levels, lms_config config = {}) : config_(config) {
        require(config_.order >= 1, "lms_sampler: order", config_.order, ">= 1");
        set_levels(std::move(levels));
    }

    void set_levels(level_sequence levels) {
        levels_ = detail::checked_sigma_levels(std::move(levels), "lms_sampler");
        ring_.assign(static_cast<std::size_t>(config_.order), detail::stash{});
        head_ = 0;
        last_ = npos;
        reset_begin_index();
    }
    void set_begin_index(std::size_t k) { store_begin_index(k, num_steps(), "lms_sampler"); }

    const level_sequence& levels() const { return levels_; }
    const std::vector<double>& sigmas() const { return levels_.sigmas(); }
    const lms_config& config() const { return config_; }
    std::size_t num_steps() const { return detail::steps_of(levels_); }
    double timestep(std::size_t i) const { return state_level(i).sigma(); }
    int order() const { return config_.order; }
    double init_noise_sigma() const { return detail::init_noise_sigma_of(levels_); }
    noise_condition state_level(std::size_t i) const { return detail::step_level(levels_, i, "lms_sampler"); }
    double model_input_scale(std::size_t i) const { return model_input_scale_of(state_level(i), config_.input); }
    noise_condition model_level(std::size_t i) const { return seen_level(state_level(i), config_.input); }
    template <class T, class S>
    void scale_model_input(tensor_view<T, S> out, std::type_identity_t<tensor_view<const T, S>> x, std::size_t i) const {
        lincomb(out, model_input_scale(i), x);
    }

    /// The order p of step i: min(i − begin_index() + 1, order).
    int step_order(std::size_t i) const {
        detail::require_step_index(i, num_steps(), "lms_sampler");
        require(i >= begin_index(), "lms_sampler: step index", i, ">= begin_index() = " + std::to_string(begin_index()));
        return static_cast<int>(std::min<std::size_t>(i - begin_index() + 1, static_cast<std::size_t>(config_.order)));
    }
    /// c_0 .. c_{p−1} of step i (y-space; lms_coefficients on sigmas()).
    std::vector<double> coefficients(std::size_t i) const {
        return lms_coefficients(levels_.sigmas(), i, step_order(i));
    }

    /// x <- x at level i + 1. Draws no noise.
    template <class T, class S>
    void step(std::type_identity_t<tensor_view<const T, S>> m, prediction_type from, std::size_t i,
              tensor_view<T, S> x, philox_rng& /*rng*/) {
        detail::require_step_index(i, num_steps(), "lms_sampler.step");
        detail::require_step_tensors<T, S>(m, x, "lms_sampler.step");
        if (i != begin_index() && (last_ == npos || i != last_ + 1)) {
            fail("lms_sampler.step: step " + std::to_string(i) + " must follow step " + std::to_string(i - 1) +
                 " (history steps run in order from begin_index() = " + std::to_string(begin_index()) + ")");
        }
        const int p = step_order(i);
        const std::vector<double> c = coefficients(i);
        const noise_condition l = levels_[i], next = levels_[i + 1];
        const affine_estimate d = detail::derivative_of(from, l, model_level(i), model_input_scale(i));
        const tensor_view<const T, S> xc = x;
        const std::size_t R = ring_.size();
        const bool keep = R > 1 && i + 1 < num_steps();
        // history entry j >= 1 (d_{i−j}) lives at ring_[(head_ + R − (j − 1)) % R]
        auto old = [&](int j) -> tensor_view<const T, S> {
            const std::size_t slot = (head_ + R - static_cast<std::size_t>(j - 1)) % R;
            const tensor<T, S>* t = ring_[slot].find<T, S>(x.shape());
            if (t == nullptr) fail("lms_sampler.step: the history has another shape or type than x; restart at begin_index()");
            return t->cview();
        };
        const double ax = next.a / l.a;
        int j = 1;  // next history entry to add
        if (keep) {
            const std::size_t slot = (head_ + 1) % R;
            tensor<T, S>& di = ring_[slot].get<T, S>(x.shape());
            lincomb(di.view(), d.x, xc, d.m, m);
            // x' = ax·x + a'c_0·d_i + a'c_1·d_{i−1} + a'c_2·d_{i−2}
            if (p == 1)
                lincomb(x, ax, xc, next.a * c[0], di.cview());
            else if (p == 2)
                lincomb(x, ax, xc, next.a * c[0], di.cview(), next.a * c[1], old(1));
            else
                lincomb(x, ax, xc, next.a * c[0], di.cview(), next.a * c[1], old(1), next.a * c[2], old(2));
            j = std::min(p, 3);
            head_ = slot;
        } else {
            // x' = (ax + a'c_0 d_x)·x + a'c_0 d_m·m + a'c_1·d_{i−1} + a'c_2·d_{i−2}
            const double cx = ax + next.a * c[0] * d.x, cm = next.a * c[0] * d.m;
            if (p == 1)
                lincomb(x, cx, xc, cm, m);
            else if (p == 2)
                lincomb(x, cx, xc, cm, m, next.a * c[1], old(1));
            else
                lincomb(x, cx, xc, cm, m, next.a * c[1], old(1), next.a * c[2], old(2));
            j = std::min(p, 3);
        }
        // Older entries, three per lincomb (x aliased as the first input).
        // old(k) is indexed relative to the head BEFORE this step; when `keep` moved the head,
        // entry d_{i−k} is one slot further back.
        const int shift = keep ? 1 : 0;
        auto older = [&](int k) { return old(k + shift); };
        while (j < p) {
            const int n = std::min(3, p - j);
            if (n == 1)
                lincomb(x, 1.0, xc, next.a * c[j], older(j));
            else if (n == 2)
                lincomb(x, 1.0, xc, next.a * c[j], older(j), next.a * c[j + 1], older(j + 1));
            else
                lincomb(x, 1.0, xc, next.a * c[j], older(j), next.a * c[j + 1], older(j + 1), next.a * c[j + 2],
                        older(j + 2));
            j += n;
        }
        last_ = i;
    }
    template <class T, class S>
    void step(std::type_identity_t<tensor_view<const T, S>> m, std::size_t i, tensor_view<T, S> x, philox_rng& rng) {
        step<T, S>(m, config_.prediction, i, x, rng);
    }

private:
    static constexpr std::size_t npos = static_cast<std::size_t>(-1);

    level_sequence levels_;
    lms_config config_{};
    std::vector<detail::stash> ring_;  ///< `order` derivative tensors; ring_[head_] is the newest
    std::size_t head_ = 0;
    std::size_t last_ = npos;
};

}  // namespace diffuse::samplers
