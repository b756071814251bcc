#pragma once
// Probability-flow ODE inversion: DDIM inversion and a second-order DPM-Solver++(2M) inverse
// (docs/samplers/editing.md §1). Both walk noise levels UPWARDS (σ increasing): x at a low
// level (data, or a slightly noised latent) is carried to the high-noise end along the
// probability-flow ODE, so that sampling back from there reproduces it (up to the solvers'
// discretisation error).
//
// A path ℓ_0 < ℓ_1 < ... < ℓ_N of levels (a, s) (σ = s/a increasing) is walked; step i moves x
// from ℓ_i to ℓ_{i+1}. Paths come from
//   * a level_sequence (levels.hpp), walked in REVERSE: the inverse of sampling on those levels
//     (the same sequence given to euler_sampler / ddim on the way back);
//   * a discrete schedule and N (diffusers' inverse schedulers' set_timesteps), see below.
//
// DDIM inversion (Song et al. 2021 Eq. 12 with η = 0, run upwards; diffusers
// DDIMInverseScheduler). With the model output m at step i, x0 = dx·x + dm·m and
// eps = ex·x + em·m (levels.hpp estimates, converted at the CURRENT level ℓ_i):
//   x' = a'·x0 + s'·eps                                  (ℓ_{i+1} = (a', s'); one lincomb)
// = an explicit Euler step of the PF-ODE in (x/a, σ) with the slope at the current level;
// first order. clip_sample clamps x0 to [−r, r] (eps stays the model's, diffusers' rule).
// Which level the MODEL is told (inverse_model_level):
//   current  the level x is at (default; the exact PF-ODE step; exact models need it)
//   next     the level x is moved to, while the conversion stays at the current level: what
//            diffusers' inversion pipelines do (unet(x, t) with t the loop's timestep, and
//            DDIMInverseScheduler.step(m, t, x) converts with ᾱ of t − T//N). Still first order.
// diffusers' path: timesteps t_0 < ... < t_{N−1} (leading: 0, T//N, ...; trailing), the state
// before step k at t_k − T//N (prev_rule::diffusers_subtract) or t_{k−1} (prev_rule::lookup,
// default; equal for leading), the first state at ᾱ = 1 (set_alpha_to_one) or ᾱ_0.
//
// DPM-Solver++(2M) inverse (Lu et al. 2022b Alg. 2 run with σ increasing, i.e. h < 0, as
// dpm-solver's DPM_Solver.inverse and diffusers DPMSolverMultistepInverseScheduler do). With
// λ = log(a/s), h = λ_{i+1} − λ_i < 0, D_i = x0 estimate at ℓ_i (data prediction):
//   first order   x' = (s'/s)·x − a'·expm1(−h)·D_i                      (= DDIM)
//   2M            x' = (s'/s)·x − a'·expm1(−h)·D_i + w·(D_i − D_{i−1})/r,  r = (λ_i − λ_{i−1})/h
//                 w = −½·a'·expm1(−h)            (midpoint, default; diffusers' solver_type)
//                 w = a'·(expm1(−h)/h + 1)       (heun)
// The first step after begin_index() is first order (no history); the last one too when
// euler_at_final, or lower_order_final with fewer than 15 steps (diffusers' rule). A start at
// σ = 0 (ᾱ = 1) takes the DDIM form x' = a'·x0 + s'·eps (the h → −∞ limit), and a step whose
// previous level has σ = 0 is first order (r = ∞). Per step: one lincomb for D_i (kept as
// history) and one for x'. diffusers' path: timesteps increasing by `timestep_spacing`
// (linspace: round(linspace(0, T−1, N+1))[:-1]), the state at each timestep (the model sees
// its own level), and a last level at t = T − 1 (diffusers' sigma_max).
//
// Both samplers draw no noise. step() is non-const for the 2M inverse (history).

#include <diffuse/backend/for_each.hpp>
#include <diffuse/backend/lincomb.hpp>
#include <diffuse/core/error.hpp>
#include <diffuse/core/philox.hpp>
#include <diffuse/core/tensor.hpp>
#include <diffuse/models/denoiser.hpp>
#include <diffuse/process/parametrization.hpp>
#include <diffuse/samplers/ddim.hpp>
#include <diffuse/samplers/levels.hpp>
#include <diffuse/samplers/sampler.hpp>
#include <diffuse/schedules/detail/numeric.hpp>
#include <diffuse/schedules/discrete_schedule.hpp>
#include <diffuse/schedules/timesteps.hpp>

