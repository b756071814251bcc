#pragma once
// Memory spaces: where a tensor's elements live. The space is part of the tensor's type, and
// the backend primitives dispatch on it (DESIGN.md, "Execution follows the data"):
//   host_space   — ordinary memory; loops run serially or under OpenMP.
//   device_space — CUDA global memory; loops run as kernels. Usable only in translation units
//                  compiled by nvcc with CUDA enabled (diffuse::has_cuda).
// default_space is device_space when DIFFUSE_BACKEND=cuda, host_space otherwise.

#include <diffuse/core/config.hpp>
#include <diffuse/core/error.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <new>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <vector>

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

struct host_memory_counters {
    std::atomic<std::int64_t> current{0}, peak{0};
};
inline host_memory_counters& host_memory() {
    static host_memory_counters c;
    return c;
}
inline void host_bytes_allocated(std::int64_t delta) {
    auto& m = host_memory();
    const std::int64_t now = m.current.fetch_add(delta, std::memory_order_relaxed) + delta;
    std::int64_t peak = m.peak.load(std::memory_order_relaxed);
    while (now > peak && !m.peak.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
    }
}

// Large host blocks are cached on free and handed out again for the next request of the same size
// (a caching allocator, as PyTorch uses for CUDA memory): a network allocates the same activation
// shapes on every call, and giving them back to the OS each time costs page faults on the next
// touch (measured: 10% of a U-Net forward pass). At most host_cache_limit() bytes are kept; the
// cache is off under AddressSanitizer, so use-after-free stays detectable.
#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool host_cache_enabled = false;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
inline constexpr bool host_cache_enabled = false;
#else
inline constexpr bool host_cache_enabled = true;
#endif
#else
inline constexpr bool host_cache_enabled = true;
#endif
inline constexpr std::size_t host_cache_min_block = std::size_t{1} << 18;  // 256 KiB

struct host_block_cache {
    std::mutex mutex;
    std::unordered_map<std::size_t, std::vector<void*>> blocks;  // by total block size
    std::size_t cached_bytes = 0;
    std::size_t limit = std::size_t{1} << 30;  // 1 GiB
};
// Never destroyed (tensors with static storage may be freed after it would be).
inline host_block_cache& host_cache() {
    static host_block_cache* cache = new host_block_cache;
    return *cache;
}

inline void* host_block_allocate(std::size_t total) {
    if (host_cache_enabled && total >= host_cache_min_block) {
        host_block_cache& c = host_cache();
        std::lock_guard<std::mutex> lock(c.mutex);
        auto it = c.blocks.find(total);
        if (it != c.blocks.end() && !it->second.empty()) {
            void* p = it->second.back();
            it->second.pop_back();
            c.cached_bytes -= total;
            return p;
        }
    }
    return ::operator new(total, std::align_val_t{host_alignment});
}

inline void host_block_free(void* base, std::size_t total) noexcept {
    if (host_cache_enabled && total >= host_cache_min_block) {
        host_block_cache& c = host_cache();
        std::lock_guard<std::mutex> lock(c.mutex);
        if (c.cached_bytes + total <= c.limit) {
            try {
                c.blocks[total].push_back(base);
                c.cached_bytes += total;
                return;
            } catch (...) {  // no memory for the bookkeeping: free the block instead
            }
        }
    }
    ::operator delete(base, std::align_val_t{host_alignment});
}

/// Allocates bytes in space S (never returns null for bytes > 0).
template <class S>
void* allocate_bytes(std::size_t bytes) {
    if (bytes == 0) return nullptr;
    if constexpr (std::is_same_v<S, host_space>) {
        // one aligned header block in front records the size (for host_memory_usage and the cache)
        auto* base = static_cast<unsigned char*>(host_block_allocate(bytes + host_alignment));
        *reinterpret_cast<std::size_t*>(base) = bytes;
        host_bytes_allocated(static_cast<std::int64_t>(bytes));
        return base + host_alignment;
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
        auto* base = static_cast<unsigned char*>(p) - host_alignment;
        const std::size_t bytes = *reinterpret_cast<std::size_t*>(base);
        host_bytes_allocated(-static_cast<std::int64_t>(bytes));
        host_block_free(base, bytes + host_alignment);
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

/// Bytes held by host tensors now, and the most held at once since the last reset
/// (torch.cuda.memory_allocated / max_memory_allocated for the host). Counts tensor storage only.
struct host_memory_stats {
    std::int64_t current_bytes = 0;
    std::int64_t peak_bytes = 0;
};
inline host_memory_stats host_memory_usage() {
    return {detail::host_memory().current.load(), detail::host_memory().peak.load()};
}
/// Starts a new peak measurement from the current usage.
inline void reset_host_memory_peak() { detail::host_memory().peak.store(detail::host_memory().current.load()); }

/// Bytes of freed host blocks kept for reuse (core/memory_space.hpp, the host block cache).
inline std::size_t host_cache_bytes() {
    auto& c = detail::host_cache();
    std::lock_guard<std::mutex> lock(c.mutex);
    return c.cached_bytes;
}
/// Gives every cached block back to the system.
inline void release_host_cache() {
    auto& c = detail::host_cache();
    std::lock_guard<std::mutex> lock(c.mutex);
    for (auto& [total, list] : c.blocks)
        for (void* p : list) ::operator delete(p, std::align_val_t{detail::host_alignment});
    c.blocks.clear();
    c.cached_bytes = 0;
}
/// The most bytes the cache keeps (default 1 GiB; 0 turns caching off).
inline void set_host_cache_limit(std::size_t bytes) {
    auto& c = detail::host_cache();
    {
        std::lock_guard<std::mutex> lock(c.mutex);
        c.limit = bytes;
    }
    if (host_cache_bytes() > bytes) release_host_cache();
}
}  // namespace diffuse
