#pragma once
// The sampler interface and the driver (DESIGN.md, "Samplers are coefficient tables", "Two API
// levels"; docs/samplers.md §1).
//
// A stepping sampler S (ddim_sampler, euler_sampler, ...) walks a fixed sequence of num_steps()
// steps. Step i evaluates the model once and moves x from level i to level i + 1:
//
//   s.num_steps()                    the number of steps (model evaluations for order-1 samplers)
//   s.timestep(i)                    what the callback reports for step i: the training timestep
//                                    (DDIM) or σ (Euler)
//   s.state_level(i)                 the level (a, s) of x when step i begins (levels.hpp); add_noise
//                                    puts clean data there (img2img, tests)
//   s.model_level(i)                 the noise_condition the denoiser must be called with at step i
//   s.model_input_scale(i)           c_in: the denoiser sees c_in·x (1 for DDIM and VE-level Euler)
//   s.scale_model_input(out, x, i)   out = c_in·x (for user loops; diffusers' scale_model_input)
//   s.init_noise_sigma()             the standard deviation of the initial noise x_T = init_noise_sigma·z
//   s.order()                        the solver order (1 for DDIM and Euler)
//   s.step(m, type, i, x, rng)       x <- x at level i+1, given the model output m (a `type`
//                                    prediction at (c_in·x, model_level(i))); one lincomb, plus
//                                    one randn for stochastic samplers
//   s.step(m, i, x, rng)             the same with the sampler's configured prediction type
//
// Optional members, used by the driver when present (has_prepare_step, has_begin_index):
//   s.prepare_step(i, x, rng)        changes x before the model call of step i (churn: x += noise
//                                    to raise σ to σ̂; RePaint: re-noising jumps)
//   s.begin_index()                  the first step to run (set_begin_index(k); img2img / SDEdit)
//
// Multi-evaluation methods (Heun, DPM-2, singlestep DPM-Solver, ...) count model evaluations as
// steps, as diffusers does: step i may be the second stage of a method step, with the
// first stage's values kept inside the sampler; history-keeping samplers (multistep, PLMS,
// UniPC) restart their history at begin_index(). step() is therefore non-const for them.
//
// The driver sample(model, sampler, x, rng, callback, cond) owns the loop: for each i from
// begin_index() it calls prepare_step (if any), the model at (c_in·x, model_level(i), cond) with
// level.step = i and level.num_steps = n set, checks the output is finite (one max|·| pass; a
// diffuse::error names the step and timestep otherwise), then sampler.step(out, model.prediction(), i, x, rng), then
// callback(step_info{i, timestep, level}, x). It is exactly the loop a user would write with the
// stepping API (tests/samplers/test_driver.cpp checks bitwise equality).

#include <diffuse/backend/lincomb.hpp>
#include <diffuse/backend/reduce.hpp>
#include <diffuse/core/error.hpp>
#include <diffuse/core/philox.hpp>
#include <diffuse/core/tensor.hpp>
#include <diffuse/models/denoiser.hpp>
#include <diffuse/samplers/levels.hpp>

#include <cmath>
#include <concepts>
#include <cstddef>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace diffuse::samplers {

using models::noise_condition;
using models::no_condition;
using process::prediction_type;

/// What the driver's callback is told after step `index` has been taken.
struct step_info {
    std::size_t index = 0;        ///< step number, 0 .. num_steps() − 1
    std::size_t num_steps = 0;    ///< total number of steps
    double timestep = 0.0;        ///< sampler.timestep(index): training timestep (DDIM) or σ (Euler)
    noise_condition level{};      ///< the level the model was evaluated at
};

/// The callback that does nothing.
struct no_callback {
    template <class... A>
    void operator()(A&&...) const {}
};

/// Sm is a stepping sampler for tensors of T in memory space S.
template <class Sm, class T, class S = default_space>
concept stepping_sampler = requires(Sm& s, const Sm& cs, tensor_view<const T, S> m, tensor_view<T, S> x,
                                    philox_rng& rng, std::size_t i) {
    { cs.num_steps() } -> std::convertible_to<std::size_t>;
    { cs.timestep(i) } -> std::convertible_to<double>;
    { cs.state_level(i) } -> std::same_as<noise_condition>;
    { cs.model_level(i) } -> std::same_as<noise_condition>;
    { cs.model_input_scale(i) } -> std::convertible_to<double>;
    { cs.init_noise_sigma() } -> std::convertible_to<double>;
    { cs.order() } -> std::convertible_to<int>;
    s.step(m, prediction_type::epsilon, i, x, rng);
};

/// Sm changes x before the model call of a step (churn, RePaint jumps).
template <class Sm, class T, class S = default_space>
concept has_prepare_step = requires(Sm& s, tensor_view<T, S> x, philox_rng& rng, std::size_t i) {
    s.prepare_step(i, x, rng);
};

/// Sm can start at a later step (img2img / SDEdit).
template <class Sm>
concept has_begin_index = requires(const Sm& s) {
    { s.begin_index() } -> std::convertible_to<std::size_t>;
};

/// The first step a driver runs: s.begin_index() when Sm has one, else 0.
template <class Sm>
std::size_t begin_index_of(const Sm& s) {
    if constexpr (has_begin_index<Sm>)
        return s.begin_index();
    else
        return 0;
}

/// A base for samplers that can start at a later step: set_begin_index(k) / begin_index()
/// (diffusers' set_begin_index; k counts steps as num_steps() does).
class begin_index_support {
public:
    std::size_t begin_index() const { return begin_; }

protected:
    void store_begin_index(std::size_t k, std::size_t num_steps, const char* who) {
        if (k >= num_steps)
            fail_argument(std::string(who) + ".set_begin_index: k", k,
                          "in [0, " + std::to_string(num_steps) + ") (num_steps(); call set_timesteps first)");
        begin_ = k;
    }
    void reset_begin_index() { begin_ = 0; }

private:
    std::size_t begin_ = 0;
};

