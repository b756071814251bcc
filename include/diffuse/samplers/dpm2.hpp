#pragma once
// DPM-2 and DPM-2 ancestral in σ-space (k-diffusion sample_dpm_2 / sample_dpm_2_ancestral,
// "inspired by DPM-Solver-2 and Karras et al. Alg. 2"; diffusers KDPM2DiscreteScheduler /
// KDPM2AncestralDiscreteScheduler; docs/samplers/euler_family.md §4–5).
//
// DPM-2, method step k from ℓ_k (σ, after churn σ̂, level (â, ŝ)) to ℓ_{k+1} = (a', s'),
// in y = x/a, with the log-midpoint σ_m = exp(lerp(log σ̂, log σ', 1/2)) = √(σ̂σ'):
//
//   stage 0 (step i = 2k):     d1 = (ŷ − D1)/σ̂,   y_m = ŷ + (σ_m − σ̂)·d1      (Euler to σ_m)
//   stage 1 (step i = 2k + 1): d2 = (y_m − D2)/σ_m, y' = ŷ + (σ' − σ̂)·d2        (midpoint rule)
//
// D2 is the model's x0 estimate at σ_m: model_level(2k + 1) is levels.at_sigma(σ_m) (its
// timestep from the sequence's σ -> t map, diffusers' _sigma_to_t of sigmas_interpol).
// Coded: stage 0 keeps u = (a'/â)·x̂ and moves x to x_m = a_m·y_m (one Euler lincomb);
// stage 1 is x' = u + a'(σ' − σ̂)·d2 (one lincomb of u, x_m, m2). When σ' = 0 the method step
// is one plain Euler step (x' = D1), as k-diffusion and diffusers do: num_steps() = 2N, or
// 2N − 1 with σ_N = 0. Churn: dpm2_config::churn, as euler.hpp (prepare_step of stage 0).
//
// DPM-2 ancestral (η, s_noise; no churn): with (σ_down, σ_up) = ancestral_step(σ, σ', η),
// the DPM-2 step goes to σ_down (midpoint σ_m = √(σ·σ_down)), then adds a'·s_noise·σ_up·z:
//   stage 1: x' = u + a'(σ_down − σ)·d2 + a'·s_noise·σ_up·z       (one lincomb, 4 inputs)
// When σ_down = 0 the method step is one Euler step to σ_down = 0 plus the noise:
// x' = a'·(D1 + s_noise·σ_up·z). Normals: x.numel() in stage 1 of every 2-stage method step
// (also for η = 0, where σ_up = 0, as k-diffusion draws there) and in a 1-stage step with
// σ_up > 0; none in a final step to σ' = 0 (k-diffusion and diffusers alike). For η <= 1,
// σ_down = 0 only when σ' = 0. For η > 1, σ_up can reach σ' (σ_down = 0 with σ' > 0): there
// k-diffusion returns D1 without noise (a point at level σ' with no noise); this library adds
// the σ_up = σ' noise.
// step_with_noise(m, type, i, x, z) takes z explicitly (ignored by noise-free stages).

#include <diffuse/backend/lincomb.hpp>
#include <diffuse/backend/randn.hpp>
#include <diffuse/core/error.hpp>
#include <diffuse/core/philox.hpp>
#include <diffuse/core/tensor.hpp>
#include <diffuse/samplers/euler.hpp>
#include <diffuse/samplers/euler_ancestral.hpp>
#include <diffuse/samplers/levels.hpp>
#include <diffuse/samplers/sampler.hpp>

#include <cmath>
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