#include <algorithm>
#include <any>
#include <cmath>
#include <cstddef>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace diffuse::samplers {

/// Which level an inversion step shows the model (see the file comment).
enum class inverse_model_level {
    current,  ///< the level x is at (exact PF-ODE Euler step)
    next,     ///< the level x is moved to (diffusers' inversion pipelines); conversion at the current level
};

/// The second-order term of the 2M inverse (diffusers' solver_type).
enum class inverse_2m_variant {
    midpoint,  ///< w = −½·a'·expm1(−h) (diffusers' default)
    heun,      ///< w = a'·(expm1(−h)/h + 1)
};

namespace detail::editing {

/// One inversion step: x moves from `from` to `to` (σ non-decreasing).
struct inverse_step {
    noise_condition from, to;
};

/// Steps of a level_sequence walked in reverse (ℓ_N -> ℓ_{N−1} -> ... -> ℓ_0).
inline std::vector<inverse_step> reversed_steps(const level_sequence& seq) {
    require(seq.size() >= 2, "levels.size()", seq.size(), ">= 2 (N + 1 levels for N steps)");
    std::vector<inverse_step> out;
    for (std::size_t k = seq.size() - 1; k >= 1; --k) out.push_back({seq[k], seq[k - 1]});
    return out;
}

/// The tensor of type tensor<T, S> and shape s kept in `slot` (re-created when absent or of
/// another type or shape): per-sampler scratch / history that survives between step() calls.
template <class T, class S>
tensor<T, S>& buffer(std::any& slot, const shape& s) {
    auto* p = std::any_cast<tensor<T, S>>(&slot);
    if (p == nullptr || p->shape() != s) {
        slot = tensor<T, S>(s);
        p = std::any_cast<tensor<T, S>>(&slot);
    }
    return *p;
}

inline std::string step_range(std::size_t n) { return "in [0, " + std::to_string(n) + ")"; }

}  // namespace detail::editing

// ---------------------------------------------------------------------------------------------
// DDIM inversion
// ---------------------------------------------------------------------------------------------

struct ddim_inverse_config {
    bool set_alpha_to_one = true;     ///< discrete paths start at ᾱ = 1 (true) or ᾱ_0 (false)
    bool clip_sample = false;         ///< clamp x0 to [−clip_sample_range, clip_sample_range] (diffusers' default: true)
    double clip_sample_range = 1.0;
    schedules::spacing timestep_spacing = schedules::spacing::leading;  ///< for set_timesteps(N)
    int steps_offset = 0;                                               ///< leading spacing only
    prev_rule previous = prev_rule::lookup;  ///< the state level before step k (diffusers_subtract: t_k − T//N)
    inverse_model_level model_at = inverse_model_level::current;
    model_input input = model_input::state;                  ///< what the model is shown (levels.hpp)
    prediction_type prediction = prediction_type::epsilon;   ///< what step(m, i, x, rng) assumes m is
};

/// x' = c_x·x + c_m·m for one DDIM inversion step; x0 = p_x·x + p_m·m, eps = e_x·x + e_m·m and
/// the target level (a', s') for the clipped form x' = a'·clip(x0) + s'·eps.
struct ddim_inverse_coeffs {
    double c_x, c_m;
    double p_x, p_m;
    double e_x, e_m;
    double a_next, s_next;
};

/// The coefficients of one DDIM step to level `to`, for a `type` output m of a model that saw
/// c_in·x, converted as if seen at `conv` (the current level as the model sees it).
inline ddim_inverse_coeffs ddim_inverse_coefficients(prediction_type type, const noise_condition& conv, double c_in,
                                                     const noise_condition& to) {
    const affine_estimate x0 = x0_from_output(type, conv, c_in);
    const affine_estimate ep = eps_from_output(type, conv, c_in);
    ddim_inverse_coeffs c{};
    c.p_x = x0.x;
    c.p_m = x0.m;
    c.e_x = ep.x;
    c.e_m = ep.m;
    c.a_next = to.a;
    c.s_next = to.s;
    c.c_x = to.a * x0.x + to.s * ep.x;
    c.c_m = to.a * x0.m + to.s * ep.m;
    return c;
}

