// samplers/inversion.hpp: DDIM inversion (order 1) and the DPM-Solver++(2M) inverse (order 2)
// against the exact PF-ODE flow of a Gaussian, inversion followed by sampling returns the input
// (error vs steps), point-mass exactness, diffusers' DDIMInverseScheduler and
// DPMSolverMultistepInverseScheduler full-loop oracles, conventions and errors.
#include <diffuse/samplers/inversion.hpp>

#include <diffuse/analytic/gaussian.hpp>
#include <diffuse/core/eigen_adapter.hpp>
#include <diffuse/models/exact.hpp>
#include <diffuse/samplers/ddim.hpp>
#include <diffuse/samplers/euler.hpp>
#include <diffuse/schedules/discrete_schedule.hpp>

#include "samplers/diffusers_dummy.hpp"
#include "samplers/fixtures.hpp"
#include "samplers/order_fixtures.hpp"
#include "support/check.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

using namespace diffuse;
using namespace diffuse::samplers;
using diffuse::models::exact_gaussian_denoiser;
using pt = prediction_type;
using schedules::discrete_schedule;

namespace {

using namespace diffuse::test;

/// Forward DPM-Solver++(2M) by hand on a decreasing level sequence with the exact x0 estimate
/// (first step first order, no lower-order final step): the sampling counterpart of the inverse,
/// through the same coefficient function.
Eigen::MatrixXd forward_2m(const analytic::gaussian& g, const level_sequence& seq, Eigen::MatrixXd x,
                           inverse_2m_variant v = inverse_2m_variant::midpoint) {
    Eigen::MatrixXd d_prev;
    for (std::size_t i = 0; i + 1 < seq.size(); ++i) {
        const Eigen::MatrixXd d = g.x0_mean(x, seq[i].a, seq[i].s);
        std::optional<noise_condition> prev;
        if (i > 0) prev = seq[i - 1];
        const dpmpp_2m_coeffs c = dpmpp_2m_coefficients(seq[i], seq[i + 1], prev, v);
        Eigen::MatrixXd nx = c.c_x * x + c.c_d * d;
        if (c.order == 2) nx += c.c_p * d_prev;
        x = nx;
        d_prev = d;
    }
    return x;
}

/// The order ladder of closed_forms C2; the fits use its last four entries (N = 40..320).
const std::vector<int> ladder = {10, 20, 40, 80, 160, 320};

using diffusers::abs_sum;
using diffusers::dummy_model;
using diffusers::dummy_sample_deter;

/// Exact denoiser of a point mass at mu (x0_hat = mu, eps_hat = (x − a mu)/s).
struct point_mass_model {
    std::vector<double> mu;
    pt type = pt::epsilon;
    pt prediction() const { return type; }
    template <class T, class S>
    void operator()(tensor_view<T, S> out, std::type_identity_t<tensor_view<const T, S>> x,
                    const models::noise_condition& l, models::no_condition = {}) const {
        const std::int64_t d = static_cast<std::int64_t>(mu.size());
        for (std::int64_t i = 0; i < x.numel(); ++i) {
            const double m = mu[static_cast<std::size_t>(i % d)];
            out[i] = static_cast<T>(type == pt::sample ? m : (static_cast<double>(x[i]) - l.a * m) / l.s);
        }
    }
};

}  // namespace

TEST_CASE("ddim inversion converges with order 1 to the exact PF-ODE flow, model at the current or next level") {
    const auto g = gaussian3();
    const exact_gaussian_denoiser model(g, pt::epsilon);
    for (inverse_model_level at : {inverse_model_level::current, inverse_model_level::next}) {
        std::vector<double> errs;
        for (int n : ladder) {
            const level_sequence seq = logsnr_levels(n);
            const noise_condition lo = seq[seq.size() - 1], hi = seq[0];
            const Eigen::MatrixXd x_lo = marginal_points(g, lo.a, lo.s, 7);
            ddim_inverse_sampler inv(seq, ddim_inverse_config{.model_at = at});
            REQUIRE(inv.num_steps() == static_cast<std::size_t>(n));
            const Eigen::MatrixXd exact = g.pf_ode_flow(x_lo, lo.a, lo.s, hi.a, hi.s);
            errs.push_back(max_abs_diff(run_sampler(model, inv, x_lo), exact));
            MESSAGE("DDIM inversion (" << std::string(at == inverse_model_level::current ? "current" : "next") << ") N = " << n
                                       << " max error vs pf_ode_flow " << errs.back());
        }
        const double slope = last4_order(ladder, errs);
        MESSAGE("DDIM inversion fitted order (N = 40..320): " << slope);
        // Band of closed_forms C2 for first-order solvers: |slope − 1| < 0.1.
        CHECK(std::abs(slope - 1.0) < 0.1);
        for (std::size_t i = 1; i < errs.size(); ++i) CHECK(errs[i] < errs[i - 1]);
    }
}

