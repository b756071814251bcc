#pragma once
// DPM++ 2S ancestral (k-diffusion sample_dpmpp_2s_ancestral; docs/samplers/dpm_solver_singlestep.md §4).
//
// Outer levels L_0 .. L_K (a level_sequence, VE or VP; σ = s/a, λ = −log σ). Outer step k,
// σ = σ_k -> σ' = σ_{k+1}, with the ancestral split of k-diffusion's get_ancestral_step:
//   σ_up   = min(σ', η·σ'·√(1 − σ'²/σ²)),   σ_down = √(σ'² − σ_up²)
// In the VE variable x_ve = x/a (D = x0 estimate):
//   σ_down > 0: DPM-Solver++(2S) with r = ½ from σ to σ_down, h = log(σ/σ_down):
//        stage 0 (model at L_k):    u    = (σ_m/σ) x_ve − expm1(−h/2)·D,  σ_m = √(σ σ_down)
//        stage 1 (model at σ_m):    x_ve' = (σ_down/σ) x_ve − expm1(−h)·D(u) + s_noise·σ_up·z
//   σ_down = 0 (σ' = 0, or η > 1):  x_ve' = D + s_noise·σ_up·z           (one evaluation)
// z ~ N(0, I) only when σ' > 0 (no noise on a step to σ = 0). The state at a level (a, s) is
// a·x_ve, so each stage is one lincomb in x's own convention: stage 0 keeps one tensor
// P = (a'/a)(σ_down/σ)·x for stage 1 and writes u (at the level of σ_m) into x; stage 1 writes
// x' = P − a' expm1(−h)·D(u) + a' s_noise σ_up z (4 inputs).
//
// Steps count model evaluations (2 per outer step, 1 when σ_down = 0). Normals: x.numel()
// at the last stage of every outer step with σ' > 0 when η > 0 (uses_noise(i)); none when η = 0.
// step_with_noise(m, type, i, x, z) takes that standard-normal z explicitly (ignored where
// uses_noise(i) is false). η = 0 is deterministic DPM-Solver++(2S), r = ½ (order 2).

#include <diffuse/backend/lincomb.hpp>
#include <diffuse/backend/randn.hpp>
#include <diffuse/core/error.hpp>
#include <diffuse/core/philox.hpp>
#include <diffuse/core/tensor.hpp>
#include <diffuse/models/denoiser.hpp>
#include <diffuse/samplers/detail/outer_stages.hpp>
#include <diffuse/samplers/dpm_solver_singlestep.hpp>
#include <diffuse/samplers/levels.hpp>
#include <diffuse/samplers/sampler.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace diffuse::samplers {

namespace detail::dpm_ss {

/// k-diffusion get_ancestral_step(σ, σ', η): {σ_down, σ_up}, written without cancellation
/// ((σ_down/σ')² = (1 − η²) + η²σ'²/σ² for η <= 1).
struct ancestral_split {
    double down, up;
};
inline ancestral_split ancestral_split_of(double sigma, double sigma_next, double eta) {
    if (eta == 0.0 || sigma_next == 0.0) return {sigma_next, 0.0};
    const double rho = sigma_next / sigma;
    const double u = std::min(1.0, eta * std::sqrt((1.0 - rho) * (1.0 + rho)));  // σ_up/σ'
    const double d2 = eta <= 1.0 ? (1.0 - eta * eta) + eta * eta * rho * rho : std::max(0.0, (1.0 - u) * (1.0 + u));
    return {sigma_next * std::sqrt(d2), sigma_next * u};
}

/// η and s_noise of the stochastic samplers: finite and >= 0.
inline void check_noise_params(double eta, double s_noise) {
    require(std::isfinite(eta) && eta >= 0.0, "eta", eta, "a finite number >= 0 (0: deterministic)");
    require(std::isfinite(s_noise) && s_noise >= 0.0, "s_noise", s_noise, "a finite number >= 0");
}

}  // namespace detail::dpm_ss

struct dpmpp_2s_ancestral_config {
    double eta = 1.0;                                      ///< η >= 0 (k-diffusion; 0: no noise, 1: ancestral)
    double s_noise = 1.0;                                  ///< noise scale >= 0
    model_input input = model_input::state;                ///< what the model is shown (levels.hpp)
    prediction_type prediction = prediction_type::sample;  ///< what step(m, i, x, rng) assumes m is
};

