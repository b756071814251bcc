// samplers/dpmpp_sde.hpp: DPM++ SDE against an independent transcription of k-diffusion's
// sample_dpmpp_sde driven by one Brownian path W(σ) sampled at every level it queries (the
// BrownianTree's law), η = 0 as DPM-Solver++(2S) (order 2 for r = 1/2 and 1/3, equal to DPM++ 2S
// ancestral and singlestep DPM-Solver++-2), the Brownian-increment coefficients, η = 1 exact output
// moments (affine map, closed_forms C9 / F1) converging to the target, a fixed-seed Monte-Carlo
// check (F3), noise bookkeeping and argument errors.
#include <diffuse/samplers/dpmpp_sde.hpp>

#include <diffuse/analytic/gaussian.hpp>
#include <diffuse/core/eigen_adapter.hpp>
#include <diffuse/models/exact.hpp>
#include <diffuse/samplers/dpm_solver_singlestep.hpp>
#include <diffuse/samplers/dpmpp_2s_ancestral.hpp>
#include <diffuse/schedules/sigmas.hpp>

#include "samplers/fixtures.hpp"
#include "samplers/order_fixtures.hpp"
#include "samplers/stochastic_moments.hpp"
#include "support/check.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <tuple>
#include <vector>

using namespace diffuse;
using namespace diffuse::samplers;
using diffuse::models::exact_gaussian_denoiser;
using pt = prediction_type;

static_assert(stepping_sampler<dpmpp_sde_sampler, double, host_space>);
static_assert(stepping_sampler<dpmpp_sde_sampler, float, host_space>);

namespace {

using namespace diffuse::test;

std::vector<double> logsnr_sigmas(int K) {
    std::vector<double> sig;
    for (int k = 0; k <= K; ++k) sig.push_back(std::exp(-(-5.03 + (4.56 + 5.03) * k / K)));
    return sig;
}

std::pair<double, double> kd_ancestral(double from, double to, double eta) {
    if (eta == 0.0) return {to, 0.0};
    const double up = std::min(to, eta * std::sqrt(to * to * (from * from - to * to) / (from * from)));
    return {std::sqrt(to * to - up * up), up};
}

/// One Brownian path W(σ) [rows, d], W(σ_0) = 0, sampled on a decreasing list of σ's from the
/// independent normals `inc` (one per gap): W(σ_{j+1}) = W(σ_j) + √(σ_j − σ_{j+1})·inc[j].
/// k-diffusion's BrownianTreeNoiseSampler(σ_a, σ_b) = (W(σ_b) − W(σ_a))/√|σ_b − σ_a|.
struct brownian_path {
    std::map<double, Eigen::MatrixXd> w;
    brownian_path(const std::vector<double>& points, const std::vector<Eigen::MatrixXd>& inc) {
        w[points[0]] = Eigen::MatrixXd::Zero(inc[0].rows(), inc[0].cols());
        for (std::size_t j = 0; j + 1 < points.size(); ++j)
            w[points[j + 1]] = w[points[j]] + std::sqrt(points[j] - points[j + 1]) * inc[j];
    }
    /// W at σ (a path point, matched to 1e-12 relative: the reference recomputes σ from t = −log σ).
    const Eigen::MatrixXd& at(double sigma) const {
        for (const auto& [p, v] : w)
            if (std::abs(p - sigma) <= 1e-12 * sigma) return v;
        throw std::runtime_error("brownian_path: σ not on the path");
    }
    Eigen::MatrixXd operator()(double a, double b) const { return (at(b) - at(a)) / std::sqrt(std::abs(b - a)); }
};

/// k-diffusion sample_dpmpp_sde on VE rows x with a noise sampler.
Eigen::MatrixXd kd_dpmpp_sde(const analytic::gaussian& g, Eigen::MatrixXd x, const std::vector<double>& sigmas, double eta,
                             double s_noise, double r, const brownian_path& ns) {
    auto sigma_fn = [](double t) { return std::exp(-t); };
    auto t_fn = [](double s) { return -std::log(s); };
    for (std::size_t i = 0; i + 1 < sigmas.size(); ++i) {
        const Eigen::MatrixXd denoised = g.x0_mean(x, 1.0, sigmas[i]);
        if (sigmas[i + 1] == 0.0) {
            x = x + (x - denoised) / sigmas[i] * (sigmas[i + 1] - sigmas[i]);
            continue;
        }
        const double t = t_fn(sigmas[i]), t_next = t_fn(sigmas[i + 1]), h = t_next - t, s = t + h * r, fac = 1 / (2 * r);
        auto [sd, su] = kd_ancestral(sigma_fn(t), sigma_fn(s), eta);
        const double s_ = t_fn(sd);
        Eigen::MatrixXd x2 = (sigma_fn(s_) / sigma_fn(t)) * x - std::expm1(t - s_) * denoised;
        x2 = x2 + ns(sigma_fn(t), sigma_fn(s)) * s_noise * su;
        const Eigen::MatrixXd denoised2 = g.x0_mean(x2, 1.0, sigma_fn(s));
        std::tie(sd, su) = kd_ancestral(sigma_fn(t), sigma_fn(t_next), eta);
        const double t_next_ = t_fn(sd);
        const Eigen::MatrixXd denoised_d = (1 - fac) * denoised + fac * denoised2;
        x = (sigma_fn(t_next_) / sigma_fn(t)) * x - std::expm1(t - t_next_) * denoised_d;
        x = x + ns(sigma_fn(t), sigma_fn(t_next)) * s_noise * su;
    }
    return x;
}

}  // namespace

