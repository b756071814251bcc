// process/losses.hpp: L_simple, min-SNR-γ and EDM weights, Gaussian KL, discretised decoder,
// VLB terms (docs/forward_process.md §6, docs/parametrisations.md §4; closed_forms E1–E5).
#include <diffuse/process/losses.hpp>

#include <diffuse/backend/lincomb.hpp>
#include <diffuse/backend/randn.hpp>
#include <diffuse/core/philox.hpp>
#include <diffuse/core/tensor.hpp>
#include <diffuse/process/forward.hpp>
#include <diffuse/process/parametrization.hpp>
#include <diffuse/process/posterior.hpp>

#include "support/check.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <numbers>
#include <vector>

using namespace diffuse;
using namespace diffuse::process;
using diffuse::test::eps;

namespace {

using pt = prediction_type;

std::vector<double> linear_alphas_cumprod(int T = 1000) {
    std::vector<double> ab(static_cast<std::size_t>(T));
    double p = 1.0;
    for (int i = 0; i < T; ++i) ab[static_cast<std::size_t>(i)] = p *= 1.0 - (1e-4 + (0.02 - 1e-4) * i / (T - 1.0));
    return ab;
}

/// Composite Simpson rule for ∫_lo^hi f with n (even) intervals.
template <class F>
double simpson(F f, double lo, double hi, int n) {
    const double h = (hi - lo) / n;
    double acc = f(lo) + f(hi);
    for (int i = 1; i < n; ++i) acc += (i % 2 ? 4.0 : 2.0) * f(lo + i * h);
    return acc * h / 3.0;
}

double log_normal_pdf(double x, double m, double v) {
    return -0.5 * std::log(2 * std::numbers::pi * v) - (x - m) * (x - m) / (2 * v);
}

}  // namespace

TEST_CASE_TEMPLATE("mean_flat and the per-item squared error (L_simple)", T, float, double) {
    const shape sh{3, 2, 5, 5};
    philox_rng rng(1);
    const auto p = randn<T, host_space>(sh, rng);
    const auto q = randn<T, host_space>(sh, rng);
    const std::vector<double> mse = mean_flat_squared_error(p, q);
    const std::vector<double> mf = mean_flat(p);
    REQUIRE(mse.size() == 3);
    double total = 0.0;
    for (std::int64_t b = 0; b < 3; ++b) {
        double acc = 0.0, accp = 0.0;
        for (std::int64_t i = 0; i < 50; ++i) {
            const double d = static_cast<double>(p[b * 50 + i]) - static_cast<double>(q[b * 50 + i]);
            acc += d * d;
            accp += static_cast<double>(p[b * 50 + i]);
        }
        // The difference is rounded to T once (relative eps(T)/2 per element, doubled by the square).
        DIFFUSE_CHECK_CLOSE(mse[static_cast<std::size_t>(b)], acc / 50, 1e-15, 2 * eps<T>);
        DIFFUSE_CHECK_CLOSE(mf[static_cast<std::size_t>(b)], accp / 50, 1e-14, 0);
        total += acc / 50;
    }
    DIFFUSE_CHECK_CLOSE(mean_squared_error(p, q), total / 3, 1e-15, 2 * eps<T>);
    tensor<T, host_space> other(shape{3, 50});
    DIFFUSE_CHECK_ERROR(mean_flat_squared_error(p, other), "shape mismatch", "target has shape [3, 50]");
    tensor<T, host_space> scalar(shape{});
    DIFFUSE_CHECK_ERROR(mean_flat(scalar), "x.rank() = 0", "batch");
}