TEST_CASE("dpm-solver++ 2M inverse converges with order 2 to the exact PF-ODE flow, midpoint and heun") {
    const auto g = gaussian3();
    const exact_gaussian_denoiser model(g, pt::epsilon);
    for (inverse_2m_variant v : {inverse_2m_variant::midpoint, inverse_2m_variant::heun}) {
        std::vector<double> errs;
        for (int n : ladder) {
            const level_sequence seq = logsnr_levels(n);
            const noise_condition lo = seq[seq.size() - 1], hi = seq[0];
            const Eigen::MatrixXd x_lo = marginal_points(g, lo.a, lo.s, 7);
            dpmpp_2m_inverse_sampler inv(seq, dpmpp_2m_inverse_config{.variant = v});
            const Eigen::MatrixXd exact = g.pf_ode_flow(x_lo, lo.a, lo.s, hi.a, hi.s);
            errs.push_back(max_abs_diff(run_sampler(model, inv, x_lo), exact));
            MESSAGE("2M inverse (" << std::string(v == inverse_2m_variant::midpoint ? "midpoint" : "heun") << ") N = " << n
                                   << " max error vs pf_ode_flow " << errs.back());
        }
        const double slope = last4_order(ladder, errs);
        MESSAGE("2M inverse fitted order (N = 40..320): " << slope);
        // Band of closed_forms C2 for DPM-Solver++(2M) (1.992 there): [1.85, 2.20].
        CHECK(slope > 1.85);
        CHECK(slope < 2.20);
        for (std::size_t i = 1; i < errs.size(); ++i) CHECK(errs[i] < errs[i - 1]);
    }
}

TEST_CASE("ddim inversion followed by ddim sampling returns the input with error of order 1") {
    const auto g = gaussian3();
    const exact_gaussian_denoiser model(g, pt::epsilon);
    const discrete_schedule sched = logsnr_table();
    const int Tmax = 2560;
    // Data-side points: the exact marginal at t = 0 (λ = 4.56).
    const Eigen::MatrixXd x_in = marginal_points(g, sched.alpha(0), sched.sigma(0), 11);
    std::vector<double> errs;
    for (int n : ladder) {
        std::vector<int> up, down;
        for (int k = 1; k <= n; ++k) up.push_back(k * (Tmax / n));
        for (int k = n; k >= 1; --k) down.push_back(k * (Tmax / n));
        // Inverse: ᾱ_0 -> t_1 -> ... -> t_n; forward DDIM: t_n -> ... -> t_1 -> ᾱ_0 (the same levels).
        ddim_inverse_sampler inv(sched, ddim_inverse_config{.set_alpha_to_one = false});
        inv.set_timesteps(up);
        ddim_sampler fwd(sched, ddim_config{.set_alpha_to_one = false});
        fwd.set_timesteps(down);
        const Eigen::MatrixXd x_T = run_sampler(model, inv, x_in);
        const Eigen::MatrixXd back = run_sampler(model, fwd, x_T);
        errs.push_back(max_abs_diff(back, x_in));
        MESSAGE("DDIM invert + sample N = " << n << ": max |reconstruction − input| = " << errs.back());
    }
    const double slope = last4_order(ladder, errs);
    MESSAGE("DDIM reconstruction error fitted order (N = 40..320): " << slope);
    // Each inverse/forward step pair differs at O(h²) (explicit Euler one way, the other way):
    // first order globally; band of closed_forms C2.
    CHECK(std::abs(slope - 1.0) < 0.1);
    for (std::size_t i = 1; i < errs.size(); ++i) CHECK(errs[i] < errs[i - 1]);
}

