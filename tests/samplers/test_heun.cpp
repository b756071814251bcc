// samplers/heun.hpp: Heun (Karras Alg. 1) against the exact PF-ODE (order 2, closed_forms C2),
// against a transcription of k-diffusion's sample_heun loop, step counting (2 evaluations per
// method step, 1 for a final step to σ = 0), VE/VP levels and inputs, img2img start,
// diffusers' HeunDiscreteScheduler oracle (peers.md c.1), and errors. Churn: test_churn.cpp.
#include <diffuse/samplers/heun.hpp>

#include <diffuse/analytic/gaussian.hpp>
#include <diffuse/core/eigen_adapter.hpp>
#include <diffuse/models/exact.hpp>
#include <diffuse/samplers/euler.hpp>
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

static_assert(stepping_sampler<heun_sampler, double, host_space>);
static_assert(stepping_sampler<heun_sampler, float, host_space>);
static_assert(has_prepare_step<heun_sampler, double, host_space>);

namespace {

using namespace diffuse::test;
using namespace diffuse::test::euler_family;

/// k-diffusion sample_heun (s_churn = 0) transcribed on Eigen rows, D = E[x0 | x] in VE.
Eigen::MatrixXd kdiffusion_heun(const analytic::gaussian& g, Eigen::MatrixXd x, const std::vector<double>& sigmas) {
    auto D = [&](const Eigen::MatrixXd& y, double s) { return Eigen::MatrixXd(g.x0_mean(y, 1.0, s)); };
    for (std::size_t i = 0; i + 1 < sigmas.size(); ++i) {
        const Eigen::MatrixXd d = (x - D(x, sigmas[i])) / sigmas[i];
        const double dt = sigmas[i + 1] - sigmas[i];
        if (sigmas[i + 1] == 0) {
            x = x + d * dt;
        } else {
            const Eigen::MatrixXd x2 = x + d * dt;
            const Eigen::MatrixXd d2 = (x2 - D(x2, sigmas[i + 1])) / sigmas[i + 1];
            x = x + (d + d2) / 2 * dt;
        }
    }
    return x;
}

}  // namespace

TEST_CASE("heun converges with order 2 to the exact PF-ODE endpoint on Karras sigmas") {
    const std::vector<int> ns = {10, 20, 40, 80, 160, 320};
    const auto errs = ladder_errors([](std::vector<double> s) { return heun_sampler(std::move(s)); }, gaussian3(),
                                    pt::epsilon, ns, "Heun");
    const double slope = last4_order(ns, errs);
    MESSAGE("Heun fitted order (LSQ, N = 40..320 method steps): " << slope);
    // closed_forms C2 (EDM Heun on Karras, measured 2.019): band [1.85, 2.2].
    CHECK(slope > 1.85);
    CHECK(slope < 2.2);
    for (std::size_t k = 1; k < errs.size(); ++k) CHECK(errs[k] < errs[k - 1]);
}

TEST_CASE("heun equals the k-diffusion sample_heun loop including the final Euler step") {
    const auto g = gaussian3();
    const auto sig = schedules::karras_sigmas(9, 0.002, 80.0, 7.0, schedules::final_sigma::zero);
    const Eigen::MatrixXd xT = marginal_points(g, 1.0, 80.0, 3);
    const Eigen::MatrixXd ref = kdiffusion_heun(g, xT, sig);
    for (pt type : {pt::sample, pt::epsilon, pt::v_prediction, pt::score}) {
        heun_sampler h(sig);
        auto x = to_tensor(xT);
        philox_rng rng(0);
        sample(exact_gaussian_denoiser(g, type), h, x, rng);
        const double err = (to_matrix(x) - ref).cwiseAbs().maxCoeff();
        MESSAGE("|Heun − k-diffusion loop| = " << err);
        // O(80) intermediate states, a few roundings per step: 1e-12 absolute.
        CHECK(err < 1e-12);
        CHECK(rng.normal_offset() == 0u);
    }
}

TEST_CASE("heun counts model evaluations as steps") {
    heun_sampler to_zero(std::vector<double>{10.0, 5.0, 1.0, 0.0});
    heun_sampler to_min(std::vector<double>{10.0, 5.0, 1.0, 0.1});
    CHECK(to_zero.num_method_steps() == 3);
    CHECK(to_zero.num_steps() == 5);  // 2 + 2 + 1 (Euler to σ = 0)
    CHECK(to_min.num_steps() == 6);
    CHECK(to_zero.order() == 2);
    const std::vector<std::size_t> k = {0, 0, 1, 1, 2};
    const std::vector<double> t = {10.0, 5.0, 5.0, 1.0, 1.0};
    for (std::size_t i = 0; i < 5; ++i) {
        CHECK(to_zero.stage_of(i).k == k[i]);
        CHECK(to_zero.stage_of(i).stage == static_cast<int>(i % 2));
        CHECK(to_zero.timestep(i) == t[i]);  // diffusers' repeat_interleave'd σ
        CHECK(to_zero.model_level(i).s == t[i]);
    }
    // Timesteps of diffusers levels: the second stage is evaluated at t_{k+1}.
    const auto sched = schedules::discrete_schedule::named("linear", 1000);
    const level_sequence l = diffusers_sigma_levels(sched, 4);
    heun_sampler h(l, heun_config{.input = model_input::vp});
    REQUIRE(h.num_steps() == 7);
    CHECK(h.model_level(1).timestep.value() == l[1].timestep.value());
    CHECK(h.model_level(2).timestep.value() == l[1].timestep.value());
    DIFFUSE_CHECK_CLOSE(h.model_input_scale(1), 1.0 / std::sqrt(1.0 + l.sigma(1) * l.sigma(1)), 0.0, 1e-15);
}

