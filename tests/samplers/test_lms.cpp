// samplers/lms.hpp: the LMS coefficients (exact Gauss–Legendre integration of the Lagrange
// basis: Adams–Bashforth on uniform grids, polynomial exactness on Karras grids), the sampler
// against a transcription of k-diffusion's sample_lms for orders 1..7, measured convergence
// orders for p = 1..4 on the Karras protocol of test_euler.cpp, VE/VP levels, img2img restart
// of the history, diffusers' LMSDiscreteScheduler oracle (peers.md c.1), and errors.
#include <diffuse/samplers/lms.hpp>

#include <diffuse/analytic/gaussian.hpp>
#include <diffuse/core/eigen_adapter.hpp>
#include <diffuse/models/exact.hpp>
#include <diffuse/samplers/euler.hpp>
#include <diffuse/schedules/discrete_schedule.hpp>

#include "samplers/euler_family_fixtures.hpp"
#include "samplers/fixtures.hpp"
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

static_assert(stepping_sampler<lms_sampler, double, host_space>);
static_assert(stepping_sampler<lms_sampler, float, host_space>);

namespace {

using namespace diffuse::test;
using namespace diffuse::test::euler_family;

/// k-diffusion sample_lms transcribed on Eigen rows (coefficients from lms_coefficients).
Eigen::MatrixXd kdiffusion_lms(const analytic::gaussian& g, Eigen::MatrixXd x, const std::vector<double>& sigmas,
                               int order) {
    std::vector<Eigen::MatrixXd> ds;
    for (std::size_t i = 0; i + 1 < sigmas.size(); ++i) {
        const Eigen::MatrixXd d = (x - Eigen::MatrixXd(g.x0_mean(x, 1.0, sigmas[i]))) / sigmas[i];
        ds.push_back(d);
        if (static_cast<int>(ds.size()) > order) ds.erase(ds.begin());
        const int cur = std::min(static_cast<int>(i) + 1, order);
        const std::vector<double> c = lms_coefficients(sigmas, i, cur);
        for (int j = 0; j < cur; ++j) x += c[static_cast<std::size_t>(j)] * ds[ds.size() - 1 - static_cast<std::size_t>(j)];
    }
    return x;
}

}  // namespace

TEST_CASE("gauss_legendre integrates polynomials up to degree 2n minus 1 exactly") {
    for (int n = 1; n <= 10; ++n) {
        const gauss_legendre_rule r = gauss_legendre(n);
        for (int k = 0; k <= 2 * n - 1; ++k) {
            double q = 0.0;
            for (int j = 0; j < n; ++j) q += r.weights[static_cast<std::size_t>(j)] * std::pow(r.nodes[static_cast<std::size_t>(j)], k);
            const double exact = k % 2 == 1 ? 0.0 : 2.0 / (k + 1);
            DIFFUSE_CHECK_CLOSE(q, exact, 1e-14, 1e-14);  // a sum of n O(1) terms
        }
    }
}

TEST_CASE("lms coefficients are Adams-Bashforth on a uniform grid and exact for polynomials on Karras") {
    // Uniform σ (h < 0): AB1 h, AB2 h(3, −1)/2, AB3 h(23, −16, 5)/12, AB4 h(55, −59, 37, −9)/24.
    std::vector<double> u;
    for (int k = 0; k <= 8; ++k) u.push_back(10.0 - 0.5 * k);
    const double h = -0.5;
    const std::vector<std::vector<double>> ab = {
        {1.0}, {1.5, -0.5}, {23.0 / 12, -16.0 / 12, 5.0 / 12}, {55.0 / 24, -59.0 / 24, 37.0 / 24, -9.0 / 24}};
    for (int p = 1; p <= 4; ++p) {
        const std::vector<double> c = lms_coefficients(u, 5, p);
        for (int j = 0; j < p; ++j)
            DIFFUSE_CHECK_CLOSE(c[static_cast<std::size_t>(j)], h * ab[static_cast<std::size_t>(p - 1)][static_cast<std::size_t>(j)], 1e-15, 1e-14);
    }
    // Karras ρ = 7 (strongly non-uniform): Σ_j c_j q(σ_{i−j}) = ∫_{σ_i}^{σ_{i+1}} q for q = τ^m, m < p.
    const auto sig = schedules::karras_sigmas(12, 0.002, 80.0, 7.0, schedules::final_sigma::zero);
    for (int p = 1; p <= 7; ++p)
        for (std::size_t i = static_cast<std::size_t>(p - 1); i + 1 < sig.size(); ++i) {
            const std::vector<double> c = lms_coefficients(sig, i, p);
            for (int mdeg = 0; mdeg < p; ++mdeg) {
                double q = 0.0, scale = 0.0;
                for (int j = 0; j < p; ++j) {
                    const double term = c[static_cast<std::size_t>(j)] * std::pow(sig[i - static_cast<std::size_t>(j)], mdeg);
                    q += term;
                    scale += std::abs(term);
                }
                const double exact = (std::pow(sig[i + 1], mdeg + 1) - std::pow(sig[i], mdeg + 1)) / (mdeg + 1);
                // Cancellation among the terms: the error scales with Σ|c_j q(σ_{i−j})|.
                DIFFUSE_CHECK_CLOSE(q, exact, 1e-13 * scale, 0.0);
            }
        }
}