namespace diffuse::samplers {

/// exp(lerp(log σ, log σ', 1/2)) as k-diffusion computes it (torch lerp: a + w·(b − a)).
inline double log_midpoint(double sigma, double sigma_next) {
    require(std::isfinite(sigma) && sigma > 0.0, "sigma", sigma, "a finite number > 0");
    require(std::isfinite(sigma_next) && sigma_next > 0.0, "sigma_next", sigma_next, "a finite number > 0");
    const double la = std::log(sigma), lb = std::log(sigma_next);
    return std::exp(la + 0.5 * (lb - la));
}

struct dpm2_config {
    model_input input = model_input::state;
    prediction_type prediction = prediction_type::sample;  ///< what step(m, i, x, rng) assumes m is
    churn_config churn{};                                   ///< off by default (s_churn = 0)
};

class dpm2_sampler : public begin_index_support {
public:
    dpm2_sampler() = default;
    explicit dpm2_sampler(std::vector<double> sigmas, dpm2_config config = {})
        : dpm2_sampler(level_sequence::ve(std::move(sigmas)), config) {}
    explicit dpm2_sampler(level_sequence levels, dpm2_config config = {}) : config_(config) {
        detail::validate_churn(config_.churn, "dpm2_sampler");
        set_levels(std::move(levels));
    }

    void set_levels(level_sequence levels) {
        levels_ = detail::checked_sigma_levels(std::move(levels), "dpm2_sampler");
        churn_.clear();
        mids_.clear();
        steps_.clear();
        for (std::size_t k = 0; k + 1 < levels_.size(); ++k) {
            churn_.push_back(detail::churn_of(config_.churn, levels_, k));
            steps_.push_back({k, 0});
            if (levels_.sigma(k + 1) > 0.0) {
                steps_.push_back({k, 1});
                mids_.push_back(levels_.at_sigma(log_midpoint(churn_.back().hat.sigma(), levels_.sigma(k + 1))));
            } else {
                mids_.push_back(levels_[k + 1]);
            }
        }
        pending_ = prepared_ = npos;
        u_.clear();
        reset_begin_index();
    }
    void set_begin_index(std::size_t i) {
        store_begin_index(i, num_steps(), "dpm2_sampler");
        if (steps_[i].stage != 0)
            fail_argument("dpm2_sampler.set_begin_index: k", i, "a first-stage step (the second stage cannot start a run)");
    }

    const level_sequence& levels() const { return levels_; }
    const dpm2_config& config() const { return config_; }
    std::size_t num_method_steps() const { return levels_.empty() ? 0 : levels_.size() - 1; }
    /// Model evaluations: 2N, minus 1 when σ_N = 0.
    std::size_t num_steps() const { return steps_.size(); }
    stage_index stage_of(std::size_t i) const {
        detail::require_step_index(i, num_steps(), "dpm2_sampler");
        return steps_[i];
    }
    /// σ of the model evaluation without churn: σ_k (stage 0), σ_m (stage 1).
    double timestep(std::size_t i) const { return state_level(i).sigma(); }
    int order() const { return 2; }
    double init_noise_sigma() const {
        if (levels_.empty()) return 1.0;
        return levels_.space() == state_space::ve ? levels_.sigma(0) : 1.0;
    }
    /// ℓ_k (stage 0, before churn) or the midpoint level at σ_m (stage 1).
    noise_condition state_level(std::size_t i) const {
        const stage_index s = stage_of(i);
        return s.stage == 0 ? levels_[s.k] : mids_[s.k];
    }
    double churn_gamma(std::size_t i) const {
        const stage_index s = stage_of(i);
        return s.stage == 0 ? churn_[s.k].gamma : 0.0;
    }
    noise_condition churned_level(std::size_t i) const {
        const stage_index s = stage_of(i);
        return s.stage == 0 ? churn_[s.k].hat : mids_[s.k];
    }
    double model_input_scale(std::size_t i) const { return model_input_scale_of(churned_level(i), config_.input); }
    noise_condition model_level(std::size_t i) const { return seen_level(churned_level(i), config_.input); }
    template <class T, class S>
    void scale_model_input(tensor_view<T, S> out, std::type_identity_t<tensor_view<const T, S>> x, std::size_t i) const {
        lincomb(out, model_input_scale(i), x);
    }

