#pragma once
// Reductions over a tensor: sum, sum of squares, max |x|, and the per-batch quantile of |x|
// (the statistic of dynamic thresholding, computed like torch.quantile).
//
// Determinism: sums are computed in double over fixed chunks of reduce_chunk elements; the
// chunk partials are added in chunk order. The result is therefore identical for the serial
// loop and for any number of OpenMP threads. CUDA sums within a chunk in another order and
// agrees with the host to rounding (docs/backends.md).

#include <diffuse/backend/for_each.hpp>
#include <diffuse/core/error.hpp>
#include <diffuse/core/tensor.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#if DIFFUSE_HAS_CUDA
#include <thrust/device_ptr.h>
#include <thrust/sort.h>
#endif

namespace diffuse {

/// Elements per partial sum (fixed, so results do not depend on the thread count).
inline constexpr std::int64_t reduce_chunk = 4096;

namespace detail {

enum class reduce_kind { sum, sum_squares, max_abs };

DIFFUSE_HOST_DEVICE inline double reduce_map(reduce_kind k, double v) {
    return k == reduce_kind::sum ? v : (k == reduce_kind::sum_squares ? v * v : fabs(v));
}

/// max that propagates NaN (a NaN anywhere makes max_abs NaN, never silently ignored).
DIFFUSE_HOST_DEVICE inline double nan_max(double a, double b) { return (a > b || a != a) ? a : b; }

DIFFUSE_HOST_DEVICE inline double reduce_combine(reduce_kind k, double a, double b) {
    return k == reduce_kind::max_abs ? nan_max(a, b) : a + b;
}

/// Functor: partial[c] = reduction of elements [c·chunk, min((c+1)·chunk, n)).
template <class T>
struct chunk_reduce_op {
    const T* x;
    std::int64_t n;
    reduce_kind kind;
    double* partial;
    DIFFUSE_HOST_DEVICE void operator()(std::int64_t c) const {
        const std::int64_t lo = c * reduce_chunk;
        const std::int64_t hi = lo + reduce_chunk < n ? lo + reduce_chunk : n;
        double acc = 0.0;
        for (std::int64_t i = lo; i < hi; ++i)
            acc = reduce_combine(kind, acc, reduce_map(kind, static_cast<double>(x[i])));
        partial[c] = acc;
    }
};

#if DIFFUSE_HAS_CUDA
/// One block per chunk; threads stride through the chunk, then a shared-memory tree.
template <class T>
__global__ void chunk_reduce_kernel(const T* x, std::int64_t n, reduce_kind kind, double* partial) {
    __shared__ double buf[256];
    const std::int64_t lo = static_cast<std::int64_t>(blockIdx.x) * reduce_chunk;
    const std::int64_t hi = lo + reduce_chunk < n ? lo + reduce_chunk : n;
    double acc = 0.0;
    for (std::int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x)
        acc = reduce_combine(kind, acc, reduce_map(kind, static_cast<double>(x[i])));
    buf[threadIdx.x] = acc;
    __syncthreads();
    for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) buf[threadIdx.x] = reduce_combine(kind, buf[threadIdx.x], buf[threadIdx.x + s]);
        __syncthreads();
    }
    if (threadIdx.x == 0) partial[blockIdx.x] = buf[0];
}
#endif

template <class T, class S>
double reduce(tensor_view<const T, S> x, reduce_kind kind) {
    const std::int64_t n = x.numel();
    const std::int64_t chunks = (n + reduce_chunk - 1) / reduce_chunk;
    std::vector<double> partial(static_cast<std::size_t>(chunks));
    if constexpr (std::is_same_v<S, host_space>) {
        for_each<host_space>(chunks, chunk_reduce_op<T>{x.data(), n, kind, partial.data()});
    } else {
#if DIFFUSE_HAS_CUDA
        if (chunks > 0) {
            tensor<double, device_space> d_partial(shape{chunks});
            chunk_reduce_kernel<T><<<static_cast<unsigned>(chunks), 256>>>(x.data(), n, kind,
                                                                           d_partial.data());
            cuda_check(cudaGetLastError(), "reduce kernel launch");
            copy_bytes<host_space, device_space>(partial.data(), d_partial.data(),
                                                 partial.size() * sizeof(double));
        }
#else
        no_device_support("reduce");
#endif
    }
    double acc = 0.0;
    for (double p : partial) acc = reduce_combine(kind, acc, p);
    return acc;
}

}  // namespace detail

/// Σ_i x_i, accumulated in double.
template <class T, class S>
double sum(tensor_view<const T, S> x) {
    return detail::reduce(x, detail::reduce_kind::sum);
}

/// Σ_i x_i², accumulated in double.
template <class T, class S>
double sum_squares(tensor_view<const T, S> x) {
    return detail::reduce(x, detail::reduce_kind::sum_squares);
}

