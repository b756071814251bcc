// samplers/euler_ancestral.hpp: Euler ancestral with η and s_noise. η = 0 ≡ Euler; DDIM(η) ≡
// Euler ancestral(η) with identical injected noise on VP and VE states (closed_forms C1, peers
// b.9); exact output moments through the affine map (C9 / F1) converging to the target; one
// Monte-Carlo moment check of the driver's noise (F3); RNG consumption of both conventions;
// diffusers' seeded EulerAncestral oracle (peers.md c.1 #7); errors.
#include <diffuse/samplers/euler_ancestral.hpp>

#include <diffuse/analytic/gaussian.hpp>
#include <diffuse/core/eigen_adapter.hpp>
#include <diffuse/core/torch_generator.hpp>
#include <diffuse/models/exact.hpp>
#include <diffuse/samplers/ddim.hpp>
#include <diffuse/samplers/euler.hpp>
#include <diffuse/schedules/discrete_schedule.hpp>

#include "samplers/euler_family_fixtures.hpp"
#include "samplers/fixtures.hpp"
#include "support/check.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

using namespace diffuse;
using namespace diffuse::samplers;
using diffuse::models::exact_gaussian_denoiser;
using pt = prediction_type;

static_assert(stepping_sampler<euler_ancestral_sampler, double, host_space>);
static_assert(stepping_sampler<euler_ancestral_sampler, float, host_space>);

namespace {

using namespace diffuse::test;
using namespace diffuse::test::euler_family;

/// n standard-normal [rows, 3] tensors from a Philox stream.
std::vector<tensor<double, host_space>> normals(std::size_t n, std::int64_t rows, std::uint64_t seed) {
    philox_rng rng(seed);
    std::vector<tensor<double, host_space>> z;
    for (std::size_t k = 0; k < n; ++k) {
        z.emplace_back(shape{rows, 3});
        randn(z.back(), rng);
    }
    return z;
}

}  // namespace

TEST_CASE("euler ancestral with eta 0 is Euler") {
    const auto g = gaussian3();
    for (pt type : {pt::epsilon, pt::sample, pt::v_prediction}) {
        const exact_gaussian_denoiser model(g, type);
        const auto sig = schedules::karras_sigmas(12, 0.002, 80.0, 7.0, schedules::final_sigma::zero);
        euler_sampler e(sig);
        euler_ancestral_sampler a(sig, euler_ancestral_config{.eta = 0.0});
        const Eigen::MatrixXd xT = marginal_points(g, 1.0, 80.0, 2);
        auto x = to_tensor(xT), y = to_tensor(xT);
        philox_rng r1(3), r2(3);
        sample(model, e, x, r1);
        sample(model, a, y, r2);
        const double err = (to_matrix(x) - to_matrix(y)).cwiseAbs().maxCoeff();
        MESSAGE("eta 0 vs Euler: " << err);
        // Same coefficients up to (a'/a)·(σ_down/σ) vs s'/s (one rounding each) over 12 steps
        // of O(80) states: 1e-12 absolute.
        CHECK(err < 1e-12);
        // k-diffusion draws where σ' > 0 even for η = 0 (11 of 12 steps, 48 normals each).
        CHECK(r2.normal_offset() == 11u * 48u);
        CHECK(r1.normal_offset() == 0u);
    }
}

