// samplers/dpm_solver_singlestep.hpp: singlestep DPM-Solver-1/2/3 (noise and data forms, midpoint /
// heun / dpm_solver stage forms) against the exact PF-ODE (orders, closed_forms C2), DPM-Solver-1 ≡
// DDIM (C1), independent re-implementations of Lu et al. Alg. 1–2 and diffusers' third-order heun
// update, diffusers' order lists and begin-index rule, diffusers' full-loop oracles (peers.md c.1,
// test_scheduler_dpm_single.py) and argument errors.
#include <diffuse/samplers/dpm_solver_singlestep.hpp>

#include <diffuse/analytic/gaussian.hpp>
#include <diffuse/core/eigen_adapter.hpp>
#include <diffuse/models/exact.hpp>
#include <diffuse/samplers/ddim.hpp>
#include <diffuse/schedules/discrete_schedule.hpp>
#include <diffuse/schedules/sigmas.hpp>

#include "samplers/diffusers_dummy.hpp"
#include "samplers/fixtures.hpp"
#include "samplers/order_fixtures.hpp"
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

static_assert(stepping_sampler<dpm_solver_singlestep_sampler, double, host_space>);
static_assert(stepping_sampler<dpm_solver_singlestep_sampler, float, host_space>);
using schedules::discrete_schedule;
using alg = dpm_algorithm;
static_assert(to_singlestep_solver(dpm_solver_type::heun) == singlestep_solver::heun);
using sol = singlestep_solver;

namespace {

using namespace diffuse::test;

using diffusers::abs_mean;
using diffusers::dummy_model;
using diffusers::dummy_noise_deter;
using diffusers::dummy_sample_deter;

/// The manual stepping loop from step `begin` (diffusers' `for t in timesteps[begin:]`).
template <class T>
void loop(const dummy_model& m, dpm_solver_singlestep_sampler& s, tensor<T, host_space>& x) {
    tensor<T, host_space> out(x.shape());
    philox_rng rng(0);
    for (std::size_t i = s.begin_index(); i < s.num_steps(); ++i) {
        m(out.view(), x.cview(), s.model_level(i));
        s.step(out.cview(), i, x.view(), rng);
    }
}

}  // namespace

TEST_CASE_TEMPLATE("dpm singlestep reproduces diffusers test_scheduler_dpm_single full-loop oracles", T, float, double) {
    // peers.md c.1 / diffusers tests/schedulers/test_scheduler_dpm_single.py: T = 1000 linear
    // 1e-4..0.02, solver_order 2, dpmsolver++ midpoint, final_sigmas_type "sigma_min",
    // lower_order_final False, N = 10 (t = 999, 899, ..., 100). Tolerance as diffusers: 1e-3 on mean|x|
    // (sum: 1e-2); float and double states.
    const discrete_schedule sched = discrete_schedule::named("linear", 1000);
    struct oracle {
        pt type;
        double mean;
    };
    for (const oracle& o : {oracle{pt::epsilon, 0.2791}, oracle{pt::v_prediction, 0.1453}}) {
        auto s = dpm_solver_singlestep_sampler::from_schedule(sched, 10, dpm_solver_singlestep_config{.prediction = o.type},
                                                              final_level::sigma_min);
        REQUIRE(s.num_steps() == 10u);
        CHECK(s.timestep(0) == 999.0);
        CHECK(s.timestep(5) == 500.0);
        CHECK(s.timestep(9) == 100.0);
        auto x = dummy_sample_deter<T>();
        loop(dummy_model{o.type}, s, x);
        MESSAGE("diffusers singlestep oracle " << o.mean << ": mean|x| = " << abs_mean(x));
        DIFFUSE_CHECK_CLOSE(abs_mean(x), o.mean, 1e-3, 0.0);
    }
    SUBCASE("test_full_uneven_loop: N = 50 started at timesteps[3:] gives 0.2574") {
        auto s = dpm_solver_singlestep_sampler::from_schedule(sched, 50, {}, final_level::sigma_min);
        s.set_begin_index(3);
        CHECK(s.stage_order(3) == 1);  // order_list[3] = 2, but no history: diffusers lowers it to 1
        auto x = dummy_sample_deter<T>();
        loop(dummy_model{}, s, x);
        MESSAGE("uneven loop mean|x| = " << abs_mean(x));
        DIFFUSE_CHECK_CLOSE(abs_mean(x), 0.2574, 1e-3, 0.0);
    }
    SUBCASE("test_full_loop_with_noise: t_start 5, add_noise at t = 500, gives 269.2187 / 0.3505") {
        auto s = dpm_solver_singlestep_sampler::from_schedule(sched, 10, {}, final_level::sigma_min);
        s.set_begin_index(5);
        const auto x0 = dummy_sample_deter<T>();
        const auto noise = dummy_noise_deter<T>();
        tensor<T, host_space> x(x0.shape());
        add_noise(s, x.view(), x0.cview(), noise.cview(), 5);
        loop(dummy_model{}, s, x);
        MESSAGE("with-noise loop sum|x| = " << abs_mean(x) * 768.0 << ", mean " << abs_mean(x));
        DIFFUSE_CHECK_CLOSE(abs_mean(x) * 768.0, 269.2187, 1e-2, 0.0);
        DIFFUSE_CHECK_CLOSE(abs_mean(x), 0.3505, 1e-3, 0.0);
    }
}

