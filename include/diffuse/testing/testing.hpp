#pragma once
// diffuse/testing: checks for any sampler loop, ours or the user's, one call each
// (DESIGN.md, "People who test samplers"; docs/testing-your-sampler.md). Framework-neutral:
// every check returns a plain struct with `passed`, the numbers and report(), so doctest,
// GoogleTest, Catch2 or a plain main() can assert on it and print the report.
//   convergence.hpp            convergence_order / fit_convergence_order: least-squares order with a
//                              Student-t interval, pairwise orders, round-off floor warnings
//   moments.hpp                moment_test (exact Gaussian target, Bonferroni bound from a false-alarm
//                              rate), mixture_weight_test (mixture weights by the exact posterior)
//   gradient_check.hpp         central finite differences against a claimed gradient (layers, models)
//   reference_trajectory.hpp   record / save / load a run as .npy files, compare_trajectories
//   statistics.hpp             normal, Student t and χ² distribution and quantile functions

#include <diffuse/testing/convergence.hpp>
#include <diffuse/testing/gradient_check.hpp>
#include <diffuse/testing/moments.hpp>
#include <diffuse/testing/reference_trajectory.hpp>
#include <diffuse/testing/statistics.hpp>
