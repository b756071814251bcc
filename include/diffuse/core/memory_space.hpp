#pragma once
// Memory spaces: where a tensor's elements live. The space is part of the tensor's type, and
// the backend primitives dispatch on it (DESIGN.md, "Execution follows the data"):
//   host_space   — ordinary memory; loops run serially or under OpenMP.
//   device_space — CUDA global memory; loops run as kernels. Usable only in translation units
//                  compiled by nvcc with CUDA enabled (diffuse::has_cuda).
// default_space is device_space when DIFFUSE_BACKEND=cuda, host_space otherwise.

#include <diffuse/core/config.hpp>
#include <diffuse/core/error.hpp>

#include <cstddef>
#include <cstring>
#include <new>
#include <string>
#include <type_traits>

#if DIFFUSE_HAS_CUDA
#include <cuda_runtime.h>
#endif

namespace diffuse {

struct host_space {
    static constexpr const char* name = "host";
};
struct device_space {
    static constexpr const char* name = "device";
};

#if DIFFUSE_DEFAULT_DEVICE
using default_space = device_space;
#else
using default_space = host_space;
#endif

template <class S>
inline constexpr bool is_memory_space_v =
    std::is_same_v<S, host_space> || std::is_same_v<S, device_space>;

namespace detail {

#if DIFFUSE_HAS_CUDA
inline void cuda_check(cudaError_t status, const char* what) {
    if (status != cudaSuccess)
        fail(std::string("CUDA call failed in ") + what + ": " + cudaGetErrorString(status));
}
#endif

[[noreturn]] inline void no_device_support(const char* what) {
    fail(std::string(what) +
         ": device tensors need a translation unit compiled by nvcc with DIFFUSE_BACKEND=cuda "
         "(or DIFFUSE_ENABLE_CUDA); this one has no CUDA support");
}

inline constexpr std::size_t host_alignment = 64;  // one cache line; enough for AVX-512

/// Allocates bytes in space S (never returns null for bytes > 0).
template <class S>
void* allocate_bytes(std::size_t bytes) {
    if (bytes == 0) return nullptr;
    if constexpr (std::is_same_v<S, host_space>) {
        return ::operator new(bytes, std::align_val_t{host_alignment});
    } else {
#if DIFFUSE_HAS_CUDA
        void* p = nullptr;
        cuda_check(cudaMalloc(&p, bytes), "cudaMalloc");
        return p;
#else
        no_device_support("allocate device memory");
#endif
    }
}

template <class S>
void free_bytes(void* p) noexcept {
    if (!p) return;
    if constexpr (std::is_same_v<S, host_space>) {
        ::operator delete(p, std::align_val_t{host_alignment});
    } else {
#if DIFFUSE_HAS_CUDA
        cudaFree(p);
#endif
    }
}

/// Copies bytes from space Src to space Dst.
template <class Dst, class Src>
void copy_bytes(void* dst, const void* src, std::size_t bytes) {
    if (bytes == 0) return;
    if constexpr (std::is_same_v<Dst, host_space> && std::is_same_v<Src, host_space>) {
        std::memcpy(dst, src, bytes);
    } else {
#if DIFFUSE_HAS_CUDA
        const cudaMemcpyKind kind =
            std::is_same_v<Src, host_space>
                ? cudaMemcpyHostToDevice
                : (std::is_same_v<Dst, host_space> ? cudaMemcpyDeviceToHost : cudaMemcpyDeviceToDevice);
        cuda_check(cudaMemcpy(dst, src, bytes, kind), "cudaMemcpy");
#else
        no_device_support("copy device memory");
#endif
    }
}

}  // namespace detail
}  // namespace diffuse
