// Tests for include/diffuse/schedules/sigmas.hpp (docs/schedules.md §8).
// Values marked "numpy" were computed with numpy 1.24 in float64 from the peers' formulas
// (k-diffusion get_sigmas_karras; diffusers np.interp and _sigma_to_t; k-diffusion t_to_sigma).
#include <diffuse/schedules/sigmas.hpp>

#include <diffuse/schedules/continuous.hpp>
#include <diffuse/schedules/discrete_schedule.hpp>
#include <diffuse/schedules/timesteps.hpp>
#include <support/check.hpp>

#include <cmath>
#include <vector>

namespace ds = diffuse::schedules;

TEST_CASE("karras_sigmas: the EDM anchor (closed_forms A10) and the appended zero") {
    const auto s = ds::karras_sigmas(10, 0.002, 80.0, 7.0);
    REQUIRE(s.size() == 11);
    CHECK(s.back() == 0.0);
    // closed_forms A10, printed to 7 significant digits: half a unit of the last digit.
    const double anchor[10] = {80, 42.41519, 21.10868, 9.723201, 4.066124, 1.501742, 0.4699791, 0.1166386, 0.02043533, 0.002};
    const double half_unit[10] = {5e-6, 5e-6, 5e-6, 5e-7, 5e-7, 5e-7, 5e-8, 5e-8, 5e-9, 5e-10};
    // numpy (float64): the same formula to full precision.
    const double full[10] = {79.99999999999999,   42.41518931851267,    21.10867673619376,     9.72320135526013,
                             4.066123602953759,   1.501741979068008,    0.46997905799774714,   0.11663856352517864,
                             0.020435334553438746, 0.002000000000000003};
    for (int i = 0; i < 10; ++i) {
        DIFFUSE_CHECK_CLOSE(s[static_cast<std::size_t>(i)], anchor[i], half_unit[i], 0.0);
        // pow(·, 7) of a value carrying ~1 ulp: 7ε relative, plus the ramp's rounding: 4e-15.
        DIFFUSE_CHECK_CLOSE(s[static_cast<std::size_t>(i)], full[i], 0.0, 4e-15);
    }
    const auto n = ds::karras_sigmas(10, 0.002, 80.0, 7.0, ds::final_sigma::none);
    CHECK(n.size() == 10);
    CHECK(n == std::vector<double>(s.begin(), s.end() - 1));
    CHECK(ds::karras_sigmas(1, 0.002, 80.0, 7.0, ds::final_sigma::none) == std::vector<double>{std::pow(std::pow(80.0, 1 / 7.0), 7.0)});
}

TEST_CASE("karras_sigmas: the Stable Diffusion anchor (peers.md b.4)") {
    const auto sd = ds::discrete_schedule::named("scaled_linear", 1000, 0.00085, 0.012);
    const auto s = ds::karras_sigmas(10, sd.sigma_ve(0), sd.sigma_ve(999));
    // peers.md b.4 (4 decimals): 14.6146, 9.1029, 5.4784, 3.1686, 1.7494, 0.9141, 0.4469, 0.2014, 0.0819, 0.0292.
    const double anchor[10] = {14.6146, 9.1029, 5.4784, 3.1686, 1.7494, 0.9141, 0.4469, 0.2014, 0.0819, 0.0292};
    // numpy, from the float64 scaled_linear schedule.
    const double full[10] = {14.614641229333643, 9.102928134047657,   5.478391986442961,   3.1686030729596184,
                             1.7494170492511882, 0.9140722650309667,  0.44691820937343973, 0.20139829978031268,
                             0.08191023832026934, 0.02916715815172038};
    for (int i = 0; i < 10; ++i) {
        DIFFUSE_CHECK_CLOSE(s[static_cast<std::size_t>(i)], anchor[i], 5e-5, 0.0);
        DIFFUSE_CHECK_CLOSE(s[static_cast<std::size_t>(i)], full[i], 0.0, 4e-14);
    }
}

