// samplers/img2img.hpp: diffusers' img2img begin index (strength, order), the noised start,
// diffusers' DDIM full loop with noise through img2img_start, and SDEdit with the exact Gaussian
// denoiser and DDIM(η = 1): exact output mean for every step count, output covariance against the
// exact SDEdit law (error vs steps), and a fixed-seed Monte-Carlo check of the rng path.
#include <diffuse/samplers/img2img.hpp>

#include <diffuse/analytic/gaussian.hpp>
#include <diffuse/core/eigen_adapter.hpp>
#include <diffuse/models/exact.hpp>
#include <diffuse/samplers/ddim.hpp>
#include <diffuse/samplers/euler.hpp>
#include <diffuse/schedules/discrete_schedule.hpp>

#include "samplers/diffusers_dummy.hpp"
#include "samplers/fixtures.hpp"
#include "support/check.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

using namespace diffuse;
using namespace diffuse::samplers;
using diffuse::models::exact_gaussian_denoiser;
using pt = prediction_type;
using schedules::discrete_schedule;

namespace {

using namespace diffuse::test;

/// A two-evaluation sampler shape (Heun-like, diffusers' scheduler.order = 2): 2N − 1 evaluations.
struct two_stage_stub : begin_index_support {
    std::size_t n = 10;  // method steps
    std::size_t num_steps() const { return 2 * n - 1; }
    std::size_t evaluations_per_step() const { return 2; }
    noise_condition state_level(std::size_t i) const { return {1.0, 10.0 - 0.1 * static_cast<double>(i), {}}; }
    void set_begin_index(std::size_t k) { store_begin_index(k, num_steps(), "two_stage_stub"); }
};

/// A staged sampler shape (Heun / DPM-2 in this library): num_method_steps() and stage_of(i);
/// method step m has stages[m] evaluations (2, or 1 for a last step to σ = 0 or an ancestral
/// step without a down level).
struct staged_stub : begin_index_support {
    struct stage {
        std::size_t k;
        int stage;
    };
    std::vector<int> stages;
    std::vector<stage> map;
    explicit staged_stub(std::vector<int> st) : stages(std::move(st)) {
        for (std::size_t m = 0; m < stages.size(); ++m)
            for (int j = 0; j < stages[m]; ++j) map.push_back({m, j});
    }
    std::size_t num_method_steps() const { return stages.size(); }
    std::size_t num_steps() const { return map.size(); }
    stage stage_of(std::size_t i) const { return map.at(i); }
    noise_condition state_level(std::size_t i) const { return {1.0, 10.0 - 0.1 * static_cast<double>(i), {}}; }
    void set_begin_index(std::size_t k) { store_begin_index(k, num_steps(), "staged_stub"); }
};

/// KL(N(m1, C1) || N(m2, C2)).
double gaussian_kl(const Eigen::VectorXd& m1, const Eigen::MatrixXd& c1, const Eigen::VectorXd& m2,
                   const Eigen::MatrixXd& c2) {
    const Eigen::LLT<Eigen::MatrixXd> l2(c2), l1(c1);
    const Eigen::VectorXd dm = m2 - m1;
    const double tr = l2.solve(c1).trace();
    const double quad = dm.dot(l2.solve(dm));
    const double logdet2 = 2.0 * l2.matrixL().toDenseMatrix().diagonal().array().log().sum();
    const double logdet1 = 2.0 * l1.matrixL().toDenseMatrix().diagonal().array().log().sum();
    return 0.5 * (tr + quad - static_cast<double>(c1.rows()) + logdet2 - logdet1);
}

/// The exact output law of SDEdit with the exact Gaussian model and a DDIM(η) sampler from step
/// `begin` on, started at x_t = a·x0 + s·z: the sampler is affine in (x, z), so mean and covariance
/// propagate exactly through its own coefficient table (closed_forms F1 / C7):
///   eps_hat = E·x + f (read off the exact model at 0 and e_j),  P = c_x I + c_m E,
///   mean' = P·mean + c_m f,   cov' = P·cov·Pᵀ + c_z² I.
struct moments {
    Eigen::VectorXd mean;
    Eigen::MatrixXd cov;
};
moments propagate(const analytic::gaussian& g, const ddim_sampler& s, std::size_t begin, const Eigen::VectorXd& x0) {
    const Eigen::Index d = g.dimension();
    const noise_condition l0 = s.state_level(begin);
    moments m{l0.a * x0, l0.s * l0.s * Eigen::MatrixXd::Identity(d, d)};
    for (std::size_t i = begin; i < s.num_steps(); ++i) {
        const noise_condition l = s.model_level(i);
        const Eigen::MatrixXd zero = Eigen::MatrixXd::Zero(1, d);
        const Eigen::VectorXd f = g.eps_mean(zero, l.a, l.s).transpose();
        const Eigen::MatrixXd E = (g.eps_mean(Eigen::MatrixXd::Identity(d, d), l.a, l.s).rowwise() - f.transpose()).transpose();
        const ddim_coeffs c = s.coefficients(pt::epsilon, i);
        const Eigen::MatrixXd P = c.c_x * Eigen::MatrixXd::Identity(d, d) + c.c_m * E;
        m.mean = P * m.mean + c.c_m * f;
        m.cov = P * m.cov * P.transpose();
        m.cov.diagonal().array() += c.c_z * c.c_z;
    }
    return m;
}

/// The exact SDEdit law from x_t ~ N(a·x0, s²I): x_out ~ p(x0' | x_t) averaged over x_t, i.e.
/// N(μ + K(a·x0 − aμ), s²ΣV⁻¹ + s²·K Kᵀ) with K = aΣV⁻¹ (closed_forms B1).
moments sdedit_target(const analytic::gaussian& g, double a, double s, const Eigen::VectorXd& x0) {
    const Eigen::Index d = g.dimension();
    const Eigen::MatrixXd x = (a * x0).transpose();
    const Eigen::VectorXd mean = g.x0_mean(x, a, s).transpose();
    const Eigen::VectorXd f = g.x0_mean(Eigen::MatrixXd::Zero(1, d), a, s).transpose();
    const Eigen::MatrixXd K = (g.x0_mean(Eigen::MatrixXd::Identity(d, d), a, s).rowwise() - f.transpose()).transpose();
    return {mean, g.x0_cov(a, s) + s * s * K * K.transpose()};
}

}  // namespace

