// Tests for include/diffuse/schedules/discrete_schedule.hpp (docs/schedules.md §2, §4, §5, §6.4, §7).
// Reference values marked "numpy" were computed with numpy 1.24 in float64 from the peers'
// formulas (b = np.linspace(1e-4, 0.02, 1000); ab = np.cumprod(1 - b); ...).
#include <diffuse/schedules/discrete_schedule.hpp>

#include <support/check.hpp>

#include <cmath>
#include <limits>
#include <vector>

namespace ds = diffuse::schedules;

namespace {

std::vector<long double> cumprod_ld(std::span<const double> betas) {
    std::vector<long double> out;
    long double p = 1.0L;
    for (double b : betas) out.push_back(p *= 1.0L - static_cast<long double>(b));
    return out;
}

// 1 − ᾱ_t by the recurrence d_t = d_{t−1} + β_t(1 − d_{t−1}) in long double: only additions of
// positive terms, so its relative error is ~T·2^-64 even when d is tiny (no cancellation).
std::vector<long double> one_minus_ld(std::span<const double> betas) {
    std::vector<long double> out;
    long double d = 0.0L;
    for (double b : betas) out.push_back(d = d + static_cast<long double>(b) * (1.0L - d));
    return out;
}

}  // namespace

TEST_CASE("from_betas: alpha-bar and every derived quantity against long-double references") {
    const auto s = ds::discrete_schedule::named("linear", 1000);
    REQUIRE(s.num_train_timesteps() == 1000);
    const auto ab = cumprod_ld(s.betas());
    const auto om = one_minus_ld(s.betas());
    // ᾱ = exp(Neumaier Σ log1p(−β)): the sum is exact to ~ε·|log ᾱ| <= 1.1e-15 (|log ᾱ| <= 10.2),
    // exp adds an ulp: 3e-15 relative.
    for (int t = 0; t < 1000; ++t) {
        const auto i = static_cast<std::size_t>(t);
        const double a = static_cast<double>(ab[i]), d = static_cast<double>(om[i]);
        DIFFUSE_CHECK_CLOSE(s.alpha_bar(t), a, 0.0, 3e-15);
        DIFFUSE_CHECK_CLOSE(s.alphas_cumprod()[i], a, 0.0, 3e-15);
        DIFFUSE_CHECK_CLOSE(s.one_minus_alpha_bar(t), d, 0.0, 3e-15);
        DIFFUSE_CHECK_CLOSE(s.log_alpha_bar(t), static_cast<double>(std::log(ab[i])), 1e-15, 1e-15);
        DIFFUSE_CHECK_CLOSE(s.log_one_minus_alpha_bar(t), static_cast<double>(std::log(om[i])), 1e-15, 1e-15);
        // α = √ᾱ, σ = √(1 − ᾱ), SNR, log SNR (VDM), λ = ½ log SNR (DPM-Solver), σ_ve = √((1 − ᾱ)/ᾱ).
        DIFFUSE_CHECK_CLOSE(s.alpha(t), static_cast<double>(std::sqrt(ab[i])), 0.0, 3e-15);
        DIFFUSE_CHECK_CLOSE(s.sigma(t), static_cast<double>(std::sqrt(om[i])), 0.0, 3e-15);
        DIFFUSE_CHECK_CLOSE(s.log_alpha(t), static_cast<double>(0.5L * std::log(ab[i])), 1e-15, 1e-15);
        DIFFUSE_CHECK_CLOSE(s.log_sigma(t), static_cast<double>(0.5L * std::log(om[i])), 1e-15, 1e-15);
        DIFFUSE_CHECK_CLOSE(s.snr(t), static_cast<double>(ab[i] / om[i]), 0.0, 6e-15);
        const double log_snr = static_cast<double>(std::log(ab[i] / om[i]));
        DIFFUSE_CHECK_CLOSE(s.log_snr(t), log_snr, 2e-15, 2e-15);
        DIFFUSE_CHECK_CLOSE(s.lambda(t), 0.5 * log_snr, 1e-15, 2e-15);
        DIFFUSE_CHECK_CLOSE(s.sigma_ve(t), static_cast<double>(std::sqrt(om[i] / ab[i])), 0.0, 6e-15);
        CHECK(s.alphas()[i] == 1.0 - s.beta(t));  // diffusers' per-step `alphas` (not √ᾱ)
    }
    // Anchors (closed_forms A4; numpy): ᾱ_T = 4.035829765375676e-05, logSNR_T = −10.117673183301033,
    // σ_ve,max = 157.40728081040757.
    DIFFUSE_CHECK_CLOSE(s.alpha_bar(999), 4.035829765375676e-05, 0.0, 1e-12);
    DIFFUSE_CHECK_CLOSE(s.log_snr(999), -10.117673183301033, 0.0, 1e-12);
    DIFFUSE_CHECK_CLOSE(s.sigma_ve(999), 157.40728081040757, 0.0, 1e-12);
    const auto sd = ds::discrete_schedule::named("scaled_linear", 1000, 0.00085, 0.012);
    DIFFUSE_CHECK_CLOSE(sd.sigma_ve(999), 14.614641229333639, 0.0, 1e-12);
    DIFFUSE_CHECK_CLOSE(sd.sigma_ve(0), 0.029167158151720367, 0.0, 1e-12);
    const auto sg = ds::discrete_schedule::named("sigmoid", 1000);
    DIFFUSE_CHECK_CLOSE(sg.alpha_bar(999), 3.968181990533219e-05, 0.0, 1e-12);
    // Whole-array accessors agree with the per-t ones.
    const auto sv = s.sigmas_ve();
    const auto lv = s.lambdas();
    const auto lsv = s.log_snrs();
    for (int t : {0, 500, 999}) {
        CHECK(sv[static_cast<std::size_t>(t)] == s.sigma_ve(t));
        CHECK(lv[static_cast<std::size_t>(t)] == s.lambda(t));
        CHECK(lsv[static_cast<std::size_t>(t)] == s.log_snr(t));
    }
}