TEST_CASE("exponential, polyexponential and vp sigmas") {
    const auto e = ds::exponential_sigmas(12, 0.03, 15.0);
    REQUIRE(e.size() == 13);
    CHECK(e.back() == 0.0);
    DIFFUSE_CHECK_CLOSE(e.front(), 15.0, 0.0, 4e-16);
    DIFFUSE_CHECK_CLOSE(e[11], 0.03, 0.0, 4e-16);
    // Uniform in log σ: constant ratio (σ_min/σ_max)^{1/(n−1)}; the logs carry ~ε·|log σ| <= 4e-16·3.
    const double ratio = std::pow(0.03 / 15.0, 1.0 / 11.0);
    for (int i = 0; i + 1 < 12; ++i) DIFFUSE_CHECK_CLOSE(e[static_cast<std::size_t>(i + 1)] / e[static_cast<std::size_t>(i)], ratio, 0.0, 4e-15);
    // Polyexponential with ρ = 1 is exponential; ρ = 2 at ramp r = 1/2: exp(¼(log σ_max − log σ_min) + log σ_min).
    const auto p1 = ds::polyexponential_sigmas(12, 0.03, 15.0, 1.0);
    for (std::size_t i = 0; i < 12; ++i) DIFFUSE_CHECK_CLOSE(p1[i], e[i], 0.0, 4e-15);
    const auto p2 = ds::polyexponential_sigmas(3, 0.03, 15.0, 2.0, ds::final_sigma::none);
    REQUIRE(p2.size() == 3);
    DIFFUSE_CHECK_CLOSE(p2[1], std::exp(0.25 * std::log(15.0 / 0.03) + std::log(0.03)), 0.0, 4e-15);
    // k-diffusion's get_sigmas_vp is the continuous VP-linear σ_ve with β_d = β₁ − β₀.
    const auto v = ds::vp_sigmas(10, 19.9, 0.1, 1e-3);
    const ds::vp_linear vp(0.1, 20.0);
    REQUIRE(v.size() == 11);
    CHECK(v.back() == 0.0);
    const double ts[2] = {1.0, 1e-3};
    DIFFUSE_CHECK_CLOSE(v.front(), vp.sigma_ve(ts[0]), 0.0, 1e-14);
    DIFFUSE_CHECK_CLOSE(v[9], vp.sigma_ve(ts[1]), 0.0, 1e-14);
}

TEST_CASE("sigma_at: linear (diffusers) versus log-linear (k-diffusion) interpolation") {
    const auto sd = ds::discrete_schedule::named("scaled_linear", 1000, 0.00085, 0.012);
    const auto table = sd.sigmas_ve();
    // Integer t: both give the table entry exactly.
    for (double t : {0.0, 1.0, 500.0, 999.0}) {
        CHECK(ds::sigma_at(table, t, ds::sigma_interpolation::linear) == table[static_cast<std::size_t>(t)]);
        CHECK(ds::sigma_at(table, t, ds::sigma_interpolation::log_linear) == table[static_cast<std::size_t>(t)]);
    }
    // SD, N = 20 Euler linspace timesteps (numpy): t_3 = 841.2631578947369, np.interp gives
    // 6.204948446382512, log-linear 6.2049343413713585; the largest relative difference over the 20
    // is 1.4586728843031947e-05 (peers.md b.3: 1.46e-5).
    const auto ts = ds::euler_timesteps(1000, 20, ds::spacing::linspace);
    DIFFUSE_CHECK_CLOSE(ts[3], 841.2631578947369, 0.0, 4e-16);
    const auto lin = ds::sigmas_at(table, ts, ds::sigma_interpolation::linear);
    const auto log = ds::sigmas_at(table, ts, ds::sigma_interpolation::log_linear);
    DIFFUSE_CHECK_CLOSE(lin[3], 6.204948446382512, 0.0, 1e-13);
    DIFFUSE_CHECK_CLOSE(log[3], 6.2049343413713585, 0.0, 1e-13);
    double worst = 0;
    for (std::size_t i = 0; i < ts.size(); ++i) worst = std::max(worst, std::abs(lin[i] - log[i]) / log[i]);
    DIFFUSE_CHECK_CLOSE(worst, 1.4586728843031947e-05, 0.0, 1e-8);
    // Closed forms at a midpoint: arithmetic versus geometric mean of the neighbours.
    DIFFUSE_CHECK_CLOSE(ds::sigma_at(table, 10.5, ds::sigma_interpolation::linear), 0.5 * (table[10] + table[11]), 0.0, 4e-16);
    DIFFUSE_CHECK_CLOSE(ds::sigma_at(table, 10.5, ds::sigma_interpolation::log_linear), std::sqrt(table[10] * table[11]), 0.0, 4e-15);
    // A zero-terminal-SNR table ends in +∞; integer t = T−1 returns it, earlier t stay finite.
    const auto zt = sd.rescale_zero_terminal_snr().sigmas_ve();
    CHECK(ds::sigma_at(zt, 999.0, ds::sigma_interpolation::log_linear) == INFINITY);
    CHECK(std::isfinite(ds::sigma_at(zt, 998.0, ds::sigma_interpolation::log_linear)));
}

