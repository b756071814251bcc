#pragma once
// The backend: the few primitives everything above uses, for host (serial / OpenMP) and
// device (CUDA) tensors (DESIGN.md, "backend/"):
//   for_each<Space>(n, f)             — element-wise functor loop            (for_each.hpp)
//   lincomb(out, c0, x0, …, c3, x3)   — out = Σ c_k x_k                       (lincomb.hpp)
//   sum, sum_squares, max_abs         — deterministic reductions in double    (reduce.hpp)
//   quantile_abs_per_batch(x, q)      — torch.quantile-style per-item |x|     (reduce.hpp)
//   randn(out, rng)                   — Philox normal draws                   (randn.hpp)
//   host_thread_count / set_host_thread_count                                 (host_threads.hpp)

#include <diffuse/backend/for_each.hpp>
#include <diffuse/backend/host_threads.hpp>
#include <diffuse/backend/lincomb.hpp>
#include <diffuse/backend/randn.hpp>
#include <diffuse/backend/reduce.hpp>