TEST_CASE("2M inversion followed by 2M sampling returns the input with error of order 2") {
    // The interior 2M truncation errors of the two directions cancel at leading order (the path is
    // walked with h and then −h), so the round trip is pre-asymptotic up to N ≈ 300 (pairwise
    // slopes 4.4, 4.6, 3.9, 2.6 for N = 10..160) and then settles at the O(h²) of the two
    // first-order start steps. The fit therefore uses N = 320..2560 (16 points, cheap in double).
    const auto g = gaussian3();
    const exact_gaussian_denoiser model(g, pt::sample);
    const std::vector<int> ns = {40, 80, 160, 320, 640, 1280, 2560};
    std::vector<double> errs;
    for (int n : ns) {
        const level_sequence seq = logsnr_levels(n);
        const noise_condition lo = seq[seq.size() - 1];
        const Eigen::MatrixXd x_in = marginal_points(g, lo.a, lo.s, 11);
        dpmpp_2m_inverse_sampler inv(seq, dpmpp_2m_inverse_config{.lower_order_final = false});
        const Eigen::MatrixXd x_T = run_sampler(model, inv, x_in);
        const Eigen::MatrixXd back = forward_2m(g, seq, x_T);
        errs.push_back(max_abs_diff(back, x_in));
        MESSAGE("2M invert + 2M sample N = " << n << ": max |reconstruction − input| = " << errs.back());
    }
    const double slope = last4_order(ns, errs);
    MESSAGE("2M reconstruction error fitted order (N = 320..2560): " << slope);
    CHECK(slope > 1.85);  // band of closed_forms C2 for second-order solvers
    CHECK(slope < 2.20);
    for (std::size_t i = 1; i < errs.size(); ++i) CHECK(errs[i] < errs[i - 1]);
    // Below the DDIM round trip by orders of magnitude already at N = 40 (DDIM: 0.26 there).
    CHECK(errs[0] < 1e-4);
}

TEST_CASE("the hand-written forward 2M used above is itself second order") {
    // Sanity of the test's sampling counterpart (closed_forms C2: DPM-Solver++(2M) 1.992).
    const auto g = gaussian3();
    std::vector<double> errs;
    for (int n : ladder) {
        const level_sequence seq = logsnr_levels(n);
        const noise_condition hi = seq[0], lo = seq[seq.size() - 1];
        const Eigen::MatrixXd x_T = marginal_points(g, hi.a, hi.s, 7);
        errs.push_back(max_abs_diff(forward_2m(g, seq, x_T), g.pf_ode_flow(x_T, hi.a, hi.s, lo.a, lo.s)));
    }
    const double slope = last4_order(ladder, errs);
    MESSAGE("forward 2M fitted order (N = 40..320): " << slope);
    CHECK(slope > 1.85);
    CHECK(slope < 2.20);
}

TEST_CASE("inversion with a point-mass data model is exact for every step count") {
    // closed_forms C6: eps along the exact trajectory is constant for a point mass, so both
    // DDIM and the 2M update (D_i = μ for all i) reproduce x_T = a_T μ + (s_T/s_0)(x_0 − a_0 μ).
    const discrete_schedule sched = discrete_schedule::named("linear", 1000);
    const point_mass_model model{{0.7, -1.2, 2.5}, pt::epsilon};
    for (int n : {1, 7, 50}) {
        tensor<double, host_space> x(shape{2, 3});
        for (int i = 0; i < 6; ++i) x[i] = sched.alpha(0) * model.mu[static_cast<std::size_t>(i % 3)] + 0.01 * (i - 2.5);
        const tensor<double, host_space> x_start = x;
        auto expect_at = [&](int t, std::int64_t i) {
            const double m = model.mu[static_cast<std::size_t>(i % 3)];
            return sched.alpha(t) * m + sched.sigma(t) / sched.sigma(0) * (x_start[i] - sched.alpha(0) * m);
        };
        ddim_inverse_sampler inv(sched, ddim_inverse_config{.set_alpha_to_one = false});
        inv.set_timesteps(n);
        philox_rng rng(0);
        sample(model, inv, x, rng);
        const int top = inv.timesteps().back();
        for (std::int64_t i = 0; i < 6; ++i) DIFFUSE_CHECK_CLOSE(x[i], expect_at(top, i), 1e-12, 1e-12);
        dpmpp_2m_inverse_sampler inv2(sched);
        if (n < 999) {
            inv2.set_timesteps(n);
            tensor<double, host_space> y = x_start;
            sample(model, inv2, y, rng);
            for (std::int64_t i = 0; i < 6; ++i) DIFFUSE_CHECK_CLOSE(y[i], expect_at(999, i), 1e-12, 1e-12);
        }
    }
}

