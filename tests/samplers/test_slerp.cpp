// samplers/slerp.hpp: spherical interpolation of noise — exact identities (endpoints, the 90°
// case, norm preservation for equal norms, the lerp fallback), per-item vs whole-tensor angles,
// the variance-preserving property for independent high-dimensional Gaussians (with lerp's
// variance loss for contrast), thread-count determinism of the dot products, and errors.
#include <diffuse/samplers/slerp.hpp>

#include <diffuse/backend/randn.hpp>
#include <diffuse/backend/reduce.hpp>
#include <diffuse/core/philox.hpp>

#include "support/check.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <numbers>
#include <vector>

using namespace diffuse;
using namespace diffuse::samplers;

namespace {

double dot(const tensor<double, host_space>& a, const tensor<double, host_space>& b, std::int64_t lo = 0,
           std::int64_t hi = -1) {
    if (hi < 0) hi = a.numel();
    double s = 0;
    for (std::int64_t i = lo; i < hi; ++i) s += a[i] * b[i];
    return s;
}

}  // namespace

TEST_CASE("slerp coefficients: endpoints, the 90 degree case and the lerp fallback") {
    for (double c : {-0.9, -0.3, 0.0, 0.4, 0.99}) {
        const slerp_coeffs a = slerp_coefficients(0.0, c), b = slerp_coefficients(1.0, c);
        CHECK(a.c0 == 1.0);  // sin θ / sin θ and sin 0: exact
        CHECK(a.c1 == 0.0);
        CHECK(b.c0 == 0.0);
        CHECK(b.c1 == 1.0);
        CHECK(!a.linear);
    }
    // θ = 90°: c0 = cos(tπ/2), c1 = sin(tπ/2), c0² + c1² = 1.
    for (double t : {0.1, 0.25, 0.5, 0.8}) {
        const slerp_coeffs k = slerp_coefficients(t, 0.0);
        DIFFUSE_CHECK_CLOSE(k.c0, std::cos(t * std::numbers::pi / 2), 1e-15, 0.0);
        DIFFUSE_CHECK_CLOSE(k.c1, std::sin(t * std::numbers::pi / 2), 1e-15, 0.0);
        DIFFUSE_CHECK_CLOSE(k.theta, std::numbers::pi / 2, 1e-15, 0.0);
    }
    // |cos θ| above the threshold (nearly parallel or antiparallel): lerp.
    for (double c : {0.9996, 1.0, -0.9999, -1.0}) {
        const slerp_coeffs k = slerp_coefficients(0.3, c);
        CHECK(k.linear);
        CHECK(k.c0 == 0.7);
        CHECK(k.c1 == 0.3);
    }
    CHECK(!slerp_coefficients(0.3, 0.9994).linear);
    CHECK(slerp_coefficients(0.3, 0.95, 0.9).linear);  // custom threshold
}

TEST_CASE("slerp of orthogonal equal-norm tensors is the rotation cos·v0 + sin·v1 and keeps the norm") {
    tensor<double, host_space> v0(shape{1, 64}), v1(shape{1, 64}), out(shape{1, 64});
    philox_rng rng(4);
    randn(v0.view(), rng);
    randn(v1.view(), rng);
    // Gram-Schmidt, then scale v1 to v0's norm.
    const double p = dot(v0, v1) / dot(v0, v0);
    for (int i = 0; i < 64; ++i) v1[i] -= p * v0[i];
    const double r = std::sqrt(dot(v0, v0) / dot(v1, v1));
    for (int i = 0; i < 64; ++i) v1[i] *= r;
    for (double t : {0.0, 0.3, 0.5, 1.0}) {
        const auto c = slerp(out, t, v0, v1);
        CHECK(std::abs(c[0].theta - std::numbers::pi / 2) < 1e-14);
        for (int i = 0; i < 64; ++i)
            DIFFUSE_CHECK_CLOSE(out[i], std::cos(t * std::numbers::pi / 2) * v0[i] + std::sin(t * std::numbers::pi / 2) * v1[i],
                                1e-14, 0.0);
        DIFFUSE_CHECK_CLOSE(dot(out, out), dot(v0, v0), 0.0, 1e-14);
    }
}

