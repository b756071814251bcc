// process/posterior.hpp: q(x_s | x_t, x0) for any s < t, tables, reverse-variance conventions
// (docs/forward_process.md §4–§5; closed_forms A2, A2').
#include <diffuse/process/posterior.hpp>

#include <diffuse/backend/randn.hpp>
#include <diffuse/core/philox.hpp>
#include <diffuse/core/tensor.hpp>
#include <diffuse/schedules/beta_schedule.hpp>
#include <diffuse/schedules/discrete_schedule.hpp>

#include "support/check.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

using namespace diffuse;
using namespace diffuse::process;
using diffuse::test::eps;

namespace {

std::vector<double> cumprod(const std::vector<double>& betas) {
    std::vector<double> ab(betas.size());
    double p = 1.0;
    for (std::size_t i = 0; i < betas.size(); ++i) ab[i] = p *= (1.0 - betas[i]);
    return ab;
}

/// DDPM linear schedule, computed here (β_i = 1e-4 + i/(T−1)·(0.02 − 1e-4)).
std::vector<double> linear_alphas_cumprod(int T = 1000) {
    std::vector<double> b(static_cast<std::size_t>(T));
    for (int i = 0; i < T; ++i) b[static_cast<std::size_t>(i)] = 1e-4 + (0.02 - 1e-4) * i / (T - 1.0);
    return cumprod(b);
}

/// Posterior by generic Gaussian conditioning of the joint (x_s, x_t) | x0, written without the
/// closed forms under test: x_s = a_s x0 + s_s e1, x_t = √α_{t|s} x_s + √β_{t|s} e2, so
/// Var x_s = 1 − ᾱ_s, Cov = √α_{t|s}(1 − ᾱ_s), Var x_t = α_{t|s}(1 − ᾱ_s) + β_{t|s}; then
/// E[x_s | x_t, x0] = a_s x0 + Cov/Var_t·(x_t − E x_t), Var = Var_s − Cov²/Var_t.
struct bayes {
    double c_x0, c_xt, var;
};
bayes condition(double ab_t, double ab_s) {
    const double alpha = ab_t / ab_s, beta = 1 - alpha;
    const double var_s = 1 - ab_s, cov = std::sqrt(alpha) * var_s, var_t = alpha * var_s + beta;
    const double mean_t_coef = std::sqrt(alpha) * std::sqrt(ab_s);  // E x_t = √α √ᾱ_s x0
    const double k = cov / var_t;
    return {std::sqrt(ab_s) - k * mean_t_coef, k, var_s - cov * k};
}

}  // namespace

TEST_CASE("posterior coefficients equal Gaussian conditioning of the joint, s = t-1 and strided (A2.1)") {
    // Tolerance 1e-12 absolute (closed_forms A2; measured there 6.3e-13): both sides are O(1)
    // expressions of a few roundings; the conditioning form's Var_s − Cov²/Var_t cancels to
    // ~u absolute when β̃ is small.
    std::vector<std::vector<double>> grids = {linear_alphas_cumprod(),
                                              cumprod(schedules::make_betas("squaredcos_cap_v2", 1000)),
                                              cumprod(schedules::make_betas("scaled_linear", 1000, 0.00085, 0.012))};
    for (const auto& ab : grids) {
        double worst = 0.0, worst_identity = 0.0, worst_marginal = 0.0;
        for (std::size_t t = 1; t < ab.size(); ++t) {
            for (std::size_t stride : {std::size_t{1}, std::size_t{7}, std::size_t{100}}) {
                if (stride > t) continue;
                const double ab_t = ab[t], ab_s = ab[t - stride];
                const posterior_coeffs c = posterior(ab_t, ab_s);
                const bayes b = condition(ab_t, ab_s);
                worst = std::fmax(worst, std::fabs(c.coef_x0 - b.c_x0));
                worst = std::fmax(worst, std::fabs(c.coef_xt - b.c_xt));
                worst = std::fmax(worst, std::fabs(c.variance - b.var));
                // c_x0 + c_xt·√ᾱ_t = √ᾱ_s: the posterior keeps E[x_s | x0].
                worst_identity = std::fmax(worst_identity,
                                           std::fabs(c.coef_x0 + c.coef_xt * std::sqrt(ab_t) - std::sqrt(ab_s)));
                // c_xt²(1 − ᾱ_t) + β̃ = 1 − ᾱ_s: the posterior keeps Var[x_s | x0].
                worst_marginal = std::fmax(
                    worst_marginal, std::fabs(c.coef_xt * c.coef_xt * (1 - ab_t) + c.variance - (1 - ab_s)));
            }
        }
        CHECK(worst < 1e-12);
        CHECK(worst_identity < 1e-14);  // a handful of roundings of O(1) numbers
        CHECK(worst_marginal < 1e-14);
    }
}