TEST_CASE("dpm singlestep reproduces diffusers' Karras-sigma oracles") {
    // test_full_loop_with_karras (0.2248) and ..._and_v_prediction (0.0649): Karras σ (ρ = 7) from
    // the table's σ_max to σ_min, timesteps round(_sigma_to_t(σ)), final σ_min again (sigma_min).
    // diffusers' last two levels are then equal (h = 0 in the last step); level_sequence needs
    // strictly decreasing σ, so the final σ is σ_min·(1 − 1e-12): the update is continuous in
    // the levels and moves the result by O(1e-12), far below the 1e-3 tolerance.
    const discrete_schedule sched = discrete_schedule::named("linear", 1000);
    const std::vector<double> table = sched.sigmas_ve();
    std::vector<double> sig = schedules::karras_sigmas(10, table.front(), table.back(), 7.0, schedules::final_sigma::none);
    sig.push_back(table.front() * (1.0 - 1e-12));
    auto map = [table](double sigma) { return std::nearbyint(schedules::sigma_to_t(table, sigma)); };
    for (auto [type, expect] : {std::pair{pt::epsilon, 0.2248}, std::pair{pt::v_prediction, 0.0649}}) {
        dpm_solver_singlestep_sampler s(level_sequence::vp(sig, map), dpm_solver_singlestep_config{.prediction = type});
        auto x = dummy_sample_deter();
        loop(dummy_model{type}, s, x);
        MESSAGE("Karras oracle " << expect << ": mean|x| = " << abs_mean(x) << " (t0 = " << s.timestep(0) << ")");
        DIFFUSE_CHECK_CLOSE(abs_mean(x), expect, 1e-3, 0.0);
    }
}

TEST_CASE("dpm singlestep 2 and 3 converge with orders 2 and 3 to the exact PF-ODE endpoint on a logSNR grid") {
    // closed_forms C2 protocol: 16 exact-marginal points, K outer steps uniform in λ from −5.03 to
    // 4.56 (VP), ending at λ = 4.56 (not σ = 0, C4.3), error = max |x − pf_ode_flow|, LSQ slope over
    // K = 40..320 (N = 10 excluded, C2). Bands of C2: [1.85, 2.20] for order 2, [2.80, 3.30] for 3.
    const auto g = gaussian3();
    const exact_gaussian_denoiser model(g, pt::epsilon);
    const level_sequence top = logsnr_levels(1);
    const Eigen::MatrixXd xT = marginal_points(g, top[0].a, top[0].s, 7);
    const Eigen::MatrixXd exact = g.pf_ode_flow(xT, top[0].a, top[0].s, top[1].a, top[1].s);
    const std::vector<int> ks = {10, 20, 40, 80, 160, 320};
    for (int order : {1, 2, 3})
        for (alg a : {alg::dpmsolver, alg::dpmsolver_pp})
            for (sol v : {sol::midpoint, sol::heun, sol::dpm_solver}) {
                if (order == 1 && v != sol::midpoint) continue;  // order 1 has no stage form
                std::vector<double> errs;
                for (int K : ks) {
                    auto s = dpm_solver_singlestep_sampler::from_outer(
                        logsnr_levels(K), std::vector<int>(static_cast<std::size_t>(K), order),
                        dpm_solver_singlestep_config{.order = order, .algorithm = a, .solver = v});
                    REQUIRE(s.num_steps() == static_cast<std::size_t>(order * K));
                    errs.push_back((run_sampler(model, s, xT) - exact).cwiseAbs().maxCoeff());
                }
                const double slope = last4_order(ks, errs);
                const std::string name = std::string(a == alg::dpmsolver_pp ? "DPM-Solver++-" : "DPM-Solver-") +
                                         std::to_string(order) +
                                         (v == sol::midpoint ? " midpoint" : v == sol::heun ? " heun" : " dpm_solver");
                MESSAGE(name
                                     << ": errors K=10..320 " << errs[0] << " " << errs[1] << " " << errs[2] << " "
                                     << errs[3] << " " << errs[4] << " " << errs[5] << "; LSQ slope " << slope);
                const double lo = order == 1 ? 0.9 : order == 2 ? 1.85 : 2.8;
                const double hi = order == 1 ? 1.1 : order == 2 ? 2.2 : 3.3;
                CHECK(slope > lo);
                CHECK(slope < hi);
                for (std::size_t i = 1; i < errs.size(); ++i) CHECK(errs[i] < errs[i - 1]);
            }
}