TEST_CASE("DDPM posterior variance at t = 487 from the schedule (diffusers test_variance)") {
    // var_t = (1 − ᾱ_{t−1})/(1 − ᾱ_t)·β_t; numpy: 0.009791571985690042 at t = 487 and
    // 0.01999998352656061 at t = 999; diffusers' test asserts 0.00979 and 0.02 to 1e-5.
    const auto s = ds::discrete_schedule::named("linear", 1000);
    const auto var = [&](int t) { return s.one_minus_alpha_bar(t - 1) / s.one_minus_alpha_bar(t) * s.beta(t); };
    DIFFUSE_CHECK_CLOSE(var(487), 0.009791571985690042, 0.0, 1e-12);
    DIFFUSE_CHECK_CLOSE(var(487), 0.0097916, 5e-8, 0.0);
    DIFFUSE_CHECK_CLOSE(var(999), 0.01999998352656061, 0.0, 1e-12);
}

TEST_CASE("expm1/log1p forms keep 1 - alpha-bar accurate where the naive product cancels") {
    // β_i = 1e-10·(i + 1), T = 20: 1 − ᾱ ≈ Σβ ~ 1e-10..2e-8, so 1 − Π(1 − β) in double loses
    // ~ε/(1 − ᾱ) ≈ 1e-6 relative; the library's −expm1(Σ log1p(−β)) keeps ~1e-15.
    std::vector<double> b;
    for (int i = 0; i < 20; ++i) b.push_back(1e-10 * (i + 1));
    const auto s = ds::discrete_schedule::from_betas(b);
    const auto om = one_minus_ld(b);
    double worst_naive = 0, prod = 1.0;
    for (int t = 0; t < 20; ++t) {
        const double ref = static_cast<double>(om[static_cast<std::size_t>(t)]);
        DIFFUSE_CHECK_CLOSE(s.one_minus_alpha_bar(t), ref, 0.0, 4e-15);
        DIFFUSE_CHECK_CLOSE(s.sigma(t), std::sqrt(ref), 0.0, 4e-15);
        // log SNR = log ᾱ − log(1 − ᾱ) ≈ −log Σβ: relative 4e-15 on both terms.
        DIFFUSE_CHECK_CLOSE(s.log_snr(t), static_cast<double>(std::log((1.0L - om[static_cast<std::size_t>(t)]) / om[static_cast<std::size_t>(t)])), 0.0, 4e-15);
        prod *= 1.0 - b[static_cast<std::size_t>(t)];
        worst_naive = std::max(worst_naive, std::abs((1.0 - prod) - ref) / ref);
    }
    CHECK(worst_naive > 1e-8);  // the naive form is orders of magnitude worse
}

