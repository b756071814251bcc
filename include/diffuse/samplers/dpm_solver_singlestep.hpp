#pragma once
// Singlestep DPM-Solver-1/2/3 in the noise (dpm_algorithm::dpmsolver, Lu et al. 2022, Alg. 1–2) and data
// (dpm_algorithm::dpmsolver_pp, Lu et al. 2022b, DPM-Solver++(2S) and its third-order analogue) forms; diffusers
// DPMSolverSinglestepScheduler, dpm-solver `singlestep_dpm_solver_{second,third}_update`
// (docs/samplers/dpm_solver_singlestep.md).
//
// Levels and λ. The state x is at levels (a, s) of a level_sequence (VP or VE; levels.hpp);
// λ = log(a/s). All formulas are those of Lu et al. for x = a·x0 + s·eps with α = a, σ = s.
//
// Blocks. Steps count model evaluations (num_steps() = NFE). The N + 1 levels ℓ_0 .. ℓ_N are
// grouped into blocks: a block of order o starting at step b goes from ℓ_b to ℓ_{b+o} and
// evaluates the model at ℓ_b, ℓ_{b+1}, .., ℓ_{b+o−1} (stage j = 0 .. o − 1). Stage j writes
// its intermediate value u_{j+1} (at ℓ_{b+j+1}) into x; the last stage writes the block's
// result. Q_k is the converted output of stage k (eps for dpmsolver, x0 for dpmsolver++). With
// h = λ_t − λ_s from the block start s = ℓ_b to the stage target t, K = σ_t (noise) or α_t (data),
// sgn = −1 (noise) or +1 (data), and
//   noise: c_x = α_t/α_s, φ1 = expm1(h),  φ2 = φ1/h − 1, φ3 = φ2/h − ½
//   data:  c_x = σ_t/σ_s, φ1 = expm1(−h), φ2 = φ1/h + 1, φ3 = φ2/h − ½
// (φ2, φ3 evaluated without cancellation by series for small h), stage j computes
//   j = 0 (order 1, DDIM):    u = c_x·x_s − K φ1 Q_0
//   j = 1 (order 2, r = (λ_1 − λ_s)/h, D1 = (Q_1 − Q_0)/r):
//        midpoint:  u = c_x x_s − K φ1 Q_0 − ½ K φ1 D1
//        heun:      u = c_x x_s − K φ1 Q_0 + sgn K φ2 D1
//   j = 2 (order 3, r_k = (λ_k − λ_s)/h, D1_0 = (Q_1 − Q_0)/r_1, D1_1 = (Q_2 − Q_0)/r_2,
//          D1 = (r_2 D1_0 − r_1 D1_1)/(r_2 − r_1), D2 = 2(D1_1 − D1_0)/(r_2 − r_1)):
//        midpoint:  u = c_x x_s − K φ1 Q_0 + sgn K φ2 D1_1
//        heun:      u = c_x x_s − K φ1 Q_0 + sgn K φ2 D1 − K φ3 D2
// solver types: midpoint and heun are diffusers' (`solver_type`; dpm-solver calls heun
// "taylor"); dpm_solver is dpm-solver's default "dpmsolver" = Lu et al. Alg. 1–2: midpoint,
// except that stage 1 of an order-3 block uses the heun form (Alg. 2's u_2 with φ_22), as
// dpm-solver does for every solver type. diffusers' order-3 midpoint uses midpoint at stage 1.
//
// Grids. (a) diffusers: levels ℓ_0..ℓ_N with the order list of get_order_list (order runs
// 1, 2, .., o; lower_order_final; last order 1 when the last level is σ = 0; lower_order_final is
// switched on when N % order != 0 or the last σ is 0, as diffusers' set_timesteps does): the
// intermediate levels are grid levels, r = their λ fractions. (b) dpm-solver: outer levels and
// one order per block (from_outer), intermediate levels inserted at λ_s + r1 h (r1 = ½ for order
// 2) and λ_s + r1 h, λ_s + r2 h (r1 = ⅓, r2 = ⅔ for order 3); dpm_solver_fast_orders gives
// dpm-solver's order list for a number of NFE.
//
// A block ending at σ = 0 has order 1 (diffusers forces it; from_outer requires it). The noise form
// there uses the limit σ_t·expm1(h) -> α_t σ_s/α_s, so x' = α_t·x0_hat as in the data form
// (diffusers refuses dpmsolver with final_sigmas_type "zero"). σ_0 must be finite.
//
// Starting later (set_begin_index(k), img2img): as diffusers, step i then runs with order
// min(order_list[i], i − k + 1), so a block cut by k restarts at k with a lower order.
//
// Work per step (host coefficients, backend lincombs): an order-o block keeps o − 1 accumulator
// tensors A_j = c_x^j x_s + Σ_{k<j} w_k^j Q_k of its later stages; stage j updates the
// o − 1 − j accumulators after it (one lincomb each) and writes x (one lincomb). Order 1: one
// lincomb. Stages of a block must be run in order (stage j needs step i − 1 just before).
// No noise is drawn.

