// samplers/levels.hpp and the shared stepping-API pieces of sampler.hpp: level sequences in both
// conventions, the x0 / eps estimates, add_noise, set_begin_index, prepare_step and the driver's
// non-finite check.
#include <diffuse/samplers/levels.hpp>
#include <diffuse/samplers/sampler.hpp>

#include <diffuse/models/exact.hpp>
#include <diffuse/samplers/ddim.hpp>
#include <diffuse/samplers/euler.hpp>
#include <diffuse/schedules/discrete_schedule.hpp>
#include <diffuse/schedules/timesteps.hpp>

#include "samplers/fixtures.hpp"
#include "support/check.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

using namespace diffuse;
using namespace diffuse::samplers;
using diffuse::test::eps;
using pt = prediction_type;

TEST_CASE("level sequences hold VE and VP levels of the same sigmas") {
    const std::vector<double> sig{80.0, 3.0, 0.5, 0.0};
    const level_sequence ve = level_sequence::ve(sig), vp = level_sequence::vp(sig);
    REQUIRE(ve.size() == 4);
    for (std::size_t i = 0; i < sig.size(); ++i) {
        CHECK(ve[i].a == 1.0);
        CHECK(ve[i].s == sig[i]);
        // VP: a² + s² = 1 and s/a = σ, each to a few ulps (one sqrt, one division).
        DIFFUSE_CHECK_CLOSE(vp[i].a * vp[i].a + vp[i].s * vp[i].s, 1.0, 4 * eps<double>, 0.0);
        DIFFUSE_CHECK_CLOSE(vp[i].sigma(), sig[i], 0.0, 4 * eps<double>);
        CHECK_FALSE(ve[i].timestep.has_value());
    }
    CHECK(std::isinf(ve.lambda(3)));
    DIFFUSE_CHECK_CLOSE(vp.lambda(1), -std::log(3.0), 0.0, 4 * eps<double>);
    // VP may start at σ = +∞ (zero terminal SNR): level (0, 1), λ = −∞.
    const level_sequence inf = level_sequence::vp({std::numeric_limits<double>::infinity(), 1.0});
    CHECK(inf[0].a == 0.0);
    CHECK(inf[0].s == 1.0);
    CHECK(std::isinf(inf.lambda(0)));
}

TEST_CASE("level sequences from training timesteps carry the exact schedule levels and timesteps") {
    const auto sched = schedules::discrete_schedule::named("linear", 1000);
    const std::vector<int> ts = schedules::ddim_timesteps(1000, 10, schedules::spacing::leading, 1);
    const level_sequence zero = level_sequence::from_timesteps(sched, ts, final_level::zero);
    const level_sequence smin = level_sequence::from_timesteps(sched, ts, final_level::sigma_min);
    REQUIRE(zero.size() == 11);
    for (std::size_t k = 0; k < ts.size(); ++k) {
        CHECK(zero[k].a == sched.alpha(ts[k]));  // bitwise: taken from the schedule, no σ round trip
        CHECK(zero[k].s == sched.sigma(ts[k]));
        CHECK(*zero[k].timestep == ts[k]);
    }
    CHECK(zero[10].s == 0.0);
    CHECK(zero[10].a == 1.0);
    CHECK_FALSE(zero[10].timestep.has_value());
    DIFFUSE_CHECK_CLOSE(smin.sigma(10), sched.sigma_ve(0), 0.0, 0.0);
    CHECK(*smin[10].timestep == 0.0);
    // Intermediate levels take their timestep from the schedule's σ → t map: at a training σ it
    // returns that timestep (to the rounding of log interpolation, ~1e-12 relative).
    const noise_condition mid = zero.at_sigma(sched.sigma_ve(500));
    DIFFUSE_CHECK_CLOSE(*mid.timestep, 500.0, 1e-9, 0.0);
    // The tail drops the first k levels (img2img).
    const level_sequence tail = zero.tail(7);
    CHECK(tail.size() == 4);
    CHECK(*tail[0].timestep == ts[7]);
}

