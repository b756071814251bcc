#pragma once
// Adaptive-step DPM-Solver (Lu et al. 2022 §4.2 / Alg. 4 "DPM-Solver-12 / -23"; dpm-solver
// `dpm_solver_adaptive`; k-diffusion `sample_dpm_adaptive` with its PID controller;
// docs/samplers/dpm_solver_singlestep.md §6, closed_forms C5).
//
// sample_adaptive(model, x, rng, config, callback, cond) integrates the probability-flow ODE from
// the level config.range[0] (σ_max) to config.range[1] (σ_min > 0), VE or VP, on x in place, in λ
// = −log σ. One attempt from λ_s with step h (target λ_t = min(λ_s + h, λ_end)) computes a lower-
// and a higher-order singlestep solution sharing their model evaluations
// (dpm_solver_singlestep.hpp stage tables):
//   order 2 (DPM-Solver-12): x_low = DPM-Solver-1, x_high = DPM-Solver-2 (r1 = ½)      2 NFE
//   order 3 (DPM-Solver-23): x_low = DPM-Solver-2 (r1 = ⅓), x_high = DPM-Solver-3 (⅓, ⅔) 3 NFE
//                            (config.lower_r1 != ⅓: x_low through its own level, 4 NFE)
// the scaled error  δ = max(atol, rtol·max(|x_low|, |x_prev|)) (x_prev: the last accepted x_low,
// initially x), and E = norm((x_high − x_low)/δ) with
//   max_sample_rms: max over batch items of the item's RMS (dpm-solver)
//   global_rms:     the RMS over the whole tensor (k-diffusion)
// Controllers:
//   dpm_solver: accept iff E <= 1; then h <- min(θ·h·E^{−1/order}, λ_end − λ_s) (also after a
//               rejection), θ = 0.9, h_init = 0.05 (dpm-solver's defaults)
//   pid:        k-diffusion's PIDStepSizeController with b1 = (p + i + d)/order, b2 = −(p + 2d)/order,
//               b3 = d/order on the inverse errors ε_k = 1/(E_k + 1e−8) (history shifted only on
//               acceptance), factor = 1 + atan(ε_0^b1 ε_1^b2 ε_2^b3 − 1), accept iff factor >=
//               accept_safety, h <- h·factor.
// On acceptance x <- x_high (local extrapolation), x_prev <- x_low. The loop ends when
// λ_end − λ_s <= lambda_tol; a step that would end within lambda_tol of the end goes to the end
// level exactly. NFE counts every evaluation, rejected attempts included (as dpm-solver and
// k-diffusion do). The ODE is deterministic: rng is not used. Scope: the PF-ODE from high to low
// noise only; k-diffusion's stochastic (η > 0) variant and reverse-time (inversion) use are
// not provided by this driver.
//
// Presets: adaptive_config::dpm_solver_defaults(range) (noise form, dpm_solver stage form,
// atol 0.0078, rtol 0.05, θ 0.9, max_sample_rms) and adaptive_config::k_diffusion(σ_min, σ_max)
// (VE range, pid with pcoeff 0, icoeff 1, dcoeff 0, accept_safety 0.81, global_rms).

#include <diffuse/backend/for_each.hpp>
#include <diffuse/backend/lincomb.hpp>
#include <diffuse/backend/reduce.hpp>
#include <diffuse/core/config.hpp>
#include <diffuse/core/error.hpp>
#include <diffuse/core/philox.hpp>
#include <diffuse/core/tensor.hpp>
#include <diffuse/models/denoiser.hpp>
#include <diffuse/samplers/dpm_solver_singlestep.hpp>
#include <diffuse/samplers/levels.hpp>
#include <diffuse/samplers/sampler.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace diffuse::samplers {

/// The step-size controller of sample_adaptive.
enum class adaptive_controller {
    dpm_solver,  ///< accept iff E <= 1, h <- min(θ h E^{−1/order}, remaining λ)
    pid,         ///< k-diffusion's PID controller
};

/// How the scaled error (x_high − x_low)/δ is reduced to one number E.
enum class adaptive_error_norm {
    max_sample_rms,  ///< max over batch items of the item's RMS (dpm-solver)
    global_rms,      ///< RMS over all elements (k-diffusion)
};