TEST_CASE("min-SNR-gamma weights: values, limits and errors") {
    const double g = 5.0;
    CHECK(min_snr_weight(10.0, g, pt::sample) == 5.0);
    CHECK(min_snr_weight(10.0, g, pt::epsilon) == 0.5);
    DIFFUSE_CHECK_CLOSE(min_snr_weight(10.0, g, pt::v_prediction), 5.0 / 11.0, 0, 2 * eps<double>);
    CHECK(min_snr_weight(2.0, g, pt::sample) == 2.0);
    CHECK(min_snr_weight(2.0, g, pt::epsilon) == 1.0);
    DIFFUSE_CHECK_CLOSE(min_snr_weight(2.0, g, pt::v_prediction), 2.0 / 3.0, 0, 2 * eps<double>);
    // SNR = 0 (zero terminal SNR): the limits, not 0/0.
    CHECK(min_snr_weight(0.0, g, pt::epsilon) == 1.0);
    CHECK(min_snr_weight(0.0, g, pt::v_prediction) == 0.0);
    CHECK(min_snr_weight(0.0, g, pt::score) == 1.0);
    CHECK(min_snr_weight(INFINITY, g, pt::sample) == 5.0);
    CHECK(min_snr_weight(INFINITY, g, pt::epsilon) == 0.0);
    DIFFUSE_CHECK_ERROR(min_snr_weight(-1.0, g, pt::sample), "snr = -1");
    DIFFUSE_CHECK_ERROR(min_snr_weight(1.0, 0.0, pt::sample), "gamma = 0", "> 0");
    DIFFUSE_CHECK_ERROR(min_snr_weight(NAN, g, pt::sample), "snr = nan");
    // EDM: λ(σ) = 1/c_out², c_out = σσ_d/√(σ² + σ_d²).
    for (double sigma : {0.002, 0.1, 1.0, 80.0}) {
        const double c_out = sigma * 0.5 / std::sqrt(sigma * sigma + 0.25);
        DIFFUSE_CHECK_CLOSE(edm_weight(sigma), 1 / (c_out * c_out), 0, 8 * eps<double>);
    }
    DIFFUSE_CHECK_ERROR(edm_weight(0.0), "sigma = 0");
    DIFFUSE_CHECK_ERROR(edm_weight(1.0, -0.5), "sigma_data = -0.5");
}

TEST_CASE("min-SNR-gamma weights give identical per-sample losses in every parametrisation (E4)") {
    // x̂0 = x0 + 0.2·noise; ê, v̂, ŝ from x̂0 at the same x_t (convert). The weighted per-item
    // losses w_p·mean_flat((p − p̂)²) coincide by the loss-space identities of A3. Relative 1e-12
    // (catalogue: measured 5e-15).
    const shape sh{4, 3, 4, 4};
    philox_rng rng(7);
    const auto x0 = randn<double, host_space>(sh, rng);
    const auto e = randn<double, host_space>(sh, rng);
    auto x0h = randn<double, host_space>(sh, rng);
    lincomb(x0h, 1.0, x0, 0.2, x0h);
    const double g = 5.0;
    for (double ab : {0.999, 0.9, 0.5, 0.1, 1e-3}) {
        const double a = std::sqrt(ab), s = std::sqrt(1 - ab), snr = ab / (1 - ab);
        tensor<double, host_space> xt(sh), target(sh), pred(sh);
        q_sample(xt, x0, a, s, e);
        std::vector<double> ref;
        for (pt p : all_prediction_types) {
            training_target(target, p, x0, e, a, s);
            convert(pred, pt::sample, x0h, p, xt, a, s);
            const std::vector<double> l = mean_flat_squared_error(pred, target);
            const double w = min_snr_weight(snr, g, p);
            if (ref.empty())
                for (double v : l) ref.push_back(w * v);
            INFO("abar = " << ab << ", " << to_string(p));
            for (std::size_t b = 0; b < l.size(); ++b) DIFFUSE_CHECK_CLOSE(w * l[b], ref[b], 0, 1e-12);
        }
    }
}

