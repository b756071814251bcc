#pragma once
// The noise levels a sampler visits, and the x0 / eps estimates every sampler builds on
// (docs/samplers.md §1.2).
//
// A level_sequence holds N + 1 levels ℓ_0 (start) .. ℓ_N (end) of one state convention:
//
//   state_space::ve   x = x0 + σ·eps            level (a, s) = (1, σ)              (k-diffusion, EDM)
//   state_space::vp   x = a·x0 + s·eps, a²+s²=1 level (1/√(1+σ²), σ/√(1+σ²))      (diffusers, dpm-solver)
//
// with σ_0 > σ_1 > ... > σ_N >= 0 (σ = s/a; only the last may be 0, only the first may be +∞
// and then only in VP). Every level may carry the timestep a trained network was conditioned
// on: the exact training timestep where the sequence was built from one, otherwise the
// sequence's timestep map applied to σ (e.g. diffusers' / k-diffusion's σ → t interpolation
// on a discrete schedule, schedules::sigma_to_t), otherwise none.
//
// Samplers written on (a, s) work in both conventions: the DPM-Solver family's formulas are
// stated for any x = a·x0 + s·eps (Lu et al. 2022, Eq. 3.7 with α = a, σ = s), and VE is the
// special case a = 1. An intermediate level at σ (Heun's, DPM-2's, singlestep DPM-Solver's) is
// at_sigma(σ): same convention, timestep from the map.
//
// Estimates. A model called at level (c·a, c·s) on c·x (c = model_input_scale, c_in) with output
// m of prediction type `from` gives
//   x0_hat = dx·x + dm·m       eps_hat = ex·x + em·m                 (x0_from_output, eps_from_output)
// from process::conversion_coeffs at the level the model saw, folded with c. Samplers fold these
// into their own step coefficients, so no separate conversion pass over the data is made.

#include <diffuse/core/error.hpp>
#include <diffuse/models/denoiser.hpp>
#include <diffuse/process/forward.hpp>
#include <diffuse/process/parametrization.hpp>
#include <diffuse/schedules/discrete_schedule.hpp>
#include <diffuse/schedules/sigmas.hpp>

#include <cmath>
#include <cstddef>
#include <functional>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace diffuse::samplers {

using models::noise_condition;
using process::prediction_type;

/// The convention of the sampler state x (see the file comment).
enum class state_space {
    ve,  ///< x = x0 + σ·eps
    vp,  ///< x = a·x0 + s·eps with a² + s² = 1
};

/// What the model is shown (choice; the x0 / eps estimates do not depend on it).
enum class model_input {
    state,     ///< x itself at its level (a, s): c_in = 1 (k-diffusion / EDM, exact models)
    ve = state,
    vp,        ///< x/√(a²+s²) at the VP level of the same σ: c_in = 1/√(a²+s²) (diffusers'
               ///< scale_model_input; 1 for a VP state)
};

/// value = x·state + m·model_output.
struct affine_estimate {
    double x = 0.0;
    double m = 0.0;
};

/// x0_hat = dx·x + dm·m for a `from` output m of a model called on c_in·x at `seen`
/// (= (c_in·a, c_in·s)).
inline affine_estimate x0_from_output(prediction_type from, const noise_condition& seen, double c_in) {
    if (from == prediction_type::sample) return {0.0, 1.0};
    const process::conversion p = process::conversion_coeffs(from, prediction_type::sample, seen.a, seen.s);
    return {p.c_xt * c_in, p.c_value};
}

/// eps_hat = ex·x + em·m, as x0_from_output (eps is the same for the state and the scaled input).
inline affine_estimate eps_from_output(prediction_type from, const noise_condition& seen, double c_in) {
    if (from == prediction_type::epsilon) return {0.0, 1.0};
    const process::conversion p = process::conversion_coeffs(from, prediction_type::epsilon, seen.a, seen.s);
    return {p.c_xt * c_in, p.c_value};
}