#include <diffuse/backend/lincomb.hpp>
#include <diffuse/core/error.hpp>
#include <diffuse/core/philox.hpp>
#include <diffuse/core/tensor.hpp>
#include <diffuse/models/denoiser.hpp>
#include <diffuse/process/parametrization.hpp>
#include <diffuse/samplers/dpm_solver_common.hpp>
#include <diffuse/samplers/levels.hpp>
#include <diffuse/samplers/sampler.hpp>
#include <diffuse/schedules/discrete_schedule.hpp>
#include <diffuse/schedules/timesteps.hpp>

#include <algorithm>
#include <any>
#include <cmath>
#include <cstddef>
#include <initializer_list>
#include <limits>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace diffuse::samplers {

/// The form of the higher-order stages (see the file comment).
enum class singlestep_solver {
    midpoint,    ///< diffusers solver_type="midpoint" (default there)
    heun,        ///< diffusers solver_type="heun" = dpm-solver solver_type="taylor"
    dpm_solver,  ///< dpm-solver solver_type="dpmsolver" = Lu et al. 2022 Alg. 1–2
};

/// The singlestep form of a multistep solver type (dpm_solver_common.hpp): same name.
constexpr singlestep_solver to_singlestep_solver(dpm_solver_type t) {
    return t == dpm_solver_type::heun ? singlestep_solver::heun : singlestep_solver::midpoint;
}

/// x' = c_x·x_s + Σ_k w[k]·Q_k for one stage of a block (Q_k: converted model value of stage k).
struct singlestep_coeffs {
    double c_x = 0.0;
    double w[3] = {0.0, 0.0, 0.0};
};

