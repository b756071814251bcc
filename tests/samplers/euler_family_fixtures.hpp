#pragma once
// Helpers of the Euler-family tests (test_euler_ancestral, test_heun, test_dpm2, test_lms,
// test_churn, test_euler): the order-ladder protocol of test_euler.cpp, the exact output
// moments of a stochastic sampler from its affine impulse responses (closed_forms C9 / F1),
// and diffusers' scheduler-test loop (peers.md c.1; the fixtures are diffusers_dummy.hpp's).

#include <diffuse/analytic/gaussian.hpp>
#include <diffuse/backend/lincomb.hpp>
#include <diffuse/core/philox.hpp>
#include <diffuse/core/tensor.hpp>
#include <diffuse/models/exact.hpp>
#include <diffuse/samplers/sampler.hpp>
#include <diffuse/schedules/beta_schedule.hpp>
#include <diffuse/schedules/discrete_schedule.hpp>
#include <diffuse/schedules/sigmas.hpp>

#include "samplers/diffusers_dummy.hpp"
#include "samplers/fixtures.hpp"
#include "samplers/order_fixtures.hpp"

#include <Eigen/Dense>
#include <doctest/doctest.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

namespace diffuse::test::euler_family {

using diffuse::models::exact_gaussian_denoiser;
using diffuse::process::prediction_type;

// ---- the order protocol of test_euler.cpp (closed_forms C2) ---------------------------------

/// λ from −5.03 to 4.56: σ_max = e^{5.03}, σ_min = e^{−4.56}; Karras ρ = 7, no final 0 (C4.3).
inline const double order_sigma_min = std::exp(-4.56);
inline const double order_sigma_max = std::exp(5.03);

/// N + 1 Karras levels (N method steps) of the order protocol.
inline std::vector<double> order_sigmas(int n) {
    return schedules::karras_sigmas(n + 1, order_sigma_min, order_sigma_max, 7.0, schedules::final_sigma::none);
}

/// Max error at σ_min against the exact PF-ODE flow of the 16 marginal points (seed 7) for each N.
/// make(sigmas) returns the sampler; it runs with sample() (no churn, no noise).
template <class Make>
std::vector<double> ladder_errors(Make make, const analytic::gaussian& g, prediction_type type,
                                  const std::vector<int>& ns, const std::string& name) {
    const exact_gaussian_denoiser model(g, type);
    const Eigen::MatrixXd xT = marginal_points(g, 1.0, order_sigma_max, 7);
    const Eigen::MatrixXd exact = g.pf_ode_flow(xT, 1.0, order_sigma_max, 1.0, order_sigma_min);
    std::vector<double> errs;
    for (int n : ns) {
        auto s = make(order_sigmas(n));
        auto x = to_tensor(xT);
        philox_rng rng(0);
        samplers::sample(model, s, x, rng);
        errs.push_back((to_matrix(x) - exact).cwiseAbs().maxCoeff());
        std::ostringstream os;
        os << name << " N = " << n << " (" << s.num_steps() << " evaluations) max error " << errs.back();
        MESSAGE(os.str());
    }
    return errs;
}

// ---- exact output moments through the affine map (closed_forms C9, F1) ----------------------

struct gaussian_moments {
    Eigen::VectorXd mean;
    Eigen::MatrixXd cov;
};

/// The sampler loop with injected noise: churn (prepare_step_with_noise where churn_gamma(i) > 0)
/// and ancestral noise (step_with_noise where draws_noise(i)) take z = noise(e) for the e-th
/// noise event; returns the number of events.
template <class Sm, class Noise>
std::size_t run_injected(const exact_gaussian_denoiser& model, Sm& s, tensor<double, host_space>& x, Noise&& noise) {
    philox_rng rng(0);
    tensor<double, host_space> out(x.shape()), in(x.shape());
    std::size_t e = 0;
    for (std::size_t i = samplers::begin_index_of(s); i < s.num_steps(); ++i) {
        if constexpr (requires { s.churn_gamma(i); })
            if (s.churn_gamma(i) > 0.0) s.prepare_step_with_noise(i, x.view(), noise(e++, x.shape()).cview());
        s.scale_model_input(in.view(), x.cview(), i);
        model(out.view(), in.cview(), s.model_level(i));
        bool done = false;
        if constexpr (requires { s.draws_noise(i); })
            if (s.draws_noise(i)) {
                s.step_with_noise(out.cview(), model.prediction(), i, x.view(), noise(e++, x.shape()).cview());
                done = true;
            }
        if (!done) s.step(out.cview(), model.prediction(), i, x.view(), rng);
    }
    return e;
}

/// Exact mean and covariance of the sampler output when x_T ~ N(mT, covT): the output is
/// c0 + A·x_T + Σ_e B_e·z_e (affine in x_T and the injected normals), read off one batch whose
/// rows are x_T = 0, x_T = e_r and unit impulses z_e = e_r, each relative to the zero row;
/// then mean = c0 + A·mT and cov = A covT Aᵀ + Σ_e B_e B_eᵀ. make() returns a fresh sampler.
template <class Make>
gaussian_moments affine_moments(Make make, const exact_gaussian_denoiser& model, const Eigen::VectorXd& mT,
                                const Eigen::MatrixXd& covT, std::size_t* events_out = nullptr) {
    const Eigen::Index d = mT.size();
    // Count the noise events.
    std::size_t E = 0;
    {
        auto s = make();
        tensor<double, host_space> x(shape{1, d}, 0.0);
        tensor<double, host_space> z0;
        E = run_injected(model, s, x, [&](std::size_t, const shape& sh) -> const tensor<double, host_space>& {
            z0 = tensor<double, host_space>(sh, 0.0);
            return z0;
        });
    }
    const Eigen::Index B = 1 + d + d * static_cast<Eigen::Index>(E);
    tensor<double, host_space> x(shape{B, d}, 0.0);
    for (Eigen::Index r = 0; r < d; ++r) x(1 + r, r) = 1.0;
    tensor<double, host_space> z;
    auto s = make();
    run_injected(model, s, x, [&](std::size_t e, const shape& sh) -> const tensor<double, host_space>& {
        z = tensor<double, host_space>(sh, 0.0);
        for (Eigen::Index r = 0; r < d; ++r) z(1 + d + static_cast<Eigen::Index>(e) * d + r, r) = 1.0;
        return z;
    });
    const Eigen::MatrixXd X = to_matrix(x);
    const Eigen::VectorXd c0 = X.row(0).transpose();
    Eigen::MatrixXd A(d, d);
    for (Eigen::Index r = 0; r < d; ++r) A.col(r) = X.row(1 + r).transpose() - c0;
    gaussian_moments m;
    m.mean = c0 + A * mT;
    m.cov = A * covT * A.transpose();
    for (std::size_t e = 0; e < E; ++e) {
        Eigen::MatrixXd Be(d, d);
        for (Eigen::Index r = 0; r < d; ++r)
            Be.col(r) = X.row(1 + d + static_cast<Eigen::Index>(e) * d + r).transpose() - c0;
        m.cov += Be * Be.transpose();
    }
    if (events_out) *events_out = E;
    return m;
}

/// The exact marginal N(a·μ, a²Σ + s²I) at level (a, s).
inline gaussian_moments marginal_moments(const analytic::gaussian& g, double a, double s) {
    return {a * g.mean(), g.marginal_cov(a, s)};
}

/// max |Δmean|, max |Δcov| between two moment sets.
inline std::pair<double, double> moment_errors(const gaussian_moments& a, const gaussian_moments& b) {
    return {(a.mean - b.mean).cwiseAbs().maxCoeff(), (a.cov - b.cov).cwiseAbs().maxCoeff()};
}

/// The moment ladder of the stochastic Euler-family tests (closed_forms C9 / F1): for each N in
/// ns, the exact output moments (affine_moments) of make(N), started at the exact marginal at
/// σ_max = order_sigma_max, against the exact marginal at order_sigma_min. Logs
/// "name N = n: max |Δmean| .., max |Δcov| .." and checks |Δmean| < 1e-11 for each N (the mean is
/// preserved exactly; 1e-11 is the round-off of O(e^{5.03} ≈ 153) impulse responses). Returns
/// the max |Δcov| for each N.
template <class Make>
std::vector<double> affine_moment_ladder(Make make, const analytic::gaussian& g, prediction_type type,
                                         const std::vector<int>& ns, const std::string& name) {
    const exact_gaussian_denoiser model(g, type);
    const gaussian_moments start = marginal_moments(g, 1.0, order_sigma_max);
    const gaussian_moments target = marginal_moments(g, 1.0, order_sigma_min);
    std::vector<double> cov_err;
    for (int n : ns) {
        const gaussian_moments m = affine_moments([&] { return make(n); }, model, start.mean, start.cov);
        const auto [em, ec] = moment_errors(m, target);
        cov_err.push_back(ec);
        std::ostringstream os;
        os << name << " N = " << n << ": max |Δmean| " << em << ", max |Δcov| " << ec;
        MESSAGE(os.str());
        CHECK(em < 1e-11);
    }
    return cov_err;
}

// ---- diffusers' scheduler-test fixtures (peers.md c.1) ---------------------------------------

/// diffusers' float32 schedule of the scheduler tests: betas = torch.linspace(β_0, β_1, T, float32)
/// (beta_options float32), alphas_cumprod = cumprod in float32 storage (accumulated in double,
/// as torch's CPU cumprod does, then rounded to float). The σ table is then computed from these
/// ᾱ in double (diffusers does that division in float32 too; the oracles are within tolerance
/// either way, but LMS's sum moves by 0.0095 of its 1e-2 tolerance with the float64 schedule).
inline schedules::discrete_schedule diffusers_float32_linear(int T, double beta_start, double beta_end) {
    schedules::beta_options o;
    o.prec = schedules::precision::float32;
    const std::vector<double> betas = schedules::make_betas("linear", T, beta_start, beta_end, o);
    std::vector<double> ab(betas.size());
    double p = 1.0;
    for (std::size_t t = 0; t < betas.size(); ++t) {
        p *= static_cast<double>(static_cast<float>(1.0 - betas[t]));
        ab[t] = static_cast<double>(static_cast<float>(p));
    }
    return schedules::discrete_schedule::from_alphas_cumprod(ab);
}

using diffusers::abs_sum;
using diffusers::dummy_model;
using diffusers::dummy_sample_deter;

/// diffusers' test loop: x = dummy_sample_deter·init_noise_sigma, then per step
/// x = scale_model_input(x, t) — the SCALED x is what step() receives and continues from (the
/// tests' quirk) — m = model(x, t), x = step(m, t, x), the step done by step_fn(out, i, x, rng).
template <class T, class Sm, class StepFn>
tensor<T, host_space> diffusers_test_loop(Sm& s, double init_noise_sigma, prediction_type type, StepFn&& step_fn) {
    auto x = dummy_sample_deter<T>();
    lincomb(x, init_noise_sigma, x);
    const dummy_model model{type};
    tensor<T, host_space> out(x.shape());
    philox_rng rng(0);
    for (std::size_t i = 0; i < s.num_steps(); ++i) {
        s.scale_model_input(x.view(), x.cview(), i);
        model(out.view(), x.cview(), s.model_level(i));
        step_fn(out, i, x, rng);
    }
    return x;
}

}  // namespace diffuse::test::euler_family
