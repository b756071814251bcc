#pragma once
// Small helpers shared by the samplers that walk a level_sequence (one level per step, or outer
// levels): the step count, init_noise_sigma's VE/VP rule, the checked level of step i and the
// timestep the callback reports. Used by ipndm.hpp, unipc.hpp, dpm_solver_multistep.hpp,
// lms.hpp, euler_ancestral.hpp and detail/two_stage.hpp, detail/outer_stages.hpp.

#include <diffuse/samplers/levels.hpp>
#include <diffuse/samplers/sampler.hpp>

#include <cstddef>

namespace diffuse::samplers::detail {

/// N for N + 1 levels (0 before set_levels).
inline std::size_t steps_of(const level_sequence& levels) { return levels.empty() ? 0 : levels.size() - 1; }

/// σ_0 for a VE state (k-diffusion: x_T = σ_max·z), 1 for VP (diffusers) and before set_levels.
inline double init_noise_sigma_of(const level_sequence& levels) {
    if (levels.empty()) return 1.0;
    return levels.space() == state_space::ve ? levels.sigma(0) : 1.0;
}

/// Level i of a one-level-per-step sampler (step i starts there); i < steps_of(levels), an error
/// naming `who` otherwise.
inline noise_condition step_level(const level_sequence& levels, std::size_t i, const char* who) {
    require_step_index(i, steps_of(levels), who);
    return levels[i];
}

/// What the callback reports for step i of a one-level-per-step sampler: level i's timestep when
/// the levels carry one, else σ_i (index checked as step_level).
inline double timestep_or_sigma(const level_sequence& levels, std::size_t i, const char* who) {
    const noise_condition l = step_level(levels, i, who);
    return l.timestep ? *l.timestep : levels.sigma(i);
}

}  // namespace diffuse::samplers::detail
