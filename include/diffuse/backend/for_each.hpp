#pragma once
// for_each<Space>(n, f): calls f(i) for i in [0, n) where Space's data lives — a serial loop,
// an OpenMP parallel loop, or a CUDA kernel. f is a functor whose call operator is
// DIFFUSE_HOST_DEVICE, so the element-wise math is written once (DESIGN.md, "Kernels written
// once"). f(i) must touch only element i of its outputs (no ordering between i is promised).

#include <diffuse/core/config.hpp>
#include <diffuse/core/memory_space.hpp>

#include <cstdint>
#include <type_traits>

namespace diffuse {

/// Below this many elements host loops stay on one thread (thread start-up costs ~µs).
inline constexpr std::int64_t host_parallel_threshold = 1 << 15;

namespace detail {

/// The host loop: the serial oracle, or its OpenMP twin when compiled with OpenMP.
template <class F>
void host_for(std::int64_t n, const F& f) {
#if DIFFUSE_HAS_OPENMP
#pragma omp parallel for schedule(static) if (n >= host_parallel_threshold)
    for (std::int64_t i = 0; i < n; ++i) f(i);
#else
    for (std::int64_t i = 0; i < n; ++i) f(i);
#endif
}

/// The serial loop, always available (used as the oracle in OpenMP builds' tests).
template <class F>
void serial_for(std::int64_t n, const F& f) {
    for (std::int64_t i = 0; i < n; ++i) f(i);
}

#if DIFFUSE_HAS_CUDA
template <class F>
__global__ void for_each_kernel(std::int64_t n, F f) {
    const std::int64_t stride = static_cast<std::int64_t>(blockDim.x) * gridDim.x;
    for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += stride)
        f(i);
}

inline constexpr int cuda_block_size = 256;

inline int cuda_grid_size(std::int64_t n) {
    const std::int64_t blocks = (n + cuda_block_size - 1) / cuda_block_size;
    return static_cast<int>(blocks < 65535 * 8 ? blocks : 65535 * 8);
}

template <class F>
void device_for(std::int64_t n, const F& f) {
    if (n <= 0) return;
    for_each_kernel<F><<<cuda_grid_size(n), cuda_block_size>>>(n, f);
    cuda_check(cudaGetLastError(), "for_each kernel launch");
}
#endif

}  // namespace detail

template <class Space, class F>
void for_each(std::int64_t n, const F& f) {
    static_assert(is_memory_space_v<Space>, "Space is host_space or device_space");
    if constexpr (std::is_same_v<Space, host_space>) {
        detail::host_for(n, f);
    } else {
#if DIFFUSE_HAS_CUDA
        detail::device_for(n, f);
#else
        detail::no_device_support("for_each");
#endif
    }
}

/// Waits until all device work has finished (no-op for the host).
template <class Space>
void synchronize() {
    if constexpr (std::is_same_v<Space, device_space>) {
#if DIFFUSE_HAS_CUDA
        detail::cuda_check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
#endif
    }
}

}  // namespace diffuse
