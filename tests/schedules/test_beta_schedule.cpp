// Tests for include/diffuse/schedules/beta_schedule.hpp (docs/schedules.md §1).
// Reference values marked "numpy" were computed with numpy 1.24 in float64 from the peers'
// formulas: b = np.linspace(b0, b1, 1000) (or the named rule), ab = np.cumprod(1 - b).
#include <diffuse/schedules/beta_schedule.hpp>

#include <support/check.hpp>

#include <cmath>
#include <numbers>
#include <vector>

namespace ds = diffuse::schedules;

namespace {

// Π(1 − β_i) in long double (64-bit significand): an independent, more precise cumulative product.
long double cumprod_ld(const std::vector<double>& betas, std::size_t upto) {
    long double p = 1.0L;
    for (std::size_t i = 0; i <= upto; ++i) p *= 1.0L - static_cast<long double>(betas[i]);
    return p;
}

}  // namespace

TEST_CASE("linear: diffusers/DDPM anchors at T = 1000 (closed_forms A4)") {
    const auto b = ds::linear_betas(1000, 1e-4, 0.02);
    REQUIRE(b.size() == 1000);
    CHECK(b.front() == 1e-4);
    CHECK(b.back() == 0.02);
    // β_i = b0 + i/(T−1)(b1 − b0); numpy's i·step + b0 rounds once or twice: 4 ulp.
    for (int i : {1, 250, 500, 998})
        DIFFUSE_CHECK_CLOSE(b[static_cast<std::size_t>(i)], 1e-4 + i / 999.0 * (0.02 - 1e-4), 0.0, 1e-15);
    // numpy: 4.035829765375676e-05 (A4 prints 4.0358297654e-05).
    DIFFUSE_CHECK_CLOSE(static_cast<double>(cumprod_ld(b, 999)), 4.035829765375676e-05, 0.0, 1e-12);
    DIFFUSE_CHECK_CLOSE(static_cast<double>(cumprod_ld(b, 999)), 4.0358297654e-05, 0.0, 1e-10);
}

TEST_CASE("scaled_linear and sigmoid: anchors at T = 1000 (closed_forms A4)") {
    const auto s = ds::scaled_linear_betas(1000, 0.00085, 0.012);
    DIFFUSE_CHECK_CLOSE(s.front(), 0.00085, 0.0, 4e-16);
    DIFFUSE_CHECK_CLOSE(s.back(), 0.012, 0.0, 4e-16);
    // numpy: (linspace(√b0, √b1, 1000)**2) → ab_T = 0.004660098513077238 (A4: 4.6600985131e-03).
    const double abT = static_cast<double>(cumprod_ld(s, 999));
    DIFFUSE_CHECK_CLOSE(abT, 0.004660098513077238, 0.0, 1e-12);
    // σ_max = √((1 − ab_T)/ab_T) = 14.614641 (diffusers' SD init_noise_sigma); numpy 14.614641229333639.
    DIFFUSE_CHECK_CLOSE(std::sqrt((1 - abT) / abT), 14.614641229333639, 0.0, 1e-12);
    DIFFUSE_CHECK_CLOSE(std::sqrt((1 - abT) / abT), 14.614641, 5e-7, 0.0);

    const auto g = ds::sigmoid_betas(1000, 1e-4, 0.02);
    // β_i = σ(−6 + 12 i/999)(b1 − b0) + b0, closed form at both ends and the middle.
    const auto logistic = [](double x) { return 1.0 / (1.0 + std::exp(-x)); };
    DIFFUSE_CHECK_CLOSE(g.front(), logistic(-6.0) * (0.02 - 1e-4) + 1e-4, 0.0, 1e-15);
    DIFFUSE_CHECK_CLOSE(g.back(), logistic(6.0) * (0.02 - 1e-4) + 1e-4, 0.0, 1e-15);
    // numpy: 3.968181990533219e-05 (A4: 3.9681819905e-05).
    DIFFUSE_CHECK_CLOSE(static_cast<double>(cumprod_ld(g, 999)), 3.968181990533219e-05, 0.0, 1e-12);
}

