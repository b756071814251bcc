// testing/convergence.hpp: the fitted order, its standard error and Student-t interval on exact
// and noisy power laws (against an independent Eigen least-squares solve), pairwise orders,
// fit_last, the round-off floor and pre-asymptotic warnings, every argument error, the three
// call forms, and end to end: ddim_sampler with the exact Gaussian denoiser is order 1.
#include <diffuse/testing/convergence.hpp>

#include <diffuse/analytic/gaussian.hpp>
#include <diffuse/models/exact.hpp>
#include <diffuse/samplers/ddim.hpp>
#include <diffuse/schedules/discrete_schedule.hpp>

#include "samplers/fixtures.hpp"
#include "support/check.hpp"

#include <doctest/doctest.h>

#include <Eigen/Dense>

#include <cmath>
#include <string>
#include <vector>

using namespace diffuse;
using namespace diffuse::testing;

namespace {

std::vector<double> power_law(const std::vector<int>& ns, double c, double p, const std::vector<double>& noise = {}) {
    std::vector<double> e;
    for (std::size_t i = 0; i < ns.size(); ++i)
        e.push_back(c * std::pow(ns[i], -p) * std::exp(noise.empty() ? 0.0 : noise[i]));
    return e;
}

bool contains(const std::string& s, const std::string& frag) { return s.find(frag) != std::string::npos; }

bool any_contains(const std::vector<std::string>& v, const std::string& frag) {
    for (const auto& s : v)
        if (contains(s, frag)) return true;
    return false;
}

}  // namespace

TEST_CASE("convergence order of an exact power law is its exponent with a zero-width interval") {
    const std::vector<int> ns = {10, 20, 40, 80, 160, 320};
    for (double p : {0.5, 1.0, 2.0, 3.7}) {
        const auto r = fit_convergence_order(ns, power_law(ns, 0.37, p), {.expected_order = p});
        // log err is exactly linear in log N up to rounding of pow/log: 1e-12 on the slope.
        DIFFUSE_CHECK_CLOSE(r.slope, p, 1e-12, 0.0);
        DIFFUSE_CHECK_CLOSE(r.constant, 0.37, 0.0, 1e-11);
        CHECK(r.standard_error < 1e-12);
        CHECK(r.ci_low <= r.slope);
        CHECK(r.ci_high >= r.slope);
        for (double s : r.pairwise_slopes) DIFFUSE_CHECK_CLOSE(s, p, 1e-12, 0.0);
        CHECK(r.passed);
        CHECK(r.warnings.empty());
        CHECK(r.fit_points == 6);
        CHECK(r.fit_begin == 0);
        CHECK(contains(r.report(), "PASSED"));
    }
}

TEST_CASE("convergence order of a noisy power law equals an independent least-squares fit with its t interval") {
    const std::vector<int> ns = {8, 16, 32, 64, 100, 250, 1000};
    const std::vector<double> noise = {0.05, -0.08, 0.02, 0.11, -0.04, -0.06, 0.03};
    const std::vector<double> errs = power_law(ns, 2.5, 1.5, noise);
    const auto r = fit_convergence_order(ns, errs, {.expected_order = 1.5, .tolerance = 0.05, .confidence = 0.99});
    // Independent fit: QR least squares of [1, log(1/N)] β = log err; Var(β) = s² (XᵀX)⁻¹.
    const Eigen::Index k = static_cast<Eigen::Index>(ns.size());
    Eigen::MatrixXd X(k, 2);
    Eigen::VectorXd y(k);
    for (Eigen::Index i = 0; i < k; ++i) {
        X(i, 0) = 1.0;
        X(i, 1) = -std::log(static_cast<double>(ns[static_cast<std::size_t>(i)]));
        y(i) = std::log(errs[static_cast<std::size_t>(i)]);
    }
    const Eigen::VectorXd beta = X.colPivHouseholderQr().solve(y);
    const double s2 = (y - X * beta).squaredNorm() / static_cast<double>(k - 2);
    const double se = std::sqrt(s2 * (X.transpose() * X).inverse()(1, 1));
    DIFFUSE_CHECK_CLOSE(r.slope, beta(1), 1e-13, 1e-12);  // two well-conditioned 7-point solves
    DIFFUSE_CHECK_CLOSE(r.constant, std::exp(beta(0)), 0.0, 1e-12);
    DIFFUSE_CHECK_CLOSE(r.standard_error, se, 0.0, 1e-10);
    // t_{0.995, 5} = 4.03214298355523 (table, test_statistics.cpp).
    DIFFUSE_CHECK_CLOSE(r.t_quantile, 4.03214298355523, 0.0, 1e-9);
    DIFFUSE_CHECK_CLOSE(r.ci_high - r.ci_low, 2.0 * 4.03214298355523 * se, 0.0, 1e-9);
    MESSAGE(r.report());
    // The noise moves the slope by ~0.002 (measured 1.5016, 99% interval [1.428, 1.575]): within 0.05 of 1.5.
    CHECK(r.passed);
    CHECK(r.ci_low < 1.5);
    CHECK(r.ci_high > 1.5);
    // Pairwise slopes are the two-point formula.
    for (std::size_t i = 0; i + 1 < ns.size(); ++i)
        DIFFUSE_CHECK_CLOSE(r.pairwise_slopes[i],
                            std::log(errs[i] / errs[i + 1]) / std::log(static_cast<double>(ns[i + 1]) / ns[i]), 1e-14, 0.0);
    // The same data against a wrong order fails, and says so.
    const auto bad = fit_convergence_order(ns, errs, {.expected_order = 2.0, .tolerance = 0.1});
    CHECK_FALSE(bad.passed);
    CHECK(contains(bad.report(), "FAILED"));
}