TEST_CASE("img2img begin index equals diffusers' get_timesteps for several N, strengths and orders") {
    // Re-derived with the pipeline's Python arithmetic (int(N*strength) truncates the double
    // product: 100·0.29 = 28.999999999999996 -> 28).
    struct row {
        std::size_t n;
        double strength;
        std::size_t order, begin;
    };
    for (const row& r : {row{50, 0.3, 1, 35}, row{50, 0.8, 1, 10}, row{10, 0.7, 1, 3}, row{100, 0.29, 1, 72},
                         row{25, 0.75, 2, 14}, row{3, 0.5, 2, 4}, row{10, 0.0, 1, 10}, row{10, 1.0, 1, 0},
                         row{10, 0.05, 1, 10}, row{7, 0.99, 2, 2}, row{1000, 0.001, 1, 999}, row{30, 0.1, 1, 27},
                         row{20, 0.35, 1, 13}}) {
        CHECK_MESSAGE(img2img_begin_index(r.n, r.strength, r.order) == r.begin,
                      "N = " << r.n << ", strength = " << r.strength << ", order = " << r.order);
    }
    CHECK(method_steps(19, 2) == 10u);  // Heun: 2N − 1 evaluations are N method steps
    CHECK(method_steps(20, 2) == 10u);
    CHECK(method_steps(10, 1) == 10u);
}

