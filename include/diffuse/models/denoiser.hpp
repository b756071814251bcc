#pragma once
// The Denoiser concept (DESIGN.md, "The Denoiser concept"; docs/denoisers.md §1–§2).
//
// A denoiser is an object `model` with
//   prediction_type model.prediction() const          what it predicts: epsilon, sample (x0), v, score
//   model(out, x_t, level, cond)                      writes that prediction for x_t into out
// where
//   out    tensor_view<T, S>        [B, ...], the same shape as x_t; fully overwritten
//   x_t    tensor_view<const T, S>  [B, ...], the noisy batch x_t = a·x0 + s·eps (one level for the batch)
//   level  noise_condition          (a, s) of that path, σ = s/a, and the training timestep if any
//   cond   no_condition{} (unconditional) or class_labels (std::span<const int>, one label per
//          batch item, labels.size() == B); guidance wrappers add their own condition types
// T is float or double, S host_space or device_space, the same for out and x_t.
//
// Call contract:
//   * out must not alias x_t (a model may read x_t after it has started writing out); the
//     adapters in this folder check it and throw diffuse::error.
//   * level is at a valid point: a, s finite, >= 0, not both 0 (check_noise_condition).
//   * A denoiser is const-callable and holds no per-call state, so one object can serve
//     several samplers; errors are diffuse::error naming argument, value and what is allowed.
//   * A denoiser written against x_t in VP form sees a = √ᾱ, s = √(1−ᾱ); one written in
//     σ-space (EDM, k-diffusion) uses x_ve = x_t/a and σ = level.sigma() (closed_forms A10:
//     D_ve(x_ve; σ) = x0_hat(a·x_ve; a, s) exactly), so both kinds take the same argument.

#include <diffuse/core/error.hpp>
#include <diffuse/core/memory_space.hpp>
#include <diffuse/core/tensor.hpp>
#include <diffuse/process/forward.hpp>
#include <diffuse/process/parametrization.hpp>
#include <diffuse/schedules/discrete_schedule.hpp>

#include <cmath>
#include <concepts>
#include <cstddef>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <type_traits>

namespace diffuse::models {

using process::prediction_type;

/// The noise level a sampler passes to a denoiser: x_t = a·x0 + s·eps.
struct noise_condition {
    double a = 1.0;  ///< signal scale (VP: √ᾱ; VE / EDM: 1)
    double s = 0.0;  ///< noise standard deviation (VP: √(1−ᾱ); VE / EDM: σ)
    /// The time input a trained network was conditioned on, when there is one: the discrete
    /// training timestep t in [0, T−1] (diffusers indexing; fractional for interpolated grids)
    /// or a continuous time. Exact models ignore it; networks trained on timesteps need it.
    std::optional<double> timestep{};
    /// Where the call sits in a sampling run, when known: the driver (samplers/sampler.hpp) sets
    /// step = i, the index of the model evaluation, and num_steps = sampler.num_steps(). Models
    /// ignore them; guidance uses them for intervals and schedules given in steps (guidance/).
    /// A loop of one's own that wants those sets them the same way.
    std::optional<std::size_t> step{};
    std::size_t num_steps = 0;

    /// σ = s/a, the VE / EDM noise level of the same signal-to-noise ratio (+inf at a = 0).
    double sigma() const {
        if (a == 0.0) return std::numeric_limits<double>::infinity();
        return s / a;
    }
    /// (a, s) as process::noise_level.
    process::noise_level level() const { return {a, s}; }

    /// From a level of process/ (vp_level, ve_level, vp_level_from_sigma, level_at).
    static noise_condition from_level(process::noise_level l, std::optional<double> timestep = {}) {
        return {l.a, l.s, timestep};
    }
    /// VP at ᾱ in [0, 1]: (√ᾱ, √(1−ᾱ)).
    static noise_condition vp(double alpha_bar, std::optional<double> timestep = {}) {
        return from_level(process::vp_level(alpha_bar), timestep);
    }
    /// VE / EDM at σ >= 0: (1, σ).
    static noise_condition ve(double sigma) { return from_level(process::ve_level(sigma)); }
    /// Training timestep t of a discrete schedule: (√ᾱ_t, √(1−ᾱ_t)) with timestep = t.
    static noise_condition at(const schedules::discrete_schedule& schedule, int t) {
        return from_level(process::level_at(schedule, t), static_cast<double>(t));
    }
};

/// Throws diffuse::error unless a, s are finite, >= 0 and not both 0.
inline void check_noise_condition(const noise_condition& level) {
    require_nonnegative(level.a, "level.a");
    require_nonnegative(level.s, "level.s");
    if (level.a == 0.0 && level.s == 0.0)
        fail_argument("level.s", level.s, "> 0 when level.a = 0 (x_t = a·x0 + s·eps needs a > 0 or s > 0)");
    if (level.timestep) require_finite(*level.timestep, "level.timestep");
    if (level.step && *level.step >= level.num_steps)
        fail_argument("level.step", *level.step,
                      "< level.num_steps = " + std::to_string(level.num_steps) + " (a step index of the run)");
}

/// The condition of an unconditional call.
struct no_condition {};

/// Class labels, one per batch item (labels[b] conditions x_t.item(b)).
using class_labels = std::span<const int>;

/// M is a denoiser for tensors of element type T in memory space Space under condition Cond:
/// it declares its prediction type and writes it with model(out, x_t, level, cond).
template <class M, class T, class Space = default_space, class Cond = no_condition>
concept denoiser = requires(const M& model, tensor_view<T, Space> out, tensor_view<const T, Space> x_t,
                            const noise_condition& level, const Cond& cond) {
    { model.prediction() } -> std::same_as<prediction_type>;
    model(out, x_t, level, cond);
};

/// A non-owning denoiser referring to another one (which must outlive it): lets an adapter
/// wrap a model without copying it, as in as_prediction(by_ref(unet), prediction_type::sample).
template <class M>
class denoiser_ref {
public:
    explicit denoiser_ref(const M& model) : model_(&model) {}
    prediction_type prediction() const { return model_->prediction(); }
    const M& get() const { return *model_; }

    template <class T, class S, class Cond>
        requires denoiser<M, T, S, Cond>
    void operator()(tensor_view<T, S> out, std::type_identity_t<tensor_view<const T, S>> x_t,
                    const noise_condition& level, const Cond& cond) const {
        (*model_)(out, x_t, level, cond);
    }

private:
    const M* model_;
};

template <class M>
denoiser_ref<M> by_ref(const M& model) {
    return denoiser_ref<M>(model);
}

namespace detail {

/// out and x_t: equal shapes, rank >= 1 ([B, ...]), and distinct memory.
template <class T, class S>
void check_call_tensors(tensor_view<T, S> out, tensor_view<const T, S> x_t, const char* who) {
    require(x_t.rank() >= 1, std::string(who) + ": x_t.rank()", x_t.rank(), ">= 1 (a batch [B, ...])");
    require_same_shape(out.shape(), "out", x_t.shape(), "x_t");
    if (!out.empty() && static_cast<const void*>(out.data()) == static_cast<const void*>(x_t.data()))
        fail(std::string(who) + ": out aliases x_t; expected distinct memory (a denoiser may read x_t after writing out)");
}

}  // namespace detail

}  // namespace diffuse::models