TEST_CASE("inversion gives the same result for eps, x0, v and score models") {
    const auto g = gaussian3();
    const level_sequence seq = logsnr_levels(25);
    const noise_condition lo = seq[seq.size() - 1];
    const Eigen::MatrixXd x_lo = marginal_points(g, lo.a, lo.s, 5);
    std::vector<Eigen::MatrixXd> d, m;
    for (pt type : {pt::epsilon, pt::sample, pt::v_prediction, pt::score}) {
        const exact_gaussian_denoiser model(g, type);
        ddim_inverse_sampler a(seq);
        dpmpp_2m_inverse_sampler b(seq);
        d.push_back(run_sampler(model, a, x_lo));
        m.push_back(run_sampler(model, b, x_lo));
    }
    // Only the conversion coefficients differ: agreement to rounding (|x| <= ~60 here, 1e-12).
    for (std::size_t k = 1; k < d.size(); ++k) {
        CHECK(max_abs_diff(d[k], d[0]) < 1e-12);
        CHECK(max_abs_diff(m[k], m[0]) < 1e-12);
    }
}

TEST_CASE("inversion on VE levels equals inversion on VP levels scaled by a") {
    // x_vp = a·x_ve at every level (closed_forms A10); the same σ path in both conventions.
    const auto g = gaussian3();
    const exact_gaussian_denoiser model(g, pt::v_prediction);
    const level_sequence vp = logsnr_levels(30), ve = logsnr_levels(30, state_space::ve);
    const std::size_t last = vp.size() - 1;
    const Eigen::MatrixXd x_ve = marginal_points(g, 1.0, ve.sigma(last), 3);
    const Eigen::MatrixXd x_vp = vp[last].a * x_ve;
    ddim_inverse_sampler a_vp(vp), a_ve(ve);
    dpmpp_2m_inverse_sampler b_vp(vp), b_ve(ve);
    const double top_a = vp[0].a;
    // |x_ve| at the top reaches ~σ_max ≈ 153: relative 1e-13.
    const Eigen::MatrixXd r1 = run_sampler(model, a_ve, x_ve), r2 = run_sampler(model, b_ve, x_ve);
    CHECK(max_abs_diff(run_sampler(model, a_vp, x_vp), top_a * r1) < 1e-13 * r1.cwiseAbs().maxCoeff());
    CHECK(max_abs_diff(run_sampler(model, b_vp, x_vp), top_a * r2) < 1e-13 * r2.cwiseAbs().maxCoeff());
}

TEST_CASE_TEMPLATE("ddim inversion reproduces diffusers DDIMInverseScheduler full-loop oracles", T, float, double) {
    // diffusers tests/schedulers/test_scheduler_ddim_inverse.py: T = 1000 linear, clip_sample = True,
    // N = 10 leading (timesteps 0, 100, ..., 900), model called at the loop's timestep (model_at::next).
    // Re-derived in float64 pure Python (671.68211, 1394.21934, 539.96216, 542.67217); diffusers'
    // tolerances: 1e-2 on the sum, 1e-3 on the mean.
    struct oracle {
        pt type;
        double beta_start;
        bool set_alpha_to_one;
        double sum, mean;
    };
    for (const oracle& o : {oracle{pt::epsilon, 1e-4, true, 671.6816, 0.8746},
                            oracle{pt::v_prediction, 1e-4, true, 1394.2185, 1.8154},
                            oracle{pt::epsilon, 0.01, true, 539.9622, 0.7031},
                            oracle{pt::epsilon, 0.01, false, 542.6722, 0.7066}}) {
        for (prev_rule rule : {prev_rule::diffusers_subtract, prev_rule::lookup}) {
            ddim_inverse_sampler s(discrete_schedule::named("linear", 1000, o.beta_start, 0.02),
                                   ddim_inverse_config{.set_alpha_to_one = o.set_alpha_to_one,
                                                       .clip_sample = true,
                                                       .previous = rule,
                                                       .model_at = inverse_model_level::next,
                                                       .prediction = o.type});
            s.set_timesteps(10);
            CHECK(s.timesteps().front() == 0);
            CHECK(s.timesteps().back() == 900);
            auto x = dummy_sample_deter<T>();
            philox_rng rng(0);
            sample(dummy_model{o.type}, s, x, rng);
            MESSAGE("DDIMInverse oracle " << o.sum << ": sum |x| = " << abs_sum(x) << " (T = " << sizeof(T) << " bytes)");
            DIFFUSE_CHECK_CLOSE(abs_sum(x), o.sum, 1e-2, 0.0);
            DIFFUSE_CHECK_CLOSE(abs_sum(x) / 768.0, o.mean, 1e-3, 0.0);
        }
    }
}