TEST_CASE("dpm singlestep 1 equals DDIM eta 0 in both forms, to alpha_bar_0 and to alpha_bar 1") {
    // closed_forms C1: DPM-Solver-1 ≡ DPM-Solver++(1) ≡ DDIM (measured 1.8e-15 there); asserted 1e-12.
    const auto g = gaussian3();
    const discrete_schedule sched = discrete_schedule::named("linear", 1000);
    const std::vector<int> ts = schedules::ddim_timesteps(1000, 20, schedules::spacing::trailing);
    for (bool to_one : {true, false})
        for (pt type : {pt::epsilon, pt::v_prediction})
            for (alg a : {alg::dpmsolver, alg::dpmsolver_pp}) {
                const exact_gaussian_denoiser model(g, type);
                const Eigen::MatrixXd xT = marginal_points(g, sched.alpha(ts[0]), sched.sigma(ts[0]), 3);
                ddim_sampler d(sched, ddim_config{.set_alpha_to_one = to_one});
                d.set_timesteps(ts);
                dpm_solver_singlestep_sampler s(
                    level_sequence::from_timesteps(sched, ts, to_one ? final_level::zero : final_level::sigma_min),
                    dpm_solver_singlestep_config{.order = 1, .algorithm = a});
                const double err = (run_sampler(model, s, xT) - run_sampler(model, d, xT)).cwiseAbs().maxCoeff();
                CHECK_MESSAGE(err < 1e-12, "to_one " << to_one << " form " << static_cast<int>(a) << ": |DPM-1 − DDIM| = " << err);
            }
}

