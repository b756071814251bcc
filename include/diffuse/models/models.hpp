#pragma once
// models/: the Denoiser concept and what adapts one denoiser into another (docs/denoisers.md).
//
//   denoiser.hpp             noise_condition (a, s, σ = s/a, optional timestep), no_condition,
//                            class_labels, the `denoiser<M, T, Space, Cond>` concept, by_ref
//   prediction_adapter.hpp   predict_as / as_prediction: any prediction type as any other
//                            (process::convert coefficients, checked before the model runs)
//   edm_preconditioning.hpp  EDM c_skip, c_out, c_in, c_noise, loss weight; edm_denoiser (raw
//                            network -> denoiser) and edm_network_from_denoiser (the inverse)
//   exact.hpp                exact Gaussian and Gaussian-mixture (class-conditional) denoisers,
//                            host only
//   unet_denoiser.hpp        the conditional U-Net of nn/ as a denoiser (labels, cross-attention
//                            context, concatenated channels), host only
//
// Layering (DESIGN.md): models/ uses nn/, analytic/, process/, schedules/, backend/, core/ only.

#include <diffuse/models/denoiser.hpp>
#include <diffuse/models/edm_preconditioning.hpp>
#include <diffuse/models/exact.hpp>
#include <diffuse/models/prediction_adapter.hpp>
#include <diffuse/models/unet_denoiser.hpp>
