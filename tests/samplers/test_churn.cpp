// Churn (Karras et al. 2022 Alg. 2; k-diffusion s_churn, s_tmin, s_tmax, s_noise) in
// euler.hpp, heun.hpp and dpm2.hpp: γ and σ̂, the prepare_step update on VE and VP states,
// equality with transcriptions of k-diffusion's sample_euler / sample_heun / sample_dpm_2 under
// the same noise, the two RNG conventions, the driver, exact output moments through the affine
// map (closed_forms C9 / F1), a Monte-Carlo moment check (F3), and errors.
#include <diffuse/samplers/dpm2.hpp>
#include <diffuse/samplers/euler.hpp>
#include <diffuse/samplers/heun.hpp>

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
#include <limits>
#include <vector>

using namespace diffuse;
using namespace diffuse::samplers;
using diffuse::models::exact_gaussian_denoiser;
using pt = prediction_type;

static_assert(has_prepare_step<euler_sampler, double, host_space>);
static_assert(has_prepare_step<euler_sampler, float, host_space>);

namespace {

using namespace diffuse::test;
using namespace diffuse::test::euler_family;

enum class method { euler, heun, dpm2 };

/// k-diffusion sample_euler / sample_heun / sample_dpm_2 with churn, transcribed on Eigen rows;
/// eps[i] is the randn_like(x) of method step i (drawn every step in k-diffusion).
Eigen::MatrixXd kdiffusion_churn(method mth, const analytic::gaussian& g, Eigen::MatrixXd x,
                                 const std::vector<double>& sigmas, const churn_config& c,
                                 const std::vector<Eigen::MatrixXd>& eps) {
    auto D = [&](const Eigen::MatrixXd& y, double s) { return Eigen::MatrixXd(g.x0_mean(y, 1.0, s)); };
    const double n = static_cast<double>(sigmas.size() - 1);
    for (std::size_t i = 0; i + 1 < sigmas.size(); ++i) {
        const double gamma =
            (c.s_tmin <= sigmas[i] && sigmas[i] <= c.s_tmax) ? std::min(c.s_churn / n, std::sqrt(2.0) - 1.0) : 0.0;
        const Eigen::MatrixXd e = eps[i] * c.s_noise;
        const double sh = sigmas[i] * (gamma + 1);
        if (gamma > 0) x = x + e * std::sqrt(sh * sh - sigmas[i] * sigmas[i]);
        const Eigen::MatrixXd d = (x - D(x, sh)) / sh;
        const double dt = sigmas[i + 1] - sh;
        if (mth == method::euler || sigmas[i + 1] == 0) {
            x = x + d * dt;
        } else if (mth == method::heun) {
            const Eigen::MatrixXd x2 = x + d * dt;
            const Eigen::MatrixXd d2 = (x2 - D(x2, sigmas[i + 1])) / sigmas[i + 1];
            x = x + (d + d2) / 2 * dt;
        } else {
            const double mid = std::exp(std::log(sh) + 0.5 * (std::log(sigmas[i + 1]) - std::log(sh)));
            const Eigen::MatrixXd x2 = x + d * (mid - sh);
            const Eigen::MatrixXd d2 = (x2 - D(x2, mid)) / mid;
            x = x + d2 * dt;
        }
    }
    return x;
}

/// The stepping loop with injected churn noise z[k] for method step k (every method step offered).
template <class Sm>
Eigen::MatrixXd run_with(Sm& s, const exact_gaussian_denoiser& model, const Eigen::MatrixXd& xT,
                         const std::vector<tensor<double, host_space>>& z) {
    auto x = to_tensor(xT);
    tensor<double, host_space> out(x.shape()), in(x.shape());
    philox_rng rng(0);
    for (std::size_t i = 0; i < s.num_steps(); ++i) {
        std::size_t k = i;
        if constexpr (requires { s.stage_of(i); }) k = s.stage_of(i).k;
        s.prepare_step_with_noise(i, x.view(), z[k].cview());
        s.scale_model_input(in.view(), x.cview(), i);
        model(out.view(), in.cview(), s.model_level(i));
        s.step(out.cview(), model.prediction(), i, x.view(), rng);
    }
    return to_matrix(x);
}

template <class Sm, class Config>
Sm make_sampler(const level_sequence& l, const churn_config& c, model_input in = model_input::state) {
    Config cfg;
    cfg.churn = c;
    cfg.input = in;
    return Sm(l, cfg);
}

/// The churn of the moment tests: EDM's window σ in [0.05, 50] with s_noise 1, and s_churn = 4
/// so that γ = 4/N stays below its cap √2 − 1 for every N >= 10 (the churn per step shrinks with
/// the step size; with γ at its cap the per-step churn would not shrink and the scheme would
/// not converge as N grows).
const churn_config edm_churn{.s_churn = 4.0, .s_tmin = 0.05, .s_tmax = 50.0, .s_noise = 1.0};

}  // namespace

