#pragma once
// Multistep DPM-Solver (Lu et al. 2022, noise prediction), DPM-Solver++(1/2M/3M) (Lu et al. 2022b,
// data prediction) and SDE-DPM-Solver++(1/2M/3M) with η (diffusers DPMSolverMultistepScheduler,
// dpm-solver `multistep`, k-diffusion dpmpp_2m / dpmpp_2m_sde / dpmpp_3m_sde);
// docs/samplers/dpm_solver.md.
//
// State: x at the levels ℓ_0 .. ℓ_N of a level_sequence (VE or VP; levels.hpp). Step i evaluates
// the model once at ℓ_i, turns its output m into the solver's estimate E_i (x0 for dpmsolver++ and
// sde-dpmsolver++, eps for dpmsolver; dynamic thresholding applied to the x0 estimate when
// enabled), and moves x to ℓ_{i+1} with the estimates E_i, E_{i−1}, E_{i−2} of the last k steps
// (k = step_order(i, ...) <= order). With h = λ_{i+1} − λ_i, h_0 = λ_i − λ_{i−1},
// h_1 = λ_{i−1} − λ_{i−2}, r0 = h_0/h, r1 = h_1/h and the one-step weights X, w_j, c_z of
// dpm_solver_common.hpp (dpm_step_weights):
//
//   k = 1:  x' = X·x + w_0·E_i + c_z·z
//   k = 2:  D1 = (E_i − E_{i−1})/r0
//           x' = X·x + w_0·E_i + c_1·D1 + c_z·z,   c_1 = ½·w_0 (midpoint) or w_1 (heun)
//   k = 3:  D1_0 = (E_i − E_{i−1})/r0,  D1_1 = (E_{i−1} − E_{i−2})/r1
//           D1 = D1_0 + r0/(r0 + r1)·(D1_0 − D1_1)            (≈ h·E', error O(h³))
//           D2 = κ·(D1_0 − D1_1)/(r0 + r1)                     (κ·h²·E''/2 + O(h³))
//           x' = X·x + w_0·E_i + w_1·D1 + w_2·D2 + c_z·z
//
// κ (third_order_d2): the exact exponential integrator needs the term w_2·h²·E'' (w_2 = a'·H·φ_3(−H)),
// so κ = 2 (third_order_d2::taylor) is the Taylor-consistent third-order method. diffusers,
// dpm-solver and k-diffusion all use κ = 1 (third_order_d2::peers, the default for parity):
// their "3M" is exact only for estimates linear in λ and is second order (closed_forms C3; our
// measurement in test_dpm_solver_multistep_order.cpp). Both are provided; docs §4.
//
// Order per step (step_order): k = min(order, 1 + the number of consecutive earlier estimates held
// (warm-up after begin_index)); k = 1 when ℓ_{i+1} has σ = 0 (the D1/D2 differences blow up there;
// diffusers' final_sigmas_type="zero", k-diffusion's σ_next = 0); k = 1 at the last step with
// euler_at_final; and with lower_order_final, when num_steps() < lower_order_final_below,
// k <= num_steps() − i (the last step first order, the second-to-last at most second order).
// That is diffusers' rule with lower_order_final_below = 15 and dpm-solver's
// (min(order, steps + 1 − step) when steps < 10) with 10.
//
// Data flow (the passes over the state-sized tensors of one step; T = the tensor type):
//   pass 1  E_i = e_x·x + e_m·m into a history slot (lincomb, 2 inputs; 1 for an x0 model under
//           dpmsolver++). Thresholding adds its quantile + clamp passes on the slot (and, for
//           dpmsolver, one more lincomb back to eps = (x − a·x0)/s).
//   pass 2  x' = X·x + W_0·E_i + W_1·E_{i−1} + W_2·E_{i−2} + c_z·z (lincomb, 1 + k (+1) <= 4
//           inputs; the D1/D2 differences are folded into the weights W_j on the host). Only
//           3M with noise has 5 inputs: it adds c_z·z in a third (2-input) pass.
//   A first-order step whose estimate no later step reads (order 1, or the last step) without
//   thresholding is one pass: x' = (X + W_0·e_x)·x + W_0·e_m·m (+ c_z·z).
// So a 2M step reads x, m, x, E_i, E_{i−1} and writes E_i, x: 2 lincomb passes, no temporaries.
// Noise: with sde-dpmsolver++ and η > 0 every step draws x.numel() normals (randn into a buffer
// kept by the sampler; step_with_noise takes z instead), also where c_z = 0 (a step to σ = 0);
// otherwise none.
//
// History lives inside the sampler (step() is non-const): up to `order` state-sized slots of the
// tensor type of the first step, allocated once. It restarts at begin_index(): step i continues
// the history only when the previous step (or warm_start) was i − 1; otherwise i must be
// begin_index() and the warm-up starts again. warm_start(m, type, i, x) records the estimate of
// step i without moving x (exact-history starts for order tests, resuming a run).