TEST_CASE("fit_last drops the pre-asymptotic start and the warnings name it") {
    // err = N^-2 (1 + 5/N): pairwise orders fall towards 2 from above (2.41 for N = 5 -> 10).
    const std::vector<int> ns = {5, 10, 20, 40, 80, 160, 320, 640};
    std::vector<double> errs;
    for (int n : ns) errs.push_back(std::pow(n, -2.0) * (1.0 + 5.0 / n));
    const auto all = fit_convergence_order(ns, errs, {.expected_order = 2.0, .tolerance = 0.1});
    const auto last4 = fit_convergence_order(ns, errs, {.expected_order = 2.0, .tolerance = 0.1, .fit_last = 4});
    MESSAGE(all.report());
    MESSAGE(last4.report());
    CHECK_FALSE(all.passed);  // all 8 points: measured 2.127
    CHECK(last4.passed);      // N = 80..640: measured 2.025
    CHECK(last4.fit_begin == 4);
    CHECK(last4.fit_points == 4);
    CHECK(contains(last4.report(), "N = 80..640"));
    // A ladder that stops early: the last pairwise order (N = 20 -> 40: 2.152) is > 0.1 from 2.
    const std::vector<int> short_ns = {5, 10, 20, 40};
    const auto pre = fit_convergence_order(short_ns, std::vector<double>(errs.begin(), errs.begin() + 4),
                                           {.expected_order = 2.0, .tolerance = 0.1});
    CHECK(any_contains(pre.warnings, "pre-asymptotic"));
}

TEST_CASE("errors at the round-off floor are flagged") {
    const std::vector<int> ns = {10, 20, 40, 80, 160, 320, 640};
    std::vector<double> errs;
    for (int n : ns) errs.push_back(std::max(std::pow(n, -4.0), 3e-10) * (1.0 + 0.01 * (n % 3)));
    const auto r = fit_convergence_order(ns, errs, {.expected_order = 4.0, .tolerance = 0.2, .error_floor = 1e-9});
    MESSAGE(r.report());
    CHECK(any_contains(r.warnings, "N = 320: error 3.060e-10 is below the round-off floor"));
    CHECK(any_contains(r.warnings, "flatten"));
    CHECK(contains(r.report(), "warning:"));
    CHECK_FALSE(r.passed);
    // Without a floor only the flattening is detected.
    const auto r2 = fit_convergence_order(ns, errs, {.expected_order = 4.0, .tolerance = 0.2});
    CHECK_FALSE(any_contains(r2.warnings, "below the round-off floor"));
    CHECK(any_contains(r2.warnings, "flatten"));
}

