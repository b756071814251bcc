#pragma once
// process/: the forward diffusion process and the quantities defined by it
// (docs/forward_process.md, docs/parametrisations.md).
//
//   forward.hpp         noise levels (a, s) of x_t = a·x0 + s·eps (VP: √ᾱ, √(1−ᾱ); VE: 1, σ);
//                       one step q(x_t | x_{t−1}), transitions q(x_t | x_s) for respaced grids,
//                       q_sample (diffusers add_noise) with explicit noise or a philox_rng
//   posterior.hpp       q(x_s | x_t, x0) for any s < t (coefficients from ᾱ or log ᾱ), tables
//                       over a grid like improved-diffusion's, the reverse-variance types
//                       fixed_small / fixed_large / learned / learned_range under the
//                       improved-diffusion or diffusers first-step convention
//   parametrization.hpp prediction_type {epsilon, sample, v_prediction, score} with diffusers'
//                       names; conversions between them in VP and σ-space as (c_xt, c_value)
//                       pairs plus one lincomb; training targets
//   losses.hpp          L_simple (mean_flat MSE), min-SNR-γ and EDM weights, Gaussian KL,
//                       discretised decoder likelihood (exact Φ or tanh approximation), VLB
//                       terms in bits per dim
//
// Every tensor function computes its coefficients in double on the host and applies them
// with the backend primitives (lincomb, randn, for_each), so it runs on float or double
// tensors in host or device memory (DESIGN.md, "Scalar math in double, on the host").

#include <diffuse/process/forward.hpp>
#include <diffuse/process/losses.hpp>
#include <diffuse/process/parametrization.hpp>
#include <diffuse/process/posterior.hpp>