class ddim_inverse_sampler : public begin_index_support {
public:
    /// A discrete schedule; call set_timesteps next.
    explicit ddim_inverse_sampler(schedules::discrete_schedule schedule, ddim_inverse_config config = {})
        : schedule_(std::move(schedule)), config_(config) {
        check_config();
        if (!config_.set_alpha_to_one && schedule_->alpha_bar(0) <= 0.0)
            fail_argument("alphas_cumprod[0]", schedule_->alpha_bar(0), "> 0 when set_alpha_to_one = false");
    }
    /// The reverse of a level sequence: the inverse of sampling on `levels` (VE or VP).
    explicit ddim_inverse_sampler(level_sequence levels, ddim_inverse_config config = {}) : config_(config) {
        check_config();
        set_levels(std::move(levels));
    }

    /// Walk `levels` in reverse (ℓ_N first). Reported timesteps are the σ reached by each step.
    void set_levels(level_sequence levels) {
        steps_ = detail::editing::reversed_steps(levels);
        reported_.clear();
        for (const auto& st : steps_) reported_.push_back(st.to.sigma());
        timesteps_.clear();
        reset_begin_index();
    }

    /// diffusers DDIMInverseScheduler.set_timesteps(N): the forward DDIM timesteps of the
    /// configured spacing, increasing (leading: 0, T//N, ..., (N−1)·(T//N) + steps_offset).
    void set_timesteps(int num_inference_steps) {
        require_schedule("set_timesteps");
        std::vector<int> ts = schedules::ddim_timesteps(schedule_->num_train_timesteps(), num_inference_steps,
                                                        config_.timestep_spacing, config_.steps_offset);
        std::reverse(ts.begin(), ts.end());
        build_discrete(std::move(ts), num_inference_steps);
    }

    /// An explicit increasing sequence in [0, T − 1]; with prev_rule::diffusers_subtract the
    /// stride is T // num_inference_steps (default: the sequence length).
    void set_timesteps(std::vector<int> timesteps, int num_inference_steps = -1) {
        require_schedule("set_timesteps");
        const int T = schedule_->num_train_timesteps();
        require(!timesteps.empty(), "timesteps.size()", timesteps.size(), ">= 1");
        for (std::size_t k = 0; k < timesteps.size(); ++k) {
            const std::string arg = "timesteps[" + std::to_string(k) + "]";
            require(timesteps[k] >= 0 && timesteps[k] < T, arg, timesteps[k],
                    "a training timestep in [0, " + std::to_string(T - 1) + "]");
            if (k > 0 && !(timesteps[k] > timesteps[k - 1]))
                fail_argument(arg, timesteps[k], "> timesteps[" + std::to_string(k - 1) + "] = " +
                                                     std::to_string(timesteps[k - 1]) +
                                                     " (strictly increasing: inversion goes up in noise)");
        }
        const int n = num_inference_steps < 0 ? static_cast<int>(timesteps.size()) : num_inference_steps;
        require(n >= 1 && n <= T, "num_inference_steps", n, "in [1, " + std::to_string(T) + "]");
        build_discrete(std::move(timesteps), n);
    }

    void set_begin_index(std::size_t k) { store_begin_index(k, num_steps(), "ddim_inverse_sampler"); }

