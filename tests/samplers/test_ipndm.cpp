// samplers/ipndm.hpp: iPNDM against transcriptions of k-diffusion's sample_ipndm (VE σ,
// denoise at σ = 0) and of diffusers' IPNDMScheduler (its own VP levels from σ = +inf, AB carried to
// σ = 0), the identity with PNDM restarted at a PLMS step, VE ≡ VP, measured orders on a logSNR
// grid and on a σ-uniform grid, restart and argument errors.
#include <diffuse/samplers/ipndm.hpp>

#include <diffuse/analytic/gaussian.hpp>
#include <diffuse/core/eigen_adapter.hpp>
#include <diffuse/models/exact.hpp>
#include <diffuse/samplers/pndm.hpp>
#include <diffuse/schedules/discrete_schedule.hpp>
#include <diffuse/schedules/sigmas.hpp>

#include "samplers/fixtures.hpp"
#include "samplers/order_fixtures.hpp"
#include "support/check.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <numbers>
#include <sstream>
#include <string>
#include <vector>

using namespace diffuse;
using namespace diffuse::samplers;
using diffuse::models::exact_gaussian_denoiser;
using pt = prediction_type;
using schedules::discrete_schedule;

namespace {

using namespace diffuse::test;

/// k-diffusion / ComfyUI sample_ipndm, transcribed: d = (x − D)/σ, AB with fixed weights of order
/// min(max_order, i + 1), x = D when σ_next = 0.
Eigen::MatrixXd kdiffusion_ipndm(const analytic::gaussian& g, const std::vector<double>& sigmas, Eigen::MatrixXd x,
                                 int max_order) {
    std::vector<Eigen::MatrixXd> buffer;
    for (std::size_t i = 0; i + 1 < sigmas.size(); ++i) {
        const double t_cur = sigmas[i], t_next = sigmas[i + 1];
        const Eigen::MatrixXd denoised = g.x0_mean(x, 1.0, t_cur);
        const Eigen::MatrixXd d = (x - denoised) / t_cur;
        const int order = std::min<int>(max_order, static_cast<int>(i) + 1);
        const std::size_t n = buffer.size();
        if (t_next == 0)
            x = denoised;
        else if (order == 1)
            x = x + (t_next - t_cur) * d;
        else if (order == 2)
            x = x + (t_next - t_cur) * (3 * d - buffer[n - 1]) / 2;
        else if (order == 3)
            x = x + (t_next - t_cur) * (23 * d - 16 * buffer[n - 1] + 5 * buffer[n - 2]) / 12;
        else
            x = x + (t_next - t_cur) * (55 * d - 59 * buffer[n - 1] + 37 * buffer[n - 2] - 9 * buffer[n - 3]) / 24;
        buffer.push_back(d);
        if (buffer.size() > static_cast<std::size_t>(max_order - 1) && !buffer.empty()) buffer.erase(buffer.begin());
    }
    return x;
}

/// diffusers IPNDMScheduler (set_timesteps, step, _get_prev_sample), transcribed, with its own
/// levels and a v-prediction model: ets = x·β + v·α, AB on ets, pred = (x − β·ets)/max(α, 1e-8),
/// x' = α'·pred + β'·ets.
Eigen::MatrixXd diffusers_ipndm(const analytic::gaussian& g, int n, Eigen::MatrixXd x) {
    std::vector<double> alphas, betas;
    for (int k = 0; k <= n; ++k) {
        const double u = k < n ? 1.0 - static_cast<double>(k) / n : 0.0;
        const double sn = std::sin(u * std::numbers::pi / 2);
        betas.push_back(sn * sn);
        alphas.push_back(std::sqrt(1.0 - betas.back() * betas.back()));
    }
    std::vector<Eigen::MatrixXd> ets;
    for (int i = 0; i < n; ++i) {
        const double a = alphas[static_cast<std::size_t>(i)], s = betas[static_cast<std::size_t>(i)];
        // v = a·eps − s·x0 of the exact model at (a, s) (at a = 0: v = −x0 = −E[x0]).
        const Eigen::MatrixXd x0 = g.x0_mean(x, a, s);
        const Eigen::MatrixXd eps = a > 0 ? Eigen::MatrixXd(g.eps_mean(x, a, s)) : x;
        const Eigen::MatrixXd v = a * eps - s * x0;
        ets.push_back(x * s + v * a);
        const std::size_t m = ets.size();
        Eigen::MatrixXd e;
        if (m == 1)
            e = ets[0];
        else if (m == 2)
            e = (3 * ets[1] - ets[0]) / 2;
        else if (m == 3)
            e = (23 * ets[2] - 16 * ets[1] + 5 * ets[0]) / 12;
        else
            e = (55 * ets[m - 1] - 59 * ets[m - 2] + 37 * ets[m - 3] - 9 * ets[m - 4]) / 24;
        const double an = alphas[static_cast<std::size_t>(i) + 1], sn = betas[static_cast<std::size_t>(i) + 1];
        const Eigen::MatrixXd pred = (x - s * e) / std::max(a, 1e-8);
        x = an * pred + e * sn;
    }
    return x;
}

struct ladder {
    std::vector<double> errs;
    double slope;
};

std::string describe(const std::vector<int>& ns, const ladder& l) {
    std::ostringstream os;
    os.precision(3);
    for (std::size_t i = 0; i < ns.size(); ++i) os << "N=" << ns[i] << ": " << l.errs[i] << "  ";
    os << "slope " << l.slope;
    return os.str();
}

/// Error at the last level against the exact flow, for levels(n) from a fixed start.
template <class Levels>
ladder ipndm_ladder(Levels levels, const std::vector<int>& ns, int max_order = 4) {
    const auto g = gaussian3();
    const exact_gaussian_denoiser model(g, pt::sample);
    ladder l;
    for (int n : ns) {
        const level_sequence L = levels(n);
        const noise_condition a = L[0], b = L[L.size() - 1];
        const Eigen::MatrixXd xT = marginal_points(g, a.a, a.s, 7);
        ipndm_sampler s(L, ipndm_config{.max_order = max_order});
        l.errs.push_back((run_sampler(model, s, xT) - g.pf_ode_flow(xT, a.a, a.s, b.a, b.s)).cwiseAbs().maxCoeff());
    }
    l.slope = last4_order(ns, l.errs);
    return l;
}

level_sequence sigma_uniform_levels(int n) {  // VE, σ from 1.5 to 0.3 (the ρ-grid of test_pndm.cpp)
    std::vector<double> sig;
    for (int k = 0; k <= n; ++k) sig.push_back(1.5 - (1.5 - 0.3) * k / n);
    return level_sequence::ve(sig);
}

}  // namespace

