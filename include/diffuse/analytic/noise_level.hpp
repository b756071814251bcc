#pragma once
// A noise level (a, s) of the forward process x_t = a·x0 + s·eps, eps ~ N(0, I)
// (docs/exact_models.md §1). Every exact model in analytic/ takes (a, s) as two doubles, so one
// formula serves both common forms:
//
//   VP (DDPM, DDIM, DPM-Solver): a = √ᾱ, s = √(1 − ᾱ), so a² + s² = 1       -> vp_level(ᾱ)
//   VE / EDM (Karras et al.):    a = 1,  s = σ                               -> ve_level(σ)
//
// The two are the same process up to the scaling x_ve = x_vp / a, σ = s / a. The type and its
// constructors are the forward process's (process/forward.hpp, one layer below); they are
// re-exported here so analytic code reads analytic::vp_level(ᾱ).

#include <diffuse/process/forward.hpp>

namespace diffuse::analytic {

using process::noise_level;
using process::ve_level;
using process::vp_level;
using process::vp_level_from_sigma;

}  // namespace diffuse::analytic
