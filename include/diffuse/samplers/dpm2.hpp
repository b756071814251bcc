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
#include <diffuse/samplers/detail/two_stage.hpp>
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

class dpm2_sampler : public detail::two_stage_base<dpm2_config> {
public:
    dpm2_sampler() : two_stage_base(who, begin_allowed) {}
    explicit dpm2_sampler(std::vector<double> sigmas, dpm2_config config = {})
        : dpm2_sampler(level_sequence::ve(std::move(sigmas)), config) {}
    explicit dpm2_sampler(level_sequence levels, dpm2_config config = {}) : two_stage_base(who, begin_allowed, config) {
        detail::validate_churn(config_.churn, who);
        set_levels(std::move(levels));
    }

    void set_levels(level_sequence levels) {
        begin_levels(std::move(levels));
        for (std::size_t k = 0; k + 1 < levels_.size(); ++k) {
            const detail::churn_step churn = detail::churn_of(config_.churn, levels_, k);
            const bool two_stages = levels_.sigma(k + 1) > 0.0;
            // the midpoint level of the method step (ℓ_{k+1} when σ_{k+1} = 0)
            add_method_step(k, churn, two_stages,
                            two_stages ? levels_.at_sigma(log_midpoint(churn.hat.sigma(), levels_.sigma(k + 1)))
                                       : levels_[k + 1]);
        }
        end_levels();
    }
    // Inherited: set_begin_index(i) (a stage-0 step), levels(), config(), num_method_steps(),
    // num_steps() (model evaluations: 2N, minus 1 when σ_N = 0), stage_of(i), timestep(i) (σ of
    // the model evaluation without churn: σ_k at stage 0, σ_m at stage 1), order() (2),
    // init_noise_sigma(), state_level(i) (ℓ_k at stage 0, before churn, or the midpoint level at
    // σ_m), model_input_scale(i), model_level(i), scale_model_input(out, x, i).

    using two_stage_base::churn_gamma;
    using two_stage_base::churned_level;
    using two_stage_base::prepare_step;
    using two_stage_base::prepare_step_with_noise;

    /// Step i (no noise drawn; churn noise comes from prepare_step).
    template <class T, class S>
    void step(std::type_identity_t<tensor_view<const T, S>> m, prediction_type from, std::size_t i,
              tensor_view<T, S> x, philox_rng& /*rng*/) {
        // stage 0: u = a'·ŷ and x <- x_m (Euler to σ_m); stage 1: x' = u + a'(σ' − σ̂)·d2 at σ_m
        churned_two_stage_step<T, S>(m, from, i, x, "dpm2_sampler.step", 1.0,
                                     [](tensor_view<T, S> u, tensor_view<const T, S> xc, tensor_view<const T, S>,
                                        const noise_condition& hat, const noise_condition& next, double) {
                                         lincomb(u, next.a / hat.a, xc);
                                     });
    }
    template <class T, class S>
    void step(std::type_identity_t<tensor_view<const T, S>> m, std::size_t i, tensor_view<T, S> x, philox_rng& rng) {
        step<T, S>(m, config_.prediction, i, x, rng);
    }

private:
    static constexpr const char* who = "dpm2_sampler";
    static constexpr const char* begin_allowed = "a first-stage step (the second stage cannot start a run)";
};

struct dpm2_ancestral_config {
    double eta = 1.0;      ///< >= 0 (0: DPM-2 without noise)
    double s_noise = 1.0;  ///< >= 0
    model_input input = model_input::state;
    prediction_type prediction = prediction_type::sample;  ///< what step(m, i, x, rng) assumes m is
};

class dpm2_ancestral_sampler : public detail::two_stage_base<dpm2_ancestral_config> {
public:
    dpm2_ancestral_sampler() : two_stage_base(who, begin_allowed) {}
    explicit dpm2_ancestral_sampler(std::vector<double> sigmas, dpm2_ancestral_config config = {})
        : dpm2_ancestral_sampler(level_sequence::ve(std::move(sigmas)), config) {}
    explicit dpm2_ancestral_sampler(level_sequence levels, dpm2_ancestral_config config = {})
        : two_stage_base(who, begin_allowed, config) {
        detail::validate_eta(config_.eta, config_.s_noise, who);
        set_levels(std::move(levels));
    }

    void set_levels(level_sequence levels) {
        begin_levels(std::move(levels));
        du_.clear();
        for (std::size_t k = 0; k + 1 < levels_.size(); ++k) {
            du_.push_back(ancestral_step(levels_.sigma(k), levels_.sigma(k + 1), config_.eta));
            const bool two_stages = du_.back().down > 0.0;
            // no churn: the model's stage-0 level is ℓ_k
            detail::churn_step none{};
            none.hat = levels_[k];
            add_method_step(k, none, two_stages,
                            two_stages ? levels_.at_sigma(log_midpoint(levels_.sigma(k), du_.back().down))
                                       : levels_.at_sigma(0.0));
        }
        end_levels();
    }
    // Inherited: set_begin_index(i) (a stage-0 step), levels(), config(), num_method_steps(),
    // num_steps() (model evaluations: 2 per method step with σ_down > 0, 1 otherwise),
    // stage_of(i), timestep(i), order() (2), init_noise_sigma(), state_level(i) (ℓ_k at stage 0,
    // the midpoint level at stage 1), model_input_scale(i), model_level(i) (at state_level(i)),
    // scale_model_input(out, x, i).

    /// σ_down, σ_up of method step k.
    ancestral_sigmas sigmas_down_up(std::size_t k) const {
        require(k < du_.size(), "k", k, "< num_method_steps() = " + std::to_string(du_.size()));
        return du_[k];
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
    static constexpr const char* who = "dpm2_ancestral_sampler";
    static constexpr const char* begin_allowed = "a first-stage step (the second stage cannot start a run)";

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
                method_step_done();
                return;
            }
            tensor<T, S>& u = first_stage_buffer<T, S>(x.shape());
            lincomb(u.view(), next.a / l.a, xc);  // u = a'·y
            const euler_coeffs e = euler_coefficients(from, l, mid, model_level(i), model_input_scale(i));
            lincomb(x, e.c_x, xc, e.c_m, m);      // x <- x_m
            first_stage_done(s.k);
            return;
        }
        const tensor<T, S>& u = second_stage_buffer<T, S>(i, s.k, x.shape());
        const affine_estimate d2 = detail::derivative_of(from, mid, model_level(i), model_input_scale(i));
        const double c = next.a * (du.down - l.sigma());
        if (noisy)
            lincomb(x, 1.0, u.cview(), c * d2.x, xc, c * d2.m, m, cz, z);
        else
            lincomb(x, 1.0, u.cview(), c * d2.x, xc, c * d2.m, m);
        method_step_done();
    }

    std::vector<ancestral_sigmas> du_;
};

}  // namespace diffuse::samplers
