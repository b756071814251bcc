// Host tensor memory accounting and the block cache (core/memory_space.hpp).

#include <diffuse/core/memory_space.hpp>
#include <diffuse/core/tensor.hpp>

#include <doctest/doctest.h>

using namespace diffuse;

TEST_CASE("host_memory_usage: current and peak bytes of tensor storage") {
    const auto before = host_memory_usage();
    reset_host_memory_peak();
    {
        tensor<float, host_space> a(shape{1000});  // 4000 bytes
        CHECK(host_memory_usage().current_bytes == before.current_bytes + 4000);
        {
            tensor<double, host_space> b(shape{500});  // 4000 bytes
            CHECK(host_memory_usage().current_bytes == before.current_bytes + 8000);
        }
        CHECK(host_memory_usage().current_bytes == before.current_bytes + 4000);
    }
    const auto after = host_memory_usage();
    CHECK(after.current_bytes == before.current_bytes);
    CHECK(after.peak_bytes == before.current_bytes + 8000);
    reset_host_memory_peak();
    CHECK(host_memory_usage().peak_bytes == after.current_bytes);
}

TEST_CASE("host block cache: large blocks are reused, bounded, and releasable") {
    release_host_cache();
    CHECK(host_cache_bytes() == 0);
    const std::int64_t n = 1 << 20;  // 4 MiB of floats: above the 256 KiB caching threshold
    const float* first = nullptr;
    {
        tensor<float, host_space> a(shape{n}, 1.0f);
        first = a.data();
    }
    if (!detail::host_cache_enabled) {  // AddressSanitizer build: blocks go straight back
        CHECK(host_cache_bytes() == 0);
        return;
    }
    CHECK(host_cache_bytes() >= static_cast<std::size_t>(n) * sizeof(float));
    {
        tensor<float, host_space> b(shape{n});  // same size: the cached block comes back
        CHECK(b.data() == first);
        CHECK(host_cache_bytes() == 0);
    }
    // small blocks are not cached
    { tensor<float, host_space> small(shape{16}); }
    CHECK(host_cache_bytes() == static_cast<std::size_t>(n) * sizeof(float) + detail::host_alignment);
    set_host_cache_limit(0);  // releases and stops caching
    CHECK(host_cache_bytes() == 0);
    { tensor<float, host_space> c(shape{n}); }
    CHECK(host_cache_bytes() == 0);
    set_host_cache_limit(std::size_t{1} << 30);
    release_host_cache();
}