TEST_CASE("from_alphas_cumprod and from_log_snr rebuild the same schedule") {
    const auto s = ds::discrete_schedule::named("linear", 1000);
    const auto a = ds::discrete_schedule::from_alphas_cumprod(s.alphas_cumprod());
    // ᾱ is stored as given (exp(log ᾱ) round trip: 1 ulp).
    for (int t = 0; t < 1000; t += 37) DIFFUSE_CHECK_CLOSE(a.alpha_bar(t), s.alpha_bar(t), 0.0, 3e-16);
    // β_t = (ᾱ_{t−1} − ᾱ_t)/ᾱ_{t−1} amplifies ᾱ's ~3e-15 relative error by ᾱ/(ᾱ_{t−1} − ᾱ_t) ≈ 1/β <= 1e4.
    for (int t = 0; t < 1000; ++t) DIFFUSE_CHECK_CLOSE(a.beta(t), s.beta(t), 0.0, 1e-10);
    const auto l = ds::discrete_schedule::from_log_snr(s.log_snrs());
    for (int t = 0; t < 1000; t += 37) {
        DIFFUSE_CHECK_CLOSE(l.alpha_bar(t), s.alpha_bar(t), 0.0, 1e-14);
        DIFFUSE_CHECK_CLOSE(l.one_minus_alpha_bar(t), s.one_minus_alpha_bar(t), 0.0, 1e-14);
    }
}

TEST_CASE("zero terminal SNR rescale (Lin et al. 2024 Alg. 1, closed_forms A7)") {
    const auto s = ds::discrete_schedule::named("scaled_linear", 1000, 0.00085, 0.012);
    const auto z = s.rescale_zero_terminal_snr();
    CHECK(z.alpha_bar(999) == 0.0);
    CHECK(z.beta(999) == 1.0);
    CHECK(z.alpha_bar(0) == s.alpha_bar(0));
    CHECK(z.has_zero_terminal_snr());
    CHECK_FALSE(s.has_zero_terminal_snr());
    CHECK(z.log_snr(999) == -std::numeric_limits<double>::infinity());
    CHECK(z.lambda(999) == -std::numeric_limits<double>::infinity());
    CHECK(z.sigma_ve(999) == std::numeric_limits<double>::infinity());
    CHECK(z.sigma(999) == 1.0);
    // √ᾱ' = k(√ᾱ − √ᾱ_T) with k = √ᾱ_0/(√ᾱ_0 − √ᾱ_T): affine in √ᾱ (rounding-level residual).
    const double r0 = s.alpha(0), rT = s.alpha(999), k = r0 / (r0 - rT);
    for (int t = 0; t < 1000; ++t) DIFFUSE_CHECK_CLOSE(z.alpha(t), k * (s.alpha(t) - rT), 4e-16, 4e-16);
    // numpy (diffusers' rescale_zero_terminal_snr in float64): ᾱ'_1 = 0.9982334461401825,
    // ᾱ'_500 = 0.24101878275731575, ᾱ'_998 = 1.9678880566212916e-07 (the last relative to the
    // cancellation r_998 − r_T: r ≈ 0.0686 vs 0.0683, 1e-13).
    DIFFUSE_CHECK_CLOSE(z.alpha_bar(1), 0.9982334461401825, 0.0, 1e-14);
    DIFFUSE_CHECK_CLOSE(z.alpha_bar(500), 0.24101878275731575, 0.0, 1e-13);
    DIFFUSE_CHECK_CLOSE(z.alpha_bar(998), 1.9678880566212916e-07, 0.0, 1e-11);
    // 1 − ᾱ' against the whole algorithm in long double (r from the long-double product).
    const auto ab = cumprod_ld(s.betas());
    const long double R0 = std::sqrt(ab[0]), RT = std::sqrt(ab[999]);
    for (int t = 1; t < 999; t += 7) {
        const long double r = (std::sqrt(ab[static_cast<std::size_t>(t)]) - RT) * R0 / (R0 - RT);
        DIFFUSE_CHECK_CLOSE(z.one_minus_alpha_bar(t), static_cast<double>(1.0L - r * r), 0.0, 1e-14);
    }
    // σ_ve is finite again with diffusers' Euler fix ᾱ_T := 2^-24: σ_max = √(2^24 − 1).
    const auto e = z.with_terminal_alpha_bar();
    CHECK(e.alpha_bar(999) == 0x1p-24);
    DIFFUSE_CHECK_CLOSE(e.sigma_ve(999), std::sqrt(16777215.0), 0.0, 1e-15);
    CHECK(e.alpha_bar(998) == z.alpha_bar(998));
    // The rescale of a schedule that already ends at zero SNR changes nothing but rounding.
    const auto zz = z.rescale_zero_terminal_snr();
    for (int t = 0; t < 1000; t += 111) DIFFUSE_CHECK_CLOSE(zz.alpha_bar(t), z.alpha_bar(t), 0.0, 1e-14);
}

