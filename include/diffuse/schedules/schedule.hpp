#pragma once
// schedules/ — the interface header of the folder (DESIGN.md: one interface header per folder).
// Derivations, conventions and the tests that check each formula: docs/schedules.md.
//
// Concepts of this folder (all host-side double math):
//
//   β schedule (beta_schedule.hpp)      named β_0..β_{T−1}: linear, scaled_linear, squaredcos_cap_v2,
//                                       sigmoid, exp, guided_linear; float32 or float64 rounding.
//   discrete_schedule                   ᾱ_t = Π_{i<=t}(1 − β_i) on t = 0..T−1 (diffusers indexing) and
//   (discrete_schedule.hpp)             everything derived from it: α_t = √ᾱ_t, σ_t = √(1 − ᾱ_t),
//                                       SNR, log SNR (VDM), λ = ½ log SNR (DPM-Solver), σ_ve (k-diffusion);
//                                       zero-terminal-SNR rescale, log-SNR / resolution shift, respacing.
//   continuous_schedule concept         α(t), σ(t), λ(t) and the inverse t(λ) in closed form: vp_linear,
//   (continuous.hpp)                    vp_cosine, edm, ve; DPM-Solver's time_steps.
//   timesteps (timesteps.hpp)           inference timesteps: diffusers' leading / trailing / linspace
//                                       (DDIM rule, multistep N+1 rule, Euler float rule) and
//                                       guided-diffusion's space_timesteps ("ddimN", section counts).
//   sigmas (sigmas.hpp)                 Karras / exponential / polyexponential / VP σ sequences; σ at
//                                       fractional t (linear or log-linear); sigma_to_t.
//
// Two log-SNR conventions are in use and every function names its own: log_snr = log(ᾱ/(1 − ᾱ))
// and lambda = ½ log_snr = log(α/σ). The VE noise level is sigma_ve = e^{−lambda}.

#include <diffuse/schedules/beta_schedule.hpp>
#include <diffuse/schedules/continuous.hpp>
#include <diffuse/schedules/discrete_schedule.hpp>
#include <diffuse/schedules/sigmas.hpp>
#include <diffuse/schedules/timesteps.hpp>