struct adaptive_config {
    level_sequence range;  ///< two levels: the start (σ_max) and the end (σ_min > 0), VE or VP
    int order = 3;         ///< 2: DPM-Solver-12, 3: DPM-Solver-23
    dpm_algorithm algorithm = dpm_algorithm::dpmsolver;
    singlestep_solver solver = singlestep_solver::dpm_solver;
    double rtol = 0.05;    ///< >= 0
    double atol = 0.0078;  ///< > 0
    double h_init = 0.05;  ///< first attempted λ step, > 0
    adaptive_controller controller = adaptive_controller::dpm_solver;
    double theta = 0.9;                                  ///< dpm_solver controller safety factor, in (0, 1]
    double pcoeff = 0.0, icoeff = 1.0, dcoeff = 0.0;     ///< pid gains (finite)
    double accept_safety = 0.81;                         ///< pid: accept iff factor >= accept_safety (> 0)
    adaptive_error_norm norm = adaptive_error_norm::max_sample_rms;
    /// Order 3: the intermediate λ fraction of the lower DPM-Solver-2. Exactly 1/3 (default,
    /// dpm-solver and k-diffusion) shares the higher's first stage: 3 NFE per attempt. Any other
    /// value in (0, 1) costs one more evaluation (4 NFE per attempt); 1/2 is the lower solution of
    /// closed_forms' reference script (t3_orders.py), whose error estimate is more reliable (§6 of the doc).
    double lower_r1 = 1.0 / 3.0;
    double lambda_tol = 1e-5;                            ///< end when λ_end − λ <= lambda_tol (> 0)
    std::size_t max_nfe = 1000000;                       ///< a diffuse::error when more would be needed
    model_input input = model_input::state;              ///< what the model is shown (levels.hpp)

    /// dpm-solver's dpm_solver_adaptive defaults on `range`.
    static adaptive_config dpm_solver_defaults(level_sequence range, int order = 3) {
        adaptive_config c;
        c.range = std::move(range);
        c.order = order;
        return c;
    }
    /// k-diffusion's sample_dpm_adaptive defaults: VE levels σ_max -> σ_min, PID, global RMS.
    static adaptive_config k_diffusion(double sigma_min, double sigma_max, int order = 3) {
        adaptive_config c;
        c.range = level_sequence::ve({sigma_max, sigma_min});
        c.order = order;
        c.controller = adaptive_controller::pid;
        c.norm = adaptive_error_norm::global_rms;
        return c;
    }
};

/// What sample_adaptive did.
struct adaptive_result {
    std::size_t nfe = 0;       ///< model evaluations (order per attempt)
    std::size_t accepted = 0;  ///< accepted attempts (steps)
    std::size_t rejected = 0;  ///< rejected attempts
    double h = 0.0;            ///< the controller's step size at the end
};

/// What the callback is told after each attempt.
struct adaptive_step_info {
    std::size_t attempt = 0;   ///< 0, 1, ...
    bool accepted = false;
    double sigma_from = 0.0;   ///< σ at the attempt's start
    double sigma_to = 0.0;     ///< σ it aimed at (x is there now when accepted)
    double error = 0.0;        ///< E
    double h_next = 0.0;       ///< the controller's next step size
    std::size_t nfe = 0;       ///< evaluations so far
};

