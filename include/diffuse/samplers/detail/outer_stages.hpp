#pragma once
// Internals shared by the outer-step samplers with up to two model evaluations per outer step
// (dpmpp_2s_ancestral.hpp, dpmpp_sde.hpp):
//
//   dpm_ss::outer_stage          one model evaluation of an outer step (outer step, stage, number
//                                of stages, level of the state when the stage begins)
//   dpm_ss::require_noise_shape  z of a noisy stage has x's shape
//   outer_stage_base<D, Config>  the stepping-API members the two samplers have in common: the
//                                plan of stages over the outer levels, set_begin_index (only at
//                                the first stage of an outer step), the level accessors, and
//                                step / step_with_noise, which draw x.numel() normals where
//                                D::uses_noise(i) and hand the stage to D::run(m, from, i, x, z)
//                                (z: nullptr when no noise is used). run starts with
//                                begin_stage (checks, the x0 estimate) and ends with stage_done.
//
// A derived sampler builds its plan in set_levels with begin_plan(outer), then for each outer
// step k add_two_stages(k, level of stage 1) or add_one_stage(k), then end_plan().

#include <diffuse/backend/lincomb.hpp>
#include <diffuse/backend/randn.hpp>
#include <diffuse/core/error.hpp>
#include <diffuse/core/philox.hpp>
#include <diffuse/core/tensor.hpp>
#include <diffuse/samplers/detail/level_checks.hpp>
#include <diffuse/samplers/dpm_solver_singlestep.hpp>
#include <diffuse/samplers/levels.hpp>
#include <diffuse/samplers/sampler.hpp>

#include <cmath>
#include <cstddef>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace diffuse::samplers::detail {

namespace dpm_ss {

/// One model evaluation of a two-stage outer step.
struct outer_stage {
    std::size_t outer = 0;  // outer step k
    int stage = 0;          // 0 or 1
    int stages = 1;         // evaluations of outer step k
    noise_condition level;  // where the state is when this stage begins
};

/// z for a noisy stage: the caller's (shape-checked) or nothing.
template <class T, class S>
void require_noise_shape(tensor_view<const T, S> z, tensor_view<T, S> x, const char* who) {
    if (z.shape() != x.shape())
        fail(std::string(who) + ": z has shape " + z.shape().str() + " but x has shape " + x.shape().str() +
             "; expected a standard-normal tensor of x's shape");
}

}  // namespace dpm_ss

template <class Derived, class Config>
class outer_stage_base : public begin_index_support {
public:
    /// Start at step k, which must begin an outer step (k = first_step(j)).
    void set_begin_index(std::size_t k) {
        store_begin_index(k, num_steps(), who_);
        if (plan_[k].stage != 0)
            fail_argument(std::string(who_) + ".set_begin_index: k", k,
                          "the first step of an outer step (first_step(" + std::to_string(plan_[k].outer) +
                              ") = " + std::to_string(first_[plan_[k].outer]) + ")");
        last_ = dpm_ss::no_step;
    }

    const level_sequence& levels() const { return outer_; }
    const Config& config() const { return config_; }
    std::size_t num_steps() const { return plan_.size(); }
    /// The first step (model evaluation) of outer step k.
    std::size_t first_step(std::size_t k) const {
        require(k < first_.size(), "k", k, "an outer step in [0, " + std::to_string(first_.size()) + ")");
        return first_[k];
    }
    /// The outer step that step i belongs to, and its stage (0 or 1).
    std::size_t outer_step(std::size_t i) const { return plan(i).outer; }
    int stage(std::size_t i) const { return plan(i).stage; }

    /// The level's timestep when it has one, else its σ.
    double timestep(std::size_t i) const {
        const noise_condition& l = plan(i).level;
        return l.timestep ? *l.timestep : l.sigma();
    }
    int order() const { return 2; }
    double init_noise_sigma() const { return init_noise_sigma_of(outer_); }
    noise_condition state_level(std::size_t i) const { return plan(i).level; }
    double model_input_scale(std::size_t i) const { return model_input_scale_of(state_level(i), config_.input); }
    noise_condition model_level(std::size_t i) const { return seen_level(state_level(i), config_.input); }
    template <class T, class S>
    void scale_model_input(tensor_view<T, S> out, std::type_identity_t<tensor_view<const T, S>> x, std::size_t i) const {
        lincomb(out, model_input_scale(i), x);
    }