TEST_CASE("convergence order rejects invalid ladders, errors and options") {
    const convergence_options o{.expected_order = 1.0};
    DIFFUSE_CHECK_ERROR(fit_convergence_order({10, 20}, {1e-2, 5e-3}, o), "steps.size()", ">= 3");
    DIFFUSE_CHECK_ERROR(fit_convergence_order({10, 20, 20}, {1e-2, 5e-3, 4e-3}, o), "steps[2] = 20",
                        "strictly increasing");
    DIFFUSE_CHECK_ERROR(fit_convergence_order({10, 5, 20}, {1e-2, 5e-3, 4e-3}, o), "steps[1] = 5");
    DIFFUSE_CHECK_ERROR(fit_convergence_order({0, 5, 20}, {1e-2, 5e-3, 4e-3}, o), "steps[0] = 0", ">= 1");
    DIFFUSE_CHECK_ERROR(fit_convergence_order({10, 20, 40}, {1e-2, 0.0, 4e-3}, o), "errors[1] (N = 20) = 0", "exact");
    DIFFUSE_CHECK_ERROR(fit_convergence_order({10, 20, 40}, {1e-2, -1e-3, 4e-3}, o), "errors[1]", "> 0");
    DIFFUSE_CHECK_ERROR(fit_convergence_order({10, 20, 40}, {1e-2, NAN, 4e-3}, o), "errors[1]", "finite");
    DIFFUSE_CHECK_ERROR(fit_convergence_order({10, 20, 40}, {1e-2, 4e-3}, o), "errors.size()", "steps.size() = 3");
    const std::vector<int> ns = {10, 20, 40};
    const std::vector<double> es = {1e-2, 5e-3, 2.5e-3};
    DIFFUSE_CHECK_ERROR(fit_convergence_order(ns, es, {}), "expected_order", "set convergence_options::expected_order");
    DIFFUSE_CHECK_ERROR(fit_convergence_order(ns, es, {.expected_order = -1.0}), "expected_order");
    DIFFUSE_CHECK_ERROR(fit_convergence_order(ns, es, {.expected_order = 1.0, .tolerance = 0.0}), "tolerance");
    DIFFUSE_CHECK_ERROR(fit_convergence_order(ns, es, {.expected_order = 1.0, .confidence = 1.0}), "confidence",
                        "(0, 1)");
    DIFFUSE_CHECK_ERROR(fit_convergence_order(ns, es, {.expected_order = 1.0, .fit_last = 2}), "fit_last", "[3, 3]");
    DIFFUSE_CHECK_ERROR(fit_convergence_order(ns, es, {.expected_order = 1.0, .fit_last = 4}), "fit_last");
    DIFFUSE_CHECK_ERROR(fit_convergence_order(ns, es, {.expected_order = 1.0, .error_floor = -1.0}), "error_floor");
    // The callable forms check each error as it is returned.
    DIFFUSE_CHECK_ERROR(convergence_order([](int n) { return n == 20 ? 0.0 : 1.0 / n; }, ns, o), "N = 20", "exact");
    tensor<double, host_space> ref(shape{2}, 1.0);
    DIFFUSE_CHECK_ERROR(convergence_order([](int, tensor_view<double, host_space> out) { out[0] = out[1] = 1.0; }, ns, ref, o),
                        "errors[0] (N = 10) = 0");
}

