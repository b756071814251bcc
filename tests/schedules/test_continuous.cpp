// Tests for include/diffuse/schedules/continuous.hpp (docs/schedules.md §3).
#include <diffuse/schedules/continuous.hpp>

#include <support/check.hpp>

#include <cmath>
#include <numbers>
#include <vector>

namespace ds = diffuse::schedules;

static_assert(ds::continuous_schedule<ds::vp_linear>);
static_assert(ds::continuous_schedule<ds::vp_cosine>);
static_assert(ds::continuous_schedule<ds::edm>);
static_assert(ds::continuous_schedule<ds::ve>);

namespace {

// Classical RK4 for the VP moment ODEs of dx = −½β(t)x dt + √β(t) dw started at x_0 = 1 (a point
// mass): mean m' = −½β m (m = α), variance v' = −β v + β (v = σ²). Independent of the closed
// form; global error O(h⁴).
struct moments {
    double m, v;
};
template <class Beta>
moments integrate_moments(Beta beta, double t_end, int steps) {
    const double h = t_end / steps;
    double m = 1.0, v = 0.0, t = 0.0;
    const auto fm = [&](double tt, double mm) { return -0.5 * beta(tt) * mm; };
    const auto fv = [&](double tt, double vv) { return -beta(tt) * vv + beta(tt); };
    for (int i = 0; i < steps; ++i) {
        const double k1m = fm(t, m), k1v = fv(t, v);
        const double k2m = fm(t + h / 2, m + h / 2 * k1m), k2v = fv(t + h / 2, v + h / 2 * k1v);
        const double k3m = fm(t + h / 2, m + h / 2 * k2m), k3v = fv(t + h / 2, v + h / 2 * k2v);
        const double k4m = fm(t + h, m + h * k3m), k4v = fv(t + h, v + h * k3v);
        m += h / 6 * (k1m + 2 * k2m + 2 * k3m + k4m);
        v += h / 6 * (k1v + 2 * k2v + 2 * k3v + k4v);
        t = (i + 1) * h;
    }
    return {m, v};
}

}  // namespace

TEST_CASE("vp_linear: closed form against RK4 integration of the moment ODEs (closed_forms A9)") {
    const ds::vp_linear s;  // β₀ = 0.1, β₁ = 20
    for (double t : {0.05, 0.3, 0.7, 1.0}) {
        CAPTURE(t);
        // RK4, 4000 steps per unit time: h⁴·max|β|⁵/120 ≈ 1e-12 local, far below the 1e-10 tolerance
        // (closed_forms' policy for closed form vs integrated ODE).
        const auto mom = integrate_moments([&](double u) { return s.beta(u); }, t, static_cast<int>(4000 * t));
        DIFFUSE_CHECK_CLOSE(s.alpha(t), mom.m, 1e-10, 0.0);
        DIFFUSE_CHECK_CLOSE(s.sigma(t) * s.sigma(t), mom.v, 1e-10, 0.0);
    }
    // ᾱ(1) = α(1)² = exp(−(β₀ + β₁)/2) = 4.318574906034135e-05 (A9 item 3).
    DIFFUSE_CHECK_CLOSE(s.alpha(1.0) * s.alpha(1.0), std::exp(-(0.1 + 20.0) / 2), 0.0, 1e-14);
    DIFFUSE_CHECK_CLOSE(s.alpha(1.0) * s.alpha(1.0), 4.318574906034135e-05, 0.0, 1e-14);
    // β(t) = −2 d log α/dt by a central difference (h = 1e-4: truncation h²·|log α'''|/6 = 0 for a
    // quadratic, rounding ε·|log α|/h ≈ 1e-11).
    for (double t : {0.1, 0.5, 0.9}) {
        const double h = 1e-4;
        DIFFUSE_CHECK_CLOSE(-2 * (s.log_alpha(t + h) - s.log_alpha(t - h)) / (2 * h), s.beta(t), 1e-9, 0.0);
    }
}

