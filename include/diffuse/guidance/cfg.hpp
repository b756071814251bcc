#pragma once
// Classifier-free guidance as a Denoiser that wraps a Denoiser (Ho & Salimans 2022; docs/guidance.md §3).
//
//   auto guided = guidance::cfg(model, {.weight = 4.0});
//   std::vector<int> nulls = guidance::null_labels(B, model.null_class_label());
//   samplers::sample(guided, sampler, x, rng, {}, guidance::cfg_condition<class_labels>{labels, nulls});
//
// One call guided(out, x_t, level, cfg_condition{cond, uncond}):
//   1. w = weight.at(level). If guidance is off at this call (outside the interval, or w is the
//      formula's identity weight: 1 diffusers / 0 original) the model is called once on the B items with
//      `cond` and its prediction is returned (converted to the output space) — as diffusers' guiders do.
//   2. Otherwise cond and uncond are evaluated in ONE model call on the 2B batch [x_t; x_t] with the
//      joined condition (condition.hpp), or in two B calls when the pair cannot be joined / batched=false.
//   3. The 2B output is converted once to `space` (default: the model's own prediction type), where
//      the method combines c and u (combine.hpp): standard CFG, CFG-Zero* (steps < zero_init_steps
//      output 0, as diffusers does), or APG; then guidance rescale φ against c.
// The wrapper declares prediction() = space. Standard CFG is affine with weights summing to one, so
// its result does not depend on the space (every conversion is affine in the value with the same x_t
// term); rescale, CFG-Zero* and APG do, and diffusers applies them to the model's own output.
//
// APG with momentum keeps a running average across the steps of a run: mutable state inside the wrapper,
// emptied whenever a call does not continue the previous one (step ≠ last + 1 or another num_steps: a new
// run, img2img included). So one wrapper object serves one sampling run at a time (a copy gets its own
// buffer) — the one exception to the Denoiser's "no per-call state" (models/denoiser.hpp).

#include <diffuse/backend/for_each.hpp>
#include <diffuse/backend/lincomb.hpp>
#include <diffuse/core/error.hpp>
#include <diffuse/core/tensor.hpp>
#include <diffuse/guidance/combine.hpp>
#include <diffuse/guidance/condition.hpp>
#include <diffuse/guidance/schedule.hpp>
#include <diffuse/models/denoiser.hpp>
#include <diffuse/process/parametrization.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace diffuse::guidance {

/// How cond and uncond are combined.
enum class cfg_method {
    standard,   ///< the CFG formula
    zero_star,  ///< CFG-Zero*: the optimised scale α on u, and zero output for the first zero_init_steps
    apg,        ///< adaptive projected guidance
};

struct cfg_options {
    guidance_weight weight = 7.5;                 ///< w (constant, per step, ramp, or a function of the level)
    cfg_formula formula = cfg_formula::diffusers;  ///< what w means (combine.hpp)
    cfg_method method = cfg_method::standard;
    double guidance_rescale = 0.0;                ///< φ in [0, 1] (Lin et al. 2024 §3.4); 0 = off
    std_convention rescale_std = std_convention::unbiased;
    guidance_interval interval{};                 ///< where guidance acts (default: everywhere)
    std::optional<prediction_type> space{};       ///< where to combine; default the model's own prediction
    std::size_t zero_init_steps = 0;              ///< CFG-Zero*: steps i < this output 0 (diffusers default 1)
    apg_options apg{};                            ///< APG's η, norm threshold, momentum
    bool batched = true;                          ///< one 2B call when the conditions can be joined
};

inline void check_cfg_options(const cfg_options& o) {
    if (o.weight.is_constant()) require_weight(o.weight.constant_value(), o.formula, "weight");
    require(std::isfinite(o.guidance_rescale) && o.guidance_rescale >= 0.0 && o.guidance_rescale <= 1.0,
            "guidance_rescale", o.guidance_rescale, "a number in [0, 1]");
    check_apg_options(o.apg);
    if (o.zero_init_steps > 0 && o.method != cfg_method::zero_star)
        fail_argument("zero_init_steps", o.zero_init_steps, "0 unless method = cfg_method::zero_star");
}

