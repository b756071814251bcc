#pragma once
// Internals shared by the 2-evaluation σ-space samplers (heun.hpp, dpm2.hpp):
//
//   two_stage_base<Config>   the stepping-API members they have in common and the bookkeeping
//                            of their stages. Method step k (levels k -> k + 1) is step i = 2k
//                            (stage 0, model at the churned level ℓ̂_k) and, unless the method
//                            step is a single evaluation, step 2k + 1 (stage 1, model at the
//                            stage-1 level of k: ℓ_{k+1} for Heun, the midpoint for DPM-2).
//                            Stage 0 keeps a partial result u (stash) that stage 1 needs; it
//                            must run just before stage 1 (an error otherwise).
//
// Churn (euler.hpp's churn_step): prepare_step(2k, x, rng) raises x from ℓ_k to ℓ̂_k before the
// first evaluation of method step k (nothing at stage 1). The churn members are protected;
// heun_sampler and dpm2_sampler make them public with using-declarations (DPM-2 ancestral has
// no churn: its ℓ̂_k is ℓ_k and it has no prepare_step).
//
// A derived sampler builds its steps in set_levels with begin_levels(levels), add_method_step(k,
// churn, two_stages, stage-1 level) for each k, then end_levels(); in step() it calls
// check_churn_prepared(i, k) (stage 0, with churn), first_stage_buffer<T, S>(shape) for u and
// first_stage_done(k) (a 2-stage method step), second_stage_buffer<T, S>(i, k, shape) (stage 1;
// checks stage 0 of k came just before) and method_step_done() (after stage 1 or a 1-stage step).

#include <diffuse/backend/lincomb.hpp>
#include <diffuse/backend/randn.hpp>
#include <diffuse/core/error.hpp>
#include <diffuse/core/philox.hpp>
#include <diffuse/core/tensor.hpp>
#include <diffuse/samplers/detail/level_checks.hpp>
#include <diffuse/samplers/euler.hpp>
#include <diffuse/samplers/levels.hpp>
#include <diffuse/samplers/sampler.hpp>

#include <cstddef>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace diffuse::samplers::detail {

template <class Config>
class two_stage_base : public begin_index_support {
public:
    /// Start at step i (a stage-0 step; diffusers: t_start·order).
    void set_begin_index(std::size_t i) {
        store_begin_index(i, num_steps(), who_);
        if (steps_[i].stage != 0) fail_argument(std::string(who_) + ".set_begin_index: k", i, begin_allowed_);
    }

    const level_sequence& levels() const { return levels_; }
    const Config& config() const { return config_; }
    /// N, the number of method steps (levels − 1).
    std::size_t num_method_steps() const { return steps_of(levels_); }
    /// Model evaluations (2 per 2-stage method step, 1 per 1-stage one).
    std::size_t num_steps() const { return steps_.size(); }
    /// Method step and stage of step i.
    stage_index stage_of(std::size_t i) const {
        require_step_index(i, num_steps(), who_);
        return steps_[i];
    }
    /// σ of the model evaluation without churn: σ_k (stage 0), the stage-1 level's σ (stage 1).
    double timestep(std::size_t i) const { return state_level(i).sigma(); }
    int order() const { return 2; }
    double init_noise_sigma() const { return init_noise_sigma_of(levels_); }
    /// The level of x when step i begins: ℓ_k (stage 0, before churn) or the stage-1 level of k.
    noise_condition state_level(std::size_t i) const {
        const stage_index s = stage_of(i);
        return s.stage == 0 ? levels_[s.k] : mids_[s.k];
    }
    double model_input_scale(std::size_t i) const { return model_input_scale_of(churned_level(i), config_.input); }
    noise_condition model_level(std::size_t i) const { return seen_level(churned_level(i), config_.input); }
    template <class T, class S>
    void scale_model_input(tensor_view<T, S> out, std::type_identity_t<tensor_view<const T, S>> x, std::size_t i) const {
        lincomb(out, model_input_scale(i), x);
    }

protected:
    static constexpr std::size_t npos = static_cast<std::size_t>(-1);

    /// who: the sampler's name in messages; begin_allowed: what set_begin_index accepts.
    two_stage_base(const char* who, const char* begin_allowed, Config config = {})
        : config_(config), who_(who), begin_allowed_(begin_allowed) {}

    /// γ of method step k of step i (0 without churn; 0 for stage 1).
    double churn_gamma(std::size_t i) const {
        const stage_index s = stage_of(i);
        return s.stage == 0 ? churn_[s.k].gamma : 0.0;
    }
    /// The level x has when the model is called at step i (after prepare_step).
    noise_condition churned_level(std::size_t i) const {
        const stage_index s = stage_of(i);
        return s.stage == 0 ? churn_[s.k].hat : mids_[s.k];
    }
    /// Churn before the first evaluation of a method step (stage 0); nothing at stage 1.
    template <class T, class S>
    void prepare_step(std::size_t i, tensor_view<T, S> x, philox_rng& rng) {
        const stage_index s = stage_of(i);
        if (s.stage != 0) return;
        if (churn_[s.k].draws) {
            tensor<T, S> z(x.shape());
            randn(z.view(), rng);
            apply_churn<T, S>(s.k, x, z.cview());
        }
        prepared_ = i;
    }
    /// prepare_step with the standard normal z given.
    template <class T, class S>
    void prepare_step_with_noise(std::size_t i, tensor_view<T, S> x, std::type_identity_t<tensor_view<const T, S>> z) {
        const stage_index s = stage_of(i);
        require_same_shape(z.shape(), "z", x.shape(), "x");
        if (s.stage != 0) return;
        apply_churn<T, S>(s.k, x, z);
        prepared_ = i;
    }