TEST_CASE("vp_linear: lambda inverse round trip and the expm1 forms near t = 0") {
    const ds::vp_linear s;
    for (double t : {1e-6, 1e-4, 1e-3, 0.01, 0.1, 0.37, 0.5, 0.9, 1.0}) {
        CAPTURE(t);
        // t(λ(t)) = t: the inverse is the cancellation-free root, measured ~2e-16 (A9); 1e-12 relative.
        DIFFUSE_CHECK_CLOSE(s.t_of_lambda(s.lambda(t)), t, 0.0, 1e-12);
        // The conventions: log SNR = 2λ, σ_ve = e^{−λ}, α² + σ² = 1.
        DIFFUSE_CHECK_CLOSE(s.log_snr(t), 2 * s.lambda(t), 0.0, 1e-15);
        DIFFUSE_CHECK_CLOSE(s.sigma_ve(t), std::exp(-s.lambda(t)), 0.0, 1e-14);
        DIFFUSE_CHECK_CLOSE(s.alpha(t) * s.alpha(t) + s.sigma(t) * s.sigma(t), 1.0, 4e-16, 0.0);
        DIFFUSE_CHECK_CLOSE(s.log_sigma(t), std::log(s.sigma(t)), 1e-15, 1e-15);
    }
    // σ² = −expm1(2 log α) at t = 1e-10 (σ² ≈ β₀t = 1e-11) against long double: the naive
    // 1 − exp(2 log α) has absolute error ~ε, i.e. ~1e-5 relative here.
    const double t = 1e-10;
    const long double la = -0.25L * t * t * (20.0L - 0.1L) - 0.5L * t * 0.1L;
    const long double ref = -std::expm1(2.0L * la);
    DIFFUSE_CHECK_CLOSE(s.sigma(t) * s.sigma(t), static_cast<double>(ref), 0.0, 1e-14);
    const double naive = 1.0 - std::exp(2.0 * s.log_alpha(t));
    CHECK(std::abs(naive - static_cast<double>(ref)) / static_cast<double>(ref) > 1e-9);
    // A constant β (β₀ = β₁): the same formula gives t = L/β₀.
    const ds::vp_linear c(2.0, 2.0);
    DIFFUSE_CHECK_CLOSE(c.t_of_lambda(c.lambda(0.3)), 0.3, 0.0, 1e-13);
}

TEST_CASE("vp_cosine: DPM-Solver's continuous cosine, closed form and inverse") {
    const ds::vp_cosine s;  // s = 0.008, T = 0.9946
    CHECK(s.t_max() == 0.9946);
    const double u0 = 0.008 / 1.008 * std::numbers::pi / 2;
    for (double t : {1e-3, 0.01, 0.2, 0.5, 0.8, 0.9946}) {
        CAPTURE(t);
        // log α = log cos u(t) − log cos u(0), the plain formula in long double: its cancellation
        // costs 2^-64/|log α| <= 1e-14 relative for t >= 1e-3 (|log α| >= 2e-5).
        const long double u = (static_cast<long double>(t) + 0.008L) / 1.008L * std::numbers::pi_v<long double> / 2;
        const long double ref = std::log(std::cos(u)) - std::log(std::cos(static_cast<long double>(u0)));
        DIFFUSE_CHECK_CLOSE(s.log_alpha(t), static_cast<double>(ref), 0.0, 1e-13);
        DIFFUSE_CHECK_CLOSE(s.t_of_lambda(s.lambda(t)), t, 0.0, 1e-12);
        DIFFUSE_CHECK_CLOSE(s.alpha(t) * s.alpha(t) + s.sigma(t) * s.sigma(t), 1.0, 4e-16, 0.0);
        DIFFUSE_CHECK_CLOSE(s.sigma_ve(t), std::exp(-s.lambda(t)), 0.0, 1e-14);
    }
    // Round trip down to t = 1e-6, where the stable forms matter (acos of cos u ≈ 0.99992 would lose
    // ~1e-11 here).
    for (double t : {1e-6, 1e-5, 1e-4}) DIFFUSE_CHECK_CLOSE(s.t_of_lambda(s.lambda(t)), t, 0.0, 1e-12);
    // β(t) = π/(1+s)·tan u(t) = −2 d log α/dt (central difference, h = 1e-5: error h²|log α'''|/6 < 1e-9).
    for (double t : {0.1, 0.5, 0.9}) {
        const double h = 1e-5;
        DIFFUSE_CHECK_CLOSE(-2 * (s.log_alpha(t + h) - s.log_alpha(t - h)) / (2 * h), s.beta(t), 0.0, 1e-8);
    }
    // dpm-solver's cosine_t_max for cosine_beta_max = 999: numpy 0.9979980044931365; β there is 999.
    DIFFUSE_CHECK_CLOSE(s.t_beta_max(), 0.9979980044931365, 0.0, 1e-14);
    DIFFUSE_CHECK_CLOSE(s.beta(s.t_beta_max()), 999.0, 0.0, 1e-10);
    // α(0) = 1 and σ(0) = 0 exactly.
    CHECK(s.alpha(0.0) == 1.0);
    CHECK(s.sigma(0.0) == 0.0);
}