    template <class T, class S>
    void prepare_step(std::size_t i, tensor_view<T, S> x, philox_rng& rng) {
        const stage_index s = stage_of(i);
        if (s.stage != 0) return;
        if (churn_[s.k].draws) {
            tensor<T, S> z(x.shape());
            randn(z.view(), rng);
            apply_churn<T, S>(s.k, x, z.cview());
        }
        prepared_ = i;
    }
    template <class T, class S>
    void prepare_step_with_noise(std::size_t i, tensor_view<T, S> x, std::type_identity_t<tensor_view<const T, S>> z) {
        const stage_index s = stage_of(i);
        require_same_shape(z.shape(), "z", x.shape(), "x");
        if (s.stage != 0) return;
        apply_churn<T, S>(s.k, x, z);
        prepared_ = i;
    }

    /// Step i (no noise drawn; churn noise comes from prepare_step).
    template <class T, class S>
    void step(std::type_identity_t<tensor_view<const T, S>> m, prediction_type from, std::size_t i,
              tensor_view<T, S> x, philox_rng& /*rng*/) {
        const stage_index s = stage_of(i);
        detail::require_step_tensors<T, S>(m, x, "dpm2_sampler.step");
        const tensor_view<const T, S> xc = x;
        const noise_condition hat = churn_[s.k].hat, next = levels_[s.k + 1], mid = mids_[s.k];
        if (s.stage == 0) {
            if (churn_[s.k].gamma > 0.0 && prepared_ != i)
                fail("dpm2_sampler.step: step " + std::to_string(i) + " has churn (γ = " +
                     std::to_string(churn_[s.k].gamma) + "); call prepare_step(" + std::to_string(i) +
                     ", x, rng) before the model call (sample() does)");
            prepared_ = npos;
            if (next.s == 0.0) {  // plain Euler to σ' = 0
                const euler_coeffs e = euler_coefficients(from, hat, next, model_level(i), model_input_scale(i));
                lincomb(x, e.c_x, xc, e.c_m, m);
                pending_ = npos;
                return;
            }
            tensor<T, S>& u = u_.get<T, S>(x.shape());
            lincomb(u.view(), next.a / hat.a, xc);  // u = a'·ŷ
            const euler_coeffs e = euler_coefficients(from, hat, mid, model_level(i), model_input_scale(i));
            lincomb(x, e.c_x, xc, e.c_m, m);        // x <- x_m
            pending_ = s.k;
            return;
        }
        const tensor<T, S>* u = u_.find<T, S>(x.shape());
        if (pending_ != s.k || u == nullptr)
            fail("dpm2_sampler.step: step " + std::to_string(i) + " is the second stage of method step " +
                 std::to_string(s.k) + "; take step " + std::to_string(i - 1) + " (its first stage) just before it");
        const affine_estimate d2 = detail::derivative_of(from, mid, model_level(i), model_input_scale(i));
        const double c = next.a * (next.sigma() - hat.sigma());
        lincomb(x, 1.0, u->cview(), c * d2.x, xc, c * d2.m, m);
        pending_ = npos;
    }
    template <class T, class S>
    void step(std::type_identity_t<tensor_view<const T, S>> m, std::size_t i, tensor_view<T, S> x, philox_rng& rng) {
        step<T, S>(m, config_.prediction, i, x, rng);
    }

private:
    static constexpr std::size_t npos = static_cast<std::size_t>(-1);

    template <class T, class S>
    void apply_churn(std::size_t k, tensor_view<T, S> x, tensor_view<const T, S> z) const {
        const detail::churn_step& c = churn_[k];
        if (c.gamma > 0.0) lincomb(x, c.c_x, tensor_view<const T, S>(x), c.c_z, z);
    }