TEST_CASE("the first step (abar_s = 1) has posterior variance exactly 0 (A2.3)") {
    const std::vector<double> ab = linear_alphas_cumprod();
    const posterior_coeffs c = posterior(ab[0], 1.0);
    CHECK(c.variance == 0.0);
    CHECK(c.log_variance == -std::numeric_limits<double>::infinity());
    CHECK(c.coef_xt == 0.0);
    DIFFUSE_CHECK_CLOSE(c.coef_x0, 1.0, 0, 2 * eps<double>);  // √1·β_0/(1 − ᾱ_0), β_0 = 1 − ᾱ_0
    const posterior_coeffs cl = posterior_log(std::log(ab[0]), 0.0);
    CHECK(cl.variance == 0.0);
    CHECK(cl.log_variance == -std::numeric_limits<double>::infinity());
    const auto sched = schedules::discrete_schedule::named("linear", 1000);
    CHECK(posterior_at(sched, 0).variance == 0.0);
    const posterior_table tab = make_posterior_table(sched);
    CHECK(tab.posterior_variance[0] == 0.0);
    // improved-diffusion's clipped log-variance borrows step 1's value at step 0.
    CHECK(tab.posterior_log_variance_clipped[0] == tab.posterior_log_variance_clipped[1]);
    DIFFUSE_CHECK_CLOSE(tab.posterior_log_variance_clipped[1], std::log(tab.posterior_variance[1]), 0, 4 * eps<double>);
}

TEST_CASE("log-abar form agrees with the abar form and keeps precision where 1 - abar is tiny") {
    const std::vector<double> ab = linear_alphas_cumprod();
    double worst = 0.0;
    for (std::size_t t = 1; t < ab.size(); t += 3) {
        const posterior_coeffs a = posterior(ab[t], ab[t - 1]);
        const posterior_coeffs b = posterior_log(std::log(ab[t]), std::log(ab[t - 1]));
        for (auto [x, y] : {std::pair{a.coef_x0, b.coef_x0}, std::pair{a.coef_xt, b.coef_xt},
                            std::pair{a.variance, b.variance}, std::pair{a.beta, b.beta}})
            worst = std::fmax(worst, std::fabs(x - y) / std::fabs(y));
        worst = std::fmax(worst, std::fabs(a.log_variance - b.log_variance) / std::fabs(b.log_variance));
    }
    // Relative 1e-12: each form has O(u/(1 − ᾱ)) relative error from ᾱ's representation;
    // at t = 1, 1 − ᾱ ≈ 2e-4, i.e. ~1e-12.
    CHECK(worst < 1e-12);
    // log ᾱ_s = −1e-12, log ᾱ_t = −3e-12: 1 − ᾱ_s = 1e-12(1 − 5e-13), β = 2e-12(1 − 1e-12),
    // 1 − ᾱ_t = 3e-12(1 − 1.5e-12); β̃ = (1 − ᾱ_s)β/(1 − ᾱ_t) = (2/3)e-12·(1 − 5e-13 − 1e-12 + 1.5e-12)
    // = (2/3)e-12 to 1e-24. The log form gets it to a few ulps; ᾱ-based arithmetic could not
    // (ᾱ = 1 − 1e-12 as a double is off by up to 1.1e-16/1e-12 = 1e-4 relative).
    const posterior_coeffs tiny = posterior_log(-3e-12, -1e-12);
    DIFFUSE_CHECK_CLOSE(tiny.variance, 2.0 / 3.0 * 1e-12, 0, 16 * eps<double>);
    DIFFUSE_CHECK_CLOSE(tiny.log_variance, std::log(2.0 / 3.0 * 1e-12), 0, 16 * eps<double>);
    DIFFUSE_CHECK_CLOSE(tiny.coef_xt, 1.0 / 3.0, 0, 16 * eps<double>);  // √α·(1−ᾱ_s)/(1−ᾱ_t) ≈ 1/3
    DIFFUSE_CHECK_CLOSE(tiny.coef_x0, 2.0 / 3.0, 0, 16 * eps<double>);
}