/// max_i |x_i| (0 for an empty tensor; NaN if any element is NaN).
template <class T, class S>
double max_abs(tensor_view<const T, S> x) {
    return detail::reduce(x, detail::reduce_kind::max_abs);
}

template <class T, class S>
double sum(const tensor<T, S>& x) { return sum(x.cview()); }
template <class T, class S>
double sum_squares(const tensor<T, S>& x) { return sum_squares(x.cview()); }
template <class T, class S>
double max_abs(const tensor<T, S>& x) { return max_abs(x.cview()); }

namespace detail {

/// torch.lerp's two-sided form: exact at both ends and monotone in the weight.
inline double torch_lerp(double lo, double hi, double w) {
    return w < 0.5 ? lo + w * (hi - lo) : hi - (hi - lo) * (1.0 - w);
}

/// The q-quantile of sorted-or-partitionable values v (modified in place), torch.quantile's
/// 'linear' interpolation: rank = q·(n−1), between order statistics floor(rank) and ceil(rank).
inline double quantile_linear(std::vector<double>& v, double q) {
    const double rank = q * static_cast<double>(v.size() - 1);
    const auto lo = static_cast<std::size_t>(std::floor(rank));
    const std::size_t hi = std::min(lo + 1, v.size() - 1);
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(lo), v.end());
    const double vlo = v[lo];
    const double vhi = hi == lo ? vlo : *std::min_element(v.begin() + static_cast<std::ptrdiff_t>(lo) + 1, v.end());
    return torch_lerp(vlo, vhi, rank - static_cast<double>(lo));
}

#if DIFFUSE_HAS_CUDA
template <class T>
struct abs_to_double_op {
    const T* x;
    double* y;
    DIFFUSE_HOST_DEVICE void operator()(std::int64_t i) const { y[i] = fabs(static_cast<double>(x[i])); }
};
#endif

}  // namespace detail

/// Per-batch quantile of |x|: x has shape [B, ...]; returns B values, value b being the
/// q-quantile of |x[b]| over its C·H·W elements with torch.quantile's linear interpolation
/// (the statistic of dynamic thresholding; Saharia et al. 2022, §2.3). q in [0, 1].
template <class T, class S>
std::vector<double> quantile_abs_per_batch(tensor_view<const T, S> x, double q) {
    require(std::isfinite(q) && q >= 0.0 && q <= 1.0, "q", q, "a quantile in [0, 1]");
    require(x.rank() >= 1, "x.rank()", x.rank(), "at least 1 (a leading batch dimension)");
    const std::int64_t batch = x.size(0);
    const std::int64_t per = batch > 0 ? x.numel() / batch : 0;
    require(per >= 1, "x.shape()", x.shape().str(), "at least one element per batch item");
    std::vector<double> out(static_cast<std::size_t>(batch));
    if constexpr (std::is_same_v<S, host_space>) {
        auto item = [&](std::int64_t b) {
            std::vector<double> v(static_cast<std::size_t>(per));
            const T* p = x.data() + b * per;
            for (std::int64_t i = 0; i < per; ++i) v[static_cast<std::size_t>(i)] = std::abs(static_cast<double>(p[i]));
            out[static_cast<std::size_t>(b)] = detail::quantile_linear(v, q);
        };
#if DIFFUSE_HAS_OPENMP
#pragma omp parallel for schedule(static) if (x.numel() >= host_parallel_threshold)
        for (std::int64_t b = 0; b < batch; ++b) item(b);
#else
        for (std::int64_t b = 0; b < batch; ++b) item(b);
#endif
    } else {
#if DIFFUSE_HAS_CUDA
        // |x| in double on the device, each batch segment sorted by thrust, then the two order
        // statistics per item copied back and interpolated on the host exactly as above.
        tensor<double, device_space> a(shape{x.numel()});
        for_each<device_space>(x.numel(), detail::abs_to_double_op<T>{x.data(), a.data()});
        const double rank = q * static_cast<double>(per - 1);
        const auto lo = static_cast<std::int64_t>(std::floor(rank));
        const std::int64_t hi = std::min(lo + 1, per - 1);
        for (std::int64_t b = 0; b < batch; ++b) {
            thrust::device_ptr<double> first(a.data() + b * per);
            thrust::sort(first, first + per);
            double two[2];
            detail::copy_bytes<host_space, device_space>(&two[0], a.data() + b * per + lo, sizeof(double));
            detail::copy_bytes<host_space, device_space>(&two[1], a.data() + b * per + hi, sizeof(double));
            out[static_cast<std::size_t>(b)] = detail::torch_lerp(two[0], two[1], rank - static_cast<double>(lo));
        }
#else
        detail::no_device_support("quantile_abs_per_batch");
#endif
    }
    return out;
}

template <class T, class S>
std::vector<double> quantile_abs_per_batch(const tensor<T, S>& x, double q) {
    return quantile_abs_per_batch(x.cview(), q);
}

}  // namespace diffuse
