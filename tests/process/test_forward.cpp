// process/forward.hpp: noise levels, one-step kernels, transitions, q_sample
// (docs/forward_process.md §1–§3; closed_forms A1, A10).
#include <diffuse/process/forward.hpp>

#include <diffuse/backend/randn.hpp>
#include <diffuse/backend/reduce.hpp>
#include <diffuse/core/philox.hpp>
#include <diffuse/core/tensor.hpp>
#include <diffuse/schedules/beta_schedule.hpp>
#include <diffuse/schedules/discrete_schedule.hpp>

#include "support/check.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

using namespace diffuse;
using namespace diffuse::process;
using diffuse::test::eps;

namespace {

/// DDPM's linear schedule computed here, independently of schedules/: β_i = 1e-4 + i/(T−1)·(0.02 − 1e-4).
std::vector<double> linear_betas_here(int T = 1000) {
    std::vector<double> b(static_cast<std::size_t>(T));
    for (int i = 0; i < T; ++i) b[static_cast<std::size_t>(i)] = 1e-4 + (0.02 - 1e-4) * i / (T - 1.0);
    return b;
}

std::vector<double> cumprod(const std::vector<double>& betas) {
    std::vector<double> ab(betas.size());
    double p = 1.0;
    for (std::size_t i = 0; i < betas.size(); ++i) ab[i] = p *= (1.0 - betas[i]);
    return ab;
}

template <class T>
tensor<T, host_space> filled(shape s, double v) {
    return tensor<T, host_space>(s, static_cast<T>(v));
}

}  // namespace

TEST_CASE("noise levels: VP, VE and the VP level of a sigma") {
    const auto [a, s] = vp_level(0.36);
    DIFFUSE_CHECK_CLOSE(a, 0.6, 0, 4 * eps<double>);
    DIFFUSE_CHECK_CLOSE(s, 0.8, 0, 4 * eps<double>);
    CHECK(vp_level(0.0).a == 0.0);
    CHECK(vp_level(0.0).s == 1.0);
    CHECK(vp_level(1.0).s == 0.0);
    CHECK(ve_level(3.0).a == 1.0);
    CHECK(ve_level(3.0).s == 3.0);
    // σ = 3/4: √(1+σ²) = 5/4, so (a, s) = (4/5, 3/5); ᾱ = 1/(1+σ²) = 16/25.
    const noise_level v = vp_level_from_sigma(0.75);
    DIFFUSE_CHECK_CLOSE(v.a, 0.8, 0, 4 * eps<double>);
    DIFFUSE_CHECK_CLOSE(v.s, 0.6, 0, 4 * eps<double>);
    DIFFUSE_CHECK_CLOSE(alpha_bar_from_sigma(0.75), 0.64, 0, 4 * eps<double>);
    CHECK(vp_level_from_sigma(INFINITY).a == 0.0);
    // σ(ᾱ) and ᾱ(σ) are inverse (a few roundings: 8 eps relative).
    for (double ab : {1e-9, 1e-4, 0.3, 0.9, 1 - 1e-9})
        DIFFUSE_CHECK_CLOSE(alpha_bar_from_sigma(sigma_from_alpha_bar(ab)), ab, 0, 8 * eps<double>);
    CHECK(std::isinf(sigma_from_alpha_bar(0.0)));
    DIFFUSE_CHECK_CLOSE(snr_from_alpha_bar(0.2), 0.25, 0, 4 * eps<double>);
    DIFFUSE_CHECK_CLOSE(snr(0.6, 0.8), 0.5625, 0, 4 * eps<double>);
}