TEST_CASE("ddim with eta equals euler ancestral with eta under identical noise on VP and VE states") {
    // closed_forms C1 / peers b.9: DDIM(η)(x_vp) = a'·EulerA(η)(x_ve) with x_vp = a·x_ve, for any
    // prediction type (both convert the same exact output); measured ≤ 2.9e-15 there.
    const auto g = gaussian3();
    const auto sched = schedules::discrete_schedule::named("linear", 1000);
    for (double eta : {0.3, 1.0}) {
        for (pt type : {pt::epsilon, pt::v_prediction}) {
            const exact_gaussian_denoiser model(g, type);
            ddim_sampler d(sched, ddim_config{.eta = eta, .timestep_spacing = schedules::spacing::trailing});
            d.set_timesteps(10);
            const std::vector<int> ts = d.timesteps();
            euler_ancestral_sampler vp(level_sequence::from_timesteps(sched, ts, final_level::zero, state_space::vp),
                                       euler_ancestral_config{.eta = eta});
            euler_ancestral_sampler ve(level_sequence::from_timesteps(sched, ts, final_level::zero, state_space::ve),
                                       euler_ancestral_config{.eta = eta});
            const double a0 = sched.alpha(ts[0]), s0 = sched.sigma(ts[0]);
            const Eigen::MatrixXd xT = marginal_points(g, a0, s0, 4);
            const auto z = normals(10, 16, 99);
            double worst = 0.0;
            auto xd = to_tensor(xT), xp = to_tensor(xT), xe = to_tensor(xT / a0);
            tensor<double, host_space> out(xd.shape());
            for (std::size_t i = 0; i < 10; ++i) {
                model(out.view(), xd.cview(), d.model_level(i));
                const ddim_coeffs c = d.coefficients(type, i);
                lincomb(xd.view(), c.c_x, xd.cview(), c.c_m, out.cview(), c.c_z, z[i].cview());
                model(out.view(), xp.cview(), vp.model_level(i));
                vp.step_with_noise(out.cview(), type, i, xp.view(), z[i].cview());
                model(out.view(), xe.cview(), ve.model_level(i));
                ve.step_with_noise(out.cview(), type, i, xe.view(), z[i].cview());
                // The states agree at every level: x_vp = a_{i+1}·x_ve.
                const double a1 = vp.levels()[i + 1].a;
                const double e1 = (to_matrix(xd) - to_matrix(xp)).cwiseAbs().maxCoeff();
                const double e2 = (to_matrix(xd) - a1 * to_matrix(xe)).cwiseAbs().maxCoeff();
                // O(1) states, 10 steps of a few roundings each: 1e-13 absolute.
                CHECK_MESSAGE(e1 < 1e-13, "η " << eta << " step " << i << ": |DDIM − EulerA(VP)| = " << e1);
                CHECK_MESSAGE(e2 < 1e-13, "η " << eta << " step " << i << ": |DDIM − a'·EulerA(VE)| = " << e2);
                worst = std::max({worst, e1, e2});
            }
            MESSAGE("η " << eta << ": max over steps |DDIM − EulerA| (VP and VE) = " << worst);
        }
    }
}

TEST_CASE("euler ancestral coefficients follow get_ancestral_step") {
    // σ_up = min(σ', η√(σ'²(σ² − σ'²)/σ²)), σ_down = √(σ'² − σ_up²), independently.
    for (double eta : {0.0, 0.5, 1.0, 3.0})
        for (auto [s, sn] : {std::pair{14.6, 9.1}, std::pair{1.7, 0.9}, std::pair{0.5, 0.0}}) {
            const ancestral_sigmas du = ancestral_step(s, sn, eta);
            const double up = std::min(sn, eta * std::sqrt(sn * sn * (s * s - sn * sn) / (s * s)));
            DIFFUSE_CHECK_CLOSE(du.up, up, 0.0, 1e-15);
            DIFFUSE_CHECK_CLOSE(du.down, std::sqrt(sn * sn - up * up), 1e-300, 1e-15);
            CHECK(du.up * du.up + du.down * du.down <= sn * sn * (1 + 1e-15));
        }
    // η = 3 at 1.7 -> 0.9: the cap σ_up = σ' is hit, σ_down = 0.
    CHECK(ancestral_step(1.7, 0.9, 3.0).down == 0.0);
    // One step against its coefficient table with explicit z (s_noise scales the noise).
    const auto g = gaussian3();
    const exact_gaussian_denoiser model(g, pt::epsilon);
    euler_ancestral_sampler a(std::vector<double>{3.0, 1.2}, euler_ancestral_config{.eta = 0.8, .s_noise = 1.3});
    const Eigen::MatrixXd x0 = marginal_points(g, 1.0, 3.0, 8);
    const auto z = normals(1, 16, 5);
    auto x = to_tensor(x0);
    tensor<double, host_space> m(x.shape());
    model(m.view(), x.cview(), a.model_level(0));
    const Eigen::MatrixXd D = x0 - 3.0 * to_matrix(m);  // x0 estimate of an eps model in VE
    const ancestral_sigmas du = ancestral_step(3.0, 1.2, 0.8);
    const Eigen::MatrixXd expect = x0 + (du.down - 3.0) * (x0 - D) / 3.0 + 1.3 * du.up * to_matrix(z[0]);
    a.step_with_noise(m.cview(), pt::epsilon, 0, x.view(), z[0].cview());
    CHECK((to_matrix(x) - expect).cwiseAbs().maxCoeff() < 1e-14);
}