#include <diffuse/backend/lincomb.hpp>
#include <diffuse/backend/randn.hpp>
#include <diffuse/core/error.hpp>
#include <diffuse/core/philox.hpp>
#include <diffuse/core/tensor.hpp>
#include <diffuse/models/denoiser.hpp>
#include <diffuse/process/parametrization.hpp>
#include <diffuse/samplers/detail/level_checks.hpp>
#include <diffuse/samplers/dpm_solver_common.hpp>
#include <diffuse/samplers/levels.hpp>
#include <diffuse/samplers/sampler.hpp>
#include <diffuse/samplers/thresholding.hpp>
#include <diffuse/schedules/discrete_schedule.hpp>
#include <diffuse/schedules/timesteps.hpp>

#include <algorithm>
#include <any>
#include <array>
#include <cmath>
#include <cstddef>
#include <limits>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace diffuse::samplers {

/// The second-difference term of the third-order multistep step (see the file comment).
enum class third_order_d2 {
    peers,   ///< D2 = (D1_0 − D1_1)/(r0 + r1): diffusers / dpm-solver / k-diffusion; measured order 2
    taylor,  ///< D2 = 2·(D1_0 − D1_1)/(r0 + r1): the Taylor-consistent term; order 3
};

/// "peers" or "taylor".
inline third_order_d2 parse_third_order_d2(std::string_view name) {
    if (name == "peers") return third_order_d2::peers;
    if (name == "taylor") return third_order_d2::taylor;
    fail_argument("third_order_d2", name, "one of \"peers\", \"taylor\"");
}

inline std::string_view to_string(third_order_d2 d) {
    switch (d) {
        case third_order_d2::peers: return "peers";
        case third_order_d2::taylor: return "taylor";
    }
    return "unknown";
}

struct dpm_multistep_config {
    int order = 2;                                              ///< solver_order: 1, 2 or 3
    dpm_algorithm algorithm = dpm_algorithm::dpmsolver_pp;      ///< algorithm_type
    dpm_solver_type solver_type = dpm_solver_type::midpoint;    ///< for second-order steps
    third_order_d2 d2 = third_order_d2::peers;                  ///< for third-order steps
    bool lower_order_final = true;                              ///< lower the order of the last steps ...
    int lower_order_final_below = 15;                           ///< ... when num_steps() < this (diffusers 15, dpm-solver 10)
    bool euler_at_final = false;                                ///< first order at the last step
    double eta = 1.0;                                           ///< sde-dpmsolver++ only: η >= 0 (1 = diffusers)
    double s_noise = 1.0;                                       ///< sde-dpmsolver++ only: noise scale (k-diffusion s_noise)
    thresholding threshold{};                                   ///< dynamic thresholding of the x0 estimate
    model_input input = model_input::state;                     ///< what the model is shown (levels.hpp)
    prediction_type prediction = prediction_type::epsilon;      ///< what step(m, i, x, rng) assumes m is
};