TEST_CASE("log-SNR shift and the resolution shift (Hoogeboom et al. 2023, closed_forms A8)") {
    const auto s = ds::discrete_schedule::named("squaredcos_cap_v2", 1000);
    CHECK(ds::resolution_shift(64, 256) == 2.0 * std::log(0.25));
    const auto r = s.resolution_shift(64, 256);
    for (int t = 0; t < 1000; ++t) {
        // SNR'/SNR = (b/d)² = 1/16: both SNRs carry a few ulp, the ratio 1e-12 is generous.
        DIFFUSE_CHECK_CLOSE(r.snr(t) / s.snr(t), 1.0 / 16.0, 0.0, 1e-12);
        // log SNR' − log SNR = 2 log(b/d), up to ε·|log SNR| (|log SNR| <= 20).
        DIFFUSE_CHECK_CLOSE(r.log_snr(t) - s.log_snr(t), 2.0 * std::log(0.25), 1e-13, 0.0);
        CHECK(r.alpha_bar(t) > 0.0);
        CHECK(r.alpha_bar(t) < 1.0);
    }
    // A zero shift reproduces the schedule; zero terminal SNR survives a shift.
    const auto same = s.shift_log_snr(0.0);
    for (int t = 0; t < 1000; t += 99) DIFFUSE_CHECK_CLOSE(same.alpha_bar(t), s.alpha_bar(t), 0.0, 1e-13);
    const auto z = ds::discrete_schedule::named("linear", 1000).rescale_zero_terminal_snr().shift_log_snr(-1.0);
    CHECK(z.has_zero_terminal_snr());
    CHECK(z.beta(999) == 1.0);
}

TEST_CASE("respaced: guided-diffusion SpacedDiffusion betas") {
    const auto s = ds::discrete_schedule::named("linear", 1000);
    const std::vector<int> use{0, 100, 200, 300, 400, 500, 600, 700, 800, 900};
    const auto r = s.respaced(use);
    REQUIRE(r.num_train_timesteps() == 10);
    for (int k = 0; k < 10; ++k) {
        const int t = use[static_cast<std::size_t>(k)];
        CHECK(r.alpha_bar(k) == s.alpha_bar(t));  // ᾱ kept exactly
        // new_beta = 1 − ᾱ_t/ᾱ_prev (guided-diffusion); our difference form agrees to rounding.
        const double prev = k == 0 ? 1.0 : s.alpha_bar(use[static_cast<std::size_t>(k - 1)]);
        DIFFUSE_CHECK_CLOSE(r.beta(k), 1.0 - s.alpha_bar(t) / prev, 0.0, 1e-12);
    }
}

TEST_CASE("lambda clipping: DPM-Solver's -5.1 drops the last 4 cosine steps (closed_forms A5)") {
    const auto s = ds::discrete_schedule::named("squaredcos_cap_v2", 1000);
    // numpy: λ_995..999 = −5.078, −5.365, −5.771, −6.464, −9.918.
    CHECK(s.num_timesteps_lambda_at_least(-5.1) == 996);
    CHECK(s.num_timesteps_lambda_at_least(-std::numeric_limits<double>::infinity()) == 1000);
    CHECK(ds::discrete_schedule::named("linear", 1000).num_timesteps_lambda_at_least(-5.1) == 1000);
}