TEST_CASE("euler ancestral consumes normals as k-diffusion or as diffusers") {
    const exact_gaussian_denoiser model(gaussian3(), pt::epsilon);
    const auto sig = schedules::karras_sigmas(8, 0.002, 80.0, 7.0, schedules::final_sigma::zero);
    for (noise_draws nd : {noise_draws::k_diffusion, noise_draws::diffusers}) {
        euler_ancestral_sampler a(sig, euler_ancestral_config{.draws = nd});
        auto x = to_tensor(marginal_points(gaussian3(), 1.0, 80.0, 1));
        philox_rng rng(11);
        sample(model, a, x, rng);
        // 8 steps of 48 normals; k-diffusion skips the last (σ' = 0), diffusers draws it.
        CHECK(rng.normal_offset() == (nd == noise_draws::k_diffusion ? 7u : 8u) * 48u);
        CHECK(a.draws_noise(7) == (nd == noise_draws::diffusers));
        // step() with rng equals step_with_noise() with the normals of the same stream.
        euler_ancestral_sampler b(sig, euler_ancestral_config{.draws = nd});
        auto y = to_tensor(marginal_points(gaussian3(), 1.0, 80.0, 1));
        philox_rng r2(11);
        tensor<double, host_space> out(y.shape()), zz(y.shape());
        for (std::size_t i = 0; i < b.num_steps(); ++i) {
            model(out.view(), y.cview(), b.model_level(i));
            if (b.draws_noise(i)) {
                randn(zz, r2);
                b.step_with_noise(out.cview(), pt::epsilon, i, y.view(), zz.cview());
            } else {
                b.step(out.cview(), pt::epsilon, i, y.view(), r2);
            }
        }
        for (std::int64_t k = 0; k < x.numel(); ++k) CHECK(x[k] == y[k]);
    }
}

TEST_CASE("euler ancestral on VP levels and with VP model input equals the VE run") {
    const auto g = gaussian3();
    const exact_gaussian_denoiser model(g, pt::v_prediction);
    const auto sig = schedules::karras_sigmas(10, 0.01, 50.0, 7.0, schedules::final_sigma::zero);
    euler_ancestral_sampler ve(sig), vp(level_sequence::vp(sig)),
        vin(sig, euler_ancestral_config{.input = model_input::vp});
    const Eigen::MatrixXd xT = marginal_points(g, 1.0, 50.0, 6);
    const double a0 = 1.0 / std::sqrt(1.0 + 50.0 * 50.0);
    auto x = to_tensor(xT), y = to_tensor(a0 * xT), w = to_tensor(xT);
    philox_rng r1(4), r2(4), r3(4);
    sample(model, ve, x, r1);
    sample(model, vp, y, r2);
    sample(model, vin, w, r3);
    // O(1) outputs (final level σ = 0, a = 1); O(50) intermediate states: 1e-12.
    CHECK((to_matrix(x) - to_matrix(y)).cwiseAbs().maxCoeff() < 1e-12);
    CHECK((to_matrix(x) - to_matrix(w)).cwiseAbs().maxCoeff() < 1e-12);
}