template <class M>
class cfg_denoiser {
public:
    cfg_denoiser(M model, cfg_options options) : model_(std::move(model)), options_(std::move(options)) {
        check_cfg_options(options_);
    }

    /// A copy has its own (empty) APG momentum buffer: copies may serve separate runs.
    cfg_denoiser(const cfg_denoiser& other) : model_(other.model_), options_(other.options_) {}
    cfg_denoiser(cfg_denoiser&&) noexcept = default;
    cfg_denoiser& operator=(const cfg_denoiser& other) {
        model_ = other.model_;
        options_ = other.options_;
        state_ = std::make_shared<state_holder>();
        return *this;
    }
    cfg_denoiser& operator=(cfg_denoiser&&) noexcept = default;

    prediction_type prediction() const { return options_.space.value_or(model_.prediction()); }
    const M& inner() const { return model_; }
    const cfg_options& options() const { return options_; }

    /// Whether guidance acts at this call (the interval and the weight), and the weight it uses.
    std::optional<double> active_weight(const noise_condition& level) const {
        if (!options_.interval.contains(level)) return std::nullopt;  // the weight is not evaluated outside
        const double w = options_.weight.at(level);
        require_weight(w, options_.formula, "guidance weight at step " +
                                                (level.step ? std::to_string(*level.step) : std::string("?")));
        if (w == identity_weight(options_.formula)) return std::nullopt;
        return w;
    }

    template <class T, class S, class C, class U>
        requires(models::denoiser<M, T, S, C> && models::denoiser<M, T, S, U>)
    void operator()(tensor_view<T, S> out, std::type_identity_t<tensor_view<const T, S>> x_t,
                    const noise_condition& level, const cfg_condition<C, U>& cond) const {
        models::detail::check_call_tensors(out, x_t, "cfg");
        models::check_noise_condition(level);
        check_condition_batch(cond.cond, x_t.size(0), "cond");
        check_condition_batch(cond.uncond, x_t.size(0), "uncond");
        const prediction_type from = model_.prediction(), to = prediction();
        const process::conversion conv = process::conversion_coeffs(from, to, level.a, level.s);
        auto convert = [&](tensor_view<T, S> v, tensor_view<const T, S> x) {
            if (from != to) lincomb(v, conv.c_xt, x, conv.c_value, tensor_view<const T, S>(v));
        };

        if (options_.method == cfg_method::apg && options_.apg.momentum) track_run(level);
        if (options_.method == cfg_method::zero_star && options_.zero_init_steps > 0 &&
            detail::require_step(level, "zero_init_steps") < options_.zero_init_steps) {
            for_each<S>(out.numel(), detail::fill_op<T>{out.data(), T(0)});  // CFG-Zero*'s zero initialisation
            return;
        }
        const std::optional<double> w = active_weight(level);
        if (!w) {  // guidance off: the conditional model alone
            model_(out, x_t, level, cond.cond);
            convert(out, x_t);
            return;
        }

        // cond and uncond predictions, cu = [c; u] of shape [2B, ...]
        const std::int64_t b = x_t.size(0);
        tensor<T, S> cu(doubled(x_t.shape()));
        const tensor_view<T, S> c = slice(cu.view(), 0, b), u = slice(cu.view(), b, b);
        if constexpr (joinable<C, U>) {
            if (options_.batched) {
                tensor<T, S> x2(cu.shape());
                lincomb(slice(x2.view(), 0, b), 1.0, x_t);
                lincomb(slice(x2.view(), b, b), 1.0, x_t);
                const auto joined = join_conditions(cond.cond, cond.uncond);
                model_(cu.view(), x2.cview(), level, joined.get());
                convert(cu.view(), x2.cview());
            } else {
                evaluate_separately(c, u, x_t, level, cond, convert);
            }
        } else {
            evaluate_separately(c, u, x_t, level, cond, convert);
        }

        const tensor_view<const T, S> cc = c, uc = u;
        switch (options_.method) {
            case cfg_method::standard: cfg_combine(out, cc, uc, *w, options_.formula); break;
            case cfg_method::zero_star: cfg_zero_star_combine(out, cc, uc, *w, options_.formula); break;
            case cfg_method::apg: {
                if (!options_.apg.momentum) {
                    apg_combine(out, cc, uc, *w, options_.formula, options_.apg);
                    break;
                }
                std::lock_guard<std::mutex> lock(state_->mutex);
                apg_state<T, S>& st = state_->template get<T, S>();
                apg_combine(out, cc, uc, *w, options_.formula, options_.apg, &st);
                break;
            }
        }
        if (options_.guidance_rescale > 0.0) rescale_guidance(out, cc, options_.guidance_rescale, options_.rescale_std);
    }

private:
    // APG momentum: a call that does not continue the previous one (step != last + 1, or another
    // num_steps) starts a new run and empties the buffers. Every call is tracked, guided or not.
    void track_run(const noise_condition& level) const {
        const std::size_t step = detail::require_step(level, "APG momentum");
        std::lock_guard<std::mutex> lock(state_->mutex);
        const bool continues = state_->last_step && *state_->last_step + 1 == step && state_->last_num == level.num_steps;
        if (!continues) state_->reset();
        state_->last_step = step;
        state_->last_num = level.num_steps;
    }

