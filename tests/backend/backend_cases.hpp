#pragma once
// Backend test bodies written once, run for every memory space (DESIGN.md, Testing policy):
// tests/backend/test_backend.cpp instantiates them for host_space (serial and OpenMP builds),
// tests/cuda/test_backend_cuda.cu for device_space. The oracle is always a plain serial loop
// on the host.

#include <diffuse/backend/backend.hpp>
#include <diffuse/core/philox.hpp>
#include <diffuse/core/tensor.hpp>

#include "support/check.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace diffuse::test {

/// A host tensor with deterministic, sign-varying, non-trivial values.
template <class T>
tensor<T, host_space> pattern(shape s, double phase) {
    tensor<T, host_space> t(s);
    for (std::int64_t i = 0; i < t.numel(); ++i)
        t[i] = static_cast<T>(std::sin(0.37 * static_cast<double>(i) + phase) * (1.0 + 0.001 * static_cast<double>(i % 97)));
    return t;
}

template <class T, class S>
tensor<T, S> to_space(const tensor<T, host_space>& h) {
    return h.template to<S>();
}

/// lincomb with 1–4 inputs equals Σ c_k x_k computed in long double, to a few ulps of T
/// relative to Σ|c_k x_k| (each product and sum rounds once: ≤ (N+1)·eps·Σ|c_k x_k|).
template <class T, class S>
void check_lincomb(std::int64_t n) {
    const shape s{n};
    const auto h0 = pattern<T>(s, 0.1), h1 = pattern<T>(s, 0.7), h2 = pattern<T>(s, 1.3), h3 = pattern<T>(s, 2.9);
    const auto x0 = to_space<T, S>(h0), x1 = to_space<T, S>(h1), x2 = to_space<T, S>(h2), x3 = to_space<T, S>(h3);
    const double c[4] = {0.75, -1.25, 3.5e-2, 2.0};
    tensor<T, S> out(s);
    for (int terms = 1; terms <= 4; ++terms) {
        switch (terms) {
            case 1: lincomb(out, c[0], x0); break;
            case 2: lincomb(out, c[0], x0, c[1], x1); break;
            case 3: lincomb(out, c[0], x0, c[1], x1, c[2], x2); break;
            default: lincomb(out, c[0], x0, c[1], x1, c[2], x2, c[3], x3); break;
        }
        const auto got = out.to_vector();
        const tensor<T, host_space>* hs[4] = {&h0, &h1, &h2, &h3};
        int bad = 0;
        for (std::int64_t i = 0; i < n; ++i) {
            long double ref = 0, mag = 0;
            for (int k = 0; k < terms; ++k) {
                // the coefficient is rounded to T first, as documented
                const long double ck = static_cast<T>(c[k]);
                ref += ck * static_cast<long double>((*hs[k])[i]);
                mag += std::fabs(static_cast<double>(ck * static_cast<long double>((*hs[k])[i])));
            }
            const double tol = (terms + 1) * eps<T> * static_cast<double>(mag) + 1e-300;
            if (std::abs(static_cast<double>(got[static_cast<std::size_t>(i)]) - static_cast<double>(ref)) > tol) ++bad;
        }
        CHECK_MESSAGE(bad == 0, terms << " terms: " << bad << " elements off");
    }
}

/// out aliasing an input: x = a·x + b·y, the in-place sampler update.
template <class T, class S>
void check_lincomb_in_place() {
    const shape s{3, 5, 7};
    const auto hx = pattern<T>(s, 0.2), hy = pattern<T>(s, 0.9);
    auto x = to_space<T, S>(hx);
    const auto y = to_space<T, S>(hy);
    lincomb(x, 0.5, x, -2.0, y);
    const auto got = x.to_vector();
    for (std::int64_t i = 0; i < hx.numel(); ++i) {
        const double ref = static_cast<double>(static_cast<T>(0.5) * hx[i] + static_cast<T>(-2.0) * hy[i]);
        DIFFUSE_CHECK_CLOSE(got[static_cast<std::size_t>(i)], ref, 0.0, 2 * eps<T>);
    }
}

/// sum, sum_squares, max_abs against long-double serial loops. The chunked double sum of m
/// terms errs by at most ~m·2^-53·Σ|x_i| (Higham, eq. 4.4); the tolerance uses that bound.
template <class T, class S>
void check_reductions(std::int64_t n) {
    const auto h = pattern<T>(shape{n}, 0.4);
    const auto x = to_space<T, S>(h);
    long double s = 0, ss = 0, sabs = 0, sabs2 = 0;
    double m = 0;
    for (std::int64_t i = 0; i < n; ++i) {
        const long double v = h[i];
        s += v;
        ss += v * v;
        sabs += std::fabs(static_cast<double>(v));
        sabs2 += v * v;
        m = std::max(m, std::abs(static_cast<double>(h[i])));
    }
    const double u = std::ldexp(1.0, -53) * static_cast<double>(n);
    DIFFUSE_CHECK_CLOSE(sum(x), static_cast<double>(s), u * static_cast<double>(sabs), 0.0);
    DIFFUSE_CHECK_CLOSE(sum_squares(x), static_cast<double>(ss), u * static_cast<double>(sabs2), 0.0);
    CHECK(max_abs(x) == m);  // max is exact
}

/// Per-batch quantile of |x| against a sort-based computation of torch.quantile's rule.
template <class T, class S>
void check_quantile(std::int64_t batch, std::int64_t per, double q) {
    const auto h = pattern<T>(shape{batch, per}, 1.1);
    const auto x = to_space<T, S>(h);
    const auto got = quantile_abs_per_batch(x, q);
    REQUIRE(static_cast<std::int64_t>(got.size()) == batch);
    for (std::int64_t b = 0; b < batch; ++b) {
        std::vector<double> v;
        for (std::int64_t i = 0; i < per; ++i) v.push_back(std::abs(static_cast<double>(h(b, i))));
        std::sort(v.begin(), v.end());
        const double rank = q * static_cast<double>(per - 1);
        const auto lo = static_cast<std::size_t>(std::floor(rank));
        const std::size_t hi = std::min(lo + 1, v.size() - 1);
        const double ref = v[lo] + (rank - static_cast<double>(lo)) * (v[hi] - v[lo]);
        DIFFUSE_CHECK_CLOSE(got[static_cast<std::size_t>(b)], ref, 0.0, 4 * eps<double>);
    }
}

/// randn matches philox_normal element by element (bitwise on the host; on the device up to
/// the last ulp of the double log/sin/cos), and advances the offset.
template <class T, class S>
void check_randn(std::int64_t n, bool bitwise) {
    philox_rng rng(20260101, 7);
    rng.set_normal_offset(5);  // an odd offset exercises the pair split
    tensor<T, S> out(shape{n});
    randn(out, rng);
    CHECK(rng.normal_offset() == static_cast<std::uint64_t>(5 + n));
    const auto got = out.to_vector();
    int bad = 0;
    for (std::int64_t i = 0; i < n; ++i) {
        const T ref = static_cast<T>(philox_normal(20260101, 7, static_cast<std::uint64_t>(5 + i)));
        const T g = got[static_cast<std::size_t>(i)];
        if (bitwise ? !(g == ref) : !close(g, ref, 8 * eps<T>, 8 * eps<T>)) ++bad;
    }
    CHECK_MESSAGE(bad == 0, bad << " of " << n << " draws differ");
}

}  // namespace diffuse::test
