// samplers/sampler.hpp: the driver sample() is the stepping loop (bitwise), the callback sees
// every step in order, and both samplers satisfy the stepping_sampler concept.
#include <diffuse/samplers/sampler.hpp>
#include <diffuse/samplers/samplers.hpp>

#include <diffuse/analytic/gaussian.hpp>
#include <diffuse/models/exact.hpp>
#include <diffuse/schedules/discrete_schedule.hpp>

#include "samplers/fixtures.hpp"
#include "support/check.hpp"

#include <doctest/doctest.h>

#include <cstdint>
#include <vector>

using namespace diffuse;
using namespace diffuse::samplers;
using diffuse::models::exact_gaussian_denoiser;
using pt = prediction_type;

static_assert(stepping_sampler<ddim_sampler, double, host_space>);
static_assert(stepping_sampler<ddim_sampler, float, host_space>);
static_assert(stepping_sampler<euler_sampler, double, host_space>);

namespace {

using namespace diffuse::test;

template <class T>
tensor<T, host_space> start(std::int64_t b, double scale) {
    tensor<T, host_space> x(shape{b, 3});
    philox_rng rng(123);
    randn(x, rng);
    lincomb(x, scale, x);
    return x;
}

/// The hand-written loop a stepping-API user would write.
template <class M, class Sm, class T>
void manual_loop(const M& model, Sm& s, tensor<T, host_space>& x, philox_rng& rng) {
    tensor<T, host_space> out(x.shape()), in(x.shape());
    for (std::size_t i = 0; i < s.num_steps(); ++i) {
        s.scale_model_input(in.view(), x.cview(), i);
        model(out.view(), in.cview(), s.model_level(i));
        s.step(out.cview(), model.prediction(), i, x.view(), rng);
    }
}

template <class T>
bool bitwise_equal(const tensor<T, host_space>& a, const tensor<T, host_space>& b) {
    for (std::int64_t i = 0; i < a.numel(); ++i)
        if (a.cview()[i] != b.cview()[i]) return false;
    return true;
}

}  // namespace

TEST_CASE_TEMPLATE("driver equals the manual stepping loop bitwise for DDIM with eta 0 and 1", T, float, double) {
    const exact_gaussian_denoiser model(gaussian3(), pt::v_prediction);
    for (double eta : {0.0, 1.0}) {
        ddim_sampler s(schedules::discrete_schedule::named("scaled_linear", 1000, 0.00085, 0.012),
                       ddim_config{.eta = eta, .timestep_spacing = schedules::spacing::trailing});
        s.set_timesteps(25);
        auto x = start<T>(5, 1.0), y = x;
        philox_rng r1(7), r2(7);
        sample(model, s, x, r1);
        manual_loop(model, s, y, r2);
        CHECK(bitwise_equal(x, y));
        CHECK(r1.normal_offset() == r2.normal_offset());
    }
}

TEST_CASE_TEMPLATE("driver equals the manual stepping loop bitwise for Euler with VE and VP input", T, float, double) {
    const exact_gaussian_denoiser model(gaussian3(), pt::epsilon);
    for (model_input in : {model_input::ve, model_input::vp}) {
        euler_sampler s = euler_sampler::karras(15, 0.002, 80.0, 7.0, true, euler_config{.input = in});
        auto x = start<T>(4, s.init_noise_sigma()), y = x;
        philox_rng r1(1), r2(1);
        sample(model, s, x, r1);
        manual_loop(model, s, y, r2);
        CHECK(bitwise_equal(x, y));
    }
}

TEST_CASE("driver callback sees every step with index, timestep, level and the new x") {
    const exact_gaussian_denoiser model(gaussian3(), pt::epsilon);
    const auto sched = schedules::discrete_schedule::named("linear", 1000);
    ddim_sampler s(sched);
    s.set_timesteps(8);
    auto x = start<double>(2, 1.0);
    // Record the trajectory through the callback, and replay it step by step.
    std::vector<step_info> infos;
    std::vector<tensor<double, host_space>> trajectory;
    philox_rng rng(0);
    sample(model, s, x, rng, [&](const step_info& info, tensor_view<const double, host_space> xi) {
        infos.push_back(info);
        tensor<double, host_space> copy(xi.shape());
        lincomb(copy.view(), 1.0, xi);
        trajectory.push_back(std::move(copy));
    });
    REQUIRE(infos.size() == 8);
    auto y = start<double>(2, 1.0);
    tensor<double, host_space> out(y.shape());
    for (std::size_t i = 0; i < 8; ++i) {
        CHECK(infos[i].index == i);
        CHECK(infos[i].num_steps == 8);
        CHECK(infos[i].timestep == s.timesteps()[i]);
        CHECK(infos[i].level.timestep.value() == s.timesteps()[i]);
        DIFFUSE_CHECK_CLOSE(infos[i].level.a, sched.alpha(s.timesteps()[i]), 0.0, 0.0);
        model(out.view(), y.cview(), s.model_level(i));
        s.step(out.cview(), i, y.view(), rng);
        CHECK(bitwise_equal(y, trajectory[i]));
    }
    CHECK(bitwise_equal(x, trajectory.back()));
}

TEST_CASE("driver refuses a sampler without timesteps") {
    const exact_gaussian_denoiser model(gaussian3(), pt::epsilon);
    ddim_sampler s(schedules::discrete_schedule::named("linear", 1000));
    auto x = start<double>(1, 1.0);
    philox_rng rng(0);
    DIFFUSE_CHECK_ERROR(sample(model, s, x, rng), "num_steps", "set_timesteps");
}
