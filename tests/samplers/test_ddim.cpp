// samplers/ddim.hpp: DDIM against the exact PF-ODE (order 1, closed_forms C2), the C6 product
// formula, point-mass exactness (C6), diffusers' full-loop oracles (peers.md c.1 #1, #1b, #2),
// η > 0 reproducibility and argument errors.
#include <diffuse/samplers/ddim.hpp>

#include <diffuse/analytic/gaussian.hpp>
#include <diffuse/core/eigen_adapter.hpp>
#include <diffuse/models/exact.hpp>
#include <diffuse/schedules/discrete_schedule.hpp>

#include "samplers/diffusers_dummy.hpp"
#include "samplers/fixtures.hpp"
#include "samplers/order_fixtures.hpp"
#include "support/check.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <vector>

using namespace diffuse;
using namespace diffuse::samplers;
using diffuse::models::exact_gaussian_denoiser;
using pt = prediction_type;
using schedules::discrete_schedule;

namespace {

using namespace diffuse::test;

using diffusers::abs_sum;
using diffusers::dummy_model;
using diffusers::dummy_noise_deter;
using diffusers::dummy_sample_deter;

}  // namespace

TEST_CASE("ddim eta 0 converges with order 1 to the exact PF-ODE endpoint on a logSNR grid") {
    const auto g = gaussian3();
    const exact_gaussian_denoiser model(g, pt::epsilon);
    const discrete_schedule sched = logsnr_table();
    const int Tmax = 2560;
    const Eigen::MatrixXd xT = marginal_points(g, sched.alpha(Tmax), sched.sigma(Tmax), 7);
    const Eigen::MatrixXd exact = g.pf_ode_flow(xT, sched.alpha(Tmax), sched.sigma(Tmax), sched.alpha(0), sched.sigma(0));
    std::vector<int> ns = {10, 20, 40, 80, 160, 320};
    std::vector<double> errs;
    for (int n : ns) {
        ddim_config cfg;
        cfg.set_alpha_to_one = false;  // final ᾱ' = ᾱ_0: the order test ends at λ = 4.56, not at σ = 0 (C4.3)
        ddim_sampler s(sched, cfg);
        std::vector<int> ts;
        for (int k = n; k >= 1; --k) ts.push_back(k * (Tmax / n));
        s.set_timesteps(ts);
        auto x = to_tensor(xT);
        philox_rng rng(0);
        sample(model, s, x, rng);
        errs.push_back((to_matrix(x) - exact).cwiseAbs().maxCoeff());
        MESSAGE("DDIM N = " << n << " max error " << errs.back());
    }
    const double slope = last4_order(ns, errs);
    MESSAGE("DDIM fitted order (LSQ, N = 40..320): " << slope);
    // Band of closed_forms C2 (measured 0.988 there): |slope − 1| < 0.1.
    CHECK(std::abs(slope - 1.0) < 0.1);
    for (std::size_t i = 1; i < errs.size(); ++i) CHECK(errs[i] < errs[i - 1]);
}

TEST_CASE("ddim eta 0 equals the closed-form per-eigendirection product of C6 for any step count") {
    const auto g = gaussian3();
    const discrete_schedule sched = discrete_schedule::named("linear", 1000);
    const exact_gaussian_denoiser model(g, pt::v_prediction);
    for (int n : {1, 5, 50}) {
        ddim_sampler s(sched, ddim_config{.timestep_spacing = schedules::spacing::trailing});
        s.set_timesteps(n);
        const int t0 = s.timesteps().front();
        const Eigen::MatrixXd xT = marginal_points(g, sched.alpha(t0), sched.sigma(t0), 3);
        auto x = to_tensor(xT);
        philox_rng rng(0);
        sample(model, s, x, rng);
        // c_i = (a_i a_{i+1} λ + s_i s_{i+1}) / (a_i² λ + s_i²) per eigenvalue λ; final a' = 1, s' = 0.
        const Eigen::VectorXd lam = g.cov_eigenvalues();
        Eigen::ArrayXd prod = Eigen::ArrayXd::Ones(lam.size());
        for (std::size_t i = 0; i < s.num_steps(); ++i) {
            const double a = sched.alpha(s.timesteps()[i]), sd = sched.sigma(s.timesteps()[i]);
            const double abp = s.alpha_bar_prev(i);
            const double a2 = std::sqrt(abp), s2 = std::sqrt(1.0 - abp);
            prod *= (a * a2 * lam.array() + sd * s2) / (a * a * lam.array() + sd * sd);
        }
        const Eigen::MatrixXd q = g.cov_eigenvectors();
        Eigen::MatrixXd expect = ((xT.rowwise() - (sched.alpha(t0) * g.mean()).transpose()) * q) *
                                 prod.matrix().asDiagonal() * q.transpose();
        expect.rowwise() += g.mean().transpose();
        const double err = (to_matrix(x) - expect).cwiseAbs().maxCoeff();
        MESSAGE("C6 N = " << n << " max |DDIM − product formula| = " << err);
        CHECK(err < 1e-12);
    }
}