TEST_CASE("img2img_start sets the begin index and noises the input to that step's level") {
    const discrete_schedule sched = discrete_schedule::named("linear", 1000);
    ddim_sampler s(sched);
    s.set_timesteps(50);
    tensor<double, host_space> x0(shape{2, 3}), z(shape{2, 3}), x(shape{2, 3});
    for (int i = 0; i < 6; ++i) {
        x0[i] = 0.4 * i - 1.0;
        z[i] = 0.7 - 0.3 * i;
    }
    const std::size_t begin = img2img_start_with_noise(s, 0.3, x0.cview(), z.cview(), x.view());
    CHECK(begin == 35u);
    CHECK(s.begin_index() == 35u);
    CHECK(s.timesteps()[35] == 280);  // leading: 980 − 35·20
    for (int i = 0; i < 6; ++i) CHECK(x[i] == sched.alpha(280) * x0[i] + sched.sigma(280) * z[i]);
    // The rng form draws x.numel() normals and gives the same as the explicit noise it drew.
    philox_rng r1(5), r2(5);
    tensor<double, host_space> zz(shape{2, 3}), y(shape{2, 3}), w(shape{2, 3});
    randn(zz.view(), r2);
    CHECK(img2img_start(s, 0.8, x0.cview(), r1, y.view()) == 10u);
    CHECK(r1.normal_offset() == 6u);
    img2img_start_with_noise(s, 0.8, x0.cview(), zz.cview(), w.view());
    for (int i = 0; i < 6; ++i) CHECK(y[i] == w[i]);
    // Euler on VE σ levels: x = x0 + σ_begin·z (diffusers' EulerDiscreteScheduler.add_noise).
    euler_sampler e = euler_sampler::karras(10, 0.002, 80.0);
    CHECK(img2img_start_with_noise(e, 0.5, x0.cview(), z.cview(), x.view()) == 5u);
    for (int i = 0; i < 6; ++i) CHECK(x[i] == x0[i] + e.sigmas()[5] * z[i]);
}

TEST_CASE("img2img uses evaluations per method step, not the solver order") {
    two_stage_stub st;  // N = 10 method steps, 19 evaluations
    tensor<double, host_space> x0(shape{1, 3}, 1.0), z(shape{1, 3}, 0.5), x(shape{1, 3});
    // strength 0.5: t_start = 5, begin = 5·2 = 10 (diffusers: timesteps[t_start * scheduler.order:]).
    CHECK(img2img_start_with_noise(st, 0.5, x0.cview(), z.cview(), x.view()) == 10u);
    CHECK(st.begin_index() == 10u);
    DIFFUSE_CHECK_CLOSE(x[0], 1.0 + (10.0 - 1.0) * 0.5, 1e-15, 1e-15);
    // Explicit k overrides the member.
    CHECK(img2img_start_with_noise(st, 0.5, x0.cview(), z.cview(), x.view(), 1) == 10u);  // N = 19: 19 − 9
    CHECK(img2img_start_with_noise(st, 0.25, x0.cview(), z.cview(), x.view()) == 16u);   // int(2.5) = 2: t_start 8
    // Staged samplers: the first stage of method step t_start. Heun-like (2N − 1 evaluations):
    // strength 0.6 of N = 5 -> t_start = 2 -> evaluation 4 = 2·2 (diffusers).
    staged_stub heun_like({2, 2, 2, 2, 1});
    CHECK(img2img_begin_index_of(heun_like, 0.6) == 4u);
    CHECK(img2img_start_with_noise(heun_like, 0.6, x0.cview(), z.cview(), x.view()) == 4u);
    CHECK(heun_like.begin_index() == 4u);
    // Mixed stage counts: method step 3 starts at evaluation 2 + 1 + 2 = 5 (t_start·2 would be 6,
    // a second stage).
    staged_stub mixed({2, 1, 2, 2, 1});
    CHECK(img2img_begin_index_of(mixed, 0.4) == 5u);
    CHECK(img2img_begin_index_of(mixed, 0.0) == mixed.num_steps());
    CHECK(img2img_begin_index_of(mixed, 1.0) == 0u);
    CHECK(img2img_start_step(5, 0.4) == 3u);
}

TEST_CASE("strength 0 returns the input untouched and strength 1 starts at the first level") {
    const auto g = gaussian3();
    const exact_gaussian_denoiser model(g, pt::epsilon);
    ddim_sampler s(discrete_schedule::named("linear", 1000), ddim_config{.eta = 1.0});
    s.set_timesteps(10);
    s.set_begin_index(3);
    tensor<double, host_space> x0(shape{4, 3}), x(shape{4, 3});
    for (int i = 0; i < 12; ++i) x0[i] = std::sin(0.7 * i);
    philox_rng rng(1);
    CHECK(img2img_start(s, 0.0, x0.cview(), rng, x.view()) == 10u);  // no step: num_steps()
    CHECK(rng.normal_offset() == 0u);
    CHECK(s.begin_index() == 3u);  // left as it was
    for (int i = 0; i < 12; ++i) CHECK(x[i] == x0[i]);
    CHECK(img2img(model, s, 0.04, x0.cview(), rng, x.view()) == 10u);  // int(0.4) = 0: no step either
    CHECK(rng.normal_offset() == 0u);
    for (int i = 0; i < 12; ++i) CHECK(x[i] == x0[i]);
    tensor<double, host_space> z(shape{4, 3}, 0.25);
    CHECK(img2img_start_with_noise(s, 1.0, x0.cview(), z.cview(), x.view()) == 0u);
    const int t0 = s.timesteps()[0];
    for (int i = 0; i < 12; ++i) CHECK(x[i] == s.schedule().alpha(t0) * x0[i] + s.schedule().sigma(t0) * 0.25);
}