TEST_CASE("churn raises sigma by gamma inside the window and moves x by s_noise sqrt of the sigma gap") {
    const auto sig = schedules::karras_sigmas(10, 0.002, 80.0, 7.0, schedules::final_sigma::zero);
    const churn_config c{.s_churn = 2.5, .s_tmin = 0.1, .s_tmax = 20.0, .s_noise = 1.007};
    euler_sampler e(sig, euler_config{.churn = c});
    const double gamma = std::min(2.5 / 10.0, std::sqrt(2.0) - 1.0);
    for (std::size_t i = 0; i < 10; ++i) {
        const bool in = sig[i] >= 0.1 && sig[i] <= 20.0;
        CHECK(e.churn_gamma(i) == (in ? gamma : 0.0));
        DIFFUSE_CHECK_CLOSE(e.model_level(i).sigma(), sig[i] * (1.0 + e.churn_gamma(i)), 0.0, 1e-15);
        CHECK(e.state_level(i).s == sig[i]);
        CHECK(e.timestep(i) == sig[i]);
    }
    // γ is capped at √2 − 1.
    euler_sampler big(sig, euler_config{.churn = {.s_churn = 100.0}});
    CHECK(big.churn_gamma(0) == std::sqrt(2.0) - 1.0);
    // VE update x̂ = x + s_noise·√(σ̂² − σ²)·z; VP update x̂ = â·(x/a + s_noise·√(σ̂² − σ²)·z).
    const std::size_t i = 3;
    REQUIRE(e.churn_gamma(i) > 0.0);
    const double s = sig[i], sh = s * (1.0 + gamma);
    tensor<double, host_space> x = batch<double>(4), z = batch<double>(4);
    for (std::int64_t k = 0; k < z.numel(); ++k) z[k] = std::cos(0.37 * static_cast<double>(k));
    const Eigen::MatrixXd x0 = to_matrix(x), zm = to_matrix(z);
    e.prepare_step_with_noise(i, x.view(), z.cview());
    CHECK((to_matrix(x) - (x0 + 1.007 * std::sqrt(sh * sh - s * s) * zm)).cwiseAbs().maxCoeff() < 1e-14);
    euler_sampler v(level_sequence::vp(sig), euler_config{.churn = c});
    const double a = 1.0 / std::sqrt(1.0 + s * s), ah = 1.0 / std::sqrt(1.0 + sh * sh);
    CHECK(v.model_level(i).a == ah);
    DIFFUSE_CHECK_CLOSE(v.model_level(i).s, sh * ah, 0.0, 1e-15);
    tensor<double, host_space> y = batch<double>(4);
    v.prepare_step_with_noise(i, y.view(), z.cview());
    CHECK((to_matrix(y) - ah * (x0 / a + 1.007 * std::sqrt(sh * sh - s * s) * zm)).cwiseAbs().maxCoeff() < 1e-14);
    // On diffusers levels the churned level carries the schedule's σ -> t timestep of σ̂.
    const auto sched = schedules::discrete_schedule::named("linear", 1000);
    euler_sampler d(diffusers_sigma_levels(sched, 10), euler_config{.churn = {.s_churn = 1.0}});
    const double shat = d.model_level(2).sigma();
    DIFFUSE_CHECK_CLOSE(d.model_level(2).timestep.value(), schedules::sigma_to_t(sched.sigmas_ve(), shat), 0.0, 1e-12);
}