    template <class T, class S, class C, class U, class Convert>
    void evaluate_separately(tensor_view<T, S> c, tensor_view<T, S> u, tensor_view<const T, S> x_t,
                             const noise_condition& level, const cfg_condition<C, U>& cond, Convert& convert) const {
        model_(c, x_t, level, cond.cond);
        convert(c, x_t);
        model_(u, x_t, level, cond.uncond);
        convert(u, x_t);
    }

    static shape doubled(const shape& s) {
        std::vector<std::int64_t> d;
        for (int i = 0; i < s.rank(); ++i) d.push_back(s[i]);
        d[0] *= 2;
        return shape::from_range(d.begin(), d.end());
    }

    /// Items [first, first + count) of a batch view.
    template <class T, class S>
    static tensor_view<T, S> slice(tensor_view<T, S> v, std::int64_t first, std::int64_t count) {
        std::vector<std::int64_t> d;
        d.push_back(count);
        for (int i = 1; i < v.rank(); ++i) d.push_back(v.size(i));
        const shape s = shape::from_range(d.begin(), d.end());
        return tensor_view<T, S>(v.data() + first * s.drop_front().numel(), s);
    }

    // APG's momentum buffers, one per element type and space (type-erased by a tiny holder).
    struct state_holder {
        std::mutex mutex;
        std::optional<std::size_t> last_step;
        std::size_t last_num = 0;
        apg_state<float, host_space> f_host;
        apg_state<double, host_space> d_host;
        apg_state<float, device_space> f_device;
        apg_state<double, device_space> d_device;
        void reset() {
            f_host.reset();
            d_host.reset();
            f_device.reset();
            d_device.reset();
        }
        template <class T, class S>
        apg_state<T, S>& get() {
            if constexpr (std::is_same_v<S, host_space>) {
                if constexpr (std::is_same_v<T, float>) return f_host; else return d_host;
            } else {
                if constexpr (std::is_same_v<T, float>) return f_device; else return d_device;
            }
        }
    };

    M model_;
    cfg_options options_;
    std::shared_ptr<state_holder> state_ = std::make_shared<state_holder>();
};

/// cfg(model, options): a cfg_denoiser holding model by value (wrap with models::by_ref to refer).
template <class M>
cfg_denoiser<std::decay_t<M>> cfg(M&& model, cfg_options options = {}) {
    return cfg_denoiser<std::decay_t<M>>(std::forward<M>(model), std::move(options));
}

}  // namespace diffuse::guidance