    level_sequence levels_;
    dpm2_config config_{};
    std::vector<detail::churn_step> churn_;
    std::vector<noise_condition> mids_;  ///< midpoint level of each method step (ℓ_{k+1} when σ_{k+1} = 0)
    std::vector<stage_index> steps_;
    std::size_t pending_ = npos;
    std::size_t prepared_ = npos;
    detail::stash u_;
};

struct dpm2_ancestral_config {
    double eta = 1.0;      ///< >= 0 (0: DPM-2 without noise)
    double s_noise = 1.0;  ///< >= 0
    model_input input = model_input::state;
    prediction_type prediction = prediction_type::sample;  ///< what step(m, i, x, rng) assumes m is
};

class dpm2_ancestral_sampler : public begin_index_support {
public:
    dpm2_ancestral_sampler() = default;
    explicit dpm2_ancestral_sampler(std::vector<double> sigmas, dpm2_ancestral_config config = {})
        : dpm2_ancestral_sampler(level_sequence::ve(std::move(sigmas)), config) {}
    explicit dpm2_ancestral_sampler(level_sequence levels, dpm2_ancestral_config config = {}) : config_(config) {
        detail::validate_eta(config_.eta, config_.s_noise, "dpm2_ancestral_sampler");
        set_levels(std::move(levels));
    }

    void set_levels(level_sequence levels) {
        levels_ = detail::checked_sigma_levels(std::move(levels), "dpm2_ancestral_sampler");
        du_.clear();
        mids_.clear();
        steps_.clear();
        for (std::size_t k = 0; k + 1 < levels_.size(); ++k) {
            du_.push_back(ancestral_step(levels_.sigma(k), levels_.sigma(k + 1), config_.eta));
            steps_.push_back({k, 0});
            if (du_.back().down > 0.0) {
                steps_.push_back({k, 1});
                mids_.push_back(levels_.at_sigma(log_midpoint(levels_.sigma(k), du_.back().down)));
            } else {
                mids_.push_back(levels_.at_sigma(0.0));
            }
        }
        pending_ = npos;
        u_.clear();
        reset_begin_index();
    }
    void set_begin_index(std::size_t i) {
        store_begin_index(i, num_steps(), "dpm2_ancestral_sampler");
        if (steps_[i].stage != 0)
            fail_argument("dpm2_ancestral_sampler.set_begin_index: k", i,
                          "a first-stage step (the second stage cannot start a run)");
    }

    const level_sequence& levels() const { return levels_; }
    const dpm2_ancestral_config& config() const { return config_; }
    std::size_t num_method_steps() const { return levels_.empty() ? 0 : levels_.size() - 1; }
    /// Model evaluations: 2 per method step with σ_down > 0, 1 otherwise.
    std::size_t num_steps() const { return steps_.size(); }
    stage_index stage_of(std::size_t i) const {
        detail::require_step_index(i, num_steps(), "dpm2_ancestral_sampler");
        return steps_[i];
    }
    /// σ_down, σ_up of method step k.
    ancestral_sigmas sigmas_down_up(std::size_t k) const {
        require(k < du_.size(), "k", k, "< num_method_steps() = " + std::to_string(du_.size()));
        return du_[k];
    }
    double timestep(std::size_t i) const { return state_level(i).sigma(); }
    int order() const { return 2; }
    double init_noise_sigma() const {
        if (levels_.empty()) return 1.0;
        return levels_.space() == state_space::ve ? levels_.sigma(0) : 1.0;
    }
    noise_condition state_level(std::size_t i) const {
        const stage_index s = stage_of(i);
        return s.stage == 0 ? levels_[s.k] : mids_[s.k];
    }
    double model_input_scale(std::size_t i) const { return model_input_scale_of(state_level(i), config_.input); }
    noise_condition model_level(std::size_t i) const { return seen_level(state_level(i), config_.input); }
    template <class T, class S>
    void scale_model_input(tensor_view<T, S> out, std::type_identity_t<tensor_view<const T, S>> x, std::size_t i) const {
        lincomb(out, model_input_scale(i), x);
    }
    /// Whether step i uses noise (step(…, rng) then draws x.numel() normals).
    bool draws_noise(std::size_t i) const {
        const stage_index s = stage_of(i);
        if (du_[s.k].down > 0.0) return s.stage == 1;  // as k-diffusion, also for η = 0 (σ_up = 0)
        return du_[s.k].up > 0.0;                     // 1-stage step: only with noise to add
    }

