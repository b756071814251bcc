#pragma once
// DDPM ancestral sampling (Ho et al. 2020, Alg. 2; respaced as in Nichol & Dhariwal 2021, §4;
// diffusers DDPMScheduler.step, guided-diffusion GaussianDiffusion.p_sample; docs/samplers/ddpm.md).
//
// On a discrete schedule ᾱ_t, step i goes from timestep t = timesteps()[i] to the previous
// timestep t' (the next entry of timesteps(); after the last entry t' = −1 and ᾱ' = 1). With the
// respaced pair's own β (diffusers `previous_timestep`, guided-diffusion SpacedDiffusion):
//
//   α_{t|t'} = ᾱ_t/ᾱ',  β = 1 − α_{t|t'}
//   x0  = p_x·x + p_m·m                      (m: the model output, any prediction type;
//                                             then clip_sample / dynamic thresholding)
//   μ   = c_x0·x0 + c_xt·x,   c_x0 = √ᾱ'·β/(1 − ᾱ_t),  c_xt = √α_{t|t'}·(1 − ᾱ')/(1 − ᾱ_t)
//   x'  = μ + σ·z,  z ~ N(0, I), σ² from the variance type (process/posterior.hpp):
//         fixed_small  σ² = β̃ = (1 − ᾱ')/(1 − ᾱ_t)·β       fixed_large  σ² = β
//         learned      σ² from the model's variance output v (see `variance_convention`)
//         learned_range  log σ² = f·log β + (1 − f)·min_log, f = (v + 1)/2
//
// Without clipping this is x' = c_x·x + c_m·m + σ·z, one lincomb (coefficients in double on the
// host). With clip_sample / thresholding: x0 into a temporary, clamp or threshold it, then one
// lincomb. The learned types add σ(v)·z element-wise in one more pass.
//
// Conventions (variance_convention; the two peers differ only here):
//   improved_diffusion (default; Ho et al. Alg. 2, improved/guided-diffusion p_sample)
//     - no noise on the last step (the one to ᾱ' = 1), whatever its timestep;
//     - the last step's reported log σ² is posterior_log_variance_clipped: log β̃ of the step
//       before it (for N = 1 steps there is none: the diffusers floor below is used);
//       fixed_large reports β̃ of the step before it there ("append(posterior_variance[1], betas[1:])");
//     - learned: v is log σ² (GD's ModelVarType.LEARNED).
//   diffusers (DDPMScheduler)
//     - noise whenever the timestep t > 0, also on a last step with t > 0 (trailing spacing,
//       steps_offset); there σ² = max(β̃, 1e-20) = 1e-20 for fixed_small but β = 1 − ᾱ_t for
//       fixed_large;
//     - β̃ is clamped to >= 1e-20 everywhere (so `variance` at t = 0 is 1e-20);
//     - learned: v is σ² itself (`_get_variance` returns it and step takes its square root;
//       v < 0 gives NaN, as in diffusers).
//   Both take learned_range's upper end as log β and its lower end as the fixed_small log σ² of
//   the convention. With the default timesteps (all T, or leading with steps_offset = 0, both of
//   which end at t = 0) the two conventions sample identically for every fixed type and for
//   learned_range.
//   diffusers' "fixed_small_log" / "fixed_large_log" name the same variances (the first is
//   σ = exp(½ log β̃), the second is GLIDE's log β: its use in DDPMScheduler.step takes the
//   square root of a logarithm and yields NaN); both parse to fixed_small / fixed_large.
//
// Model output of the learned types: a network predicting its variance outputs 2C channels,
// [B, 2C, ...]; diffusers and guided-diffusion split them along dim 1 into the prediction
// (first C) and the variance values v (last C) (`torch.split(model_output, C, dim=1)`).
// split_model_output does that split into two [B, C, ...] tensors; step(m, v, ...) takes both.
//
// Noise. step(m, type, i, x, rng) draws x.numel() normals (randn(z, rng)) exactly on the steps
// that add noise (step_adds_noise(i)) and none on the others; step_with_noise takes z explicitly
// (read only when the step adds noise) for common-random-number tests and torch parity
// (diffusers draws randn_tensor(model_output.shape, generator) once per step with t > 0).