TEST_CASE("lms converges with its order p for p 1 to 4 on Karras sigmas") {
    // The test_euler.cpp protocol. The start-up steps use lower orders (p' = 1, 2, ... as the
    // history fills, both peers' rule), which bounds the global order by the start-up's unless the
    // start-up error is small: on Karras ρ = 7 from σ_max = e^{5.03} the first steps are where
    // d = (y − D)/σ ≈ eps is nearly constant (σ ≫ data scale), so the start-up errors are tiny.
    const std::vector<int> ns = {10, 20, 40, 80, 160, 320};
    // Measured slopes (N = 40..320) are printed; bands: p = 1: [0.9, 1.1] (Euler, C2);
    // p = 2: [1.85, 2.2] (C2 order-2 band); p = 3: [2.7, 3.3] and p = 4: [3.5, 4.4] (±0.3/±0.45
    // pre-asymptotic drift, as C2's order-3 band).
    const std::vector<std::pair<double, double>> band = {{0.9, 1.1}, {1.85, 2.2}, {2.7, 3.3}, {3.5, 4.4}};
    for (int p = 1; p <= 4; ++p) {
        const auto errs = ladder_errors(
            [p](std::vector<double> s) { return lms_sampler(std::move(s), lms_config{.order = p}); }, gaussian3(),
            pt::epsilon, ns, "LMS(" + std::to_string(p) + ")");
        const double slope = last4_order(ns, errs);
        MESSAGE("LMS order " << p << " fitted order (LSQ, N = 40..320): " << slope);
        CHECK(slope > band[static_cast<std::size_t>(p - 1)].first);
        CHECK(slope < band[static_cast<std::size_t>(p - 1)].second);
    }
}

TEST_CASE("lms equals the k-diffusion sample_lms loop for orders 1 to 7") {
    const auto g = gaussian3();
    const auto sig = schedules::karras_sigmas(11, 0.002, 80.0, 7.0, schedules::final_sigma::zero);
    const Eigen::MatrixXd xT = marginal_points(g, 1.0, 80.0, 3);
    for (int order = 1; order <= 7; ++order) {
        const Eigen::MatrixXd ref = kdiffusion_lms(g, xT, sig, order);
        for (pt type : {pt::epsilon, pt::sample}) {
            lms_sampler s(sig, lms_config{.order = order});
            auto x = to_tensor(xT);
            philox_rng rng(0);
            sample(exact_gaussian_denoiser(g, type), s, x, rng);
            const double err = (to_matrix(x) - ref).cwiseAbs().maxCoeff();
            CHECK_MESSAGE(err < 1e-12, "order " << order << ": |LMS − k-diffusion loop| = " << err);
        }
    }
    // Order 1 is Euler.
    lms_sampler l1(sig, lms_config{.order = 1});
    euler_sampler e(sig);
    auto x = to_tensor(xT), y = to_tensor(xT);
    philox_rng rng(0);
    sample(exact_gaussian_denoiser(g, pt::epsilon), l1, x, rng);
    sample(exact_gaussian_denoiser(g, pt::epsilon), e, y, rng);
    CHECK((to_matrix(x) - to_matrix(y)).cwiseAbs().maxCoeff() < 1e-12);
}