TEST_CASE_TEMPLATE("2M inverse reproduces diffusers DPMSolverMultistepInverseScheduler full-loop oracles", T, float,
                   double) {
    // diffusers tests/schedulers/test_scheduler_dpm_multi_inverse.py: T = 1000 linear, order 2,
    // dpmsolver++ midpoint, lower_order_final = False, linspace N = 10; mean |x| 0.7047 (epsilon),
    // 1.5194 (v). Re-derived in float64 pure Python: 0.704690, 1.519379. Tolerance 1e-3 (diffusers').
    for (auto [type, mean] : {std::pair{pt::epsilon, 0.7047}, std::pair{pt::v_prediction, 1.5194}}) {
        dpmpp_2m_inverse_sampler s(discrete_schedule::named("linear", 1000),
                                   dpmpp_2m_inverse_config{.lower_order_final = false, .prediction = type});
        s.set_timesteps(10);
        CHECK(s.timesteps() == std::vector<int>{0, 100, 200, 300, 400, 500, 599, 699, 799, 899});
        CHECK(s.path().back().timestep == 999.0);
        auto x = dummy_sample_deter<T>();
        philox_rng rng(0);
        sample(dummy_model{type}, s, x, rng);
        MESSAGE("DPMSolverMultistepInverse oracle " << mean << ": mean |x| = " << abs_sum(x) / 768.0);
        DIFFUSE_CHECK_CLOSE(abs_sum(x) / 768.0, mean, 1e-3, 0.0);
    }
}

TEST_CASE("ddim inversion timesteps and levels follow diffusers' conventions") {
    const discrete_schedule sched = discrete_schedule::named("linear", 1000);
    // test_scheduler_ddim_inverse.py::test_steps_offset: [1, 201, 401, 601, 801].
    ddim_inverse_sampler s(sched, ddim_inverse_config{.steps_offset = 1});
    s.set_timesteps(5);
    CHECK(s.timesteps() == std::vector<int>{1, 201, 401, 601, 801});
    // Default: state before step 0 at ᾱ = 1 (set_alpha_to_one), no timestep there; the model at
    // the current level; step k moves to the level of timesteps()[k].
    CHECK(s.state_level(0).a == 1.0);
    CHECK(s.state_level(0).s == 0.0);
    CHECK(!s.model_level(0).timestep.has_value());
    CHECK(*s.model_level(1).timestep == 1.0);
    CHECK(*s.target_level(1).timestep == 201.0);
    CHECK(s.timestep(1) == 201.0);
    // model_at::next: the model is told the level x moves to (diffusers' pipelines).
    ddim_inverse_sampler n(sched, ddim_inverse_config{.model_at = inverse_model_level::next});
    n.set_timesteps(10);
    for (std::size_t k = 0; k < 10; ++k) CHECK(*n.model_level(k).timestep == static_cast<double>(n.timesteps()[k]));
    // trailing, N = 3: [332, 666, 999]; diffusers_subtract puts the state before 666 at 666 − 333 = 333,
    // lookup at 332.
    ddim_inverse_sampler a(sched, ddim_inverse_config{.timestep_spacing = schedules::spacing::trailing});
    ddim_inverse_sampler b(sched, ddim_inverse_config{.timestep_spacing = schedules::spacing::trailing,
                                                      .previous = prev_rule::diffusers_subtract});
    a.set_timesteps(3);
    b.set_timesteps(3);
    CHECK(a.timesteps() == std::vector<int>{332, 666, 999});
    CHECK(*a.state_level(1).timestep == 332.0);
    CHECK(*b.state_level(1).timestep == 333.0);
    CHECK(*b.state_level(2).timestep == 666.0);
    CHECK(b.state_level(0).s == 0.0);
    // One step equals the diffusers formula x' = √ᾱ'·(x − √(1−ᾱ)·ε)/√ᾱ + √(1−ᾱ')·ε at t = 201 <- 1.
    {
        tensor<double, host_space> x(shape{1, 3}), e(shape{1, 3});
        for (int i = 0; i < 3; ++i) {
            x[i] = 0.3 * i - 0.4;
            e[i] = 0.5 - 0.2 * i;
        }
        tensor<double, host_space> y = x;
        philox_rng rng(0);
        s.step(e.cview(), 1, y.view(), rng);
        const double ab = sched.alpha_bar(1), abn = sched.alpha_bar(201);
        for (int i = 0; i < 3; ++i)
            DIFFUSE_CHECK_CLOSE(y[i],
                                std::sqrt(abn) * (x[i] - std::sqrt(1 - ab) * e[i]) / std::sqrt(ab) +
                                    std::sqrt(1 - abn) * e[i],
                                1e-15, 1e-14);
    }
}

