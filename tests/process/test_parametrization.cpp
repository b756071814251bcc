// process/parametrization.hpp: eps / x0 / v / score conversions in VP and σ-space
// (docs/parametrisations.md; closed_forms A3, A10).
#include <diffuse/process/parametrization.hpp>

#include <diffuse/backend/randn.hpp>
#include <diffuse/backend/reduce.hpp>
#include <diffuse/core/philox.hpp>
#include <diffuse/core/tensor.hpp>

#include "support/check.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <vector>

using namespace diffuse;
using namespace diffuse::process;
using diffuse::test::eps;

namespace {

using pt = prediction_type;

/// max |x − y| over two host tensors, in double.
template <class T>
double max_diff(const tensor<T, host_space>& x, const tensor<T, host_space>& y) {
    double m = 0.0;
    for (std::int64_t i = 0; i < x.numel(); ++i)
        m = std::max(m, std::fabs(static_cast<double>(x[i]) - static_cast<double>(y[i])));
    return m;
}

/// The four parametrisations of one (x0, eps) pair at level (a, s), formed in double and
/// stored in T: x_t = a x0 + s eps, v = â eps − ŝ x0, score = −eps/s.
template <class T>
struct state {
    tensor<T, host_space> x0, eps, xt, v, score;
    const tensor<T, host_space>& of(pt p) const {
        return p == pt::sample ? x0 : p == pt::epsilon ? eps : p == pt::v_prediction ? v : score;
    }
};

template <class T>
state<T> make_state(double a, double s, std::int64_t n, std::uint64_t seed) {
    philox_rng rng(seed);
    std::vector<double> x0(static_cast<std::size_t>(n)), e(x0.size());
    rng.fill_normal(x0.data(), x0.size());
    rng.fill_normal(e.data(), e.size());
    const double r = std::hypot(a, s);
    std::vector<T> vx0, ve, vxt, vv, vs;
    for (std::size_t i = 0; i < x0.size(); ++i) {
        vx0.push_back(static_cast<T>(x0[i]));
        ve.push_back(static_cast<T>(e[i]));
        vxt.push_back(static_cast<T>(a * x0[i] + s * e[i]));
        vv.push_back(static_cast<T>(a / r * e[i] - s / r * x0[i]));
        vs.push_back(static_cast<T>(s > 0 ? -e[i] / s : 0.0));
    }
    const shape sh{n};
    return {tensor<T, host_space>::from_values(sh, vx0), tensor<T, host_space>::from_values(sh, ve),
            tensor<T, host_space>::from_values(sh, vxt), tensor<T, host_space>::from_values(sh, vv),
            tensor<T, host_space>::from_values(sh, vs)};
}

}  // namespace

TEST_CASE("prediction_type names are diffusers' strings, and unknown names list the allowed ones") {
    CHECK(parse_prediction_type("epsilon") == pt::epsilon);
    CHECK(parse_prediction_type("sample") == pt::sample);
    CHECK(parse_prediction_type("v_prediction") == pt::v_prediction);
    CHECK(parse_prediction_type("score") == pt::score);
    for (pt p : all_prediction_types) CHECK(parse_prediction_type(to_string(p)) == p);
    DIFFUSE_CHECK_ERROR(parse_prediction_type("v"), "prediction_type = \"v\"", "\"epsilon\"", "\"sample\"",
                        "\"v_prediction\"", "\"score\"");
    DIFFUSE_CHECK_ERROR(parse_prediction_type("Epsilon"), "prediction_type = \"Epsilon\"");
}

TEST_CASE("VP conversion coefficients are the closed forms of A3 (a^2 + s^2 = 1)") {
    const double a = 0.6, s = 0.8;
    // Each coefficient is a few roundings of O(1) values: 8 eps relative, plus 1e-16 absolute.
    auto check = [&](pt from, pt to, double cx, double cv) {
        const conversion c = conversion_coeffs(from, to, a, s);
        INFO(to_string(from) << " -> " << to_string(to));
        DIFFUSE_CHECK_CLOSE(c.c_xt, cx, 1e-16, 8 * eps<double>);
        DIFFUSE_CHECK_CLOSE(c.c_value, cv, 1e-16, 8 * eps<double>);
    };
    check(pt::v_prediction, pt::sample, a, -s);      // x0 = a x_t − s v
    check(pt::v_prediction, pt::epsilon, s, a);      // eps = s x_t + a v
    check(pt::epsilon, pt::sample, 1 / a, -s / a);   // x0 = (x_t − s eps)/a
    check(pt::sample, pt::epsilon, 1 / s, -a / s);   // eps = (x_t − a x0)/s
    check(pt::epsilon, pt::v_prediction, -s / a, 1 / a);
    check(pt::sample, pt::v_prediction, a / s, -1 / s);
    check(pt::epsilon, pt::score, 0, -1 / s);        // score = −eps/s
    check(pt::sample, pt::score, -1 / (s * s), a / (s * s));
    check(pt::v_prediction, pt::score, -1, -a / s);
    check(pt::score, pt::epsilon, 0, -s);
    check(pt::score, pt::sample, 1 / a, s * s / a);
    for (pt p : all_prediction_types) check(p, p, 0, 1);
}

