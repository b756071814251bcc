// Testing your own sampler with diffuse::testing (docs/testing-your-sampler.md).
//
//   example_testing_your_sampler [output-folder]      (default: testing-output)
//
// The two samplers below are what a user writes by hand: a DDIM loop and an ancestral DDPM loop
// on their own continuous VP schedule, calling only a denoiser. diffuse supplies the exact
// denoiser of Gaussian data (so the right answer is known in closed form) and the checks:
//   1. convergence_order: DDIM against the exact probability-flow endpoint is first order;
//   2. moment_test: DDPM with σ² = β is exact for unit-variance data at any step count, so its
//      samples must match N(μ, I); the σ² = β̃ variant (= DDIM η = 1) under-disperses at 10 steps
//      and the same test must catch it;
//   3. reference_trajectory: a seeded run is recorded, saved as .npy files, reloaded and compared
//      with a rerun step by step (bitwise), and a changed sampler is caught at its first step.
// Prints every report; exits 1 if a check does not give the expected verdict. Runs in CTest.

#include <diffuse/analytic/gaussian.hpp>
#include <diffuse/core/philox.hpp>
#include <diffuse/core/tensor.hpp>
#include <diffuse/models/exact.hpp>
#include <diffuse/testing/testing.hpp>

#include <Eigen/Dense>

#include <cmath>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

using namespace diffuse;

// ---- The user's code: a schedule and two samplers, written without diffuse's samplers. ------

/// VP-linear schedule (Song et al. 2021): ᾱ(t) = exp(−β_min t − ½(β_max − β_min) t²), t in [0, 1].
struct vp_linear {
    double beta_min = 0.1, beta_max = 20.0;
    double alpha_bar(double t) const { return std::exp(-beta_min * t - 0.5 * (beta_max - beta_min) * t * t); }
    models::noise_condition level(double t) const {  // x_t = a·x0 + s·eps
        const double ab = alpha_bar(t);
        return {std::sqrt(ab), std::sqrt(1.0 - ab)};
    }
};

/// DDIM (η = 0) from t = 1 to t_end on N uniform time steps; x [B, d] holds x_1 on entry.
/// on_step(k, x) is called after each step (for recording).
template <class Model, class OnStep>
void my_ddim(const Model& model, const vp_linear& sched, tensor<double, host_space>& x, int n, double t_end,
             OnStep&& on_step) {
    tensor<double, host_space> eps(x.shape());
    for (int k = 0; k < n; ++k) {
        const double t = 1.0 - (1.0 - t_end) * k / n, t_next = 1.0 - (1.0 - t_end) * (k + 1) / n;
        const models::noise_condition l = sched.level(t), l_next = sched.level(t_next);
        model(eps.view(), x.cview(), l);  // eps_hat(x_t)
        for (std::int64_t i = 0; i < x.numel(); ++i) {
            const double x0 = (x[i] - l.s * eps[i]) / l.a;  // Tweedie estimate of x0
            x[i] = l_next.a * x0 + l_next.s * eps[i];
        }
        on_step(k, x);
    }
}

enum class ddpm_variance { large, small };  // σ² = β (fixed_large) or β̃ (fixed_small = DDIM η = 1)

/// Ancestral DDPM (Ho et al. 2020, Eq. 6–7, on respaced steps) from t = 1 to t = 0.
template <class Model, class OnStep>
void my_ddpm(const Model& model, const vp_linear& sched, tensor<double, host_space>& x, int n, ddpm_variance var,
             philox_rng& rng, OnStep&& on_step) {
    tensor<double, host_space> eps(x.shape());
    for (int k = 0; k < n; ++k) {
        const double t = 1.0 - static_cast<double>(k) / n, t_next = 1.0 - static_cast<double>(k + 1) / n;
        const double ab = sched.alpha_bar(t), ab_next = sched.alpha_bar(t_next);
        const double beta = 1.0 - ab / ab_next;                                // the respaced step's β
        const double c1 = std::sqrt(ab_next) * beta / (1.0 - ab);              // posterior mean: c1·x0 + c2·x
        const double c2 = std::sqrt(ab / ab_next) * (1.0 - ab_next) / (1.0 - ab);
        const double sigma2 = var == ddpm_variance::large ? beta : (1.0 - ab_next) / (1.0 - ab) * beta;
        const double sigma = std::sqrt(sigma2);
        model(eps.view(), x.cview(), sched.level(t));
        for (std::int64_t i = 0; i < x.numel(); ++i) {
            const double x0 = (x[i] - std::sqrt(1.0 - ab) * eps[i]) / std::sqrt(ab);
            x[i] = c1 * x0 + c2 * x[i] + sigma * rng.normal();
        }
        on_step(k, x);
    }
}

// ---- The checks. ----------------------------------------------------------------------------

namespace {

tensor<double, host_space> to_tensor(const Eigen::MatrixXd& m) {
    tensor<double, host_space> t(shape{m.rows(), m.cols()});
    for (Eigen::Index i = 0; i < m.rows(); ++i)
        for (Eigen::Index j = 0; j < m.cols(); ++j) t(i, j) = m(i, j);
    return t;
}

/// n points of the exact marginal N(a μ, a²Σ + s²I) of `g` at level l.
Eigen::MatrixXd marginal_samples(const analytic::gaussian& g, models::noise_condition l, Eigen::Index n,
                                 philox_rng& rng) {
    const Eigen::MatrixXd x0 = g.sample(n, rng);
    Eigen::MatrixXd z(n, g.dimension());
    for (Eigen::Index i = 0; i < n; ++i)
        for (Eigen::Index j = 0; j < g.dimension(); ++j) z(i, j) = rng.normal();
    return l.a * x0 + l.s * z;
}

int failures = 0;

void expect(bool ok, const std::string& what) {
    std::printf("%s %s\n\n", ok ? "[ok]  " : "[FAIL]", what.c_str());
    if (!ok) ++failures;
}

}  // namespace

