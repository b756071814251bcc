#pragma once
// DDIM (Song, Meng & Ermon 2021, Eq. 12 and Eq. 16; diffusers scheduling_ddim.py; docs/samplers.md §2).
//
// On a discrete schedule ᾱ_t, step i goes from timestep t = timesteps()[i] to the previous level
// ᾱ' (ᾱ of the previous timestep t', or final_alpha_cumprod after the last step):
//
//   x0 = p_x·x + p_m·m,   eps = e_x·x + e_m·m          (m: the model output, any prediction type;
//                                                      (p_x, p_m), (e_x, e_m) = conversion_coeffs
//                                                      at a = √ᾱ_t, s = √(1−ᾱ_t))
//   σ_η² = η²·(1−ᾱ')/(1−ᾱ_t)·(1 − ᾱ_t/ᾱ')             (Eq. 16)
//   x'  = √ᾱ'·x0 + √(1 − ᾱ' − σ_η²)·eps + σ_η·z        (Eq. 12; z ~ N(0, I) only when η > 0)
//
// computed on the host in double as x' = c_x·x + c_m·m + c_z·z (ddim_coefficients) and applied
// with one lincomb. With clip_sample the x0 estimate is clamped to [−r, r] first and
// x' = √ᾱ'·clip(x0) + d·(e_x·x + e_m·m) + σ_η·z (eps from the UNclipped model output, diffusers'
// default use_clipped_model_output = false): one extra lincomb and one clamp.
//
// Previous timestep. By default t' is the next entry of the timestep sequence (prev_rule::lookup),
// which is right for every spacing and for custom sequences. diffusers' DDIMScheduler uses
// t' = t − T // N whatever the spacing (prev_rule::diffusers_subtract): the same for "leading"
// (and "trailing" when N divides T), different otherwise; select it for bitwise-level parity.
// A t' < 0 (or the end of the sequence) means ᾱ' = final_alpha_cumprod: 1 with
// set_alpha_to_one, else ᾱ_0.

#include <diffuse/backend/for_each.hpp>
#include <diffuse/backend/lincomb.hpp>
#include <diffuse/backend/randn.hpp>
#include <diffuse/core/error.hpp>
#include <diffuse/core/philox.hpp>
#include <diffuse/core/tensor.hpp>
#include <diffuse/models/denoiser.hpp>
#include <diffuse/process/parametrization.hpp>
#include <diffuse/samplers/sampler.hpp>
#include <diffuse/schedules/discrete_schedule.hpp>
#include <diffuse/schedules/timesteps.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace diffuse::samplers {

/// How DDIM finds the previous timestep t' of t.
enum class prev_rule {
    lookup,              ///< the next entry of timesteps() (default; right for any spacing)
    diffusers_subtract,  ///< t − T // N (diffusers DDIMScheduler.step; N = num_inference_steps)
};

struct ddim_config {
    double eta = 0.0;                                   ///< η in [0, 1]: 0 = DDIM ODE, 1 = DDPM posterior variance
    bool set_alpha_to_one = true;                       ///< final ᾱ' = 1 (true) or ᾱ_0 (false)
    bool clip_sample = false;                           ///< clamp the x0 estimate to [−clip_sample_range, clip_sample_range]
    double clip_sample_range = 1.0;
    schedules::spacing timestep_spacing = schedules::spacing::leading;  ///< for set_timesteps(N)
    int steps_offset = 0;                               ///< for leading spacing
    prev_rule previous = prev_rule::lookup;
    prediction_type prediction = prediction_type::epsilon;  ///< what step(m, i, x, rng) assumes m is
};

/// x' = c_x·x + c_m·m + c_z·z for one DDIM step without clipping; d = √(1−ᾱ'−σ_η²) and
/// sqrt_ab_prev = √ᾱ' are returned for the clipped form.
struct ddim_coeffs {
    double c_x, c_m, c_z;
    double sqrt_ab_prev, d;
    double p_x, p_m;  ///< x0 = p_x·x + p_m·m
    double e_x, e_m;  ///< eps = e_x·x + e_m·m
};