TEST_CASE_TEMPLATE("conversion accuracy: v-space is well conditioned, eps->x0 and x0->eps are not (A3)", T, float,
                   double) {
    // Inputs formed in double and rounded to T; each conversion is one lincomb in T with
    // coefficients rounded to T. With M = max(|x0|) + max(|eps|) bounding every |x_t|, |v|:
    //   v -> x0, v -> eps            |err| <= 20 u M                 (coefficients <= 1)
    //   eps -> x0                    |err| <= 20 u M (1 + 1/a)
    //   x0 -> eps                    |err| <= 20 u M (1 + 1/s)
    //   x0 -> score vs −eps/s        |err| <= 20 u M (1 + 1/s²)      (compute the score from eps near t = 0)
    //   eps -> v -> eps, x0 -> v -> x0: the intermediate v carries error u M/a (or u M/s), but the way
    //   back multiplies it by a (or s): |err| <= 20 u M at every ᾱ — v-space round trips are tight.
    // Any other round trip p -> q -> p: |err| <= 20 u M_p (1 + 1/a)(1 + 1/s)² with M_p = M + max|p|.
    // (u = eps(T)/2; the catalogue measured 8.9e-16 = 8u·M/4-ish for the first line in float64.)
    const double u = eps<T> / 2;
    const std::int64_t n = 1000;
    for (double ab : {1e-9, 1e-4, 0.3, 0.9, 1 - 1e-9}) {
        const double a = std::sqrt(ab), s = std::sqrt(1 - ab);
        const state<T> st = make_state<T>(a, s, n, 17);
        const double M = max_abs(st.x0) + max_abs(st.eps);
        tensor<T, host_space> out(shape{n}), back(shape{n});
        INFO("abar = " << ab);
        convert(out, pt::v_prediction, st.v, pt::sample, st.xt, a, s);
        CHECK(max_diff(out, st.x0) <= 20 * u * M);
        convert(out, pt::v_prediction, st.v, pt::epsilon, st.xt, a, s);
        CHECK(max_diff(out, st.eps) <= 20 * u * M);
        convert(out, pt::epsilon, st.eps, pt::sample, st.xt, a, s);
        CHECK(max_diff(out, st.x0) <= 20 * u * M * (1 + 1 / a));
        convert(out, pt::sample, st.x0, pt::epsilon, st.xt, a, s);
        CHECK(max_diff(out, st.eps) <= 20 * u * M * (1 + 1 / s));
        convert(out, pt::sample, st.x0, pt::score, st.xt, a, s);
        CHECK(max_diff(out, st.score) <= 20 * u * M * (1 + 1 / (s * s)));
        // Round trips through v are tight.
        for (pt p : {pt::epsilon, pt::sample}) {
            convert(out, p, st.of(p), pt::v_prediction, st.xt, a, s);
            convert(back, pt::v_prediction, out, p, st.xt, a, s);
            INFO(to_string(p) << " -> v -> " << to_string(p));
            CHECK(max_diff(back, st.of(p)) <= 20 * u * M);
        }
        // Every round trip within its conditioning bound.
        for (pt p : all_prediction_types) {
            for (pt q : all_prediction_types) {
                convert(out, p, st.of(p), q, st.xt, a, s);
                convert(back, q, out, p, st.xt, a, s);
                const double Mp = M + max_abs(st.of(p));
                INFO(to_string(p) << " -> " << to_string(q) << " -> " << to_string(p));
                CHECK(max_diff(back, st.of(p)) <= 20 * u * Mp * (1 + 1 / a) * (1 + 1 / s) * (1 + 1 / s));
            }
        }
    }
}

