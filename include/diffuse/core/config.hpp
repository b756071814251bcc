#pragma once
// Compile-time configuration: the only header that tests compiler and backend macros.
//
//   DIFFUSE_HOST_DEVICE   marks element-wise functions usable in host loops and CUDA kernels.
//   DIFFUSE_HAS_OPENMP    1 when host loops run under OpenMP (the compiler has -fopenmp).
//   DIFFUSE_HAS_CUDA      1 when the translation unit is compiled by nvcc with CUDA enabled,
//                         so device tensors and kernels exist.
//   DIFFUSE_DEFAULT_DEVICE 1 when the default memory space is the device (DIFFUSE_BACKEND=cuda).
//
// CMake sets DIFFUSE_BACKEND_SERIAL / _OPENMP / _CUDA on the diffuse::diffuse target
// (docs/backends.md). Without CMake, the defaults follow the compiler: OpenMP when -fopenmp
// is given, CUDA device code when compiled by nvcc and DIFFUSE_BACKEND_CUDA is defined.

#if defined(__CUDACC__)
#define DIFFUSE_HOST_DEVICE __host__ __device__
#define DIFFUSE_DEVICE __device__
#else
#define DIFFUSE_HOST_DEVICE
#define DIFFUSE_DEVICE
#endif

#if defined(_OPENMP) && !defined(DIFFUSE_BACKEND_SERIAL)
#define DIFFUSE_HAS_OPENMP 1
#else
#define DIFFUSE_HAS_OPENMP 0
#endif

#if defined(__CUDACC__) && (defined(DIFFUSE_BACKEND_CUDA) || defined(DIFFUSE_ENABLE_CUDA))
#define DIFFUSE_HAS_CUDA 1
#else
#define DIFFUSE_HAS_CUDA 0
#endif

#if defined(DIFFUSE_BACKEND_CUDA) && DIFFUSE_HAS_CUDA
#define DIFFUSE_DEFAULT_DEVICE 1
#else
#define DIFFUSE_DEFAULT_DEVICE 0
#endif

namespace diffuse {

/// Name of the host execution mode compiled in: "openmp" or "serial".
inline constexpr const char* host_backend_name = DIFFUSE_HAS_OPENMP ? "openmp" : "serial";

/// True when this translation unit can create device tensors and launch kernels.
inline constexpr bool has_cuda = DIFFUSE_HAS_CUDA != 0;

}  // namespace diffuse