    /// Step i with the standard-normal z used where uses_noise(i) (ignored elsewhere).
    template <class T, class S>
    void step_with_noise(std::type_identity_t<tensor_view<const T, S>> m, prediction_type from, std::size_t i,
                         tensor_view<T, S> x, std::type_identity_t<tensor_view<const T, S>> z) {
        self().template run<T, S>(m, from, i, x, &z);
    }
    /// Step i; draws x.numel() normals from rng where uses_noise(i).
    template <class T, class S>
    void step(std::type_identity_t<tensor_view<const T, S>> m, prediction_type from, std::size_t i,
              tensor_view<T, S> x, philox_rng& rng) {
        if (!self().uses_noise(i)) return self().template run<T, S>(m, from, i, x, nullptr);
        tensor<T, S> z(x.shape());
        randn(z.view(), rng);
        const tensor_view<const T, S> zc = z.cview();
        self().template run<T, S>(m, from, i, x, &zc);
    }
    template <class T, class S>
    void step(std::type_identity_t<tensor_view<const T, S>> m, std::size_t i, tensor_view<T, S> x, philox_rng& rng) {
        step<T, S>(m, config_.prediction, i, x, rng);
    }

protected:
    /// who: the sampler's name in messages; who_step: its step's name ("<who>.step").
    outer_stage_base(const char* who, const char* who_step, Config config = {})
        : config_(config), who_(who), who_step_(who_step) {}

    const dpm_ss::outer_stage& plan(std::size_t i) const {
        require_step_index(i, num_steps(), who_);
        return plan_[i];
    }

    /// set_levels, part 1: check and store the outer levels, drop the previous plan.
    void begin_plan(level_sequence outer) {
        require(outer.size() >= 2, "levels.size()", outer.size(), ">= 2 (K + 1 outer levels for K steps)");
        require(std::isfinite(outer.sigma(0)), "sigmas[0]", outer.sigma(0), "finite (cannot start at σ = +inf)");
        outer_ = std::move(outer);
        plan_.clear();
        first_.clear();
    }
    /// set_levels, part 2: outer step k with two evaluations, stage 1 at `mid`, or with one.
    void add_two_stages(std::size_t k, const noise_condition& mid) {
        first_.push_back(plan_.size());
        plan_.push_back({k, 0, 2, outer_[k]});
        plan_.push_back({k, 1, 2, mid});
    }
    void add_one_stage(std::size_t k) {
        first_.push_back(plan_.size());
        plan_.push_back({k, 0, 1, outer_[k]});
    }
    /// set_levels, part 3: forget the run in progress.
    void end_plan() {
        reset_begin_index();
        last_ = dpm_ss::no_step;
    }

    /// What run() works with: the stage, whether it uses z, and the x0 estimate D = d.x·x + d.m·m.
    struct stage_start {
        const dpm_ss::outer_stage& p;
        bool noisy;
        affine_estimate d;
    };
    /// The checks at the start of run() (tensors, stage order, z's shape) and D.
    template <class T, class S>
    stage_start begin_stage(tensor_view<const T, S> m, prediction_type from, std::size_t i, tensor_view<T, S> x,
                            const tensor_view<const T, S>* z) const {
        const auto& p = plan(i);
        require_step_tensors<T, S>(m, x, who_step_);
        dpm_ss::require_previous_stage(last_, i, p.stage, who_step_);
        const bool noisy = self().uses_noise(i);
        if (noisy) dpm_ss::require_noise_shape<T, S>(*z, x, who_step_);
        return {p, noisy, x0_from_output(from, model_level(i), model_input_scale(i))};
    }
    /// Step i is done (the next stage may follow).
    void stage_done(std::size_t i) { last_ = i; }

    level_sequence outer_;
    std::vector<dpm_ss::outer_stage> plan_;
    std::vector<std::size_t> first_;
    Config config_{};
    dpm_ss::stage_store store_;

private:
    Derived& self() { return static_cast<Derived&>(*this); }
    const Derived& self() const { return static_cast<const Derived&>(*this); }

    const char* who_ = "";
    const char* who_step_ = "";
    std::size_t last_ = dpm_ss::no_step;
};

}  // namespace diffuse::samplers::detail