TEST_CASE("2M inverse timesteps for leading and trailing spacing, history and begin index") {
    const discrete_schedule sched = discrete_schedule::named("linear", 1000);
    // leading: r = 1000 // 6 = 166: 0, 166, ..., 664, then the last level at 999.
    dpmpp_2m_inverse_sampler l(sched, dpmpp_2m_inverse_config{.timestep_spacing = schedules::spacing::leading});
    l.set_timesteps(5);
    CHECK(l.timesteps() == std::vector<int>{0, 166, 332, 498, 664});
    CHECK(l.num_steps() == 5u);
    // trailing: round(arange(1000, 0, −250))[::-1] − 1 = 249, 499, 749, 999: the last level is the
    // last timestep, so 3 steps.
    dpmpp_2m_inverse_sampler t(sched, dpmpp_2m_inverse_config{.timestep_spacing = schedules::spacing::trailing});
    t.set_timesteps(4);
    CHECK(t.num_steps() == 3u);
    CHECK(t.timesteps() == std::vector<int>{249, 499, 749});
    CHECK(*t.path().back().timestep == 999.0);
    // Step orders: 1 first, then 2; the last step first order under lower_order_final with < 15 steps.
    dpmpp_2m_inverse_sampler d(sched);
    d.set_timesteps(10);
    CHECK(d.step_order(0) == 1);
    CHECK(d.step_order(1) == 2);
    CHECK(d.step_order(8) == 2);
    CHECK(d.step_order(9) == 1);
    d.set_begin_index(4);
    CHECK(d.step_order(4) == 1);
    CHECK(d.step_order(5) == 2);
    // Starting at begin index k equals a fresh inverse on the remaining path.
    const auto g = gaussian3();
    const exact_gaussian_denoiser model(g, pt::epsilon);
    const level_sequence seq = logsnr_levels(12);  // inverse path ℓ_12 -> ... -> ℓ_0
    dpmpp_2m_inverse_sampler full(seq);
    full.set_begin_index(5);
    const noise_condition start = full.state_level(5);
    std::vector<double> tail;
    for (std::size_t k = 0; k + 5 <= 12; ++k) tail.push_back(seq.sigma(k));
    dpmpp_2m_inverse_sampler part(level_sequence::vp(tail));
    const Eigen::MatrixXd x = marginal_points(g, start.a, start.s, 9);
    CHECK(max_abs_diff(run_sampler(model, full, x), run_sampler(model, part, x)) < 1e-13);
}