    const ddim_inverse_config& config() const { return config_; }
    /// The increasing training timesteps (discrete paths; empty for level sequences).
    const std::vector<int>& timesteps() const { return timesteps_; }
    std::size_t num_steps() const { return steps_.size(); }
    /// The training timestep reached by step i (diffusers' loop variable), or σ reached for
    /// level-sequence paths.
    double timestep(std::size_t i) const {
        require_index(i);
        return reported_[i];
    }
    int order() const { return 1; }
    double init_noise_sigma() const { return 1.0; }
    /// The level x is at when step i begins.
    noise_condition state_level(std::size_t i) const {
        require_index(i);
        return steps_[i].from;
    }
    /// The level x is at after step i.
    noise_condition target_level(std::size_t i) const {
        require_index(i);
        return steps_[i].to;
    }
    double model_input_scale(std::size_t i) const { return model_input_scale_of(state_level(i), config_.input); }
    noise_condition model_level(std::size_t i) const {
        require_index(i);
        const noise_condition& shown =
            config_.model_at == inverse_model_level::current ? steps_[i].from : steps_[i].to;
        return seen_level(shown, config_.input);
    }
    template <class T, class S>
    void scale_model_input(tensor_view<T, S> out, std::type_identity_t<tensor_view<const T, S>> x, std::size_t i) const {
        lincomb(out, model_input_scale(i), x);
    }

    ddim_inverse_coeffs coefficients(prediction_type from, std::size_t i) const {
        require_index(i);
        const noise_condition& cur = steps_[i].from;
        return ddim_inverse_coefficients(from, seen_level(cur, config_.input), model_input_scale(i), steps_[i].to);
    }

    /// x <- x at target_level(i); m a `from` prediction at (c_in·x, model_level(i)). No noise.
    template <class T, class S>
    void step(std::type_identity_t<tensor_view<const T, S>> m, prediction_type from, std::size_t i,
              tensor_view<T, S> x, philox_rng& /*rng*/) const {
        require_index(i);
        samplers::detail::require_step_tensors<T, S>(m, x, "ddim_inverse_sampler.step");
        const ddim_inverse_coeffs c = coefficients(from, i);
        const tensor_view<const T, S> xc = x;
        if (!config_.clip_sample) {
            lincomb(x, c.c_x, xc, c.c_m, m);
            return;
        }
        tensor<T, S> x0(x.shape());
        lincomb(x0.view(), c.p_x, xc, c.p_m, m);
        const T r = static_cast<T>(config_.clip_sample_range);
        for_each<S>(x0.numel(), samplers::detail::clamp_op<T>{x0.view().data(), static_cast<T>(-r), r});
        lincomb(x, c.a_next, x0.cview(), c.s_next * c.e_x, xc, c.s_next * c.e_m, m);
    }
    template <class T, class S>
    void step(std::type_identity_t<tensor_view<const T, S>> m, std::size_t i, tensor_view<T, S> x,
              philox_rng& rng) const {
        step<T, S>(m, config_.prediction, i, x, rng);
    }

private:
    void check_config() const {
        require(std::isfinite(config_.clip_sample_range) && config_.clip_sample_range > 0.0, "clip_sample_range",
                config_.clip_sample_range, "a finite number > 0");
    }
    void require_schedule(const char* what) const {
        if (!schedule_)
            fail(std::string("ddim_inverse_sampler.") + what +
                 ": this sampler was built from a level_sequence; construct it from a discrete_schedule to use "
                 "training timesteps");
    }
    void require_index(std::size_t i) const {
        samplers::detail::require_step_index(i, num_steps(), "ddim_inverse_sampler");
    }
    noise_condition initial_level() const {
        if (config_.set_alpha_to_one) return noise_condition{1.0, 0.0, {}};
        return noise_condition::at(*schedule_, 0);
    }
    void build_discrete(std::vector<int> ts, int num_inference_steps) {
        const int stride = schedule_->num_train_timesteps() / num_inference_steps;
        std::vector<detail::editing::inverse_step> steps;
        for (std::size_t k = 0; k < ts.size(); ++k) {
            const noise_condition to = noise_condition::at(*schedule_, ts[k]);
            noise_condition from;
            if (config_.previous == prev_rule::diffusers_subtract) {
                const int tp = ts[k] - stride;
                from = tp >= 0 ? noise_condition::at(*schedule_, tp) : initial_level();
            } else {
                from = k == 0 ? initial_level() : noise_condition::at(*schedule_, ts[k - 1]);
            }
            steps.push_back({from, to});
        }
        steps_ = std::move(steps);
        reported_.assign(ts.begin(), ts.end());
        timesteps_ = std::move(ts);
        reset_begin_index();
    }

    std::optional<schedules::discrete_schedule> schedule_;
    ddim_inverse_config config_;
    std::vector<detail::editing::inverse_step> steps_;
    std::vector<double> reported_;
    std::vector<int> timesteps_;
};