TEST_CASE("edm and ve: sigma(t), lambda = -log sigma and the inverse") {
    const ds::edm e;
    for (double t : {0.002, 0.5, 1.0, 80.0}) {
        CHECK(e.sigma(t) == t);
        CHECK(e.sigma_ve(t) == t);
        CHECK(e.alpha(t) == 1.0);
        CHECK(e.lambda(t) == -std::log(t));
        DIFFUSE_CHECK_CLOSE(e.t_of_lambda(e.lambda(t)), t, 0.0, 4e-16);
        DIFFUSE_CHECK_CLOSE(e.log_snr(t), -2 * std::log(t), 0.0, 1e-15);
    }
    const ds::ve v(0.01, 50.0);
    // σ = exp(log σ_min + t log(σ_max/σ_min)): the exponent's absolute error ε(|log σ_min| + |log ratio|)
    // ≈ 1.5e-15 becomes σ's relative error.
    DIFFUSE_CHECK_CLOSE(v.sigma(0.0), 0.01, 0.0, 4e-15);
    DIFFUSE_CHECK_CLOSE(v.sigma(1.0), 50.0, 0.0, 4e-15);
    for (double t : {0.0, 0.25, 0.5, 1.0}) {
        // σ(t) = σ_min (σ_max/σ_min)^t.
        DIFFUSE_CHECK_CLOSE(v.sigma(t), 0.01 * std::pow(5000.0, t), 0.0, 1e-14);
        DIFFUSE_CHECK_CLOSE(v.t_of_lambda(v.lambda(t)), t, 1e-15, 0.0);
        CHECK(v.sigma_ve(t) == v.sigma(t));
    }
}

TEST_CASE("time_steps: DPM-Solver's time_uniform, logSNR and time_quadratic") {
    const ds::vp_linear s;
    const auto u = ds::time_steps(s, ds::time_skip::time_uniform, 1.0, 1e-3, 10);
    REQUIRE(u.size() == 11);
    CHECK(u.front() == 1.0);
    CHECK(u.back() == 1e-3);
    const auto l = ds::time_steps(s, ds::time_skip::logsnr, 1.0, 1e-3, 10);
    REQUIRE(l.size() == 11);
    // Uniform in λ: each step h = (λ(t_0) − λ(t_T))/N.
    const double h = (s.lambda(1e-3) - s.lambda(1.0)) / 10;
    for (std::size_t i = 0; i + 1 < l.size(); ++i) DIFFUSE_CHECK_CLOSE(s.lambda(l[i + 1]) - s.lambda(l[i]), h, 1e-12, 0.0);
    DIFFUSE_CHECK_CLOSE(l.front(), 1.0, 0.0, 1e-12);
    DIFFUSE_CHECK_CLOSE(l.back(), 1e-3, 0.0, 1e-12);
    const auto q = ds::time_steps(s, ds::time_skip::time_quadratic, 1.0, 1e-3, 10);
    const double dq = (std::sqrt(1e-3) - 1.0) / 10;
    for (std::size_t i = 0; i + 1 < q.size(); ++i) DIFFUSE_CHECK_CLOSE(std::sqrt(q[i + 1]) - std::sqrt(q[i]), dq, 1e-15, 0.0);
}

TEST_CASE("continuous schedule errors name the argument, the value and the allowed range") {
    DIFFUSE_CHECK_ERROR(ds::vp_linear(-1.0, 20.0), "beta_0 = -1", ">= 0");
    DIFFUSE_CHECK_ERROR(ds::vp_linear(0.1, 0.05), "beta_1 = 0.050000000000000003", ">= beta_0");
    DIFFUSE_CHECK_ERROR(ds::vp_cosine(0.0), "s = 0", "> 0");
    DIFFUSE_CHECK_ERROR(ds::vp_cosine(0.008, 1.0), "t_max = 1", "open interval (0, 1)");
    DIFFUSE_CHECK_ERROR(ds::edm(0.0, 80.0), "sigma_min = 0", "> 0");
    DIFFUSE_CHECK_ERROR(ds::edm(0.002, 0.001), "sigma_max = 0.001", "> sigma_min");
    DIFFUSE_CHECK_ERROR(ds::ve(0.01, INFINITY), "sigma_max = inf", "finite");
    const ds::vp_linear s;
    DIFFUSE_CHECK_ERROR(ds::time_steps(s, ds::time_skip::logsnr, 1.0, 1e-3, 0), "N = 0", ">= 1");
    DIFFUSE_CHECK_ERROR(ds::time_steps(s, ds::time_skip::logsnr, 1e-4, 1e-3, 5), "t_T = 0.0001", "> t_0");
    DIFFUSE_CHECK_ERROR(ds::time_steps(s, ds::time_skip::logsnr, 1.0, 0.0, 5), "t_0 = 0", "> 0");
}