TEST_CASE("normal_kl: zero on equal arguments, non-negative, and equal to quadrature (E1)") {
    CHECK(normal_kl(0.3, std::log(0.5), 0.3, std::log(0.5)) == 0.0);
    for (double m1 : {-1.0, 0.0, 2.0})
        for (double lv1 : {-3.0, 0.0, 1.5})
            for (double m2 : {-0.5, 0.0, 1.0})
                for (double lv2 : {-2.0, 0.0, 2.0}) CHECK(normal_kl(m1, lv1, m2, lv2) >= 0.0);
    // Deterministic check of the closed form and of the log-ratio variance used for Monte-Carlo
    // bounds, Var = ½(1 − v1/v2)² + v1(m1 − m2)²/v2², by Simpson quadrature of p1·log(p1/p2) and
    // p1·(log(p1/p2) − KL)² over m1 ± 14σ1 (truncated mass < 1e-43) with 40000 intervals: the
    // integrands are smooth, Simpson's error ~ h⁴·f'''' is below 1e-13 here. Tolerance 1e-10 relative.
    struct kcase {
        double m1, v1, m2, v2;
    };
    for (const kcase& k : {kcase{0.3, 0.5, -0.2, 2.0}, kcase{1.0, 2.0, 0.0, 0.1}, kcase{0.0, 1.0, 0.0, 1.0}}) {
        const double kl = normal_kl(k.m1, std::log(k.v1), k.m2, std::log(k.v2));
        const double sd = std::sqrt(k.v1);
        auto lr = [&](double x) { return log_normal_pdf(x, k.m1, k.v1) - log_normal_pdf(x, k.m2, k.v2); };
        const double q = simpson([&](double x) { return std::exp(log_normal_pdf(x, k.m1, k.v1)) * lr(x); },
                                 k.m1 - 14 * sd, k.m1 + 14 * sd, 40000);
        const double qv = simpson(
            [&](double x) { return std::exp(log_normal_pdf(x, k.m1, k.v1)) * (lr(x) - kl) * (lr(x) - kl); },
            k.m1 - 14 * sd, k.m1 + 14 * sd, 40000);
        const double var_cf = 0.5 * (1 - k.v1 / k.v2) * (1 - k.v1 / k.v2) +
                              k.v1 * (k.m1 - k.m2) * (k.m1 - k.m2) / (k.v2 * k.v2);
        DIFFUSE_CHECK_CLOSE(kl, q, 1e-13, 1e-10);
        DIFFUSE_CHECK_CLOSE(var_cf, qv, 1e-13, 1e-10);
    }
    // Reference values of the catalogue (E1): 0.380647 and 13.002134 (printed to 6 decimals).
    DIFFUSE_CHECK_CLOSE(normal_kl(0.3, std::log(0.5), -0.2, std::log(2.0)), 0.380647, 5e-7, 0);
    DIFFUSE_CHECK_CLOSE(normal_kl(1.0, std::log(2.0), 0.0, std::log(0.1)), 13.002134, 5e-7, 0);
    DIFFUSE_CHECK_ERROR(normal_kl(NAN, 0.0, 0.0, 0.0), "mean1 = nan");
    DIFFUSE_CHECK_ERROR(normal_kl(0.0, -INFINITY, 0.0, 0.0), "logvar1 = -inf");
    DIFFUSE_CHECK_ERROR(normal_kl(0.0, 0.0, 0.0, INFINITY), "logvar2 = inf");
}

TEST_CASE_TEMPLATE("normal_kl on tensors, with tensor or constant arguments", T, float, double) {
    const shape sh{2, 3, 4};
    philox_rng rng(9);
    const auto m1 = randn<T, host_space>(sh, rng);
    const auto lv1 = randn<T, host_space>(sh, rng);
    const auto m2 = randn<T, host_space>(sh, rng);
    const auto lv2 = randn<T, host_space>(sh, rng);
    tensor<T, host_space> out(sh);
    // Computed in double from the T inputs and rounded once: relative eps(T).
    normal_kl(out, m1, lv1, m2, lv2);
    for (std::int64_t i = 0; i < out.numel(); ++i)
        DIFFUSE_CHECK_CLOSE(out[i], normal_kl(m1[i], lv1[i], m2[i], lv2[i]), 1e-300, eps<T>);
    normal_kl(out, m1, -1.5, m2, 0.25);
    for (std::int64_t i = 0; i < out.numel(); ++i)
        DIFFUSE_CHECK_CLOSE(out[i], normal_kl(m1[i], -1.5, m2[i], 0.25), 1e-300, eps<T>);
    normal_kl(out.view(), m1.cview(), lv1, 0.0, 0.0);
    for (std::int64_t i = 0; i < out.numel(); ++i)
        DIFFUSE_CHECK_CLOSE(out[i], normal_kl(m1[i], lv1[i], 0.0, 0.0), 1e-300, eps<T>);
    tensor<T, host_space> bad(shape{4, 3, 2});
    DIFFUSE_CHECK_ERROR(normal_kl(out, m1, lv1, bad, lv2), "shape mismatch", "mean2 has shape [4, 3, 2]");
    DIFFUSE_CHECK_ERROR(normal_kl(out, m1, NAN, m2, lv2), "logvar1 = nan");
}