/// One step's table: E_i = est.x·x + est.m·m; x' = x·state + Σ_j w[j]·E_{i−j} + z·noise.
struct dpm_multistep_coeffs {
    int order = 1;                 ///< k, the order this step uses
    affine_estimate est{};         ///< the new estimate from the model output (before thresholding)
    double x = 0.0;
    double w[3] = {0.0, 0.0, 0.0};  ///< weights of E_i, E_{i−1}, E_{i−2}
    double z = 0.0;
    dpm_weights base{};            ///< the one-step weights (h, X, w_j, c_z before s_noise)
};

namespace detail {

/// The state-sized buffers of a multistep sampler for one tensor type: history slots and noise.
template <class T, class S>
struct dpm_multistep_buffers {
    std::array<tensor<T, S>, 3> slot;
    tensor<T, S> z;
};

inline void check_dpm_multistep_config(const dpm_multistep_config& c) {
    require(c.order >= 1 && c.order <= 3, "order", c.order, "1, 2 or 3 (solver_order)");
    switch (c.algorithm) {
        case dpm_algorithm::dpmsolver:
        case dpm_algorithm::dpmsolver_pp:
        case dpm_algorithm::sde_dpmsolver_pp: break;
        default: fail_argument("algorithm", static_cast<int>(c.algorithm), "a dpm_algorithm (parse_dpm_algorithm)");
    }
    switch (c.solver_type) {
        case dpm_solver_type::midpoint:
        case dpm_solver_type::heun: break;
        default: fail_argument("solver_type", static_cast<int>(c.solver_type), "a dpm_solver_type (parse_dpm_solver_type)");
    }
    switch (c.d2) {
        case third_order_d2::peers:
        case third_order_d2::taylor: break;
        default: fail_argument("d2", static_cast<int>(c.d2), "a third_order_d2 (parse_third_order_d2)");
    }
    require(c.lower_order_final_below >= 0, "lower_order_final_below", c.lower_order_final_below,
            ">= 0 (lower_order_final applies when num_steps() < this; diffusers 15, dpm-solver 10)");
    require(std::isfinite(c.eta) && c.eta >= 0.0, "eta", c.eta,
            "a finite number >= 0 (sde-dpmsolver++: 0 = ODE, 1 = diffusers' reverse SDE)");
    require(std::isfinite(c.s_noise) && c.s_noise >= 0.0, "s_noise", c.s_noise, "a finite number >= 0");
    check_thresholding(c.threshold);
}

}  // namespace detail

class dpm_solver_multistep_sampler : public begin_index_support {
public:
    dpm_solver_multistep_sampler() = default;

    /// Any level sequence with a finite first σ (VE or VP, with or without timesteps).
    explicit dpm_solver_multistep_sampler(level_sequence levels, dpm_multistep_config config = {}) : config_(config) {
        detail::check_dpm_multistep_config(config_);
        set_levels(std::move(levels));
    }

    /// diffusers' DPMSolverMultistepScheduler.set_timesteps(N): the multistep timestep rule
    /// (schedules::multistep_timesteps; linspace by default) on the schedule's exact VP levels,
    /// then the final level (final_sigmas_type: zero, diffusers' default, or sigma_min).
    /// lambda_min_clipped (diffusers' option, default −inf) drops the timesteps with λ_t below it
    /// before spacing (critical for the cosine schedule: −5.1).
    static dpm_solver_multistep_sampler from_schedule(const schedules::discrete_schedule& schedule,
                                                      int num_inference_steps, dpm_multistep_config config = {},
                                                      final_level last = final_level::zero,
                                                      schedules::spacing spacing = schedules::spacing::linspace,
                                                      int steps_offset = 0,
                                                      double lambda_min_clipped = -std::numeric_limits<double>::infinity()) {
        require(!std::isnan(lambda_min_clipped), "lambda_min_clipped", lambda_min_clipped, "a number (or -inf)");
        const int last_t = std::isinf(lambda_min_clipped) && lambda_min_clipped < 0
                               ? -1
                               : schedule.num_timesteps_lambda_at_least(lambda_min_clipped);
        const std::vector<int> ts = schedules::multistep_timesteps(schedule.num_train_timesteps(), num_inference_steps,
                                                                   spacing, steps_offset, last_t);
        return dpm_solver_multistep_sampler(level_sequence::from_timesteps(schedule, ts, last), config);
    }

