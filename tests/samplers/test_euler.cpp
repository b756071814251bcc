// samplers/euler.hpp: Euler in σ-space against the exact PF-ODE on Karras σ (order 1, closed_forms
// C2), the EDM-Euler ≡ DDIM identity (A10 / C1), VE- vs VP-level model input, diffusers' σ levels
// (diffusers_sigma_levels) and the EulerDiscreteScheduler oracle (peers.md c.1 #5), and errors.
// Churn is tested in test_churn.cpp.
#include <diffuse/samplers/ddim.hpp>
#include <diffuse/samplers/euler.hpp>

#include <diffuse/analytic/gaussian.hpp>
#include <diffuse/core/eigen_adapter.hpp>
#include <diffuse/models/exact.hpp>
#include <diffuse/schedules/discrete_schedule.hpp>

#include "samplers/euler_family_fixtures.hpp"
#include "samplers/fixtures.hpp"
#include "support/check.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

using namespace diffuse;
using namespace diffuse::samplers;
using diffuse::models::exact_gaussian_denoiser;
using pt = prediction_type;

namespace {

using namespace diffuse::test;

double ts_of(const level_sequence& l, std::size_t i) { return l[i].timestep.value(); }

}  // namespace

TEST_CASE("euler converges with order 1 to the exact PF-ODE endpoint on Karras sigmas") {
    const auto g = gaussian3();
    const exact_gaussian_denoiser model(g, pt::sample);
    // σ range of closed_forms C2: λ from −5.03 to 4.56, σ = e^{−λ}; the grid ends at σ_min > 0 (C4.3).
    const double smin = std::exp(-4.56), smax = std::exp(5.03);
    const Eigen::MatrixXd xT = marginal_points(g, 1.0, smax, 7);
    const Eigen::MatrixXd exact = g.pf_ode_flow(xT, 1.0, smax, 1.0, smin);
    std::vector<int> ns = {10, 20, 40, 80, 160, 320};
    std::vector<double> errs;
    for (int n : ns) {
        euler_sampler s = euler_sampler::karras(n + 1, smin, smax, 7.0, /*to_zero=*/false);
        REQUIRE(s.num_steps() == static_cast<std::size_t>(n));
        auto x = to_tensor(xT);
        philox_rng rng(0);
        sample(model, s, x, rng);
        errs.push_back((to_matrix(x) - exact).cwiseAbs().maxCoeff());
        MESSAGE("Euler N = " << n << " max error " << errs.back());
    }
    const double slope = fitted_order(std::vector<int>(ns.begin() + 2, ns.end()),
                                      std::vector<double>(errs.begin() + 2, errs.end()));
    MESSAGE("Euler fitted order (LSQ, N = 40..320): " << slope);
    // Band of closed_forms C2 (measured 0.987 there): |slope − 1| < 0.1.
    CHECK(std::abs(slope - 1.0) < 0.1);
}

TEST_CASE("one EDM Euler step equals one DDIM eta 0 step on the same noise levels") {
    // closed_forms A10 / C1: with x_vp = a·x_ve, ᾱ = 1/(1+σ²), DDIM(x_vp) = a'·Euler(x_ve).
    const auto g = gaussian3();
    for (pt type : {pt::epsilon, pt::sample, pt::v_prediction}) {
        const exact_gaussian_denoiser model(g, type);
        for (auto [sig, sig_next] : {std::pair{14.6, 9.1}, std::pair{1.7, 0.9}, std::pair{0.08, 0.03}}) {
            const double ab = 1.0 / (1.0 + sig * sig), abn = 1.0 / (1.0 + sig_next * sig_next);
            const double a = std::sqrt(ab), an = std::sqrt(abn);
            const Eigen::MatrixXd xve = marginal_points(g, 1.0, sig, 3);
            // Euler in VE.
            euler_sampler e(std::vector<double>{sig, sig_next});
            auto x = to_tensor(xve);
            philox_rng rng(0);
            sample(model, e, x, rng);
            // DDIM on a two-level schedule {ᾱ', ᾱ}: step from t = 1 to ᾱ_0 = ᾱ'.
            const std::vector<double> abars = {abn, ab};
            ddim_sampler d(schedules::discrete_schedule::from_alphas_cumprod(abars), ddim_config{.set_alpha_to_one = false});
            d.set_timesteps(std::vector<int>{1});
            auto y = to_tensor(a * xve);
            sample(model, d, y, rng);
            const double err = (to_matrix(y) - an * to_matrix(x)).cwiseAbs().maxCoeff();
            CHECK_MESSAGE(err < 1e-13, "σ = " << sig << " -> " << sig_next << ": |DDIM − a'·Euler| = " << err);
        }
    }
}