TEST_CASE("float32 precision reproduces torch float32 betas") {
    // Every β is a float, and the ends are float(b0), float(b1) exactly (torch.linspace
    // computes the upper half from the end).
    const auto b = ds::linear_betas(1000, 1e-4, 0.02, ds::precision::float32);
    for (double x : b) CHECK(static_cast<double>(static_cast<float>(x)) == x);
    CHECK(b.front() == static_cast<double>(1e-4f));
    CHECK(b.back() == static_cast<double>(0.02f));
    // numpy float32 emulation of torch's linspace kernel (s, e, step = float32(float32(e − s)/999);
    // s + step·i for i < 500, e − step·(999 − i) otherwise, every operation in np.float32):
    DIFFUSE_CHECK_CLOSE(b[1], 0.00011991991777904332, 0.0, 0.0);
    DIFFUSE_CHECK_CLOSE(b[500], 0.010059959255158901, 0.0, 0.0);
    // ... and its cumulative product in float64: 4.035830882504454e-05, i.e. 2.8e-7 relative
    // from the float64 schedule's 4.035829765375676e-05.
    DIFFUSE_CHECK_CLOSE(static_cast<double>(cumprod_ld(b, 999)), 4.035830882504454e-05, 0.0, 1e-12);

    const auto s = ds::scaled_linear_betas(1000, 0.00085, 0.012, ds::precision::float32);
    for (double x : s) CHECK(static_cast<double>(static_cast<float>(x)) == x);
    const double abT = static_cast<double>(cumprod_ld(s, 999));
    // Same numpy float32 emulation, squared in float32: ab_T = 0.0046600999887094745, σ_max 14.614638904618833.
    DIFFUSE_CHECK_CLOSE(abT, 0.0046600999887094745, 0.0, 1e-12);
    DIFFUSE_CHECK_CLOSE(std::sqrt((1 - abT) / abT), 14.614638904618833, 0.0, 1e-12);

    const auto g = ds::sigmoid_betas(1000, 1e-4, 0.02, ds::precision::float32);
    for (double x : g) CHECK(static_cast<double>(static_cast<float>(x)) == x);
    // numpy: float32 linspace(−6, 6) as above, logistic in float64 rounded to float32, then
    // float32(σ·float32(0.0199)) + float32(1e-4) in float32: ab_T = 3.9681829853881706e-05.
    DIFFUSE_CHECK_CLOSE(static_cast<double>(cumprod_ld(g, 999)), 3.9681829853881706e-05, 0.0, 1e-12);

    const auto c = ds::cosine_betas(1000, 0.999, ds::precision::float32);
    const auto c64 = ds::cosine_betas(1000);
    for (std::size_t i = 0; i < c.size(); ++i) CHECK(c[i] == static_cast<double>(static_cast<float>(c64[i])));
}

TEST_CASE("guided_linear: guided-diffusion's T-rescaled linear schedule") {
    // scale = 1000/T: at T = 1000 it is exactly the float64 linear schedule.
    CHECK(ds::guided_linear_betas(1000) == ds::linear_betas(1000));
    const auto b4 = ds::guided_linear_betas(4000);
    CHECK(b4.front() == 0.25 * 1e-4);
    CHECK(b4.back() == 0.25 * 0.02);
    const auto b250 = ds::guided_linear_betas(250);
    CHECK(b250.front() == 4.0 * 1e-4);
    CHECK(b250.back() == 4.0 * 0.02);
    // Mean β·T is T-invariant: Σβ = T(b0 + b1)/2·(1000/T) = 1000·0.01005.
    for (int T : {250, 1000, 4000}) {
        double sum = 0;
        for (double x : ds::guided_linear_betas(T)) sum += x;
        DIFFUSE_CHECK_CLOSE(sum, 10.05, 0.0, 1e-12);
    }
    CHECK(ds::make_betas("guided_linear", 4000) == b4);
}

