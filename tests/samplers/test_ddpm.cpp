// samplers/ddpm.hpp: DDPM ancestral sampling.
//  (a) exact output moments: the sampler's affine impulse response (closed_forms F1) against the
//      C7 recursion, all T steps and respaced, with the exactness cases (fixed_large <-> unit-variance
//      data, fixed_small <-> point mass) checked at every intermediate step;
//  (b) a Monte-Carlo moment test of the noise-drawing glue (closed_forms F3);
//  (c) DDIM(η = 1) ≡ DDPM fixed_small on the same steps with common random numbers;
//  (d) diffusers oracles (peers.md c.1 #6, #8 and test_scheduler_ddpm.py's v-prediction and
//      with-noise loops), the noise drawn with the torch CPU generator port;
//  (e) learned variance types, thresholding, conventions, and argument errors.
#include <diffuse/samplers/ddpm.hpp>

#include <diffuse/analytic/gaussian.hpp>
#include <diffuse/core/eigen_adapter.hpp>
#include <diffuse/core/torch_generator.hpp>
#include <diffuse/models/exact.hpp>
#include <diffuse/samplers/ddim.hpp>
#include <diffuse/schedules/discrete_schedule.hpp>

#include "samplers/diffusers_dummy.hpp"
#include "samplers/fixtures.hpp"
#include "support/check.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <iomanip>
#include <string>
#include <type_traits>
#include <vector>

using namespace diffuse;
using namespace diffuse::samplers;
using diffuse::models::exact_gaussian_denoiser;
using pt = prediction_type;
using schedules::discrete_schedule;
using schedules::spacing;

namespace {

using namespace diffuse::test;

/// The exact denoiser of 1-D data N(mu, lam) applied to every element (lam = 0: a point mass):
/// x0_hat = mu + k·(x − a·mu), k = a·lam/(a²·lam + s²) (closed_forms C7).
struct scalar_gaussian_model {
    double mu, lam;
    pt type = pt::epsilon;
    pt prediction() const { return type; }
    template <class T, class S>
    void operator()(tensor_view<T, S> out, std::type_identity_t<tensor_view<const T, S>> x,
                    const models::noise_condition& l, models::no_condition = {}) const {
        const double k = l.a * lam / (l.a * l.a * lam + l.s * l.s);
        for (std::int64_t i = 0; i < x.numel(); ++i) {
            const double xi = static_cast<double>(x[i]);
            const double x0 = mu + k * (xi - l.a * mu);
            const double eps = (xi - l.a * x0) / l.s;
            out[i] = static_cast<T>(type == pt::sample ? x0 : (type == pt::v_prediction ? l.a * eps - l.s * x0 : eps));
        }
    }
};

/// The C7 recursion per eigen-direction: mean and variance after each step.
struct moments {
    std::vector<double> mean, var;  // index k: after k steps (k = 0: the prior)
};

moments c7_recursion(const ddpm_sampler& s, double mu, double lam, double m0, double v0, variance_type type) {
    const discrete_schedule& sch = s.schedule();
    const bool gd = s.config().convention == variance_convention::improved_diffusion;
    moments r{{m0}, {v0}};
    const std::size_t n = s.num_steps();
    for (std::size_t i = 0; i < n; ++i) {
        const int t = s.timesteps()[i];
        const int tp = i + 1 < n ? s.timesteps()[i + 1] : -1;
        // Independent of the sampler's tables: everything from ᾱ.
        const double ab = sch.alpha_bar(t), abp = tp >= 0 ? sch.alpha_bar(tp) : 1.0;
        const double beta = 1.0 - ab / abp;
        const double c1 = std::sqrt(abp) * beta / (1.0 - ab);
        const double c2 = std::sqrt(ab / abp) * (1.0 - abp) / (1.0 - ab);
        const double a = std::sqrt(ab);
        const double k = a * lam / (ab * lam + 1.0 - ab);
        const double A = c1 * k + c2;
        const double b = c1 * (mu - k * a * mu);
        const bool noise = gd ? i + 1 < n : t > 0;
        double var = 0.0;
        if (noise) var = type == variance_type::fixed_small ? (1.0 - abp) / (1.0 - ab) * beta : beta;
        r.mean.push_back(A * r.mean.back() + b);
        r.var.push_back(A * A * r.var.back() + var);
    }
    return r;
}

/// Runs sampler s on rows [R, d] laid out as an impulse response (closed_forms F1): row 0 starts
/// at 0 with no noise; rows 1..d start at e_k; row 1 + d + j·d + k gets noise e_k at the j-th
/// noise-adding step. After each step, f(step, mean, cov) is called with the moments implied
/// for x_T ~ N(m_T, V_T). step_with_noise injects the impulses.
template <class M, class F>
void impulse_moments(ddpm_sampler& s, const M& model, int d, const Eigen::VectorXd& mT, const Eigen::MatrixXd& VT,
                     F&& f) {
    const std::size_t n = s.num_steps();
    int J = 0;
    for (std::size_t i = 0; i < n; ++i) J += s.step_adds_noise(i);
    const std::int64_t R = 1 + d + static_cast<std::int64_t>(J) * d;
    tensor<double, host_space> x(shape{R, d}, 0.0), out(shape{R, d}, 0.0), z(shape{R, d}, 0.0);
    for (int k = 0; k < d; ++k) x(1 + k, k) = 1.0;
    int j = 0;
    for (std::size_t i = 0; i < n; ++i) {
        model(out.view(), x.cview(), s.model_level(i));
        for (std::int64_t q = 0; q < z.numel(); ++q) z[q] = 0.0;
        if (s.step_adds_noise(i)) {
            for (int k = 0; k < d; ++k) z(1 + d + j * d + k, k) = 1.0;
            ++j;
        }
        s.step_with_noise(out.cview(), model.prediction(), i, x.view(), z.cview());
        Eigen::VectorXd c(d);
        for (int k = 0; k < d; ++k) c(k) = x(0, k);
        Eigen::MatrixXd Mx(d, d);
        for (int k = 0; k < d; ++k)
            for (int r = 0; r < d; ++r) Mx(r, k) = x(1 + k, r) - c(r);
        Eigen::MatrixXd cov = Mx * VT * Mx.transpose();
        for (int jj = 0; jj < J; ++jj) {
            Eigen::MatrixXd N(d, d);
            for (int k = 0; k < d; ++k)
                for (int r = 0; r < d; ++r) N(r, k) = x(1 + d + jj * d + k, r) - c(r);
            cov += N * N.transpose();
        }
        f(i, Eigen::VectorXd(c + Mx * mT), cov);
    }
}

using diffusers::abs_sum;
using diffusers::dummy_model_at;
using diffusers::dummy_noise_deter;
using diffusers::dummy_sample_deter;

}  // namespace