// ---------------------------------------------------------------------------------------------
// DPM-Solver++(2M) inverse
// ---------------------------------------------------------------------------------------------

struct dpmpp_2m_inverse_config {
    inverse_2m_variant variant = inverse_2m_variant::midpoint;
    bool lower_order_final = true;  ///< first-order last step when num_steps() < 15 (diffusers)
    bool euler_at_final = false;    ///< first-order last step always
    schedules::spacing timestep_spacing = schedules::spacing::linspace;  ///< for set_timesteps(N)
    int steps_offset = 0;                                                ///< leading spacing only
    model_input input = model_input::state;
    prediction_type prediction = prediction_type::epsilon;
};

/// x' = c_x·x + c_d·D + c_p·D_prev: one DPM-Solver++ (data-prediction) multistep update from
/// level s0 to level t, D the x0 estimate at s0 and D_prev the one at the previous level s1.
/// Valid in both directions (σ increasing for inversion, decreasing for sampling); order is
/// 1 (c_p = 0) when s1 is absent or at σ = 0, else 2. Requires s0 at σ in (0, ∞) and t at a
/// finite σ.
struct dpmpp_2m_coeffs {
    double c_x, c_d, c_p;
    int order;
};

inline dpmpp_2m_coeffs dpmpp_2m_coefficients(const noise_condition& s0, const noise_condition& t,
                                             const std::optional<noise_condition>& s1,
                                             inverse_2m_variant variant = inverse_2m_variant::midpoint) {
    require(s0.s > 0.0 && s0.a > 0.0, "dpmpp_2m_coefficients: s0.sigma()", s0.sigma(),
            "in (0, +inf) (the start level of a multistep update; a start at σ = 0 is a DDIM step)");
    require(t.a > 0.0, "dpmpp_2m_coefficients: t.sigma()", t.sigma(), "finite");
    const double lam_s = lambda_of(s0), lam_t = lambda_of(t);
    const double h = lam_t - lam_s;
    const double em1 = std::expm1(-h);     // e^{−h} − 1
    const double k = -t.a * em1;           // coefficient of D (first order)
    dpmpp_2m_coeffs c{};
    c.c_x = t.s / s0.s;
    c.c_d = k;
    c.c_p = 0.0;
    c.order = 1;
    if (s1 && s1->s > 0.0 && h != 0.0) {
        const double lam_p = lambda_of(*s1);
        const double r = (lam_s - lam_p) / h;
        const double w = variant == inverse_2m_variant::midpoint ? 0.5 * k : t.a * (em1 / h + 1.0);
        c.c_d = k + w / r;
        c.c_p = -w / r;
        c.order = 2;
    }
    return c;
}

class dpmpp_2m_inverse_sampler : public begin_index_support {
public:
    /// A discrete schedule; call set_timesteps next.
    explicit dpmpp_2m_inverse_sampler(schedules::discrete_schedule schedule, dpmpp_2m_inverse_config config = {})
        : schedule_(std::move(schedule)), config_(config) {}
    /// The reverse of a level sequence (its last level ℓ_N is the start; σ_0 must be finite).
    explicit dpmpp_2m_inverse_sampler(level_sequence levels, dpmpp_2m_inverse_config config = {}) : config_(config) {
        set_levels(std::move(levels));
    }

    void set_levels(level_sequence levels) {
        require(levels.size() >= 2, "levels.size()", levels.size(), ">= 2 (N + 1 levels for N steps)");
        require(std::isfinite(levels.sigma(0)), "sigmas[0]", levels.sigma(0),
                "finite (the DPM-Solver++ inverse cannot reach σ = +inf; use ddim_inverse_sampler)");
        std::vector<noise_condition> path;
        for (std::size_t k = levels.size(); k-- > 0;) path.push_back(levels[k]);
        path_ = std::move(path);
        reported_.clear();
        for (std::size_t i = 0; i + 1 < path_.size(); ++i) reported_.push_back(path_[i].sigma());
        timesteps_.clear();
        reset();
    }

