// models/edm_preconditioning.hpp: EDM Table 1 coefficients, their identities, and the
// preconditioned denoiser (docs/denoisers.md §4; closed_forms A10).
#include <diffuse/models/edm_preconditioning.hpp>

#include <diffuse/analytic/gaussian.hpp>
#include <diffuse/core/tensor.hpp>
#include <diffuse/models/exact.hpp>
#include <diffuse/process/losses.hpp>

#include "models/fixtures.hpp"
#include "support/check.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <vector>

using namespace diffuse;
using namespace diffuse::models;
using diffuse::test::eps;
using pt = prediction_type;

namespace {

using diffuse::test::batch;
using diffuse::test::test_gaussian;

const std::vector<double> sigmas = {0.002, 0.1, 1.0, 80.0};

/// A raw network F(x_in; c_noise) = k·x_in that records the c_noise it was called with.
struct linear_network {
    double k = 0.7;
    double* seen_c_noise = nullptr;
    template <class T, class S>
    void operator()(tensor_view<T, S> out, tensor_view<const T, S> x_in, double c_noise, no_condition) const {
        if (seen_c_noise) *seen_c_noise = c_noise;
        for (std::int64_t i = 0; i < out.numel(); ++i) out[i] = static_cast<T>(k * x_in[i]);
    }
};

}  // namespace

static_assert(edm_network<linear_network, float, host_space>);
static_assert(denoiser<edm_denoiser<linear_network>, float, host_space>);
static_assert(denoiser<edm_denoiser<linear_network>, double, host_space>);
static_assert(!denoiser<linear_network, double, host_space>);
static_assert(edm_network<edm_network_from_denoiser<exact_gaussian_denoiser>, double, host_space>);
static_assert(denoiser<edm_denoiser<edm_network_from_denoiser<exact_gaussian_denoiser>>, float, host_space>);

TEST_CASE("edm_preconditioning matches EDM Table 1") {
    for (double sd : {0.5, 1.0}) {
        for (double sigma : sigmas) {
            CAPTURE(sd);
            CAPTURE(sigma);
            const edm_coefficients c = edm_preconditioning(sigma, sd);
            const double q = sigma * sigma + sd * sd;
            const double r = 8 * eps<double>;
            DIFFUSE_CHECK_CLOSE(c.c_skip, sd * sd / q, 0.0, r);
            DIFFUSE_CHECK_CLOSE(c.c_out, sigma * sd / std::sqrt(q), 0.0, r);
            DIFFUSE_CHECK_CLOSE(c.c_in, 1.0 / std::sqrt(q), 0.0, r);
            DIFFUSE_CHECK_CLOSE(c.c_noise, std::log(sigma) / 4.0, 0.0, r);
            DIFFUSE_CHECK_CLOSE(c.loss_weight, q / (sigma * sd * sigma * sd), 0.0, r);
            // process/losses' EDM weight, an independent implementation.
            DIFFUSE_CHECK_CLOSE(c.loss_weight, process::edm_weight(sigma, sd), 0.0, r);
        }
    }
    DIFFUSE_CHECK_CLOSE(edm_preconditioning(1.0).c_skip, 0.25 / 1.25, 0.0, 4 * eps<double>);  // σ_d = 0.5 default
}