TEST_CASE("heun on VP levels and with VP model input equals the VE run") {
    const auto g = gaussian3();
    const exact_gaussian_denoiser model(g, pt::epsilon);
    const auto sig = schedules::karras_sigmas(10, 0.01, 50.0, 7.0, schedules::final_sigma::zero);
    heun_sampler ve(sig), vp(level_sequence::vp(sig)), vin(sig, heun_config{.input = model_input::vp});
    const Eigen::MatrixXd xT = marginal_points(g, 1.0, 50.0, 6);
    const double a0 = 1.0 / std::sqrt(1.0 + 50.0 * 50.0);
    auto x = to_tensor(xT), y = to_tensor(a0 * xT), w = to_tensor(xT);
    philox_rng rng(0);
    sample(model, ve, x, rng);
    sample(model, vp, y, rng);
    sample(model, vin, w, rng);
    // O(50) intermediate states, O(1) output: 1e-12 absolute.
    CHECK((to_matrix(x) - to_matrix(y)).cwiseAbs().maxCoeff() < 1e-12);
    CHECK((to_matrix(x) - to_matrix(w)).cwiseAbs().maxCoeff() < 1e-12);
}

TEST_CASE("heun started at a later method step equals heun on the tail of the levels") {
    const auto g = gaussian3();
    const exact_gaussian_denoiser model(g, pt::v_prediction);
    const auto sig = schedules::karras_sigmas(8, 0.01, 50.0, 7.0, schedules::final_sigma::zero);
    heun_sampler full(sig);
    full.set_begin_index(6);  // method step 3
    heun_sampler tail(level_sequence::ve(sig).tail(3));
    const Eigen::MatrixXd x3 = marginal_points(g, 1.0, sig[3], 9);
    auto x = to_tensor(x3), y = to_tensor(x3);
    philox_rng rng(0);
    sample(model, full, x, rng);
    sample(model, tail, y, rng);
    for (std::int64_t k = 0; k < x.numel(); ++k) CHECK(x[k] == y[k]);
    DIFFUSE_CHECK_ERROR(full.set_begin_index(3), "first-stage");
}

TEST_CASE_TEMPLATE("heun reproduces diffusers HeunDiscreteScheduler test_full_loop_no_noise with T 1100", T, float,
                   double) {
    // peers.md c.1 (published, not re-derived there): T = 1100, linear 1e-4..0.02, linspace,
    // 10 steps (19 evaluations), the scaled x passed to step(). Tolerances as diffusers.
    const auto sched = diffusers_float32_linear(1100, 1e-4, 0.02);  // diffusers' float32 ᾱ
    const level_sequence l = diffusers_sigma_levels(sched, 10, schedules::spacing::linspace, 0,
                                                    schedules::sigma_interpolation::linear, final_level::zero,
                                                    schedules::precision::float32);
    heun_sampler s(l, heun_config{.input = model_input::vp, .prediction = pt::epsilon});
    REQUIRE(s.num_steps() == 19);
    const auto x = diffusers_test_loop<T>(
        s, diffusers_init_noise_sigma(l, schedules::spacing::linspace), pt::epsilon,
        [&](const tensor<T, host_space>& out, std::size_t i, tensor<T, host_space>& xs, philox_rng& rng) {
            s.step(out.cview(), i, xs.view(), rng);
        });
    const double sum = abs_sum(x);
    MESSAGE("diffusers Heun: sum " << std::to_string(sum) << ", mean " << std::to_string(sum / 768.0));
    DIFFUSE_CHECK_CLOSE(sum, 0.1233, 1e-2, 0.0);
    DIFFUSE_CHECK_CLOSE(sum / 768.0, 0.0002, 1e-3, 0.0);
}

TEST_CASE("heun rejects steps out of order, steps before set_levels and bad levels") {
    heun_sampler empty;
    tensor<double, host_space> x(shape{2, 3}, 0.0), m(shape{2, 3}, 0.0);
    philox_rng rng(0);
    DIFFUSE_CHECK_ERROR(empty.step(m.cview(), 0, x.view(), rng), "step index", "[0, 0)");
    heun_sampler h(std::vector<double>{4.0, 2.0, 0.0});
    DIFFUSE_CHECK_ERROR(h.step(m.cview(), 1, x.view(), rng), "second stage", "step 0");
    DIFFUSE_CHECK_ERROR(h.step(m.cview(), 3, x.view(), rng), "step index", "[0, 3)");
    h.step(m.cview(), pt::sample, 0, x.view(), rng);
    tensor<double, host_space> x2(shape{5, 3}, 0.0), m2(shape{5, 3}, 0.0);
    DIFFUSE_CHECK_ERROR(h.step(m2.cview(), pt::sample, 1, x2.view(), rng), "second stage");  // another batch
    DIFFUSE_CHECK_ERROR(heun_sampler(level_sequence::vp({INFINITY, 1.0, 0.0})), "sigmas[0]", "finite");
    DIFFUSE_CHECK_ERROR(heun_sampler(std::vector<double>{1.0, 2.0}), "sigmas[1]", "decreasing");
}
