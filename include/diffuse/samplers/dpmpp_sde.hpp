#pragma once
// DPM++ SDE (k-diffusion sample_dpmpp_sde; diffusers DPMSolverSDEScheduler;
// docs/samplers/dpm_solver_singlestep.md §5).
//
// Outer levels L_0 .. L_K (VE or VP; σ = s/a, λ = −log σ). Outer step k, σ -> σ' > 0, in the VE
// variable x_ve = x/a, with h = λ' − λ, the intermediate σ_s = e^{−(λ + r h)} (r = ½ default),
// fac = 1/(2r) and the ancestral splits (dpmpp_2s_ancestral.hpp) (d1, u1) of σ -> σ_s and
// (d2, u2) of σ -> σ':
//   stage 0 (model at L_k, D):     u = (d1/σ) x_ve − expm1(log(d1/σ))·D + s_noise·u1·ξ_1
//   stage 1 (model at σ_s, D_2):   x_ve' = (d2/σ) x_ve − expm1(log(d2/σ))·((1 − fac) D + fac D_2)
//                                          + s_noise·u2·ξ_2
// σ' = 0: x' = D (one evaluation, no noise).
//
// Noise: k-diffusion draws ξ_1 and ξ_2 from one Brownian motion W indexed by σ (torchsde's
// BrownianTree): ξ_1 = (W(σ_s) − W(σ))/√(σ − σ_s), ξ_2 = (W(σ') − W(σ))/√(σ − σ'), so they are
// correlated. Here the same joint law is built exactly from two independent increments:
// n_1 ~ N(0, I) for [σ_s, σ] and n_2 ~ N(0, I) for [σ', σ_s]:
//   ξ_1 = n_1,   ξ_2 = (√(σ − σ_s)·n_1 + √(σ_s − σ')·n_2) / √(σ − σ')
// (corr(ξ_1, ξ_2) = √((σ − σ_s)/(σ − σ'))). Different outer steps use disjoint intervals, hence
// independent normals, as the tree does. torchsde's tree itself (its sample paths for a seed)
// is not reproduced.
//
// Steps count model evaluations (2 per outer step with σ' > 0). Normals: with η > 0 each of
// the two stages draws x.numel() (n_1 at stage 0, n_2 at stage 1; uses_noise(i)); none when
// η = 0 or on a step to σ = 0. step_with_noise(m, type, i, x, z) takes the stage's own n_j as
// z. Work: stage 0 writes P = a'((d2/σ) x_ve − expm1(log(d2/σ))(1 − fac) D + s_noise u2
// √((σ−σ_s)/(σ−σ')) n_1) for stage 1 and u into x (two lincombs); stage 1 one lincomb. With
// η = 0 and r = ½ this is DPM-Solver++(2S), the same method as DPM++ 2S ancestral with η = 0.

#include <diffuse/backend/lincomb.hpp>
#include <diffuse/backend/randn.hpp>
#include <diffuse/core/error.hpp>
#include <diffuse/core/philox.hpp>
#include <diffuse/core/tensor.hpp>
#include <diffuse/models/denoiser.hpp>
#include <diffuse/samplers/detail/outer_stages.hpp>
#include <diffuse/samplers/dpm_solver_singlestep.hpp>
#include <diffuse/samplers/dpmpp_2s_ancestral.hpp>
#include <diffuse/samplers/levels.hpp>
#include <diffuse/samplers/sampler.hpp>

#include <cmath>
#include <cstddef>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace diffuse::samplers {

struct dpmpp_sde_config {
    double eta = 1.0;                                      ///< η >= 0 (0: deterministic DPM-Solver++(2S))
    double s_noise = 1.0;                                  ///< noise scale >= 0
    double r = 0.5;                                        ///< intermediate λ fraction, in (0, 1)
    model_input input = model_input::state;                ///< what the model is shown (levels.hpp)
    prediction_type prediction = prediction_type::sample;  ///< what step(m, i, x, rng) assumes m is
};

/// The coefficients of one DPM++ SDE outer step (see the file comment), in x's convention.
struct dpmpp_sde_coeffs {
    double u_x, u_d, u_n1;          ///< u  = u_x·x + u_d·D + u_n1·n_1             (at the level of σ_s)
    double p_x, p_d, p_n1;          ///< P  = p_x·x + p_d·D + p_n1·n_1
    double x_d2, x_n2;              ///< x' = P + x_d2·D_2 + x_n2·n_2
};

class dpmpp_sde_sampler : public detail::outer_stage_base<dpmpp_sde_sampler, dpmpp_sde_config> {
public:
    dpmpp_sde_sampler() : outer_stage_base(who, who_step) {}
    /// Outer levels L_0 > ... > L_K (σ_0 finite; only the last may be σ = 0).
    explicit dpmpp_sde_sampler(level_sequence outer, dpmpp_sde_config config = {})
        : outer_stage_base(who, who_step, config) {
        detail::dpm_ss::check_noise_params(config_.eta, config_.s_noise);
        require(std::isfinite(config_.r) && config_.r > 0.0 && config_.r < 1.0, "r", config_.r, "in (0, 1)");
        set_levels(std::move(outer));
    }