TEST_CASE("img2img reproduces diffusers' DDIM test_full_loop_with_noise") {
    // peers.md c.1 #2: N = 10, t_start = 8 (= strength 0.2: int(10·0.2) = 2), x = add_noise(sample,
    // noise, timesteps[8] = 100), clip_sample, dummy model x·t/(t+1); 354.5418 / 0.4616 (1e-2 / 1e-3).
    ddim_config cfg;
    cfg.clip_sample = true;
    cfg.previous = prev_rule::diffusers_subtract;
    ddim_sampler s(discrete_schedule::named("linear", 1000), cfg);
    s.set_timesteps(10);
    const auto x0 = diffusers::dummy_sample_deter<double>(), noise = diffusers::dummy_noise_deter<double>();
    tensor<double, host_space> x(x0.shape());
    CHECK(img2img_start_with_noise(s, 0.2, x0.cview(), noise.cview(), x.view()) == 8u);
    philox_rng rng(0);
    sample(diffusers::dummy_model{pt::epsilon}, s, x, rng);
    const double sum = diffusers::abs_sum(x);
    MESSAGE("img2img DDIM full loop with noise: sum |x| = " << sum);
    DIFFUSE_CHECK_CLOSE(sum, 354.5418, 1e-2, 0.0);
    DIFFUSE_CHECK_CLOSE(sum / 768.0, 0.4616, 1e-3, 0.0);
}

TEST_CASE("SDEdit with the exact Gaussian and DDIM eta 1: exact mean, covariance converging to the exact law") {
    const auto g = gaussian3();
    Eigen::VectorXd x0(3);
    x0 << 1.5, 0.5, -0.5;  // an input off the data mean
    const discrete_schedule sched = discrete_schedule::named("linear", 1000);
    std::vector<double> kls;
    for (int n : {10, 50, 250, 1000}) {
        ddim_sampler s(sched, ddim_config{.eta = 1.0});
        s.set_timesteps(n);
        const std::size_t begin = img2img_begin_index(static_cast<std::size_t>(n), 0.5);
        const noise_condition l0 = s.state_level(begin);
        const moments out = propagate(g, s, begin, x0);
        const moments target = sdedit_target(g, l0.a, l0.s, x0);
        // The mean is exact for every N: each step's mean map is the true E[x_t' | x_t] (linear in
        // x0_hat), and they compose to E[x0 | x_t] (tower rule, affine maps). Rounding: 1e-12.
        const double mean_err = (out.mean - target.mean).cwiseAbs().maxCoeff();
        const double cov_rel = (out.cov - target.cov).cwiseAbs().maxCoeff() / target.cov.cwiseAbs().maxCoeff();
        kls.push_back(gaussian_kl(out.mean, out.cov, target.mean, target.cov));
        MESSAGE("SDEdit strength 0.5, N = " << n << " (start t = " << s.timesteps()[begin] << "): |mean err| = "
                                            << mean_err << ", max |cov err|/max|cov| = " << cov_rel
                                            << ", KL(out || exact) = " << kls.back());
        CHECK(mean_err < 1e-12);
    }
    // DDIM(η = 1) uses the posterior variance β̃ (fixed_small), exact only for a point mass
    // (closed_forms C7): the covariance error shrinks with N but not to 0 at N = T. Measured KL:
    // 0.225, 1.76e-2, 9.4e-4, 6.5e-5 (N = 10, 50, 250, 1000; max relative covariance error 0.41,
    // 0.12, 0.027, 0.0070): asserted decreasing, and < 1e-4 at N = T (the residual fixed_small
    // bias, 1.5x margin).
    for (std::size_t i = 1; i < kls.size(); ++i) CHECK(kls[i] < kls[i - 1]);
    CHECK(kls.back() < 1e-4);
}

