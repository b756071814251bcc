#pragma once
// Host loops of nn/ over coarse items (images, groups, heads): `parallel_for(n, f)` calls f(i) for i
// in [0, n), spread over the OpenMP threads in an OpenMP build, in order in a serial one — however
// small n is (backend's for_each, used for element-wise loops, stays serial below 2^15 items).
// Each f(i) must write only its own outputs, so results do not depend on the thread count (the
// serial backend is the oracle).

#include <diffuse/core/config.hpp>

#include <cstdint>

#if DIFFUSE_HAS_OPENMP
#include <omp.h>
#endif

namespace diffuse::nn::detail {

/// f(i) for i in [0, n); parallel when the build has OpenMP and n > 1.
template <class F>
void parallel_for(std::int64_t n, F&& f) {
#if DIFFUSE_HAS_OPENMP
    // One item runs outside any parallel region, so a GEMM inside it can use Eigen's threads
    // (inside even an inactive region, every Eigen product would start a nested team: measured
    // 10× slower at batch 1).
    if (n <= 1) {
        if (n == 1) f(std::int64_t{0});
        return;
    }
#pragma omp parallel for schedule(static)
    for (std::int64_t i = 0; i < n; ++i) f(i);
#else
    for (std::int64_t i = 0; i < n; ++i) f(i);
#endif
}

}  // namespace diffuse::nn::detail
