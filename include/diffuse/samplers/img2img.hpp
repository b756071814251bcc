#pragma once
// img2img / SDEdit (Meng et al. 2022): start a sampler part-way, from the input noised to the
// level of that step (docs/samplers/editing.md §2). diffusers' rule
// (StableDiffusionImg2ImgPipeline.get_timesteps), with N method steps and strength in [0, 1]:
//
//   init_timestep = min(int(N·strength), N)         (int(): truncation of the double product)
//   t_start       = max(N − init_timestep, 0)
//   begin index   = t_start·k                       (k = model evaluations per method step:
//                                                    diffusers' scheduler.order; 2 for Heun / DPM-2)
//   x             = a·x0 + s·z at sampler.state_level(begin)    (add_noise, sampler.hpp)
//
// Which evaluation index starts method step t_start:
//   * samplers with stages (num_method_steps() and stage_of(i) = {k, stage}, e.g. Heun, DPM-2):
//     N = num_method_steps() and begin = the first-stage evaluation of method step t_start
//     (= t_start·2 for Heun, as diffusers; right also where some method steps have one stage);
//   * otherwise k = sampler.evaluations_per_step() when the sampler has that member, else 1,
//     N = ⌈num_steps()/k⌉ and begin = t_start·k.
// An explicit evaluations_per_step argument (> 0) forces the second rule with that k. The
// solver order (order()) is NOT k: a multistep DPM-Solver++(2M) has order 2 and k = 1.
//
// strength = 1: the whole run, x = a_0·x0 + s_0·z at the first level (pure noise only where that
// level has a = 0, e.g. zero-terminal-SNR "trailing"; with diffusers' leading DDIM schedules a
// trace √ᾱ_{t_0}·x0 of the input stays, as in diffusers). strength = 0 — or any strength with
// int(N·strength) = 0 — runs no step: the begin index is num_steps(), x_out is x0 unchanged, and
// the sampler's begin index is left as it was (a sampler cannot start at num_steps(); do not
// call sample() then — img2img() below handles it).

#include <diffuse/backend/lincomb.hpp>
#include <diffuse/backend/randn.hpp>
#include <diffuse/core/error.hpp>
#include <diffuse/core/philox.hpp>
#include <diffuse/core/tensor.hpp>
#include <diffuse/models/denoiser.hpp>
#include <diffuse/samplers/sampler.hpp>

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <string>
#include <type_traits>
#include <utility>