TEST_CASE("loss-space identities: ||eps - eps^||^2 = SNR ||x0 - x0^||^2, ||v - v^||^2 = (1+SNR) ||x0 - x0^||^2") {
    // With x_t fixed, x̂0 -> ê, v̂, ŝ through convert (A3). Relative 1e-12 (catalogue: measured 3.3e-16);
    // the sums of 1000 squares add ~1000 u relative at worst.
    for (double ab : {0.37, 0.01, 0.99}) {
        const double a = std::sqrt(ab), s = std::sqrt(1 - ab), snr = ab / (1 - ab);
        const state<double> st = make_state<double>(a, s, 1000, 23);
        philox_rng rng(24);
        auto x0h = randn<double, host_space>(shape{1000}, rng);
        lincomb(x0h, 1.0, st.x0, 0.1, x0h);  // x̂0 = x0 + 0.1·noise
        tensor<double, host_space> eh(shape{1000}), vh(shape{1000}), sh(shape{1000}), d(shape{1000});
        convert(eh, pt::sample, x0h, pt::epsilon, st.xt, a, s);
        convert(vh, pt::sample, x0h, pt::v_prediction, st.xt, a, s);
        convert(sh, pt::sample, x0h, pt::score, st.xt, a, s);
        auto sq = [&](const tensor<double, host_space>& x, const tensor<double, host_space>& y) {
            lincomb(d, 1.0, x, -1.0, y);
            return sum_squares(d);
        };
        const double lx = sq(st.x0, x0h);
        DIFFUSE_CHECK_CLOSE(sq(st.eps, eh), snr * lx, 0, 1e-12);
        DIFFUSE_CHECK_CLOSE(sq(st.v, vh), (1 + snr) * lx, 0, 1e-12);
        DIFFUSE_CHECK_CLOSE(sq(st.score, sh), sq(st.eps, eh) / (s * s), 0, 1e-12);
    }
}

TEST_CASE_TEMPLATE("sigma-space (VE/EDM) conversions agree with VP at the same SNR (A10)", T, float, double) {
    // x_ve = x0 + σ eps and x_vp = x_ve/√(1+σ²) at (a, s) = (1, σ)/√(1+σ²): the same x0, eps, v and
    // (up to the factor a, score_vp = score_ve/a) score. Tolerances: 20 u M (1 + σ)² (coefficient
    // sizes up to σ and 1/σ² times |x_ve| <= M(1 + σ)).
    const double u = eps<T> / 2;
    for (double sigma : {0.01, 0.5, 3.0, 80.0}) {
        const double r = std::hypot(1.0, sigma), a = 1 / r, s = sigma / r;
        const state<T> vp = make_state<T>(a, s, 500, 31);
        std::vector<T> xve;
        const auto x0v = vp.x0.to_vector(), ev = vp.eps.to_vector();
        for (std::size_t i = 0; i < x0v.size(); ++i) xve.push_back(static_cast<T>(x0v[i] + sigma * ev[i]));
        const auto x_ve = tensor<T, host_space>::from_values(shape{500}, xve);
        const double M = (max_abs(vp.x0) + max_abs(vp.eps)) * (1 + sigma);
        const double tol = 20 * u * M * (1 + sigma) * (1 + 1 / sigma) * (1 + 1 / sigma);
        tensor<T, host_space> out_ve(shape{500}), out_vp(shape{500});
        INFO("sigma = " << sigma);
        for (pt from : {pt::epsilon, pt::sample, pt::v_prediction}) {
            for (pt to : {pt::epsilon, pt::sample, pt::v_prediction}) {
                convert_ve(out_ve, from, vp.of(from), to, x_ve, sigma);
                convert(out_vp, from, vp.of(from), to, vp.xt, a, s);
                INFO(to_string(from) << " -> " << to_string(to));
                CHECK(max_diff(out_ve, out_vp) <= tol);
            }
        }
        // D = x − σ eps (k-diffusion's eps denoiser), and diffusers' Euler v branch:
        // x0 = v·(−σ/√(σ²+1)) + x/(σ²+1).
        const conversion d = conversion_coeffs_ve(pt::epsilon, pt::sample, sigma);
        DIFFUSE_CHECK_CLOSE(d.c_xt, 1.0, 0, 4 * eps<double>);
        DIFFUSE_CHECK_CLOSE(d.c_value, -sigma, 0, 4 * eps<double>);
        const conversion ev2 = conversion_coeffs_ve(pt::v_prediction, pt::sample, sigma);
        DIFFUSE_CHECK_CLOSE(ev2.c_xt, 1 / (sigma * sigma + 1), 0, 8 * eps<double>);
        DIFFUSE_CHECK_CLOSE(ev2.c_value, -sigma / std::sqrt(sigma * sigma + 1), 0, 8 * eps<double>);
        // VE score = −eps/σ = (D − x)/σ².
        const conversion sc = conversion_coeffs_ve(pt::sample, pt::score, sigma);
        DIFFUSE_CHECK_CLOSE(sc.c_xt, -1 / (sigma * sigma), 0, 8 * eps<double>);
        DIFFUSE_CHECK_CLOSE(sc.c_value, 1 / (sigma * sigma), 0, 8 * eps<double>);
    }
}