TEST_CASE("ipndm equals a transcription of k-diffusion sample_ipndm on Karras sigmas to zero") {
    // Same operations reordered: measured max 1.2e-14 on values of size <= 80; bound 1e-12.
    const auto g = gaussian3();
    const std::vector<double> sig = schedules::karras_sigmas(12, 0.002, 80.0, 7.0, schedules::final_sigma::zero);
    const Eigen::MatrixXd xT = marginal_points(g, 1.0, 80.0, 2);
    double worst = 0.0;
    for (int max_order : {1, 2, 3, 4})
        for (pt type : {pt::sample, pt::epsilon, pt::v_prediction}) {
            ipndm_sampler s(sig, ipndm_config{.max_order = max_order});
            const double err =
                (run_sampler(exact_gaussian_denoiser(g, type), s, xT) - kdiffusion_ipndm(g, sig, xT, max_order)).cwiseAbs().maxCoeff();
            worst = std::max(worst, err);
            CHECK_MESSAGE(err < 1e-12, "max_order " << max_order << " " << process::to_string(type) << ": " << err);
        }
    MESSAGE("max |ipndm_sampler − k-diffusion transcription|: " << worst);
}

TEST_CASE("ipndm on diffusers levels equals a transcription of diffusers IPNDMScheduler") {
    // A zero-mean Gaussian: at σ = +inf diffusers' max(α, 1e-8) hack gives x0_hat = 0, which is
    // E[x0] only for zero-mean data (ipndm.hpp uses the model's x0_hat there). Measured <= 3.6e-15;
    // bound 1e-12.
    const auto g0 = gaussian3();
    const analytic::gaussian g(Eigen::VectorXd::Zero(3), g0.cov());
    for (int n : {4, 10, 25}) {
        const level_sequence L = ipndm_sampler::diffusers_levels(n);
        CHECK(std::isinf(L.sigma(0)));
        CHECK(L.sigma(static_cast<std::size_t>(n)) == 0.0);
        CHECK(*L[0].timestep == 1.0);
        // diffusers' timesteps: atan2(β, α)·2/π.
        const double u1 = 1.0 - 1.0 / n, s1 = std::pow(std::sin(u1 * std::numbers::pi / 2), 2);
        DIFFUSE_CHECK_CLOSE(*L[1].timestep, std::atan2(s1, std::sqrt(1 - s1 * s1)) * 2 / std::numbers::pi, 1e-15, 1e-14);
        ipndm_sampler s(L, ipndm_config{.denoise_at_zero = false, .prediction = pt::v_prediction});
        const Eigen::MatrixXd xT = marginal_points(g, 0.0, 1.0, 6);
        auto x = to_tensor(xT);
        philox_rng rng(0);
        sample(exact_gaussian_denoiser(g, pt::v_prediction), s, x, rng);
        const double err = (to_matrix(x) - diffusers_ipndm(g, n, xT)).cwiseAbs().maxCoeff();
        MESSAGE("N = " << n << ": |ipndm_sampler − diffusers transcription| = " << err);
        CHECK(err < 1e-12);
    }
    // With a non-zero mean the first step keeps a'·E[x0] (diffusers drops it).
    ipndm_sampler s(ipndm_sampler::diffusers_levels(10));
    const Eigen::MatrixXd xT = marginal_points(g0, 0.0, 1.0, 6);
    const Eigen::MatrixXd ours = run_sampler(exact_gaussian_denoiser(g0, pt::v_prediction), s, xT);
    CHECK(ours.allFinite());
}