TEST_CASE("dpmpp sde equals k-diffusion's sample_dpmpp_sde on one Brownian path") {
    // The path is sampled at σ_0 > σ_s,0 > σ_1 > σ_s,1 > ... from independent increments; the sampler
    // gets the same increments as its n_1 (over [σ_s, σ]) and n_2 (over [σ', σ_s]). Karras σ 80 ->
    // 0.002 then 0, VE and VP states, η = 0.5 and 1, r = 1/2 and 1/3, s_noise = 0.7. Tolerance 1e-12.
    const auto g = gaussian3();
    const exact_gaussian_denoiser model(g, pt::epsilon);
    const std::vector<double> sig = schedules::karras_sigmas(8, 0.002, 80.0, 7.0, schedules::final_sigma::zero);
    const Eigen::MatrixXd xve = marginal_points(g, 1.0, 80.0, 3);
    for (double r : {0.5, 1.0 / 3.0})
        for (double eta : {0.5, 1.0}) {
            const dpmpp_sde_config cfg{.eta = eta, .s_noise = 0.7, .r = r};
            dpmpp_sde_sampler ve(level_sequence::ve(sig), cfg), vp(level_sequence::vp(sig), cfg);
            // Path points: every level the sampler visits, in order (σ_s from the sampler's plan).
            std::vector<double> pts;
            std::vector<Eigen::MatrixXd> inc;
            for (std::size_t i = 0; i < ve.num_steps(); ++i) {
                pts.push_back(ve.state_level(i).sigma());
                inc.push_back(marginal_points(g, 0.0, 1.0, 500 + i));
            }
            pts.push_back(sig[sig.size() - 2]);  // the last positive σ (the step to 0 draws nothing)
            const brownian_path path(pts, inc);
            const Eigen::MatrixXd ref = kd_dpmpp_sde(g, xve, sig, eta, 0.7, r, path);
            for (bool use_vp : {false, true}) {
                dpmpp_sde_sampler& s = use_vp ? vp : ve;
                auto x = to_tensor(use_vp ? Eigen::MatrixXd(s.state_level(0).a * xve) : xve);
                tensor<double, host_space> out(x.shape());
                for (std::size_t i = 0; i < s.num_steps(); ++i) {
                    model(out.view(), x.cview(), s.model_level(i));
                    const auto z = to_tensor(inc[i]);
                    s.step_with_noise(out.cview(), model.prediction(), i, x.view(), z.cview());
                }
                const double err = (to_matrix(x) - ref).cwiseAbs().maxCoeff();
                CHECK_MESSAGE(err < 1e-12, "r = " << r << ", η = " << eta << ", vp " << use_vp << ": |sampler − k-diffusion| = " << err);
            }
        }
}