namespace detail::dpm_ss {

inline void check_levels(std::span<const noise_condition> lv, int count, const char* who) {
    require(static_cast<int>(lv.size()) >= count, std::string(who) + ": levels.size()", lv.size(),
            ">= " + std::to_string(count));
}

/// dpmsolver or dpmsolver++ (the singlestep SDE variant of diffusers is not provided).
inline void require_ode_algorithm(dpm_algorithm a) {
    if (a == dpm_algorithm::sde_dpmsolver_pp)
        fail_argument("algorithm", to_string(a),
                      "dpmsolver or dpmsolver++ (singlestep sde-dpmsolver++ is not provided; see dpmpp_sde.hpp)");
}

/// One block's stage table (see the file comment).
inline singlestep_coeffs stage_coefficients(dpm_algorithm alg, singlestep_solver solver, int block_order,
                                            int stage, std::span<const noise_condition> lv) {
    const bool data = alg == dpm_algorithm::dpmsolver_pp;
    const noise_condition& s0 = lv[0];
    const noise_condition& t = lv[static_cast<std::size_t>(stage) + 1];
    const double lam0 = lambda_of(s0), lamt = lambda_of(t);
    const double h = lamt - lam0;
    const double K = data ? t.a : t.s;
    const double sgn = data ? 1.0 : -1.0;
    singlestep_coeffs c;
    c.c_x = data ? t.s / s0.s : t.a / s0.a;
    const double phi1 = data ? std::expm1(-h) : std::expm1(h);
    // Order 1. The noise form to σ_t = 0 uses the limit σ_t·expm1(h) -> α_t σ_s/α_s.
    c.w[0] = (!data && t.s == 0.0) ? -(t.a * s0.s / s0.a) : -K * phi1;
    if (stage == 0) return c;
    // φ2 = φ1/h ∓ 1 = h·φ_2(∓h), φ3 = φ2/h − ½ = (∓h)·φ_3(∓h) (dpm_solver_common.hpp phi, series for small h).
    const double y = data ? -h : h;
    const double phi2 = h * phi(2, y);
    const double phi3 = y * phi(3, y);
    if (stage == 1) {
        const double r = (lambda_of(lv[1]) - lam0) / h;
        const bool heun = solver == singlestep_solver::heun ||
                          (solver == singlestep_solver::dpm_solver && block_order == 3);
        const double cd = heun ? sgn * K * phi2 : -0.5 * K * phi1;  // coefficient of D1
        c.w[0] -= cd / r;
        c.w[1] = cd / r;
        return c;
    }
    const double r1 = (lambda_of(lv[1]) - lam0) / h, r2 = (lambda_of(lv[2]) - lam0) / h;
    if (solver != singlestep_solver::heun) {
        const double cd = sgn * K * phi2;  // coefficient of D1_1 = (Q_2 − Q_0)/r2
        c.w[0] -= cd / r2;
        c.w[2] = cd / r2;
        return c;
    }
    const double A = sgn * K * phi2, B = -K * phi3;  // coefficients of D1 and D2
    const double dr = r2 - r1;
    const double c1 = A * (r2 / r1) / dr - B * 2.0 / (r1 * dr);  // of (Q_1 − Q_0)
    const double c2 = -A * (r1 / r2) / dr + B * 2.0 / (r2 * dr);  // of (Q_2 − Q_0)
    c.w[0] -= c1 + c2;
    c.w[1] = c1;
    c.w[2] = c2;
    return c;
}

/// Tensors a sampler keeps between the stages of a method step, for whichever T and memory
/// space it is stepped with (type-erased so the sampler itself is not a template).
class stage_store {
public:
    template <class T, class S>
    std::vector<tensor<T, S>>& get(std::size_t count, const shape& sh) {
        auto* p = std::any_cast<std::vector<tensor<T, S>>>(&data_);
        if (!p) {
            data_ = std::vector<tensor<T, S>>{};
            p = std::any_cast<std::vector<tensor<T, S>>>(&data_);
        }
        if (p->size() < count) p->resize(count);
        for (std::size_t k = 0; k < count; ++k)
            if ((*p)[k].shape() != sh) (*p)[k] = tensor<T, S>(sh);
        return *p;
    }
    /// The buffers filled by an earlier stage: same T, S and shape, else a diffuse::error.
    template <class T, class S>
    std::vector<tensor<T, S>>& existing(std::size_t count, const shape& sh, const std::string& who) {
        auto* p = std::any_cast<std::vector<tensor<T, S>>>(&data_);
        if (!p || p->size() < count)
            fail(who + ": the earlier stages of this method step ran with another element type or memory space");
        for (std::size_t k = 0; k < count; ++k)
            if ((*p)[k].shape() != sh)
                fail(who + ": x has shape " + sh.str() + " but the earlier stages of this method step ran on shape " +
                     (*p)[k].shape().str() + "; expected the same shape");
        return *p;
    }

private:
    std::any data_;
};

inline constexpr std::size_t no_step = std::numeric_limits<std::size_t>::max();

/// A stage j > 0 needs step i − 1 (its previous stage) to have been the last step taken.
inline void require_previous_stage(std::size_t last, std::size_t i, int stage, const std::string& who) {
    if (stage > 0 && last + 1 != i)
        fail(who + ": step " + std::to_string(i) + " is stage " + std::to_string(stage) +
             " of a method step that began at step " + std::to_string(i - static_cast<std::size_t>(stage)) +
             "; expected step " + std::to_string(i - 1) + " to be the last step taken (run the stages in order)");
}

}  // namespace detail::dpm_ss

/// The coefficient table of stage `stage` (0-based, < block_order) of a singlestep block of
/// order block_order whose levels are lv[0] (block start) .. lv[stage + 1] (the stage's target).
inline singlestep_coeffs singlestep_stage_coefficients(dpm_algorithm alg, singlestep_solver solver,
                                                       int block_order, int stage,
                                                       std::span<const noise_condition> lv) {
    require(block_order >= 1 && block_order <= 3, "block_order", block_order, "1, 2 or 3");
    require(stage >= 0 && stage < block_order, "stage", stage, "in [0, block_order)");
    detail::dpm_ss::require_ode_algorithm(alg);
    detail::dpm_ss::check_levels(lv, stage + 2, "singlestep_stage_coefficients");
    return detail::dpm_ss::stage_coefficients(alg, solver, block_order, stage, lv);
}