TEST_CASE("2M inverse from sigma 0 takes the DDIM form and needs an eps-convertible model") {
    // A level sequence ending at σ = 0: the first inverse step starts at the data itself.
    const auto g = gaussian3();
    std::vector<double> sig = {20.0, 5.0, 1.0, 0.2, 0.0};
    const level_sequence seq = level_sequence::vp(sig);
    philox_rng r3(3);
    const Eigen::MatrixXd x0 = g.sample(4, r3);
    dpmpp_2m_inverse_sampler inv(seq);
    ddim_inverse_sampler ddim(seq);
    const exact_gaussian_denoiser eps_model(g, pt::epsilon);
    // Step 0 from σ = 0 and step 1 (previous level σ = 0) are both first order = DDIM: the first two
    // steps agree with DDIM inversion; afterwards the 2M correction differs.
    CHECK(inv.step_order(0) == 1);
    CHECK(inv.step_order(1) == 1);
    CHECK(inv.step_order(2) == 2);
    auto a = to_tensor(x0), b = to_tensor(x0);
    tensor<double, host_space> out(a.shape());
    philox_rng rng(0);
    for (std::size_t i = 0; i < 2; ++i) {
        eps_model(out.view(), a.cview(), inv.model_level(i));
        inv.step(out.cview(), pt::epsilon, i, a.view(), rng);
        eps_model(out.view(), b.cview(), ddim.model_level(i));
        ddim.step(out.cview(), pt::epsilon, i, b.view(), rng);
    }
    CHECK(max_abs_diff(to_matrix(a), to_matrix(b)) < 1e-14);
    // x0-prediction models cannot give eps at σ = 0.
    const exact_gaussian_denoiser x0_model(g, pt::sample);
    auto c = to_tensor(x0);
    x0_model(out.view(), c.cview(), inv.model_level(0));
    DIFFUSE_CHECK_ERROR(inv.step(out.cview(), pt::sample, 0, c.view(), rng), "s");
}

TEST_CASE("inversion samplers reject bad arguments with readable errors") {
    const discrete_schedule sched = discrete_schedule::named("linear", 1000);
    DIFFUSE_CHECK_ERROR(ddim_inverse_sampler(sched, ddim_inverse_config{.clip_sample_range = 0.0}),
                        "clip_sample_range");
    ddim_inverse_sampler s(sched);
    DIFFUSE_CHECK_ERROR(s.set_timesteps(1001), "num_inference_steps");
    DIFFUSE_CHECK_ERROR(s.set_timesteps(std::vector<int>{600, 500}), "timesteps[1]", "increasing");
    DIFFUSE_CHECK_ERROR(s.set_timesteps(std::vector<int>{0, 1000}), "timesteps[1]", "[0, 999]");
    tensor<double, host_space> x(shape{2, 3}, 0.0), m(shape{2, 3}, 0.0), bad(shape{3, 2}, 0.0);
    philox_rng rng(0);
    DIFFUSE_CHECK_ERROR(s.step(m.cview(), 0, x.view(), rng), "step index", "set_timesteps");
    s.set_timesteps(10);
    DIFFUSE_CHECK_ERROR(s.step(m.cview(), 10, x.view(), rng), "step index", "[0, 10)");
    DIFFUSE_CHECK_ERROR(s.step(bad.cview(), 0, x.view(), rng), "shape");
    DIFFUSE_CHECK_ERROR(s.set_begin_index(10), "set_begin_index", "[0, 10)");
    ddim_inverse_sampler from_levels(logsnr_levels(4));
    DIFFUSE_CHECK_ERROR(from_levels.set_timesteps(4), "level_sequence", "discrete_schedule");
    // 2M: the top level must be finite; step counts within range.
    DIFFUSE_CHECK_ERROR(dpmpp_2m_inverse_sampler(level_sequence::vp({std::numeric_limits<double>::infinity(), 1.0, 0.1})),
                        "sigmas[0]", "finite");
    dpmpp_2m_inverse_sampler d(sched);
    DIFFUSE_CHECK_ERROR(d.set_timesteps(1000), "num_inference_steps", "[1, 999]");
    DIFFUSE_CHECK_ERROR(d.set_timesteps(0), "num_inference_steps");
    DIFFUSE_CHECK_ERROR(dpmpp_2m_inverse_sampler(sched, dpmpp_2m_inverse_config{
                                                            .timestep_spacing = schedules::spacing::leading,
                                                            .steps_offset = 900})
                            .set_timesteps(10),
                        "steps_offset");
    DIFFUSE_CHECK_ERROR(dpmpp_2m_inverse_sampler(logsnr_levels(3)).set_timesteps(3), "level_sequence");
    DIFFUSE_CHECK_ERROR(dpmpp_2m_coefficients(noise_condition{1.0, 0.0, {}}, noise_condition{0.6, 0.8, {}}, {}),
                        "s0.sigma()", "DDIM");
    DIFFUSE_CHECK_ERROR(dpmpp_2m_coefficients(noise_condition{0.6, 0.8, {}}, noise_condition{0.0, 1.0, {}}, {}),
                        "t.sigma()", "finite");
}