TEST_CASE("standard normal CDFs: exact values and the tanh approximation's maximum error (E2)") {
    // Φ(1) and Φ(−3) from Python's math.erfc (0.5·erfc(−x/√2)). The rounding of the argument x/√2
    // is amplified by the condition number |x·φ(x)/Φ(x)| (≈ 0.29 at 1, ≈ 10 at −3): 4 eps·(1 + κ).
    DIFFUSE_CHECK_CLOSE(standard_normal_cdf(1.0, normal_cdf::exact), 0.8413447460685429, 0, 8 * eps<double>);
    DIFFUSE_CHECK_CLOSE(standard_normal_cdf(-3.0, normal_cdf::exact), 0.0013498980316300957, 0, 44 * eps<double>);
    // max |Φ_tanh − Φ| over [−8, 8] on a 1e-4 grid: 1.789e-4 at x = ±2.592 (closed_forms E2).
    double worst = 0.0, at = 0.0;
    for (int i = -80000; i <= 80000; ++i) {
        const double x = i * 1e-4;
        const double d = std::fabs(standard_normal_cdf(x, normal_cdf::tanh_approx) - standard_normal_cdf(x, normal_cdf::exact));
        if (d > worst) worst = d, at = x;
    }
    CHECK(worst > 1.7885e-4);
    CHECK(worst < 1.7895e-4);
    CHECK(std::fabs(std::fabs(at) - 2.592) < 2e-3);
    DIFFUSE_CHECK_ERROR(standard_normal_cdf(NAN, normal_cdf::exact), "x = nan");
    CHECK(to_string(normal_cdf::tanh_approx) == "tanh_approx");
}

TEST_CASE("discretised Gaussian likelihood: bins telescope to 1 for both CDFs, and hand-computed values (E2)") {
    // Bin k: centre k/127.5 − 1, k = 0..255. When no probability is below the 1e-12 clamp, the sum
    // telescopes: Φ(u_0) + Σ (Φ(u_k) − Φ(l_k)) + (1 − Φ(l_255)) = 1 with u_k = l_{k+1} up to one
    // rounding of the bin edges, so |Σ − 1| <= 256·4 u ≈ 1e-13 (measured 2e-15; tolerance 1e-12).
    struct dcase {
        double mean, scale;
    };
    for (normal_cdf cdf : {normal_cdf::exact, normal_cdf::tanh_approx}) {
        for (const dcase& c : {dcase{-0.5, 1.0}, dcase{0.3, 0.5}, dcase{0.0, 0.3}, dcase{0.9, 2.0}}) {
            double total = 0.0, smallest = 1.0;
            for (int k = 0; k < 256; ++k) {
                const double p =
                    std::exp(discretized_gaussian_log_likelihood(k / 127.5 - 1.0, c.mean, std::log(c.scale), cdf));
                total += p;
                smallest = std::min(smallest, p);
            }
            INFO("cdf = " << to_string(cdf) << ", mean = " << c.mean << ", scale = " << c.scale);
            REQUIRE(smallest > 1e-12);  // no clamp active
            DIFFUSE_CHECK_CLOSE(total, 1.0, 1e-12, 0);
        }
    }
    // Hand value: x = 1/255 (bin 128), mean 0, σ = 1: p = Φ(2/255) − Φ(0) = φ(0)(z − z³/6 + z⁵/40 − …),
    // z = 2/255: p = 0.398942280401433·(0.00784313725490196 − 8.0413e-8 + …) = 0.0031289266…,
    // log p = −5.76706515022811 (Python math.erfc: exact Φ); the tanh CDF gives −5.767065200971525.
    const double x = 128 / 127.5 - 1.0;
    DIFFUSE_CHECK_CLOSE(discretized_gaussian_log_likelihood(x, 0.0, 0.0, normal_cdf::exact), -5.76706515022811, 0,
                        1e-12);
    DIFFUSE_CHECK_CLOSE(discretized_gaussian_log_likelihood(x, 0.0, 0.0, normal_cdf::tanh_approx),
                        -5.767065200971525, 0, 1e-12);
    // Edge bins, mean 0.2, σ = 0.5: x = −1 -> log Φ((−1.2 + 1/255)/0.5); x = 1 -> log(1 − Φ((0.8 − 1/255)/0.5)).
    // Values from Python (math.erfc for Φ; the tanh formula for the approximation).
    const double ls = std::log(0.5);
    DIFFUSE_CHECK_CLOSE(discretized_gaussian_log_likelihood(-1.0, 0.2, ls, normal_cdf::exact), -4.782523185490067, 0,
                        1e-12);
    DIFFUSE_CHECK_CLOSE(discretized_gaussian_log_likelihood(1.0, 0.2, ls, normal_cdf::exact), -2.888228887573228, 0,
                        1e-12);
    DIFFUSE_CHECK_CLOSE(discretized_gaussian_log_likelihood(-1.0, 0.2, ls, normal_cdf::tanh_approx),
                        -4.802344296850448, 0, 1e-12);
    DIFFUSE_CHECK_CLOSE(discretized_gaussian_log_likelihood(1.0, 0.2, ls, normal_cdf::tanh_approx), -2.88611633941833,
                        0, 1e-12);
    // The clamp: a bin 60σ away has probability 0 -> log 1e-12.
    DIFFUSE_CHECK_CLOSE(discretized_gaussian_log_likelihood(0.0, 0.6, std::log(0.01), normal_cdf::exact),
                        std::log(1e-12), 0, 4 * eps<double>);
    DIFFUSE_CHECK_ERROR(discretized_gaussian_log_likelihood(NAN, 0.0, 0.0, normal_cdf::exact), "x = nan");
    DIFFUSE_CHECK_ERROR(discretized_gaussian_log_likelihood(0.0, 0.0, INFINITY, normal_cdf::exact), "log_scale = inf");
}