TEST_CASE("x0 and eps estimates agree with process conversions for every prediction type and input scale") {
    // A state at VE level σ = 2 seen by the model through c_in = 1/√5 (VP view).
    const noise_condition state{1.0, 2.0, {}};
    const noise_condition seen = seen_level(state, model_input::vp);
    const double c = model_input_scale_of(state, model_input::vp);
    DIFFUSE_CHECK_CLOSE(c, 1.0 / std::sqrt(5.0), 0.0, 2 * eps<double>);
    // For x = x0 + 2·eps with x0 = 0.7, eps = −0.4: each prediction of the seen input, then back.
    const double x0 = 0.7, e = -0.4, x = x0 + 2.0 * e;
    const double a = seen.a, s = seen.s;
    const double preds[] = {e, x0, a * e - s * x0, -e / s};  // eps, sample, v, score (of c·x)
    const pt types[] = {pt::epsilon, pt::sample, pt::v_prediction, pt::score};
    for (int k = 0; k < 4; ++k) {
        const affine_estimate d = x0_from_output(types[k], seen, c), g = eps_from_output(types[k], seen, c);
        // Each estimate is two products and a sum of O(1) terms: 8 ulps of the largest term.
        DIFFUSE_CHECK_CLOSE(d.x * x + d.m * preds[k], x0, 8 * eps<double>, 0.0);
        DIFFUSE_CHECK_CLOSE(g.x * x + g.m * preds[k], e, 8 * eps<double>, 0.0);
    }
}

TEST_CASE("level sequences reject invalid sigmas with readable errors") {
    DIFFUSE_CHECK_ERROR(level_sequence::ve({1.0}), "sigmas.size()", ">= 2");
    DIFFUSE_CHECK_ERROR(level_sequence::ve({1.0, 2.0}), "sigmas[1]", "strictly decreasing");
    DIFFUSE_CHECK_ERROR(level_sequence::ve({1.0, 0.0, 0.0}), "sigmas[1]", "only the last");
    DIFFUSE_CHECK_ERROR(level_sequence::ve({std::numeric_limits<double>::infinity(), 1.0}), "sigmas[0]", "finite");
    DIFFUSE_CHECK_ERROR(level_sequence::ve({std::nan(""), 1.0}), "sigmas[0]");
    DIFFUSE_CHECK_ERROR(level_sequence::vp({2.0, 1.0, std::numeric_limits<double>::infinity()}), "sigmas[2]");
    const auto sched = schedules::discrete_schedule::named("linear", 100);
    DIFFUSE_CHECK_ERROR(level_sequence::from_timesteps(sched, std::vector<int>{100}, final_level::zero),
                        "timesteps[0]", "[0, 99]");
    DIFFUSE_CHECK_ERROR(level_sequence::ve({3.0, 2.0, 1.0}).tail(2), "k");
    DIFFUSE_CHECK_ERROR(level_of_sigma(state_space::ve, -1.0), "sigma", ">= 0");
}

namespace {

/// A denoiser returning NaN at one level (σ below a threshold), to check the driver's error.
struct nan_below {
    double sigma_nan;
    pt prediction() const { return pt::epsilon; }
    template <class T, class S>
    void operator()(tensor_view<T, S> out, std::type_identity_t<tensor_view<const T, S>>, const noise_condition& l,
                    models::no_condition) const {
        const T v = l.sigma() < sigma_nan ? std::numeric_limits<T>::quiet_NaN() : T(0);
        for (std::int64_t i = 0; i < out.numel(); ++i) out.data()[i] = v;
    }
};

/// A sampler wrapper recording prepare_step calls (the driver must call it before each model call).
struct counting_euler : euler_sampler {
    using euler_sampler::euler_sampler;
    std::vector<std::size_t> prepared;
    template <class T, class S>
    void prepare_step(std::size_t i, tensor_view<T, S>, philox_rng&) {
        prepared.push_back(i);
    }
};

}  // namespace