/// out = a·x0 + s·noise at the level x has when step i begins (sampler.state_level(i)); the
/// start of img2img / SDEdit (diffusers' scheduler.add_noise at timesteps[i]).
template <class Sm, class T, class S>
void add_noise(const Sm& sampler, tensor_view<T, S> out, std::type_identity_t<tensor_view<const T, S>> x0,
               std::type_identity_t<tensor_view<const T, S>> noise, std::size_t i) {
    require_same_shape(x0.shape(), "x0", out.shape(), "out");
    require_same_shape(noise.shape(), "noise", out.shape(), "out");
    const noise_condition l = sampler.state_level(i);
    lincomb(out, l.a, x0, l.s, noise);
}

namespace detail {

inline void require_step_index(std::size_t i, std::size_t n, const char* who) {
    if (i >= n)
        fail_argument(std::string(who) + ": step index", i,
                      "in [0, " + std::to_string(n) + ") (num_steps(); call set_timesteps first)");
}

template <class T, class S>
void require_step_tensors(tensor_view<const T, S> m, tensor_view<T, S> x, const char* who) {
    require(x.rank() >= 1, std::string(who) + ": x.rank()", x.rank(), ">= 1 (a batch [B, ...])");
    require_same_shape(m.shape(), "model_output", x.shape(), "x");
    if (!x.empty() && static_cast<const void*>(m.data()) == static_cast<const void*>(x.data()))
        fail(std::string(who) + ": model_output aliases x; expected distinct memory");
}

/// A custom timestep sequence: non-empty, every entry a training timestep in [0, T − 1], strictly
/// decreasing (DDIM, DDPM and PNDM set_timesteps(vector)); errors name the entry.
inline void require_training_timesteps(const std::vector<int>& timesteps, int T) {
    require(!timesteps.empty(), "timesteps.size()", timesteps.size(), ">= 1");
    for (std::size_t k = 0; k < timesteps.size(); ++k) {
        const std::string arg = "timesteps[" + std::to_string(k) + "]";
        require(timesteps[k] >= 0 && timesteps[k] < T, arg, timesteps[k],
                "a training timestep in [0, " + std::to_string(T - 1) + "]");
        if (k > 0 && !(timesteps[k] < timesteps[k - 1]))
            fail_argument(arg, timesteps[k], "< timesteps[" + std::to_string(k - 1) + "] = " +
                                                 std::to_string(timesteps[k - 1]) + " (strictly decreasing)");
    }
}

/// The model output of step i must be finite: one max|·| pass (NaN propagates through it).
template <class T, class S>
void require_finite_output(tensor_view<const T, S> out, std::size_t i, std::size_t n, double timestep) {
    const double m = max_abs(out);
    if (!std::isfinite(m))
        fail("sample: the model output at step " + std::to_string(i) + " of " + std::to_string(n) + " (timestep " +
             std::to_string(timestep) + ") is not finite (max |output| = " + std::to_string(m) +
             "); expected finite values");
}

}  // namespace detail

/// The driver: runs every step of `sampler` on x in place (x holds x_T on entry, the sample on
/// exit). callback(const step_info&, tensor_view<const T, S> x) is called after each step with
/// the new x. cond is passed to the model unchanged (no_condition{} or class_labels, ...).
template <class M, class Sm, class T, class S, class Callback = no_callback, class Cond = no_condition>
    requires(models::denoiser<M, T, S, Cond> && stepping_sampler<Sm, T, S>)
void sample(const M& model, Sm& sampler, tensor_view<T, S> x, philox_rng& rng, Callback&& callback = {},
            const Cond& cond = {}) {
    const std::size_t n = sampler.num_steps();
    require(n >= 1, "sampler.num_steps()", n, ">= 1 (call set_timesteps first)");
    tensor<T, S> out(x.shape());
    tensor<T, S> scaled;  // c_in·x, allocated only when some c_in != 1
    for (std::size_t i = begin_index_of(sampler); i < n; ++i) {
        if constexpr (has_prepare_step<Sm, T, S>) sampler.prepare_step(i, x, rng);
        noise_condition level = sampler.model_level(i);
        level.step = i;  // guidance schedules and intervals in steps read these
        level.num_steps = n;
        const double c_in = sampler.model_input_scale(i);
        tensor_view<const T, S> model_input = x;
        if (c_in != 1.0) {
            if (scaled.shape() != x.shape()) scaled = tensor<T, S>(x.shape());
            lincomb(scaled.view(), c_in, tensor_view<const T, S>(x));
            model_input = scaled.cview();
        }
        model(out.view(), model_input, level, cond);
        detail::require_finite_output(out.cview(), i, n, sampler.timestep(i));
        sampler.step(out.cview(), model.prediction(), i, x, rng);
        callback(step_info{i, n, sampler.timestep(i), level}, tensor_view<const T, S>(x));
    }
}

/// sample() on an owning tensor.
template <class M, class Sm, class T, class S, class Callback = no_callback, class Cond = no_condition>
    requires(models::denoiser<M, T, S, Cond> && stepping_sampler<Sm, T, S>)
void sample(const M& model, Sm& sampler, tensor<T, S>& x, philox_rng& rng, Callback&& callback = {},
            const Cond& cond = {}) {
    sample(model, sampler, x.view(), rng, std::forward<Callback>(callback), cond);
}

}  // namespace diffuse::samplers