namespace {

/// Independent references (Eigen rows), written from the papers / peer code, one block s -> t.
struct ref_level {
    double a, s;
    double lam() const { return std::log(a / s); }
};
ref_level at_lambda(double lam, bool vp) {
    const double sig = std::exp(-lam);
    return vp ? ref_level{1.0 / std::sqrt(1.0 + sig * sig), sig / std::sqrt(1.0 + sig * sig)} : ref_level{1.0, sig};
}
Eigen::MatrixXd eps_of(const analytic::gaussian& g, const Eigen::MatrixXd& x, ref_level l) { return g.eps_mean(x, l.a, l.s); }
Eigen::MatrixXd x0_of(const analytic::gaussian& g, const Eigen::MatrixXd& x, ref_level l) { return g.x0_mean(x, l.a, l.s); }

/// Lu et al. 2022 Alg. 1 (DPM-Solver-2, r1 = 1/2) — noise form.
Eigen::MatrixXd lu_alg1(const analytic::gaussian& g, Eigen::MatrixXd x, ref_level s, ref_level t, bool vp) {
    const double h = t.lam() - s.lam(), r1 = 0.5;
    const ref_level s1 = at_lambda(s.lam() + r1 * h, vp);
    const Eigen::MatrixXd es = eps_of(g, x, s);
    const Eigen::MatrixXd u = (s1.a / s.a) * x - s1.s * std::expm1(r1 * h) * es;
    const Eigen::MatrixXd e1 = eps_of(g, u, s1);
    return (t.a / s.a) * x - t.s * std::expm1(h) * es - t.s / (2 * r1) * std::expm1(h) * (e1 - es);
}
/// Lu et al. 2022 Alg. 2 (DPM-Solver-3, r1 = 1/3, r2 = 2/3) — noise form.
Eigen::MatrixXd lu_alg2(const analytic::gaussian& g, Eigen::MatrixXd x, ref_level s, ref_level t, bool vp) {
    const double h = t.lam() - s.lam(), r1 = 1.0 / 3.0, r2 = 2.0 / 3.0;
    const ref_level s1 = at_lambda(s.lam() + r1 * h, vp), s2 = at_lambda(s.lam() + r2 * h, vp);
    const Eigen::MatrixXd es = eps_of(g, x, s);
    const Eigen::MatrixXd u1 = (s1.a / s.a) * x - s1.s * std::expm1(r1 * h) * es;
    const Eigen::MatrixXd d1 = eps_of(g, u1, s1) - es;
    const Eigen::MatrixXd u2 = (s2.a / s.a) * x - s2.s * std::expm1(r2 * h) * es -
                               s2.s * r2 / r1 * (std::expm1(r2 * h) / (r2 * h) - 1.0) * d1;
    const Eigen::MatrixXd d2 = eps_of(g, u2, s2) - es;
    return (t.a / s.a) * x - t.s * std::expm1(h) * es - t.s / r2 * (std::expm1(h) / h - 1.0) * d2;
}
/// DPM-Solver++(2S) (Lu et al. 2022b Alg. 1, r = 1/2) — data form.
Eigen::MatrixXd pp_2s(const analytic::gaussian& g, Eigen::MatrixXd x, ref_level s, ref_level t, bool vp) {
    const double h = t.lam() - s.lam(), r = 0.5;
    const ref_level s1 = at_lambda(s.lam() + r * h, vp);
    const Eigen::MatrixXd ds = x0_of(g, x, s);
    const Eigen::MatrixXd u = (s1.s / s.s) * x - s1.a * std::expm1(-r * h) * ds;
    const Eigen::MatrixXd d1 = x0_of(g, u, s1);
    return (t.s / s.s) * x - t.a * std::expm1(-h) * ((1 - 1 / (2 * r)) * ds + 1 / (2 * r) * d1);
}
/// diffusers' dpmsolver++ order 3 with solver_type "heun" (second stage heun, final D1/D2), r1 = 1/3, r2 = 2/3.
Eigen::MatrixXd diffusers_pp3_heun(const analytic::gaussian& g, Eigen::MatrixXd x, ref_level s, ref_level t, bool vp) {
    const double h = t.lam() - s.lam(), r1 = 1.0 / 3.0, r2 = 2.0 / 3.0;
    const ref_level s1 = at_lambda(s.lam() + r1 * h, vp), s2 = at_lambda(s.lam() + r2 * h, vp);
    const Eigen::MatrixXd m2 = x0_of(g, x, s);  // diffusers' names: m2 oldest, m0 newest
    const Eigen::MatrixXd u1 = (s1.s / s.s) * x - s1.a * (std::exp(-r1 * h) - 1.0) * m2;
    const Eigen::MatrixXd m1 = x0_of(g, u1, s1);
    const double hh = r2 * h, rr = r1 / r2;  // second-order update s -> s2 through s1
    const Eigen::MatrixXd u2 = (s2.s / s.s) * x - s2.a * (std::exp(-hh) - 1.0) * m2 +
                               s2.a * ((std::exp(-hh) - 1.0) / hh + 1.0) * ((m1 - m2) / rr);
    const Eigen::MatrixXd m0 = x0_of(g, u2, s2);
    const Eigen::MatrixXd D1_0 = (m1 - m2) / r1, D1_1 = (m0 - m2) / r2;
    const Eigen::MatrixXd D1 = (r2 * D1_0 - r1 * D1_1) / (r2 - r1), D2 = 2.0 * (D1_1 - D1_0) / (r2 - r1);
    return (t.s / s.s) * x - t.a * (std::exp(-h) - 1.0) * m2 + t.a * ((std::exp(-h) - 1.0) / h + 1.0) * D1 -
           t.a * ((std::exp(-h) - 1.0 + h) / (h * h) - 0.5) * D2;
}

}  // namespace

