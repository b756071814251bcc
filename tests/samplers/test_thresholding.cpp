// samplers/thresholding.hpp: dynamic thresholding under both conventions on hand-computed
// tensors (closed_forms D6, peers.md b.8), the default sample_max_value = 1 case (= clipping to
// [−1, 1] in diffusers), the D6 properties on a large tensor, clip_sample, and argument errors.
#include <diffuse/samplers/thresholding.hpp>

#include <diffuse/core/philox.hpp>
#include <diffuse/core/tensor.hpp>

#include "support/check.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <vector>

using namespace diffuse;
using namespace diffuse::samplers;

namespace {

/// [2, 4]: item 0 has |x| = {0.1, 0.5, 0.9, 2.0} (the D6 type-7 anchor: quantile 0.5 = 0.7),
/// item 1 is item 0 times 4 (quantile 0.5 = 2.8): two batch items with different scales.
template <class T>
tensor<T, host_space> two_items() {
    tensor<T, host_space> x(shape{2, 4});
    const double v[4] = {0.1, -0.5, 0.9, -2.0};
    for (int j = 0; j < 4; ++j) {
        x(0, j) = static_cast<T>(v[j]);
        x(1, j) = static_cast<T>(4.0 * v[j]);
    }
    return x;
}

thresholding make(threshold_convention c, double ratio, double max_value) {
    thresholding t;
    t.enabled = true;
    t.convention = c;
    t.ratio = ratio;
    t.max_value = max_value;
    return t;
}

/// Applies cfg to two_items<T>() and compares with the expected rows (hand-computed below).
/// Tolerance: the result is one clamp and one division in T of values given to 2 digits, so
/// 4 ulp of T relative (the rounding of the decimal inputs and of s) plus a tiny atol for zeros.
template <class T>
void check_rows(const thresholding& cfg, std::initializer_list<double> row0, std::initializer_list<double> row1) {
    tensor<T, host_space> x = two_items<T>();
    apply_thresholding(x.view(), cfg);
    int j = 0;
    for (double e : row0) DIFFUSE_CHECK_CLOSE(x(0, j++), e, 1e-300, 4 * test::eps<T>);
    j = 0;
    for (double e : row1) DIFFUSE_CHECK_CLOSE(x(1, j++), e, 1e-300, 4 * test::eps<T>);
}

}  // namespace

TEST_CASE("thresholding: convention names parse and print") {
    CHECK(parse_threshold_convention("diffusers") == threshold_convention::diffusers);
    CHECK(parse_threshold_convention("dpm_solver") == threshold_convention::dpm_solver);
    CHECK(to_string(threshold_convention::diffusers) == "diffusers");
    CHECK(to_string(threshold_convention::dpm_solver) == "dpm_solver");
    const thresholding d{};
    CHECK(!d.enabled);
    CHECK(d.convention == threshold_convention::diffusers);
    CHECK(d.ratio == 0.995);
    CHECK(d.max_value == 1.0);
}

TEST_CASE("thresholding: threshold_scale under both conventions") {
    // diffusers: clamp(q, 1, max_value); dpm_solver: max(q, max_value). Exact (min/max only).
    const thresholding d2 = make(threshold_convention::diffusers, 0.995, 2.0);
    CHECK(threshold_scale(0.5, d2) == 1.0);  // never scales up
    CHECK(threshold_scale(1.5, d2) == 1.5);
    CHECK(threshold_scale(3.0, d2) == 2.0);  // capped
    const thresholding d1 = make(threshold_convention::diffusers, 0.995, 1.0);
    CHECK(threshold_scale(0.5, d1) == 1.0);
    CHECK(threshold_scale(7.0, d1) == 1.0);  // sample_max_value = 1: always s = 1 (clipping)
    const thresholding p1 = make(threshold_convention::dpm_solver, 0.995, 1.0);
    CHECK(threshold_scale(0.5, p1) == 1.0);
    CHECK(threshold_scale(7.0, p1) == 7.0);  // no cap
    const thresholding ph = make(threshold_convention::dpm_solver, 0.995, 0.5);
    CHECK(threshold_scale(0.3, ph) == 0.5);  // floor below 1 scales items up
    CHECK(threshold_scale(0.7, ph) == 0.7);
}