TEST_CASE("ipndm equals PNDM restarted at a PLMS step (AB1..AB4 on eps with the DDIM transfer)") {
    // The same steps with the transfer written two ways (Eq. 9 vs (a'/a)x + a'(σ' − σ)E): rounding
    // only, bound 1e-12 on O(1) values.
    const auto g = gaussian3();
    const discrete_schedule sched = discrete_schedule::named("linear", 1000);
    for (bool one : {true, false}) {
        pndm_sampler p(sched, pndm_config{.skip_prk_steps = true, .set_alpha_to_one = one});
        p.set_timesteps(25);
        const std::size_t k = 7;
        p.set_begin_index(k);
        std::vector<int> tail;  // the grid from the model timestep of step k on
        for (int t : p.grid())
            if (t <= p.timesteps()[k]) tail.push_back(t);
        // Without set_alpha_to_one PNDM's last step goes from t = 0 to ᾱ_0: the identity, which a
        // level sequence cannot hold; iPNDM ends at t = 0 one step earlier with the same result.
        if (!one) tail.pop_back();
        ipndm_sampler q(level_sequence::from_timesteps(sched, tail, one ? final_level::zero : final_level::sigma_min),
                        ipndm_config{.denoise_at_zero = false});
        REQUIRE(q.num_steps() == p.num_steps() - k - (one ? 0 : 1));
        const int t0 = p.timesteps()[k];
        const Eigen::MatrixXd xs = marginal_points(g, sched.alpha(t0), sched.sigma(t0), 1);
        auto x = to_tensor(xs), y = to_tensor(xs);
        philox_rng rng(0);
        sample(exact_gaussian_denoiser(g, pt::epsilon), p, x, rng);
        sample(exact_gaussian_denoiser(g, pt::epsilon), q, y, rng);
        const double err = (to_matrix(x) - to_matrix(y)).cwiseAbs().maxCoeff();
        CHECK_MESSAGE(err < 1e-12, "set_alpha_to_one " << one << ": |PNDM restarted − iPNDM| = " << err);
    }
}

TEST_CASE("ipndm on VE levels equals ipndm on the VP levels of the same sigmas") {
    const auto g = gaussian3();
    std::vector<double> sig = schedules::karras_sigmas(15, 0.01, 50.0, 7.0, schedules::final_sigma::zero);
    const level_sequence ve = level_sequence::ve(sig), vp = level_sequence::vp(sig);
    const Eigen::MatrixXd xve = marginal_points(g, 1.0, 50.0, 3);
    // The update is invariant under x -> a·x; the runs differ by conversion rounding: bound 1e-12.
    for (bool dz : {true, false}) {
        ipndm_sampler a(ve, ipndm_config{.denoise_at_zero = dz}), b(vp, ipndm_config{.denoise_at_zero = dz});
        const exact_gaussian_denoiser model(g, pt::epsilon);
        const double err = (run_sampler(model, b, vp[0].a * xve) - run_sampler(model, a, xve)).cwiseAbs().maxCoeff();  // a_N = 1
        CHECK_MESSAGE(err < 1e-12, "denoise_at_zero " << dz << ": " << err);
    }
}