TEST_CASE("dpmpp sde combines the two sub-interval increments into the full-interval Brownian noise") {
    // ξ_2 = c_1 n_1 + c_2 n_2 with c_1 = √((σ−σ_s)/(σ−σ')), c_1² + c_2² = 1 (unit variance, correlation
    // c_1 with ξ_1 = n_1), read off the coefficient table: p_n1 = A c_1, x_n2 = A c_2, A = a'·s_noise·σ_up.
    const std::vector<double> sig = {14.0, 3.0, 0.4, 0.05};
    for (bool vp : {false, true}) {
        const level_sequence lv(sig, vp ? state_space::vp : state_space::ve);
        dpmpp_sde_sampler s(lv, dpmpp_sde_config{.eta = 0.8, .s_noise = 1.3, .r = 0.4});
        for (std::size_t k = 0; k < 3; ++k) {
            const dpmpp_sde_coeffs c = s.coefficients(k);
            const double sm = s.state_level(s.first_step(k) + 1).sigma();
            const double c1 = std::sqrt((sig[k] - sm) / (sig[k] - sig[k + 1]));
            const double A = std::hypot(c.p_n1, c.x_n2);
            const double rho = sig[k + 1] / sig[k];
            DIFFUSE_CHECK_CLOSE(A, lv[k + 1].a * 1.3 * 0.8 * sig[k + 1] * std::sqrt(1 - rho * rho), 0.0, 1e-14);
            DIFFUSE_CHECK_CLOSE(c.p_n1 / A, c1, 0.0, 1e-14);
            DIFFUSE_CHECK_CLOSE(sm, std::exp(-(-std::log(sig[k]) + 0.4 * std::log(sig[k] / sig[k + 1]))), 0.0, 1e-14);
        }
    }
}

TEST_CASE("dpmpp sde with eta 0 is DPM-Solver++(2S): order 2 and equal to 2S ancestral and singlestep") {
    // r = 1/3 order ladder (closed_forms C2 protocol, VE levels uniform in λ, K = 40..320, band
    // [1.85, 2.20]); with r = 1/2 it equals DPM++ 2S ancestral (η = 0); with any r it equals singlestep
    // DPM-Solver++-2 midpoint with r1 = r (1e-12). No normals are drawn.
    const auto g = gaussian3();
    const exact_gaussian_denoiser model(g, pt::sample);
    const std::vector<double> top = logsnr_sigmas(1);
    const Eigen::MatrixXd xT = marginal_points(g, 1.0, top[0], 7);
    const Eigen::MatrixXd exact = g.pf_ode_flow(xT, 1.0, top[0], 1.0, top[1]);
    const std::vector<int> ks = {10, 20, 40, 80, 160, 320};
    std::vector<double> errs;
    for (int K : ks) {
        dpmpp_sde_sampler s(level_sequence::ve(logsnr_sigmas(K)), dpmpp_sde_config{.eta = 0.0, .r = 1.0 / 3.0});
        auto x = to_tensor(xT);
        philox_rng rng(0);
        sample(model, s, x, rng);
        CHECK(rng.normal_offset() == 0u);
        errs.push_back((to_matrix(x) - exact).cwiseAbs().maxCoeff());
    }
    const double slope = last4_order(ks, errs);
    MESSAGE("DPM++ SDE (η = 0, r = 1/3) errors K=10..320: " << errs[0] << " " << errs[1] << " " << errs[2] << " " << errs[3]
                                                          << " " << errs[4] << " " << errs[5] << "; LSQ slope " << slope);
    CHECK(slope > 1.85);
    CHECK(slope < 2.2);
    for (double r : {0.5, 1.0 / 3.0}) {
        const level_sequence lv = level_sequence::vp(logsnr_sigmas(9));
        dpmpp_sde_sampler a(lv, dpmpp_sde_config{.eta = 0.0, .r = r});
        auto b = dpm_solver_singlestep_sampler::from_outer(
            lv, std::vector<int>(9, 2), dpm_solver_singlestep_config{.algorithm = dpm_algorithm::dpmsolver_pp}, r);
        dpmpp_2s_ancestral_sampler c(lv, dpmpp_2s_ancestral_config{.eta = 0.0});
        const Eigen::MatrixXd x0 = marginal_points(g, lv[0].a, lv[0].s, 4);
        auto x = to_tensor(x0), y = to_tensor(x0), w = to_tensor(x0);
        philox_rng rng(0);
        sample(model, a, x, rng);
        sample(model, b, y, rng);
        sample(model, c, w, rng);
        CHECK((to_matrix(x) - to_matrix(y)).cwiseAbs().maxCoeff() < 1e-12);
        if (r == 0.5) CHECK((to_matrix(x) - to_matrix(w)).cwiseAbs().maxCoeff() < 1e-12);
    }
}