/// diffusers DPMSolverSinglestepScheduler.get_order_list(N) for solver order `order` (1–3),
/// after set_timesteps' rules: lower_order_final is switched on when N % order != 0 or when the
/// last level is σ = 0 (final_zero), and final_zero forces the last order to 1.
inline std::vector<int> diffusers_singlestep_orders(int steps, int order, bool lower_order_final, bool final_zero) {
    require(order >= 1 && order <= 3, "order", order, "1, 2 or 3 (singlestep DPM-Solver)");
    require(steps >= 1, "num_steps", steps, ">= 1");
    const bool lof = lower_order_final || steps % order != 0 || final_zero;
    std::vector<int> out;
    auto repeat = [&](std::initializer_list<int> run, int times) {
        for (int k = 0; k < times; ++k) out.insert(out.end(), run);
    };
    if (order == 1) {
        out.assign(static_cast<std::size_t>(steps), 1);
    } else if (order == 2) {
        if (!lof) {
            repeat({1, 2}, steps / 2);
        } else if (steps % 2 == 0) {
            repeat({1, 2}, steps / 2 - 1);
            out.insert(out.end(), {1, 1});
        } else {
            repeat({1, 2}, steps / 2);
            out.push_back(1);
        }
    } else {
        if (!lof) {
            repeat({1, 2, 3}, steps / 3);
        } else if (steps % 3 == 0) {
            repeat({1, 2, 3}, steps / 3 - 1);
            out.insert(out.end(), {1, 2, 1});
        } else if (steps % 3 == 1) {
            repeat({1, 2, 3}, steps / 3);
            out.push_back(1);
        } else {
            repeat({1, 2, 3}, steps / 3);
            out.insert(out.end(), {1, 2});
        }
    }
    if (final_zero) out.back() = 1;
    return out;
}

/// dpm-solver's get_orders_and_timesteps_for_singlestep_solver order list ("DPM-Solver-fast"):
/// one order per block for `nfe` model evaluations, max order `order` (1–3).
///   order 3: K = nfe//3 + 1 blocks: [3]*(K−2) + [2, 1] (nfe%3 = 0), [3]*(K−1) + [1], [3]*(K−1) + [2]
///   order 2: [2]*(nfe/2) (even), [2]*(nfe//2) + [1] (odd);   order 1: [1]*nfe
inline std::vector<int> dpm_solver_fast_orders(int nfe, int order) {
    require(order >= 1 && order <= 3, "order", order, "1, 2 or 3 (singlestep DPM-Solver)");
    require(nfe >= order, "nfe", nfe, ">= order = " + std::to_string(order));
    std::vector<int> out;
    if (order == 3) {
        const int K = nfe / 3 + 1;
        if (nfe % 3 == 0) {
            out.assign(static_cast<std::size_t>(K - 2), 3);
            out.insert(out.end(), {2, 1});
        } else {
            out.assign(static_cast<std::size_t>(K - 1), 3);
            out.push_back(nfe % 3);
        }
    } else if (order == 2) {
        out.assign(static_cast<std::size_t>(nfe / 2), 2);
        if (nfe % 2) out.push_back(1);
    } else {
        out.assign(static_cast<std::size_t>(nfe), 1);
    }
    return out;
}

struct dpm_solver_singlestep_config {
    int order = 2;                                                  ///< solver_order: 1, 2 or 3
    dpm_algorithm algorithm = dpm_algorithm::dpmsolver_pp;
    singlestep_solver solver = singlestep_solver::midpoint;
    bool lower_order_final = false;                                 ///< diffusers lower_order_final (grid form)
    model_input input = model_input::state;                         ///< what the model is shown (levels.hpp)
    prediction_type prediction = prediction_type::epsilon;          ///< what step(m, i, x, rng) assumes m is
};