TEST_CASE("noise levels reject values outside their ranges") {
    DIFFUSE_CHECK_ERROR(vp_level(1.5), "alpha_bar = 1.5", "[0, 1]");
    DIFFUSE_CHECK_ERROR(vp_level(-0.1), "alpha_bar = -0.1");
    DIFFUSE_CHECK_ERROR(vp_level(NAN), "alpha_bar = nan");
    DIFFUSE_CHECK_ERROR(ve_level(-1.0), "sigma = -1", ">= 0");
    DIFFUSE_CHECK_ERROR(vp_level_from_sigma(-2.0), "sigma = -2");
    DIFFUSE_CHECK_ERROR(alpha_bar_from_sigma(NAN), "sigma = nan");
    DIFFUSE_CHECK_ERROR(snr(0.0, 0.0), "s = 0", "a = 0");
    DIFFUSE_CHECK_ERROR(snr(-1.0, 1.0), "a = -1");
    DIFFUSE_CHECK_ERROR(sigma_from_alpha_bar(2.0), "alpha_bar = 2");
}

TEST_CASE("one-step, transition and VE step coefficients") {
    const step_coeffs c = q_step_coeffs(0.19);
    DIFFUSE_CHECK_CLOSE(c.mean, 0.9, 0, 4 * eps<double>);
    DIFFUSE_CHECK_CLOSE(c.std, std::sqrt(0.19), 0, 4 * eps<double>);
    CHECK(q_step_coeffs(1.0).mean == 0.0);  // zero-terminal-SNR last step: x_T = z
    // Two steps compose: 1 − β = (1 − β1)(1 − β2); transition from ᾱ_s to ᾱ_t = ᾱ_s(1−β1)(1−β2).
    const double b1 = 0.01, b2 = 0.03, ab_s = 0.7;
    const double ab_t = ab_s * (1 - b1) * (1 - b2);
    const double b12 = compose_betas(b1, b2);
    DIFFUSE_CHECK_CLOSE(b12, 1 - (1 - b1) * (1 - b2), 0, 8 * eps<double>);
    // (ᾱ_s − ᾱ_t)/ᾱ_s against β1 + β2 − β1β2: a few roundings of O(1) values, relative to a β of 0.04.
    DIFFUSE_CHECK_CLOSE(transition_beta(ab_t, ab_s), b12, 0, 32 * eps<double>);
    const step_coeffs tc = transition_coeffs(ab_t, ab_s);
    DIFFUSE_CHECK_CLOSE(tc.mean, std::sqrt((1 - b1) * (1 - b2)), 0, 8 * eps<double>);
    DIFFUSE_CHECK_CLOSE(tc.std, std::sqrt(b12), 0, 32 * eps<double>);
    // log form agrees; it keeps precision where ᾱ is 1 − 1e-12 (1e-12 relative error in β would be
    // the double ᾱ's own representation error; the log form has none: exact −expm1(−1e-13)).
    DIFFUSE_CHECK_CLOSE(transition_beta_log(std::log(ab_t), std::log(ab_s)), b12, 0, 64 * eps<double>);
    DIFFUSE_CHECK_CLOSE(transition_beta_log(-2e-13, -1e-13), -std::expm1(-1e-13), 0, 4 * eps<double>);
    // VE: variances add, σ_prev = 3 -> σ = 5 adds √(25 − 9) = 4.
    const step_coeffs ve = ve_step_coeffs(3.0, 5.0);
    CHECK(ve.mean == 1.0);
    DIFFUSE_CHECK_CLOSE(ve.std, 4.0, 0, 4 * eps<double>);
}

TEST_CASE("step coefficients reject invalid arguments") {
    DIFFUSE_CHECK_ERROR(q_step_coeffs(0.0), "beta = 0", "(0, 1]");
    DIFFUSE_CHECK_ERROR(q_step_coeffs(1.5), "beta = 1.5");
    DIFFUSE_CHECK_ERROR(q_step_coeffs(NAN), "beta = nan");
    DIFFUSE_CHECK_ERROR(compose_betas(0.1, -0.2), "beta2 = -0.2");
    DIFFUSE_CHECK_ERROR(transition_beta(0.5, 0.375), "alpha_bar_t = 0.5", "s < t", "alpha_bar_s = 0.375");
    DIFFUSE_CHECK_ERROR(transition_beta(0.5, 0.5), "alpha_bar_t = 0.5");
    DIFFUSE_CHECK_ERROR(transition_beta(0.5, 1.2), "alpha_bar_s = 1.2", "(0, 1]");
    DIFFUSE_CHECK_ERROR(transition_beta(0.0, 0.0), "alpha_bar_s = 0");
    DIFFUSE_CHECK_ERROR(transition_beta_log(-1.0, -2.0), "log_alpha_bar_t = -1");
    DIFFUSE_CHECK_ERROR(transition_beta_log(-1.0, 0.5), "log_alpha_bar_s = 0.5");
    DIFFUSE_CHECK_ERROR(ve_step_coeffs(5.0, 3.0), "sigma = 3", "sigma_prev = 5");
    DIFFUSE_CHECK_ERROR(ve_step_coeffs(-1.0, 3.0), "sigma_prev = -1");
    DIFFUSE_CHECK_ERROR(q_step_moments({1.0, 0.0}, 2.0), "beta = 2");
}

