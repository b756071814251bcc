// samplers/euler.hpp: Euler in σ-space against the exact PF-ODE on Karras σ (order 1, closed_forms
// C2), the EDM-Euler ≡ DDIM identity (A10 / C1), VE- vs VP-level model input, and errors.
#include <diffuse/samplers/ddim.hpp>
#include <diffuse/samplers/euler.hpp>

#include <diffuse/analytic/gaussian.hpp>
#include <diffuse/core/eigen_adapter.hpp>
#include <diffuse/models/exact.hpp>
#include <diffuse/schedules/discrete_schedule.hpp>

#include "samplers/fixtures.hpp"
#include "support/check.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <vector>

using namespace diffuse;
using namespace diffuse::samplers;
using diffuse::models::exact_gaussian_denoiser;
using pt = prediction_type;

namespace {

using namespace diffuse::test;

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