class dpm_solver_singlestep_sampler : public begin_index_support {
public:
    dpm_solver_singlestep_sampler() = default;

    /// diffusers form: levels ℓ_0 .. ℓ_N (N = NFE) with diffusers_singlestep_orders(N, order, ...).
    explicit dpm_solver_singlestep_sampler(level_sequence levels, dpm_solver_singlestep_config config = {})
        : config_(config) {
        check_config();
        set_levels(std::move(levels));
    }

    /// diffusers' DPMSolverSinglestepScheduler.set_timesteps(N) on a discrete schedule: timesteps
    /// round(linspace(0, last − 1, N + 1))[::-1][:-1] (last = T minus the timesteps whose λ is below
    /// lambda_min_clipped; diffusers' singlestep scheduler has linspace spacing only), the schedule's
    /// exact VP levels, then the final level (`last_level`: final_sigmas_type "zero" (diffusers'
    /// default) or "sigma_min").
    static dpm_solver_singlestep_sampler from_schedule(const schedules::discrete_schedule& schedule,
                                                      int num_inference_steps, dpm_solver_singlestep_config config = {},
                                                      final_level last_level = final_level::zero,
                                                      double lambda_min_clipped =
                                                          -std::numeric_limits<double>::infinity()) {
        const int last = schedule.num_timesteps_lambda_at_least(lambda_min_clipped);
        const std::vector<int> ts = schedules::multistep_timesteps(schedule.num_train_timesteps(), num_inference_steps,
                                                                   schedules::spacing::linspace, 0, last);
        return dpm_solver_singlestep_sampler(level_sequence::from_timesteps(schedule, ts, last_level), config);
    }

    /// dpm-solver form: outer levels L_0 .. L_K and one order per block (orders.size() = K,
    /// each 1..3, at most config.order); block k goes from L_k to L_{k+1} with intermediate
    /// levels at λ = λ_k + r1·h (order 2: r1 = 1/2 by default) or λ_k + r1·h, λ_k + r2·h
    /// (order 3: 1/3, 2/3), taken with outer.at_sigma. A block ending at σ = 0 must have order 1.
    static dpm_solver_singlestep_sampler from_outer(const level_sequence& outer, std::vector<int> orders,
                                                    dpm_solver_singlestep_config config = {}, double r1_order2 = 0.5,
                                                    double r1 = 1.0 / 3.0, double r2 = 2.0 / 3.0) {
        require(outer.size() >= 2, "outer.size()", outer.size(), ">= 2 (K + 1 levels for K blocks)");
        require(orders.size() + 1 == outer.size(), "orders.size()", orders.size(),
                "outer.size() − 1 = " + std::to_string(outer.size() - 1) + " (one order per block)");
        require(std::isfinite(r1_order2) && r1_order2 > 0.0 && r1_order2 < 1.0, "r1_order2", r1_order2, "in (0, 1)");
        require(std::isfinite(r1) && r1 > 0.0 && r1 < 1.0, "r1", r1, "in (0, 1)");
        require(std::isfinite(r2) && r2 > r1 && r2 < 1.0, "r2", r2, "in (r1, 1) with r1 = " + std::to_string(r1));
        std::vector<double> sigmas;
        std::vector<int> list;
        for (std::size_t k = 0; k < orders.size(); ++k) {
            const int o = orders[k];
            const std::string arg = "orders[" + std::to_string(k) + "]";
            require(o >= 1 && o <= 3, arg, o, "1, 2 or 3");
            require(o <= config.order, arg, o, "<= config.order = " + std::to_string(config.order));
            if (o > 1 && outer.sigma(k + 1) == 0.0)
                fail_argument(arg, o, "1 (a block ending at σ = 0 has no intermediate levels)");
            const double lam = -std::log(outer.sigma(k));
            const double h = -std::log(outer.sigma(k + 1)) - lam;
            sigmas.push_back(outer.sigma(k));
            list.push_back(1);
            const double rs[2] = {o == 2 ? r1_order2 : r1, r2};
            for (int j = 1; j < o; ++j) {
                sigmas.push_back(std::exp(-(lam + rs[j - 1] * h)));
                list.push_back(j + 1);
            }
        }
        sigmas.push_back(outer.sigma(outer.size() - 1));
        // The flat sequence keeps the outer levels exactly (their timesteps too).
        level_sequence flat(sigmas, outer.space(), outer.map());
        std::vector<noise_condition> lv = flat.levels();
        std::size_t pos = 0;
        for (std::size_t k = 0; k < orders.size(); ++k) {
            lv[pos] = outer[k];
            pos += static_cast<std::size_t>(orders[k]);
        }
        lv[pos] = outer[outer.size() - 1];
        dpm_solver_singlestep_sampler s;
        s.config_ = config;
        s.check_config();
        s.install(std::move(flat), std::move(lv), std::move(list));
        return s;
    }