TEST_CASE_TEMPLATE("discretised likelihood on tensors matches the scalar function", T, float, double) {
    const shape sh{2, 3, 8};
    philox_rng rng(13);
    std::vector<T> xs;
    for (int i = 0; i < 48; ++i) xs.push_back(static_cast<T>((i * 37 % 256) / 127.5 - 1.0));  // bin centres, edges included
    const auto x = tensor<T, host_space>::from_values(sh, xs);
    auto means = randn<T, host_space>(sh, rng);
    lincomb(means, 0.3, means);
    const auto ls = randn<T, host_space>(sh, rng);
    tensor<T, host_space> out(sh);
    for (normal_cdf cdf : {normal_cdf::exact, normal_cdf::tanh_approx}) {
        discretized_gaussian_log_likelihood(out, x, means, ls, cdf);
        for (std::int64_t i = 0; i < out.numel(); ++i)
            DIFFUSE_CHECK_CLOSE(out[i], discretized_gaussian_log_likelihood(x[i], means[i], ls[i], cdf), 1e-300, eps<T>);
        discretized_gaussian_log_likelihood(out, x, means, -1.0, cdf);
        for (std::int64_t i = 0; i < out.numel(); ++i)
            DIFFUSE_CHECK_CLOSE(out[i], discretized_gaussian_log_likelihood(x[i], means[i], -1.0, cdf), 1e-300, eps<T>);
    }
    tensor<T, host_space> bad(shape{48});
    DIFFUSE_CHECK_ERROR(discretized_gaussian_log_likelihood(out, bad, means, ls, normal_cdf::exact), "x has shape [48]");
}