TEST_CASE("dpmpp sde eta 1 exact output moments converge to the target distribution") {
    // As for DPM++ 2S a (test_dpmpp_2s_ancestral.cpp): VE Karras 80 -> 0.002, exact marginal start,
    // target N(μ, Σ + σ_min² I). Mean exact (1e-12) for every K; covariance error monotone, LSQ slope
    // over K = 20..160 (measured 2.13; pairwise 2.05, 2.18, 2.17: weak order ~2) asserted in [1.8, 2.4],
    // error at K = 160 (measured 1.5e-3) below 1e-2.
    const auto g = gaussian3();
    const exact_gaussian_denoiser model(g, pt::sample);
    const double smin = 0.002, smax = 80.0;
    const std::vector<int> ks = {10, 20, 40, 80, 160};
    const gaussian_moments target{g.mean(), g.marginal_cov(1.0, smin)};
    const std::vector<double> errs = exact_moment_ladder(
        [&](int K) { return dpmpp_sde_sampler(level_sequence::ve(schedules::karras_sigmas(K + 1, smin, smax))); }, model,
        g.mean(), g.marginal_cov(1.0, smax), target, ks, "DPM++ SDE η = 1");
    for (std::size_t i = 1; i < errs.size(); ++i) CHECK(errs[i] < errs[i - 1]);
    const double slope = last4_order(ks, errs);
    MESSAGE("DPM++ SDE η = 1 covariance-error LSQ slope (K = 20..160): " << slope);
    CHECK(slope > 1.8);
    CHECK(slope < 2.4);
    CHECK(errs.back() < 1e-2);
}

TEST_CASE("dpmpp sde Monte-Carlo moments match the exact affine-map moments") {
    // n = 20000 (fixed seed), K = 6 Karras steps 80 -> 0.002, η = 1; 9 assertions at total α = 1e-6
    // against the exact output moments of the same K (F3).
    const auto g = gaussian3();
    const exact_gaussian_denoiser model(g, pt::sample);
    const double smin = 0.002, smax = 80.0;
    dpmpp_sde_sampler s(level_sequence::ve(schedules::karras_sigmas(7, smin, smax)));
    const gaussian_moments mo = exact_output_moments(s, model, g.mean(), g.marginal_cov(1.0, smax));
    const double worst = mc_sampler_check(model, s, g.mean(), g.marginal_cov(1.0, smax), 20000, 99, mo, 1e-6);
    MESSAGE("DPM++ SDE Monte Carlo (n = 20000): largest |z| = " << worst);
}

TEST_CASE("dpmpp sde step draws two normals per element per outer step and equals step_with_noise") {
    const auto g = gaussian3();
    const exact_gaussian_denoiser model(g, pt::sample);
    const std::vector<double> sig = schedules::karras_sigmas(5, 0.1, 10.0, 7.0, schedules::final_sigma::zero);
    dpmpp_sde_sampler a(level_sequence::ve(sig)), b(level_sequence::ve(sig));
    CHECK(a.num_steps() == 9u);  // 4 two-stage steps, then one evaluation to σ = 0
    std::size_t noisy = 0;
    for (std::size_t i = 0; i < a.num_steps(); ++i) noisy += a.uses_noise(i);
    CHECK(noisy == 8u);
    const Eigen::MatrixXd xT = marginal_points(g, 1.0, 10.0, 1);
    auto x = to_tensor(xT), y = to_tensor(xT);
    philox_rng r1(7), r2(7);
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

TEST_CASE("dpmpp sde rejects bad arguments with readable errors") {
    const level_sequence lv = level_sequence::ve({10.0, 1.0, 0.1});
    DIFFUSE_CHECK_ERROR(dpmpp_sde_sampler(lv, dpmpp_sde_config{.eta = -1.0}), "eta", ">= 0");
    DIFFUSE_CHECK_ERROR(dpmpp_sde_sampler(lv, dpmpp_sde_config{.s_noise = INFINITY}), "s_noise");
    DIFFUSE_CHECK_ERROR(dpmpp_sde_sampler(lv, dpmpp_sde_config{.r = 0.0}), "r", "(0, 1)");
    DIFFUSE_CHECK_ERROR(dpmpp_sde_sampler(lv, dpmpp_sde_config{.r = 1.0}), "r", "(0, 1)");
    tensor<double, host_space> x(shape{2, 3}, 0.1), m(shape{2, 3}, 0.0), bad(shape{3, 2}, 0.0);
    philox_rng rng(0);
    dpmpp_sde_sampler unset;
    DIFFUSE_CHECK_ERROR(unset.step(m.cview(), 0, x.view(), rng), "step index", "set_timesteps");
    dpmpp_sde_sampler s(lv);
    DIFFUSE_CHECK_ERROR(s.step(m.cview(), 1, x.view(), rng), "stage 1", "step 0");
    DIFFUSE_CHECK_ERROR(s.step_with_noise(m.cview(), pt::sample, 0, x.view(), bad.cview()), "z has shape");
    DIFFUSE_CHECK_ERROR(s.set_begin_index(3), "first step of an outer step");
    DIFFUSE_CHECK_ERROR(s.coefficients(2), "k", "σ' > 0");
}