TEST_CASE("lms on VP levels equals the VE run and restarts its history at begin_index") {
    const auto g = gaussian3();
    const exact_gaussian_denoiser model(g, pt::v_prediction);
    const auto sig = schedules::karras_sigmas(10, 0.01, 50.0, 7.0, schedules::final_sigma::zero);
    lms_sampler ve(sig), vp(level_sequence::vp(sig), lms_config{.input = model_input::vp});
    const Eigen::MatrixXd xT = marginal_points(g, 1.0, 50.0, 6);
    auto x = to_tensor(xT), y = to_tensor(xT / std::sqrt(1.0 + 2500.0));
    philox_rng rng(0);
    sample(model, ve, x, rng);
    sample(model, vp, y, rng);
    CHECK((to_matrix(x) - to_matrix(y)).cwiseAbs().maxCoeff() < 1e-12);
    // Start at step 4 (img2img): the same as LMS on the tail levels, bitwise; a second run reuses
    // the sampler (history restarted).
    lms_sampler full(sig);
    full.set_begin_index(4);
    lms_sampler tail(level_sequence::ve(sig).tail(4));
    const Eigen::MatrixXd x4 = marginal_points(g, 1.0, sig[4], 2);
    for (int run = 0; run < 2; ++run) {
        auto a = to_tensor(x4), b = to_tensor(x4);
        sample(model, full, a, rng);
        sample(model, tail, b, rng);
        for (std::int64_t k = 0; k < a.numel(); ++k) CHECK(a[k] == b[k]);
    }
    CHECK(full.step_order(4) == 1);
    CHECK(full.step_order(7) == 4);
}

TEST_CASE_TEMPLATE("lms reproduces diffusers LMSDiscreteScheduler test_full_loop_no_noise with T 1100", T, float,
                   double) {
    // peers.md c.1 (published): T = 1100, linear 1e-4..0.02, linspace, 10 steps, order 4, the
    // scaled x passed to step(). Tolerances as diffusers: 1e-2 (sum), 1e-3 (mean). With the
    // float64 schedule the sum is 1006.3975 (0.0095 off: the oracle was made with float32 ᾱ).
    const auto sched = diffusers_float32_linear(1100, 1e-4, 0.02);  // diffusers' float32 ᾱ
    const level_sequence l = diffusers_sigma_levels(sched, 10, schedules::spacing::linspace, 0,
                                                    schedules::sigma_interpolation::linear, final_level::zero,
                                                    schedules::precision::float32);
    lms_sampler s(l, lms_config{.order = 4, .input = model_input::vp, .prediction = pt::epsilon});
    const auto x = diffusers_test_loop<T>(
        s, diffusers_init_noise_sigma(l, schedules::spacing::linspace), pt::epsilon,
        [&](const tensor<T, host_space>& out, std::size_t i, tensor<T, host_space>& xs, philox_rng& rng) {
            s.step(out.cview(), i, xs.view(), rng);
        });
    const double sum = abs_sum(x);
    MESSAGE("diffusers LMS: sum " << std::to_string(sum) << ", mean " << std::to_string(sum / 768.0));
    DIFFUSE_CHECK_CLOSE(sum, 1006.388, 1e-2, 0.0);
    DIFFUSE_CHECK_CLOSE(sum / 768.0, 1.31, 1e-3, 0.0);
}

TEST_CASE("lms rejects order below 1, out-of-order steps and steps before set_levels") {
    const std::vector<double> sig = {4.0, 2.0, 1.0, 0.0};
    DIFFUSE_CHECK_ERROR(lms_sampler(sig, lms_config{.order = 0}), "order", ">= 1");
    DIFFUSE_CHECK_ERROR(lms_sampler(sig, lms_config{.order = -3}), "order");
    DIFFUSE_CHECK_ERROR(lms_coefficients(sig, 1, 3), "order", "not enough");
    DIFFUSE_CHECK_ERROR(lms_coefficients(sig, 3, 1), "i");
    DIFFUSE_CHECK_ERROR(gauss_legendre(0), "n");
    tensor<double, host_space> x(shape{2, 3}, 0.0), m(shape{2, 3}, 0.0);
    philox_rng rng(0);
    lms_sampler empty;
    DIFFUSE_CHECK_ERROR(empty.step(m.cview(), 0, x.view(), rng), "step index", "[0, 0)");
    lms_sampler s(sig);
    DIFFUSE_CHECK_ERROR(s.step(m.cview(), 1, x.view(), rng), "must follow step 0");
    s.step(m.cview(), 0, x.view(), rng);
    DIFFUSE_CHECK_ERROR(s.step(m.cview(), 2, x.view(), rng), "must follow step 1");
}
