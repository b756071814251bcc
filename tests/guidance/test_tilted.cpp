// What CFG targets for Gaussian class conditionals (analytic/guided_gaussian.hpp; docs/guidance.md §8;
// closed_forms D3–D4): the tilted density p(x|y)^g p(x)^{1−g}, where it is Gaussian; when CFG samples it
// exactly (equal covariances: at every t) and when only its t → 0 limit agrees (unequal covariances: the
// deterministic samplers converge, with their order, to the CFG ODE's own closed form instead).

#include "support/check.hpp"

#include <diffuse/analytic/guided_gaussian.hpp>
#include <diffuse/guidance/cfg.hpp>
#include <diffuse/guidance/classifier.hpp>
#include <diffuse/models/exact.hpp>
#include <diffuse/samplers/dpm_solver_multistep.hpp>
#include <diffuse/samplers/euler.hpp>
#include <diffuse/samplers/sampler.hpp>
#include <diffuse/schedules/sigmas.hpp>
#include <diffuse/testing/convergence.hpp>

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <vector>

using namespace diffuse;
using analytic::gaussian;
using guidance::cfg_condition;
using guidance::pair_member;
using models::exact_gaussian_denoiser;
using models::noise_condition;
using pt = process::prediction_type;

namespace {

const cfg_condition<pair_member> pair_cond{pair_member::first, pair_member::second};

/// Rows x_T [n, 2] at σ_max (VE), fixed.
tensor<double, host_space> start_points(double sigma_max) {
    return tensor<double, host_space>::from_values(
        shape{4, 2}, {0.3 * sigma_max, -0.2 * sigma_max, -1.1 * sigma_max, 0.4 * sigma_max, 0.05 * sigma_max,
                      0.9 * sigma_max, 1.3 * sigma_max, 1.0 * sigma_max});
}

Eigen::MatrixXd as_rows(const tensor<double, host_space>& x) {
    Eigen::MatrixXd m(x.size(0), x.size(1));
    for (std::int64_t i = 0; i < x.size(0); ++i)
        for (std::int64_t j = 0; j < x.size(1); ++j) m(i, j) = x(i, j);
    return m;
}

double max_abs_diff(const tensor<double, host_space>& x, const Eigen::MatrixXd& ref) {
    return (as_rows(x) - ref).cwiseAbs().maxCoeff();
}

/// Runs `make_sampler(N)` with the guided model from x_T and returns max|x − ref| at the end.
template <class Model, class Make>
testing::convergence_result order_of(const Model& guided, Make make_sampler, const Eigen::MatrixXd& ref,
                                     const std::vector<int>& ladder, double expected, const char* name) {
    auto run = [&](int n) {
        auto sampler = make_sampler(n);
        tensor<double, host_space> x = start_points(20.0);
        philox_rng rng(0);
        samplers::sample(guided, sampler, x, rng, {}, pair_cond);
        return max_abs_diff(x, ref);
    };
    testing::convergence_options o;
    o.expected_order = expected;
    o.tolerance = 0.15;
    o.name = name;
    const testing::convergence_result r = testing::convergence_order(run, ladder, o);
    MESSAGE(r.report());
    return r;
}

}  // namespace