TEST_CASE("euler heun and dpm2 with churn equal the k-diffusion loops under the same noise") {
    const auto g = gaussian3();
    const auto sig = schedules::karras_sigmas(9, 0.002, 80.0, 7.0, schedules::final_sigma::zero);
    const churn_config c{.s_churn = 3.0, .s_tmin = 0.05, .s_tmax = 10.0, .s_noise = 1.003};
    const Eigen::MatrixXd xT = marginal_points(g, 1.0, 80.0, 5);
    std::vector<tensor<double, host_space>> z;
    std::vector<Eigen::MatrixXd> zm;
    philox_rng rz(31);
    for (int k = 0; k < 9; ++k) {
        z.emplace_back(shape{16, 3});
        randn(z.back(), rz);
        zm.push_back(to_matrix(z.back()));
    }
    const level_sequence ve = level_sequence::ve(sig), vp = level_sequence::vp(sig);
    for (pt type : {pt::epsilon, pt::v_prediction}) {
        const exact_gaussian_denoiser model(g, type);
        for (method mth : {method::euler, method::heun, method::dpm2}) {
            const Eigen::MatrixXd ref = kdiffusion_churn(mth, g, xT, sig, c, zm);
            Eigen::MatrixXd got, got_vp;
            if (mth == method::euler) {
                auto s = make_sampler<euler_sampler, euler_config>(ve, c);
                got = run_with(s, model, xT, z);
                auto t = make_sampler<euler_sampler, euler_config>(vp, c, model_input::vp);
                got_vp = run_with(t, model, xT / std::sqrt(1.0 + 6400.0), z);
            } else if (mth == method::heun) {
                auto s = make_sampler<heun_sampler, heun_config>(ve, c);
                got = run_with(s, model, xT, z);
                auto t = make_sampler<heun_sampler, heun_config>(vp, c, model_input::vp);
                got_vp = run_with(t, model, xT / std::sqrt(1.0 + 6400.0), z);
            } else {
                auto s = make_sampler<dpm2_sampler, dpm2_config>(ve, c);
                got = run_with(s, model, xT, z);
                auto t = make_sampler<dpm2_sampler, dpm2_config>(vp, c, model_input::vp);
                got_vp = run_with(t, model, xT / std::sqrt(1.0 + 6400.0), z);
            }
            const double err = (got - ref).cwiseAbs().maxCoeff(), err_vp = (got_vp - ref).cwiseAbs().maxCoeff();
            MESSAGE("method " << static_cast<int>(mth) << ": |ours − k-diffusion| VE " << err << ", VP " << err_vp);
            // O(80) intermediate states, a few roundings per step (final level σ = 0, a = 1): 1e-12.
            CHECK(err < 1e-12);
            CHECK(err_vp < 1e-12);
        }
    }
}

