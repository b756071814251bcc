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
// The driver sample(model, sampler, x, rng, callback, cond) owns the loop: for each i it calls
// the model at (c_in·x, model_level(i), cond), then sampler.step(out, model.prediction(), i, x,
// rng), then callback(step_info{i, timestep, level}, x). It is exactly the loop a user would
// write with the stepping API (tests/samplers/test_driver.cpp checks bitwise equality).

#include <diffuse/backend/lincomb.hpp>
#include <diffuse/core/error.hpp>
#include <diffuse/core/philox.hpp>
#include <diffuse/core/tensor.hpp>
#include <diffuse/models/denoiser.hpp>

#include <concepts>
#include <cstddef>
#include <type_traits>
#include <utility>

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
    { cs.model_level(i) } -> std::same_as<noise_condition>;
    { cs.model_input_scale(i) } -> std::convertible_to<double>;
    { cs.init_noise_sigma() } -> std::convertible_to<double>;
    { cs.order() } -> std::convertible_to<int>;
    s.step(m, prediction_type::epsilon, i, x, rng);
};

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
    for (std::size_t i = 0; i < n; ++i) {
        const noise_condition level = sampler.model_level(i);
        const double c_in = sampler.model_input_scale(i);
        tensor_view<const T, S> model_input = x;
        if (c_in != 1.0) {
            if (scaled.shape() != x.shape()) scaled = tensor<T, S>(x.shape());
            lincomb(scaled.view(), c_in, tensor_view<const T, S>(x));
            model_input = scaled.cview();
        }
        model(out.view(), model_input, level, cond);
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