TEST_CASE("cosine: telescoping, exactly one clipped beta, terminal alpha-bar (closed_forms A5)") {
    const auto f = [](double u) { return ds::cosine_alpha_bar(u); };
    for (int T : {10, 50, 100, 1000, 4000}) {
        CAPTURE(T);
        const auto b = ds::cosine_betas(T);
        int clipped = 0;
        for (double x : b) clipped += x == 0.999 ? 1 : 0;
        CHECK(clipped == 1);
        CHECK(b.back() == 0.999);
        // Π_{i<=t}(1 − β_i) = f((t+1)/T)/f(0) for t <= T−2 (1-indexed: t <= T−1). Each β carries an
        // absolute error <= 2ε from 1 − f2/f1; the product of T factors: <= 2Tε relative -> 1e-12.
        long double p = 1.0L;
        for (int t = 0; t + 1 < T; ++t) {
            p *= 1.0L - static_cast<long double>(b[static_cast<std::size_t>(t)]);
            if (t % 7 == 0 || t == T - 2) DIFFUSE_CHECK_CLOSE(static_cast<double>(p), f((t + 1.0) / T) / f(0.0), 0.0, 1e-12);
        }
        // The clip: ab_{T−1} = (1 − 0.999)·f((T−1)/T)/f(0).
        const double abT = static_cast<double>(p * (1.0L - 0.999L));
        DIFFUSE_CHECK_CLOSE(abT, 1e-3 * f((T - 1.0) / T) / f(0.0), 0.0, 1e-12);
        // The largest unclipped β tends to 0.75 (A5 claim 2): 0.7438 at T = 10.
        CHECK(b[static_cast<std::size_t>(T - 2)] < 0.75);
    }
    const auto b = ds::cosine_betas(1000);
    // numpy (diffusers' betas_for_alpha_bar): β_0 = 4.128422482196914e-05, β_998 = 0.7499993929011166,
    // ab_999 = 2.4287669070348567e-09 (A5: 2.428767e-09).
    DIFFUSE_CHECK_CLOSE(b[0], 4.128422482196914e-05, 0.0, 1e-12);
    DIFFUSE_CHECK_CLOSE(b[998], 0.7499993929011166, 0.0, 1e-13);
    DIFFUSE_CHECK_CLOSE(static_cast<double>(cumprod_ld(b, 999)), 2.4287669070348567e-09, 0.0, 1e-12);
    DIFFUSE_CHECK_CLOSE(static_cast<double>(cumprod_ld(b, 999)), 2.428767e-09, 5e-16, 0.0);
    // Without the clip (max_beta = 1): the last β is exactly 1, ab_{T−1} = 0 (f(1) = cos²(π/2) ≈ 3.7e-33,
    // so 1 − f(1)/f(u) rounds to 1).
    const auto nb = ds::cosine_betas(1000, 1.0);
    CHECK(nb.back() == 1.0);
    // A lower clip clips more betas.
    int clipped = 0;
    for (double x : ds::cosine_betas(1000, 0.5)) clipped += x == 0.5 ? 1 : 0;
    CHECK(clipped > 1);
}

TEST_CASE("exp and generic betas_for_alpha_bar") {
    // ᾱ(u) = e^{−12u}: every β = 1 − e^{−12/T} = −expm1(−12/T). u = i/T is rounded (relative ε),
    // so 12u is off by up to 12ε and each exp by as much relative: |Δβ| <= 2·12ε ≈ 2.7e-15.
    for (double x : ds::make_betas("exp", 1000)) DIFFUSE_CHECK_CLOSE(x, -std::expm1(-0.012), 3e-15, 0.0);
    // A user alpha-bar: ᾱ(u) = 1 − u/2 gives β_i = 1 − (1 − (i+1)/2T)/(1 − i/2T) = 1/(2T − i).
    const auto b = ds::betas_for_alpha_bar(10, [](double u) { return 1.0 - u / 2.0; });
    for (int i = 0; i < 10; ++i) DIFFUSE_CHECK_CLOSE(b[static_cast<std::size_t>(i)], 1.0 / (20.0 - i), 0.0, 1e-14);
}