// ---------------------------------------------------------------------------------------------
// (a) exact moments

TEST_CASE("ddpm impulse response equals the C7 recursion for 1-D Gaussians, all 1000 steps") {
    // closed_forms C7: Var_out/λ for the T = 1000 linear schedule, all steps, exact prior (5 digits,
    // so the table check allows 5e-6 + the rounding of the last digit = 1e-5).
    struct row {
        double lam, small, large;
    };
    const discrete_schedule sched = discrete_schedule::named("linear", 1000);
    const double mu = 0.3;
    for (const row& r : {row{0.05, 0.96709, 1.00839}, row{0.25, 0.98450, 1.00301}, row{1.0, 0.99107, 0.99990},
                         row{4.0, 0.99369, 0.99764}}) {
        for (variance_type type : {variance_type::fixed_small, variance_type::fixed_large}) {
            ddpm_sampler s(sched, ddpm_config{.variance = type});
            const scalar_gaussian_model model{mu, r.lam, pt::epsilon};
            const double aT = sched.alpha(999);
            const double m0 = aT * mu, v0 = sched.alpha_bar(999) * r.lam + sched.one_minus_alpha_bar(999);
            const moments ref = c7_recursion(s, mu, r.lam, m0, v0, type);
            double err = 0.0;
            double mean_out = 0.0, var_out = 0.0;
            impulse_moments(s, model, 1, Eigen::VectorXd::Constant(1, m0), Eigen::MatrixXd::Constant(1, 1, v0),
                            [&](std::size_t i, const Eigen::VectorXd& m, const Eigen::MatrixXd& v) {
                                err = std::max({err, std::abs(m(0) - ref.mean[i + 1]) / std::max(1.0, std::abs(ref.mean[i + 1])),
                                                std::abs(v(0, 0) - ref.var[i + 1]) / std::max(1.0, ref.var[i + 1])});
                                mean_out = m(0);
                                var_out = v(0, 0);
                            });
            const double table = type == variance_type::fixed_small ? r.small : r.large;
            MESSAGE("lam " << r.lam << std::string(type == variance_type::fixed_small ? " fixed_small" : " fixed_large")
                           << ": Var_out/lam " << var_out / r.lam << " (C7 table " << table
                           << "), max relative |impulse − recursion| over all steps " << err);
            // F1 / C7, relative to max(1, |value|): each of the 1000 steps rounds ~8 times (u each) in
            // both the sampler and the recursion, and the variance doubles the mean's error:
            // 2·2·1000·8·u ≈ 3.6e-12.
            CHECK(err < 4e-12);
            DIFFUSE_CHECK_CLOSE(var_out / r.lam, table, 1e-5, 0.0);
            // The mean is exact from the exact prior (the map is affine about a·μ): C7 measured 2e-13.
            DIFFUSE_CHECK_CLOSE(mean_out, mu, 1e-12, 0.0);
        }
    }
}

TEST_CASE("ddpm respaced: impulse response equals the C7 recursion on a 3-D Gaussian with full covariance") {
    const auto g = gaussian3();
    const discrete_schedule sched = discrete_schedule::named("linear", 1000);
    const Eigen::VectorXd lam = g.cov_eigenvalues();
    const Eigen::MatrixXd Q = g.cov_eigenvectors();
    for (spacing sp : {spacing::leading, spacing::trailing, spacing::linspace}) {
        for (int n : {10, 50}) {
            for (variance_type type : {variance_type::fixed_small, variance_type::fixed_large}) {
                for (variance_convention conv : {variance_convention::improved_diffusion, variance_convention::diffusers}) {
                    ddpm_sampler s(sched, ddpm_config{.variance = type, .convention = conv, .timestep_spacing = sp});
                    s.set_timesteps(n);
                    const int t0 = s.timesteps().front();
                    const double a = sched.alpha(t0), ab = sched.alpha_bar(t0);
                    // Exact prior N(a·μ, a²Σ + s²I).
                    const Eigen::VectorXd mT = a * g.mean();
                    const Eigen::MatrixXd VT = ab * g.cov() + (1.0 - ab) * Eigen::MatrixXd::Identity(3, 3);
                    // Recursion per eigen-direction (coordinates Qᵀx), then rotated back.
                    const Eigen::VectorXd mu_e = Q.transpose() * g.mean();
                    std::vector<moments> ref;
                    for (int k = 0; k < 3; ++k)
                        ref.push_back(c7_recursion(s, mu_e(k), lam(k), a * mu_e(k), ab * lam(k) + 1.0 - ab, type));
                    double err = 0.0;
                    impulse_moments(s, exact_gaussian_denoiser(g, pt::v_prediction), 3, mT, VT,
                                    [&](std::size_t i, const Eigen::VectorXd& m, const Eigen::MatrixXd& v) {
                                        Eigen::VectorXd me(3), ve(3);
                                        for (int k = 0; k < 3; ++k) {
                                            me(k) = ref[k].mean[i + 1];
                                            ve(k) = ref[k].var[i + 1];
                                        }
                                        err = std::max(err, (m - Q * me).cwiseAbs().maxCoeff());
                                        err = std::max(err, (v - Q * ve.asDiagonal() * Q.transpose()).cwiseAbs().maxCoeff());
                                    });
                    // F1: 1e-12 (κ(Q) = 1; entries O(4)).
                    CHECK_MESSAGE(err < 1e-12, "spacing " << std::string(schedules::to_string(sp)) << " N " << n << " err " << err);
                }
            }
        }
    }
}