    /// The step of the churned Heun-type methods (Heun, DPM-2), method step k from ℓ̂_k (after
    /// churn) to ℓ_{k+1} with the stage-1 level ℓ_m = mids_[k] and h = σ_{k+1} − σ̂_k:
    ///   σ_{k+1} = 0:  one Euler step ℓ̂_k -> ℓ_{k+1};
    ///   stage 0:      keep_u(u, x̂, m1, ℓ̂_k, ℓ_{k+1}, h) writes u, then x <- Euler step ℓ̂_k -> ℓ_m;
    ///   stage 1:      x' = u + a_{k+1}·w·h·d2, d2 the y-space derivative at ℓ_m.
    /// who_step names the step in messages ("heun_sampler.step").
    template <class T, class S, class KeepU>
    void churned_two_stage_step(tensor_view<const T, S> m, prediction_type from, std::size_t i, tensor_view<T, S> x,
                                const char* who_step, double w, KeepU&& keep_u) {
        const stage_index s = stage_of(i);
        require_step_tensors<T, S>(m, x, who_step);
        const tensor_view<const T, S> xc = x;
        const noise_condition hat = churn_[s.k].hat, next = levels_[s.k + 1], mid = mids_[s.k];
        const double h = next.sigma() - hat.sigma();
        if (s.stage == 0) {
            check_churn_prepared(i, s.k);
            if (next.s == 0.0) {  // plain Euler to σ' = 0
                const euler_coeffs e = euler_coefficients(from, hat, next, model_level(i), model_input_scale(i));
                lincomb(x, e.c_x, xc, e.c_m, m);
                method_step_done();
                return;
            }
            tensor<T, S>& u = first_stage_buffer<T, S>(x.shape());
            keep_u(u.view(), xc, m, hat, next, h);
            const euler_coeffs e = euler_coefficients(from, hat, mid, model_level(i), model_input_scale(i));
            lincomb(x, e.c_x, xc, e.c_m, m);  // x <- x at ℓ_m
            first_stage_done(s.k);
            return;
        }
        const tensor<T, S>& u = second_stage_buffer<T, S>(i, s.k, x.shape());
        const affine_estimate d2 = derivative_of(from, mid, model_level(i), model_input_scale(i));
        const double c = next.a * w * h;
        lincomb(x, 1.0, u.cview(), c * d2.x, xc, c * d2.m, m);
        method_step_done();
    }

    /// set_levels, part 1: check and store the levels, drop the previous steps.
    void begin_levels(level_sequence levels) {
        levels_ = checked_sigma_levels(std::move(levels), who_);
        churn_.clear();
        mids_.clear();
        steps_.clear();
    }
    /// set_levels, part 2 (k = 0, 1, ...): method step k with its churn, its stages and the
    /// level of its stage 1 (kept for a 1-stage step too, as the samplers document it).
    void add_method_step(std::size_t k, const churn_step& churn, bool two_stages, const noise_condition& stage1) {
        churn_.push_back(churn);
        steps_.push_back({k, 0});
        if (two_stages) steps_.push_back({k, 1});
        mids_.push_back(stage1);
    }
    /// set_levels, part 3: forget the run in progress.
    void end_levels() {
        pending_ = prepared_ = npos;
        u_.clear();
        reset_begin_index();
    }

    /// Stage 0 of step i (method step k): step i has churn only after prepare_step(i) (an error
    /// otherwise); consumes the prepare_step.
    void check_churn_prepared(std::size_t i, std::size_t k) {
        if (churn_[k].gamma > 0.0 && prepared_ != i)
            fail(std::string(who_) + ".step: step " + std::to_string(i) + " has churn (γ = " +
                 std::to_string(churn_[k].gamma) + "); call prepare_step(" + std::to_string(i) +
                 ", x, rng) before the model call (sample() does)");
        prepared_ = npos;
    }
    /// Stage 0 keeps u for stage 1: the buffer to write it to.
    template <class T, class S>
    tensor<T, S>& first_stage_buffer(const shape& sh) {
        return u_.get<T, S>(sh);
    }
    /// Stage 0 of method step k is done: its stage 1 is due next.
    void first_stage_done(std::size_t k) { pending_ = k; }
    /// Stage 1 of step i (method step k): u of stage 0, which must have been step i − 1 (an error
    /// otherwise).
    template <class T, class S>
    const tensor<T, S>& second_stage_buffer(std::size_t i, std::size_t k, const shape& sh) const {
        const tensor<T, S>* u = u_.find<T, S>(sh);
        if (pending_ != k || u == nullptr)
            fail(std::string(who_) + ".step: step " + std::to_string(i) + " is the second stage of method step " +
                 std::to_string(k) + "; take step " + std::to_string(i - 1) + " (its first stage) just before it");
        return *u;
    }
    /// The method step is complete (after stage 1, or a 1-stage step): no stage 1 due.
    void method_step_done() { pending_ = npos; }

    level_sequence levels_;
    Config config_{};
    std::vector<churn_step> churn_;
    std::vector<noise_condition> mids_;  ///< stage-1 level of each method step
    std::vector<stage_index> steps_;

private:
    template <class T, class S>
    void apply_churn(std::size_t k, tensor_view<T, S> x, tensor_view<const T, S> z) const {
        const churn_step& c = churn_[k];
        if (c.gamma > 0.0) lincomb(x, c.c_x, tensor_view<const T, S>(x), c.c_z, z);
    }

    const char* who_ = "";
    const char* begin_allowed_ = "";
    std::size_t pending_ = npos;   ///< method step whose stage 1 is due
    std::size_t prepared_ = npos;  ///< step whose churn was applied
    stash u_;
};

}  // namespace diffuse::samplers::detail