TEST_CASE("VLB of Gaussian data in closed form: tight with the exact reverse kernels, and the E3 gaps") {
    // x0 ~ N(μ, λ) per dimension, DDPM linear T = 1000, exact mean x̂0 = E[x0 | x_t]. With
    // a_t = √ᾱ_t, s_t² = 1 − ᾱ_t, v_t = a_t²λ + s_t² and PV_t = λ s_t²/v_t = Var[x0 | x_t] (derivation:
    // docs/forward_process.md §6.4):
    //   L_T     = E_x0 KL(N(a_T x0, s_T²) || N(0, 1))              = prior_kl(√(μ² + λ), ᾱ_T)  (quadratic in x0)
    //   L_{i−1} = E KL(N(μ̃, β̃) || N(μ_θ, σ²)), μ̃ − μ_θ = c_x0 (x0 − x̂0)
    //           = normal_kl(0, log β̃, √(c_x0² PV_i), log σ²)         (quadratic in the mean gap)
    //   L_0     = E[−log N(x0; x̂0, σ_0²)] = −gaussian_log_likelihood(√PV_0, 0, log σ_0²)
    // with σ² from the posterior table under improved-diffusion's convention (decoder variance β̃_1
    // for both fixed types, A2'), or the optimal σ*² = β̃ + c_x0² PV (and σ_0² = PV_0).
    // Theorem (E3): with the optimal kernels VLB = H(x0) + KL(q(x_T) || N(0,1)); H = ½ log(2πeλ).
    // Reference values from closed_forms/t5_losses.py (float64 numpy), to 1e-9:
    //   H + KL_prior = 1.4189435779918793 (λ = 1, μ = 0.5)
    //   fixed_large VLB = 1.5326461045122386 (gap +0.11370252652035928)
    //   fixed_small VLB = 1.9975384232592566 (gap +0.5785948452673773)
    const double mu = 0.5, lam = 1.0;
    const std::vector<double> ab = linear_alphas_cumprod();
    const posterior_table tab = make_posterior_table(ab);
    const std::size_t T = ab.size();
    auto PV = [&](std::size_t i) { return lam * (1 - ab[i]) / (ab[i] * lam + (1 - ab[i])); };
    enum kind { optimal, large, small };
    auto vlb = [&](kind k) {
        double total = prior_kl(std::sqrt(mu * mu + lam), ab[T - 1]);
        for (std::size_t i = 1; i < T; ++i) {
            const double bt = tab.posterior_variance[i], c1 = tab.posterior_mean_coef1[i];
            const double lv = k == optimal ? std::log(bt + c1 * c1 * PV(i))
                                           : reverse_log_variance(tab, i,
                                                                  k == large ? variance_type::fixed_large
                                                                             : variance_type::fixed_small,
                                                                  variance_convention::improved_diffusion);
            total += normal_kl(0.0, tab.posterior_log_variance_clipped[i], std::sqrt(c1 * c1 * PV(i)), lv);
        }
        const double lv0 = k == optimal ? std::log(PV(0))
                                        : reverse_log_variance(tab, 0,
                                                               k == large ? variance_type::fixed_large
                                                                          : variance_type::fixed_small,
                                                               variance_convention::improved_diffusion);
        total += -gaussian_log_likelihood(std::sqrt(PV(0)), 0.0, lv0);
        return total;
    };
    const double aT = std::sqrt(ab[T - 1]), vT = ab[T - 1] * lam + (1 - ab[T - 1]);
    const double H = 0.5 * std::log(2 * std::numbers::pi * std::numbers::e * lam);
    const double KLp = normal_kl(aT * mu, std::log(vT), 0.0, 0.0);
    DIFFUSE_CHECK_CLOSE(H + KLp, 1.4189435779918793, 1e-12, 0);
    // Optimal: tight to rounding (1000 terms of O(1e-3) accumulate ~1e-13; measured 2.3e-13 in numpy).
    DIFFUSE_CHECK_CLOSE(vlb(optimal), H + KLp, 1e-11, 0);
    DIFFUSE_CHECK_CLOSE(vlb(large), 1.5326461045122386, 1e-9, 0);
    DIFFUSE_CHECK_CLOSE(vlb(small), 1.9975384232592566, 1e-9, 0);
    DIFFUSE_CHECK_CLOSE(vlb(large) - (H + KLp), 0.114, 5e-4, 0);  // the E3 table's +0.114
    DIFFUSE_CHECK_CLOSE(vlb(small) - (H + KLp), 0.579, 5e-4, 0);  // and +0.579
}