TEST_CASE("tilted_gaussian: mean and covariance of p(x|y)^g p(x)^(1−g) against grid quadrature") {
    Eigen::MatrixXd sc(2, 2), su(2, 2);
    sc << 0.5, 0.2, 0.2, 0.4;  // does not commute with su
    su << 1.5, -0.3, -0.3, 1.0;
    const gaussian cond(Eigen::Vector2d(1.0, -0.5), sc), uncond(Eigen::Vector2d(-0.2, 0.3), su);
    for (double g : {1.0, 2.0, 4.0}) {
        const gaussian t = analytic::tilted_gaussian(cond, uncond, g);
        // Quadrature of exp(g·log N_c + (1 − g)·log N_u) on an 801² grid over ±10 tilt standard deviations
        // (the tail beyond holds e^-50 of the mass):
        // the trapezoid rule on a smooth, rapidly decaying integrand is accurate far beyond 1e-9 here.
        const int n = 801;
        const double half = 10.0 * std::sqrt(t.cov().diagonal().maxCoeff());
        const double h = 2 * half / (n - 1);
        Eigen::MatrixXd pts(n * n, 2);
        for (int i = 0; i < n; ++i)
            for (int j = 0; j < n; ++j) pts.row(i * n + j) << t.mean()(0) - half + i * h, t.mean()(1) - half + j * h;
        const Eigen::VectorXd logw = g * cond.log_prob(pts, 1.0, 0.0) + (1.0 - g) * uncond.log_prob(pts, 1.0, 0.0);
        const Eigen::ArrayXd w = (logw.array() - logw.maxCoeff()).exp();
        const double z = w.sum();
        const Eigen::Vector2d mean = (pts.array().colwise() * w).colwise().sum().transpose() / z;
        Eigen::Matrix2d cov = Eigen::Matrix2d::Zero();
        for (Eigen::Index k = 0; k < pts.rows(); ++k) {
            const Eigen::Vector2d dv = pts.row(k).transpose() - mean;
            cov += w(k) * dv * dv.transpose();
        }
        cov /= z;
        CAPTURE(g);
        for (int i = 0; i < 2; ++i) DIFFUSE_CHECK_CLOSE(t.mean()(i), mean(i), 1e-9, 0.0);
        for (int i = 0; i < 4; ++i) DIFFUSE_CHECK_CLOSE(t.cov()(i), cov(i), 1e-9, 0.0);
    }
    // 1-D, equal means l_c = 1, l_u = 2, g = 2: precision 2/1 − 1/2 = 1.5 (the weighted harmonic mean 2/3)
    const gaussian t1 = analytic::tilted_gaussian(gaussian(Eigen::VectorXd::Zero(1), Eigen::MatrixXd::Constant(1, 1, 1.0)),
                                                  gaussian(Eigen::VectorXd::Zero(1), Eigen::MatrixXd::Constant(1, 1, 2.0)), 2.0);
    DIFFUSE_CHECK_CLOSE(t1.cov()(0, 0), 2.0 / 3.0, 0.0, 4 * test::eps<double>);
    // Not a Gaussian when the precision is not positive definite (conditioning widens a direction)
    DIFFUSE_CHECK_ERROR(analytic::tilted_gaussian(gaussian(Eigen::VectorXd::Zero(1), Eigen::MatrixXd::Constant(1, 1, 3.0)),
                                                  gaussian(Eigen::VectorXd::Zero(1), Eigen::MatrixXd::Constant(1, 1, 1.0)),
                                                  4.0),
                        "smallest eigenvalue", "positive definite");
}

TEST_CASE("equal covariances: CFG is the tilted model at every level, and samplers converge to the tilt") {
    Eigen::MatrixXd c(2, 2);
    c << 0.6, 0.25, 0.25, 0.5;
    const gaussian cond(Eigen::Vector2d(1.0, 0.5), c), uncond(Eigen::Vector2d(-0.5, 0.2), c);
    const double g = 3.0;
    const gaussian tilt = analytic::tilted_gaussian(cond, uncond, g);
    for (int i = 0; i < 2; ++i)
        DIFFUSE_CHECK_CLOSE(tilt.mean()(i), g * cond.mean()(i) + (1 - g) * uncond.mean()(i), 1e-14, 1e-14);
    const guidance::model_pair pair(exact_gaussian_denoiser(cond, pt::sample), exact_gaussian_denoiser(uncond, pt::sample));
    const auto guided = guidance::cfg(pair, {.weight = g});
    const exact_gaussian_denoiser exact_tilt(tilt, pt::sample);
    const tensor<double, host_space> x = start_points(1.0);
    for (double sigma : {0.0, 0.01, 0.3, 1.0, 5.0, 80.0}) {
        const noise_condition level = noise_condition::ve(sigma);
        tensor<double, host_space> a(x.shape()), b(x.shape());
        guided(a.view(), x.cview(), level, pair_cond);
        exact_tilt(b.view(), x.cview(), level);
        for (std::int64_t i = 0; i < x.numel(); ++i) DIFFUSE_CHECK_CLOSE(a[i], b[i], 1e-13, 1e-13);
    }
    // The exact ODE endpoint of the tilt, and Euler (order 1) / DPM-Solver++(2M) (order 2) converging to it.
    const double smax = 20.0, smin = 0.05;
    const Eigen::MatrixXd ref = tilt.pf_ode_flow(as_rows(start_points(smax)), 1.0, smax, 1.0, smin);
    const std::vector<int> ladder = {16, 32, 64, 128, 256};
    auto euler = [&](int n) {
        return samplers::euler_sampler(schedules::exponential_sigmas(n + 1, smin, smax, schedules::final_sigma::none));
    };
    CHECK(order_of(guided, euler, ref, ladder, 1.0, "CFG (equal covariances), Euler -> tilt").passed);
    auto dpm = [&](int n) {
        return samplers::dpm_solver_multistep_sampler(
            samplers::level_sequence::ve(schedules::exponential_sigmas(n + 1, smin, smax, schedules::final_sigma::none)));
    };
    CHECK(order_of(guided, dpm, ref, ladder, 2.0, "CFG (equal covariances), DPM-Solver++(2M) -> tilt").passed);
}