    /// diffusers DPMSolverMultistepInverseScheduler.set_timesteps(N): increasing timesteps
    /// (linspace: round(linspace(0, T−1, N+1))[:-1]; leading: arange(N+1)·(T // (N+1))[:-1] +
    /// steps_offset; trailing: round(arange(T, 0, −T/N))[::-1] − 1), duplicates dropped, the state at
    /// each, and a last level at T − 1 (not repeated when the last timestep is T − 1).
    void set_timesteps(int num_inference_steps) {
        if (!schedule_)
            fail("dpmpp_2m_inverse_sampler.set_timesteps: this sampler was built from a level_sequence; construct "
                 "it from a discrete_schedule to use training timesteps");
        const int T = schedule_->num_train_timesteps();
        const int N = num_inference_steps;
        std::vector<int> ts;
        switch (config_.timestep_spacing) {
            case schedules::spacing::linspace: {
                require(N >= 1 && N <= T - 1, "num_inference_steps", N,
                        "in [1, " + std::to_string(T - 1) + "] (num_train_timesteps − 1)");
                const auto v = schedules::detail::numpy_linspace(0.0, T - 1.0, N + 1);
                for (std::size_t k = 0; k + 1 < v.size(); ++k)
                    ts.push_back(static_cast<int>(schedules::detail::round_half_even(v[k])));
                break;
            }
            case schedules::spacing::leading: {
                require(N >= 1 && N <= T - 1, "num_inference_steps", N,
                        "in [1, " + std::to_string(T - 1) + "] (num_train_timesteps − 1)");
                const int r = T / (N + 1);
                require(config_.steps_offset >= 0 && (N - 1) * r + config_.steps_offset <= T - 1, "steps_offset",
                        config_.steps_offset, "an integer >= 0 with (N − 1)·(T // (N + 1)) + steps_offset <= T − 1");
                for (int k = 0; k < N; ++k) ts.push_back(k * r + config_.steps_offset);
                break;
            }
            case schedules::spacing::trailing: {
                require(N >= 1 && N <= T, "num_inference_steps", N, "in [1, " + std::to_string(T) + "]");
                const auto v = schedules::detail::trailing_values(T, T, N);
                for (std::size_t k = v.size(); k-- > 0;) ts.push_back(static_cast<int>(v[k]) - 1);
                break;
            }
        }
        ts.erase(std::unique(ts.begin(), ts.end()), ts.end());
        std::vector<noise_condition> path;
        for (int t : ts) path.push_back(noise_condition::at(*schedule_, t));
        if (ts.back() != T - 1) path.push_back(noise_condition::at(*schedule_, T - 1));
        require(path.size() >= 2, "num_inference_steps", N, "a value leaving at least one step");
        path_ = std::move(path);
        reported_.clear();
        for (std::size_t i = 0; i + 1 < path_.size(); ++i) reported_.push_back(*path_[i].timestep);
        ts.resize(path_.size() - 1);
        timesteps_ = std::move(ts);
        reset();
    }

    void set_begin_index(std::size_t k) {
        store_begin_index(k, num_steps(), "dpmpp_2m_inverse_sampler");
        history_step_ = npos;
    }

    const dpmpp_2m_inverse_config& config() const { return config_; }
    /// The increasing training timesteps the model is called at (discrete paths).
    const std::vector<int>& timesteps() const { return timesteps_; }
    /// The levels ℓ_0 < ... < ℓ_N walked.
    const std::vector<noise_condition>& path() const { return path_; }
    std::size_t num_steps() const { return path_.empty() ? 0 : path_.size() - 1; }
    /// The training timestep of the state level (discrete paths) or its σ (level sequences).
    double timestep(std::size_t i) const {
        require_index(i);
        return reported_[i];
    }
    int order() const { return 2; }
    double init_noise_sigma() const { return 1.0; }
    noise_condition state_level(std::size_t i) const {
        require_index(i);
        return path_[i];
    }
    noise_condition target_level(std::size_t i) const {
        require_index(i);
        return path_[i + 1];
    }
    double model_input_scale(std::size_t i) const { return model_input_scale_of(state_level(i), config_.input); }
    noise_condition model_level(std::size_t i) const { return seen_level(state_level(i), config_.input); }
    template <class T, class S>
    void scale_model_input(tensor_view<T, S> out, std::type_identity_t<tensor_view<const T, S>> x, std::size_t i) const {
        lincomb(out, model_input_scale(i), x);
    }