TEST_CASE("thresholding: per-item quantiles are torch.quantile (type 7)") {
    const tensor<double, host_space> x = two_items<double>();
    // ratio 0.5: rank 1.5 between 0.5 and 0.9 -> 0.7; item 1: 4·0.7 = 2.8.
    std::vector<double> s = threshold_scales(x.cview(), make(threshold_convention::dpm_solver, 0.5, 1e-3));
    DIFFUSE_CHECK_CLOSE(s[0], 0.7, 0.0, 4 * test::eps<double>);
    DIFFUSE_CHECK_CLOSE(s[1], 2.8, 0.0, 4 * test::eps<double>);
    // ratio 0.9: rank 2.7 between 0.9 and 2.0 -> 0.9 + 0.7·1.1 = 1.67; item 1: 6.68.
    s = threshold_scales(x.cview(), make(threshold_convention::dpm_solver, 0.9, 1e-3));
    DIFFUSE_CHECK_CLOSE(s[0], 1.67, 0.0, 4 * test::eps<double>);
    DIFFUSE_CHECK_CLOSE(s[1], 6.68, 0.0, 4 * test::eps<double>);
    // ratio 1: the maximum.
    s = threshold_scales(x.cview(), make(threshold_convention::dpm_solver, 1.0, 1e-3));
    CHECK(s[0] == 2.0);
    CHECK(s[1] == 8.0);
}

TEST_CASE_TEMPLATE("thresholding: hand-computed tensors, diffusers convention", T, float, double) {
    // q = (0.7, 2.8) at ratio 0.5.
    // max_value = 2: s = (clamp(0.7, 1, 2), clamp(2.8, 1, 2)) = (1, 2).
    check_rows<T>(make(threshold_convention::diffusers, 0.5, 2.0), {0.1, -0.5, 0.9, -1.0}, {0.2, -1.0, 1.0, -1.0});
    // max_value = 4: s = (1, 2.8): item 1 = clamp(4v, ±2.8)/2.8.
    check_rows<T>(make(threshold_convention::diffusers, 0.5, 4.0), {0.1, -0.5, 0.9, -1.0},
                  {0.4 / 2.8, -2.0 / 2.8, 1.0, -1.0});
    // Default sample_max_value = 1: plain clipping to [−1, 1] whatever the quantile.
    check_rows<T>(make(threshold_convention::diffusers, 0.5, 1.0), {0.1, -0.5, 0.9, -1.0}, {0.4, -1.0, 1.0, -1.0});
    check_rows<T>(make(threshold_convention::diffusers, 0.995, 1.0), {0.1, -0.5, 0.9, -1.0},
                  {0.4, -1.0, 1.0, -1.0});
}

TEST_CASE_TEMPLATE("thresholding: hand-computed tensors, dpm_solver convention", T, float, double) {
    // max_value = 1: s = (max(0.7, 1), max(2.8, 1)) = (1, 2.8).
    check_rows<T>(make(threshold_convention::dpm_solver, 0.5, 1.0), {0.1, -0.5, 0.9, -1.0},
                  {0.4 / 2.8, -2.0 / 2.8, 1.0, -1.0});
    // max_value = 0.5: s = (0.7, 2.8): item 0 is scaled UP by 1/0.7 (the diffusers rule never does).
    check_rows<T>(make(threshold_convention::dpm_solver, 0.5, 0.5), {0.1 / 0.7, -0.5 / 0.7, 1.0, -1.0},
                  {0.4 / 2.8, -2.0 / 2.8, 1.0, -1.0});
    // max_value = 3: s = (3, 3): no item reaches the floor's quantile.
    check_rows<T>(make(threshold_convention::dpm_solver, 0.5, 3.0), {0.1 / 3, -0.5 / 3, 0.9 / 3, -2.0 / 3},
                  {0.4 / 3, -2.0 / 3, 1.0, -1.0});
}

TEST_CASE("thresholding: disabled leaves x unchanged") {
    tensor<double, host_space> x = two_items<double>();
    const tensor<double, host_space> ref = two_items<double>();
    thresholding cfg = make(threshold_convention::dpm_solver, 0.5, 0.5);
    cfg.enabled = false;
    apply_thresholding(x, cfg);
    for (std::int64_t i = 0; i < x.numel(); ++i) CHECK(x[i] == ref[i]);
}