TEST_CASE("edm_preconditioning identities (closed_forms A10)") {
    for (double sd : {0.5, 1.0, 2.0}) {
        for (double sigma : sigmas) {
            CAPTURE(sd);
            CAPTURE(sigma);
            const edm_coefficients c = edm_preconditioning(sigma, sd);
            // Var[(x0 − c_skip·x)/c_out] with x = x0 + σ·n, Var x0 = σ_d², n independent: the
            // effective training target has unit variance.
            const double target_var =
                ((1.0 - c.c_skip) * (1.0 - c.c_skip) * sd * sd + c.c_skip * c.c_skip * sigma * sigma) /
                (c.c_out * c.c_out);
            DIFFUSE_CHECK_CLOSE(target_var, 1.0, 1e-12, 0.0);
            // Var[c_in·x] = c_in²(σ² + σ_d²) = 1: unit-variance network input.
            DIFFUSE_CHECK_CLOSE(c.c_in * c.c_in * (sigma * sigma + sd * sd), 1.0, 1e-12, 0.0);
            // c_skip + c_out²/σ_d² = 1, c_out² = σ²·c_skip, λ·c_out² = 1.
            DIFFUSE_CHECK_CLOSE(c.c_skip + c.c_out * c.c_out / (sd * sd), 1.0, 1e-12, 0.0);
            DIFFUSE_CHECK_CLOSE(c.c_out * c.c_out, sigma * sigma * c.c_skip, 0.0, 1e-12);
            DIFFUSE_CHECK_CLOSE(c.loss_weight * c.c_out * c.c_out, 1.0, 1e-12, 0.0);
            // c_skip minimises the target variance: d/dc [((1−c)²σ_d² + c²σ²)] = 0 at c = c_skip.
            DIFFUSE_CHECK_CLOSE(-(1.0 - c.c_skip) * sd * sd + c.c_skip * sigma * sigma, 0.0, 1e-12 * (sd * sd), 0.0);
            DIFFUSE_CHECK_CLOSE(edm_sigma_from_c_noise(c.c_noise), sigma, 0.0, 8 * eps<double>);
        }
    }
    // Extreme σ: no overflow of σ².
    const edm_coefficients big = edm_preconditioning(1e200, 0.5);
    DIFFUSE_CHECK_CLOSE(big.c_out, 0.5, 0.0, 4 * eps<double>);
    DIFFUSE_CHECK_CLOSE(big.c_in, 1e-200, 0.0, 4 * eps<double>);
}

TEST_CASE("edm_preconditioning errors") {
    DIFFUSE_CHECK_ERROR(edm_preconditioning(0.0), "sigma = 0", "> 0");
    DIFFUSE_CHECK_ERROR(edm_preconditioning(-1.0), "sigma = -1");
    DIFFUSE_CHECK_ERROR(edm_preconditioning(1.0, 0.0), "sigma_data = 0", "> 0");
    DIFFUSE_CHECK_ERROR(edm_denoiser<linear_network>(linear_network{}, -0.5), "sigma_data = -0.5");
    DIFFUSE_CHECK_ERROR(edm_sigma_from_c_noise(std::nan("")), "c_noise = nan", "finite");
    const auto d = edm_precondition(linear_network{});
    const tensor<double, host_space> x = batch<double>(2);
    tensor<double, host_space> out(x.shape());
    DIFFUSE_CHECK_ERROR(d(out.view(), x.cview(), noise_condition{1.0, 0.0}, no_condition{}), "level.s = 0",
                        "> 0 for EDM preconditioning");
    DIFFUSE_CHECK_ERROR(d(out.view(), x.cview(), noise_condition{0.0, 1.0}, no_condition{}), "level.a = 0",
                        "σ = s/a must be finite");
    tensor<double, host_space> y = x;
    DIFFUSE_CHECK_ERROR(d(y.view(), y.cview(), noise_condition::ve(1.0), no_condition{}), "out aliases x_t");
}

TEST_CASE_TEMPLATE("edm_denoiser computes c_skip x + c_out F of c_in x and c_noise, at VE and VP levels", T, float, double) {
    double seen = 0.0;
    const linear_network f{0.7, &seen};
    const auto d = edm_precondition(f, 0.5);
    CHECK(d.prediction() == pt::sample);
    CHECK(d.sigma_data() == 0.5);
    const tensor<T, host_space> x = batch<T>(3);
    const double u = eps<T>;
    for (double sigma : sigmas) {
        CAPTURE(sigma);
        const edm_coefficients c = edm_preconditioning(sigma, 0.5);
        tensor<T, host_space> out(x.shape());
        d(out.view(), x.cview(), noise_condition::ve(sigma), no_condition{});
        CHECK(seen == c.c_noise);
        for (std::int64_t i = 0; i < x.numel(); ++i) {
            const double ref = (c.c_skip + c.c_out * 0.7 * c.c_in) * double(x[i]);
            // three roundings to T (x_in, F, out) of terms bounded by |x|
            DIFFUSE_CHECK_CLOSE(out[i], ref, 4 * u * std::fabs(double(x[i])), 0.0);
        }
        // The same σ as a VP level: x_t = a·x_ve, level (a, s) with s/a = σ gives the same D (A10).
        const process::noise_level vp = process::vp_level_from_sigma(sigma);
        tensor<T, host_space> xt(x.shape()), out_vp(x.shape());
        for (std::int64_t i = 0; i < x.numel(); ++i) xt[i] = static_cast<T>(vp.a * double(x[i]));
        d(out_vp.view(), xt.cview(), noise_condition::from_level(vp), no_condition{});
        for (std::int64_t i = 0; i < x.numel(); ++i)
            DIFFUSE_CHECK_CLOSE(out_vp[i], out[i], 8 * u * std::fabs(double(x[i])), 0.0);
    }
}