TEST_CASE("SDEdit through img2img draws its noise right: fixed-seed Monte Carlo against the exact moments") {
    // n = 20000 copies of one input through img2img (the rng path: start noise + η = 1 step noise),
    // whitened by the exactly propagated covariance: w = L⁻¹(x − mean) should be N(0, I).
    // 9 statistics (3 means, 3 variances, 3 covariances), each |z| < 5 (two-sided 5.7e-7 each,
    // 5.2e-6 in all): mean z = √n·w̄_j, variance z = (S_jj − 1)/√(2/n), covariance z = √n·S_jk.
    const auto g = gaussian3();
    const exact_gaussian_denoiser model(g, pt::epsilon);
    Eigen::VectorXd x0(3);
    x0 << 1.5, 0.5, -0.5;
    ddim_sampler s(discrete_schedule::named("linear", 1000), ddim_config{.eta = 1.0});
    s.set_timesteps(50);
    const std::int64_t n = 20000;
    tensor<double, host_space> in(shape{n, 3}), x(shape{n, 3});
    for (std::int64_t r = 0; r < n; ++r)
        for (int j = 0; j < 3; ++j) in(r, j) = x0(j);
    philox_rng rng(2024);
    const std::size_t begin = img2img(model, s, 0.6, in.cview(), rng, x.view());
    CHECK(begin == 20u);
    const moments m = propagate(g, s, begin, x0);
    const Eigen::MatrixXd L = m.cov.llt().matrixL();
    const Eigen::MatrixXd centred = to_matrix(x).rowwise() - m.mean.transpose();
    const Eigen::MatrixXd w = L.triangularView<Eigen::Lower>().solve(centred.transpose()).transpose();
    const Eigen::VectorXd wbar = w.colwise().mean();
    const Eigen::MatrixXd S = (w.transpose() * w) / static_cast<double>(n);
    const double sn = std::sqrt(static_cast<double>(n));
    for (int j = 0; j < 3; ++j) {
        const double zm = sn * wbar(j), zv = (S(j, j) - 1.0) / std::sqrt(2.0 / n);
        MESSAGE("coordinate " << j << ": mean z = " << zm << ", variance z = " << zv);
        CHECK(std::abs(zm) < 5.0);
        CHECK(std::abs(zv) < 5.0);
        for (int k = j + 1; k < 3; ++k) {
            MESSAGE("covariance (" << j << ", " << k << ") z = " << sn * S(j, k));
            CHECK(std::abs(sn * S(j, k)) < 5.0);
        }
    }
}

TEST_CASE("img2img rejects bad arguments with readable errors") {
    DIFFUSE_CHECK_ERROR(img2img_begin_index(10, -0.1), "strength", "[0, 1]");
    DIFFUSE_CHECK_ERROR(img2img_begin_index(10, 1.5), "strength", "[0, 1]");
    DIFFUSE_CHECK_ERROR(img2img_begin_index(10, std::nan("")), "strength");
    DIFFUSE_CHECK_ERROR(img2img_begin_index(0, 0.5), "num_inference_steps", ">= 1");
    DIFFUSE_CHECK_ERROR(img2img_begin_index(10, 0.5, 0), "evaluations_per_step");
    ddim_sampler s(discrete_schedule::named("linear", 1000));
    tensor<double, host_space> x0(shape{2, 3}, 0.0), x(shape{2, 3}), bad(shape{3, 2}, 0.0);
    philox_rng rng(0);
    DIFFUSE_CHECK_ERROR(img2img_start(s, 0.5, x0.cview(), rng, x.view()), "num_steps", "set_timesteps");
    s.set_timesteps(10);
    DIFFUSE_CHECK_ERROR(img2img_start(s, 2.0, x0.cview(), rng, x.view()), "strength");
    DIFFUSE_CHECK_ERROR(img2img_start(s, 0.5, bad.cview(), rng, x.view()), "shape");
    DIFFUSE_CHECK_ERROR(img2img_start_with_noise(s, 0.5, x0.cview(), bad.cview(), x.view()), "noise");
}