TEST_CASE("churn draws normals as k-diffusion or as diffusers and the driver uses them") {
    const auto g = gaussian3();
    const exact_gaussian_denoiser model(g, pt::epsilon);
    const auto sig = schedules::karras_sigmas(8, 0.002, 80.0, 7.0, schedules::final_sigma::zero);
    // Churn window [0.1, 10]: of σ_0..σ_7 (80 .. 0.002), count those inside.
    std::size_t inside = 0;
    for (std::size_t k = 0; k < 8; ++k) inside += (sig[k] >= 0.1 && sig[k] <= 10.0) ? 1 : 0;
    REQUIRE(inside > 0);
    REQUIRE(inside < 8);
    for (noise_draws nd : {noise_draws::k_diffusion, noise_draws::diffusers}) {
        const churn_config c{.s_churn = 2.0, .s_tmin = 0.1, .s_tmax = 10.0, .draws = nd};
        const std::size_t expect = (nd == noise_draws::k_diffusion ? 8u : inside) * 48u;
        euler_sampler e(sig, euler_config{.churn = c});
        heun_sampler h(sig, heun_config{.churn = c});
        dpm2_sampler d(sig, dpm2_config{.churn = c});
        auto x = to_tensor(marginal_points(g, 1.0, 80.0, 1));
        philox_rng r1(5), r2(5), r3(5);
        auto y = x, w = x;
        sample(model, e, x, r1);
        sample(model, h, y, r2);
        sample(model, d, w, r3);
        CHECK(r1.normal_offset() == expect);
        CHECK(r2.normal_offset() == expect);
        CHECK(r3.normal_offset() == expect);
        // The driver equals the stepping loop with the same draws injected: method step k uses
        // the k-th block of 48 normals (k-diffusion) or the next block at each γ > 0 step.
        philox_rng rz(5);
        std::vector<tensor<double, host_space>> z(8, tensor<double, host_space>(shape{16, 3}, 0.0));
        for (std::size_t k = 0; k < 8; ++k)
            if (nd == noise_draws::k_diffusion || e.churn_gamma(k) > 0.0) randn(z[k], rz);
        euler_sampler e2(sig, euler_config{.churn = c});
        const Eigen::MatrixXd ref = run_with(e2, model, to_matrix(to_tensor(marginal_points(g, 1.0, 80.0, 1))), z);
        CHECK((to_matrix(x) - ref).cwiseAbs().maxCoeff() == 0.0);
    }
    // s_churn = 0: churn off, nothing drawn in either convention.
    euler_sampler off(sig, euler_config{.churn = {.s_churn = 0.0, .draws = noise_draws::k_diffusion}});
    auto x = to_tensor(marginal_points(g, 1.0, 80.0, 1));
    philox_rng r(5);
    sample(model, off, x, r);
    CHECK(r.normal_offset() == 0u);
}

TEST_CASE("churned euler heun and dpm2 output moments from the affine map approach the target marginal") {
    // closed_forms C9 / F1 (see test_euler_ancestral.cpp): exact output moments from impulse
    // responses, start at the exact marginal at σ_max = e^{5.03}, target the exact marginal at
    // σ_min = e^{−4.56} (Karras ρ = 7, N method steps, no final 0); churn on [0.05, 50] with
    // γ = 4/N, s_noise = 1 (so that the target is exact in the limit). The mean is preserved
    // exactly; the covariance error shrinks with N.
    // Each N also checks |Δmean| < 1e-11 (O(153) impulse responses).
    const std::vector<int> ns = {10, 20, 40, 80, 160};
    const auto ladder = [&](method mth) {
        const std::string name = "churn method " + std::to_string(static_cast<int>(mth));
        const auto levels = [](int n) { return level_sequence::ve(order_sigmas(n)); };
        if (mth == method::euler)
            return affine_moment_ladder(
                [&](int n) { return make_sampler<euler_sampler, euler_config>(levels(n), edm_churn); }, gaussian3(),
                pt::epsilon, ns, name);
        if (mth == method::heun)
            return affine_moment_ladder(
                [&](int n) { return make_sampler<heun_sampler, heun_config>(levels(n), edm_churn); }, gaussian3(),
                pt::epsilon, ns, name);
        return affine_moment_ladder([&](int n) { return make_sampler<dpm2_sampler, dpm2_config>(levels(n), edm_churn); },
                                    gaussian3(), pt::epsilon, ns, name);
    };
    for (method mth : {method::euler, method::heun, method::dpm2}) {
        const std::vector<double> cov_err = ladder(mth);
        const double slope = last4_order(ns, cov_err);
        MESSAGE("churn method " << static_cast<int>(mth) << " covariance error slope (N = 20..160): " << slope);
        // Measured slopes: Euler 0.914 (weak order 1, pre-asymptotic as Euler a's 0.857), Heun
        // 2.055, DPM-2 2.044; bands [0.8, 1.2] and [1.8, 2.3]. Tolerances shrinking with N:
        // Euler |Δcov| < 20/N (measured N·|Δcov| = 11.6 .. 16.7), Heun < 150/N² (N²·|Δcov| =
        // 134 .. 96.7), DPM-2 < 100/N² (80.4 .. 63.4).
        const bool first = mth == method::euler;
        CHECK(slope > (first ? 0.8 : 1.8));
        CHECK(slope < (first ? 1.2 : 2.3));
        const double C = mth == method::euler ? 20.0 : (mth == method::heun ? 150.0 : 100.0);
        for (std::size_t k = 0; k < ns.size(); ++k)
            CHECK(cov_err[k] < C / std::pow(static_cast<double>(ns[k]), first ? 1.0 : 2.0));
    }
}