    void set_levels(level_sequence levels) {
        require(levels.size() >= 2, "levels.size()", levels.size(), ">= 2 (N + 1 levels for N steps)");
        require(std::isfinite(levels.sigma(0)), "sigmas[0]", levels.sigma(0),
                "finite (DPM-Solver cannot start at σ = +inf; use a first ᾱ > 0, e.g. diffusers' 2^-24)");
        levels_ = std::move(levels);
        reset_begin_index();
        restart();
    }
    /// Start sample() at step k (img2img / SDEdit); the history restarts there.
    void set_begin_index(std::size_t k) {
        store_begin_index(k, num_steps(), "dpm_solver_multistep_sampler");
        restart();
    }

    const level_sequence& levels() const { return levels_; }
    const dpm_multistep_config& config() const { return config_; }
    std::size_t num_steps() const { return detail::steps_of(levels_); }
    /// The training timestep of level i when the levels carry one, else σ_i.
    double timestep(std::size_t i) const { return detail::timestep_or_sigma(levels_, i, "dpm_solver_multistep_sampler"); }
    int order() const { return config_.order; }
    /// σ_0 for a VE state (k-diffusion), 1 for VP (diffusers).
    double init_noise_sigma() const { return detail::init_noise_sigma_of(levels_); }
    noise_condition state_level(std::size_t i) const { return detail::step_level(levels_, i, "dpm_solver_multistep_sampler"); }
    double model_input_scale(std::size_t i) const { return model_input_scale_of(state_level(i), config_.input); }
    noise_condition model_level(std::size_t i) const { return seen_level(state_level(i), config_.input); }
    template <class T, class S>
    void scale_model_input(tensor_view<T, S> out, std::type_identity_t<tensor_view<const T, S>> x, std::size_t i) const {
        lincomb(out, model_input_scale(i), x);
    }

    /// True when steps draw noise (sde-dpmsolver++ with η > 0): x.numel() normals per step.
    bool draws_noise() const { return config_.algorithm == dpm_algorithm::sde_dpmsolver_pp && config_.eta > 0.0; }

    /// The order step i uses when `history` consecutive earlier estimates (of steps i − 1,
    /// i − 2, ...) are held (see the file comment).
    int step_order(std::size_t i, std::size_t history) const {
        detail::require_step_index(i, num_steps(), "dpm_solver_multistep_sampler.step_order");
        const std::size_t n = num_steps();
        std::size_t k = std::min<std::size_t>(static_cast<std::size_t>(config_.order), history + 1);
        if (levels_[i + 1].s == 0.0) k = 1;
        if (config_.euler_at_final && i + 1 == n) k = 1;
        if (config_.lower_order_final && n < static_cast<std::size_t>(config_.lower_order_final_below))
            k = std::min(k, n - i);
        return static_cast<int>(k);
    }