TEST_CASE("dpm singlestep stages equal independent implementations of Lu et al. Alg. 1-2 and diffusers' updates") {
    // 6 blocks, λ from −3 to 3 (h = 1: the φ-functions' direct branch) and from 2 to 2.3 (h = 0.05: their
    // series branch), on VP and VE levels, eps-model input. Tolerance 1e-12 (O(1) data, ~10 operations).
    const auto g = gaussian3();
    const exact_gaussian_denoiser model(g, pt::v_prediction);  // any type: the sampler converts
    struct variant {
        int order;
        alg a;
        sol v;
        Eigen::MatrixXd (*ref)(const analytic::gaussian&, Eigen::MatrixXd, ref_level, ref_level, bool);
    };
    for (bool vp : {true, false})
        for (auto [lam0, lam1] : {std::pair{-3.0, 3.0}, std::pair{2.0, 2.3}})
            for (const variant& c : {variant{2, alg::dpmsolver, sol::dpm_solver, lu_alg1},
                                     variant{2, alg::dpmsolver, sol::midpoint, lu_alg1},
                                     variant{3, alg::dpmsolver, sol::dpm_solver, lu_alg2},
                                     variant{2, alg::dpmsolver_pp, sol::midpoint, pp_2s},
                                     variant{3, alg::dpmsolver_pp, sol::heun, diffusers_pp3_heun}}) {
                const int K = 6;
                std::vector<double> sig;
                for (int k = 0; k <= K; ++k) sig.push_back(std::exp(-(lam0 + (lam1 - lam0) * k / K)));
                const level_sequence outer(sig, vp ? state_space::vp : state_space::ve);
                auto s = dpm_solver_singlestep_sampler::from_outer(
                    outer, std::vector<int>(K, c.order), dpm_solver_singlestep_config{.order = c.order, .algorithm = c.a, .solver = c.v});
                Eigen::MatrixXd ref = marginal_points(g, outer[0].a, outer[0].s, 5);
                const Eigen::MatrixXd got = run_sampler(model, s, ref);
                for (int k = 0; k < K; ++k)
                    ref = c.ref(g, ref, {outer[k].a, outer[k].s}, {outer[k + 1].a, outer[k + 1].s}, vp);
                const double err = (got - ref).cwiseAbs().maxCoeff();
                CHECK_MESSAGE(err < 1e-12, "order " << c.order << " form " << static_cast<int>(c.a) << " vp " << vp
                                                    << " λ " << lam0 << ".." << lam1 << ": |sampler − reference| = " << err);
            }
}

TEST_CASE("dpm singlestep on a diffusers grid equals the dpm-solver form with intermediate levels at r") {
    // A λ-uniform grid of 2K (3K) levels with diffusers' order list [1, 2]·K ([1, 2, 3]·K) has its
    // intermediate levels at r = 1/2 (1/3, 2/3): the same method as from_outer. Rounding only (1e-12).
    const auto g = gaussian3();
    const exact_gaussian_denoiser model(g, pt::epsilon);
    for (int order : {2, 3})
        for (alg a : {alg::dpmsolver, alg::dpmsolver_pp}) {
            const int K = 7;
            const dpm_solver_singlestep_config cfg{.order = order, .algorithm = a, .solver = sol::heun};
            auto outer = dpm_solver_singlestep_sampler::from_outer(logsnr_levels(K), std::vector<int>(K, order), cfg);
            dpm_solver_singlestep_sampler grid(logsnr_levels(order * K), cfg);
            REQUIRE(grid.order_list() == outer.order_list());
            const Eigen::MatrixXd xT = marginal_points(g, grid.state_level(0).a, grid.state_level(0).s, 2);
            CHECK((run_sampler(model, outer, xT) - run_sampler(model, grid, xT)).cwiseAbs().maxCoeff() < 1e-12);
        }
}

TEST_CASE("dpm singlestep trajectories do not depend on the model's prediction type") {
    const auto g = gaussian3();
    for (alg a : {alg::dpmsolver, alg::dpmsolver_pp}) {
        std::vector<Eigen::MatrixXd> out;
        for (pt type : {pt::epsilon, pt::sample, pt::v_prediction, pt::score}) {
            auto s = dpm_solver_singlestep_sampler::from_outer(
                logsnr_levels(5), {3, 3, 3, 2, 1}, dpm_solver_singlestep_config{.order = 3, .algorithm = a});
            out.push_back(run_sampler(exact_gaussian_denoiser(g, type), s, marginal_points(g, s.state_level(0).a, s.state_level(0).s, 9)));
        }
        for (std::size_t k = 1; k < out.size(); ++k) CHECK((out[k] - out[0]).cwiseAbs().maxCoeff() < 1e-12);
    }
}