TEST_CASE("thresholding: D6 properties on a large 4x3x64x64 batch") {
    // 4 items of 12288 normals with scales 0.3, 1, 2, 5 (49152 elements: above the OpenMP threshold).
    const shape sh{4, 3, 64, 64};
    const std::int64_t per = 3 * 64 * 64;
    tensor<double, host_space> base(sh);
    philox_rng rng(20240603);
    rng.fill_normal(base.data(), static_cast<std::size_t>(base.numel()));
    const double scale[4] = {0.3, 1.0, 2.0, 5.0};
    for (std::int64_t i = 0; i < base.numel(); ++i) base[i] *= scale[i / per];

    SUBCASE("diffusers with sample_max_value = 1 is clip(-1, 1), bitwise") {
        tensor<double, host_space> a = base, b = base;
        apply_thresholding(a, make(threshold_convention::diffusers, 0.995, 1.0));
        clip_sample(b, 1.0);
        std::int64_t differ = 0;
        for (std::int64_t i = 0; i < a.numel(); ++i) differ += a[i] != b[i];
        CHECK(differ == 0);
    }
    SUBCASE("dpm_solver: max |out| <= 1 and frac(|x| > s) <= 1 - p where s is the quantile") {
        for (double p : {0.995, 0.9}) {
            tensor<double, host_space> a = base;
            const thresholding cfg = make(threshold_convention::dpm_solver, p, 1e-6);  // s = q always
            const std::vector<double> s = threshold_scales(base.cview(), cfg);
            apply_thresholding(a, cfg);
            for (std::int64_t b = 0; b < 4; ++b) {
                std::int64_t above = 0, differ = 0;
                double mx = 0.0;
                for (std::int64_t i = b * per; i < (b + 1) * per; ++i) {
                    above += std::abs(base[i]) > s[static_cast<std::size_t>(b)];
                    mx = std::max(mx, std::abs(a[i]));
                    // Element-wise: the same clamp and division in double, so bitwise equal.
                    const double sb = s[static_cast<std::size_t>(b)];
                    differ += a[i] != std::max(-sb, std::min(base[i], sb)) / sb;
                }
                CHECK(differ == 0);
                CHECK(mx <= 1.0);
                CHECK(mx == 1.0);  // the items with |x| >= s land on ±1 exactly
                // Type 7 puts q between order statistics floor(p(n − 1)) and the next (0-based), so with
                // distinct values exactly n − 1 − floor(p(n − 1)) elements exceed it: <= (1 − p)·n + 1.
                const auto expected = per - 1 - static_cast<std::int64_t>(std::floor(p * (per - 1)));
                CHECK(above == expected);
                CHECK(static_cast<double>(above) / per <= 1.0 - p + 1.0 / per);
            }
        }
    }
    SUBCASE("diffusers with a cap: s in [1, max_value] per item") {
        tensor<double, host_space> a = base;
        const thresholding cfg = make(threshold_convention::diffusers, 0.995, 4.0);
        const std::vector<double> q = quantile_abs_per_batch(base.cview(), 0.995);
        const std::vector<double> s = threshold_scales(base.cview(), cfg);
        // The 0.995 quantile of |N(0, σ²)| is 2.807σ: items 0.3 -> s = 1, 1 -> q, 2 -> 4 (capped), 5 -> 4.
        CHECK(s[0] == 1.0);
        CHECK(s[1] == q[1]);
        CHECK(s[2] == 4.0);
        CHECK(s[3] == 4.0);
        apply_thresholding(a, cfg);
        std::int64_t differ = 0;
        for (std::int64_t i = 0; i < a.numel(); ++i) {
            const double sb = s[static_cast<std::size_t>(i / per)];
            differ += a[i] != std::max(-sb, std::min(base[i], sb)) / sb;
        }
        CHECK(differ == 0);
    }
}

TEST_CASE("clip_sample: clamp to plus or minus range") {
    tensor<float, host_space> x = two_items<float>();
    clip_sample(x, 0.6);
    const float e0[4] = {0.1f, -0.5f, 0.6f, -0.6f};
    const float e1[4] = {0.4f, -0.6f, 0.6f, -0.6f};
    for (int j = 0; j < 4; ++j) {
        CHECK(x(0, j) == e0[j]);
        CHECK(x(1, j) == e1[j]);
    }
}

TEST_CASE("thresholding: argument errors") {
    tensor<double, host_space> x = two_items<double>();
    const double nan = std::numeric_limits<double>::quiet_NaN();
    const double inf = std::numeric_limits<double>::infinity();
    DIFFUSE_CHECK_ERROR(parse_threshold_convention("imagen"), "threshold_convention", "imagen", "diffusers",
                        "dpm_solver");
    for (double r : {0.0, -0.1, 1.5, nan})
        DIFFUSE_CHECK_ERROR(apply_thresholding(x, make(threshold_convention::diffusers, r, 1.0)), "thresholding.ratio",
                            "(0, 1]");
    for (double m : {0.0, -1.0, inf, nan})
        DIFFUSE_CHECK_ERROR(apply_thresholding(x, make(threshold_convention::dpm_solver, 0.995, m)),
                            "thresholding.max_value", "> 0");
    // Validated even when disabled.
    thresholding off = make(threshold_convention::diffusers, 2.0, 1.0);
    off.enabled = false;
    DIFFUSE_CHECK_ERROR(apply_thresholding(x, off), "thresholding.ratio");
    double scalar = 3.0;
    DIFFUSE_CHECK_ERROR(apply_thresholding(tensor_view<double, host_space>(&scalar, shape{}), thresholding{}),
                        "x0.rank()", ">= 1");
    for (double r : {0.0, -1.0, inf, nan}) DIFFUSE_CHECK_ERROR(clip_sample(x, r), "clip_sample_range", "> 0");
}