    /// The order step i uses when the previous step's x0 estimate is available.
    int step_order(std::size_t i) const {
        require_index(i);
        if (i == 0 || i <= begin_index() || path_[i].s == 0.0 || path_[i - 1].s == 0.0) return 1;
        const bool last = i + 1 == num_steps();
        if (last && (config_.euler_at_final || (config_.lower_order_final && num_steps() < 15))) return 1;
        return 2;
    }

    /// The update of step i (for step_order(i) = 2 when with_history): x' = c_x·x + c_d·D_i + c_p·D_{i−1}.
    dpmpp_2m_coeffs coefficients(std::size_t i, bool with_history = true) const {
        require_index(i);
        std::optional<noise_condition> prev;
        if (with_history && step_order(i) == 2) prev = path_[i - 1];
        return dpmpp_2m_coefficients(path_[i], path_[i + 1], prev, config_.variant);
    }

    /// x <- x at target_level(i); m a `from` prediction at (c_in·x, model_level(i)). No noise.
    /// Uses the x0 estimate kept from step i − 1 when that step ran just before on this sampler.
    template <class T, class S>
    void step(std::type_identity_t<tensor_view<const T, S>> m, prediction_type from, std::size_t i,
              tensor_view<T, S> x, philox_rng& /*rng*/) {
        require_index(i);
        samplers::detail::require_step_tensors<T, S>(m, x, "dpmpp_2m_inverse_sampler.step");
        const noise_condition& cur = path_[i];
        const noise_condition& next = path_[i + 1];
        const double c_in = model_input_scale(i);
        const affine_estimate d = x0_from_output(from, model_level(i), c_in);
        tensor<T, S>& d_now = detail::editing::buffer<T, S>(d_now_, x.shape());
        const tensor_view<const T, S> xc = x;
        lincomb(d_now.view(), d.x, xc, d.m, m);  // D_i = x0 estimate at ℓ_i
        if (cur.s == 0.0) {
            // σ = 0 start: x' = a'·x0 + s'·eps (the h -> −inf limit of the first-order update).
            const affine_estimate e = eps_from_output(from, model_level(i), c_in);
            lincomb(x, next.a, d_now.cview(), next.s * e.x, xc, next.s * e.m, m);
        } else {
            const bool have_history = history_step_ != npos && history_step_ + 1 == i && d_prev_.has_value() &&
                                      std::any_cast<tensor<T, S>>(&d_prev_) != nullptr &&
                                      std::any_cast<tensor<T, S>>(&d_prev_)->shape() == x.shape();
            const dpmpp_2m_coeffs c = coefficients(i, have_history);
            if (c.order == 2) {
                const tensor<T, S>& dp = *std::any_cast<tensor<T, S>>(&d_prev_);
                lincomb(x, c.c_x, xc, c.c_d, d_now.cview(), c.c_p, dp.cview());
            } else {
                lincomb(x, c.c_x, xc, c.c_d, d_now.cview());
            }
        }
        std::swap(d_now_, d_prev_);
        history_step_ = i;
    }
    template <class T, class S>
    void step(std::type_identity_t<tensor_view<const T, S>> m, std::size_t i, tensor_view<T, S> x,
              philox_rng& rng) {
        step<T, S>(m, config_.prediction, i, x, rng);
    }

private:
    static constexpr std::size_t npos = static_cast<std::size_t>(-1);

    void require_index(std::size_t i) const {
        samplers::detail::require_step_index(i, num_steps(), "dpmpp_2m_inverse_sampler");
    }
    void reset() {
        reset_begin_index();
        history_step_ = npos;
        d_prev_.reset();
        d_now_.reset();
    }

    std::optional<schedules::discrete_schedule> schedule_;
    dpmpp_2m_inverse_config config_;
    std::vector<noise_condition> path_;
    std::vector<double> reported_;
    std::vector<int> timesteps_;
    std::size_t history_step_ = npos;
    std::any d_prev_, d_now_;  // tensor<T, S>: the x0 estimates of the previous / current step
};

}  // namespace diffuse::samplers