TEST_CASE("euler with VP-level model input gives the same steps as VE-level input") {
    const auto g = gaussian3();
    const exact_gaussian_denoiser model(g, pt::epsilon);
    const Eigen::MatrixXd xT = marginal_points(g, 1.0, 80.0, 5);
    euler_sampler ve = euler_sampler::karras(12, 0.002, 80.0);
    euler_sampler vp = euler_sampler::karras(12, 0.002, 80.0, 7.0, true, euler_config{.input = model_input::vp});
    DIFFUSE_CHECK_CLOSE(vp.model_input_scale(0), 1.0 / std::sqrt(1.0 + 6400.0), 0.0, 1e-15);
    DIFFUSE_CHECK_CLOSE(vp.model_level(0).sigma(), 80.0, 0.0, 1e-14);
    auto x = to_tensor(xT), y = to_tensor(xT);
    philox_rng rng(0);
    sample(model, ve, x, rng);
    sample(model, vp, y, rng);
    CHECK((to_matrix(x) - to_matrix(y)).cwiseAbs().maxCoeff() < 1e-12);
    CHECK(ve.sigmas().back() == 0.0);
}

TEST_CASE("euler rejects bad sigma sequences") {
    DIFFUSE_CHECK_ERROR(euler_sampler(std::vector<double>{1.0}), "sigmas.size()");
    DIFFUSE_CHECK_ERROR(euler_sampler(std::vector<double>{1.0, 2.0}), "sigmas[1]", "decreasing");
    DIFFUSE_CHECK_ERROR(euler_sampler(std::vector<double>{1.0, 0.0, 0.0}), "sigmas[1]", "> 0");
    DIFFUSE_CHECK_ERROR(euler_sampler(std::vector<double>{NAN, 0.0}), "sigmas[0]");
    euler_sampler s(std::vector<double>{2.0, 1.0});
    tensor<double, host_space> x(shape{1, 3}, 0.0), m(shape{1, 3}, 0.0);
    philox_rng rng(0);
    DIFFUSE_CHECK_ERROR(s.step(m.cview(), 1, x.view(), rng), "step index", "[0, 1)");
}

TEST_CASE("diffusers_sigma_levels builds diffusers Euler-family sigmas with their timesteps") {
    const auto sched = schedules::discrete_schedule::named("linear", 1100, 1e-4, 0.02);
    const std::vector<double> table = sched.sigmas_ve();
    for (auto sp : {schedules::spacing::linspace, schedules::spacing::leading, schedules::spacing::trailing}) {
        const level_sequence l = diffusers_sigma_levels(sched, 10, sp, sp == schedules::spacing::leading ? 1 : 0);
        const std::vector<double> ts =
            schedules::euler_timesteps(1100, 10, sp, sp == schedules::spacing::leading ? 1 : 0);
        REQUIRE(l.size() == 11);
        CHECK(l.space() == state_space::ve);
        for (std::size_t i = 0; i < 10; ++i) {
            CHECK(l[i].timestep.value() == ts[i]);  // the exact timestep, not a σ -> t round trip
            // np.interp(t, arange(T), σ_table): σ_j + (t − j)(σ_{j+1} − σ_j), j = floor t
            const double j = std::floor(ts[i]);
            const std::size_t J = static_cast<std::size_t>(j);
            const double expect = ts[i] == j ? table[J] : table[J] + (ts[i] - j) * (table[J + 1] - table[J]);
            DIFFUSE_CHECK_CLOSE(l.sigma(i), expect, 0.0, 1e-15);
        }
        CHECK(l.sigma(10) == 0.0);
        CHECK_FALSE(l[10].timestep.has_value());
        // diffusers' init_noise_sigma: σ_max for linspace / trailing, √(σ_max² + 1) for leading.
        const double smax = l.sigma(0);
        const double expect_init = sp == schedules::spacing::leading ? std::sqrt(smax * smax + 1.0) : smax;
        CHECK(diffusers_init_noise_sigma(l, sp) == expect_init);
        // A σ between levels gets the schedule's σ -> t map (diffusers _sigma_to_t).
        const double mid = std::sqrt(l.sigma(3) * l.sigma(4));
        CHECK(l.at_sigma(mid).timestep.value() == schedules::sigma_to_t(table, mid));
    }
    // linspace for T = 1100, N = 10: t = 1099·(9 − k)/9, fractional; σ_0 = σ_table(1099).
    const level_sequence l = diffusers_sigma_levels(sched, 10);
    DIFFUSE_CHECK_CLOSE(l[1].timestep.value(), 1099.0 * 8.0 / 9.0, 1e-12, 0.0);
    CHECK(l.sigma(0) == table.back());
    // final sigma_min: σ of ᾱ_0 with timestep 0; log-linear interpolation at fractional t.
    const level_sequence lm = diffusers_sigma_levels(sched, 10, schedules::spacing::trailing, 0,
                                                     schedules::sigma_interpolation::log_linear, final_level::sigma_min);
    CHECK(lm.sigma(10) == sched.sigma_ve(0));
    CHECK(lm[10].timestep.value() == 0.0);
    const level_sequence ll = diffusers_sigma_levels(sched, 10, schedules::spacing::linspace, 0,
                                                     schedules::sigma_interpolation::log_linear);
    DIFFUSE_CHECK_CLOSE(ll.sigma(1), schedules::sigma_at(table, ts_of(ll, 1), schedules::sigma_interpolation::log_linear),
                        0.0, 1e-15);
    // float32: timesteps and σ rounded to float, as diffusers stores them.
    const level_sequence lf = diffusers_sigma_levels(sched, 10, schedules::spacing::linspace, 0,
                                                     schedules::sigma_interpolation::linear, final_level::zero,
                                                     schedules::precision::float32);
    for (std::size_t i = 0; i < 10; ++i) {
        CHECK(lf.sigma(i) == static_cast<double>(static_cast<float>(lf.sigma(i))));
        CHECK(lf[i].timestep.value() == static_cast<double>(static_cast<float>(lf[i].timestep.value())));
        DIFFUSE_CHECK_CLOSE(lf.sigma(i), l.sigma(i), 0.0, 2e-6);  // float rounding of t and σ: a few 2^-24
    }
}