TEST_CASE("zero terminal SNR: the step from abar_t = 0 has c_xt = 0, c_x0 = sqrt(abar_s), variance 1 - abar_s") {
    const posterior_coeffs c = posterior(0.0, 0.01);
    CHECK(c.coef_xt == 0.0);
    DIFFUSE_CHECK_CLOSE(c.coef_x0, 0.1, 0, 4 * eps<double>);
    DIFFUSE_CHECK_CLOSE(c.variance, 0.99, 0, 4 * eps<double>);
    const posterior_coeffs cl = posterior_log(-std::numeric_limits<double>::infinity(), std::log(0.01));
    CHECK(cl.coef_xt == 0.0);
    DIFFUSE_CHECK_CLOSE(cl.coef_x0, 0.1, 0, 4 * eps<double>);
    DIFFUSE_CHECK_CLOSE(cl.variance, 0.99, 0, 4 * eps<double>);
    // A table whose last level is ᾱ = 0.
    const posterior_table tab = make_posterior_table(std::vector<double>{0.9, 0.5, 0.0});
    CHECK(tab.betas[2] == 1.0);
    CHECK(tab.posterior_mean_coef2[2] == 0.0);
}

TEST_CASE("diffusers' published DDPM variances (linear 1e-4..0.02, T = 1000)") {
    // diffusers tests/schedulers/test_scheduler_ddpm.py::test_variance: _get_variance(487) = 0.00979,
    // (999) = 0.02, (0) = 0, each to 1e-5 (diffusers works in float32). Re-derived in float64:
    // 0.0097916 and 0.0199999 (peers.md b.7); diffusers' t = 0 value is its floor 1e-20.
    const posterior_table tab = make_posterior_table(linear_alphas_cumprod());
    using vt = variance_type;
    using vc = variance_convention;
    DIFFUSE_CHECK_CLOSE(reverse_variance(tab, 487, vt::fixed_small, vc::diffusers), 0.0097916, 1e-5, 0);
    DIFFUSE_CHECK_CLOSE(reverse_variance(tab, 999, vt::fixed_small, vc::diffusers), 0.0199999, 1e-5, 0);
    DIFFUSE_CHECK_CLOSE(reverse_variance(tab, 487, vt::fixed_small, vc::diffusers), 0.00979, 1e-5, 0);
    DIFFUSE_CHECK_CLOSE(reverse_variance(tab, 999, vt::fixed_small, vc::diffusers), 0.02, 1e-5, 0);
    DIFFUSE_CHECK_CLOSE(reverse_variance(tab, 0, vt::fixed_small, vc::diffusers), 1e-20, 0, 1e-12);
    // The same from the schedules/ table (accurate log ᾱ): agrees to 1e-12 relative.
    const posterior_table tab2 = make_posterior_table(schedules::discrete_schedule::named("linear", 1000));
    for (std::size_t i : {std::size_t{1}, std::size_t{487}, std::size_t{999}})
        DIFFUSE_CHECK_CLOSE(tab2.posterior_variance[i], tab.posterior_variance[i], 0, 1e-12);
}

TEST_CASE("reverse-variance conventions of improved-diffusion and diffusers (A2')") {
    const posterior_table tab = make_posterior_table(linear_alphas_cumprod());
    using vt = variance_type;
    using vc = variance_convention;
    const double lbt1 = std::log(tab.posterior_variance[1]);  // log β̃_1
    // improved-diffusion: fixed_small = posterior_log_variance_clipped (log β̃_1 at i = 0),
    // fixed_large = append(β̃_1, β[1:]), learned_range between the clipped log β̃ and log β.
    CHECK(reverse_log_variance(tab, 0, vt::fixed_small, vc::improved_diffusion) == lbt1);
    CHECK(reverse_log_variance(tab, 0, vt::fixed_large, vc::improved_diffusion) == lbt1);
    CHECK(reverse_log_variance(tab, 5, vt::fixed_large, vc::improved_diffusion) == tab.log_betas[5]);
    CHECK(reverse_log_variance(tab, 5, vt::fixed_small, vc::improved_diffusion) ==
          tab.posterior_log_variance_clipped[5]);
    // diffusers: fixed_large = β_i everywhere (β_0 at i = 0), fixed_small = max(β̃, 1e-20).
    CHECK(reverse_log_variance(tab, 0, vt::fixed_large, vc::diffusers) == tab.log_betas[0]);
    DIFFUSE_CHECK_CLOSE(reverse_log_variance(tab, 0, vt::fixed_small, vc::diffusers), std::log(1e-20), 0,
                        4 * eps<double>);
    // learned_range: v = −1 -> min, v = +1 -> max, v = 0 -> the geometric mean of the variances.
    for (vc conv : {vc::improved_diffusion, vc::diffusers}) {
        for (std::size_t i : {std::size_t{0}, std::size_t{1}, std::size_t{500}}) {
            const log_variance_range r = learned_range_bounds(tab, i, conv);
            CHECK(r.max_log == tab.log_betas[i]);  // both peers: log β_i (β_0 at i = 0)
            DIFFUSE_CHECK_CLOSE(reverse_log_variance(tab, i, vt::learned_range, conv, -1.0), r.min_log, 1e-15, 0);
            DIFFUSE_CHECK_CLOSE(reverse_log_variance(tab, i, vt::learned_range, conv, 1.0), r.max_log, 1e-15, 0);
            DIFFUSE_CHECK_CLOSE(reverse_log_variance(tab, i, vt::learned_range, conv, 0.0),
                                0.5 * (r.min_log + r.max_log), 1e-14, 0);
        }
    }
    CHECK(learned_range_bounds(tab, 0, vc::improved_diffusion).min_log == lbt1);
    DIFFUSE_CHECK_CLOSE(learned_range_bounds(tab, 0, vc::diffusers).min_log, std::log(1e-20), 0, 4 * eps<double>);
    CHECK(reverse_log_variance(tab, 3, vt::learned, vc::diffusers, -4.5) == -4.5);
    // Names parse as diffusers' strings, the _log forms to the same variance.
    CHECK(parse_variance_type("fixed_small") == vt::fixed_small);
    CHECK(parse_variance_type("fixed_small_log") == vt::fixed_small);
    CHECK(parse_variance_type("fixed_large_log") == vt::fixed_large);
    CHECK(parse_variance_type("learned_range") == vt::learned_range);
    for (vt v : {vt::fixed_small, vt::fixed_large, vt::learned, vt::learned_range})
        CHECK(parse_variance_type(to_string(v)) == v);
}

