#pragma once
// PNDM / PLMS: pseudo numerical methods on a discrete schedule (Liu et al. 2022, "Pseudo
// Numerical Methods for Diffusion Models on Manifolds", Eq. 9 and Alg. 2 (F-PNDM); diffusers
// PNDMScheduler; docs/samplers/pndm.md).
//
// Transfer (Eq. 9, diffusers `_get_prev_sample`): from ᾱ = ᾱ_t to ᾱ' with a noise estimate e
//   x' = √(ᾱ'/ᾱ)·x − (ᾱ' − ᾱ)/(ᾱ·√(1−ᾱ') + √(ᾱ(1−ᾱ)ᾱ'))·e
// which is DDIM(η = 0) written without cancellation ((A − B)(A + B) = ᾱ − ᾱ' with A = √ᾱ√(1−ᾱ'),
// B = √((1−ᾱ)ᾱ')). In x/√ᾱ and ρ = √((1−ᾱ)/ᾱ) it is the Euler step x'/a' = x/a + (ρ' − ρ)·e,
// so the methods below are classical linear multistep / Runge–Kutta methods for
// d(x/a)/dρ = e with constant step coefficients: exact orders only on grids uniform in ρ.
//
// The PLMS grid t_0 > t_1 > ... > t_{K−1} (set_timesteps: schedules::ddim_timesteps with the
// configured spacing, diffusers' `_timesteps` reversed) ends with a transfer to the final ᾱ
// (1 with set_alpha_to_one, else ᾱ_0). Steps count model evaluations (diffusers' timesteps):
//
//   PRK warm-up (skip_prk_steps = false; K >= 4): three 4-stage Runge–Kutta steps
//   t_k -> t_{k+1} (k = 0, 1, 2) through the half-step timestep μ_k = t_{k+1} + (t_k − t_{k+1})/2
//   (integer division; diffusers: t_{k+1} + (T // N) // 2). Stages (x_s = the state at t_k):
//     e1 at (x_s, t_k):  x = T(x_s; t_k -> μ_k; e1)
//     e2 at (x, μ_k):    x = T(x_s; t_k -> μ_k; e2)
//     e3 at (x, μ_k):    x = T(x_s; t_k -> t_{k+1}; e3)
//     e4 at (x, t_{k+1}): x = T(x_s; t_k -> t_{k+1}; (e1 + 2e2 + 2e3 + e4)/6)
//   then PLMS steps at t_3 .. t_{K−1}, each AB4 on e with the history e1(t_0), e1(t_1), e1(t_2),
//   e(t_3), ...: e' = (55e_0 − 59e_{−1} + 37e_{−2} − 9e_{−3})/24, x = T(x; t_j -> t_{j+1}; e').
//   12 + (K − 3) = K + 9 evaluations (diffusers' prk_timesteps then plms_timesteps).
//
//   Without PRK (skip_prk_steps = true; crowsonkb's PLMS, diffusers step_plms): K + 1 evaluations
//   (K = 1: one DDIM step):
//     step 0: e0 at (x_0, t_0): x = T(x_0; t_0 -> t_1; e0)               (Euler predictor)
//     step 1: e' at (x, t_1):   x = T(x_0; t_0 -> t_1; (e' + e0)/2)      (the (e_new + e_old)/2 trick:
//                                                                          Heun; e' is not kept)
//     steps 2..: AB2 (3e_0 − e_{−1})/2, AB3 (23e_0 − 16e_{−1} + 5e_{−2})/12, then AB4.
//
// History. pndm_history::epsilon (default) converts each model output to e at the point and level
// where it was evaluated (any prediction type) and combines e's: the method above.
// pndm_history::model_output keeps the raw outputs, combines them, and converts the combination
// with the transfer's source state and level (diffusers: `_get_prev_sample` turns a v-prediction
// into e with `sample` and `alpha_prod_t` of the transfer source, also for PRK stages evaluated
// elsewhere). The two agree for epsilon models; select model_output for diffusers parity with v.
//
// Previous timestep. prev_rule::lookup (default) takes the next grid entry (right for every
// spacing); prev_rule::diffusers_subtract uses diffusers' t − T // N (and, in the PRK warm-up,
// t_k − (T // N) // 2 for the first stage's target and t_{k+1} + (T // N) // 2 for the half-step),
// which differs from lookup for linspace/trailing spacing and odd T // N.
//
// Restart. set_begin_index(k) is allowed at step 0 or at a PLMS step (not inside the PRK warm-up
// or at the Heun step); the history restarts empty there, so the orders rise AB1, AB2, AB3, AB4.
// Each step is 1–3 lincombs on the host-computed coefficients; no noise is drawn.