    /// Replaces the levels (diffusers form; resets begin_index and the stage state).
    void set_levels(level_sequence levels) {
        require(levels.size() >= 2, "levels.size()", levels.size(), ">= 2 (N + 1 levels for N steps)");
        const int n = static_cast<int>(levels.size() - 1);
        const bool zero = levels.sigma(levels.size() - 1) == 0.0;
        std::vector<int> list = diffusers_singlestep_orders(n, config_.order, config_.lower_order_final, zero);
        std::vector<noise_condition> lv = levels.levels();
        install(std::move(levels), std::move(lv), std::move(list));
    }

    /// Start at step k (img2img / SDEdit): the block containing k restarts at k with lower order.
    void set_begin_index(std::size_t k) {
        store_begin_index(k, num_steps(), "dpm_solver_singlestep_sampler");
        compute_effective_orders();
    }

    /// The N + 1 levels as a sequence (σ's and timesteps; from_outer's outer levels are kept
    /// exactly in state_level(i), which may differ from levels()[i] in the last bit).
    const level_sequence& levels() const { return levels_; }
    const dpm_solver_singlestep_config& config() const { return config_; }
    /// The nominal order of each step (diffusers' order_list; runs 1, 2, .., o per block).
    const std::vector<int>& order_list() const { return orders_; }
    /// The order step i runs with from begin_index(): its stage in the block is stage_order(i) − 1.
    int stage_order(std::size_t i) const {
        detail::require_step_index(i, num_steps(), "dpm_solver_singlestep_sampler");
        return effective_[i];
    }
    /// The order of the block step i belongs to.
    int block_order(std::size_t i) const {
        detail::require_step_index(i, num_steps(), "dpm_solver_singlestep_sampler");
        return block_order_[i];
    }

    std::size_t num_steps() const { return orders_.size(); }
    /// The level's timestep when it has one, else its σ.
    double timestep(std::size_t i) const {
        const noise_condition& l = state_level(i);
        return l.timestep ? *l.timestep : l.sigma();
    }
    int order() const { return config_.order; }
    /// σ_0 for VE levels, 1 for VP.
    double init_noise_sigma() const {
        if (levels_.empty()) return 1.0;
        return levels_.space() == state_space::ve ? levels_.sigma(0) : 1.0;
    }
    noise_condition state_level(std::size_t i) const {
        detail::require_step_index(i, num_steps(), "dpm_solver_singlestep_sampler");
        return lv_[i];
    }
    double model_input_scale(std::size_t i) const { return model_input_scale_of(state_level(i), config_.input); }
    noise_condition model_level(std::size_t i) const { return seen_level(state_level(i), config_.input); }
    template <class T, class S>
    void scale_model_input(tensor_view<T, S> out, std::type_identity_t<tensor_view<const T, S>> x, std::size_t i) const {
        lincomb(out, model_input_scale(i), x);
    }

    /// The stage table of step i (as run from begin_index()).
    singlestep_coeffs coefficients(std::size_t i) const {
        detail::require_step_index(i, num_steps(), "dpm_solver_singlestep_sampler");
        const int j = effective_[i] - 1;
        return stage_table(i - static_cast<std::size_t>(j), block_order_[i], j);
    }