namespace detail::dpm_ss {

/// out = (hi − lo)/max(atol, rtol·max(|lo|, |prev|)), element-wise.
template <class T>
struct scaled_error_op {
    T* out;
    const T* hi;
    const T* lo;
    const T* prev;
    T atol, rtol;
    DIFFUSE_HOST_DEVICE void operator()(std::int64_t i) const {
        const T a = lo[i] < T(0) ? -lo[i] : lo[i];
        const T b = prev[i] < T(0) ? -prev[i] : prev[i];
        T d = rtol * (a > b ? a : b);
        if (!(d > atol)) d = atol;
        out[i] = (hi[i] - lo[i]) / d;
    }
};

inline void check_adaptive_config(const adaptive_config& c) {
    require(c.range.size() == 2, "range.size()", c.range.size(), "2 (the start level σ_max and the end level σ_min)");
    require(std::isfinite(c.range.sigma(0)), "range.sigmas[0]", c.range.sigma(0), "finite");
    require(c.range.sigma(1) > 0.0, "range.sigmas[1]", c.range.sigma(1), "> 0 (the ODE is integrated to σ_min > 0)");
    require(c.order == 2 || c.order == 3, "order", c.order, "2 (DPM-Solver-12) or 3 (DPM-Solver-23)");
    require_ode_algorithm(c.algorithm);
    require(std::isfinite(c.rtol) && c.rtol >= 0.0, "rtol", c.rtol, "a finite number >= 0");
    require(std::isfinite(c.atol) && c.atol > 0.0, "atol", c.atol, "a finite number > 0");
    require(std::isfinite(c.h_init) && c.h_init > 0.0, "h_init", c.h_init, "a finite number > 0");
    require(std::isfinite(c.theta) && c.theta > 0.0 && c.theta <= 1.0, "theta", c.theta, "in (0, 1]");
    require(std::isfinite(c.pcoeff), "pcoeff", c.pcoeff, "finite");
    require(std::isfinite(c.icoeff), "icoeff", c.icoeff, "finite");
    require(std::isfinite(c.dcoeff), "dcoeff", c.dcoeff, "finite");
    require(std::isfinite(c.accept_safety) && c.accept_safety > 0.0, "accept_safety", c.accept_safety,
            "a finite number > 0");
    require(std::isfinite(c.lower_r1) && c.lower_r1 > 0.0 && c.lower_r1 < 1.0, "lower_r1", c.lower_r1, "in (0, 1)");
    require(std::isfinite(c.lambda_tol) && c.lambda_tol > 0.0, "lambda_tol", c.lambda_tol, "a finite number > 0");
    require(c.max_nfe >= static_cast<std::size_t>(c.order), "max_nfe", c.max_nfe, ">= order");
}

/// k-diffusion's PIDStepSizeController.
struct pid_controller {
    double h, b1, b2, b3, accept_safety;
    double errs[3] = {0.0, 0.0, 0.0};
    bool started = false;
    bool propose(double error) {
        const double inv = 1.0 / (error + 1e-8);
        if (!started) {
            errs[0] = errs[1] = errs[2] = inv;
            started = true;
        }
        errs[0] = inv;
        double factor = std::pow(errs[0], b1) * std::pow(errs[1], b2) * std::pow(errs[2], b3);
        factor = 1.0 + std::atan(factor - 1.0);
        const bool accept = factor >= accept_safety;
        if (accept) {
            errs[2] = errs[1];
            errs[1] = errs[0];
        }
        h *= factor;
        return accept;
    }
};

}  // namespace detail::dpm_ss

/// Integrates the PF-ODE adaptively from config.range[0] to config.range[1] on x in place (see
/// the file comment). callback(const adaptive_step_info&, tensor_view<const T, S> x) is called
/// after every attempt.
template <class M, class T, class S, class Callback = no_callback, class Cond = no_condition>
    requires models::denoiser<M, T, S, Cond>