TEST_CASE("sigma_to_t: diffusers/k-diffusion rule and its inverse relation to log-linear sigma_at") {
    const auto table = ds::discrete_schedule::named("scaled_linear", 1000, 0.00085, 0.012).sigmas_ve();
    // numpy (diffusers' _sigma_to_t): the relative tolerance covers the table's few-ulp difference.
    const double sig[7] = {1.0, 0.5, 14.0, 0.0292, 0.001, 20.0, 3.0};
    const double ref[7] = {353.89041059493974, 169.31477055601408, 991.8844178888768, 0.0032322145275464147, 0.0, 999.0,
                           673.1554520567037};
    for (int i = 0; i < 7; ++i) DIFFUSE_CHECK_CLOSE(ds::sigma_to_t(table, sig[i]), ref[i], 1e-12, 1e-12);
    CHECK(ds::sigma_to_t(table, 0.0) == 0.0);  // clamped at 1e-10, below σ_0
    // sigma_to_t inverts log-linear sigma_at: w = (ls_j − log σ)/(ls_j − ls_{j+1}) recovers the
    // interpolation weight up to ε·|log σ|/|Δ log σ| <= 1e-12 (Δ log σ >= 1e-3 on this table).
    for (double t : {0.25, 3.5, 120.75, 500.125, 998.5}) {
        const double s = ds::sigma_at(table, t, ds::sigma_interpolation::log_linear);
        DIFFUSE_CHECK_CLOSE(ds::sigma_to_t(table, s), t, 1e-10, 0.0);
    }
    const auto zt = ds::discrete_schedule::named("linear", 1000).rescale_zero_terminal_snr().sigmas_ve();
    CHECK(ds::sigma_to_t(zt, INFINITY) == 999.0);
    CHECK(ds::sigma_to_t(zt, 1e6) == 998.0);
}

TEST_CASE("sigma errors name the argument, the value and the allowed range") {
    DIFFUSE_CHECK_ERROR(ds::karras_sigmas(0, 0.002, 80.0), "n = 0", ">= 1");
    DIFFUSE_CHECK_ERROR(ds::karras_sigmas(10, 0.0, 80.0), "sigma_min = 0", "> 0");
    DIFFUSE_CHECK_ERROR(ds::karras_sigmas(10, 0.002, 0.001), "sigma_max = 0.001", ">= sigma_min");
    DIFFUSE_CHECK_ERROR(ds::karras_sigmas(10, 0.002, 80.0, -7.0), "rho = -7", "> 0");
    DIFFUSE_CHECK_ERROR(ds::exponential_sigmas(10, -1.0, 80.0), "sigma_min = -1", "> 0");
    DIFFUSE_CHECK_ERROR(ds::polyexponential_sigmas(10, 0.1, 80.0, 0.0), "rho = 0", "> 0");
    DIFFUSE_CHECK_ERROR(ds::vp_sigmas(10, 19.9, 0.1, 0.0), "eps_s = 0", "(0, 1)");
    const std::vector<double> table{0.1, 0.2, 0.4};
    DIFFUSE_CHECK_ERROR(ds::sigma_at(table, 2.5, ds::sigma_interpolation::linear), "t = 2.5", "[0, 2]");
    DIFFUSE_CHECK_ERROR(ds::sigma_at(table, -0.5, ds::sigma_interpolation::log_linear), "t = -0.5", "[0, 2]");
    DIFFUSE_CHECK_ERROR(ds::sigma_at(std::vector<double>{0.1}, 0.0, ds::sigma_interpolation::linear), "sigmas.size() = 1",
                        "at least 2");
    DIFFUSE_CHECK_ERROR(ds::sigma_to_t(std::vector<double>{0.1, 0.1}, 0.1), "sigmas[1] = 0.10000000000000001",
                        "greater than sigmas[0]");
    DIFFUSE_CHECK_ERROR(ds::sigma_to_t(std::vector<double>{0.0, 0.1}, 0.1), "sigmas[0] = 0", "> 0");
    DIFFUSE_CHECK_ERROR(ds::sigma_to_t(table, NAN), "sigma = nan", ">= 0");
}