TEST_CASE("ipndm measured orders: second order on a logSNR grid and from its AB1 start on a sigma-uniform grid") {
    // Constant AB weights on a logSNR grid: the step-ratio mismatch is O(h) per step, which leaves
    // second order (as PLMS, closed_forms C4.5). On a σ-uniform grid AB4 is exact in form, but the
    // first step is Euler (local O(h²)) and the second AB2 (local O(h³)): the global error is
    // O(h²) from the start. Measured slopes in the messages; bands ± 0.15 about 2.
    const std::vector<int> ns = {20, 40, 80, 160, 320, 640};
    const ladder a = ipndm_ladder([](int n) { return logsnr_levels(n); }, ns);
    MESSAGE("iPNDM logSNR grid: " << describe(ns, a));
    CHECK(std::abs(a.slope - 2.0) < 0.15);
    const ladder b = ipndm_ladder(sigma_uniform_levels, ns);
    MESSAGE("iPNDM sigma-uniform grid: " << describe(ns, b));
    CHECK(std::abs(b.slope - 2.0) < 0.15);
    const ladder c = ipndm_ladder(sigma_uniform_levels, ns, 1);
    MESSAGE("iPNDM max_order 1 (Euler) sigma-uniform grid: " << describe(ns, c));
    CHECK(std::abs(c.slope - 1.0) < 0.15);
}

TEST_CASE("ipndm restarts its history at begin_index") {
    const auto g = gaussian3();
    const level_sequence L = logsnr_levels(20);
    const exact_gaussian_denoiser model(g, pt::sample);
    ipndm_sampler s(L);
    s.set_begin_index(6);
    CHECK(s.step_order(6) == 1);
    CHECK(s.step_order(9) == 4);
    ipndm_sampler t(L.tail(6));
    const Eigen::MatrixXd x6 = marginal_points(g, L[6].a, L[6].s, 4);
    CHECK((run_sampler(model, s, x6) - run_sampler(model, t, x6)).cwiseAbs().maxCoeff() == 0.0);
    CHECK((run_sampler(model, s, x6) - run_sampler(model, t, x6)).cwiseAbs().maxCoeff() == 0.0);
    const ipndm_coeffs c = s.coefficients(9);
    DIFFUSE_CHECK_CLOSE(c.c_e[0], L[10].a * (L.sigma(10) - L.sigma(9)) * 55.0 / 24.0, 0.0, 1e-14);
}

TEST_CASE("ipndm rejects bad arguments with readable errors") {
    DIFFUSE_CHECK_ERROR(ipndm_sampler(std::vector<double>{2.0, 1.0}, ipndm_config{.max_order = 0}), "max_order", "[1, 4]");
    DIFFUSE_CHECK_ERROR(ipndm_sampler(std::vector<double>{2.0, 1.0}, ipndm_config{.max_order = 5}), "max_order", "[1, 4]");
    DIFFUSE_CHECK_ERROR(ipndm_sampler(std::vector<double>{INFINITY, 1.0}), "sigmas[0]");  // VE cannot start at +inf
    DIFFUSE_CHECK_ERROR(ipndm_sampler::diffusers_levels(0), "num_inference_steps");
    ipndm_sampler inf(ipndm_sampler::diffusers_levels(5));
    DIFFUSE_CHECK_ERROR(inf.coefficients(0), "level.a", "σ = +inf");
    tensor<double, host_space> x(shape{2, 3}, 0.0), m(shape{2, 3}, 0.0), bad(shape{3, 2}, 0.0);
    philox_rng rng(0);
    ipndm_sampler none;
    DIFFUSE_CHECK_ERROR(none.step(m.cview(), 0, x.view(), rng), "step index", "set_timesteps");  // before setup
    ipndm_sampler s(std::vector<double>{3.0, 2.0, 1.0, 0.0});
    DIFFUSE_CHECK_ERROR(s.step(m.cview(), 3, x.view(), rng), "step index", "[0, 3)");
    DIFFUSE_CHECK_ERROR(s.step(m.cview(), 1, x.view(), rng), "step index", "in order");
    DIFFUSE_CHECK_ERROR(s.step(bad.cview(), 0, x.view(), rng), "shape");
    DIFFUSE_CHECK_ERROR(s.step(x.cview(), 0, x.view(), rng), "aliases");
    s.step(m.cview(), 0, x.view(), rng);
    DIFFUSE_CHECK_ERROR(s.step(m.cview(), 2, x.view(), rng), "the next step 1");
    DIFFUSE_CHECK_ERROR(s.set_begin_index(3), "set_begin_index", "[0, 3)");
}