/// The level (a, s) of σ in a convention (σ = +∞ only in VP: (0, 1)).
inline noise_condition level_of_sigma(state_space space, double sigma, std::optional<double> timestep = {}) {
    require(!std::isnan(sigma) && sigma >= 0.0, "sigma", sigma, ">= 0");
    if (space == state_space::ve) {
        require_finite(sigma, "sigma (VE state)");
        return {1.0, sigma, timestep};
    }
    if (std::isinf(sigma)) return {0.0, 1.0, timestep};
    const double a = 1.0 / std::sqrt(1.0 + sigma * sigma);
    return {a, sigma * a, timestep};
}

/// λ = log(a/s) of a level: +∞ at s = 0, −∞ at a = 0.
inline double lambda_of(const noise_condition& l) {
    if (l.s == 0.0) return std::numeric_limits<double>::infinity();
    if (l.a == 0.0) return -std::numeric_limits<double>::infinity();
    return std::log(l.a) - std::log(l.s);
}

/// Where the last level of a timestep-built sequence sits (after the last timestep).
enum class final_level {
    zero,        ///< σ = 0: ᾱ = 1 (DDIM set_alpha_to_one; diffusers final_sigmas_type="zero")
    sigma_min,   ///< ᾱ_0, the first training level (set_alpha_to_one=false; final_sigmas_type="sigma_min")
};

class level_sequence {
public:
    using timestep_map = std::function<double(double sigma)>;

    level_sequence() = default;

    /// Levels given as σ_0 > ... > σ_N >= 0 in a convention; timesteps from `map` when given.
    level_sequence(std::vector<double> sigmas, state_space space, timestep_map map = {})
        : space_(space), map_(std::move(map)) {
        set(std::move(sigmas), {});
    }

    /// VE levels (1, σ_i).
    static level_sequence ve(std::vector<double> sigmas, timestep_map map = {}) {
        return level_sequence(std::move(sigmas), state_space::ve, std::move(map));
    }
    /// VP levels (1/√(1+σ²), σ/√(1+σ²)).
    static level_sequence vp(std::vector<double> sigmas, timestep_map map = {}) {
        return level_sequence(std::move(sigmas), state_space::vp, std::move(map));
    }

    /// The σ → fractional-timestep map of a discrete schedule (schedules::sigma_to_t on its
    /// σ table; diffusers `_sigma_to_t`, k-diffusion `sigma_to_t`).
    static timestep_map timesteps_of(const schedules::discrete_schedule& schedule) {
        return [table = schedule.sigmas_ve()](double sigma) { return schedules::sigma_to_t(table, sigma); };
    }

    /// The levels of training timesteps t_0 > t_1 > ... of a discrete schedule, then one final
    /// level (`last`), in a convention. VP levels are the schedule's (√ᾱ_t, √(1−ᾱ_t)) exactly;
    /// each carries its timestep t; the final level carries timestep 0 for sigma_min and none
    /// for zero. Intermediate levels (at_sigma) get timesteps from the schedule's σ → t map.
    static level_sequence from_timesteps(const schedules::discrete_schedule& schedule, std::span<const int> timesteps,
                                         final_level last, state_space space = state_space::vp) {
        const int T = schedule.num_train_timesteps();
        require(!timesteps.empty(), "timesteps.size()", timesteps.size(), ">= 1");
        std::vector<double> sigmas;
        std::vector<std::optional<double>> ts;
        for (std::size_t k = 0; k < timesteps.size(); ++k) {
            const int t = timesteps[k];
            require(t >= 0 && t < T, "timesteps[" + std::to_string(k) + "]", t,
                    "a training timestep in [0, " + std::to_string(T - 1) + "]");
            sigmas.push_back(schedule.sigma_ve(t));
            ts.emplace_back(static_cast<double>(t));
        }
        if (last == final_level::zero) {
            sigmas.push_back(0.0);
            ts.emplace_back();
        } else {
            sigmas.push_back(schedule.sigma_ve(0));
            ts.emplace_back(0.0);
        }
        level_sequence seq;
        seq.space_ = space;
        seq.map_ = timesteps_of(schedule);
        seq.set(std::move(sigmas), std::move(ts));
        // Exact VP levels from the schedule's own (√ᾱ, √(1−ᾱ)) (no σ round trip).
        if (space == state_space::vp)
            for (std::size_t k = 0; k < timesteps.size(); ++k) {
                const process::noise_level l = process::level_at(schedule, timesteps[k]);
                seq.levels_[k].a = l.a;
                seq.levels_[k].s = l.s;
            }
        return seq;
    }