TEST_CASE("euler ancestral output moments from the affine map approach the target marginal") {
    // closed_forms C9 / F1: with the exact (affine) Gaussian denoiser the output is affine in
    // (x_T, z_1..z_N); its exact mean and covariance come from impulse responses. Start from the
    // exact marginal at σ_max = e^{5.03}, end at σ_min = e^{−4.56} (Karras ρ = 7): the target is
    // the exact marginal there. The mean stays exact (each step maps E[y] = μ to μ); the
    // covariance error is the weak error of the scheme, O(1/N).
    // Each N also checks the mean: exact up to round-off of O(e^{5.03} ≈ 153) impulse responses, 1e-11.
    const std::vector<int> ns = {10, 20, 40, 80, 160};
    const std::vector<double> cov_err = affine_moment_ladder(
        [](int n) { return euler_ancestral_sampler(order_sigmas(n), euler_ancestral_config{.eta = 1.0}); }, gaussian3(),
        pt::epsilon, ns, "Euler a (η = 1)");
    const double slope = last4_order(ns, cov_err);
    MESSAGE("Euler a (η = 1) covariance error slope (N = 20..160): " << slope);
    // Weak order 1, pre-asymptotic here (C9 measured 0.92 on a similar Karras grid; 0.857 here
    // for N = 20..160): band [0.8, 1.2]. The tolerance shrinks with N: |Δcov| < 30/N (measured
    // N·|Δcov| = 13.8, 18.2, 21.5, 23.5, 24.6, rising to its O(1/N) constant).
    CHECK(slope > 0.8);
    CHECK(slope < 1.2);
    for (std::size_t k = 0; k < ns.size(); ++k) CHECK(cov_err[k] < 30.0 / ns[k]);
}

TEST_CASE("euler ancestral Monte-Carlo moments with the driver match the affine-map prediction") {
    // closed_forms F3: n = 100000 independent runs (rows) of the driver with a fixed seed; each
    // coordinate's mean z = (x̄ − m)/√(V/n) and variance z = (S²/V − 1)/√(2/(n − 1)) against the
    // sampler's exact output moments (affine map), not the data moments. 6 assertions share
    // α = 1e-6: |z| < 5.233 (two-sided per-assertion α/6 = 1.67e-7; the χ²_{n−1} of S² is
    // normal to within its skewness √(8/(n−1)) ≈ 0.009 at this n).
    const auto g = gaussian3();
    const exact_gaussian_denoiser model(g, pt::epsilon);
    const int N = 12;
    auto make = [&] { return euler_ancestral_sampler(order_sigmas(N), euler_ancestral_config{.eta = 1.0}); };
    const gaussian_moments start = marginal_moments(g, 1.0, order_sigma_max);
    const gaussian_moments pred = affine_moments(make, model, start.mean, start.cov);
    const Eigen::Index n = 100000;
    philox_rng rng(2024);
    const Eigen::MatrixXd x0 = g.sample(n, rng);
    Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> z(n, 3);
    rng.fill_normal(z.data(), static_cast<std::size_t>(z.size()));
    auto x = to_tensor(x0 + order_sigma_max * Eigen::MatrixXd(z));
    auto s = make();
    philox_rng noise(77);
    sample(model, s, x, noise);
    const Eigen::MatrixXd X = to_matrix(x);
    const Eigen::VectorXd mean = X.colwise().mean().transpose();
    for (Eigen::Index c = 0; c < 3; ++c) {
        const double V = pred.cov(c, c);
        const double var = (X.col(c).array() - mean(c)).square().sum() / static_cast<double>(n - 1);
        const double zm = (mean(c) - pred.mean(c)) / std::sqrt(V / static_cast<double>(n));
        const double zv = (var / V - 1.0) / std::sqrt(2.0 / static_cast<double>(n - 1));
        MESSAGE("coordinate " << c << ": mean z = " << zm << ", variance z = " << zv);
        CHECK(std::abs(zm) < 5.233);
        CHECK(std::abs(zv) < 5.233);
    }
}