namespace {
/// Exact denoiser of a point mass at mu: x0_hat = mu, eps_hat = (x − a mu)/s.
struct point_mass_model {
    std::vector<double> mu;
    pt type;
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

TEST_CASE("ddim with a point-mass data model is exact for every step count") {
    const discrete_schedule sched = discrete_schedule::named("linear", 1000);
    const point_mass_model model{{0.7, -1.2, 2.5}, pt::epsilon};
    for (int n : {1, 7}) {
        // (a) final step to ᾱ' = 1 reaches the point.
        ddim_sampler s(sched, ddim_config{.timestep_spacing = schedules::spacing::trailing});
        s.set_timesteps(n);
        tensor<double, host_space> x(shape{2, 3});
        for (int i = 0; i < 6; ++i) x[i] = 0.3 * i - 0.8;
        const tensor<double, host_space> xT = x;
        philox_rng rng(0);
        sample(model, s, x, rng);
        for (int i = 0; i < 6; ++i) DIFFUSE_CHECK_CLOSE(x[i], model.mu[static_cast<std::size_t>(i % 3)], 1e-13, 0.0);
        // (b) to ᾱ_0 > 0: the exact flow x_0 = a_0 μ + (s_0/s_T)(x_T − a_T μ).
        ddim_sampler s2(sched, ddim_config{.set_alpha_to_one = false, .timestep_spacing = schedules::spacing::trailing});
        s2.set_timesteps(n);
        tensor<double, host_space> y = xT;
        sample(model, s2, y, rng);
        const int tT = s2.timesteps().front();
        for (int i = 0; i < 6; ++i) {
            const double m = model.mu[static_cast<std::size_t>(i % 3)];
            const double expect = sched.alpha(0) * m + sched.sigma(0) / sched.sigma(tT) * (xT[i] - sched.alpha(tT) * m);
            DIFFUSE_CHECK_CLOSE(y[i], expect, 1e-13, 1e-13);
        }
    }
}

TEST_CASE_TEMPLATE("ddim reproduces diffusers test_full_loop_no_noise oracles", T, float, double) {
    struct oracle {
        pt type;
        double beta_start;
        bool set_alpha_to_one;
        double sum, mean;
    };
    // peers.md c.1 #1 and #1b (test_scheduler_ddim.py), tolerance as diffusers: 1e-2 on the sum, 1e-3 on the mean.
    for (const oracle& o : {oracle{pt::epsilon, 1e-4, true, 172.0067, 0.223967},
                            oracle{pt::v_prediction, 1e-4, true, 52.5302, 0.0684},
                            oracle{pt::epsilon, 0.01, true, 149.8295, 0.1951},
                            oracle{pt::epsilon, 0.01, false, 149.0784, 0.1941}}) {
        for (prev_rule rule : {prev_rule::diffusers_subtract, prev_rule::lookup}) {
            ddim_config cfg;
            cfg.clip_sample = true;
            cfg.set_alpha_to_one = o.set_alpha_to_one;
            cfg.previous = rule;
            cfg.prediction = o.type;
            ddim_sampler s(discrete_schedule::named("linear", 1000, o.beta_start, 0.02), cfg);
            s.set_timesteps(10);
            CHECK(s.timesteps().front() == 900);
            CHECK(s.timesteps().back() == 0);
            auto x = dummy_sample_deter<T>();
            philox_rng rng(0);
            sample(dummy_model{o.type}, s, x, rng);
            const double sum = abs_sum(x);
            DIFFUSE_CHECK_CLOSE(sum, o.sum, 1e-2, 0.0);
            DIFFUSE_CHECK_CLOSE(sum / 768.0, o.mean, 1e-3, 0.0);
        }
    }
}

TEST_CASE("ddim reproduces diffusers test_full_loop_with_noise from t_start 8") {
    // peers.md c.1 #2: timesteps [100, 0] of the 10-step leading set, x = add_noise(sample, noise, 100),
    // dummy_noise_deter = 1 − sample − 1/768 element-wise.
    ddim_config cfg;
    cfg.clip_sample = true;
    cfg.previous = prev_rule::diffusers_subtract;
    const discrete_schedule sched = discrete_schedule::named("linear", 1000);
    ddim_sampler s(sched, cfg);
    s.set_timesteps(10);
    const auto x0 = dummy_sample_deter<double>();
    const auto noise = dummy_noise_deter<double>();
    tensor<double, host_space> x(x0.shape());
    lincomb(x, sched.alpha(100), x0, sched.sigma(100), noise);
    const dummy_model m{pt::epsilon};
    tensor<double, host_space> out(x.shape());
    philox_rng rng(0);
    for (std::size_t i = s.index_for_timestep(100); i < s.num_steps(); ++i) {
        m(out.view(), x.cview(), s.model_level(i));
        s.step(out.cview(), i, x.view(), rng);
    }
    DIFFUSE_CHECK_CLOSE(abs_sum(x), 354.5418, 1e-2, 0.0);
    DIFFUSE_CHECK_CLOSE(abs_sum(x) / 768.0, 0.4616, 1e-3, 0.0);
}

TEST_CASE("ddim previous-timestep rules agree on leading and differ on linspace") {
    const discrete_schedule sched = discrete_schedule::named("linear", 1000);
    ddim_sampler a(sched, ddim_config{.timestep_spacing = schedules::spacing::linspace});
    ddim_sampler b(sched, ddim_config{.timestep_spacing = schedules::spacing::linspace,
                                      .previous = prev_rule::diffusers_subtract});
    a.set_timesteps(10);
    b.set_timesteps(10);
    // linspace: 999, 888, ..., 111, 0; lookup gives 888, diffusers 999 − 100 = 899.
    CHECK(a.prev_timestep(0) == 888);
    CHECK(b.prev_timestep(0) == 899);
    CHECK(a.prev_timestep(9) == -1);
    CHECK(b.prev_timestep(9) == -1);
    ddim_sampler c(sched), d(sched, ddim_config{.previous = prev_rule::diffusers_subtract});
    c.set_timesteps(10);
    d.set_timesteps(10);
    for (std::size_t i = 0; i < 10; ++i) CHECK(c.prev_timestep(i) == d.prev_timestep(i));
}

TEST_CASE("ddim coefficients handle every prediction type identically") {
    // The same exact model declared as eps, x0, v and score gives the same step to ~1e-13.
    const auto g = gaussian3();
    const discrete_schedule sched = discrete_schedule::named("linear", 1000);
    std::vector<Eigen::MatrixXd> results;
    for (pt type : {pt::epsilon, pt::sample, pt::v_prediction, pt::score}) {
        ddim_sampler s(sched, ddim_config{.set_alpha_to_one = false});
        s.set_timesteps(20);
        const int t0 = s.timesteps().front();
        auto x = to_tensor(marginal_points(g, sched.alpha(t0), sched.sigma(t0), 11));
        philox_rng rng(0);
        sample(exact_gaussian_denoiser(g, type), s, x, rng);
        results.push_back(to_matrix(x));
    }
    for (std::size_t k = 1; k < results.size(); ++k) CHECK((results[k] - results[0]).cwiseAbs().maxCoeff() < 1e-12);
}

TEST_CASE("ddim eta 1 draws noise, reproduces bitwise for a fixed seed and equals its coefficient table") {
    const auto g = gaussian3();
    const exact_gaussian_denoiser model(g, pt::epsilon);
    const discrete_schedule sched = discrete_schedule::named("linear", 1000);
    ddim_sampler s(sched, ddim_config{.eta = 1.0});
    s.set_timesteps(10);
    const Eigen::MatrixXd xT = marginal_points(g, sched.alpha(900), sched.sigma(900), 5);
    auto run = [&](std::uint64_t seed, philox_rng* out_rng = nullptr) {
        auto x = to_tensor(xT);
        philox_rng rng(seed);
        sample(model, s, x, rng);
        if (out_rng) *out_rng = rng;
        return x;
    };
    philox_rng used(0);
    const auto x1 = run(42, &used);
    const auto x2 = run(42);
    const auto x3 = run(43);
    bool same = true, differs = false;
    for (std::int64_t i = 0; i < x1.numel(); ++i) {
        same = same && x1.cview()[i] == x2.cview()[i];
        differs = differs || x1.cview()[i] != x3.cview()[i];
    }
    CHECK(same);
    CHECK(differs);
    CHECK(used.normal_offset() == 10u * 48u);  // x.numel() normals per step
    // η = 0 consumes none.
    ddim_sampler s0(sched);
    s0.set_timesteps(10);
    auto x = to_tensor(xT);
    philox_rng r0(1);
    sample(model, s0, x, r0);
    CHECK(r0.normal_offset() == 0u);
    // One step by hand: x' = c_x x + c_m eps + c_z z with z the first 48 normals of the stream.
    {
        auto y = to_tensor(xT);
        tensor<double, host_space> e(y.shape());
        model(e.view(), y.cview(), s.model_level(0));
        philox_rng rng(9);
        const ddim_coeffs c = s.coefficients(pt::epsilon, 0);
        tensor<double, host_space> z(y.shape());
        philox_rng rz(9);
        randn(z, rz);
        tensor<double, host_space> expect(y.shape());
        lincomb(expect, c.c_x, y, c.c_m, e, c.c_z, z);
        s.step(e.cview(), 0, y.view(), rng);
        for (std::int64_t i = 0; i < y.numel(); ++i) CHECK(y[i] == expect[i]);
        // σ_η² = (1−ᾱ')/(1−ᾱ)(1 − ᾱ/ᾱ') (Eq. 16), independently.
        const double ab = sched.alpha_bar(900), abp = sched.alpha_bar(800);
        DIFFUSE_CHECK_CLOSE(c.c_z, std::sqrt((1 - abp) / (1 - ab) * (1 - ab / abp)), 0.0, 1e-14);
    }
}

TEST_CASE("ddim rejects bad arguments with readable errors") {
    const discrete_schedule sched = discrete_schedule::named("linear", 1000);
    DIFFUSE_CHECK_ERROR(ddim_sampler(sched, ddim_config{.eta = -0.1}), "eta", "[0, 1]");
    DIFFUSE_CHECK_ERROR(ddim_sampler(sched, ddim_config{.eta = 1.5}), "eta");
    DIFFUSE_CHECK_ERROR(ddim_sampler(sched, ddim_config{.clip_sample_range = 0.0}), "clip_sample_range");
    ddim_sampler s(sched);
    DIFFUSE_CHECK_ERROR(s.set_timesteps(1001), "num_inference_steps", "1000");
    DIFFUSE_CHECK_ERROR(s.set_timesteps(0), "num_inference_steps");
    DIFFUSE_CHECK_ERROR(s.set_timesteps(std::vector<int>{500, 600}), "timesteps[1]", "decreasing");
    DIFFUSE_CHECK_ERROR(s.set_timesteps(std::vector<int>{1000}), "timesteps[0]", "[0, 999]");
    tensor<double, host_space> x(shape{2, 3}, 0.0), m(shape{2, 3}, 0.0), bad(shape{3, 2}, 0.0);
    philox_rng rng(0);
    DIFFUSE_CHECK_ERROR(s.step(m.cview(), 0, x.view(), rng), "step index", "set_timesteps");
    s.set_timesteps(10);
    DIFFUSE_CHECK_ERROR(s.step(m.cview(), 10, x.view(), rng), "step index", "[0, 10)");
    DIFFUSE_CHECK_ERROR(s.step(bad.cview(), 0, x.view(), rng), "shape");
    DIFFUSE_CHECK_ERROR(s.step(x.cview(), 0, x.view(), rng), "aliases");
    DIFFUSE_CHECK_ERROR(s.index_for_timestep(7), "timestep", "7");
}
