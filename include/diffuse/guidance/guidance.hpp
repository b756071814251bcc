#pragma once
// Guidance (docs/guidance.md): wrappers that take a Denoiser and are Denoisers, so they compose with
// every sampler and backend.
//   condition.hpp    cfg_condition, joining cond + uncond into one 2B call, model_pair, null_labels
//   combine.hpp      the formulas on tensors: CFG (two conventions), rescale, CFG-Zero*, APG
//   schedule.hpp     guidance_weight (constant, per step, ramps, functions), guidance_interval
//   cfg.hpp          cfg(model, options): classifier-free guidance
//   classifier.hpp   classifier_guidance(model, classifier, options), exact_bayes_classifier
//   neural_classifier.hpp   a trained nn::encoder_classifier as a classifier for guidance
// samplers/guidance_tables.hpp has the sampler-side tables (CFG++ weights, condition_mean factors).
#include <diffuse/guidance/cfg.hpp>
#include <diffuse/guidance/classifier.hpp>
#include <diffuse/guidance/combine.hpp>
#include <diffuse/guidance/condition.hpp>
#include <diffuse/guidance/neural_classifier.hpp>
#include <diffuse/guidance/schedule.hpp>