TEST_CASE("driver reports a non-finite model output with the step and timestep") {
    euler_sampler s(std::vector<double>{4.0, 2.0, 1.0, 0.5, 0.0});
    tensor<double, host_space> x(shape{2, 3});
    philox_rng rng(1);
    DIFFUSE_CHECK_ERROR(sample(nan_below{1.5}, s, x, rng), "step 2 of 4", "timestep 1.0", "not finite");
}

TEST_CASE("driver calls prepare_step before every model call and starts at begin_index") {
    counting_euler s(std::vector<double>{4.0, 2.0, 1.0, 0.5, 0.0});
    static_assert(has_prepare_step<counting_euler, double, host_space>);
    static_assert(has_begin_index<counting_euler>);
    s.set_begin_index(1);
    tensor<double, host_space> x(shape{1, 3});
    philox_rng rng(1);
    std::vector<std::size_t> seen;
    sample(nan_below{0.0}, s, x, rng, [&](const step_info& info, auto) { seen.push_back(info.index); });
    CHECK(s.prepared == std::vector<std::size_t>{1, 2, 3});
    CHECK(seen == std::vector<std::size_t>{1, 2, 3});
    DIFFUSE_CHECK_ERROR(s.set_begin_index(4), "set_begin_index", "k", "[0, 4)");
    s.set_sigmas({2.0, 1.0});  // new levels reset the begin index
    CHECK(s.begin_index() == 0);
}

TEST_CASE("add_noise puts clean data at the level of the step it starts") {
    const auto sched = schedules::discrete_schedule::named("linear", 1000);
    ddim_sampler d(sched);
    d.set_timesteps(10);
    tensor<double, host_space> x0(shape{2, 3}), z(shape{2, 3}), out(shape{2, 3});
    philox_rng rng(5);
    randn(x0, rng);
    randn(z, rng);
    add_noise(d, out.view(), x0.cview(), z.cview(), 3);
    const int t = d.timesteps()[3];
    for (std::int64_t k = 0; k < out.numel(); ++k)
        CHECK(out.cview()[k] == sched.alpha(t) * x0.cview()[k] + sched.sigma(t) * z.cview()[k]);
    euler_sampler e(std::vector<double>{4.0, 2.0, 0.0});
    add_noise(e, out.view(), x0.cview(), z.cview(), 1);
    for (std::int64_t k = 0; k < out.numel(); ++k) CHECK(out.cview()[k] == x0.cview()[k] + 2.0 * z.cview()[k]);
    tensor<double, host_space> bad(shape{3, 2});
    DIFFUSE_CHECK_ERROR(add_noise(e, out.view(), bad.cview(), z.cview(), 0), "x0");
}

TEST_CASE("euler on VP levels from training timesteps equals DDIM eta 0 step by step") {
    // Euler on (a, s) levels x' = (s'/s)x + a'(1 − σ'/σ)·x0_hat is DDIM's update (closed_forms C1).
    const auto sched = schedules::discrete_schedule::named("linear", 1000);
    ddim_sampler d(sched);
    d.set_timesteps(10);
    euler_sampler e(level_sequence::from_timesteps(sched, d.timesteps(), final_level::zero));
    const auto g = diffuse::test::gaussian3();
    models::exact_gaussian_denoiser model(g, pt::v_prediction);
    tensor<double, host_space> x1(shape{4, 3});
    philox_rng rng(9);
    randn(x1, rng);
    tensor<double, host_space> x2 = x1;
    sample(model, d, x1, rng);
    sample(model, e, x2, rng);
    // Ten steps of O(1) coefficients: the two formulas differ by a few ulps per step.
    for (std::int64_t k = 0; k < x1.numel(); ++k) DIFFUSE_CHECK_CLOSE(x2.cview()[k], x1.cview()[k], 1e-13, 1e-13);
}