TEST_CASE("a respaced grid's table equals the posterior between its kept levels") {
    const std::vector<double> ab = linear_alphas_cumprod();
    std::vector<double> kept;
    std::vector<int> use;
    for (int t = 9; t < 1000; t += 10) {
        kept.push_back(ab[static_cast<std::size_t>(t)]);
        use.push_back(t);
    }
    const posterior_table tab = make_posterior_table(kept);
    for (std::size_t i = 1; i < kept.size(); ++i) {
        const posterior_coeffs c = posterior(kept[i], kept[i - 1]);
        DIFFUSE_CHECK_CLOSE(tab.posterior_mean_coef1[i], c.coef_x0, 0, 1e-12);
        DIFFUSE_CHECK_CLOSE(tab.posterior_mean_coef2[i], c.coef_xt, 0, 1e-12);
        DIFFUSE_CHECK_CLOSE(tab.posterior_variance[i], c.variance, 0, 1e-12);
        DIFFUSE_CHECK_CLOSE(tab.betas[i], 1 - kept[i] / kept[i - 1], 1e-15, 1e-12);
    }
    DIFFUSE_CHECK_CLOSE(tab.betas[0], 1 - kept[0], 1e-15, 1e-12);
    // Same numbers from schedules/: respaced(use) then its table; and posterior_at(t, s) strided.
    const auto sched = schedules::discrete_schedule::named("linear", 1000);
    const posterior_table tab2 = make_posterior_table(sched.respaced(use));
    for (std::size_t i = 0; i < kept.size(); ++i) {
        DIFFUSE_CHECK_CLOSE(tab2.posterior_variance[i], tab.posterior_variance[i], 1e-300, 1e-12);
        DIFFUSE_CHECK_CLOSE(tab2.posterior_mean_coef1[i], tab.posterior_mean_coef1[i], 0, 1e-12);
    }
    const posterior_coeffs strided = posterior_at(sched, 499, 489);
    DIFFUSE_CHECK_CLOSE(strided.variance, tab.posterior_variance[49], 0, 1e-12);
}

TEST_CASE_TEMPLATE("posterior_mean, posterior_sample and learned_range on tensors", T, float, double) {
    const shape sh{2, 3, 4, 4};
    philox_rng rng(5);
    const auto x0 = randn<T, host_space>(sh, rng);
    const auto xt = randn<T, host_space>(sh, rng);
    const auto z = randn<T, host_space>(sh, rng);
    const posterior_coeffs c = posterior(0.4, 0.5);
    tensor<T, host_space> mean(sh), sample(sh), lv(sh);
    posterior_mean(mean, x0, xt, c);
    posterior_sample(sample, x0, xt, c, z);
    // One or two roundings per term in T: 4 eps(T)·(|c_x0 x0| + |c_xt x_t| + |σ z|) <= 4 eps·3·5.
    const double tol = 4 * eps<T> * 15.0;
    for (std::int64_t i = 0; i < mean.numel(); ++i) {
        DIFFUSE_CHECK_CLOSE(mean[i], c.coef_x0 * x0[i] + c.coef_xt * xt[i], tol, 0);
        DIFFUSE_CHECK_CLOSE(sample[i], c.coef_x0 * x0[i] + c.coef_xt * xt[i] + std::sqrt(c.variance) * z[i], tol, 0);
    }
    // The rng overload draws randn(shape) from the stream.
    philox_rng r1(3), r2(3);
    posterior_sample(sample, x0, xt, c, r1);
    const auto z2 = randn<T, host_space>(sh, r2);
    tensor<T, host_space> ref(sh);
    posterior_sample(ref, x0, xt, c, z2);
    CHECK(sample.to_vector() == ref.to_vector());
    // learned_range per element matches the scalar formula.
    learned_range_log_variance(lv, z, -7.0, -3.0);
    for (std::int64_t i = 0; i < lv.numel(); ++i)
        DIFFUSE_CHECK_CLOSE(lv[i], learned_range_log_variance(static_cast<double>(z[i]), -7.0, -3.0), 8 * eps<T> * 10, 0);
}