class dpmpp_2s_ancestral_sampler
    : public detail::outer_stage_base<dpmpp_2s_ancestral_sampler, dpmpp_2s_ancestral_config> {
public:
    dpmpp_2s_ancestral_sampler() : outer_stage_base(who, who_step) {}
    /// Outer levels L_0 > ... > L_K (σ_0 finite; only the last may be σ = 0).
    explicit dpmpp_2s_ancestral_sampler(level_sequence outer, dpmpp_2s_ancestral_config config = {})
        : outer_stage_base(who, who_step, config) {
        detail::dpm_ss::check_noise_params(config_.eta, config_.s_noise);
        set_levels(std::move(outer));
    }

    void set_levels(level_sequence outer) {
        begin_plan(std::move(outer));
        for (std::size_t k = 0; k + 1 < outer_.size(); ++k) {
            const double sig = outer_.sigma(k);
            const auto sp = detail::dpm_ss::ancestral_split_of(sig, outer_.sigma(k + 1), config_.eta);
            if (sp.down > 0.0) {
                const double lam = lambda_of(outer_[k]), h = -std::log(sp.down) - lam;
                add_two_stages(k, outer_.at_sigma(std::exp(-(lam + 0.5 * h))));
            } else {
                add_one_stage(k);
            }
        }
        end_plan();
    }
    // Inherited: set_begin_index(k) (k = first_step(j)), levels(), config(), num_steps(),
    // first_step(k), outer_step(i), stage(i), timestep(i) (the level's timestep when it has one,
    // else its σ), order() (2), init_noise_sigma(), state_level(i), model_input_scale(i),
    // model_level(i), scale_model_input(out, x, i), step_with_noise(m, type, i, x, z),
    // step(m, type, i, x, rng), step(m, i, x, rng).

    /// Whether step i adds noise (draws x.numel() normals in step()).
    bool uses_noise(std::size_t i) const {
        const auto& p = plan(i);
        return config_.eta > 0.0 && p.stage + 1 == p.stages && outer_.sigma(p.outer + 1) > 0.0;
    }

private:
    friend outer_stage_base;
    static constexpr const char* who = "dpmpp_2s_ancestral_sampler";
    static constexpr const char* who_step = "dpmpp_2s_ancestral_sampler.step";

    template <class T, class S>
    void run(tensor_view<const T, S> m, prediction_type from, std::size_t i, tensor_view<T, S> x,
             const tensor_view<const T, S>* z) {
        const auto [p, noisy, d] = begin_stage<T, S>(m, from, i, x, z);
        const noise_condition& from_level = outer_[p.outer];
        const noise_condition& to = outer_[p.outer + 1];
        const double sig = from_level.sigma();
        const auto sp = detail::dpm_ss::ancestral_split_of(sig, to.sigma(), config_.eta);
        const tensor_view<const T, S> xc = x;
        const double cz = to.a * config_.s_noise * sp.up;  // a'·s_noise·σ_up
        if (p.stages == 1) {  // σ_down = 0: x' = a'·(D + s_noise σ_up z)
            if (noisy)
                lincomb(x, to.a * d.x, xc, to.a * d.m, m, cz, *z);
            else
                lincomb(x, to.a * d.x, xc, to.a * d.m, m);
            stage_done(i);
            return;
        }
        const double h = -std::log(sp.down) + std::log(sig);  // λ_down − λ
        if (p.stage == 0) {
            const noise_condition& mid = plan_[i + 1].level;
            auto& buf = store_.get<T, S>(1, x.shape());
            // P = (a'/a)(σ_down/σ)·x for stage 1.
            lincomb(buf[0].view(), to.a / from_level.a * (sp.down / sig), xc);
            // u = (s_m/s)·x − a_m expm1(−(λ_m − λ))·D.
            const double k = -mid.a * std::expm1(-(lambda_of(mid) - lambda_of(from_level)));
            lincomb(x, mid.s / from_level.s + k * d.x, xc, k * d.m, m);
        } else {
            auto& buf = store_.existing<T, S>(1, x.shape(), who_step);
            const double k = -to.a * std::expm1(-h);
            if (noisy)
                lincomb(x, 1.0, buf[0].cview(), k * d.x, xc, k * d.m, m, cz, *z);
            else
                lincomb(x, 1.0, buf[0].cview(), k * d.x, xc, k * d.m, m);
        }
        stage_done(i);
    }
};

}  // namespace diffuse::samplers