TEST_CASE_TEMPLATE("euler ancestral reproduces diffusers EulerAncestral test_full_loop_no_noise seeded", T, float,
                   double) {
    // peers.md c.1 #7: T = 1100, linspace, 10 steps, torch.manual_seed(0) CPU generator, one
    // randn(4, 3, 8, 8) float32 per step, every step (diffusers convention), the scaled x passed
    // to step(). Tolerances as diffusers: 1e-2 (sum), 1e-3 (mean).
    const auto sched = diffusers_float32_linear(1100, 1e-4, 0.02);  // diffusers' float32 ᾱ
    const level_sequence l = diffusers_sigma_levels(sched, 10, schedules::spacing::linspace, 0,
                                                    schedules::sigma_interpolation::linear, final_level::zero,
                                                    schedules::precision::float32);
    euler_ancestral_sampler s(l, euler_ancestral_config{.draws = noise_draws::diffusers, .input = model_input::vp,
                                                        .prediction = pt::epsilon});
    torch_cpu_generator gen(0);
    tensor<float, host_space> zf(shape{4, 3, 8, 8});
    tensor<T, host_space> z(shape{4, 3, 8, 8});
    const auto x = diffusers_test_loop<T>(
        s, diffusers_init_noise_sigma(l, schedules::spacing::linspace), pt::epsilon,
        [&](const tensor<T, host_space>& out, std::size_t i, tensor<T, host_space>& xs, philox_rng&) {
            gen.randn(zf);
            for (std::int64_t k = 0; k < z.numel(); ++k) z[k] = static_cast<T>(zf[k]);
            s.step_with_noise(out.cview(), pt::epsilon, i, xs.view(), z.cview());
        });
    const double sum = abs_sum(x);
    MESSAGE("diffusers EulerAncestral #7: sum " << std::to_string(sum) << ", mean " << std::to_string(sum / 768.0));
    DIFFUSE_CHECK_CLOSE(sum, 152.3192, 1e-2, 0.0);
    DIFFUSE_CHECK_CLOSE(sum / 768.0, 0.1983, 1e-3, 0.0);
}

TEST_CASE("euler ancestral rejects bad eta, s_noise, tensors and steps before set_levels") {
    const std::vector<double> sig = {2.0, 1.0, 0.0};
    DIFFUSE_CHECK_ERROR(euler_ancestral_sampler(sig, euler_ancestral_config{.eta = -0.5}), "eta", ">= 0");
    DIFFUSE_CHECK_ERROR(euler_ancestral_sampler(sig, euler_ancestral_config{.eta = NAN}), "eta");
    DIFFUSE_CHECK_ERROR(euler_ancestral_sampler(sig, euler_ancestral_config{.eta = INFINITY}), "eta");
    DIFFUSE_CHECK_ERROR(euler_ancestral_sampler(sig, euler_ancestral_config{.s_noise = -1.0}), "s_noise", ">= 0");
    DIFFUSE_CHECK_ERROR(euler_ancestral_sampler(level_sequence::vp({INFINITY, 1.0, 0.0})), "sigmas[0]", "finite");
    DIFFUSE_CHECK_ERROR(ancestral_step(1.0, 2.0, 1.0), "sigma_next");
    euler_ancestral_sampler empty;
    tensor<double, host_space> x(shape{2, 3}, 0.0), m(shape{2, 3}, 0.0), bad(shape{3, 2}, 0.0);
    philox_rng rng(0);
    DIFFUSE_CHECK_ERROR(empty.step(m.cview(), 0, x.view(), rng), "step index", "[0, 0)");
    euler_ancestral_sampler a(sig);
    DIFFUSE_CHECK_ERROR(a.step(m.cview(), 2, x.view(), rng), "step index", "[0, 2)");
    DIFFUSE_CHECK_ERROR(a.step_with_noise(m.cview(), pt::epsilon, 0, x.view(), bad.cview()), "z");
    DIFFUSE_CHECK_ERROR(a.step(bad.cview(), 0, x.view(), rng), "shape");
}
