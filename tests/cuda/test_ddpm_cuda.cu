// samplers/thresholding.hpp and samplers/ddpm.hpp on device tensors: the per-item thresholding
// (thrust quantile + one for_each per item), the DDPM step (lincomb, clamp, learned-variance
// functor) and split_model_output must give the host's results (serial oracle) up to the
// rounding of fused multiply-adds.
#include <diffuse/samplers/ddpm.hpp>
#include <diffuse/samplers/thresholding.hpp>

#include "backend/backend_cases.hpp"
#include "cuda/device_check.hpp"

#include <doctest/doctest.h>

using namespace diffuse;
using namespace diffuse::samplers;

TEST_CASE_TEMPLATE("device dynamic thresholding equals the host under both conventions", T, float, double) {
    const shape s{4, 3, 16, 16};
    auto hx = test::pattern<T>(s, 0.7);
    for (std::int64_t i = 0; i < hx.numel(); ++i) hx[i] = static_cast<T>(hx[i] * (1.0 + (i / 768) * 1.5));
    for (threshold_convention c : {threshold_convention::diffusers, threshold_convention::dpm_solver}) {
        thresholding cfg;
        cfg.enabled = true;
        cfg.convention = c;
        cfg.ratio = 0.9;
        cfg.max_value = 2.0;
        auto h = hx;
        auto d = hx.template to<device_space>();
        apply_thresholding(h.view(), cfg);
        apply_thresholding(d.view(), cfg);
        // The same quantile (double, same order statistics) and one clamp/divide in T.
        test::check_same_on_device(d, h, 2 * test::eps<T>);
    }
    auto h = hx;
    auto d = hx.template to<device_space>();
    clip_sample(h.view(), 0.5);
    clip_sample(d.view(), 0.5);
    test::check_same_on_device(d, h, 0.0);
}

TEST_CASE_TEMPLATE("device DDPM steps equal the host (fixed and learned variances, clipping)", T, float, double) {
    const shape s{2, 3, 8, 8};
    const auto sched = schedules::discrete_schedule::named("linear", 1000);
    const auto hx0 = test::pattern<T>(s, 0.2), hm = test::pattern<T>(s, 0.5), hz = test::pattern<T>(s, 0.9);
    const auto dm = hm.template to<device_space>(), dz = hz.template to<device_space>();
    for (variance_type vt : {variance_type::fixed_small, variance_type::learned_range}) {
        for (bool clip : {false, true}) {
            ddpm_sampler smp(sched, ddpm_config{.variance = vt, .clip_sample = clip});
            smp.set_timesteps(10);
            auto h = hx0;
            auto d = hx0.template to<device_space>();
            for (std::size_t i = 0; i < smp.num_steps(); ++i) {
                if (vt == variance_type::fixed_small) {
                    smp.step_with_noise(hm.cview(), process::prediction_type::epsilon, i, h.view(), hz.cview());
                    smp.step_with_noise(dm.cview(), process::prediction_type::epsilon, i, d.view(), dz.cview());
                } else {
                    smp.step_with_noise(hm.cview(), hz.cview(), process::prediction_type::epsilon, i, h.view(),
                                        hz.cview());
                    smp.step_with_noise(dm.cview(), dz.cview(), process::prediction_type::epsilon, i, d.view(),
                                        dz.cview());
                }
            }
            // 10 steps of one lincomb (+ clamp, + exp) each: FMA contraction differs per step.
            test::check_same_on_device(d, h, 64 * test::eps<T>);
        }
    }
    // split_model_output
    const shape s2{2, 6, 4, 4};
    const auto hout = test::pattern<T>(s2, 0.3);
    const auto dout = hout.template to<device_space>();
    tensor<T, host_space> hmm(s), hv(s);
    tensor<T, device_space> dmm(s), dv(s);
    split_model_output<T, host_space>(hout.cview(), hmm.view(), hv.view());
    split_model_output<T, device_space>(dout.cview(), dmm.view(), dv.view());
    test::check_same_on_device(dmm, hmm, 0.0);
    test::check_same_on_device(dv, hv, 0.0);
}