TEST_CASE("convergence order calls a user run for every N, as an error or as an endpoint") {
    const std::vector<int> ns = {4, 8, 16, 32};
    std::vector<int> seen;
    const auto r = convergence_order(
        [&](int n) {
            seen.push_back(n);
            return 3.0 / (n * n);
        },
        ns, {.expected_order = 2.0, .name = "my solver"});
    CHECK(seen == ns);
    DIFFUSE_CHECK_CLOSE(r.slope, 2.0, 1e-12, 0.0);
    CHECK(contains(r.report(), "my solver: PASSED"));

    // Endpoint form: out = ref + (1/N)·w, so max |out − ref| = max|w|/N and RMS = ‖w‖/√d/N.
    tensor<double, host_space> ref = tensor<double, host_space>::from_values(shape{2, 2}, {1.0, -2.0, 0.5, 4.0});
    const std::vector<double> w = {0.3, -0.7, 0.1, 0.2};
    auto run = [&](int n, tensor_view<double, host_space> out) {
        for (int i = 0; i < 4; ++i) out[i] = ref[i] + w[static_cast<std::size_t>(i)] / n;
    };
    const auto rm = convergence_order(run, ns, ref, {.expected_order = 1.0});
    const auto rr = convergence_order(run, ns, ref, {.expected_order = 1.0, .norm = error_norm::rms});
    for (std::size_t i = 0; i < ns.size(); ++i) {
        // ref + w/N rounds once (≤ ½ulp(4) = 4.4e-16): the error is exact to ~1e-15 absolute.
        DIFFUSE_CHECK_CLOSE(rm.errors[i], 0.7 / ns[i], 2e-15, 0.0);
        DIFFUSE_CHECK_CLOSE(rr.errors[i], std::sqrt((0.09 + 0.49 + 0.01 + 0.04) / 4.0) / ns[i], 2e-15, 0.0);
    }
    // Default floor: 1e3·u·max|ref| with u = 2^-53 for double, 2^-24 for float.
    DIFFUSE_CHECK_CLOSE(rm.error_floor, 1e3 * 0x1p-53 * 4.0, 0.0, 1e-15);
    tensor<float, host_space> reff(shape{1}, 2.0f);
    const auto rf = convergence_order([](int n, tensor_view<float, host_space> out) { out[0] = 2.0f + 1.0f / static_cast<float>(n); },
                                      ns, reff, {.expected_order = 1.0});
    DIFFUSE_CHECK_CLOSE(rf.error_floor, 1e3 * 0x1p-24 * 2.0, 0.0, 1e-15);
    // max_abs_error / rms_error directly, and their shape check.
    DIFFUSE_CHECK_CLOSE(max_abs_error(ref.cview(), ref.cview()), 0.0, 0.0, 0.0);
    tensor<double, host_space> other(shape{4}, 0.0);
    DIFFUSE_CHECK_ERROR(max_abs_error(ref.cview(), other.cview()), "shape mismatch");
    DIFFUSE_CHECK_ERROR(rms_error(ref.cview(), other.cview()), "shape mismatch");
}

TEST_CASE("ddim with the exact Gaussian denoiser has convergence order 1 through convergence_order") {
    using namespace diffuse::test;
    // The protocol of closed_forms C2 / test_ddim.cpp: logSNR-uniform table from λ = 4.56 to −5.03,
    // 16 points of the exact marginal at t = 2560, endpoint at ᾱ_0 (set_alpha_to_one = false),
    // error = max |x − pf_ode_flow(x_T)|, fit over the last four N.
    std::vector<double> ls(2561);
    for (int k = 0; k <= 2560; ++k) ls[static_cast<std::size_t>(k)] = 9.12 - (9.12 + 10.06) * k / 2560.0;
    const auto sched = schedules::discrete_schedule::from_log_snr(ls);
    const auto g = gaussian3();
    const models::exact_gaussian_denoiser model(g, process::prediction_type::epsilon);
    const int Tmax = 2560;
    const Eigen::MatrixXd xT = marginal_points(g, sched.alpha(Tmax), sched.sigma(Tmax), 7);
    const auto exact = to_tensor(g.pf_ode_flow(xT, sched.alpha(Tmax), sched.sigma(Tmax), sched.alpha(0), sched.sigma(0)));
    const auto x_start = to_tensor(xT);
    auto run = [&](int n, tensor_view<double, host_space> out) {
        samplers::ddim_sampler s(sched, samplers::ddim_config{.set_alpha_to_one = false});
        std::vector<int> ts;
        for (int k = n; k >= 1; --k) ts.push_back(k * (Tmax / n));
        s.set_timesteps(ts);
        copy(out, x_start.cview());
        philox_rng rng(0);
        samplers::sample(model, s, out, rng);
    };
    const std::vector<int> ns = {10, 20, 40, 80, 160, 320};
    const auto r = convergence_order(run, ns, exact, {.expected_order = 1.0, .tolerance = 0.1, .fit_last = 4,
                                                      .name = "DDIM eta = 0"});
    MESSAGE(r.report());
    // closed_forms C2: 0.988, band [0.9, 1.1]; the same number test_ddim.cpp's fitted_order gives.
    CHECK(r.passed);
    DIFFUSE_CHECK_CLOSE(r.slope, fitted_order(std::vector<int>(ns.begin() + 2, ns.end()),
                                              std::vector<double>(r.errors.begin() + 2, r.errors.end())),
                        1e-12, 0.0);
    CHECK(r.warnings.empty());
    // The RMS error converges at the same order.
    const auto rr = convergence_order(run, ns, exact, {.expected_order = 1.0, .fit_last = 4, .norm = error_norm::rms});
    CHECK(rr.passed);
}