TEST_CASE("dpm singlestep order lists follow diffusers' get_order_list and dpm-solver's fast orders") {
    using v = std::vector<int>;
    CHECK(diffusers_singlestep_orders(10, 2, false, false) == v{1, 2, 1, 2, 1, 2, 1, 2, 1, 2});
    CHECK(diffusers_singlestep_orders(9, 2, false, false) == v{1, 2, 1, 2, 1, 2, 1, 2, 1});  // N odd: lof forced
    CHECK(diffusers_singlestep_orders(10, 2, true, false) == v{1, 2, 1, 2, 1, 2, 1, 2, 1, 1});
    CHECK(diffusers_singlestep_orders(10, 2, false, true) == v{1, 2, 1, 2, 1, 2, 1, 2, 1, 1});  // zero: lof forced
    CHECK(diffusers_singlestep_orders(9, 3, false, false) == v{1, 2, 3, 1, 2, 3, 1, 2, 3});
    CHECK(diffusers_singlestep_orders(9, 3, true, false) == v{1, 2, 3, 1, 2, 3, 1, 2, 1});
    CHECK(diffusers_singlestep_orders(10, 3, false, false) == v{1, 2, 3, 1, 2, 3, 1, 2, 3, 1});
    CHECK(diffusers_singlestep_orders(11, 3, false, false) == v{1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2});
    CHECK(diffusers_singlestep_orders(11, 3, false, true) == v{1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 1});
    CHECK(diffusers_singlestep_orders(3, 1, true, true) == v{1, 1, 1});
    CHECK(dpm_solver_fast_orders(6, 3) == v{3, 2, 1});
    CHECK(dpm_solver_fast_orders(7, 3) == v{3, 3, 1});
    CHECK(dpm_solver_fast_orders(8, 3) == v{3, 3, 2});
    CHECK(dpm_solver_fast_orders(5, 2) == v{2, 2, 1});
    CHECK(dpm_solver_fast_orders(4, 2) == v{2, 2});
    CHECK(dpm_solver_fast_orders(3, 1) == v{1, 1, 1});
}

TEST_CASE("dpm singlestep set_begin_index lowers the order of a cut block as diffusers does") {
    dpm_solver_singlestep_sampler s(logsnr_levels(9), dpm_solver_singlestep_config{.order = 3});
    auto orders = [&] {
        std::vector<int> e, b;
        for (std::size_t i = s.begin_index(); i < s.num_steps(); ++i) {
            e.push_back(s.stage_order(i));
            b.push_back(s.block_order(i));
        }
        return std::pair{e, b};
    };
    using v = std::vector<int>;
    CHECK(orders() == std::pair{v{1, 2, 3, 1, 2, 3, 1, 2, 3}, v{3, 3, 3, 3, 3, 3, 3, 3, 3}});
    s.set_begin_index(1);
    CHECK(orders() == std::pair{v{1, 2, 1, 2, 3, 1, 2, 3}, v{2, 2, 3, 3, 3, 3, 3, 3}});
    s.set_begin_index(2);
    CHECK(orders() == std::pair{v{1, 1, 2, 3, 1, 2, 3}, v{1, 3, 3, 3, 3, 3, 3}});
    // The run from a cut block equals from_outer on the remaining blocks.
    const auto g = gaussian3();
    const exact_gaussian_denoiser model(g, pt::epsilon);
    const Eigen::MatrixXd x1 = marginal_points(g, s.state_level(2).a, s.state_level(2).s, 4);
    const level_sequence all = logsnr_levels(9);
    std::vector<double> rest(all.sigmas().begin() + 2, all.sigmas().end());
    rest.erase(rest.begin() + 2);  // outer levels 2, 3, 6, 9 (blocks of order 1, 3, 3)
    rest.erase(rest.begin() + 2);
    rest.erase(rest.begin() + 3);
    rest.erase(rest.begin() + 3);
    REQUIRE(rest.size() == 4u);
    auto ref = dpm_solver_singlestep_sampler::from_outer(level_sequence::vp(rest), {1, 3, 3}, dpm_solver_singlestep_config{.order = 3},
                                                         0.5, 1.0 / 3.0, 2.0 / 3.0);
    // from_outer places intermediates at exactly 1/3, 2/3 of λ: the grid's are the same up to rounding.
    CHECK((run_sampler(model, s, x1) - run_sampler(model, ref, x1)).cwiseAbs().maxCoeff() < 1e-12);
}