adaptive_result sample_adaptive(const M& model, tensor_view<T, S> x, philox_rng& /*rng*/, const adaptive_config& config,
                                Callback&& callback = {}, const Cond& cond = {}) {
    using detail::dpm_ss::stage_coefficients;
    const char* who = "sample_adaptive";
    detail::dpm_ss::check_adaptive_config(config);
    require(x.rank() >= 1, std::string(who) + ": x.rank()", x.rank(), ">= 1 (a batch [B, ...])");
    const int o = config.order;
    const bool data = config.algorithm == dpm_algorithm::dpmsolver_pp;
    const shape sh = x.shape();
    tensor<T, S> prev(sh), lo(sh), hi(sh), u(sh), in(sh), out(sh), ratio(sh);
    // Order 3: the lower DPM-Solver-2 shares the higher's first stage when lower_r1 = 1/3.
    const bool shared_lower = o == 2 || config.lower_r1 == 1.0 / 3.0;
    const int nfe_per_attempt = shared_lower ? o : o + 1;
    std::vector<tensor<T, S>> q;
    for (int k = 0; k < (shared_lower ? o : 4); ++k) q.emplace_back(sh);
    lincomb(prev.view(), 1.0, tensor_view<const T, S>(x));
    const tensor_view<const T, S> xc = x;

    // Q_k = converted model output at level l for the state v.
    auto evaluate = [&](tensor_view<const T, S> v, const noise_condition& l, int k) {
        const double c_in = model_input_scale_of(l, config.input);
        const noise_condition seen = seen_level(l, config.input);
        lincomb(in.view(), c_in, v);
        model(out.view(), in.cview(), seen, cond);
        const double mx = max_abs(out.cview());
        if (!std::isfinite(mx))
            fail(std::string(who) + ": the model output at σ = " + std::to_string(l.sigma()) +
                 " is not finite; expected finite values");
        const affine_estimate e = data ? x0_from_output(model.prediction(), seen, c_in)
                                       : eps_from_output(model.prediction(), seen, c_in);
        lincomb(q[static_cast<std::size_t>(k)].view(), e.x, v, e.m, out.cview());
    };
    // out = c_x·x + Σ_{k<=j} w_k Q_k.
    auto combine = [&](tensor<T, S>& dst, const singlestep_coeffs& c, int j) {
        if (j == 0)
            lincomb(dst.view(), c.c_x, xc, c.w[0], q[0].cview());
        else if (j == 1)
            lincomb(dst.view(), c.c_x, xc, c.w[0], q[0].cview(), c.w[1], q[1].cview());
        else
            lincomb(dst.view(), c.c_x, xc, c.w[0], q[0].cview(), c.w[1], q[1].cview(), c.w[2], q[2].cview());
    };
    // E from ratio.
    auto rms = [](tensor_view<const T, S> v) {
        return std::sqrt(sum_squares(v) / static_cast<double>(std::max<std::int64_t>(v.numel(), 1)));
    };
    auto error_norm = [&]() {
        const std::int64_t B = sh[0];
        if (config.norm == adaptive_error_norm::global_rms || B == 0) return rms(ratio.cview());
        double e = 0.0;
        for (std::int64_t b = 0; b < B; ++b) e = diffuse::detail::nan_max(e, rms(ratio.cview().item(b)));
        return e;
    };

    noise_condition ls = config.range[0];
    const noise_condition& le = config.range[1];
    const double lam_end = lambda_of(le);
    double lam_s = lambda_of(ls);
    double h = config.h_init;
    detail::dpm_ss::pid_controller pid{config.h_init, (config.pcoeff + config.icoeff + config.dcoeff) / o,
                                       -(config.pcoeff + 2.0 * config.dcoeff) / o, config.dcoeff / o,
                                       config.accept_safety};
    adaptive_result res;
    const singlestep_solver sv = config.solver;
    const dpm_algorithm al = config.algorithm;
    for (std::size_t attempt = 0; lam_end - lam_s > config.lambda_tol; ++attempt) {
        if (res.nfe + static_cast<std::size_t>(nfe_per_attempt) > config.max_nfe)
            fail(std::string(who) + ": max_nfe = " + std::to_string(config.max_nfe) + " reached at σ = " +
                 std::to_string(ls.sigma()) + " (σ_min = " + std::to_string(le.sigma()) +
                 "); expected a larger max_nfe or looser rtol/atol");
        const double step = config.controller == adaptive_controller::pid ? pid.h : h;
        double lam_t = std::min(lam_s + step, lam_end);
        const bool to_end = lam_end - lam_t <= config.lambda_tol;
        if (to_end) lam_t = lam_end;
        const noise_condition lt = to_end ? le : config.range.at_sigma(std::exp(-lam_t));
        const double hh = lam_t - lam_s;
        // Intermediate levels: r = 1/2 (order 2) or 1/3, 2/3 (order 3).
        std::vector<noise_condition> lv;
        lv.push_back(ls);
        if (o == 2) {
            lv.push_back(config.range.at_sigma(std::exp(-(lam_s + 0.5 * hh))));
        } else {
            lv.push_back(config.range.at_sigma(std::exp(-(lam_s + hh / 3.0))));
            lv.push_back(config.range.at_sigma(std::exp(-(lam_s + 2.0 * hh / 3.0))));
        }
        lv.push_back(lt);
        const std::span<const noise_condition> all(lv);
        evaluate(xc, ls, 0);
        // u_1 = first stage toward lv[1].
        combine(u, stage_coefficients(al, sv, o, 0, all), 0);
        evaluate(u.cview(), lv[1], 1);
        if (o == 2) {
            const noise_condition low_lv[2] = {ls, lt};
            combine(lo, stage_coefficients(al, sv, 1, 0, low_lv), 0);          // DPM-Solver-1
            combine(hi, stage_coefficients(al, sv, 2, 1, all), 1);             // DPM-Solver-2
        } else {
            if (shared_lower) {
                const noise_condition low_lv[3] = {ls, lv[1], lt};
                combine(lo, stage_coefficients(al, sv, 2, 1, low_lv), 1);      // DPM-Solver-2, r1 = 1/3
            } else {  // DPM-Solver-2 through its own level λ_s + lower_r1·h: one more evaluation (Q_3)
                const noise_condition half = config.range.at_sigma(std::exp(-(lam_s + config.lower_r1 * hh)));
                const noise_condition low_lv[3] = {ls, half, lt};
                const singlestep_coeffs c0 = stage_coefficients(al, sv, 2, 0, low_lv);
                lincomb(u.view(), c0.c_x, xc, c0.w[0], q[0].cview());
                evaluate(u.cview(), half, 3);
                const singlestep_coeffs c1 = stage_coefficients(al, sv, 2, 1, low_lv);
                lincomb(lo.view(), c1.c_x, xc, c1.w[0], q[0].cview(), c1.w[1], q[3].cview());
            }
            combine(u, stage_coefficients(al, sv, 3, 1, all), 1);              // u_2
            evaluate(u.cview(), lv[2], 2);
            combine(hi, stage_coefficients(al, sv, 3, 2, all), 2);             // DPM-Solver-3
        }
        res.nfe += static_cast<std::size_t>(nfe_per_attempt);
        for_each<S>(ratio.numel(),
                    detail::dpm_ss::scaled_error_op<T>{ratio.view().data(), hi.cview().data(), lo.cview().data(),
                                                       prev.cview().data(), static_cast<T>(config.atol),
                                                       static_cast<T>(config.rtol)});
        const double E = error_norm();
        if (!std::isfinite(E))
            fail(std::string(who) + ": the error estimate at σ = " + std::to_string(ls.sigma()) + " is not finite");
        const double sigma_from = ls.sigma();
        bool accept;
        if (config.controller == adaptive_controller::pid) {
            accept = pid.propose(E);
        } else {
            accept = E <= 1.0;
        }
        if (accept) {
            lincomb(x, 1.0, hi.cview());
            lincomb(prev.view(), 1.0, lo.cview());
            ls = lt;
            lam_s = to_end ? lam_end : lambda_of(lt);
            ++res.accepted;
        } else {
            ++res.rejected;
        }
        if (config.controller == adaptive_controller::dpm_solver)
            h = std::min(config.theta * h * std::pow(E, -1.0 / o), lam_end - lam_s);
        const double h_next = config.controller == adaptive_controller::pid ? pid.h : h;
        callback(adaptive_step_info{attempt, accept, sigma_from, lt.sigma(), E, h_next, res.nfe},
                 tensor_view<const T, S>(x));
    }
    res.h = config.controller == adaptive_controller::pid ? pid.h : h;
    return res;
}

/// sample_adaptive on an owning tensor.
template <class M, class T, class S, class Callback = no_callback, class Cond = no_condition>
    requires models::denoiser<M, T, S, Cond>
adaptive_result sample_adaptive(const M& model, tensor<T, S>& x, philox_rng& rng, const adaptive_config& config,
                                Callback&& callback = {}, const Cond& cond = {}) {
    return sample_adaptive(model, x.view(), rng, config, std::forward<Callback>(callback), cond);
}

}  // namespace diffuse::samplers
