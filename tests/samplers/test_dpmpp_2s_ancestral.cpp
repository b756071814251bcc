// samplers/dpmpp_2s_ancestral.hpp: DPM++ 2S ancestral against an independent transcription of
// k-diffusion's sample_dpmpp_2s_ancestral (VE and VP states, η < 1, = 1, > 1, final σ = 0), η = 0
// as deterministic DPM-Solver++(2S) of order 2 (closed_forms C2) equal to singlestep DPM-Solver++-2,
// η = 1 exact output moments (affine map, C9 / F1) converging to the target, a fixed-seed
// Monte-Carlo moment check (F3), noise bookkeeping and argument errors.
#include <diffuse/samplers/dpmpp_2s_ancestral.hpp>

#include <diffuse/analytic/gaussian.hpp>
#include <diffuse/core/eigen_adapter.hpp>
#include <diffuse/models/exact.hpp>
#include <diffuse/samplers/dpm_solver_singlestep.hpp>
#include <diffuse/schedules/sigmas.hpp>

#include "samplers/fixtures.hpp"
#include "samplers/order_fixtures.hpp"
#include "samplers/stochastic_moments.hpp"
#include "support/check.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <vector>

using namespace diffuse;
using namespace diffuse::samplers;
using diffuse::models::exact_gaussian_denoiser;
using pt = prediction_type;

static_assert(stepping_sampler<dpmpp_2s_ancestral_sampler, double, host_space>);
static_assert(stepping_sampler<dpmpp_2s_ancestral_sampler, float, host_space>);

namespace {

using namespace diffuse::test;

/// K + 1 levels uniform in λ = −log σ from −5.03 to 4.56 (the closed_forms C2 range).
std::vector<double> logsnr_sigmas(int K) {
    std::vector<double> sig;
    for (int k = 0; k <= K; ++k) sig.push_back(std::exp(-(-5.03 + (4.56 + 5.03) * k / K)));
    return sig;
}

/// k-diffusion's get_ancestral_step, as written there.
std::pair<double, double> kd_ancestral(double from, double to, double eta) {
    if (eta == 0.0) return {to, 0.0};
    const double up = std::min(to, eta * std::sqrt(to * to * (from * from - to * to) / (from * from)));
    return {std::sqrt(to * to - up * up), up};
}

/// k-diffusion sample_dpmpp_2s_ancestral on VE rows x, with noise[k] for step k.
Eigen::MatrixXd kd_dpmpp_2s_ancestral(const analytic::gaussian& g, Eigen::MatrixXd x, const std::vector<double>& sigmas,
                                      double eta, double s_noise, const std::vector<Eigen::MatrixXd>& noise) {
    for (std::size_t i = 0; i + 1 < sigmas.size(); ++i) {
        const Eigen::MatrixXd denoised = g.x0_mean(x, 1.0, sigmas[i]);
        const auto [down, up] = kd_ancestral(sigmas[i], sigmas[i + 1], eta);
        if (down == 0.0) {
            const Eigen::MatrixXd d = (x - denoised) / sigmas[i];
            x = x + d * (down - sigmas[i]);
        } else {
            const double t = -std::log(sigmas[i]), t_next = -std::log(down), r = 0.5, h = t_next - t, s = t + r * h;
            const Eigen::MatrixXd x2 = (std::exp(-s) / std::exp(-t)) * x - std::expm1(-h * r) * denoised;
            const Eigen::MatrixXd denoised2 = g.x0_mean(x2, 1.0, std::exp(-s));
            x = (std::exp(-t_next) / std::exp(-t)) * x - std::expm1(-h) * denoised2;
        }
        if (sigmas[i + 1] > 0) x = x + noise[i] * s_noise * up;
    }
    return x;
}

/// The stepping loop with explicit noise: z = noise[outer step] where uses_noise.
Eigen::MatrixXd run_with_noise(const exact_gaussian_denoiser& model, dpmpp_2s_ancestral_sampler& s, const Eigen::MatrixXd& xT,
                               const std::vector<Eigen::MatrixXd>& noise) {
    auto x = to_tensor(xT);
    tensor<double, host_space> out(x.shape());
    for (std::size_t i = 0; i < s.num_steps(); ++i) {
        model(out.view(), x.cview(), s.model_level(i));
        const auto z = to_tensor(noise[s.outer_step(i)]);
        s.step_with_noise(out.cview(), model.prediction(), i, x.view(), z.cview());
    }
    return to_matrix(x);
}

}  // namespace