TEST_CASE("make_betas dispatches by name") {
    CHECK(ds::make_betas("linear", 1000) == ds::linear_betas(1000));
    CHECK(ds::make_betas("scaled_linear", 1000, 0.00085, 0.012) == ds::scaled_linear_betas(1000));
    CHECK(ds::make_betas("squaredcos_cap_v2", 1000) == ds::cosine_betas(1000));
    CHECK(ds::make_betas("sigmoid", 1000) == ds::sigmoid_betas(1000));
    ds::beta_options o;
    o.prec = ds::precision::float32;
    CHECK(ds::make_betas("linear", 1000, 1e-4, 0.02, o) == ds::linear_betas(1000, 1e-4, 0.02, ds::precision::float32));
    o.max_beta = 0.9;
    CHECK(ds::make_betas("squaredcos_cap_v2", 20, 1e-4, 0.02, o) == ds::cosine_betas(20, 0.9, ds::precision::float32));
    // T = 1: linspace with one point is its start (numpy and torch).
    CHECK(ds::linear_betas(1) == std::vector<double>{1e-4});
    CHECK(ds::linear_betas(1, 1e-4, 0.02, ds::precision::float32) == std::vector<double>{static_cast<double>(1e-4f)});
}

TEST_CASE("betas_from_alphas_cumprod inverts the cumulative product") {
    // ᾱ = {0.9, 0.72, 0.36}: β = {0.1, 0.2, 0.5} (exact in binary up to one rounding each).
    const std::vector<double> ab{0.9, 0.72, 0.36};
    const auto b = ds::betas_from_alphas_cumprod(ab);
    DIFFUSE_CHECK_CLOSE(b[0], 0.1, 0.0, 4e-16);
    DIFFUSE_CHECK_CLOSE(b[1], 0.2, 0.0, 4e-16);
    DIFFUSE_CHECK_CLOSE(b[2], 0.5, 0.0, 4e-16);
}

TEST_CASE("beta schedule errors name the argument, the value and the allowed range") {
    DIFFUSE_CHECK_ERROR(ds::make_betas("cosine", 1000), "beta_schedule", "\"cosine\"", "\"linear\"",
                        "\"scaled_linear\"", "\"squaredcos_cap_v2\"", "\"sigmoid\"", "\"guided_linear\"");
    DIFFUSE_CHECK_ERROR(ds::linear_betas(0), "num_train_timesteps = 0", ">= 1");
    DIFFUSE_CHECK_ERROR(ds::make_betas("squaredcos_cap_v2", -3), "num_train_timesteps = -3", ">= 1");
    DIFFUSE_CHECK_ERROR(ds::linear_betas(1000, 0.0, 0.02), "beta_start = 0", "open interval (0, 1)");
    DIFFUSE_CHECK_ERROR(ds::scaled_linear_betas(1000, 0.00085, 1.5), "beta_end = 1.5", "open interval (0, 1)");
    DIFFUSE_CHECK_ERROR(ds::sigmoid_betas(1000, NAN, 0.02), "beta_start = nan", "(0, 1)");
    DIFFUSE_CHECK_ERROR(ds::cosine_betas(1000, 0.0), "max_beta = 0", "(0, 1]");
    DIFFUSE_CHECK_ERROR(ds::cosine_betas(1000, 1.5), "max_beta = 1.5", "(0, 1]");
    DIFFUSE_CHECK_ERROR(ds::guided_linear_betas(10), "beta_end*1000/num_train_timesteps = 2", "(0, 1)");
    DIFFUSE_CHECK_ERROR(ds::validate_betas(std::vector<double>{}), "betas.size() = 0", "at least 1");
    DIFFUSE_CHECK_ERROR(ds::validate_betas(std::vector<double>{0.1, 0.2, 0.0}), "betas[2] = 0", "(0, 1)");
    DIFFUSE_CHECK_ERROR(ds::validate_betas(std::vector<double>{0.1, -0.2, 0.3}), "betas[1] = -0.2", "(0, 1)");
    DIFFUSE_CHECK_ERROR(ds::validate_betas(std::vector<double>{0.1, 1.0, 0.3}, true), "betas[1] = 1",
                        "only at the last timestep");
    DIFFUSE_CHECK_ERROR(ds::validate_betas(std::vector<double>{0.1, 1.0}), "betas[1] = 1", "open interval (0, 1)");
    DIFFUSE_CHECK_ERROR(ds::validate_betas(std::vector<double>{0.1, INFINITY}, true), "betas[1] = inf", "(0, 1]");
    ds::validate_betas(std::vector<double>{0.1, 1.0}, true);  // zero terminal SNR is accepted when allowed
}
