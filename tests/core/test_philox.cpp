// Philox4x32-10 against the Random123 known-answer vectors, and the normal / uniform draws
// built on it (layout in docs/random.md).
#include <diffuse/core/philox.hpp>

#include "support/check.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <vector>

using namespace diffuse;

TEST_CASE("Philox4x32-10 reproduces the Random123 known-answer vectors") {
    // Random123 tests/kat_vectors, lines "philox4x32 10 <ctr x4> <key x2> <out x4>".
    struct kat {
        philox_block ctr;
        std::uint32_t k0, k1;
        philox_block out;
    };
    const kat cases[] = {
        {{{0, 0, 0, 0}}, 0, 0, {{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}}},
        {{{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}}, 0xffffffffu, 0xffffffffu,
         {{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}}},
        {{{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}}, 0xa4093822u, 0x299f31d0u,
         {{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}}},
    };
    for (const auto& c : cases) {
        const philox_block got = philox4x32<10>(c.ctr, c.k0, c.k1);
        for (int i = 0; i < 4; ++i) CHECK(got.v[i] == c.out.v[i]);
    }
}

TEST_CASE("normal draws follow the documented layout") {
    // draw n is component n % 2 of the Box–Muller pair built from block n / 2
    const std::uint64_t seed = 0x0123456789abcdefULL, stream = 3;
    for (std::uint64_t j : {0ULL, 1ULL, 12345ULL, (1ULL << 40) + 7}) {
        const philox_block w = philox4x32<10>(
            philox_block{{static_cast<std::uint32_t>(j), static_cast<std::uint32_t>(j >> 32),
                          static_cast<std::uint32_t>(stream), 0u}},
            static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32));
        const double u1 = (static_cast<double>(((std::uint64_t(w.v[0]) << 32) | w.v[1]) >> 11) + 0.5) * std::ldexp(1.0, -53);
        const double u2 = static_cast<double>(((std::uint64_t(w.v[2]) << 32) | w.v[3]) >> 11) * std::ldexp(1.0, -53);
        const double r = std::sqrt(-2.0 * std::log(u1));
        CHECK(philox_normal(seed, stream, 2 * j) == r * std::cos(2 * M_PI * u2));
        CHECK(philox_normal(seed, stream, 2 * j + 1) == r * std::sin(2 * M_PI * u2));
    }
}

TEST_CASE("normal draws have mean 0, variance 1 and normal tails (fixed seed, derived bounds)") {
    // n = 400000 draws. Under N(0,1): z_mean = mean·√n ~ N(0,1); the sample variance S² has
    // sd √(2/(n−1)); the fraction beyond 1.96 has mean p = 0.04999579 and sd √(p(1−p)/n).
    // Each |z| < 4.89 (false-failure 1e-6 per assertion; closed_forms.md F2).
    const std::size_t n = 400000;
    philox_rng rng(2024, 1);
    std::vector<double> z(n);
    rng.fill_normal(z.data(), n);
    double m = 0, m2 = 0, tail = 0;
    for (double v : z) {
        m += v;
        m2 += v * v;
        tail += std::abs(v) > 1.959963984540054 ? 1.0 : 0.0;
    }
    m /= n;
    const double var = (m2 - n * m * m) / (n - 1);
    const double p = 0.05;
    CHECK(std::abs(m * std::sqrt(double(n))) < 4.89);
    CHECK(std::abs((var - 1.0) / std::sqrt(2.0 / (n - 1))) < 4.89);
    CHECK(std::abs((tail / n - p) / std::sqrt(p * (1 - p) / n)) < 4.89);
}

TEST_CASE("uniform draws lie in the unit interval and pass a DKW bound") {
    // DKW–Massart: P(sup|F_n − F| > ε) ≤ 2 exp(−2nε²); ε = √(ln(2/α)/(2n)) with α = 1e-6.
    const std::size_t n = 100000;
    philox_rng rng(7);
    std::vector<double> u(n);
    rng.fill_uniform(u.data(), n);
    std::size_t outside = 0;
    for (double v : u) outside += !(v >= 0.0 && v < 1.0);
    CHECK(outside == 0);
    std::sort(u.begin(), u.end());
    double d = 0;
    for (std::size_t i = 0; i < n; ++i)
        d = std::max({d, std::abs(u[i] - double(i) / n), std::abs(u[i] - double(i + 1) / n)});
    CHECK(d < std::sqrt(std::log(2.0 / 1e-6) / (2.0 * n)));
}

TEST_CASE("streams and seeds are independent, and offsets make fills chunk-independent") {
    philox_rng a(1, 0), b(1, 1), c(2, 0);
    int same_ab = 0, same_ac = 0;
    for (int i = 0; i < 1000; ++i) {
        const double x = a.normal(), y = b.normal(), z = c.normal();
        same_ab += (x == y);
        same_ac += (x == z);
    }
    CHECK(same_ab == 0);
    CHECK(same_ac == 0);
    CHECK(a.normal_offset() == 1000);
    philox_rng d(1, 0);
    d.set_normal_offset(999);
    philox_rng e(1, 0);
    for (int i = 0; i < 999; ++i) e.normal();
    CHECK(d.normal() == e.normal());
    CHECK(a.split(5).stream() == 5);
    DIFFUSE_CHECK_ERROR(philox_rng(1, philox_max_stream + 1), "stream", "2^63 - 1");
}

TEST_CASE("float draws are the double draws rounded") {
    philox_rng a(11), b(11);
    std::vector<float> f(64);
    std::vector<double> d(64);
    a.fill_normal(f.data(), f.size());
    b.fill_normal(d.data(), d.size());
    for (std::size_t i = 0; i < f.size(); ++i) CHECK(f[i] == static_cast<float>(d[i]));
}