TEST_CASE("unequal covariances: only the t -> 0 score is the tilt's, the samplers converge to the CFG ODE's closed form") {
    // diagonal, equal means: l_c = (1, 0.5), l_u = (2, 0.8)
    const Eigen::Vector2d mu(0.4, -0.3);
    const gaussian cond = gaussian::diagonal(mu, Eigen::Vector2d(1.0, 0.5));
    const gaussian uncond = gaussian::diagonal(mu, Eigen::Vector2d(2.0, 0.8));
    const double g = 2.0;
    const gaussian tilt = analytic::tilted_gaussian(cond, uncond, g);
    const guidance::model_pair pair(exact_gaussian_denoiser(cond, pt::score), exact_gaussian_denoiser(uncond, pt::score));
    const auto guided = guidance::cfg(pair, {.weight = g});
    const exact_gaussian_denoiser exact_tilt(tilt, pt::score);
    const tensor<double, host_space> x = start_points(1.0);
    // score gap |s_g − ∇log p_{tilt,σ}|: 0 at σ = 0 (round-off), positive and shrinking as σ -> 0
    double previous = INFINITY;
    for (double sigma : {1.0, 0.3, 0.1, 0.03, 0.01, 0.0}) {
        tensor<double, host_space> a(x.shape()), b(x.shape());
        guided(a.view(), x.cview(), noise_condition::ve(sigma), pair_cond);
        exact_tilt(b.view(), x.cview(), noise_condition::ve(sigma));
        double gap = 0.0;
        for (std::int64_t i = 0; i < x.numel(); ++i) gap = std::max(gap, std::abs(a[i] - b[i]));
        CAPTURE(sigma);
        if (sigma == 0.0) {
            CHECK(gap <= 1e-14);
        } else {
            CHECK(gap > 1e-6);
            CHECK(gap < previous);
        }
        previous = gap;
    }
    // Samplers converge, with their order, to the exact CFG ODE map — not to the tilt's ODE map.
    const double smax = 20.0, smin = 0.05;
    const Eigen::MatrixXd x_t = as_rows(start_points(smax));
    const Eigen::MatrixXd ref = analytic::cfg_pf_ode_flow(cond, uncond, g, x_t, 1.0, smax, 1.0, smin);
    const std::vector<int> ladder = {16, 32, 64, 128, 256};
    auto euler = [&](int n) {
        return samplers::euler_sampler(schedules::exponential_sigmas(n + 1, smin, smax, schedules::final_sigma::none));
    };
    CHECK(order_of(guided, euler, ref, ladder, 1.0, "CFG (unequal covariances), Euler -> CFG ODE").passed);
    auto dpm = [&](int n) {
        return samplers::dpm_solver_multistep_sampler(
            samplers::level_sequence::ve(schedules::exponential_sigmas(n + 1, smin, smax, schedules::final_sigma::none)));
    };
    CHECK(order_of(guided, dpm, ref, ladder, 2.0, "CFG (unequal covariances), DPM-Solver++(2M) -> CFG ODE").passed);
    const Eigen::MatrixXd tilt_ref = tilt.pf_ode_flow(x_t, 1.0, smax, 1.0, smin);
    CHECK((ref - tilt_ref).cwiseAbs().maxCoeff() > 0.05);  // a different endpoint, by far more than the sampler error

    // The laws: from x_T ~ p_σmax of the unconditional model the ODE's variance tends to l_c^g l_u^{1−g}
    // (geometric) as σ_max -> inf, the tilt's is 1/(g/l_c + (1 − g)/l_u) (harmonic).
    const double lc = 1.0, lu = 2.0, big = 1e4;
    const Eigen::ArrayXd gain = analytic::cfg_flow_gain(Eigen::ArrayXd::Constant(1, lc), Eigen::ArrayXd::Constant(1, lu), g,
                                                        big, 0.0);
    const double ode_var = gain(0) * gain(0) * (lu + big * big);
    DIFFUSE_CHECK_CLOSE(ode_var, std::pow(lc, g) * std::pow(lu, 1 - g), 0.0, 1e-7);  // 0.5
    const gaussian tilt1 = analytic::tilted_gaussian(gaussian(Eigen::VectorXd::Zero(1), Eigen::MatrixXd::Constant(1, 1, lc)),
                                                     gaussian(Eigen::VectorXd::Zero(1), Eigen::MatrixXd::Constant(1, 1, lu)), g);
    DIFFUSE_CHECK_CLOSE(tilt1.cov()(0, 0), 2.0 / 3.0, 0.0, 4 * test::eps<double>);  // harmonic, not 0.5
    DIFFUSE_CHECK_ERROR(analytic::cfg_flow_gain(Eigen::ArrayXd::Constant(1, -1.0), Eigen::ArrayXd::Constant(1, lu), g, 1.0, 0.0),
                        "l_cond", "variances > 0");
}