TEST_CASE("dpmpp 2s ancestral equals k-diffusion's sample_dpmpp_2s_ancestral with the same noise") {
    // Karras σ (ρ = 7) 80 -> 0.002, then 0; VE state and VP state (x_vp = a·x_ve); η = 0.5, 1, 1.5
    // (η = 1.5 makes σ_down = 0 on some steps: one evaluation, x' = D + noise). Tolerance 1e-12
    // (O(1)–O(80) values, a few dozen operations: rounding ~1e-14 relative).
    const auto g = gaussian3();
    const exact_gaussian_denoiser model(g, pt::v_prediction);
    const std::vector<double> sig = schedules::karras_sigmas(9, 0.002, 80.0, 7.0, schedules::final_sigma::zero);
    philox_rng rng(11);
    std::vector<Eigen::MatrixXd> noise;
    for (std::size_t k = 0; k + 1 < sig.size(); ++k) noise.push_back(marginal_points(g, 0.0, 1.0, 100 + k));
    const Eigen::MatrixXd xve = marginal_points(g, 1.0, 80.0, 3);
    for (double eta : {0.5, 1.0, 1.5}) {
        const Eigen::MatrixXd ref = kd_dpmpp_2s_ancestral(g, xve, sig, eta, 0.7, noise);
        const dpmpp_2s_ancestral_config cfg{.eta = eta, .s_noise = 0.7};
        dpmpp_2s_ancestral_sampler ve(level_sequence::ve(sig), cfg), vp(level_sequence::vp(sig), cfg);
        std::size_t single = 0;
        for (std::size_t i = 0; i < ve.num_steps(); ++i) single += ve.stage(i) == 0 && (i + 1 == ve.num_steps() || ve.stage(i + 1) == 0);
        MESSAGE("η = " << eta << ": " << ve.num_steps() << " evaluations, " << single << " one-evaluation steps");
        const double e_ve = (run_with_noise(model, ve, xve, noise) - ref).cwiseAbs().maxCoeff();
        const double e_vp = (run_with_noise(model, vp, vp.state_level(0).a * xve, noise) - ref).cwiseAbs().maxCoeff();
        CHECK_MESSAGE(e_ve < 1e-12, "VE: |sampler − k-diffusion| = " << e_ve);
        CHECK_MESSAGE(e_vp < 1e-12, "VP: |sampler − k-diffusion| = " << e_vp);
    }
}