TEST_CASE("zero terminal SNR (a = 0): eps -> x0 is refused with advice, v and x0 still work") {
    DIFFUSE_CHECK_ERROR(conversion_coeffs(pt::epsilon, pt::sample, 0.0, 1.0), "a = 0", "epsilon -> sample",
                        "zero terminal SNR", "use v_prediction or sample");
    DIFFUSE_CHECK_ERROR(conversion_coeffs(pt::epsilon, pt::v_prediction, 0.0, 1.0), "a = 0", "v_prediction");
    DIFFUSE_CHECK_ERROR(conversion_coeffs(pt::score, pt::sample, 0.0, 1.0), "a = 0", "score -> sample");
    // v at a = 0: x0 = −v, eps = x_t.
    const conversion vx = conversion_coeffs(pt::v_prediction, pt::sample, 0.0, 1.0);
    CHECK(vx.c_xt == 0.0);
    CHECK(vx.c_value == -1.0);
    const conversion ve = conversion_coeffs(pt::v_prediction, pt::epsilon, 0.0, 1.0);
    CHECK(ve.c_xt == 1.0);
    CHECK(ve.c_value == 0.0);
    // x0 -> eps at a = 0 is fine: eps = x_t/s.
    CHECK(conversion_coeffs(pt::sample, pt::epsilon, 0.0, 1.0).c_xt == 1.0);
    // s = 0 (no noise): x0 -> eps / score / v refused; eps -> x0 = x_t.
    DIFFUSE_CHECK_ERROR(conversion_coeffs(pt::sample, pt::epsilon, 1.0, 0.0), "s = 0", "sample -> epsilon");
    DIFFUSE_CHECK_ERROR(conversion_coeffs(pt::sample, pt::score, 1.0, 0.0), "s = 0");
    DIFFUSE_CHECK_ERROR(conversion_coeffs(pt::v_prediction, pt::score, 1.0, 0.0), "s = 0");
    DIFFUSE_CHECK_ERROR(conversion_coeffs(pt::sample, pt::v_prediction, 1.0, 0.0), "s = 0");
    CHECK(conversion_coeffs(pt::epsilon, pt::sample, 1.0, 0.0).c_xt == 1.0);
    // Invalid levels.
    DIFFUSE_CHECK_ERROR(conversion_coeffs(pt::epsilon, pt::sample, 0.0, 0.0), "s = 0", "a = 0");
    DIFFUSE_CHECK_ERROR(conversion_coeffs(pt::epsilon, pt::sample, -0.5, 1.0), "a = -0.5");
    DIFFUSE_CHECK_ERROR(conversion_coeffs(pt::epsilon, pt::sample, 0.5, NAN), "s = nan");
    DIFFUSE_CHECK_ERROR(conversion_coeffs_ve(pt::epsilon, pt::sample, -1.0), "sigma = -1");
    tensor<double, host_space> x(shape{4}, 1.0), y(shape{5}, 1.0);
    DIFFUSE_CHECK_ERROR(convert(x, pt::epsilon, x, pt::sample, y, 0.6, 0.8), "shape mismatch");
    DIFFUSE_CHECK_ERROR(convert(x, pt::epsilon, x, pt::sample, x, 0.0, 1.0), "a = 0", "use v_prediction");
    DIFFUSE_CHECK_ERROR(training_target(x, pt::score, x, x, 1.0, 0.0), "s = 0");
}

TEST_CASE_TEMPLATE("velocity (diffusers get_velocity), training targets, and in-place convert", T, float, double) {
    const double a = 0.6, s = 0.8;
    const state<T> st = make_state<T>(a, s, 64, 41);
    tensor<T, host_space> out(shape{64});
    const double tol = 8 * eps<T> * 8.0;  // a few roundings of values <= M ≈ 8
    velocity(out, st.x0, st.eps, a, s);
    CHECK(max_diff(out, st.v) <= tol);
    for (pt p : all_prediction_types) {
        training_target(out, p, st.x0, st.eps, a, s);
        INFO(to_string(p));
        CHECK(max_diff(out, st.of(p)) <= tol * 2);
    }
    // out may alias the value: eps -> x0 in place.
    tensor<T, host_space> y = st.eps;
    convert(y, pt::epsilon, y, pt::sample, st.xt, a, s);
    CHECK(max_diff(y, st.x0) <= tol * 4);
}