TEST_CASE_TEMPLATE("euler reproduces diffusers EulerDiscreteScheduler test_full_loop_no_noise with T 1100", T, float,
                   double) {
    // peers.md c.1 #5: T = 1100, linear 1e-4..0.02, linspace (fractional t), linear σ interpolation,
    // final 0, x = dummy_sample_deter·init_noise_sigma; the test passes the SCALED x to step().
    // Tolerances as diffusers: 1e-2 on the sum, 1e-3 on the mean.
    // float64: the double schedule and levels; float32: diffusers' float32 ᾱ and stored t, σ.
    for (auto prec : {schedules::precision::float64, schedules::precision::float32}) {
        const auto sched = prec == schedules::precision::float32
                               ? euler_family::diffusers_float32_linear(1100, 1e-4, 0.02)
                               : schedules::discrete_schedule::named("linear", 1100, 1e-4, 0.02);
        const level_sequence l = diffusers_sigma_levels(sched, 10, schedules::spacing::linspace, 0,
                                                        schedules::sigma_interpolation::linear, final_level::zero, prec);
        euler_sampler s(l, euler_config{.input = model_input::vp, .prediction = pt::epsilon});
        const auto x = euler_family::diffusers_test_loop<T>(
            s, diffusers_init_noise_sigma(l, schedules::spacing::linspace), pt::epsilon,
            [&](const tensor<T, host_space>& out, std::size_t i, tensor<T, host_space>& xs, philox_rng& rng) {
                s.step(out.cview(), i, xs.view(), rng);
            });
        const double sum = euler_family::abs_sum(x);
        MESSAGE("diffusers Euler #5: sum " << std::to_string(sum) << ", mean " << std::to_string(sum / 768.0));
        DIFFUSE_CHECK_CLOSE(sum, 10.0807, 1e-2, 0.0);
        DIFFUSE_CHECK_CLOSE(sum / 768.0, 0.0131, 1e-3, 0.0);
    }
}

TEST_CASE("euler step before set_levels and bad churn parameters are refused") {
    euler_sampler s;
    tensor<double, host_space> x(shape{1, 3}, 0.0), m(shape{1, 3}, 0.0);
    philox_rng rng(0);
    CHECK(s.num_steps() == 0);
    DIFFUSE_CHECK_ERROR(s.step(m.cview(), 0, x.view(), rng), "step index", "[0, 0)");
    DIFFUSE_CHECK_ERROR(euler_sampler(std::vector<double>{2.0, 1.0}, euler_config{.churn = {.s_churn = -1.0}}),
                        "s_churn", ">= 0");
    DIFFUSE_CHECK_ERROR(euler_sampler(std::vector<double>{2.0, 1.0}, euler_config{.churn = {.s_noise = NAN}}),
                        "s_noise");
}