TEST_CASE("dpmpp 2s ancestral with eta 0 is deterministic DPM-Solver++(2S) of order 2") {
    // closed_forms C2 protocol on VE levels uniform in λ (−5.03 .. 4.56), LSQ slope over K = 40..320,
    // band [1.85, 2.20]. η = 0 consumes no normals and equals singlestep DPM-Solver++-2 midpoint with
    // r = 1/2 on the same outer levels (rounding only: 1e-12).
    const auto g = gaussian3();
    const exact_gaussian_denoiser model(g, pt::sample);
    const std::vector<double> top = logsnr_sigmas(1);
    const Eigen::MatrixXd xT = marginal_points(g, 1.0, top[0], 7);
    const Eigen::MatrixXd exact = g.pf_ode_flow(xT, 1.0, top[0], 1.0, top[1]);
    const std::vector<int> ks = {10, 20, 40, 80, 160, 320};
    std::vector<double> errs;
    for (int K : ks) {
        dpmpp_2s_ancestral_sampler s(level_sequence::ve(logsnr_sigmas(K)), dpmpp_2s_ancestral_config{.eta = 0.0});
        REQUIRE(s.num_steps() == static_cast<std::size_t>(2 * K));
        auto x = to_tensor(xT);
        philox_rng rng(0);
        sample(model, s, x, rng);
        CHECK(rng.normal_offset() == 0u);
        errs.push_back((to_matrix(x) - exact).cwiseAbs().maxCoeff());
    }
    const double slope = last4_order(ks, errs);
    MESSAGE("DPM++ 2S a (η = 0) errors K=10..320: " << errs[0] << " " << errs[1] << " " << errs[2] << " " << errs[3] << " "
                                                   << errs[4] << " " << errs[5] << "; LSQ slope " << slope);
    CHECK(slope > 1.85);
    CHECK(slope < 2.2);
    for (bool vp : {false, true}) {
        const level_sequence lv(logsnr_sigmas(12), vp ? state_space::vp : state_space::ve);
        dpmpp_2s_ancestral_sampler a(lv, dpmpp_2s_ancestral_config{.eta = 0.0});
        auto b = dpm_solver_singlestep_sampler::from_outer(
            lv, std::vector<int>(12, 2), dpm_solver_singlestep_config{.algorithm = dpm_algorithm::dpmsolver_pp});
        const Eigen::MatrixXd x0 = marginal_points(g, lv[0].a, lv[0].s, 4);
        auto x = to_tensor(x0), y = to_tensor(x0);
        philox_rng rng(0);
        sample(model, a, x, rng);
        sample(model, b, y, rng);
        CHECK((to_matrix(x) - to_matrix(y)).cwiseAbs().maxCoeff() < 1e-12);
    }
}

TEST_CASE("dpmpp 2s ancestral eta 1 exact output moments converge to the target distribution") {
    // Affine-map moments (closed_forms C9 / F1) of the real sampler from the exact marginal at
    // σ_max = 80 (VE, Karras ρ = 7, σ_min = 0.002, no final 0): target N(μ, Σ + σ_min² I).
    // The mean is exact for every K (the map is affine about μ): asserted 1e-12. The covariance
    // error decreases monotonically; its LSQ weak-order slope over K = 20..160 (measured 1.87, pairwise
    // 1.75 -> 1.89 -> 1.95: weak order 2) is asserted in [1.7, 2.1], and the error at K = 160
    // (measured 4.9e-3) below 1e-2.
    const auto g = gaussian3();
    const exact_gaussian_denoiser model(g, pt::sample);
    const double smin = 0.002, smax = 80.0;
    const std::vector<int> ks = {10, 20, 40, 80, 160};
    const gaussian_moments target{g.mean(), g.marginal_cov(1.0, smin)};
    MESSAGE("target diag " << target.cov(0, 0) << " " << target.cov(1, 1) << " " << target.cov(2, 2));
    const std::vector<double> errs = exact_moment_ladder(
        [&](int K) { return dpmpp_2s_ancestral_sampler(level_sequence::ve(schedules::karras_sigmas(K + 1, smin, smax))); }, model,
        g.mean(), g.marginal_cov(1.0, smax), target, ks, "2S a η = 1");
    for (std::size_t i = 1; i < errs.size(); ++i) CHECK(errs[i] < errs[i - 1]);
    const double slope = last4_order(ks, errs);
    MESSAGE("2S a η = 1 covariance-error LSQ slope (K = 20..160): " << slope);
    CHECK(slope > 1.7);
    CHECK(slope < 2.1);
    CHECK(errs.back() < 1e-2);
}

TEST_CASE("dpmpp 2s ancestral Monte-Carlo moments match the exact affine-map moments") {
    // n = 20000 samples (fixed seed) of the real driver with rng noise, K = 6 Karras steps 80 -> 0.002,
    // η = 1, s_noise = 1, compared with the exact output N(m, V) of the same K (F3: predicted
    // moments, not the data's). 9 assertions (3 means, 3 χ² variances, 3 correlations), Bonferroni
    // at total α = 1e-6 (z ≈ 5.3).
    const auto g = gaussian3();
    const exact_gaussian_denoiser model(g, pt::sample);
    const double smin = 0.002, smax = 80.0;
    dpmpp_2s_ancestral_sampler s(level_sequence::ve(schedules::karras_sigmas(7, smin, smax)));
    const gaussian_moments mo = exact_output_moments(s, model, g.mean(), g.marginal_cov(1.0, smax));
    const double worst = mc_sampler_check(model, s, g.mean(), g.marginal_cov(1.0, smax), 20000, 2024, mo, 1e-6);
    MESSAGE("2S a Monte Carlo (n = 20000): largest |z| = " << worst);
}