TEST_CASE("churn rejects bad parameters and a churned step without prepare_step") {
    const std::vector<double> sig = {4.0, 2.0, 0.0};
    for (const churn_config& bad :
         {churn_config{.s_churn = -0.1}, churn_config{.s_churn = INFINITY}, churn_config{.s_tmin = -1.0},
          churn_config{.s_tmin = NAN}, churn_config{.s_tmin = 3.0, .s_tmax = 2.0}, churn_config{.s_tmax = NAN},
          churn_config{.s_noise = -1.0}, churn_config{.s_noise = INFINITY}}) {
        CHECK_THROWS_AS(euler_sampler(sig, euler_config{.churn = bad}), diffuse::error);
        CHECK_THROWS_AS(heun_sampler(sig, heun_config{.churn = bad}), diffuse::error);
        CHECK_THROWS_AS(dpm2_sampler(sig, dpm2_config{.churn = bad}), diffuse::error);
    }
    DIFFUSE_CHECK_ERROR(euler_sampler(sig, euler_config{.churn = {.s_churn = -0.1}}), "euler_sampler: s_churn", "-0.1");
    DIFFUSE_CHECK_ERROR(heun_sampler(sig, heun_config{.churn = {.s_tmin = -1.0}}), "heun_sampler: s_tmin", ">= 0");
    DIFFUSE_CHECK_ERROR(dpm2_sampler(sig, dpm2_config{.churn = {.s_tmin = 3.0, .s_tmax = 2.0}}), "dpm2_sampler: s_tmax");
    DIFFUSE_CHECK_ERROR(euler_sampler(sig, euler_config{.churn = {.s_noise = -1.0}}), "s_noise", ">= 0");
    const churn_config on{.s_churn = 1.0};
    tensor<double, host_space> x(shape{2, 3}, 0.0), m(shape{2, 3}, 0.0), bad(shape{3, 2}, 0.0);
    philox_rng rng(0);
    euler_sampler e(sig, euler_config{.churn = on});
    DIFFUSE_CHECK_ERROR(e.step(m.cview(), 0, x.view(), rng), "prepare_step(0");
    DIFFUSE_CHECK_ERROR(e.prepare_step_with_noise(0, x.view(), bad.cview()), "z");
    heun_sampler h(sig, heun_config{.churn = on});
    DIFFUSE_CHECK_ERROR(h.step(m.cview(), 0, x.view(), rng), "prepare_step(0");
    dpm2_sampler d(sig, dpm2_config{.churn = on});
    DIFFUSE_CHECK_ERROR(d.step(m.cview(), 0, x.view(), rng), "prepare_step(0");
    // With prepare_step first the step runs.
    e.prepare_step(0, x.view(), rng);
    e.step(m.cview(), 0, x.view(), rng);
    CHECK(std::isfinite(x[0]));
}