#include <diffuse/backend/for_each.hpp>
#include <diffuse/backend/lincomb.hpp>
#include <diffuse/backend/randn.hpp>
#include <diffuse/core/config.hpp>
#include <diffuse/core/error.hpp>
#include <diffuse/core/philox.hpp>
#include <diffuse/core/tensor.hpp>
#include <diffuse/models/denoiser.hpp>
#include <diffuse/process/parametrization.hpp>
#include <diffuse/process/posterior.hpp>
#include <diffuse/samplers/sampler.hpp>
#include <diffuse/samplers/thresholding.hpp>
#include <diffuse/schedules/discrete_schedule.hpp>
#include <diffuse/schedules/timesteps.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

namespace diffuse::samplers {

using process::variance_convention;
using process::variance_type;

struct ddpm_config {
    variance_type variance = variance_type::fixed_small;  ///< process::parse_variance_type parses diffusers' names
    variance_convention convention = variance_convention::improved_diffusion;  ///< see the file comment
    bool clip_sample = false;         ///< clamp x0 to [−clip_sample_range, clip_sample_range] (diffusers default true)
    double clip_sample_range = 1.0;
    thresholding threshold{};         ///< dynamic thresholding of x0; when enabled it replaces clip_sample (diffusers)
    schedules::spacing timestep_spacing = schedules::spacing::leading;  ///< for set_timesteps(N)
    int steps_offset = 0;             ///< for leading spacing
    prediction_type prediction = prediction_type::epsilon;  ///< what step(m, i, x, rng) assumes m is
};

/// Everything about step i that does not depend on the data.
struct ddpm_step_coeffs {
    int t = 0;                  ///< the timestep of x
    int prev = -1;              ///< t' (−1: ᾱ' = 1)
    double alpha_bar = 0.0;     ///< ᾱ_t
    double alpha_bar_prev = 1;  ///< ᾱ'
    double beta = 0.0;          ///< β = 1 − ᾱ_t/ᾱ'
    double posterior_variance = 0.0;  ///< β̃ (0 when ᾱ' = 1)
    double coef_x0 = 0.0;       ///< c_x0
    double coef_xt = 0.0;       ///< c_xt
    double min_log = 0.0;       ///< learned_range lower end (the convention's fixed_small log σ²)
    double max_log = 0.0;       ///< learned_range upper end, log β
    double variance = 0.0;      ///< σ² of the configured fixed type (NaN for learned types)
    double log_variance = 0.0;  ///< log σ² of the configured fixed type (NaN for learned types)
    bool noise = false;         ///< whether the step adds σ·z
};

/// One step's affine form for a `from` model output (fixed variance types):
/// x0 = p_x·x + p_m·m, and without clipping x' = c_x·x + c_m·m + c_z·z.
struct ddpm_coeffs {
    double p_x, p_m;
    double c_x, c_m, c_z;
    double coef_x0, coef_xt;
};

namespace detail {

/// How the learned types turn v into σ.
enum class ddpm_learned_sigma { log_variance, variance, range };

/// x[i] += σ(v[i])·z[i].
template <class T>
struct ddpm_learned_noise_op {
    T* x;
    const T* z;
    const T* v;
    ddpm_learned_sigma kind;
    double min_log, max_log;
    DIFFUSE_HOST_DEVICE void operator()(std::int64_t i) const {
        const double vi = static_cast<double>(v[i]);
        double sd;
        if (kind == ddpm_learned_sigma::variance) {
            sd = sqrt(vi);
        } else if (kind == ddpm_learned_sigma::log_variance) {
            sd = exp(0.5 * vi);
        } else {
            const double f = 0.5 * (vi + 1.0);
            sd = exp(0.5 * (f * max_log + (1.0 - f) * min_log));
        }
        x[i] = x[i] + static_cast<T>(sd) * z[i];
    }
};

/// m[i], v[i] from src [B, 2C, ...]: first and second halves of each batch item.
template <class T>
struct ddpm_split_op {
    const T* src;
    T* m;
    T* v;
    std::int64_t half;  // C·H·W
    DIFFUSE_HOST_DEVICE void operator()(std::int64_t i) const {
        const std::int64_t b = i / half, r = i % half;
        m[i] = src[2 * half * b + r];
        v[i] = src[2 * half * b + half + r];
    }
};

}  // namespace detail

/// Splits a learned-variance model output [B, 2C, ...] into the prediction m and the variance
/// values v, both [B, C, ...] (torch.split(out, C, dim=1) of diffusers and guided-diffusion).
template <class T, class S>
void split_model_output(std::type_identity_t<tensor_view<const T, S>> out, tensor_view<T, S> m, tensor_view<T, S> v) {
    require(out.rank() >= 2, "model_output.rank()", out.rank(), ">= 2 ([B, 2C, ...])");
    require(out.size(1) % 2 == 0, "model_output.size(1)", out.size(1), "even (2C channels: prediction, variance)");
    std::vector<std::int64_t> dims;
    for (int k = 0; k < out.rank(); ++k) dims.push_back(k == 1 ? out.size(k) / 2 : out.size(k));
    const shape half = shape::from_range(dims.begin(), dims.end());
    require_same_shape(m.shape(), "m", half, "the first half of model_output");
    require_same_shape(v.shape(), "v", half, "the second half of model_output");
    if (m.empty()) return;
    for_each<S>(m.numel(), detail::ddpm_split_op<T>{out.data(), m.data(), v.data(), m.numel() / m.size(0)});
}

class ddpm_sampler : public begin_index_support {
public:
    /// Starts with all T training timesteps T−1, ..., 0 (diffusers' timesteps before set_timesteps).
    explicit ddpm_sampler(schedules::discrete_schedule schedule, ddpm_config config = {})
        : schedule_(std::move(schedule)), config_(config) {
        require(std::isfinite(config_.clip_sample_range) && config_.clip_sample_range > 0.0, "clip_sample_range",
                config_.clip_sample_range, "a finite number > 0");
        check_thresholding(config_.threshold);
        std::vector<int> all(static_cast<std::size_t>(num_train_timesteps()));
        for (int k = 0; k < num_train_timesteps(); ++k) all[static_cast<std::size_t>(k)] = num_train_timesteps() - 1 - k;
        set_timesteps(std::move(all));
    }