TEST_CASE("posterior functions reject invalid arguments") {
    DIFFUSE_CHECK_ERROR(posterior(0.5, 0.375), "alpha_bar_t = 0.5", "s < t");
    DIFFUSE_CHECK_ERROR(posterior(1.0, 1.0), "alpha_bar_t = 1");
    DIFFUSE_CHECK_ERROR(posterior(0.5, 1.5), "alpha_bar_s = 1.5", "(0, 1]");
    DIFFUSE_CHECK_ERROR(posterior(-0.5, 0.75), "alpha_bar_t = -0.5", "[0, 1]");
    DIFFUSE_CHECK_ERROR(posterior(NAN, 0.75), "alpha_bar_t = nan");
    DIFFUSE_CHECK_ERROR(posterior_log(-1.0, -2.0), "log_alpha_bar_t = -1", "s < t");
    DIFFUSE_CHECK_ERROR(posterior_log(-1.0, 0.5), "log_alpha_bar_s = 0.5");
    const auto sched = schedules::discrete_schedule::named("linear", 100);
    DIFFUSE_CHECK_ERROR(posterior_at(sched, 100), "t = 100", "[0, 99]");
    DIFFUSE_CHECK_ERROR(posterior_at(sched, 10, 10), "s = 10", "s < t");
    DIFFUSE_CHECK_ERROR(posterior_at(sched, 10, -2), "s = -2");
    DIFFUSE_CHECK_ERROR(make_posterior_table(std::vector<double>{0.5}), "grid size = 1", "at least 2");
    DIFFUSE_CHECK_ERROR(make_posterior_table(std::vector<double>{0.5, 0.75}), "log_alphas_cumprod[1]",
                        "strictly");
    DIFFUSE_CHECK_ERROR(make_posterior_table(std::vector<double>{1.0, 0.5}), "alphas_cumprod[0] = 1", "[0, 1)");
    DIFFUSE_CHECK_ERROR(make_posterior_table(std::vector<double>{0.5, 0.0, 0.0}), "log_alphas_cumprod[1]");
    const posterior_table tab = make_posterior_table(std::vector<double>{0.9, 0.5});
    DIFFUSE_CHECK_ERROR(tab.at(2), "i = 2", "[0, 2)");
    DIFFUSE_CHECK_ERROR(reverse_log_variance(tab, 5, variance_type::fixed_small, variance_convention::diffusers),
                        "i = 5");
    DIFFUSE_CHECK_ERROR(
        reverse_log_variance(tab, 1, variance_type::learned, variance_convention::diffusers, NAN), "model_output");
    DIFFUSE_CHECK_ERROR(reverse_log_variance(tab, 1, variance_type::learned_range, variance_convention::diffusers,
                                             INFINITY),
                        "v = inf");
    DIFFUSE_CHECK_ERROR(parse_variance_type("fixed"), "variance_type = \"fixed\"", "fixed_small", "learned_range");
    DIFFUSE_CHECK_ERROR(learned_range_log_variance(0.0, -INFINITY, 1.0), "min_log = -inf");
    tensor<double, host_space> a(shape{2, 3}, 0.0), b(shape{3, 2}, 0.0);
    DIFFUSE_CHECK_ERROR(posterior_mean(a, a, b, posterior(0.4, 0.5)), "shape mismatch");
    DIFFUSE_CHECK_ERROR(learned_range_log_variance(a, b, -2.0, -1.0), "v has shape [3, 2]");
    posterior_coeffs bad = posterior(0.4, 0.5);
    bad.variance = -1.0;
    DIFFUSE_CHECK_ERROR(posterior_sample(a, a, a, bad, a), "variance = -1");
}
