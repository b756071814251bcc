#pragma once
// analytic/ — exact models: the oracles of the library's tests (docs/exact_models.md).
//
// For data whose law is known in closed form, everything a diffusion model tries to learn is
// known exactly at every noise level (a, s) of x_t = a·x0 + s·eps:
//
//   gaussian          x0 ~ N(μ, Σ): E[x0|x_t], E[eps|x_t], the score ∇log p_t, log p_t,
//                     Cov[x0|x_t], the optimal denoising loss, the exact probability-flow ODE
//                     map between any two levels, and samples of the data.
//   gaussian_mixture  x0 ~ Σ_k π_k N(m_k, C_k), optionally class-labelled: responsibilities,
//                     score, posterior mean and covariance, log p_t, the exact Bayes classifier
//                     p_t(y|x) with its gradient ∇log p_t(y|x), class-conditional mixtures, samples.
//   noise_level       (a, s) from the VP form (ᾱ) or the VE/EDM form (σ).
//
// All of it is host-only double math on Eigen types. A point is a column vector [d]; a batch
// is a matrix [n, d] with one point per row.

#include <diffuse/analytic/gaussian.hpp>
#include <diffuse/analytic/gaussian_mixture.hpp>
#include <diffuse/analytic/guided_gaussian.hpp>
#include <diffuse/analytic/noise_level.hpp>