TEST_CASE("composing q(x_t|x_{t-1}) reproduces q(x_t|x0): moment recursion vs cumprod (A1.1)") {
    // Recursion m_t = √(1−β)m, v_t = (1−β)v + β against the independent (√ᾱ, 1 − ᾱ), over
    // several schedules. Each step adds O(u) absolute error to O(1) values: 1000 steps leave
    // < 1000·2u ≈ 4.4e-13, inside the catalogue's 1e-12 (measured there: 1.8e-15).
    std::vector<std::vector<double>> all = {linear_betas_here(),
                                            schedules::make_betas("scaled_linear", 1000, 0.00085, 0.012),
                                            schedules::make_betas("squaredcos_cap_v2", 1000),
                                            schedules::make_betas("sigmoid", 1000)};
    for (const auto& betas : all) {
        const std::vector<double> ab = cumprod(betas);
        marginal_moments m{1.0, 0.0};
        double worst = 0.0;
        for (std::size_t i = 0; i < betas.size(); ++i) {
            m = q_step_moments(m, betas[i]);
            worst = std::fmax(worst, std::fabs(m.mean - std::sqrt(ab[i])));
            worst = std::fmax(worst, std::fabs(m.variance - (1.0 - ab[i])));
        }
        CHECK(worst < 1e-12);
    }
    // And a respaced step s -> t equals the steps in between: q_step_moments from ᾱ_s composed
    // over (s, t] has mean √α_{t|s}·√ᾱ_s and variance 1 − ᾱ_t.
    const std::vector<double> betas = linear_betas_here();
    const std::vector<double> ab = cumprod(betas);
    const std::size_t s = 199, t = 449;
    const step_coeffs tc = transition_coeffs(ab[t], ab[s]);
    marginal_moments m{std::sqrt(ab[s]), 1.0 - ab[s]};
    for (std::size_t i = s + 1; i <= t; ++i) m = q_step_moments(m, betas[i]);
    DIFFUSE_CHECK_CLOSE(m.mean, tc.mean * std::sqrt(ab[s]), 1e-13, 0);
    DIFFUSE_CHECK_CLOSE(tc.mean * tc.mean * (1.0 - ab[s]) + tc.std * tc.std, 1.0 - ab[t], 1e-13, 0);
    DIFFUSE_CHECK_CLOSE(m.variance, 1.0 - ab[t], 1e-13, 0);
}

