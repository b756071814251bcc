#pragma once
// diffuse/samplers: stepping samplers and the sampling driver (docs/samplers.md).
//   sampler.hpp   the stepping interface (concept stepping_sampler), step_info, sample()
//   ddim.hpp      DDIM with η, clip_sample, set_alpha_to_one, diffusers' prev-timestep rule by name
//   euler.hpp     Euler in σ-space (k-diffusion sample_euler, no churn)

#include <diffuse/samplers/ddim.hpp>
#include <diffuse/samplers/euler.hpp>
#include <diffuse/samplers/sampler.hpp>
