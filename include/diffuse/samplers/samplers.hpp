#pragma once
// Every sampler (docs/samplers.md; one page per family under docs/samplers/).
#include <diffuse/samplers/levels.hpp>
#include <diffuse/samplers/sampler.hpp>
#include <diffuse/samplers/thresholding.hpp>

// discrete-schedule samplers (diffusers' DDIM / DDPM / PNDM)
#include <diffuse/samplers/ddim.hpp>
#include <diffuse/samplers/ddpm.hpp>
#include <diffuse/samplers/pndm.hpp>

// the Euler family (k-diffusion)
#include <diffuse/samplers/dpm2.hpp>
#include <diffuse/samplers/euler.hpp>
#include <diffuse/samplers/euler_ancestral.hpp>
#include <diffuse/samplers/heun.hpp>
#include <diffuse/samplers/ipndm.hpp>
#include <diffuse/samplers/lms.hpp>

// exponential integrators
#include <diffuse/samplers/dpm_solver_adaptive.hpp>
#include <diffuse/samplers/dpm_solver_multistep.hpp>
#include <diffuse/samplers/dpm_solver_singlestep.hpp>
#include <diffuse/samplers/dpmpp_2s_ancestral.hpp>
#include <diffuse/samplers/dpmpp_sde.hpp>
#include <diffuse/samplers/unipc.hpp>

// editing: inversion, img2img / SDEdit, inpainting, noise interpolation
#include <diffuse/samplers/img2img.hpp>
#include <diffuse/samplers/inversion.hpp>
#include <diffuse/samplers/repaint.hpp>
#include <diffuse/samplers/slerp.hpp>

// guidance tables (CFG++ weights, classifier guidance's condition_mean)
#include <diffuse/samplers/guidance_tables.hpp>