    /// The table of step i at order k (1 <= k <= i + 1 − (earliest level index used) and k = 1
    /// when σ_{i+1} = 0) for a `from` model output.
    dpm_multistep_coeffs coefficients(prediction_type from, std::size_t i, int k) const {
        detail::require_step_index(i, num_steps(), "dpm_solver_multistep_sampler.coefficients");
        require(k >= 1 && k <= 3 && static_cast<std::size_t>(k) <= i + 1, "k", k,
                "in [1, min(3, i + 1)] (the order of step i = " + std::to_string(i) + ")");
        const bool data = predicts_data(config_.algorithm);
        const double eta = config_.algorithm == dpm_algorithm::sde_dpmsolver_pp ? config_.eta : 0.0;
        const noise_condition seen = model_level(i);
        const double c_in = model_input_scale(i);
        dpm_multistep_coeffs c;
        c.order = k;
        c.est = data ? x0_from_output(from, seen, c_in) : eps_from_output(from, seen, c_in);
        c.base = dpm_step_weights(data, levels_[i], levels_[i + 1], eta);
        if (k > 1 && levels_[i + 1].s == 0.0)
            fail_argument("k", k, "1 for a step to σ = 0 (higher orders are undefined there)");
        c.x = c.base.x;
        c.z = c.base.z * config_.s_noise;
        const double w0 = c.base.w[0];
        if (k == 1) {
            c.w[0] = w0;
            return c;
        }
        const double h = c.base.h;
        const double r0 = (levels_.lambda(i) - levels_.lambda(i - 1)) / h;
        if (k == 2) {
            // x' = X x + w0 E0 + c1 (E0 − E1)/r0
            const double c1 = config_.solver_type == dpm_solver_type::midpoint ? 0.5 * w0 : c.base.w[1];
            c.w[0] = w0 + c1 / r0;
            c.w[1] = -c1 / r0;
            return c;
        }
        const double r1 = (levels_.lambda(i - 1) - levels_.lambda(i - 2)) / h;
        const double kappa = config_.d2 == third_order_d2::taylor ? 2.0 : 1.0;
        const double q = r0 / (r0 + r1);
        const double w1 = c.base.w[1], w2 = c.base.w[2];
        // D1 = (1 + q) D1_0 − q D1_1, D2 = κ (D1_0 − D1_1)/(r0 + r1), D1_0 = (E0 − E1)/r0, D1_1 = (E1 − E2)/r1.
        const double a0 = w1 * (1.0 + q) + w2 * kappa / (r0 + r1);  // weight of D1_0
        const double a1 = -w1 * q - w2 * kappa / (r0 + r1);         // weight of D1_1
        c.w[0] = w0 + a0 / r0;
        c.w[1] = -a0 / r0 + a1 / r1;
        c.w[2] = -a1 / r1;
        return c;
    }

    /// The number of consecutive estimates held (0 after a restart; at most order − 1 between steps).
    std::size_t history_size() const { return hist_n_; }

    /// x <- x at level i + 1; m a `from` prediction at (c_in·x, model_level(i)). Draws x.numel()
    /// normals from rng when draws_noise(), none otherwise.
    template <class T, class S>
    void step(std::type_identity_t<tensor_view<const T, S>> m, prediction_type from, std::size_t i,
              tensor_view<T, S> x, philox_rng& rng) {
        step_impl<T, S>(m, from, i, x, nullptr, &rng, "dpm_solver_multistep_sampler.step");
    }
    template <class T, class S>
    void step(std::type_identity_t<tensor_view<const T, S>> m, std::size_t i, tensor_view<T, S> x, philox_rng& rng) {
        step<T, S>(m, config_.prediction, i, x, rng);
    }

    /// step with the standard-normal noise z given (x's shape; read only when draws_noise()).
    template <class T, class S>
    void step_with_noise(std::type_identity_t<tensor_view<const T, S>> m, prediction_type from, std::size_t i,
                         tensor_view<T, S> x, std::type_identity_t<tensor_view<const T, S>> z) {
        step_impl<T, S>(m, from, i, x, &z, nullptr, "dpm_solver_multistep_sampler.step_with_noise");
    }
    template <class T, class S>
    void step_with_noise(std::type_identity_t<tensor_view<const T, S>> m, std::size_t i, tensor_view<T, S> x,
                         std::type_identity_t<tensor_view<const T, S>> z) {
        step_with_noise<T, S>(m, config_.prediction, i, x, z);
    }