TEST_CASE_TEMPLATE("VLB terms on tensors (improved-diffusion _vb_terms_bpd / _prior_bpd) and bits per dim", T, float,
                   double) {
    const shape sh{2, 3, 4, 4};
    philox_rng rng(21);
    std::vector<T> xs;
    for (int i = 0; i < 96; ++i) xs.push_back(static_cast<T>((i * 53 % 256) / 127.5 - 1.0));
    const auto x0 = tensor<T, host_space>::from_values(sh, xs);
    const auto noise = randn<T, host_space>(sh, rng);
    auto mm = randn<T, host_space>(sh, rng);
    lincomb(mm, 0.1, mm, 1.0, x0);  // a model mean near x0
    const std::vector<double> ab = linear_alphas_cumprod();
    const posterior_table tab = make_posterior_table(ab);
    tensor<T, host_space> xt(sh);
    // Relative tolerance: per element one rounding in T of terms computed in double, then
    // averaged: 4 eps(T) relative to the mean of |terms| (all terms here are positive).
    const double rtol = 4 * eps<T>;
    for (std::size_t i : {std::size_t{0}, std::size_t{1}, std::size_t{500}}) {
        q_sample_vp(xt, x0, ab[i], noise);
        const double lv = reverse_log_variance(tab, i, variance_type::fixed_large, variance_convention::improved_diffusion);
        const std::vector<double> bits = vb_term_bits_per_dim(x0, xt, mm, lv, tab, i, normal_cdf::tanh_approx);
        const posterior_coeffs c = tab.at(i);
        for (std::int64_t b = 0; b < 2; ++b) {
            double acc = 0.0;
            for (std::int64_t k = 0; k < 48; ++k) {
                const std::int64_t j = b * 48 + k;
                if (i == 0) {
                    acc -= discretized_gaussian_log_likelihood(x0[j], mm[j], 0.5 * lv, normal_cdf::tanh_approx);
                } else {
                    const double true_mean = static_cast<T>(c.coef_x0 * x0[j] + c.coef_xt * xt[j]);
                    acc += normal_kl(true_mean, tab.posterior_log_variance_clipped[i], mm[j], lv);
                }
            }
            INFO("step " << i << ", item " << b);
            DIFFUSE_CHECK_CLOSE(bits[static_cast<std::size_t>(b)], acc / 48 / std::numbers::ln2, 1e-300, rtol * 4);
        }
        // A tensor log-variance equal to the constant gives the same numbers.
        const tensor<T, host_space> lvt(sh, static_cast<T>(lv));
        const std::vector<double> bits2 = vb_term_bits_per_dim(x0, xt, mm, lvt, tab, i, normal_cdf::tanh_approx);
        for (std::size_t b = 0; b < 2; ++b) DIFFUSE_CHECK_CLOSE(bits2[b], bits[b], 1e-300, rtol * 4);
    }
    // Prior term: mean_flat KL(N(√ᾱ_T x0, 1 − ᾱ_T) || N(0, 1)) / ln 2.
    const std::vector<double> prior = prior_bits_per_dim(x0, ab.back());
    for (std::int64_t b = 0; b < 2; ++b) {
        double acc = 0.0;
        for (std::int64_t k = 0; k < 48; ++k) acc += prior_kl(x0[b * 48 + k], ab.back());
        DIFFUSE_CHECK_CLOSE(prior[static_cast<std::size_t>(b)], acc / 48 / std::numbers::ln2, 1e-300, rtol * 4);
    }
    DIFFUSE_CHECK_CLOSE(bits_per_dim(std::numbers::ln2 * 3072, 3072), 1.0, 0, 2 * eps<double>);
    DIFFUSE_CHECK_CLOSE(nats_to_bits(std::numbers::ln2), 1.0, 0, eps<double>);
    DIFFUSE_CHECK_ERROR(bits_per_dim(1.0, 0), "dims = 0");
    DIFFUSE_CHECK_ERROR(prior_bits_per_dim(x0, 1.0), "alpha_bar_T = 1", "[0, 1)");
    DIFFUSE_CHECK_ERROR(vb_term_bits_per_dim(x0, xt, mm, 0.0, tab, 1000, normal_cdf::exact), "i = 1000");
    DIFFUSE_CHECK_ERROR(prior_kl(0.0, -0.1), "alpha_bar_T = -0.1");
    DIFFUSE_CHECK_ERROR(gaussian_log_likelihood(0.0, 0.0, NAN), "log_variance = nan");
}
