#pragma once
// Host thread control: how many OpenMP threads host loops use. In a serial build these report
// 1 and setting them has no effect, so user code is written once for both.

#include <diffuse/core/config.hpp>
#include <diffuse/core/error.hpp>

#if DIFFUSE_HAS_OPENMP
#include <omp.h>
#endif

namespace diffuse {

/// Number of threads the next host loop may use (1 in a serial build).
inline int host_thread_count() {
#if DIFFUSE_HAS_OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

/// Sets the number of threads host loops use (ignored in a serial build). n >= 1.
inline void set_host_thread_count(int n) {
    require(n >= 1, "n", n, "a thread count >= 1");
#if DIFFUSE_HAS_OPENMP
    omp_set_num_threads(n);
#endif
}

/// Restores the previous host thread count when it goes out of scope.
class scoped_host_threads {
public:
    explicit scoped_host_threads(int n) : previous_(host_thread_count()) { set_host_thread_count(n); }
    ~scoped_host_threads() { set_host_thread_count(previous_); }
    scoped_host_threads(const scoped_host_threads&) = delete;
    scoped_host_threads& operator=(const scoped_host_threads&) = delete;

private:
    int previous_;
};

}  // namespace diffuse