TEST_CASE("dpm singlestep ends at sigma 0 with a first-order step that returns the x0 estimate") {
    // final_sigmas_type "zero": last order forced to 1; DPM-Solver++(1) to σ = 0 gives x0_hat, and the
    // noise form's limit (σ_t·expm1(h) -> α_t σ_s/α_s) gives the same. Rounding only (1e-12).
    const auto g = gaussian3();
    const exact_gaussian_denoiser model(g, pt::epsilon);
    const discrete_schedule sched = discrete_schedule::named("linear", 1000);
    for (alg a : {alg::dpmsolver, alg::dpmsolver_pp}) {
        auto s = dpm_solver_singlestep_sampler::from_schedule(sched, 8, dpm_solver_singlestep_config{.algorithm = a});
        CHECK(s.order_list().back() == 1);
        CHECK(s.timestep(7) == 125.0);  // round(linspace(0, 999, 9)) = 0, 125, 250, ...: last timestep 125
        CHECK(!s.levels()[8].timestep);  // the final σ = 0 level has none
        auto x = to_tensor(marginal_points(g, s.state_level(0).a, s.state_level(0).s, 1));
        tensor<double, host_space> out(x.shape());
        philox_rng rng(0);
        for (std::size_t i = 0; i < s.num_steps(); ++i) {
            model(out.view(), x.cview(), s.model_level(i));
            if (i + 1 == s.num_steps()) {
                const Eigen::MatrixXd x0 = g.x0_mean(to_matrix(x), s.state_level(i).a, s.state_level(i).s);
                s.step(out.cview(), i, x.view(), rng);
                CHECK((to_matrix(x) - x0).cwiseAbs().maxCoeff() < 1e-12);
            } else {
                s.step(out.cview(), i, x.view(), rng);
            }
        }
    }
}

TEST_CASE("dpm singlestep with VP-level model input gives the same steps as state input on VE levels") {
    // model_input::vp shows the model x/√(1+σ²) at the VP level (diffusers' scale_model_input); the x0 /
    // eps estimates, hence the steps, are the same (rounding only: 1e-12).
    const auto g = gaussian3();
    const exact_gaussian_denoiser model(g, pt::epsilon);
    std::vector<double> sig = schedules::karras_sigmas(12, 0.01, 80.0);
    for (alg a : {alg::dpmsolver, alg::dpmsolver_pp}) {
        dpm_solver_singlestep_sampler st(level_sequence::ve(sig), dpm_solver_singlestep_config{.order = 3, .algorithm = a});
        dpm_solver_singlestep_sampler vp(level_sequence::ve(sig),
                                         dpm_solver_singlestep_config{.order = 3, .algorithm = a, .input = model_input::vp});
        DIFFUSE_CHECK_CLOSE(vp.model_input_scale(0), 1.0 / std::sqrt(1.0 + 6400.0), 0.0, 1e-15);
        CHECK(st.init_noise_sigma() == 80.0);
        const Eigen::MatrixXd xT = marginal_points(g, 1.0, 80.0, 6);
        CHECK((run_sampler(model, st, xT) - run_sampler(model, vp, xT)).cwiseAbs().maxCoeff() < 1e-12);
    }
}

TEST_CASE("dpm singlestep driver equals the stepping loop bitwise and draws no noise") {
    const auto g = gaussian3();
    const exact_gaussian_denoiser model(g, pt::epsilon);
    auto s = dpm_solver_singlestep_sampler::from_outer(logsnr_levels(4), {3, 2, 3, 1}, dpm_solver_singlestep_config{.order = 3});
    const Eigen::MatrixXd xT = marginal_points(g, s.state_level(0).a, s.state_level(0).s, 8);
    auto x = to_tensor(xT), y = to_tensor(xT);
    philox_rng r1(5), r2(5);
    std::vector<std::size_t> seen;
    sample(model, s, x, r1, [&](const step_info& info, tensor_view<const double, host_space>) { seen.push_back(info.index); });
    CHECK(seen.size() == 9u);
    CHECK(r1.normal_offset() == 0u);
    tensor<double, host_space> out(y.shape());
    for (std::size_t i = 0; i < s.num_steps(); ++i) {
        model(out.view(), y.cview(), s.model_level(i));
        s.step(out.cview(), i, y.view(), r2);
    }
    bool same = true;
    for (std::int64_t i = 0; i < x.numel(); ++i) same = same && x[i] == y[i];
    CHECK(same);
}