    state_space space() const { return space_; }
    /// N + 1 (levels), so N = size() − 1 steps.
    std::size_t size() const { return levels_.size(); }
    bool empty() const { return levels_.empty(); }
    const noise_condition& operator[](std::size_t i) const { return levels_.at(i); }
    const std::vector<noise_condition>& levels() const { return levels_; }
    double sigma(std::size_t i) const { return sigmas_.at(i); }
    const std::vector<double>& sigmas() const { return sigmas_; }
    double lambda(std::size_t i) const { return lambda_of(levels_.at(i)); }
    bool has_timestep_map() const { return static_cast<bool>(map_); }
    const timestep_map& map() const { return map_; }

    /// The level of any σ >= 0 in this convention, with the map's timestep (none without a map
    /// or at σ = 0).
    noise_condition at_sigma(double sigma) const {
        std::optional<double> t;
        if (map_ && sigma > 0.0) t = map_(sigma);
        return level_of_sigma(space_, sigma, t);
    }

    /// The sequence from level k on (img2img / SDEdit start): levels k .. N.
    level_sequence tail(std::size_t k) const {
        require(k + 1 < size(), "k", k, "in [0, " + std::to_string(size() >= 2 ? size() - 2 : 0) + "] (at least one step left)");
        level_sequence out = *this;
        out.levels_.erase(out.levels_.begin(), out.levels_.begin() + static_cast<std::ptrdiff_t>(k));
        out.sigmas_.erase(out.sigmas_.begin(), out.sigmas_.begin() + static_cast<std::ptrdiff_t>(k));
        return out;
    }

private:
    void set(std::vector<double> sigmas, std::vector<std::optional<double>> ts) {
        require(sigmas.size() >= 2, "sigmas.size()", sigmas.size(), ">= 2 (N + 1 levels for N >= 1 steps)");
        for (std::size_t k = 0; k < sigmas.size(); ++k) {
            const std::string arg = "sigmas[" + std::to_string(k) + "]";
            const bool first = k == 0, last = k + 1 == sigmas.size();
            const double v = sigmas[k];
            const bool inf_ok = first && space_ == state_space::vp;
            if (std::isnan(v) || v < 0.0 || (std::isinf(v) && !inf_ok) || (v == 0.0 && !last))
                fail_argument(arg, v,
                              std::string(last ? "finite and >= 0" : "finite and > 0 (only the last σ may be 0)") +
                                  (first && space_ == state_space::vp ? " or +inf (VP start at zero terminal SNR)" : ""));
            if (k > 0 && !(v < sigmas[k - 1]))
                fail_argument(arg, v, "< sigmas[" + std::to_string(k - 1) + "] = " + std::to_string(sigmas[k - 1]) +
                                          " (strictly decreasing)");
        }
        sigmas_ = std::move(sigmas);
        levels_.clear();
        for (std::size_t k = 0; k < sigmas_.size(); ++k) {
            std::optional<double> t;
            if (k < ts.size())
                t = ts[k];
            else if (map_ && sigmas_[k] > 0.0)
                t = map_(sigmas_[k]);
            levels_.push_back(level_of_sigma(space_, sigmas_[k], t));
        }
    }

    std::vector<double> sigmas_;
    std::vector<noise_condition> levels_;
    state_space space_ = state_space::ve;
    timestep_map map_;
};

/// c_in for a state at `level` under `input`.
inline double model_input_scale_of(const noise_condition& level, model_input input) {
    if (input == model_input::state) return 1.0;
    return 1.0 / std::sqrt(level.a * level.a + level.s * level.s);
}

/// The level the model sees for a state at `level` under `input`: (c·a, c·s), same timestep.
inline noise_condition seen_level(const noise_condition& level, model_input input) {
    const double c = model_input_scale_of(level, input);
    return {c * level.a, c * level.s, level.timestep};
}

}  // namespace diffuse::samplers