TEST_CASE("ddpm exactness cases: every marginal exact for fixed_large with unit variance and fixed_small with a point mass") {
    // closed_forms C7: the reverse kernel equals q(x_s | x_t), so with the exact prior every state
    // has the exact marginal N(√ᾱ'·μ, ᾱ'·λ + 1 − ᾱ') for any respacing; the output is E[x0 | x_{t_last}]
    // with Var_out = ᾱλ²/(ᾱλ + 1 − ᾱ) at ᾱ = ᾱ_{t_last}.
    const discrete_schedule sched = discrete_schedule::named("linear", 1000);
    const double mu = -0.7;
    struct exact_case {
        variance_type type;
        double lam;
    };
    for (const exact_case& ec : {exact_case{variance_type::fixed_large, 1.0}, exact_case{variance_type::fixed_small, 0.0}}) {
        for (int n : {1000, 10, 3}) {
            for (spacing sp : {spacing::leading, spacing::trailing}) {
                ddpm_sampler s(sched, ddpm_config{.variance = ec.type, .timestep_spacing = sp});
                s.set_timesteps(n);
                const int t0 = s.timesteps().front();
                const double m0 = sched.alpha(t0) * mu, v0 = sched.alpha_bar(t0) * ec.lam + sched.one_minus_alpha_bar(t0);
                double err = 0.0, var_out = 0.0, mean_out = 0.0;
                impulse_moments(s, scalar_gaussian_model{mu, ec.lam}, 1, Eigen::VectorXd::Constant(1, m0),
                                Eigen::MatrixXd::Constant(1, 1, v0),
                                [&](std::size_t i, const Eigen::VectorXd& m, const Eigen::MatrixXd& v) {
                                    if (i + 1 == s.num_steps()) {
                                        mean_out = m(0);
                                        var_out = v(0, 0);
                                        return;
                                    }
                                    const double abp = s.alpha_bar_prev(i);
                                    err = std::max({err, std::abs(m(0) - std::sqrt(abp) * mu),
                                                    std::abs(v(0, 0) - (abp * ec.lam + 1.0 - abp))});
                                });
                const double ab = sched.alpha_bar(s.timesteps().back());
                const double expect = ab * ec.lam * ec.lam / (ab * ec.lam + 1.0 - ab);
                MESSAGE(std::string(ec.type == variance_type::fixed_large ? "fixed_large lam 1" : "fixed_small lam 0")
                        << " N " << n << " " << std::string(schedules::to_string(sp)) << ": max marginal error " << err
                        << ", Var_out " << var_out << " (E[x0|x] " << expect << ")");
                CHECK(err < 1e-12);
                DIFFUSE_CHECK_CLOSE(var_out, expect, 1e-12, 0.0);
                DIFFUSE_CHECK_CLOSE(mean_out, mu, 1e-12, 0.0);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// (b) Monte Carlo

TEST_CASE("ddpm Monte-Carlo moments match the C7 recursion (100000 samples, fixed seed)") {
    // closed_forms C7 test 2 / F3, respaced to N = 100 (leading) to keep it fast. Prior N(0, 1),
    // fixed_small, λ = 0.25, μ = 0.3. The null is exactly Gaussian (an affine map of normals):
    //   mean z = (x̄ − m)/√(V/n) ~ N(0, 1);  (n − 1)S²/V ~ χ²_{n−1}, tested through the
    //   Wilson–Hilferty cube-root normal approximation (error < 1e-4 in z at n = 1e5).
    // Bound: α = 1e-6 Bonferroni-split over the 2 assertions -> |z| < z_{1 − 2.5e-7} = 5.0263.
    const discrete_schedule sched = discrete_schedule::named("linear", 1000);
    ddpm_sampler s(sched);
    s.set_timesteps(100);
    const scalar_gaussian_model model{0.3, 0.25};
    const moments ref = c7_recursion(s, 0.3, 0.25, 0.0, 1.0, variance_type::fixed_small);
    const std::int64_t n = 100000;
    tensor<double, host_space> x(shape{n, 1});
    philox_rng rng(20240611);
    randn(x, rng);
    philox_rng noise_rng = rng.split(1);
    sample(model, s, x, noise_rng);
    // 99 noise-adding steps draw n normals each; the last step draws none.
    CHECK(noise_rng.normal_offset() == static_cast<std::uint64_t>(99 * n));
    double m = 0.0;
    for (std::int64_t i = 0; i < n; ++i) m += x[i];
    m /= static_cast<double>(n);
    double ss = 0.0;
    for (std::int64_t i = 0; i < n; ++i) ss += (x[i] - m) * (x[i] - m);
    const double S2 = ss / static_cast<double>(n - 1);
    const double V = ref.var.back(), mean = ref.mean.back();
    const double z_mean = (m - mean) / std::sqrt(V / static_cast<double>(n));
    const double k = static_cast<double>(n - 1);
    const double z_var = (std::cbrt(S2 / V) - (1.0 - 2.0 / (9.0 * k))) / std::sqrt(2.0 / (9.0 * k));
    MESSAGE("MC: mean " << m << " (recursion " << mean << ", z = " << z_mean << "), variance " << S2
                        << " (recursion " << V << ", Var/λ = " << V / 0.25 << ", z = " << z_var << ")");
    CHECK(std::abs(z_mean) < 5.0263);
    CHECK(std::abs(z_var) < 5.0263);
}

// ---------------------------------------------------------------------------------------------
// (c) DDIM(η = 1) ≡ DDPM fixed_small

TEST_CASE("ddim with eta 1 equals ddpm fixed_small on the same respaced steps with the same noise") {
    // DDIM draws x.numel() normals every step and DDPM on every step but the last, so with the
    // same Philox seed both see identical z on the steps that add noise (common random numbers).
    // Round-off: the two forms are algebraically equal; 1e-12 on O(3) values over <= 50 steps.
    const auto g = gaussian3();
    const discrete_schedule sched = discrete_schedule::named("linear", 1000);
    for (spacing sp : {spacing::leading, spacing::trailing, spacing::linspace}) {
        for (int n : {5, 50}) {
            ddim_sampler a(sched, ddim_config{.eta = 1.0, .timestep_spacing = sp});
            ddpm_sampler b(sched, ddpm_config{.timestep_spacing = sp});
            a.set_timesteps(n);
            b.set_timesteps(n);
            REQUIRE(a.timesteps() == b.timesteps());
            const int t0 = a.timesteps().front();
            const Eigen::MatrixXd xT = marginal_points(g, sched.alpha(t0), sched.sigma(t0), 17);
            auto xa = to_tensor(xT), xb = to_tensor(xT);
            philox_rng ra(5), rb(5);
            sample(exact_gaussian_denoiser(g, pt::epsilon), a, xa, ra);
            sample(exact_gaussian_denoiser(g, pt::epsilon), b, xb, rb);
            const double err = (to_matrix(xa) - to_matrix(xb)).cwiseAbs().maxCoeff();
            MESSAGE("DDIM(eta=1) vs DDPM " << std::string(schedules::to_string(sp)) << " N " << n << ": " << err);
            CHECK(err < 1e-12);
            // Per step: σ_η² of DDIM = β̃ of DDPM. DDIM forms 1 − ᾱ' by subtraction (relative error
            // u/(1 − ᾱ') = 1.1e-12 at ᾱ' = ᾱ_0 = 0.9999), DDPM from log ᾱ: rtol 1e-11.
            for (std::size_t i = 0; i + 1 < b.num_steps(); ++i)
                DIFFUSE_CHECK_CLOSE(a.coefficients(pt::epsilon, i).c_z, std::sqrt(b.variance(i)), 0.0, 1e-11);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// (d) diffusers oracles

TEST_CASE("ddpm variances reproduce diffusers test_variance (peers.md c.1 #8)") {
    const discrete_schedule sched = discrete_schedule::named("linear", 1000);
    ddpm_sampler d(sched, ddpm_config{.convention = variance_convention::diffusers});
    // diffusers: |_get_variance(t) − expected| < 1e-5.
    DIFFUSE_CHECK_CLOSE(d.variance(d.index_for_timestep(487)), 0.00979, 1e-5, 0.0);
    DIFFUSE_CHECK_CLOSE(d.variance(d.index_for_timestep(999)), 0.02, 1e-5, 0.0);
    DIFFUSE_CHECK_CLOSE(d.variance(d.index_for_timestep(0)), 0.0, 1e-5, 0.0);
    CHECK(d.variance(d.index_for_timestep(0)) == 1e-20);  // the clamp
    // Re-derived (peers.md b.7): 0.0097916, 0.0199999 (β̃ = (1 − ᾱ_{t−1})/(1 − ᾱ_t)·β_t).
    // The sampler forms β from log ᾱ differences (process::posterior_at): relative error about
    // u·|log ᾱ_t|/β_t = 1.1e-16·0.72/0.0098 ≈ 1e-14 here, ≈ 1e-13 at worst over t; rtol 1e-13.
    const double b487 = sched.one_minus_alpha_bar(486) / sched.one_minus_alpha_bar(487) * sched.beta(487);
    DIFFUSE_CHECK_CLOSE(d.variance(d.index_for_timestep(487)), b487, 0.0, 1e-13);
    // guided-diffusion at t = 0: posterior_log_variance_clipped uses β̃_1.
    ddpm_sampler gd(sched);
    const double bt1 = sched.one_minus_alpha_bar(0) / sched.one_minus_alpha_bar(1) * sched.beta(1);
    DIFFUSE_CHECK_CLOSE(gd.variance(gd.index_for_timestep(0)), bt1, 0.0, 1e-13);
    DIFFUSE_CHECK_CLOSE(gd.variance(gd.index_for_timestep(487)), b487, 0.0, 1e-13);
    // fixed_large: diffusers β_0 at t = 0; guided-diffusion append(posterior_variance[1], betas[1:]).
    ddpm_sampler dl(sched, ddpm_config{.variance = variance_type::fixed_large, .convention = variance_convention::diffusers});
    ddpm_sampler gl(sched, ddpm_config{.variance = variance_type::fixed_large});
    DIFFUSE_CHECK_CLOSE(dl.variance(999), sched.beta(0), 0.0, 1e-12);
    DIFFUSE_CHECK_CLOSE(gl.variance(999), bt1, 0.0, 1e-13);
    DIFFUSE_CHECK_CLOSE(dl.variance(0), 0.02, 0.0, 1e-12);
    DIFFUSE_CHECK_CLOSE(gl.variance(0), 0.02, 0.0, 1e-12);
}

// Float64 references: tests/python/ddpm_diffusers_reference.py, run with ATEN_CPU_CAPABILITY=default
// (the same steps with a float64 schedule and float64 arithmetic, noise = torch's float32 randn).
// In float32 that script reproduces diffusers' expected values to all printed digits
// (258.96064, 202.02959, 387.94659).
//
// Tolerances against the float64 references: T = double computes the same quantities in another
// order; the script forms 1 − ᾱ by subtraction (relative error u/(1 − ᾱ_0) = 1.1e-12 in its
// coefficients near t = 0; a few such terms), so rtol 1e-11 on the sum (measured 3.4e-13). T = float: 768 values of size <= 1, each
// after ~10 float operations of the last step (relative 10·6e-8), so atol 768·6e-7 ≈ 5e-4.
namespace {
constexpr double ref64_eps = 258.9590581220423, ref64_v = 202.0282653756745, ref64_noise = 387.96725088074874;
}

TEST_CASE_TEMPLATE("ddpm reproduces diffusers test_full_loop_no_noise and v-prediction with torch noise", T, float,
                   double) {
    // peers.md c.1 #6: all 1000 steps, fixed_small, clip_sample, generator = torch.manual_seed(0)
    // (CPU), one randn(4, 3, 8, 8) float32 per step with t > 0 (randn_tensor(model_output.shape)).
    // test_scheduler_ddpm.py::test_full_loop_with_v_prediction: 202.0296, 0.2631.
    // Against diffusers: its tolerances, 1e-2 on the sum of |x| and 1e-3 on the mean.
    struct oracle {
        pt type;
        double sum, mean, ref64;
    };
    for (const oracle& o : {oracle{pt::epsilon, 258.9606, 0.3372, ref64_eps},
                            oracle{pt::v_prediction, 202.0296, 0.2631, ref64_v}}) {
        ddpm_sampler s(discrete_schedule::named("linear", 1000),
                       ddpm_config{.convention = variance_convention::diffusers, .clip_sample = true, .prediction = o.type});
        torch_cpu_generator gen(0);
        auto x = dummy_sample_deter<T>();
        tensor<T, host_space> out(x.shape()), z(x.shape());
        tensor<float, host_space> zf(x.shape());
        int draws = 0;
        for (std::size_t i = 0; i < s.num_steps(); ++i) {
            const int t = s.timesteps()[i];
            dummy_model_at(out, x, t);
            if (s.step_adds_noise(i)) {
                gen.randn(zf);  // diffusers draws float32 (the model output's dtype)
                for (std::int64_t q = 0; q < z.numel(); ++q) z[q] = static_cast<T>(zf[q]);
                ++draws;
            }
            s.step_with_noise(out.cview(), o.type, i, x.view(), z.cview());
        }
        CHECK(draws == 999);
        const double sum = abs_sum(x);
        MESSAGE("DDPM full loop (" << std::string(process::to_string(o.type)) << ", "
                                   << std::string(sizeof(T) == 4 ? "float" : "double") << "): sum "
                                   << std::setprecision(15) << sum << ", mean " << sum / 768.0 << " (diffusers "
                                   << o.sum << ", " << o.mean << "; float64 reference " << o.ref64 << ")");
        DIFFUSE_CHECK_CLOSE(sum, o.sum, 1e-2, 0.0);
        DIFFUSE_CHECK_CLOSE(sum / 768.0, o.mean, 1e-3, 0.0);
        if constexpr (std::is_same_v<T, double>)
            DIFFUSE_CHECK_CLOSE(sum, o.ref64, 0.0, 1e-11);
        else
            DIFFUSE_CHECK_CLOSE(sum, o.ref64, 5e-4, 0.0);
    }
}

TEST_CASE_TEMPLATE("ddpm reproduces diffusers test_full_loop_with_noise (t_start 998)", T, float, double) {
    // timesteps [1, 0] of the full set; x = add_noise(sample_deter, noise_deter, 1), noise_deter =
    // 1 − sample − 1/768; one torch draw at t = 1. diffusers expects 387.9466, 0.5051 (1e-2, 1e-3).
    // That value is float32 arithmetic: the float64 steps give 387.96725 (ddpm_diffusers_reference.py),
    // 0.0207 away, mostly from cur_β = 1 − ᾱ_1/ᾱ_0 ≈ 1.2e-4 formed in float32 (absolute error up
    // to 2^−24·|ᾱ_1/ᾱ_0| = 6e-8, relative 5e-4, scaling c_x0 and the noise). So the diffusers check
    // allows 3e-2 (sum) and 4e-5 (mean = sum/768); the float64 reference is checked as above.
    ddpm_sampler s(discrete_schedule::named("linear", 1000),
                   ddpm_config{.convention = variance_convention::diffusers, .clip_sample = true});
    const auto x0 = dummy_sample_deter<T>();
    const auto noise = dummy_noise_deter<T>();
    tensor<T, host_space> x(x0.shape()), out(x0.shape()), z(x0.shape());
    tensor<float, host_space> zf(x0.shape());
    const std::size_t k = s.index_for_timestep(1);
    CHECK(k == 998);
    add_noise(s, x.view(), x0.cview(), noise.cview(), k);
    s.set_begin_index(k);
    torch_cpu_generator gen(0);
    for (std::size_t i = s.begin_index(); i < s.num_steps(); ++i) {
        dummy_model_at(out, x, s.timesteps()[i]);
        if (s.step_adds_noise(i)) {
            gen.randn(zf);
            for (std::int64_t q = 0; q < z.numel(); ++q) z[q] = static_cast<T>(zf[q]);
        }
        s.step_with_noise(out.cview(), pt::epsilon, i, x.view(), z.cview());
    }
    const double sum = abs_sum(x);
    MESSAGE("DDPM with noise (" << std::string(sizeof(T) == 4 ? "float" : "double") << "): sum "
                                << std::setprecision(15) << sum << ", mean " << sum / 768.0
                                << " (diffusers 387.9466, 0.5051; float64 reference " << ref64_noise << ")");
    DIFFUSE_CHECK_CLOSE(sum, 387.9466, 3e-2, 0.0);
    DIFFUSE_CHECK_CLOSE(sum / 768.0, 0.5051, 4e-5 + 1e-4, 0.0);  // 1e-4: the oracle's own rounding to 4 digits
    if constexpr (std::is_same_v<T, double>)
        DIFFUSE_CHECK_CLOSE(sum, ref64_noise, 0.0, 1e-11);
    else
        DIFFUSE_CHECK_CLOSE(sum, ref64_noise, 5e-4, 0.0);
}

// ---------------------------------------------------------------------------------------------
// (e) conventions, learned variances, thresholding, prediction types, errors

TEST_CASE("ddpm conventions differ only in the noise of a last step with t > 0") {
    const discrete_schedule sched = discrete_schedule::named("linear", 1000);
    for (variance_type type : {variance_type::fixed_small, variance_type::fixed_large}) {
        ddpm_sampler gd(sched, ddpm_config{.variance = type, .timestep_spacing = spacing::trailing});
        ddpm_sampler df(sched, ddpm_config{.variance = type, .convention = variance_convention::diffusers,
                                           .timestep_spacing = spacing::trailing});
        gd.set_timesteps(10);
        df.set_timesteps(10);
        CHECK(gd.timesteps().back() == 99);
        CHECK(!gd.step_adds_noise(9));
        CHECK(df.step_adds_noise(9));  // diffusers: t = 99 > 0
        for (std::size_t i = 0; i + 1 < 10; ++i) {
            CHECK(gd.step_adds_noise(i));
            CHECK(df.step_adds_noise(i));
            CHECK(gd.variance(i) == df.variance(i));
        }
        // diffusers' last-step σ²: max(β̃ = 0, 1e-20) for fixed_small, β = 1 − ᾱ_99 for fixed_large.
        if (type == variance_type::fixed_small)
            CHECK(df.variance(9) == 1e-20);
        else
            DIFFUSE_CHECK_CLOSE(df.variance(9), sched.one_minus_alpha_bar(99), 0.0, 1e-14);
        // Draw counts through the driver: 9 vs 10 steps of x.numel() normals.
        const auto g = gaussian3();
        auto x1 = to_tensor(marginal_points(g, sched.alpha(999), sched.sigma(999), 2));
        auto x2 = x1;
        philox_rng r1(3), r2(3);
        sample(exact_gaussian_denoiser(g), gd, x1, r1);
        sample(exact_gaussian_denoiser(g), df, x2, r2);
        CHECK(r1.normal_offset() == 9u * 48u);
        CHECK(r2.normal_offset() == 10u * 48u);
    }
}

TEST_CASE("ddpm prediction types give the same steps") {
    // The exact model declared as eps, x0 and v: same sample to round-off (1e-12, O(3) values).
    const auto g = gaussian3();
    const discrete_schedule sched = discrete_schedule::named("linear", 1000);
    std::vector<Eigen::MatrixXd> results;
    for (pt type : {pt::epsilon, pt::sample, pt::v_prediction}) {
        ddpm_sampler s(sched, ddpm_config{.variance = variance_type::fixed_large});
        s.set_timesteps(20);
        auto x = to_tensor(marginal_points(g, sched.alpha(s.timesteps()[0]), sched.sigma(s.timesteps()[0]), 11));
        philox_rng rng(4);
        sample(exact_gaussian_denoiser(g, type), s, x, rng);
        results.push_back(to_matrix(x));
    }
    for (std::size_t k = 1; k < results.size(); ++k) CHECK((results[k] - results[0]).cwiseAbs().maxCoeff() < 1e-12);
}

TEST_CASE("ddpm learned variances: the ends of learned_range and learned reproduce the fixed types") {
    // learned_range v = −1 -> σ² = the fixed_small value, v = +1 -> β; learned v = log σ²
    // (guided-diffusion) or σ² (diffusers). Same z, so the steps agree to round-off of exp/log
    // (1e-13 relative on σ ~ 0.1, values O(3)).
    const auto g = gaussian3();
    const discrete_schedule sched = discrete_schedule::named("linear", 1000);
    const exact_gaussian_denoiser model(g, pt::epsilon);
    for (variance_convention conv : {variance_convention::improved_diffusion, variance_convention::diffusers}) {
        ddpm_sampler small(sched, ddpm_config{.variance = variance_type::fixed_small, .convention = conv});
        ddpm_sampler large(sched, ddpm_config{.variance = variance_type::fixed_large, .convention = conv});
        ddpm_sampler range(sched, ddpm_config{.variance = variance_type::learned_range, .convention = conv});
        ddpm_sampler learned(sched, ddpm_config{.variance = variance_type::learned, .convention = conv});
        for (ddpm_sampler* s : {&small, &large, &range, &learned}) s->set_timesteps(std::vector<int>{900, 500, 100, 7, 0});
        auto xT = to_tensor(marginal_points(g, sched.alpha(900), sched.sigma(900), 8));
        tensor<double, host_space> z(xT.shape()), m(xT.shape()), v(xT.shape());
        philox_rng rz(1);
        auto run_fixed = [&](ddpm_sampler& s) {
            auto x = xT;
            philox_rng r(1);
            for (std::size_t i = 0; i < s.num_steps(); ++i) {
                randn(z, r);
                model(m.view(), x.cview(), s.model_level(i));
                s.step_with_noise(m.cview(), pt::epsilon, i, x.view(), z.cview());
            }
            return to_matrix(x);
        };
        auto run_learned = [&](ddpm_sampler& s, auto value_of_step) {
            auto x = xT;
            philox_rng r(1);
            for (std::size_t i = 0; i < s.num_steps(); ++i) {
                randn(z, r);
                model(m.view(), x.cview(), s.model_level(i));
                for (std::int64_t q = 0; q < v.numel(); ++q) v[q] = value_of_step(i);
                s.step_with_noise(m.cview(), v.cview(), pt::epsilon, i, x.view(), z.cview());
            }
            return to_matrix(x);
        };
        const Eigen::MatrixXd xs = run_fixed(small), xl = run_fixed(large);
        const Eigen::MatrixXd rs = run_learned(range, [](std::size_t) { return -1.0; });
        // v = +1 gives log β; fixed_large differs only on the noise-free last step (GD reports β̃_1 there).
        const Eigen::MatrixXd rl = run_learned(range, [](std::size_t) { return 1.0; });
        const bool diffusers = conv == variance_convention::diffusers;
        const Eigen::MatrixXd ls = run_learned(learned, [&](std::size_t i) {
            return diffusers ? small.variance(i) : std::log(small.variance(i));
        });
        CHECK((rs - xs).cwiseAbs().maxCoeff() < 1e-13);
        CHECK((rl - xl).cwiseAbs().maxCoeff() < 1e-13);
        CHECK((ls - xs).cwiseAbs().maxCoeff() < 1e-13);
        // Scalar log-variances.
        DIFFUSE_CHECK_CLOSE(range.log_variance(1, 0.0), 0.5 * (std::log(small.variance(1)) + std::log(large.variance(1))),
                            1e-14, 0.0);
        DIFFUSE_CHECK_CLOSE(learned.log_variance(1, diffusers ? 0.25 : -3.0), diffusers ? std::log(0.25) : -3.0, 0.0, 0.0);
    }
}

TEST_CASE("ddpm split_model_output splits 2C channels per batch item") {
    tensor<double, host_space> out(shape{2, 4, 3});
    for (std::int64_t i = 0; i < out.numel(); ++i) out[i] = static_cast<double>(i);
    tensor<double, host_space> m(shape{2, 2, 3}), v(shape{2, 2, 3});
    split_model_output(out.cview(), m.view(), v.view());
    for (int b = 0; b < 2; ++b)
        for (int c = 0; c < 2; ++c)
            for (int w = 0; w < 3; ++w) {
                CHECK(m(b, c, w) == out(b, c, w));
                CHECK(v(b, c, w) == out(b, c + 2, w));
            }
    tensor<double, host_space> odd(shape{2, 3, 3});
    DIFFUSE_CHECK_ERROR(split_model_output(odd.cview(), m.view(), v.view()), "model_output.size(1)", "even");
    tensor<double, host_space> wrong(shape{2, 1, 3});
    DIFFUSE_CHECK_ERROR(split_model_output(out.cview(), wrong.view(), v.view()), "m");
}

TEST_CASE("ddpm thresholding and clipping act on x0 before the posterior mean") {
    // One step by hand: x0 = p_x·x + p_m·m, then clamp / threshold, then c_x0·x0 + c_xt·x + σ·z.
    const discrete_schedule sched = discrete_schedule::named("linear", 1000);
    thresholding th;
    th.enabled = true;
    th.convention = threshold_convention::dpm_solver;
    th.ratio = 0.9;
    th.max_value = 1.0;
    for (int mode = 0; mode < 3; ++mode) {
        ddpm_config cfg;
        cfg.clip_sample = mode != 0;  // mode 2: thresholding wins over clip_sample (diffusers)
        cfg.clip_sample_range = 0.5;
        if (mode == 2) cfg.threshold = th;
        ddpm_sampler s(sched, cfg);
        s.set_timesteps(10);
        tensor<double, host_space> x(shape{2, 24}), m(shape{2, 24}), z(shape{2, 24});
        for (std::int64_t i = 0; i < x.numel(); ++i) {
            x[i] = 3.0 * std::sin(0.37 * static_cast<double>(i)) * (i < 24 ? 1.0 : 2.5);
            m[i] = std::cos(0.11 * static_cast<double>(i));
            z[i] = std::sin(1.7 * static_cast<double>(i));
        }
        const ddpm_coeffs c = s.coefficients(pt::epsilon, 2);
        tensor<double, host_space> x0(x.shape()), expect(x.shape());
        lincomb(x0, c.p_x, x, c.p_m, m);
        if (mode == 1) clip_sample(x0, 0.5);
        if (mode == 2) apply_thresholding(x0, th);
        lincomb(expect, c.coef_x0, x0, c.coef_xt, x, c.c_z, z);
        s.step_with_noise(m.cview(), pt::epsilon, 2, x.view(), z.cview());
        // Unclipped: the one-lincomb form c_x·x + c_m·m equals the two-stage form to 1e-14.
        for (std::int64_t i = 0; i < x.numel(); ++i) DIFFUSE_CHECK_CLOSE(x[i], expect[i], 1e-14, 1e-14);
    }
}

TEST_CASE("ddpm img2img start: set_begin_index with the driver equals the manual loop") {
    const auto g = gaussian3();
    const discrete_schedule sched = discrete_schedule::named("linear", 1000);
    ddpm_sampler s(sched);
    s.set_timesteps(20);
    s.set_begin_index(12);
    const exact_gaussian_denoiser model(g);
    auto x0 = to_tensor(marginal_points(g, 1.0, 0.0, 6));
    tensor<double, host_space> noise(x0.shape()), x(x0.shape()), out(x0.shape());
    philox_rng rn(8);
    randn(noise, rn);
    add_noise(s, x.view(), x0.cview(), noise.cview(), 12);
    auto y = x;
    philox_rng r1(9), r2(9);
    sample(model, s, x, r1);
    for (std::size_t i = 12; i < s.num_steps(); ++i) {
        model(out.view(), y.cview(), s.model_level(i));
        s.step(out.cview(), i, y.view(), r2);
    }
    for (std::int64_t i = 0; i < x.numel(); ++i) CHECK(x[i] == y[i]);
    CHECK(r1.normal_offset() == 7u * 48u);  // steps 12..18 add noise, step 19 does not
    s.set_timesteps(5);
    CHECK(s.begin_index() == 0u);  // set_timesteps resets it
}

TEST_CASE("ddpm default timesteps are all T training steps and set_timesteps follows diffusers spacing") {
    const discrete_schedule sched = discrete_schedule::named("linear", 1000);
    ddpm_sampler s(sched);
    REQUIRE(s.num_steps() == 1000u);
    CHECK(s.timesteps().front() == 999);
    CHECK(s.timesteps().back() == 0);
    CHECK(s.prev_timestep(0) == 998);
    CHECK(s.prev_timestep(999) == -1);
    CHECK(s.alpha_bar_prev(999) == 1.0);
    ddpm_sampler off(sched, ddpm_config{.steps_offset = 1});
    off.set_timesteps(10);
    CHECK(off.timesteps().front() == 901);
    CHECK(off.timesteps().back() == 1);
    // Respaced β: 1 − ᾱ_t/ᾱ_prev.
    DIFFUSE_CHECK_CLOSE(off.step_coeffs(0).beta, 1.0 - sched.alpha_bar(901) / sched.alpha_bar(801), 0.0, 1e-13);
    CHECK(off.index_for_timestep(501) == 4u);
    CHECK(s.order() == 1);
    CHECK(s.init_noise_sigma() == 1.0);
    CHECK(s.model_input_scale(3) == 1.0);
    CHECK(*s.model_level(3).timestep == 996.0);
}

TEST_CASE("ddpm rejects bad arguments with readable errors") {
    const discrete_schedule sched = discrete_schedule::named("linear", 1000);
    DIFFUSE_CHECK_ERROR(ddpm_sampler(sched, ddpm_config{.clip_sample_range = 0.0}), "clip_sample_range", "> 0");
    ddpm_config bad_th;
    bad_th.threshold.ratio = 1.5;
    DIFFUSE_CHECK_ERROR(ddpm_sampler(sched, bad_th), "thresholding.ratio");
    ddpm_sampler s(sched);
    DIFFUSE_CHECK_ERROR(s.set_timesteps(1001), "num_inference_steps");
    DIFFUSE_CHECK_ERROR(s.set_timesteps(0), "num_inference_steps");
    DIFFUSE_CHECK_ERROR(s.set_timesteps(std::vector<int>{500, 600}), "timesteps[1]", "decreasing");
    DIFFUSE_CHECK_ERROR(s.set_timesteps(std::vector<int>{1000}), "timesteps[0]", "[0, 999]");
    DIFFUSE_CHECK_ERROR(s.set_timesteps(std::vector<int>{}), "timesteps.size()");
    DIFFUSE_CHECK_ERROR(ddpm_sampler(sched, ddpm_config{.steps_offset = 1}).set_timesteps(1000), "steps_offset");
    s.set_timesteps(10);
    tensor<double, host_space> x(shape{2, 3}, 0.0), m(shape{2, 3}, 0.0), bad(shape{3, 2}, 0.0);
    philox_rng rng(0);
    DIFFUSE_CHECK_ERROR(s.step(m.cview(), 10, x.view(), rng), "step index", "[0, 10)");
    DIFFUSE_CHECK_ERROR(s.step(bad.cview(), 0, x.view(), rng), "shape");
    DIFFUSE_CHECK_ERROR(s.step(x.cview(), 0, x.view(), rng), "aliases");
    DIFFUSE_CHECK_ERROR(s.step_with_noise(m.cview(), pt::epsilon, 0, x.view(), bad.cview()), "z");
    DIFFUSE_CHECK_ERROR(s.step(m.cview(), m.cview(), pt::epsilon, 0, x.view(), rng), "fixed_small", "learned");
    DIFFUSE_CHECK_ERROR(s.index_for_timestep(7), "timestep", "7");
    DIFFUSE_CHECK_ERROR(s.set_begin_index(10), "set_begin_index", "[0, 10)");
    ddpm_sampler l(sched, ddpm_config{.variance = variance_type::learned_range});
    DIFFUSE_CHECK_ERROR(l.step(m.cview(), 0, x.view(), rng), "learned_range", "variance output", "split_model_output");
    DIFFUSE_CHECK_ERROR(l.variance(0), "learned_range");
    DIFFUSE_CHECK_ERROR(l.step(m.cview(), bad.cview(), pt::epsilon, 0, x.view(), rng), "variance_output");
    DIFFUSE_CHECK_ERROR(l.log_variance(0, std::nan("")), "v", "finite");
    // The driver refuses a learned type (the model's variance half is needed).
    const exact_gaussian_denoiser model(gaussian3());
    tensor<double, host_space> x3(shape{2, 3}, 0.0);
    DIFFUSE_CHECK_ERROR(sample(model, l, x3, rng), "learned_range");
    DIFFUSE_CHECK_ERROR(process::parse_variance_type("fixed"), "variance_type", "fixed_small_log");
}
