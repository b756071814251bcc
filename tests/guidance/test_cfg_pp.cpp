// CFG++ (Chung et al. 2024; stable-diffusion.cpp's euler_cfg_pp / euler_a_cfg_pp) through
// samplers/guidance_tables.hpp: the plain Euler / Euler-ancestral samplers driven by CFG with the per-step
// weights w_i = λ/(1 − σ'_i/σ_i) take exactly the CFG++ steps, written out here by hand.

#include "guidance/guidance_fixtures.hpp"
#include "support/check.hpp"

#include <diffuse/backend/randn.hpp>
#include <diffuse/guidance/cfg.hpp>
#include <diffuse/guidance/classifier.hpp>
#include <diffuse/models/exact.hpp>
#include <diffuse/samplers/euler.hpp>
#include <diffuse/samplers/euler_ancestral.hpp>
#include <diffuse/samplers/guidance_tables.hpp>
#include <diffuse/samplers/sampler.hpp>
#include <diffuse/schedules/sigmas.hpp>

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <vector>

using namespace diffuse;
using diffuse::test::guidance_batch;
using diffuse::test::guidance_mixture;
using models::class_labels;
using models::exact_mixture_denoiser;
using models::noise_condition;
using pt = process::prediction_type;

namespace {

const std::vector<int> labels = {0, 2, 1, 2, 0, 1};

/// The CFG++ loop of stable-diffusion.cpp in VE form: D_λ = D_u + λ(D_c − D_u), y' = D_λ + σ_down·(y − D_u)/σ
/// + σ_up·z (σ_down = σ', σ_up = 0 for Euler).
tensor<double, host_space> cfg_pp_by_hand(const exact_mixture_denoiser& model, const std::vector<double>& sigmas,
                                          double lambda, double eta, tensor<double, host_space> y, philox_rng& rng) {
    for (std::size_t i = 0; i + 1 < sigmas.size(); ++i) {
        const double s = sigmas[i], sn = sigmas[i + 1];
        const noise_condition level = noise_condition::ve(s);
        tensor<double, host_space> dc(y.shape()), du(y.shape()), z(y.shape(), 0.0);
        model(dc.view(), y.cview(), level, class_labels(labels));
        model(du.view(), y.cview(), level, models::no_condition{});
        const samplers::ancestral_sigmas ud = samplers::ancestral_step(s, sn, eta);
        if (eta > 0 && sn > 0) randn(z.view(), rng);
        for (std::int64_t k = 0; k < y.numel(); ++k) {
            const double d_lambda = du[k] + lambda * (dc[k] - du[k]);
            y[k] = d_lambda + ud.down * (y[k] - du[k]) / s + ud.up * z[k];
        }
    }
    return y;
}

}  // namespace

TEST_CASE("CFG++: Euler with cfg_pp_weights takes the CFG++ steps") {
    const exact_mixture_denoiser model(guidance_mixture(), pt::sample);
    const std::vector<int> nulls = guidance::null_labels(6, model.null_class_label());
    const std::vector<double> sigmas = schedules::karras_sigmas(12, 0.02, 10.0);
    for (double lambda : {0.0, 0.4, 0.8, 1.0}) {
        samplers::euler_sampler sampler(sigmas);
        const auto guided = guidance::cfg(model, {.weight = samplers::cfg_pp_weights(sampler, lambda)});
        tensor<double, host_space> x = guidance_batch<double>(6, 10.0);
        const tensor<double, host_space> x0 = x;
        philox_rng rng(1), rng2(1);
        samplers::sample(guided, sampler, x, rng, {}, guidance::cfg_condition<class_labels>{labels, nulls});
        const tensor<double, host_space> ref = cfg_pp_by_hand(model, sigmas, lambda, 0.0, x0, rng2);
        CAPTURE(lambda);
        // 11 steps in double, |x| <= 15, weights <= λ/(1 − r) ~ 10: each step rounds O(10)-sized terms, so
        // the two orders of evaluation differ by ~1e-14; 1e-12 is 100× that.
        for (std::int64_t k = 0; k < x.numel(); ++k) DIFFUSE_CHECK_CLOSE(x[k], ref[k], 1e-12, 1e-12);
    }
}

TEST_CASE("CFG++: Euler ancestral with cfg_pp_weights takes the ancestral CFG++ steps (same noise)") {
    const exact_mixture_denoiser model(guidance_mixture(), pt::sample);
    const std::vector<int> nulls = guidance::null_labels(6, model.null_class_label());
    const std::vector<double> sigmas = schedules::karras_sigmas(12, 0.02, 10.0);
    for (double eta : {0.5, 1.0}) {
        samplers::euler_ancestral_sampler sampler(sigmas, {.eta = eta});
        const auto guided = guidance::cfg(model, {.weight = samplers::cfg_pp_weights(sampler, 0.6)});
        tensor<double, host_space> x = guidance_batch<double>(6, 10.0);
        const tensor<double, host_space> x0 = x;
        philox_rng rng(5), rng2(5);
        samplers::sample(guided, sampler, x, rng, {}, guidance::cfg_condition<class_labels>{labels, nulls});
        const tensor<double, host_space> ref = cfg_pp_by_hand(model, sigmas, 0.6, eta, x0, rng2);
        CAPTURE(eta);
        // as above (same noise draws; the noise term is added in the same order)
        for (std::int64_t k = 0; k < x.numel(); ++k) DIFFUSE_CHECK_CLOSE(x[k], ref[k], 1e-12, 1e-12);
    }
}

TEST_CASE("CFG++: errors") {
    samplers::euler_sampler sampler(schedules::karras_sigmas(5, 0.02, 10.0));
    DIFFUSE_CHECK_ERROR(samplers::cfg_pp_weights(sampler, 1.5), "lambda = 1.5", "[0, 1]");
    DIFFUSE_CHECK_ERROR(samplers::cfg_pp_weights(sampler, -0.1), "lambda = -0.1", "[0, 1]");
    // The samplers refuse non-decreasing σ themselves; the table's own guard, should one slip through:
    DIFFUSE_CHECK_ERROR(samplers::detail::require_cfg_pp_step(1.0, 1), "σ_next/σ at step 1 = 1", "[0, 1)");
}