#include <diffuse/backend/lincomb.hpp>
#include <diffuse/core/error.hpp>
#include <diffuse/core/philox.hpp>
#include <diffuse/core/tensor.hpp>
#include <diffuse/models/denoiser.hpp>
#include <diffuse/process/parametrization.hpp>
#include <diffuse/samplers/ddim.hpp>
#include <diffuse/samplers/detail/multistep_history.hpp>
#include <diffuse/samplers/levels.hpp>
#include <diffuse/samplers/sampler.hpp>
#include <diffuse/schedules/discrete_schedule.hpp>
#include <diffuse/schedules/timesteps.hpp>

#include <array>
#include <cmath>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace diffuse::samplers {

/// What a PNDM / PLMS history combines (see the file comment).
enum class pndm_history {
    epsilon,       ///< e converted at each evaluation point (default; any prediction type)
    model_output,  ///< raw outputs, converted at the transfer source (diffusers, for v-prediction parity)
};

struct pndm_config {
    bool skip_prk_steps = false;   ///< PLMS with the Euler/Heun start instead of the PRK warm-up
    bool set_alpha_to_one = false; ///< final ᾱ' = 1 (true) or ᾱ_0 (false; diffusers' PNDM default)
    schedules::spacing timestep_spacing = schedules::spacing::leading;
    int steps_offset = 0;
    prev_rule previous = prev_rule::lookup;
    pndm_history history = pndm_history::epsilon;
    prediction_type prediction = prediction_type::epsilon;  ///< what step(m, i, x, rng) assumes m is
};

/// The role of one step (model evaluation) of PNDM.
enum class pndm_stage {
    prk1, prk2, prk3, prk4,  ///< the four stages of a PRK step
    plms_start,              ///< skip_prk step 0: Euler predictor, keeps x_0 and e0
    plms_heun,               ///< skip_prk step 1: x = T(x_0; (e' + e0)/2)
    plms,                    ///< Adams–Bashforth on the history (order = history length, <= 4)
};

/// One step of the plan: the model is called at t_model; x' = T(source; t_from -> t_to; e)
/// with the source the current x or the stored start state; t_to < 0 means the final ᾱ.
struct pndm_step {
    int t_model = 0;
    int t_from = 0;
    int t_to = -1;
    pndm_stage stage = pndm_stage::plms;
};

/// x' = c_x·x + c_e·e of one transfer (Eq. 9).
struct pndm_transfer {
    double c_x, c_e;
};

/// The transfer from ᾱ to ᾱ' (both in (0, 1]): c_x = √(ᾱ'/ᾱ),
/// c_e = −(ᾱ' − ᾱ)/(ᾱ·√(1−ᾱ') + √(ᾱ(1−ᾱ)ᾱ')).
inline pndm_transfer pndm_transfer_coefficients(double alpha_bar, double alpha_bar_prev) {
    require(std::isfinite(alpha_bar) && alpha_bar > 0.0 && alpha_bar < 1.0, "alpha_bar", alpha_bar, "in (0, 1)");
    require(std::isfinite(alpha_bar_prev) && alpha_bar_prev > 0.0 && alpha_bar_prev <= 1.0, "alpha_bar_prev",
            alpha_bar_prev, "in (0, 1]");
    const double den = alpha_bar * std::sqrt(1.0 - alpha_bar_prev) +
                       std::sqrt(alpha_bar * (1.0 - alpha_bar) * alpha_bar_prev);
    return {std::sqrt(alpha_bar_prev / alpha_bar), -(alpha_bar_prev - alpha_bar) / den};
}

/// Adams–Bashforth weights on e_0 (newest), e_{−1}, ... for n = 1..4 past values.
inline std::array<double, 4> adams_bashforth_weights(int n) {
    switch (n) {
        case 1: return {1.0, 0.0, 0.0, 0.0};
        case 2: return {1.5, -0.5, 0.0, 0.0};
        case 3: return {23.0 / 12, -16.0 / 12, 5.0 / 12, 0.0};
        case 4: return {55.0 / 24, -59.0 / 24, 37.0 / 24, -9.0 / 24};
        default: fail_argument("Adams–Bashforth order", n, "in [1, 4]");
    }
}