int main(int argc, char** argv) try {
    const std::string out = argc > 1 ? argv[1] : "testing-output";
    const vp_linear sched;
    auto no_recording = [](int, const tensor<double, host_space>&) {};

    // 1. Convergence order of the user's DDIM against the exact PF-ODE endpoint.
    //    Data N(μ, Σ) with correlated coordinates; 16 starting points from the exact marginal at
    //    t = 1; the run ends at t = 1e-3, not at σ = 0 (closed_forms C4.3).
    Eigen::VectorXd mu(2);
    mu << 0.5, -1.0;
    Eigen::MatrixXd cov(2, 2);
    cov << 1.0, 0.6, 0.6, 0.5;
    const analytic::gaussian data(mu, cov);
    const models::exact_gaussian_denoiser model(data);  // predicts epsilon
    const double t_end = 1e-3;
    philox_rng rng(2024);
    const Eigen::MatrixXd x_start = marginal_samples(data, sched.level(1.0), 16, rng);
    const models::noise_condition l1 = sched.level(1.0), l_end = sched.level(t_end);
    const auto exact_end = to_tensor(data.pf_ode_flow(x_start, l1.a, l1.s, l_end.a, l_end.s));

    const auto order = testing::convergence_order(
        [&](int n, tensor_view<double, host_space> endpoint) {
            tensor<double, host_space> x = to_tensor(x_start);
            my_ddim(model, sched, x, n, t_end, no_recording);
            copy(endpoint, x.cview());
        },
        {10, 20, 40, 80, 160, 320}, exact_end,
        {.expected_order = 1.0, .tolerance = 0.1, .fit_last = 4, .name = "my_ddim convergence order"});
    std::printf("%s", order.report().c_str());
    expect(order.passed, "my_ddim is first order");

    // 2. Moments of the user's DDPM. With unit-variance data N(μ, I) the reverse kernel with
    //    σ² = β is the true q(x_s | x_t) (closed_forms C7), so from the exact x_1 ~ N(a_1 μ, I) the
    //    samples are exactly N(μ, I) for any number of steps. σ² = β̃ is exact only for a point
    //    mass and must fail.
    const auto unit = analytic::gaussian::isotropic(mu, 1.0);
    const models::exact_gaussian_denoiser unit_model(unit);
    const int n_samples = 50000, n_steps = 10;
    auto ddpm_samples = [&](ddpm_variance var, std::uint64_t seed) {
        philox_rng r(seed);
        tensor<double, host_space> x = to_tensor(marginal_samples(unit, sched.level(1.0), n_samples, r));
        my_ddpm(unit_model, sched, x, n_steps, var, r, no_recording);
        return x;
    };
    const auto large = testing::moment_test(ddpm_samples(ddpm_variance::large, 7), unit,
                                            {.name = "my_ddpm (sigma^2 = beta) moments"});
    std::printf("%s", large.report().c_str());
    expect(large.passed, "my_ddpm with sigma^2 = beta samples N(mu, I)");
    const auto small = testing::moment_test(ddpm_samples(ddpm_variance::small, 7), unit,
                                            {.name = "my_ddpm (sigma^2 = beta tilde) moments"});
    std::printf("%s", small.report().c_str());
    expect(!small.passed && !small.variance_passed,
           "my_ddpm with sigma^2 = beta tilde under-disperses at 10 steps, and moment_test sees it");

    // 3. A golden trajectory: record a seeded run, save it, reload it, rerun and compare.
    auto recorded_run = [&](ddpm_variance var) {
        testing::reference_trajectory<double> rec;
        philox_rng r(99);
        tensor<double, host_space> x = to_tensor(marginal_samples(unit, sched.level(1.0), 8, r));
        rec.record_initial(x, 1.0);
        my_ddpm(unit_model, sched, x, n_steps, var, r,
                [&](int k, const tensor<double, host_space>& xk) { rec.record(k, xk, 1.0 - (k + 1.0) / n_steps); });
        return rec;
    };
    const std::string folder = out + "/golden_ddpm";
    recorded_run(ddpm_variance::large).save(folder);
    const auto golden = testing::reference_trajectory<double>::load(folder);
    const auto same = testing::compare_trajectories(recorded_run(ddpm_variance::large), golden, 0.0, 0.0);
    std::printf("%s", same.report().c_str());
    expect(same.passed, "a rerun with the same seed reproduces the saved trajectory bitwise");
    const auto changed = testing::compare_trajectories(recorded_run(ddpm_variance::small), golden, 1e-12, 1e-12);
    std::printf("%s", changed.report().c_str());
    expect(!changed.passed && changed.first_mismatch_step == 0,
           "a changed variance is caught at the first step");

    std::printf("%s: %d check(s) without the expected verdict\n", failures ? "FAILED" : "PASSED", failures);
    return failures ? 1 : 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
}