/// The DDIM coefficient table of one step from level (a, s) = (√ᾱ_t, √(1−ᾱ_t)) to ᾱ'.
/// a, s are passed separately (not recomputed from ᾱ_t) so callers keep the schedule's precision.
inline ddim_coeffs ddim_coefficients(prediction_type from, double a, double s, double alpha_bar_prev, double eta) {
    require(std::isfinite(eta) && eta >= 0.0 && eta <= 1.0, "eta", eta, "in [0, 1]");
    require(std::isfinite(alpha_bar_prev) && alpha_bar_prev > 0.0 && alpha_bar_prev <= 1.0, "alpha_bar_prev",
            alpha_bar_prev, "in (0, 1]");
    const process::conversion px = process::conversion_coeffs(from, prediction_type::sample, a, s);
    const process::conversion pe = process::conversion_coeffs(from, prediction_type::epsilon, a, s);
    const double ab_t = a * a / (a * a + s * s);
    const double one_minus_prev = 1.0 - alpha_bar_prev;
    double var = 0.0;
    if (eta > 0.0 && s > 0.0) var = one_minus_prev / (s * s / (a * a + s * s)) * (1.0 - ab_t / alpha_bar_prev);
    var = std::max(var, 0.0);
    const double std_eta = eta * std::sqrt(var);
    const double d = std::sqrt(std::max(one_minus_prev - std_eta * std_eta, 0.0));
    const double sa = std::sqrt(alpha_bar_prev);
    ddim_coeffs c{};
    c.p_x = px.c_xt;
    c.p_m = px.c_value;
    c.e_x = pe.c_xt;
    c.e_m = pe.c_value;
    if (from == prediction_type::sample) {  // conversion_coeffs(x, x) = (0, 1): x0 = m
        c.p_x = 0.0;
        c.p_m = 1.0;
    }
    if (from == prediction_type::epsilon) {
        c.e_x = 0.0;
        c.e_m = 1.0;
    }
    c.c_x = sa * c.p_x + d * c.e_x;
    c.c_m = sa * c.p_m + d * c.e_m;
    c.c_z = std_eta;
    c.sqrt_ab_prev = sa;
    c.d = d;
    return c;
}

namespace detail {

template <class T>
struct clamp_op {
    T* x;
    T lo, hi;
    DIFFUSE_HOST_DEVICE void operator()(std::int64_t i) const {
        const T v = x[i];
        x[i] = v < lo ? lo : (v > hi ? hi : v);
    }
};

}  // namespace detail

class ddim_sampler : public begin_index_support {
public:
    explicit ddim_sampler(schedules::discrete_schedule schedule, ddim_config config = {})
        : schedule_(std::move(schedule)), config_(config) {
        require(std::isfinite(config_.eta) && config_.eta >= 0.0 && config_.eta <= 1.0, "eta", config_.eta,
                "in [0, 1] (0: deterministic DDIM, 1: DDPM posterior variance)");
        require(std::isfinite(config_.clip_sample_range) && config_.clip_sample_range > 0.0, "clip_sample_range",
                config_.clip_sample_range, "a finite number > 0");
        if (!config_.set_alpha_to_one && schedule_.alpha_bar(0) <= 0.0)
            fail_argument("alphas_cumprod[0]", schedule_.alpha_bar(0), "> 0 when set_alpha_to_one = false");
    }

    const schedules::discrete_schedule& schedule() const { return schedule_; }
    const ddim_config& config() const { return config_; }
    int num_train_timesteps() const { return schedule_.num_train_timesteps(); }
    double final_alpha_cumprod() const { return config_.set_alpha_to_one ? 1.0 : schedule_.alpha_bar(0); }

    /// N inference steps with the configured spacing (schedules::ddim_timesteps); 1 <= N <= T.
    void set_timesteps(int num_inference_steps) {
        timesteps_ = schedules::ddim_timesteps(num_train_timesteps(), num_inference_steps, config_.timestep_spacing,
                                               config_.steps_offset);
        num_inference_steps_ = num_inference_steps;
        reset_begin_index();
    }

    /// An explicit sequence, strictly decreasing, in [0, T − 1]. With prev_rule::diffusers_subtract
    /// the stride is T // num_inference_steps (default: the sequence length).
    void set_timesteps(std::vector<int> timesteps, int num_inference_steps = -1) {
        const int T = num_train_timesteps();
        detail::require_training_timesteps(timesteps, T);
        const int n = num_inference_steps < 0 ? static_cast<int>(timesteps.size()) : num_inference_steps;
        require(n >= 1 && n <= T, "num_inference_steps", n, "in [1, " + std::to_string(T) + "]");
        timesteps_ = std::move(timesteps);
        num_inference_steps_ = n;
        reset_begin_index();
    }

    /// Start sample() at step k (img2img / SDEdit: x = add_noise(x0, z, k) first).
    void set_begin_index(std::size_t k) { store_begin_index(k, num_steps(), "ddim_sampler"); }

