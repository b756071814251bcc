// samplers/dpm_solver_singlestep.hpp, dpmpp_2s_ancestral.hpp, dpmpp_sde.hpp, dpm_solver_adaptive.hpp
// on device tensors: the stage accumulators (lincomb), Philox noise (randn), the adaptive error
// functor and its reductions must give the host's (serial oracle) results up to the rounding of
// fused multiply-adds. The model is an exact denoiser of isotropic Gaussian data N(μ, λI) written
// with lincomb, so it runs in either memory space.
#include <diffuse/samplers/dpm_solver_adaptive.hpp>
#include <diffuse/samplers/dpm_solver_singlestep.hpp>
#include <diffuse/samplers/dpmpp_2s_ancestral.hpp>
#include <diffuse/samplers/dpmpp_sde.hpp>

#include "backend/backend_cases.hpp"
#include "cuda/device_check.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <vector>

using namespace diffuse;
using namespace diffuse::samplers;

namespace {

/// x0_hat = μ + k(x − aμ), k = aλ/(a²λ + s²): the exact denoiser of N(μ, λI), in either space.
template <class T>
struct iso_gaussian {
    double lam;
    tensor<T, host_space> mu_h;
    tensor<T, device_space> mu_d;
    iso_gaussian(double l, const tensor<T, host_space>& mu) : lam(l), mu_h(mu), mu_d(mu.template to<device_space>()) {}
    process::prediction_type prediction() const { return process::prediction_type::sample; }
    template <class S>
    void operator()(tensor_view<T, S> out, std::type_identity_t<tensor_view<const T, S>> x,
                    const models::noise_condition& l, models::no_condition = {}) const {
        const double k = l.a * lam / (l.a * l.a * lam + l.s * l.s);
        if constexpr (std::is_same_v<S, host_space>)
            lincomb(out, k, x, 1.0 - k * l.a, mu_h.cview());
        else
            lincomb(out, k, x, 1.0 - k * l.a, mu_d.cview());
    }
};

template <class Sm, class T>
void run_both(Sm sh, Sm sd, const iso_gaussian<T>& model, const tensor<T, host_space>& x0, double rtol) {
    auto h = x0;
    auto d = x0.template to<device_space>();
    philox_rng rh(5), rd(5);
    sample(model, sh, h, rh);
    sample(model, sd, d, rd);
    CHECK(rh.normal_offset() == rd.normal_offset());
    test::check_same_on_device(d, h, rtol);
}

}  // namespace

TEST_CASE_TEMPLATE("device singlestep DPM-Solver, DPM++ 2S a and DPM++ SDE equal the host", T, float, double) {
    const shape s{3, 2, 8, 8};
    const auto mu = test::pattern<T>(s, 0.4);
    const iso_gaussian<T> model(0.3, mu);
    const std::vector<double> sig = schedules::karras_sigmas(9, 0.02, 40.0, 7.0, schedules::final_sigma::zero);
    auto x0 = test::pattern<T>(s, 1.7);
    for (std::int64_t i = 0; i < x0.numel(); ++i) x0[i] = static_cast<T>(x0[i] * 40.0);
    // ~20 stages of 1–3 lincombs each: FMA contraction differs per operation; values up to 40.
    const double rtol = 256 * test::eps<T>;
    for (dpm_algorithm a : {dpm_algorithm::dpmsolver, dpm_algorithm::dpmsolver_pp}) {
        const dpm_solver_singlestep_config cfg{.order = 3, .algorithm = a, .solver = singlestep_solver::heun};
        const auto ss = dpm_solver_singlestep_sampler::from_outer(level_sequence::ve(sig), {3, 3, 2, 3, 3, 2, 2, 3, 1}, cfg);
        run_both(ss, ss, model, x0, rtol);
    }
    const dpmpp_2s_ancestral_sampler anc(level_sequence::ve(sig), dpmpp_2s_ancestral_config{.eta = 1.0});
    run_both(anc, anc, model, x0, rtol);
    const dpmpp_sde_sampler sde(level_sequence::vp(sig), dpmpp_sde_config{.eta = 1.0, .s_noise = 0.9});
    auto xvp = x0;
    lincomb(xvp.view(), 1.0 / std::sqrt(1.0 + 1600.0), x0.cview());
    run_both(sde, sde, model, xvp, rtol);
}

TEST_CASE("device adaptive DPM-Solver-23 equals the host (both error norms)") {
    const shape s{4, 2, 8, 8};
    const auto mu = test::pattern<double>(s, 0.4);
    const iso_gaussian<double> model(0.3, mu);
    auto x0 = test::pattern<double>(s, 1.1);
    for (std::int64_t i = 0; i < x0.numel(); ++i) x0[i] *= 40.0;
    for (adaptive_error_norm nrm : {adaptive_error_norm::max_sample_rms, adaptive_error_norm::global_rms}) {
        adaptive_config cfg = adaptive_config::k_diffusion(0.01, 40.0);
        cfg.norm = nrm;
        cfg.atol = cfg.rtol = 1e-4;
        auto h = x0;
        auto d = x0.to<device_space>();
        philox_rng rh(0), rd(0);
        const adaptive_result a = sample_adaptive(model, h, rh, cfg);
        const adaptive_result b = sample_adaptive(model, d, rd, cfg);
        MESSAGE("adaptive NFE host " << a.nfe << ", device " << b.nfe);
        CHECK(a.nfe == b.nfe);
        CHECK(a.accepted == b.accepted);
        test::check_same_on_device(d, h, 1e-11);
    }
}