TEST_CASE("slerp keeps the norm of equal-norm inputs at any angle and returns the endpoints exactly") {
    tensor<double, host_space> v0(shape{3, 200}), v1(shape{3, 200}), out(shape{3, 200});
    philox_rng rng(9);
    randn(v0.view(), rng);
    randn(v1.view(), rng);
    // Items at different angles: item 1 correlated with v0 (cos ≈ 0.8), item 2 anti-correlated.
    for (int i = 0; i < 200; ++i) {
        v1(1, i) = 0.8 * v0(1, i) + 0.6 * v1(1, i);
        v1(2, i) = -0.5 * v0(2, i) + 0.86 * v1(2, i);
    }
    for (int b = 0; b < 3; ++b) {  // equal norms per item
        const double r = std::sqrt(dot(v0, v0, 200 * b, 200 * (b + 1)) / dot(v1, v1, 200 * b, 200 * (b + 1)));
        for (int i = 0; i < 200; ++i) v1(b, i) *= r;
    }
    for (double t : {0.0, 0.2, 0.5, 0.9, 1.0, 1.3}) {
        const auto c = slerp(out, t, v0, v1);
        REQUIRE(c.size() == 3u);
        for (int b = 0; b < 3; ++b) {
            DIFFUSE_CHECK_CLOSE(dot(out, out, 200 * b, 200 * (b + 1)), dot(v0, v0, 200 * b, 200 * (b + 1)), 0.0, 1e-13);
            // The angle of item b is its own (per_item).
            const double cb = dot(v0, v1, 200 * b, 200 * (b + 1)) / dot(v0, v0, 200 * b, 200 * (b + 1));
            DIFFUSE_CHECK_CLOSE(std::cos(c[static_cast<std::size_t>(b)].theta), cb, 1e-14, 0.0);
        }
        if (t == 0.0 || t == 1.0)
            for (std::int64_t i = 0; i < out.numel(); ++i) CHECK(out[i] == (t == 0.0 ? v0[i] : v1[i]));
    }
    // whole mode: one angle over all 600 elements.
    const auto w = slerp(out, 0.5, v0, v1, slerp_options{.mode = slerp_mode::whole});
    REQUIRE(w.size() == 1u);
    DIFFUSE_CHECK_CLOSE(std::cos(w[0].theta), dot(v0, v1) / std::sqrt(dot(v0, v0) * dot(v1, v1)), 1e-14, 0.0);
    for (std::int64_t i = 0; i < out.numel(); ++i) DIFFUSE_CHECK_CLOSE(out[i], w[0].c0 * v0[i] + w[0].c1 * v1[i], 1e-15, 1e-15);
    // out may alias v0.
    tensor<double, host_space> a = v0, expect(shape{3, 200});
    slerp(expect, 0.4, v0, v1);
    slerp(a, 0.4, a, v1);
    for (std::int64_t i = 0; i < a.numel(); ++i) CHECK(a[i] == expect[i]);
}

