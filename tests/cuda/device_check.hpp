#pragma once
// The CUDA tests' comparison: a device tensor against the host (serial oracle) result, element by element,
// |got − ref| <= rtol + rtol·|ref| (atol = rtol: values of order one), reporting how many differ.

#include "support/check.hpp"

#include <diffuse/core/tensor.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace diffuse::test {

template <class T>
void check_same_on_device(const tensor<T, device_space>& d, const tensor<T, host_space>& h, double rtol) {
    const auto got = d.to_vector();
    int bad = 0;
    double worst = 0.0;
    for (std::int64_t i = 0; i < h.numel(); ++i) {
        const double g = static_cast<double>(got[static_cast<std::size_t>(i)]), r = static_cast<double>(h[i]);
        worst = std::max(worst, std::abs(g - r));
        if (!close(g, r, rtol, rtol)) ++bad;
    }
    CHECK_MESSAGE(bad == 0, bad << " of " << h.numel() << " elements differ (max |device − host| " << worst << ")");
}

}  // namespace diffuse::test