    /// Records the estimate of step i (from the model output m at state x, level ℓ_i) as step i
    /// would, without moving x: it continues the history when the last step or warm_start was
    /// i − 1, and starts a new one otherwise. The next step must be i + 1 (set_begin_index(i + 1)
    /// first when the driver is to start there: set_begin_index clears the history).
    template <class T, class S>
    void warm_start(std::type_identity_t<tensor_view<const T, S>> m, prediction_type from, std::size_t i,
                    tensor_view<const T, S> x) {
        const char* who = "dpm_solver_multistep_sampler.warm_start";
        detail::require_step_index(i, num_steps(), who);
        require(x.rank() >= 1, std::string(who) + ": x.rank()", x.rank(), ">= 1 (a batch [B, ...])");
        require_same_shape(m.shape(), "model_output", x.shape(), "x");
        if (next_ != i) hist_n_ = 0;
        auto& buf = buffers<T, S>(x.shape(), hist_n_ > 0, who);
        const dpm_multistep_coeffs c = coefficients(from, i, 1);
        const int e = free_slot();
        write_estimate<T, S>(buf.slot[static_cast<std::size_t>(e)].view(), c.est, m, x, i);
        push(e);
        next_ = i + 1;
    }

private:
    void restart() {
        hist_n_ = 0;
        next_ = std::numeric_limits<std::size_t>::max();
    }

    template <class T, class S>
    detail::dpm_multistep_buffers<T, S>& buffers(const shape& sh, bool continuing, const char* who) {
        using B = detail::dpm_multistep_buffers<T, S>;
        B* b = std::any_cast<B>(&store_);
        if (!b) {
            if (continuing) fail(std::string(who) + ": x changed element type or memory space during a run; restart at begin_index()");
            store_ = B{};
            b = std::any_cast<B>(&store_);
        }
        const std::size_t slots = static_cast<std::size_t>(config_.order);
        for (std::size_t k = 0; k < slots; ++k)
            if (b->slot[k].shape() != sh) {
                if (continuing)
                    fail(std::string(who) + ": x has shape " + sh.str() + " but the history has shape " +
                         b->slot[k].shape().str() + "; restart at begin_index()");
                b->slot[k] = tensor<T, S>(sh);
            }
        return *b;
    }

    /// A slot not held by the history (there are `order` slots and at most order − 1 entries).
    int free_slot() const {
        for (int s = 0; s < 3; ++s) {
            bool used = false;
            for (std::size_t k = 0; k < hist_n_; ++k) used = used || hist_slot_[k] == s;
            if (!used) return s;
        }
        return 0;  // unreachable: hist_n_ <= 2 < 3
    }

    /// Makes slot e the newest entry, keeping at most order − 1 entries.
    void push(int e) {
        const std::size_t keep = static_cast<std::size_t>(config_.order) - 1;
        if (keep == 0) {
            hist_n_ = 0;
            return;
        }
        for (std::size_t k = std::min(hist_n_, keep - 1); k > 0; --k) hist_slot_[k] = hist_slot_[k - 1];
        hist_slot_[0] = e;
        hist_n_ = std::min(hist_n_ + 1, keep);
    }

    /// Pass 1: out = the estimate of step i (x0 or eps, thresholded when enabled).
    template <class T, class S>
    void write_estimate(tensor_view<T, S> out, const affine_estimate& est, tensor_view<const T, S> m,
                        tensor_view<const T, S> x, std::size_t i) const {
        const thresholding& thr = config_.threshold;
        if (!thr.enabled) {
            if (est.x == 0.0)
                lincomb(out, est.m, m);
            else
                lincomb(out, est.x, x, est.m, m);
            return;
        }
        if (predicts_data(config_.algorithm)) {
            lincomb(out, est.x, x, est.m, m);
            apply_thresholding(out, thr);
            return;
        }
        // dpmsolver: eps = (x − a·thr(x0))/s at the state level (diffusers convert_model_output),
        // x0 = (x − s·eps)/a with eps = est.x·x + est.m·m.
        const noise_condition l = levels_[i];
        lincomb(out, (1.0 - l.s * est.x) / l.a, x, -l.s * est.m / l.a, m);
        apply_thresholding(out, thr);
        lincomb(out, 1.0 / l.s, x, -l.a / l.s, tensor_view<const T, S>(out));
    }