class pndm_sampler : public begin_index_support {
public:
    explicit pndm_sampler(schedules::discrete_schedule schedule, pndm_config config = {})
        : schedule_(std::move(schedule)), config_(config) {
        if (!config_.set_alpha_to_one && !(schedule_.alpha_bar(0) > 0.0))
            fail_argument("alphas_cumprod[0]", schedule_.alpha_bar(0), "> 0 when set_alpha_to_one = false");
        require(schedule_.alpha_bar(schedule_.num_train_timesteps() - 1) > 0.0, "alphas_cumprod[T-1]",
                schedule_.alpha_bar(schedule_.num_train_timesteps() - 1),
                "> 0 (PNDM's transfer divides by ᾱ_t; no zero terminal SNR)");
    }

    const schedules::discrete_schedule& schedule() const { return schedule_; }
    const pndm_config& config() const { return config_; }
    int num_train_timesteps() const { return schedule_.num_train_timesteps(); }
    double final_alpha_cumprod() const { return config_.set_alpha_to_one ? 1.0 : schedule_.alpha_bar(0); }

    /// The PLMS grid of N inference steps (schedules::ddim_timesteps with the configured spacing
    /// and offset); 1 <= N <= T, and N >= 4 with the PRK warm-up.
    void set_timesteps(int num_inference_steps) {
        set_grid(schedules::ddim_timesteps(num_train_timesteps(), num_inference_steps, config_.timestep_spacing,
                                           config_.steps_offset),
                 num_inference_steps);
    }
    /// An explicit grid, strictly decreasing in [0, T − 1]; with diffusers_subtract the stride is
    /// T // num_inference_steps (default: the grid's length).
    void set_timesteps(std::vector<int> grid, int num_inference_steps = -1) {
        const int T = num_train_timesteps();
        detail::require_training_timesteps(grid, T);
        const int n = num_inference_steps < 0 ? static_cast<int>(grid.size()) : num_inference_steps;
        require(n >= 1 && n <= T, "num_inference_steps", n, "in [1, " + std::to_string(T) + "]");
        set_grid(std::move(grid), n);
    }

    /// Start sample() at step k: 0 or a PLMS step (img2img); the history restarts there.
    void set_begin_index(std::size_t k) {
        if (k != 0 && k < num_steps() && plan_[k].stage != pndm_stage::plms)
            fail_argument("pndm_sampler.set_begin_index: k", k,
                          "0 or a PLMS step (not a PRK stage or the Heun step; the first PLMS step is " +
                              std::to_string(first_plms_step()) + ")");
        store_begin_index(k, num_steps(), "pndm_sampler");
        last_step_.reset();
    }

    /// The PLMS grid t_0 > ... > t_{K−1}.
    const std::vector<int>& grid() const { return grid_; }
    /// N of set_timesteps (the diffusers_subtract stride is T // N).
    int num_inference_steps() const { return num_inference_steps_; }
    /// The model timestep of every step (diffusers' scheduler.timesteps).
    std::vector<int> timesteps() const {
        std::vector<int> t;
        for (const pndm_step& p : plan_) t.push_back(p.t_model);
        return t;
    }
    const std::vector<pndm_step>& plan() const { return plan_; }
    std::size_t num_steps() const { return plan_.size(); }
    double timestep(std::size_t i) const { return step_plan(i).t_model; }
    int order() const { return 4; }
    double init_noise_sigma() const { return 1.0; }
    double model_input_scale(std::size_t) const { return 1.0; }
    noise_condition model_level(std::size_t i) const { return noise_condition::at(schedule_, step_plan(i).t_model); }
    /// x at step i is at the model's level (as in DDIM; with diffusers_subtract the state may in
    /// fact be at the previous step's t_to, which diffusers also ignores).
    noise_condition state_level(std::size_t i) const { return model_level(i); }
    template <class T, class S>
    void scale_model_input(tensor_view<T, S> out, std::type_identity_t<tensor_view<const T, S>> x, std::size_t) const {
        lincomb(out, 1.0, x);
    }
    /// ᾱ at a plan timestep (t < 0: the final ᾱ).
    double alpha_bar_at(int t) const { return t >= 0 ? schedule_.alpha_bar(t) : final_alpha_cumprod(); }
    /// The transfer of step i.
    pndm_transfer transfer(std::size_t i) const {
        const pndm_step& p = step_plan(i);
        return pndm_transfer_coefficients(alpha_bar_at(p.t_from), alpha_bar_at(p.t_to));
    }