    void set_levels(level_sequence outer) {
        begin_plan(std::move(outer));
        for (std::size_t k = 0; k + 1 < outer_.size(); ++k) {
            if (outer_.sigma(k + 1) > 0.0)
                add_two_stages(k, outer_.at_sigma(mid_sigma(k)));
            else
                add_one_stage(k);
        }
        end_plan();
    }
    // Inherited: set_begin_index(k) (k = first_step(j)), levels(), config(), num_steps(),
    // first_step(k), outer_step(i), stage(i), timestep(i), order() (2), init_noise_sigma(),
    // state_level(i), model_input_scale(i), model_level(i), scale_model_input(out, x, i),
    // step_with_noise(m, type, i, x, z) (z: the stage's standard-normal increment, n_1 at stage 0,
    // n_2 at stage 1; ignored where uses_noise(i) is false), step(m, type, i, x, rng) (draws
    // x.numel() normals where uses_noise(i)), step(m, i, x, rng).

    /// Whether step i draws x.numel() normals (both stages of an outer step with σ' > 0, η > 0).
    bool uses_noise(std::size_t i) const {
        const auto& p = plan(i);
        return config_.eta > 0.0 && p.stages == 2;
    }

    /// The coefficient table of outer step k (σ_{k+1} > 0).
    dpmpp_sde_coeffs coefficients(std::size_t k) const {
        require(k + 1 < outer_.size() && outer_.sigma(k + 1) > 0.0, "k", k, "an outer step with σ' > 0");
        const noise_condition& l = outer_[k];
        const noise_condition& to = outer_[k + 1];
        const noise_condition& mid = plan_[first_[k] + 1].level;
        const double sig = l.sigma(), sig_next = to.sigma(), sig_s = mid.sigma();
        const double fac = 1.0 / (2.0 * config_.r);
        const auto s1 = detail::dpm_ss::ancestral_split_of(sig, sig_s, config_.eta);
        const auto s2 = detail::dpm_ss::ancestral_split_of(sig, sig_next, config_.eta);
        const double e1 = std::expm1(std::log(s1.down) - std::log(sig));
        const double e2 = std::expm1(std::log(s2.down) - std::log(sig));
        const double span = sig - sig_next;
        dpmpp_sde_coeffs c{};
        c.u_x = mid.a * s1.down / (sig * l.a);
        c.u_d = -mid.a * e1;
        c.u_n1 = mid.a * config_.s_noise * s1.up;
        c.p_x = to.a * s2.down / (sig * l.a);
        c.p_d = -to.a * e2 * (1.0 - fac);
        c.p_n1 = to.a * config_.s_noise * s2.up * std::sqrt((sig - sig_s) / span);
        c.x_d2 = -to.a * e2 * fac;
        c.x_n2 = to.a * config_.s_noise * s2.up * std::sqrt((sig_s - sig_next) / span);
        return c;
    }

private:
    friend outer_stage_base;
    static constexpr const char* who = "dpmpp_sde_sampler";
    static constexpr const char* who_step = "dpmpp_sde_sampler.step";

    double mid_sigma(std::size_t k) const {
        const double lam = lambda_of(outer_[k]), lam_next = lambda_of(outer_[k + 1]);
        return std::exp(-(lam + config_.r * (lam_next - lam)));
    }

    template <class T, class S>
    void run(tensor_view<const T, S> m, prediction_type from, std::size_t i, tensor_view<T, S> x,
             const tensor_view<const T, S>* z) {
        const auto [p, noisy, d] = begin_stage<T, S>(m, from, i, x, z);
        const tensor_view<const T, S> xc = x;
        if (p.stages == 1) {  // σ' = 0: x' = a'·D
            const double a = outer_[p.outer + 1].a;
            lincomb(x, a * d.x, xc, a * d.m, m);
            stage_done(i);
            return;
        }
        const dpmpp_sde_coeffs c = coefficients(p.outer);
        if (p.stage == 0) {
            auto& buf = store_.get<T, S>(1, x.shape());
            if (noisy) {
                lincomb(buf[0].view(), c.p_x + c.p_d * d.x, xc, c.p_d * d.m, m, c.p_n1, *z);
                lincomb(x, c.u_x + c.u_d * d.x, xc, c.u_d * d.m, m, c.u_n1, *z);
            } else {
                lincomb(buf[0].view(), c.p_x + c.p_d * d.x, xc, c.p_d * d.m, m);
                lincomb(x, c.u_x + c.u_d * d.x, xc, c.u_d * d.m, m);
            }
        } else {
            auto& buf = store_.existing<T, S>(1, x.shape(), who_step);
            if (noisy)
                lincomb(x, 1.0, buf[0].cview(), c.x_d2 * d.x, xc, c.x_d2 * d.m, m, c.x_n2, *z);
            else
                lincomb(x, 1.0, buf[0].cview(), c.x_d2 * d.x, xc, c.x_d2 * d.m, m);
        }
        stage_done(i);
    }
};

}  // namespace diffuse::samplers