namespace diffuse::samplers {

/// Sm reports its model evaluations per method step (diffusers' scheduler.order).
template <class Sm>
concept has_evaluations_per_step = requires(const Sm& s) {
    { s.evaluations_per_step() } -> std::convertible_to<std::size_t>;
};

/// Sm's steps are stages of method steps: num_method_steps() and stage_of(i) = {k, stage}.
template <class Sm>
concept has_method_stages = requires(const Sm& s, std::size_t i) {
    { s.num_method_steps() } -> std::convertible_to<std::size_t>;
    { s.stage_of(i).k } -> std::convertible_to<std::size_t>;
    { s.stage_of(i).stage } -> std::convertible_to<int>;
};

/// Sm can be started at a later step.
template <class Sm>
concept has_set_begin_index = requires(Sm& s, std::size_t k) { s.set_begin_index(k); };

/// s.evaluations_per_step() when Sm has it, else 1.
template <class Sm>
std::size_t evaluations_per_step_of(const Sm& s) {
    if constexpr (has_evaluations_per_step<Sm>)
        return static_cast<std::size_t>(s.evaluations_per_step());
    else
        return 1;
}

namespace detail::editing {
inline void require_strength(double strength) {
    require(std::isfinite(strength) && strength >= 0.0 && strength <= 1.0, "strength", strength,
            "in [0, 1] (0: return the input, 1: start at the first level)");
}
}  // namespace detail::editing

/// diffusers' t_start = max(N − min(int(N·strength), N), 0): the first method step that runs
/// (N when none does).
inline std::size_t img2img_start_step(std::size_t num_inference_steps, double strength) {
    detail::editing::require_strength(strength);
    require(num_inference_steps >= 1, "num_inference_steps", num_inference_steps, ">= 1");
    const double prod = static_cast<double>(num_inference_steps) * strength;  // Python's float product
    const auto init = std::min(static_cast<std::size_t>(prod), num_inference_steps);
    return num_inference_steps - init;
}

/// diffusers' img2img begin index t_start·k for N method steps (N·k when no step runs).
inline std::size_t img2img_begin_index(std::size_t num_inference_steps, double strength,
                                       std::size_t evaluations_per_step = 1) {
    require(evaluations_per_step >= 1, "evaluations_per_step", evaluations_per_step, ">= 1");
    return img2img_start_step(num_inference_steps, strength) * evaluations_per_step;
}

/// The number of method steps N of a sampler with num_steps() evaluations, k per method step.
inline std::size_t method_steps(std::size_t num_steps, std::size_t evaluations_per_step) {
    require(evaluations_per_step >= 1, "evaluations_per_step", evaluations_per_step, ">= 1");
    return (num_steps + evaluations_per_step - 1) / evaluations_per_step;
}

/// The img2img begin index of a sampler (see the file comment for the two rules);
/// num_steps() when no step runs. evaluations_per_step = 0: from the sampler.
template <class Sm>
std::size_t img2img_begin_index_of(const Sm& sampler, double strength, std::size_t evaluations_per_step = 0) {
    detail::editing::require_strength(strength);
    const std::size_t n = sampler.num_steps();
    require(n >= 1, "sampler.num_steps()", n, ">= 1 (call set_timesteps first)");
    if constexpr (has_method_stages<Sm>) {
        if (evaluations_per_step == 0) {
            const auto N = static_cast<std::size_t>(sampler.num_method_steps());
            const std::size_t t_start = img2img_start_step(N, strength);
            for (std::size_t i = 0; i < n; ++i) {
                const auto st = sampler.stage_of(i);
                if (static_cast<std::size_t>(st.k) == t_start && st.stage == 0) return i;
            }
            return n;
        }
    }
    const std::size_t k = evaluations_per_step == 0 ? evaluations_per_step_of(sampler) : evaluations_per_step;
    return std::min(img2img_begin_index(method_steps(n, k), strength, k), n);
}

/// img2img start with the noise given: sets the sampler's begin index and writes
/// x_out = a·x0 + s·noise at state_level(begin). Returns the begin index; num_steps() (and
/// x_out = x0, sampler untouched) when no step runs. evaluations_per_step = 0: from the sampler.
template <class Sm, class T, class S>
    requires has_set_begin_index<Sm>
std::size_t img2img_start_with_noise(Sm& sampler, double strength, std::type_identity_t<tensor_view<const T, S>> x0,
                                     std::type_identity_t<tensor_view<const T, S>> noise, tensor_view<T, S> x_out,
                                     std::size_t evaluations_per_step = 0) {
    require_same_shape(x0.shape(), "x0", x_out.shape(), "x_out");
    require_same_shape(noise.shape(), "noise", x_out.shape(), "x_out");
    const std::size_t begin = img2img_begin_index_of(sampler, strength, evaluations_per_step);
    if (begin >= sampler.num_steps()) {
        lincomb(x_out, 1.0, x0);
        return begin;
    }
    sampler.set_begin_index(begin);
    add_noise(sampler, x_out, x0, noise, begin);
    return begin;
}

/// img2img start: as img2img_start_with_noise with the noise drawn from rng (x0.numel()
/// normals; none when no step runs).
template <class Sm, class T, class S>
    requires has_set_begin_index<Sm>
std::size_t img2img_start(Sm& sampler, double strength, std::type_identity_t<tensor_view<const T, S>> x0,
                          philox_rng& rng, tensor_view<T, S> x_out, std::size_t evaluations_per_step = 0) {
    require_same_shape(x0.shape(), "x0", x_out.shape(), "x_out");
    const std::size_t begin = img2img_begin_index_of(sampler, strength, evaluations_per_step);
    if (begin >= sampler.num_steps()) {
        lincomb(x_out, 1.0, x0);
        return begin;
    }
    tensor<T, S> z(x_out.shape());
    randn(z.view(), rng);
    sampler.set_begin_index(begin);
    add_noise(sampler, x_out, x0, z.cview(), begin);
    return begin;
}

/// The whole img2img / SDEdit run: img2img_start, then sample() from the begin index (nothing
/// when no step runs: x_out = x0). Returns the begin index.
template <class M, class Sm, class T, class S, class Callback = no_callback, class Cond = no_condition>
    requires(models::denoiser<M, T, S, Cond> && stepping_sampler<Sm, T, S> && has_set_begin_index<Sm>)
std::size_t img2img(const M& model, Sm& sampler, double strength, std::type_identity_t<tensor_view<const T, S>> x0,
                    philox_rng& rng, tensor_view<T, S> x_out, Callback&& callback = {}, const Cond& cond = {},
                    std::size_t evaluations_per_step = 0) {
    const std::size_t begin = img2img_start<Sm, T, S>(sampler, strength, x0, rng, x_out, evaluations_per_step);
    if (begin < sampler.num_steps()) sample(model, sampler, x_out, rng, std::forward<Callback>(callback), cond);
    return begin;
}

}  // namespace diffuse::samplers