    const schedules::discrete_schedule& schedule() const { return schedule_; }
    const ddpm_config& config() const { return config_; }
    int num_train_timesteps() const { return schedule_.num_train_timesteps(); }

    /// N inference steps with the configured spacing (schedules::ddim_timesteps); 1 <= N <= T.
    void set_timesteps(int num_inference_steps) {
        set_timesteps(schedules::ddim_timesteps(num_train_timesteps(), num_inference_steps, config_.timestep_spacing,
                                                config_.steps_offset));
    }

    /// An explicit sequence, strictly decreasing, in [0, T − 1] (diffusers' custom timesteps,
    /// guided-diffusion's use_timesteps reversed).
    void set_timesteps(std::vector<int> timesteps) {
        const int T = num_train_timesteps();
        detail::require_training_timesteps(timesteps, T);
        timesteps_ = std::move(timesteps);
        build();
        reset_begin_index();
    }

    /// Start sample() at step k (img2img / SDEdit: x = add_noise(x0, z, k) first).
    void set_begin_index(std::size_t k) { store_begin_index(k, num_steps(), "ddpm_sampler"); }

    const std::vector<int>& timesteps() const { return timesteps_; }
    std::size_t num_steps() const { return timesteps_.size(); }
    double timestep(std::size_t i) const {
        detail::require_step_index(i, num_steps(), "ddpm_sampler");
        return timesteps_[i];
    }
    int order() const { return 1; }
    double init_noise_sigma() const { return 1.0; }
    double model_input_scale(std::size_t) const { return 1.0; }
    noise_condition model_level(std::size_t i) const {
        detail::require_step_index(i, num_steps(), "ddpm_sampler");
        return noise_condition::at(schedule_, timesteps_[i]);
    }
    /// x at step i is at the model's level (√ᾱ_t, √(1−ᾱ_t)).
    noise_condition state_level(std::size_t i) const { return model_level(i); }
    template <class T, class S>
    void scale_model_input(tensor_view<T, S> out, std::type_identity_t<tensor_view<const T, S>> x, std::size_t) const {
        lincomb(out, 1.0, x);
    }