TEST_CASE_TEMPLATE("composing q_step 1000 times matches q(x_t|x0) in distribution (A1.2, Monte Carlo)", T, float,
                   double) {
    // n = 16384 independent chains (the elements of one tensor) from x0 = 1.5 through the actual
    // q_step code path, linear schedule T = 1000, fixed Philox seed. At t = 100 and t = 1000:
    //   mean:     z = (x̄ − √ᾱ·x0)/√((1 − ᾱ)/n)                  ~ N(0, 1) exactly (Gaussian chains)
    //   variance: z = (S²/(1 − ᾱ) − 1)/√(2/(n − 1))            ~ N(0, 1) to O(n^-1/2) (χ² normal approx.)
    // Threshold |z| < 4.8916 = z_{1 − α/2} with α = 1e-6 per assertion (closed_forms §0 / F2);
    // 4 assertions per type give a family-wise false-failure probability <= 4e-6 for any seed.
    // Float chains add rounding of ~1000·6e-8 relative, far below the resolved 1/√n ≈ 7.8e-3.
    constexpr std::int64_t n = 16384;  // ~0.8 s per type; resolves mean errors of 4.89/√n = 0.038 sd
    const double x0v = 1.5, z_max = 4.8916;
    const std::vector<double> betas = linear_betas_here();
    const std::vector<double> ab = cumprod(betas);
    philox_rng rng(20240607, 3);
    tensor<T, host_space> x(shape{n}, static_cast<T>(x0v));
    for (int step = 1; step <= 1000; ++step) {
        q_step(x, x, betas[static_cast<std::size_t>(step - 1)], rng);  // in place: out aliases x_prev
        if (step == 100 || step == 1000) {
            const double abar = ab[static_cast<std::size_t>(step - 1)];
            const double mean = sum(x) / n;
            const double s2 = (sum_squares(x) - n * mean * mean) / (n - 1);
            const double z_mean = (mean - std::sqrt(abar) * x0v) / std::sqrt((1 - abar) / n);
            const double z_var = (s2 / (1 - abar) - 1) / std::sqrt(2.0 / (n - 1));
            INFO("t = " << step << ", z_mean = " << z_mean << ", z_var = " << z_var);
            CHECK(std::fabs(z_mean) < z_max);
            CHECK(std::fabs(z_var) < z_max);
        }
    }
    CHECK(rng.normal_offset() == static_cast<std::uint64_t>(1000 * n));  // one normal per element per step
}

TEST_CASE_TEMPLATE("q_sample equals a·x0 + s·eps, with explicit noise or drawn from a Philox stream", T, float,
                   double) {
    const shape sh{2, 3, 4, 5};
    philox_rng data_rng(7);
    const auto x0 = randn<T, host_space>(sh, data_rng);
    const auto noise = randn<T, host_space>(sh, data_rng);
    tensor<T, host_space> out(sh);
    // One rounding of each product and one of the sum: 2 eps(T)·(|a x0| + |s eps|) <= 4 eps·max|x|.
    const double tol = 4 * eps<T> * 5.0;
    for (double ab : {0.0, 1e-4, 0.5, 0.999, 1.0}) {
        q_sample_vp(out, x0, ab, noise);
        const double a = std::sqrt(ab), s = std::sqrt(1 - ab);
        for (std::int64_t i = 0; i < out.numel(); ++i)
            DIFFUSE_CHECK_CLOSE(out[i], a * x0[i] + s * noise[i], tol, 0);
    }
    // VE: x0 + σ·eps; and the VP state at the same SNR is x_ve/√(1+σ²) (A10), same eps.
    tensor<T, host_space> ve(sh), vp(sh);
    const double sigma = 2.5;
    q_sample_ve(ve, x0, sigma, noise);
    q_sample(vp, x0, vp_level_from_sigma(sigma), noise);
    for (std::int64_t i = 0; i < ve.numel(); ++i) {
        DIFFUSE_CHECK_CLOSE(ve[i], x0[i] + sigma * noise[i], 4 * eps<T> * 15.0, 0);
        DIFFUSE_CHECK_CLOSE(vp[i], ve[i] / std::sqrt(1 + sigma * sigma), 8 * eps<T> * 5.0, 0);
    }
    // The rng overload draws exactly randn(out.shape) from the same stream position.
    philox_rng r1(99, 1), r2(99, 1);
    q_sample(out, x0, 0.6, 0.8, r1);
    const auto z = randn<T, host_space>(sh, r2);
    tensor<T, host_space> expect(sh);
    q_sample(expect, x0, 0.6, 0.8, z);
    CHECK(out.to_vector() == expect.to_vector());
    CHECK(r1.normal_offset() == r2.normal_offset());
    // Views work as arguments, and out may alias x0.
    tensor<T, host_space> y = x0;
    q_sample(y.view(), y.cview(), 0.6, 0.8, noise.cview());
    q_sample(expect, x0, 0.6, 0.8, noise);
    CHECK(y.to_vector() == expect.to_vector());
}