    const std::vector<int>& timesteps() const { return timesteps_; }
    std::size_t num_steps() const { return timesteps_.size(); }
    double timestep(std::size_t i) const {
        detail::require_step_index(i, num_steps(), "ddim_sampler");
        return timesteps_[i];
    }
    int order() const { return 1; }
    double init_noise_sigma() const { return 1.0; }
    double model_input_scale(std::size_t) const { return 1.0; }
    noise_condition model_level(std::size_t i) const {
        detail::require_step_index(i, num_steps(), "ddim_sampler");
        return noise_condition::at(schedule_, timesteps_[i]);
    }
    /// x at step i is at the model's level (√ᾱ_t, √(1−ᾱ_t)).
    noise_condition state_level(std::size_t i) const { return model_level(i); }
    template <class T, class S>
    void scale_model_input(tensor_view<T, S> out, std::type_identity_t<tensor_view<const T, S>> x, std::size_t) const {
        lincomb(out, 1.0, x);
    }

    /// The previous timestep of step i: t' >= 0, or −1 meaning final_alpha_cumprod.
    int prev_timestep(std::size_t i) const {
        detail::require_step_index(i, num_steps(), "ddim_sampler");
        if (config_.previous == prev_rule::diffusers_subtract)
            return std::max(timesteps_[i] - num_train_timesteps() / num_inference_steps_, -1);
        return i + 1 < timesteps_.size() ? timesteps_[i + 1] : -1;
    }
    /// ᾱ' of step i.
    double alpha_bar_prev(std::size_t i) const {
        const int tp = prev_timestep(i);
        return tp >= 0 ? schedule_.alpha_bar(tp) : final_alpha_cumprod();
    }

    /// The coefficient table of step i for a `from` model output.
    ddim_coeffs coefficients(prediction_type from, std::size_t i) const {
        const int t = timesteps_.at(i);
        return ddim_coefficients(from, schedule_.alpha(t), schedule_.sigma(t), alpha_bar_prev(i), config_.eta);
    }

    /// x <- x' (step i), m a `from` prediction at (x, model_level(i)). Draws x.numel() normals from
    /// rng when η > 0 (every step, even where σ_η = 0), none when η = 0.
    template <class T, class S>
    void step(std::type_identity_t<tensor_view<const T, S>> m, prediction_type from, std::size_t i,
              tensor_view<T, S> x, philox_rng& rng) const {
        detail::require_step_index(i, num_steps(), "ddim_sampler.step");
        detail::require_step_tensors<T, S>(m, x, "ddim_sampler.step");
        const ddim_coeffs c = coefficients(from, i);
        const tensor_view<const T, S> xc = x;
        tensor<T, S> z;
        if (config_.eta > 0.0) {
            z = tensor<T, S>(x.shape());
            randn(z.view(), rng);
        }
        if (!config_.clip_sample) {
            if (config_.eta > 0.0)
                lincomb(x, c.c_x, xc, c.c_m, m, c.c_z, z.cview());
            else
                lincomb(x, c.c_x, xc, c.c_m, m);
            return;
        }
        tensor<T, S> x0(x.shape());
        lincomb(x0.view(), c.p_x, xc, c.p_m, m);
        const T r = static_cast<T>(config_.clip_sample_range);
        for_each<S>(x0.numel(), detail::clamp_op<T>{x0.view().data(), static_cast<T>(-r), r});
        if (config_.eta > 0.0)
            lincomb(x, c.sqrt_ab_prev, x0.cview(), c.d * c.e_x, xc, c.d * c.e_m, m, c.c_z, z.cview());
        else
            lincomb(x, c.sqrt_ab_prev, x0.cview(), c.d * c.e_x, xc, c.d * c.e_m, m);
    }

    /// step with the configured prediction type.
    template <class T, class S>
    void step(std::type_identity_t<tensor_view<const T, S>> m, std::size_t i, tensor_view<T, S> x,
              philox_rng& rng) const {
        step<T, S>(m, config_.prediction, i, x, rng);
    }

    /// The step index of training timestep t in timesteps() (diffusers indexes by t).
    std::size_t index_for_timestep(int t) const {
        for (std::size_t k = 0; k < timesteps_.size(); ++k)
            if (timesteps_[k] == t) return k;
        fail_argument("timestep", t, "one of timesteps() (set_timesteps first)");
    }

private:
    schedules::discrete_schedule schedule_;
    ddim_config config_;
    std::vector<int> timesteps_;
    int num_inference_steps_ = 0;
};

}  // namespace diffuse::samplers