    /// The previous timestep of step i: the next entry of timesteps(), or −1 (ᾱ' = 1).
    int prev_timestep(std::size_t i) const { return step_coeffs(i).prev; }
    double alpha_bar_prev(std::size_t i) const { return step_coeffs(i).alpha_bar_prev; }
    /// Whether step i adds noise (and step() draws x.numel() normals).
    bool step_adds_noise(std::size_t i) const { return step_coeffs(i).noise; }

    /// The data-independent numbers of step i.
    const ddpm_step_coeffs& step_coeffs(std::size_t i) const {
        detail::require_step_index(i, num_steps(), "ddpm_sampler");
        return steps_[i];
    }

    /// σ² of step i for the fixed variance types under the configured convention (diffusers'
    /// `_get_variance(t)`; reported also where no noise is added).
    double variance(std::size_t i) const {
        require_fixed("variance(i)");
        return step_coeffs(i).variance;
    }

    /// log σ² of step i for a learned type given one variance value v of the model.
    double log_variance(std::size_t i, double v) const {
        const ddpm_step_coeffs& c = step_coeffs(i);
        switch (config_.variance) {
            case variance_type::fixed_small:
            case variance_type::fixed_large: return c.log_variance;
            case variance_type::learned:
                return config_.convention == variance_convention::diffusers ? std::log(v) : v;
            case variance_type::learned_range: return process::learned_range_log_variance(v, c.min_log, c.max_log);
        }
        fail("ddpm_sampler.log_variance: unknown variance_type");
    }

    /// The affine form of step i for a `from` output (fixed types; c_z = 0 where no noise is added).
    ddpm_coeffs coefficients(prediction_type from, std::size_t i) const {
        const ddpm_step_coeffs& s = step_coeffs(i);
        const noise_condition l = model_level(i);
        const affine_estimate x0 = x0_from_output(from, l, 1.0);
        ddpm_coeffs c{};
        c.p_x = x0.x;
        c.p_m = x0.m;
        c.coef_x0 = s.coef_x0;
        c.coef_xt = s.coef_xt;
        c.c_x = s.coef_x0 * x0.x + s.coef_xt;
        c.c_m = s.coef_x0 * x0.m;
        c.c_z = s.noise && is_fixed() ? std::sqrt(s.variance) : 0.0;
        return c;
    }

    // ---- steps with fixed variance types ---------------------------------------------------

    /// x <- x' (step i), m a `from` prediction at (x, model_level(i)). Draws x.numel() normals
    /// from rng when step_adds_noise(i), none otherwise.
    template <class T, class S>
    void step(std::type_identity_t<tensor_view<const T, S>> m, prediction_type from, std::size_t i,
              tensor_view<T, S> x, philox_rng& rng) const {
        require_fixed("step(m, type, i, x, rng)");
        detail::require_step_index(i, num_steps(), "ddpm_sampler.step");
        detail::require_step_tensors<T, S>(m, x, "ddpm_sampler.step");
        tensor<T, S> z;
        if (steps_[i].noise) {
            z = tensor<T, S>(x.shape());
            randn(z.view(), rng);
        }
        apply<T, S>(m, from, i, x, z.cview(), tensor_view<const T, S>{});
    }

    /// step with the configured prediction type.
    template <class T, class S>
    void step(std::type_identity_t<tensor_view<const T, S>> m, std::size_t i, tensor_view<T, S> x,
              philox_rng& rng) const {
        step<T, S>(m, config_.prediction, i, x, rng);
    }