    template <class T, class S>
    void step(std::type_identity_t<tensor_view<const T, S>> m, prediction_type from, std::size_t i,
              tensor_view<T, S> x, philox_rng& rng) {
        if (draws_noise(i)) {
            tensor<T, S> z(x.shape());
            randn(z.view(), rng);
            step_impl<T, S>(m, from, i, x, z.cview(), true);
        } else {
            step_impl<T, S>(m, from, i, x, tensor_view<const T, S>(), false);
        }
    }
    template <class T, class S>
    void step(std::type_identity_t<tensor_view<const T, S>> m, std::size_t i, tensor_view<T, S> x, philox_rng& rng) {
        step<T, S>(m, config_.prediction, i, x, rng);
    }
    /// The step with the standard normal z given (ignored where draws_noise(i) is false).
    template <class T, class S>
    void step_with_noise(std::type_identity_t<tensor_view<const T, S>> m, prediction_type from, std::size_t i,
                         tensor_view<T, S> x, std::type_identity_t<tensor_view<const T, S>> z) {
        require_same_shape(z.shape(), "z", x.shape(), "x");
        step_impl<T, S>(m, from, i, x, z, draws_noise(i));
    }

private:
    static constexpr std::size_t npos = static_cast<std::size_t>(-1);

    template <class T, class S>
    void step_impl(tensor_view<const T, S> m, prediction_type from, std::size_t i, tensor_view<T, S> x,
                   tensor_view<const T, S> z, bool noisy) {
        const stage_index s = stage_of(i);
        detail::require_step_tensors<T, S>(m, x, "dpm2_ancestral_sampler.step");
        const tensor_view<const T, S> xc = x;
        const noise_condition l = levels_[s.k], next = levels_[s.k + 1], mid = mids_[s.k];
        const ancestral_sigmas du = du_[s.k];
        const double cz = next.a * config_.s_noise * du.up;
        if (s.stage == 0) {
            if (du.down == 0.0) {  // Euler to σ_down = 0, then the σ_up noise: x' = a'(D1 + s_noise σ_up z)
                const affine_estimate d = x0_from_output(from, model_level(i), model_input_scale(i));
                if (noisy)
                    lincomb(x, next.a * d.x, xc, next.a * d.m, m, cz, z);
                else
                    lincomb(x, next.a * d.x, xc, next.a * d.m, m);
                pending_ = npos;
                return;
            }
            tensor<T, S>& u = u_.get<T, S>(x.shape());
            lincomb(u.view(), next.a / l.a, xc);  // u = a'·y
            const euler_coeffs e = euler_coefficients(from, l, mid, model_level(i), model_input_scale(i));
            lincomb(x, e.c_x, xc, e.c_m, m);      // x <- x_m
            pending_ = s.k;
            return;
        }
        const tensor<T, S>* u = u_.find<T, S>(x.shape());
        if (pending_ != s.k || u == nullptr)
            fail("dpm2_ancestral_sampler.step: step " + std::to_string(i) + " is the second stage of method step " +
                 std::to_string(s.k) + "; take step " + std::to_string(i - 1) + " (its first stage) just before it");
        const affine_estimate d2 = detail::derivative_of(from, mid, model_level(i), model_input_scale(i));
        const double c = next.a * (du.down - l.sigma());
        if (noisy)
            lincomb(x, 1.0, u->cview(), c * d2.x, xc, c * d2.m, m, cz, z);
        else
            lincomb(x, 1.0, u->cview(), c * d2.x, xc, c * d2.m, m);
        pending_ = npos;
    }

    level_sequence levels_;
    dpm2_ancestral_config config_{};
    std::vector<ancestral_sigmas> du_;
    std::vector<noise_condition> mids_;
    std::vector<stage_index> steps_;
    std::size_t pending_ = npos;
    detail::stash u_;
};

}  // namespace diffuse::samplers