TEST_CASE_TEMPLATE("q_sample with per-item levels, on a discrete schedule, and q_transition/q_step_ve", T, float,
                   double) {
    const shape sh{3, 2, 4};
    philox_rng rng(11);
    const auto x0 = randn<T, host_space>(sh, rng);
    const auto noise = randn<T, host_space>(sh, rng);
    const std::vector<double> a = {1.0, 0.6, 0.0}, s = {0.0, 0.8, 1.0};
    tensor<T, host_space> out(sh), ref(sh);
    q_sample(out, x0, a, s, noise);
    for (std::int64_t b = 0; b < 3; ++b) {
        q_sample(ref.view().item(b), x0.cview().item(b), a[static_cast<std::size_t>(b)],
                 s[static_cast<std::size_t>(b)], noise.cview().item(b));
    }
    CHECK(out.to_vector() == ref.to_vector());
    // Discrete schedule, t = 487: the schedule's (√ᾱ, √(1−ᾱ)).
    const auto sched = schedules::discrete_schedule::named("linear", 1000);
    q_sample(out, x0, sched, 487, noise);
    q_sample(ref, x0, sched.alpha(487), sched.sigma(487), noise);
    CHECK(out.to_vector() == ref.to_vector());
    // q_transition(ᾱ_t, ᾱ_s) applies (√(ᾱ_t/ᾱ_s), √β_{t|s}).
    q_transition(out, x0, 0.3, 0.75, noise);
    const step_coeffs c = transition_coeffs(0.3, 0.75);
    q_sample(ref, x0, c.mean, c.std, noise);
    CHECK(out.to_vector() == ref.to_vector());
    q_step_ve(out, x0, 3.0, 5.0, noise);
    q_sample(ref, x0, 1.0, 4.0, noise);
    for (std::int64_t i = 0; i < out.numel(); ++i) DIFFUSE_CHECK_CLOSE(out[i], ref[i], 4 * eps<T> * 20.0, 0);
    // q_step with explicit z.
    q_step(out, x0, 0.19, noise);
    q_sample(ref, x0, 0.9, std::sqrt(0.19), noise);
    CHECK(out.to_vector() == ref.to_vector());
}

TEST_CASE("tensor forward functions reject bad shapes and levels") {
    tensor<double, host_space> x(shape{2, 3}, 1.0), y(shape{3, 2}, 1.0), out(shape{2, 3});
    philox_rng rng(1);
    DIFFUSE_CHECK_ERROR(q_sample(out, x, 0.6, 0.8, y), "shape mismatch", "[3, 2]");
    DIFFUSE_CHECK_ERROR(q_sample(out, y, 0.6, 0.8, rng), "shape mismatch", "x0 has shape [3, 2]");
    DIFFUSE_CHECK_ERROR(q_sample(out, x, -0.625, 0.8, x), "a = -0.625");
    DIFFUSE_CHECK_ERROR(q_sample(out, x, 0.6, INFINITY, x), "s = inf");
    DIFFUSE_CHECK_ERROR(q_sample_vp(out, x, 1.01, x), "alpha_bar = 1.01");
    DIFFUSE_CHECK_ERROR(q_step(out, x, 0.0, rng), "beta = 0");
    DIFFUSE_CHECK_ERROR(q_step(out, y, 0.1, rng), "x_prev has shape [3, 2]");
    DIFFUSE_CHECK_ERROR(q_transition(out, x, 0.8, 0.7, rng), "alpha_bar_t = 0.8");
    const std::vector<double> two = {0.6, 0.8}, one = {0.6};
    DIFFUSE_CHECK_ERROR(q_sample(out, x, std::span<const double>(one), std::span<const double>(one), x),
                        "a.size() = 1", "batch size");
    DIFFUSE_CHECK_ERROR(q_sample(out, x, std::span<const double>(two), std::span<const double>(one), x),
                        "s.size() = 1");
    const auto sched = schedules::discrete_schedule::named("linear", 10);
    DIFFUSE_CHECK_ERROR(q_sample(out, x, sched, 10, x), "t = 10");
}