    template <class T, class S>
    void step_impl(tensor_view<const T, S> m, prediction_type from, std::size_t i, tensor_view<T, S> x,
                   const tensor_view<const T, S>* z_given, philox_rng* rng, const char* who) {
        detail::require_step_index(i, num_steps(), who);
        detail::require_step_tensors<T, S>(m, x, who);
        if (next_ != i) {
            if (i != begin_index())
                fail(std::string(who) + ": step " + std::to_string(i) + " does not follow the previous step" +
                     (next_ == std::numeric_limits<std::size_t>::max() ? std::string(" (none taken)")
                                                                      : " (" + std::to_string(next_ - 1) + ")") +
                     "; a multistep sampler runs its steps in order from begin_index() = " +
                     std::to_string(begin_index()));
            hist_n_ = 0;
        }
        const int k = step_order(i, hist_n_);
        const dpm_multistep_coeffs c = coefficients(from, i, k);
        const bool noise = draws_noise();
        const bool keep = config_.order > 1 && i + 1 < num_steps();
        auto& buf = buffers<T, S>(x.shape(), hist_n_ > 0, who);
        const tensor_view<const T, S> xc = x;

        tensor_view<const T, S> z;
        if (noise) {
            if (z_given) {
                require_same_shape(z_given->shape(), "z", x.shape(), "x");
                z = *z_given;
            } else {
                if (buf.z.shape() != x.shape()) buf.z = tensor<T, S>(x.shape());
                randn(buf.z.view(), *rng);
                z = buf.z.cview();
            }
        }

        if (k == 1 && !keep && !config_.threshold.enabled) {
            // One pass: x' = (X + w0·e_x)·x + w0·e_m·m (+ c_z·z).
            const double cx = c.x + c.w[0] * c.est.x, cm = c.w[0] * c.est.m;
            if (noise)
                lincomb(x, cx, xc, cm, m, c.z, z);
            else
                lincomb(x, cx, xc, cm, m);
            hist_n_ = 0;
            next_ = i + 1;
            return;
        }

        // Pass 1: the new estimate into a free slot.
        const int e = free_slot();
        write_estimate<T, S>(buf.slot[static_cast<std::size_t>(e)].view(), c.est, m, xc, i);
        const tensor_view<const T, S> e0 = buf.slot[static_cast<std::size_t>(e)].cview();

        // Pass 2: x' = X·x + Σ_j w_j·E_{i−j} (+ c_z·z).
        if (k == 1) {
            if (noise)
                lincomb(x, c.x, xc, c.w[0], e0, c.z, z);
            else
                lincomb(x, c.x, xc, c.w[0], e0);
        } else {
            const tensor_view<const T, S> e1 = buf.slot[static_cast<std::size_t>(hist_slot_[0])].cview();
            if (k == 2) {
                if (noise)
                    lincomb(x, c.x, xc, c.w[0], e0, c.w[1], e1, c.z, z);
                else
                    lincomb(x, c.x, xc, c.w[0], e0, c.w[1], e1);
            } else {
                const tensor_view<const T, S> e2 = buf.slot[static_cast<std::size_t>(hist_slot_[1])].cview();
                lincomb(x, c.x, xc, c.w[0], e0, c.w[1], e1, c.w[2], e2);
                if (noise) lincomb(x, 1.0, xc, c.z, z);  // pass 3 (5 inputs do not fit one lincomb)
            }
        }
        if (keep)
            push(e);
        else
            hist_n_ = 0;
        next_ = i + 1;
    }

    level_sequence levels_;
    dpm_multistep_config config_{};
    std::any store_;                          // detail::dpm_multistep_buffers<T, S> of the last tensor type
    std::array<int, 3> hist_slot_{0, 1, 2};  // slots of E_{i−1}, E_{i−2} (newest first)
    std::size_t hist_n_ = 0;
    std::size_t next_ = std::numeric_limits<std::size_t>::max();  // the step that continues the history
};

}  // namespace diffuse::samplers