    /// x <- the state after step i; m a `from` prediction at (x, model_level(i)). Steps run in
    /// order from begin_index(). Draws no noise.
    template <class T, class S>
    void step(std::type_identity_t<tensor_view<const T, S>> m, prediction_type from, std::size_t i,
              tensor_view<T, S> x, philox_rng& /*rng*/) {
        namespace sd = ::diffuse::samplers::detail;
        sd::require_step_index(i, num_steps(), "pndm_sampler.step");
        sd::require_step_tensors<T, S>(m, x, "pndm_sampler.step");
        // slots: 0..3 history ring, 4 the stored start state, 5 the PRK accumulator, 6 scratch.
        std::vector<tensor<T, S>>* st = nullptr;
        if (i == begin_index()) {
            st = &store_.reset<T, S>(7, x.shape());
            head_ = 0;
            count_ = 0;
        } else {
            st = store_.find<T, S>();
            if (!last_step_ || *last_step_ + 1 != i || !st)
                fail_argument("pndm_sampler.step: step index", i,
                              "the next step " + (last_step_ ? std::to_string(*last_step_ + 1) : std::string("(none)")) +
                                  " or begin_index() = " + std::to_string(begin_index()) +
                                  " (history samplers run their steps in order)");
            if ((*st)[0].shape() != x.shape())
                fail("pndm_sampler.step: x has shape " + x.shape().str() + " but the history has shape " +
                     (*st)[0].shape().str() + "; expected the shape of the run's first step");
        }
        auto& S_ = *st;
        const pndm_step& p = plan_[i];
        const bool raw = config_.history == pndm_history::model_output;
        const tensor_view<const T, S> xc = x;
        // The processed output E: e at the evaluation point, or the raw output.
        auto write_E = [&](tensor<T, S>& dst) {
            if (raw) {
                lincomb(dst.view(), 1.0, m);
            } else {
                const affine_estimate e = eps_from_output(from, model_level(i), 1.0);
                lincomb(dst.view(), e.x, xc, e.m, m);
            }
        };
        auto push = [&]() -> tensor<T, S>& {
            head_ = (head_ + 3) % 4;
            count_ = count_ < 4 ? count_ + 1 : 4;
            return S_[head_];
        };
        auto hist = [&](std::size_t k) { return S_[(head_ + k) % 4].cview(); };
        // x' = c_x·src + c_e·e with e = Σ w_k E_k; in raw mode e = e_x·src + e_m·Σ w_k E_k at t_from.
        const pndm_transfer tr = transfer(i);
        double cx = tr.c_x, ce = tr.c_e;
        if (raw) {
            const affine_estimate e = eps_from_output(from, noise_condition::at(schedule_, p.t_from), 1.0);
            cx += ce * e.x;
            ce *= e.m;
        }
        tensor<T, S>& start = S_[4];
        tensor<T, S>& acc = S_[5];
        tensor<T, S>& scratch = S_[6];
        switch (p.stage) {
            case pndm_stage::prk1: {
                tensor<T, S>& E = push();
                write_E(E);
                lincomb(start.view(), 1.0, xc);
                lincomb(acc.view(), 1.0 / 6.0, E.cview());
                lincomb(x, cx, xc, ce, E.cview());
                break;
            }
            case pndm_stage::prk2:
            case pndm_stage::prk3: {
                write_E(scratch);
                lincomb(acc.view(), 1.0, acc.cview(), 1.0 / 3.0, scratch.cview());
                lincomb(x, cx, start.cview(), ce, scratch.cview());
                break;
            }
            case pndm_stage::prk4: {
                write_E(scratch);
                lincomb(x, cx, start.cview(), ce, acc.cview(), ce / 6.0, scratch.cview());
                break;
            }
            case pndm_stage::plms_start: {
                tensor<T, S>& E = push();
                write_E(E);
                lincomb(start.view(), 1.0, xc);
                lincomb(x, cx, xc, ce, E.cview());
                break;
            }
            case pndm_stage::plms_heun: {
                write_E(scratch);
                lincomb(x, cx, start.cview(), 0.5 * ce, scratch.cview(), 0.5 * ce, hist(0));
                break;
            }
            case pndm_stage::plms: {
                write_E(push());
                const std::array<double, 4> w = adams_bashforth_weights(static_cast<int>(count_));
                auto t = [&](std::size_t k) { return sd::term<T, S>{k < count_ ? ce * w[k] : 0.0, hist(k < count_ ? k : 0)}; };
                sd::lincomb_many<T, S, 5>(x, {sd::term<T, S>{cx, xc}, t(0), t(1), t(2), t(3)});
                break;
            }
        }
        last_step_ = i;
    }