TEST_CASE_TEMPLATE("exact x0 denoiser -> raw network F -> edm_denoiser gives the denoiser back", T, float, double) {
    const exact_gaussian_denoiser exact_x0(test_gaussian(), pt::sample);
    const exact_gaussian_denoiser exact_eps(test_gaussian(), pt::epsilon);
    const double u = eps<T>;
    const tensor<T, host_space> x = batch<T>(4);
    for (double sd : {0.5, 1.3}) {
        // From an x0 model and from an eps model (F then goes through predict_as).
        const auto d1 = edm_precondition(edm_network_from_denoiser(by_ref(exact_x0), sd), sd);
        const auto d2 = edm_precondition(edm_network_from_denoiser(by_ref(exact_eps), sd), sd);
        for (double sigma : sigmas) {
            CAPTURE(sd);
            CAPTURE(sigma);
            const noise_condition level = noise_condition::ve(sigma);
            tensor<T, host_space> ref(x.shape()), out1(x.shape()), out2(x.shape());
            exact_x0(ref.view(), x.cview(), level);
            d1(out1.view(), x.cview(), level, no_condition{});
            d2(out2.view(), x.cview(), level, no_condition{});
            double xmax = 0.0;
            for (std::int64_t i = 0; i < x.numel(); ++i) xmax = std::max(xmax, std::fabs(double(x[i])));
            for (std::int64_t i = 0; i < x.numel(); ++i) {
                // x' = (c_in·x)/c_in carries 2u|x|; D is 1-Lipschitz in x at a = 1 (aΣV⁻¹ has
                // eigenvalues λ/(λ + σ²) < 1) so D(x') moves by <= 2u·√d·max|x|; F and the
                // final combination add 2u(|D| + c_skip|x|)/c_out, times c_out back; ×2 margin.
                const double tol1 = 2.0 * (2.0 * u * std::sqrt(3.0) * xmax +
                                           4.0 * u * (std::fabs(double(ref[i])) + std::fabs(double(x[i])))) +
                                    1e-13;
                DIFFUSE_CHECK_CLOSE(out1[i], ref[i], tol1, 0.0);
                // via eps: the eps -> x0 conversion amplifies eps's rounding by σ.
                DIFFUSE_CHECK_CLOSE(out2[i], ref[i], tol1 * (1.0 + sigma), 0.0);
            }
        }
    }
}

TEST_CASE("the exact raw network of N(0, σ_d² I) data is 0: c_skip·x is its optimal denoiser") {
    const double sd = 0.5;
    const exact_gaussian_denoiser iso(analytic::gaussian::isotropic(Eigen::VectorXd::Zero(3), sd * sd), pt::sample);
    const edm_network_from_denoiser f(iso, sd);
    const tensor<double, host_space> x = batch<double>(5);
    for (double sigma : sigmas) {
        CAPTURE(sigma);
        const edm_coefficients c = edm_preconditioning(sigma, sd);
        tensor<double, host_space> x_in(x.shape()), out(x.shape());
        for (std::int64_t i = 0; i < x.numel(); ++i) x_in[i] = c.c_in * x[i];
        f(out.view(), x_in.cview(), c.c_noise, no_condition{});
        // E[x0|x] = σ_d²/(σ²+σ_d²)·x = c_skip·x, so F = (D − c_skip x)/c_out = 0 up to rounding of
        // terms of size c_skip|x|/c_out.
        for (std::int64_t i = 0; i < x.numel(); ++i)
            DIFFUSE_CHECK_CLOSE(out[i], 0.0, 16 * eps<double> * (1.0 + c.c_skip * std::fabs(x[i]) / c.c_in / c.c_out), 0.0);
    }
}