TEST_CASE("slerp of independent unit Gaussians keeps unit variance, lerp halves it") {
    // B = 64 items of d = 4·64·64 = 16384 (a latent): each slerp(0.5) item has per-element sample
    // variance ≈ 1. Per item, ‖out‖²/d has mean 1 − O(1/d²) and sd ≈ √(2(c0⁴ + c1⁴)/d) ≤ √(2/d) =
    // 0.011; the average over 64 items has sd ≤ 0.0014, asserted within 5 sd (0.007). Each item
    // within 5·√(2/d) = 0.055. lerp(0.5) gives 0.5 (variance (1−t)² + t²).
    const std::int64_t B = 64, d = 4 * 64 * 64;
    tensor<float, host_space> v0(shape{B, 4, 64, 64}), v1(shape{B, 4, 64, 64}), out(shape{B, 4, 64, 64}),
        lin(shape{B, 4, 64, 64});
    philox_rng rng(2025);
    randn(v0.view(), rng);
    randn(v1.view(), rng);
    const auto c = slerp(out, 0.5, v0, v1);
    slerp(lin, 0.5, v0, v1, slerp_options{.dot_threshold = 1e-300});  // threshold tiny: always lerp
    double mean_var = 0, mean_lin = 0, max_dev = 0, max_cos = 0;
    for (std::int64_t b = 0; b < B; ++b) {
        const double v = sum_squares(out.cview().item(b)) / d, l = sum_squares(lin.cview().item(b)) / d;
        mean_var += v / B;
        mean_lin += l / B;
        max_dev = std::max(max_dev, std::abs(v - 1.0));
        max_cos = std::max(max_cos, std::abs(std::cos(c[static_cast<std::size_t>(b)].theta)));
    }
    MESSAGE("slerp(0.5) mean per-element variance " << mean_var << " (max item deviation " << max_dev
                                                    << "), lerp(0.5) " << mean_lin << ", max |cos θ| " << max_cos);
    CHECK(std::abs(mean_var - 1.0) < 0.007);
    CHECK(max_dev < 5.0 * std::sqrt(2.0 / d));
    CHECK(std::abs(mean_lin - 0.5) < 0.007);
    CHECK(max_cos < 5.0 / std::sqrt(static_cast<double>(d)));  // independent: cos θ ~ N(0, 1/d)
}

TEST_CASE("slerp dot products do not depend on the chunking: items longer than one reduce chunk") {
    // 3 items of 10000 elements (3 chunks each of 4096): the same coefficients as a host double
    // loop, to rounding.
    tensor<double, host_space> v0(shape{3, 10000}), v1(shape{3, 10000}), out(shape{3, 10000});
    philox_rng rng(1);
    randn(v0.view(), rng);
    randn(v1.view(), rng);
    for (int i = 0; i < 10000; ++i) v1(1, i) += v0(1, i);
    const auto c = slerp(out, 0.25, v0, v1);
    for (int b = 0; b < 3; ++b) {
        const std::int64_t lo = 10000 * b, hi = lo + 10000;
        const double cb = dot(v0, v1, lo, hi) / std::sqrt(dot(v0, v0, lo, hi) * dot(v1, v1, lo, hi));
        DIFFUSE_CHECK_CLOSE(std::cos(c[static_cast<std::size_t>(b)].theta), cb, 1e-13, 0.0);
    }
}

TEST_CASE("slerp rejects bad arguments with readable errors") {
    tensor<double, host_space> a(shape{2, 3}, 1.0), b(shape{2, 3}, 0.5), o(shape{2, 3}), bad(shape{3, 2}, 1.0);
    tensor<double, host_space> zero(shape{2, 3}, 1.0), empty(shape{0, 3});
    for (int i = 3; i < 6; ++i) zero[i] = 0.0;
    DIFFUSE_CHECK_ERROR(slerp(o, 0.5, a, bad), "shape");
    DIFFUSE_CHECK_ERROR(slerp(bad, 0.5, a, b), "shape");
    DIFFUSE_CHECK_ERROR(slerp(o, std::nan(""), a, b), "t", "finite");
    DIFFUSE_CHECK_ERROR(slerp(o, 0.5, a, b, slerp_options{.dot_threshold = 0.0}), "dot_threshold", "(0, 1]");
    DIFFUSE_CHECK_ERROR(slerp(o, 0.5, a, b, slerp_options{.dot_threshold = 1.5}), "dot_threshold");
    DIFFUSE_CHECK_ERROR(slerp(o, 0.5, a, zero), "v1[item 1]", "> 0");
    DIFFUSE_CHECK_ERROR(slerp(o, 0.5, zero, a), "v0[item 1]");
    tensor<double, host_space> e2(shape{0, 3});
    DIFFUSE_CHECK_ERROR(slerp(e2, 0.5, empty, empty), "numel");
    DIFFUSE_CHECK_ERROR(slerp_coefficients(0.5, std::nan("")), "cos_theta");
}