TEST_CASE("dpmpp 2s ancestral step draws its normals from rng and equals step_with_noise") {
    const auto g = gaussian3();
    const exact_gaussian_denoiser model(g, pt::sample);
    const std::vector<double> sig = schedules::karras_sigmas(5, 0.1, 10.0, 7.0, schedules::final_sigma::zero);
    dpmpp_2s_ancestral_sampler a(level_sequence::ve(sig)), b(level_sequence::ve(sig));
    std::size_t noisy = 0;
    for (std::size_t i = 0; i < a.num_steps(); ++i) noisy += a.uses_noise(i);
    CHECK(noisy == 4u);  // 5 outer steps, the last goes to σ = 0
    const Eigen::MatrixXd xT = marginal_points(g, 1.0, 10.0, 1);
    auto x = to_tensor(xT), y = to_tensor(xT);
    philox_rng r1(77), r2(77);
    sample(model, a, x, r1);
    CHECK(r1.normal_offset() == noisy * 48u);
    tensor<double, host_space> out(y.shape()), z(y.shape());
    for (std::size_t i = 0; i < b.num_steps(); ++i) {
        model(out.view(), y.cview(), b.model_level(i));
        if (b.uses_noise(i)) randn(z, r2);
        b.step_with_noise(out.cview(), model.prediction(), i, y.view(), z.cview());
    }
    bool same = true;
    for (std::int64_t i = 0; i < x.numel(); ++i) same = same && x[i] == y[i];
    CHECK(same);
}

TEST_CASE("dpmpp 2s ancestral rejects bad arguments with readable errors") {
    const level_sequence lv = level_sequence::ve({10.0, 1.0, 0.1});
    DIFFUSE_CHECK_ERROR(dpmpp_2s_ancestral_sampler(lv, dpmpp_2s_ancestral_config{.eta = -0.1}), "eta", ">= 0");
    DIFFUSE_CHECK_ERROR(dpmpp_2s_ancestral_sampler(lv, dpmpp_2s_ancestral_config{.eta = NAN}), "eta");
    DIFFUSE_CHECK_ERROR(dpmpp_2s_ancestral_sampler(lv, dpmpp_2s_ancestral_config{.s_noise = -1.0}), "s_noise", ">= 0");
    DIFFUSE_CHECK_ERROR(dpmpp_2s_ancestral_sampler(level_sequence::vp({INFINITY, 1.0})), "sigmas[0]", "finite");
    tensor<double, host_space> x(shape{2, 3}, 0.1), m(shape{2, 3}, 0.0), bad(shape{3, 2}, 0.0);
    philox_rng rng(0);
    dpmpp_2s_ancestral_sampler unset;
    DIFFUSE_CHECK_ERROR(unset.step(m.cview(), 0, x.view(), rng), "step index", "set_timesteps");
    dpmpp_2s_ancestral_sampler s(lv);
    DIFFUSE_CHECK_ERROR(s.step(m.cview(), 4, x.view(), rng), "step index", "[0, 4)");
    DIFFUSE_CHECK_ERROR(s.step(m.cview(), 1, x.view(), rng), "stage 1", "step 0");
    DIFFUSE_CHECK_ERROR(s.step(bad.cview(), 0, x.view(), rng), "shape");
    s.step_with_noise(m.cview(), pt::sample, 0, x.view(), bad.cview());  // stage 0 adds no noise: z is not read
    DIFFUSE_CHECK_ERROR(s.step_with_noise(m.cview(), pt::sample, 1, x.view(), bad.cview()), "z has shape", "standard-normal");
    DIFFUSE_CHECK_ERROR(s.set_begin_index(1), "first step of an outer step");
    DIFFUSE_CHECK_ERROR(s.first_step(2), "k", "[0, 2)");
}