    /// step with explicit standard normals z (x's shape; read only when step_adds_noise(i)).
    template <class T, class S>
    void step_with_noise(std::type_identity_t<tensor_view<const T, S>> m, prediction_type from, std::size_t i,
                         tensor_view<T, S> x, std::type_identity_t<tensor_view<const T, S>> z) const {
        require_fixed("step_with_noise(m, type, i, x, z)");
        detail::require_step_index(i, num_steps(), "ddpm_sampler.step_with_noise");
        detail::require_step_tensors<T, S>(m, x, "ddpm_sampler.step_with_noise");
        check_noise<T, S>(i, x, z);
        apply<T, S>(m, from, i, x, z, tensor_view<const T, S>{});
    }

    // ---- steps with learned variance types (v: the variance half of the model output) -------

    /// As step, for learned / learned_range: v has x's shape (split_model_output).
    template <class T, class S>
    void step(std::type_identity_t<tensor_view<const T, S>> m, std::type_identity_t<tensor_view<const T, S>> v,
              prediction_type from, std::size_t i, tensor_view<T, S> x, philox_rng& rng) const {
        require_learned("step(m, v, type, i, x, rng)");
        detail::require_step_index(i, num_steps(), "ddpm_sampler.step");
        detail::require_step_tensors<T, S>(m, x, "ddpm_sampler.step");
        require_same_shape(v.shape(), "variance_output", x.shape(), "x");
        tensor<T, S> z;
        if (steps_[i].noise) {
            z = tensor<T, S>(x.shape());
            randn(z.view(), rng);
        }
        apply<T, S>(m, from, i, x, z.cview(), v);
    }

    template <class T, class S>
    void step_with_noise(std::type_identity_t<tensor_view<const T, S>> m,
                         std::type_identity_t<tensor_view<const T, S>> v, prediction_type from, std::size_t i,
                         tensor_view<T, S> x, std::type_identity_t<tensor_view<const T, S>> z) const {
        require_learned("step_with_noise(m, v, type, i, x, z)");
        detail::require_step_index(i, num_steps(), "ddpm_sampler.step_with_noise");
        detail::require_step_tensors<T, S>(m, x, "ddpm_sampler.step_with_noise");
        require_same_shape(v.shape(), "variance_output", x.shape(), "x");
        check_noise<T, S>(i, x, z);
        apply<T, S>(m, from, i, x, z, v);
    }

    /// The step index of training timestep t in timesteps() (diffusers indexes by t).
    std::size_t index_for_timestep(int t) const {
        for (std::size_t k = 0; k < timesteps_.size(); ++k)
            if (timesteps_[k] == t) return k;
        fail_argument("timestep", t, "one of timesteps() (set_timesteps first)");
    }

private:
    bool is_fixed() const {
        return config_.variance == variance_type::fixed_small || config_.variance == variance_type::fixed_large;
    }
    void require_fixed(const char* what) const {
        if (!is_fixed())
            fail(std::string("ddpm_sampler.") + what + ": variance_type " +
                 std::string(process::to_string(config_.variance)) +
                 " needs the model's variance output; call step(m, v, type, i, x, rng) / step_with_noise(m, v, ...)"
                 " (split_model_output splits a [B, 2C, ...] output)");
    }
    void require_learned(const char* what) const {
        if (is_fixed())
            fail(std::string("ddpm_sampler.") + what + ": variance_type " +
                 std::string(process::to_string(config_.variance)) +
                 " has no variance output; expected learned or learned_range (use step(m, type, i, x, rng))");
    }

    template <class T, class S>
    void check_noise(std::size_t i, tensor_view<T, S> x, tensor_view<const T, S> z) const {
        if (steps_[i].noise) require_same_shape(z.shape(), "z", x.shape(), "x");
    }