TEST_CASE("dpm singlestep rejects bad arguments with readable errors") {
    const level_sequence lv = logsnr_levels(4);
    DIFFUSE_CHECK_ERROR(dpm_solver_singlestep_sampler(lv, dpm_solver_singlestep_config{.order = 4}), "order", "1, 2 or 3");
    DIFFUSE_CHECK_ERROR(dpm_solver_singlestep_sampler(lv, dpm_solver_singlestep_config{.order = 0}), "order");
    DIFFUSE_CHECK_ERROR(dpm_solver_singlestep_sampler(lv, dpm_solver_singlestep_config{.algorithm = alg::sde_dpmsolver_pp}),
                        "algorithm", "sde-dpmsolver++", "not provided");
    DIFFUSE_CHECK_ERROR(dpm_solver_singlestep_sampler::from_outer(lv, {2, 2, 2}), "orders.size()", "one order per block");
    DIFFUSE_CHECK_ERROR(dpm_solver_singlestep_sampler::from_outer(lv, {2, 3, 2, 2}), "orders[1]", "config.order = 2");
    DIFFUSE_CHECK_ERROR(dpm_solver_singlestep_sampler::from_outer(lv, {2, 0, 2, 2}), "orders[1]", "1, 2 or 3");
    DIFFUSE_CHECK_ERROR(dpm_solver_singlestep_sampler::from_outer(level_sequence::vp({3.0, 1.0, 0.0}), {2, 2}), "orders[1]", "σ = 0");
    DIFFUSE_CHECK_ERROR(dpm_solver_singlestep_sampler::from_outer(lv, {2, 2, 2, 2}, {}, 1.0), "r1_order2", "(0, 1)");
    DIFFUSE_CHECK_ERROR(dpm_solver_singlestep_sampler::from_outer(lv, {2, 2, 2, 2}, {}, 0.5, 0.0), "r1", "(0, 1)");
    DIFFUSE_CHECK_ERROR(dpm_solver_singlestep_sampler::from_outer(lv, {2, 2, 2, 2}, {}, 0.5, 0.5, 0.4), "r2", "(r1, 1)");
    DIFFUSE_CHECK_ERROR(dpm_solver_singlestep_sampler(level_sequence::vp({INFINITY, 1.0, 0.5})), "sigmas[0]", "finite");
    DIFFUSE_CHECK_ERROR(diffusers_singlestep_orders(10, 4, false, false), "order", "1, 2 or 3");
    DIFFUSE_CHECK_ERROR(dpm_solver_fast_orders(2, 3), "nfe", ">= order");
    DIFFUSE_CHECK_ERROR(singlestep_stage_coefficients(alg::dpmsolver, sol::midpoint, 2, 2, lv.levels()), "stage");
    tensor<double, host_space> x(shape{2, 3}, 0.1), m(shape{2, 3}, 0.0), bad(shape{3, 2}, 0.0);
    philox_rng rng(0);
    dpm_solver_singlestep_sampler unset;
    DIFFUSE_CHECK_ERROR(unset.step(m.cview(), 0, x.view(), rng), "step index", "set_timesteps");
    dpm_solver_singlestep_sampler s(lv, dpm_solver_singlestep_config{.order = 2});
    DIFFUSE_CHECK_ERROR(s.step(m.cview(), 4, x.view(), rng), "step index", "[0, 4)");
    DIFFUSE_CHECK_ERROR(s.step(m.cview(), 1, x.view(), rng), "stage 1", "step 0");
    DIFFUSE_CHECK_ERROR(s.step(bad.cview(), 0, x.view(), rng), "shape");
    DIFFUSE_CHECK_ERROR(s.step(x.cview(), 0, x.view(), rng), "aliases");
    DIFFUSE_CHECK_ERROR(s.set_begin_index(4), "set_begin_index", "[0, 4)");
    s.step(m.cview(), 0, x.view(), rng);
    tensor<double, host_space> x2(shape{1, 3}, 0.1), m2(shape{1, 3}, 0.0);
    DIFFUSE_CHECK_ERROR(s.step(m2.cview(), 1, x2.view(), rng), "shape [1, 3]", "earlier stages");
    tensor<float, host_space> xf(shape{2, 3}, 0.1f), mf(shape{2, 3}, 0.0f);
    DIFFUSE_CHECK_ERROR(s.step(mf.cview(), 1, xf.view(), rng), "element type");
}