    /// step with the configured prediction type.
    template <class T, class S>
    void step(std::type_identity_t<tensor_view<const T, S>> m, std::size_t i, tensor_view<T, S> x, philox_rng& rng) {
        step<T, S>(m, config_.prediction, i, x, rng);
    }

private:
    const pndm_step& step_plan(std::size_t i) const {
        ::diffuse::samplers::detail::require_step_index(i, num_steps(), "pndm_sampler");
        return plan_[i];
    }
    std::size_t first_plms_step() const {
        for (std::size_t k = 0; k < plan_.size(); ++k)
            if (plan_[k].stage == pndm_stage::plms) return k;
        return 0;
    }

    void set_grid(std::vector<int> grid, int num_inference_steps) {
        const int K = static_cast<int>(grid.size());
        if (!config_.skip_prk_steps)
            require(K >= 4, "num_inference_steps", K,
                    ">= 4 with the PRK warm-up (three Runge–Kutta steps, then PLMS; or skip_prk_steps = true)");
        const bool subtract = config_.previous == prev_rule::diffusers_subtract;
        const int r = num_train_timesteps() / num_inference_steps;
        auto next = [&](int k) {  // the target after grid point k
            if (subtract) return std::max(grid[static_cast<std::size_t>(k)] - r, -1);
            return k + 1 < K ? grid[static_cast<std::size_t>(k) + 1] : -1;
        };
        std::vector<pndm_step> plan;
        if (!config_.skip_prk_steps) {
            for (int k = 0; k < 3; ++k) {
                const int tk = grid[static_cast<std::size_t>(k)], tn = grid[static_cast<std::size_t>(k) + 1];
                const int mid = subtract ? tn + r / 2 : tn + (tk - tn) / 2;
                const int first_to = subtract ? tk - r / 2 : mid;
                plan.push_back({tk, tk, first_to, pndm_stage::prk1});
                plan.push_back({mid, tk, mid, pndm_stage::prk2});
                plan.push_back({mid, tk, tn, pndm_stage::prk3});
                plan.push_back({tn, tk, tn, pndm_stage::prk4});
            }
            for (int k = 3; k < K; ++k)
                plan.push_back({grid[static_cast<std::size_t>(k)], grid[static_cast<std::size_t>(k)], next(k), pndm_stage::plms});
        } else if (K == 1) {
            plan.push_back({grid[0], grid[0], next(0), pndm_stage::plms});
        } else {
            plan.push_back({grid[0], grid[0], next(0), pndm_stage::plms_start});
            plan.push_back({grid[1], subtract ? grid[1] + r : grid[0], grid[1], pndm_stage::plms_heun});
            for (int k = 1; k < K; ++k)
                plan.push_back({grid[static_cast<std::size_t>(k)], grid[static_cast<std::size_t>(k)], next(k), pndm_stage::plms});
        }
        for (const pndm_step& p : plan) {
            require(p.t_from >= 0 && p.t_from < num_train_timesteps(), "PNDM transfer source timestep", p.t_from,
                    "in [0, " + std::to_string(num_train_timesteps() - 1) + "] (diffusers_subtract with this grid)");
            require(p.t_to < num_train_timesteps(), "PNDM transfer target timestep", p.t_to,
                    "< " + std::to_string(num_train_timesteps()));
        }
        grid_ = std::move(grid);
        num_inference_steps_ = num_inference_steps;
        plan_ = std::move(plan);
        reset_begin_index();
        last_step_.reset();
    }

    schedules::discrete_schedule schedule_;
    pndm_config config_;
    std::vector<int> grid_;
    int num_inference_steps_ = 0;
    std::vector<pndm_step> plan_;
    detail::history_store store_;
    std::size_t head_ = 0, count_ = 0;
    std::optional<std::size_t> last_step_;
};

}  // namespace diffuse::samplers