    /// The step: x0 (clip / threshold), mean, noise. z is read when the step adds noise; v is
    /// non-empty exactly for the learned types.
    template <class T, class S>
    void apply(tensor_view<const T, S> m, prediction_type from, std::size_t i, tensor_view<T, S> x,
               tensor_view<const T, S> z, tensor_view<const T, S> v) const {
        const ddpm_step_coeffs& s = steps_[i];
        const ddpm_coeffs c = coefficients(from, i);
        const tensor_view<const T, S> xc = x;
        const bool fixed_noise = s.noise && is_fixed();
        const bool process_x0 = config_.threshold.enabled || config_.clip_sample;
        if (!process_x0) {
            if (fixed_noise)
                lincomb(x, c.c_x, xc, c.c_m, m, c.c_z, z);
            else
                lincomb(x, c.c_x, xc, c.c_m, m);
        } else {
            tensor<T, S> x0(x.shape());
            lincomb(x0.view(), c.p_x, xc, c.p_m, m);
            if (config_.threshold.enabled)
                apply_thresholding(x0.view(), config_.threshold);
            else
                clip_sample(x0.view(), config_.clip_sample_range);
            if (fixed_noise)
                lincomb(x, c.coef_x0, x0.cview(), c.coef_xt, xc, c.c_z, z);
            else
                lincomb(x, c.coef_x0, x0.cview(), c.coef_xt, xc);
        }
        if (s.noise && !is_fixed() && !x.empty()) {
            detail::ddpm_learned_sigma kind = detail::ddpm_learned_sigma::range;
            if (config_.variance == variance_type::learned)
                kind = config_.convention == variance_convention::diffusers ? detail::ddpm_learned_sigma::variance
                                                                            : detail::ddpm_learned_sigma::log_variance;
            for_each<S>(x.numel(), detail::ddpm_learned_noise_op<T>{x.data(), z.data(), v.data(), kind, s.min_log, s.max_log});
        }
    }

    /// The per-step table for timesteps_ under the configured variance type and convention.
    void build() {
        const std::size_t n = timesteps_.size();
        const bool gd = config_.convention == variance_convention::improved_diffusion;
        steps_.assign(n, ddpm_step_coeffs{});
        for (std::size_t i = 0; i < n; ++i) {
            ddpm_step_coeffs& s = steps_[i];
            s.t = timesteps_[i];
            s.prev = i + 1 < n ? timesteps_[i + 1] : -1;
            const process::posterior_coeffs p = process::posterior_at(schedule_, s.t, s.prev);
            s.alpha_bar = schedule_.alpha_bar(s.t);
            s.alpha_bar_prev = s.prev >= 0 ? schedule_.alpha_bar(s.prev) : 1.0;
            s.beta = p.beta;
            s.posterior_variance = p.variance;
            s.coef_x0 = p.coef_x0;
            s.coef_xt = p.coef_xt;
            s.max_log = std::log(p.beta);
            s.noise = gd ? i + 1 < n : s.t > 0;
        }
        for (std::size_t i = 0; i < n; ++i) {
            ddpm_step_coeffs& s = steps_[i];
            const double floored = std::max(s.posterior_variance, process::diffusers_variance_floor);
            // guided-diffusion's posterior_log_variance_clipped: the last step (β̃ = 0) borrows the
            // step before it (the respaced table's entry 1); with one step there is none to borrow.
            const bool borrow = gd && s.prev < 0 && n >= 2;
            double small = floored;
            if (borrow)
                small = steps_[n - 2].posterior_variance;
            else if (gd && s.posterior_variance > 0.0)
                small = s.posterior_variance;
            s.min_log = std::log(small);
            switch (config_.variance) {
                case variance_type::fixed_small: s.variance = small; break;
                case variance_type::fixed_large: s.variance = borrow ? small : s.beta; break;
                case variance_type::learned:
                case variance_type::learned_range: s.variance = std::numeric_limits<double>::quiet_NaN(); break;
            }
            s.log_variance = std::log(s.variance);
        }
    }

    schedules::discrete_schedule schedule_;
    ddpm_config config_;
    std::vector<int> timesteps_;
    std::vector<ddpm_step_coeffs> steps_;
};

}  // namespace diffuse::samplers