    /// x <- the stage value at ℓ_{i+1}; m a `from` prediction at (c_in·x, model_level(i)).
    /// Draws no noise.
    template <class T, class S>
    void step(std::type_identity_t<tensor_view<const T, S>> m, prediction_type from, std::size_t i,
              tensor_view<T, S> x, philox_rng& /*rng*/) {
        const char* who = "dpm_solver_singlestep_sampler.step";
        detail::require_step_index(i, num_steps(), who);
        detail::require_step_tensors<T, S>(m, x, who);
        const int j = effective_[i] - 1, o = block_order_[i];
        const std::size_t b = i - static_cast<std::size_t>(j);
        detail::dpm_ss::require_previous_stage(last_, i, j, who);
        const noise_condition seen = model_level(i);
        const double c_in = model_input_scale(i);
        const affine_estimate q = config_.algorithm == dpm_algorithm::dpmsolver_pp
                                      ? x0_from_output(from, seen, c_in)
                                      : eps_from_output(from, seen, c_in);
        const tensor_view<const T, S> xc = x;
        const std::size_t nacc = static_cast<std::size_t>(o - 1);
        std::vector<tensor<T, S>>* acc = nullptr;
        if (nacc > 0)
            acc = j == 0 ? &store_.get<T, S>(nacc, x.shape()) : &store_.existing<T, S>(nacc, x.shape(), who);
        // Accumulators of the later stages jj: A_jj += w_j^jj·Q_j (A_jj = c_x^jj x_s + ... at j = 0).
        for (int jj = j + 1; jj < o; ++jj) {
            const singlestep_coeffs cj = stage_table(b, o, jj);
            const double w = cj.w[j];
            tensor<T, S>& a = (*acc)[static_cast<std::size_t>(jj - 1)];
            if (j == 0)
                lincomb(a.view(), cj.c_x + w * q.x, xc, w * q.m, m);
            else
                lincomb(a.view(), 1.0, a.cview(), w * q.x, xc, w * q.m, m);
        }
        const singlestep_coeffs c = stage_table(b, o, j);
        const double w = c.w[j];
        if (j == 0)
            lincomb(x, c.c_x + w * q.x, xc, w * q.m, m);
        else
            lincomb(x, 1.0, (*acc)[static_cast<std::size_t>(j - 1)].cview(), w * q.x, xc, w * q.m, m);
        last_ = i;
    }
    template <class T, class S>
    void step(std::type_identity_t<tensor_view<const T, S>> m, std::size_t i, tensor_view<T, S> x, philox_rng& rng) {
        step<T, S>(m, config_.prediction, i, x, rng);
    }

private:
    void check_config() const {
        require(config_.order >= 1 && config_.order <= 3, "order", config_.order,
                "1, 2 or 3 (singlestep DPM-Solver has no higher orders)");
        detail::dpm_ss::require_ode_algorithm(config_.algorithm);
    }

    void install(level_sequence levels, std::vector<noise_condition> lv, std::vector<int> list) {
        require(std::isfinite(levels.sigma(0)), "sigmas[0]", levels.sigma(0),
                "finite (singlestep DPM-Solver cannot start at σ = +inf)");
        levels_ = std::move(levels);
        lv_ = std::move(lv);
        orders_ = std::move(list);
        reset_begin_index();
        compute_effective_orders();
    }

    void compute_effective_orders() {
        const std::size_t n = orders_.size(), k = begin_index();
        effective_.assign(n, 1);
        block_order_.assign(n, 1);
        for (std::size_t i = k; i < n; ++i)
            effective_[i] = std::min(orders_[i], static_cast<int>(i - k + 1));
        // A block is a run 1, 2, .., o; its order is the last stage's.
        for (std::size_t i = n; i-- > k;) {
            const bool last_of_run = i + 1 == n || effective_[i + 1] != effective_[i] + 1;
            block_order_[i] = last_of_run ? effective_[i] : block_order_[i + 1];
        }
        last_ = detail::dpm_ss::no_step;
    }

    singlestep_coeffs stage_table(std::size_t b, int o, int j) const {
        const std::span<const noise_condition> lv(lv_.data() + b, static_cast<std::size_t>(o) + 1);
        return detail::dpm_ss::stage_coefficients(config_.algorithm, config_.solver, o, j, lv);
    }

    level_sequence levels_;
    std::vector<noise_condition> lv_;  // the N + 1 levels (outer levels exactly as given)
    std::vector<int> orders_, effective_, block_order_;
    dpm_solver_singlestep_config config_{};
    detail::dpm_ss::stage_store store_;
    std::size_t last_ = detail::dpm_ss::no_step;
};

}  // namespace diffuse::samplers