TEST_CASE("discrete_schedule errors name the argument, the value and the allowed range") {
    using S = ds::discrete_schedule;
    DIFFUSE_CHECK_ERROR(S::from_betas(std::vector<double>{}), "betas.size() = 0", "at least 1");
    DIFFUSE_CHECK_ERROR(S::from_betas(std::vector<double>{0.1, 1.5}), "betas[1] = 1.5", "(0, 1]");
    DIFFUSE_CHECK_ERROR(S::from_betas(std::vector<double>{0.1, 1.0, 0.2}), "betas[1] = 1", "only at the last timestep");
    DIFFUSE_CHECK_ERROR(S::from_betas(std::vector<double>(10000, 0.9)), "alphas_cumprod[", "underflows", "only a final beta = 1");
    DIFFUSE_CHECK_ERROR(S::from_alphas_cumprod(std::vector<double>{}), "alphas_cumprod.size() = 0", "at least 1");
    DIFFUSE_CHECK_ERROR(S::from_alphas_cumprod(std::vector<double>{1.0, 0.5}), "alphas_cumprod[0] = 1", "(0, 1)");
    DIFFUSE_CHECK_ERROR(S::from_alphas_cumprod(std::vector<double>{0.9, 0.95}), "alphas_cumprod[1] = 0.94999999999999996",
                        "strictly less than alphas_cumprod[0]", "strictly decreasing");
    DIFFUSE_CHECK_ERROR(S::from_alphas_cumprod(std::vector<double>{0.9, 0.0, 0.0}), "alphas_cumprod[1] = 0", "(0, 1)");
    DIFFUSE_CHECK_ERROR(S::from_alphas_cumprod(std::vector<double>{0.9, NAN}), "alphas_cumprod[1] = nan", "[0, 1)");
    S::from_alphas_cumprod(std::vector<double>{0.9, 0.0});  // zero terminal SNR accepted
    DIFFUSE_CHECK_ERROR(S::from_log_snr(std::vector<double>{1.0, 2.0}), "log_snr[1] = 2", "strictly decreasing");
    DIFFUSE_CHECK_ERROR(S::from_log_snr(std::vector<double>{INFINITY, 2.0}), "log_snr[0] = inf", "a finite number");
    const auto s = S::named("linear", 1000);
    DIFFUSE_CHECK_ERROR(s.alpha_bar(1000), "t = 1000", "[0, 999]");
    DIFFUSE_CHECK_ERROR(s.sigma_ve(-1), "t = -1", "[0, 999]");
    DIFFUSE_CHECK_ERROR(S::from_betas(std::vector<double>{0.5}).rescale_zero_terminal_snr(), "num_train_timesteps = 1",
                        "at least 2");
    DIFFUSE_CHECK_ERROR(s.with_terminal_alpha_bar(0.0), "alpha_bar_last = 0", "(0, ");
    DIFFUSE_CHECK_ERROR(s.with_terminal_alpha_bar(0.5), "alpha_bar_last = 0.5", "alphas_cumprod[T-2]");
    DIFFUSE_CHECK_ERROR(s.shift_log_snr(NAN), "shift = nan", "finite");
    DIFFUSE_CHECK_ERROR(ds::resolution_shift(0.0, 64.0), "base = 0", "> 0");
    DIFFUSE_CHECK_ERROR(ds::resolution_shift(64.0, -1.0), "target = -1", "> 0");
    DIFFUSE_CHECK_ERROR(s.respaced(std::vector<int>{}), "use_timesteps.size() = 0", "at least 1");
    DIFFUSE_CHECK_ERROR(s.respaced(std::vector<int>{0, 10, 10}), "use_timesteps[2] = 10", "strictly increasing", "[0, 999]");
    DIFFUSE_CHECK_ERROR(s.respaced(std::vector<int>{0, 1000}), "use_timesteps[1] = 1000", "[0, 999]");
    DIFFUSE_CHECK_ERROR(S::named("cosine", 1000), "beta_schedule", "\"squaredcos_cap_v2\"");
}
