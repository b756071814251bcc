// The folders' interface headers and the umbrella header, used together: the forward process,
// the parametrisation conversions and the exact Gaussian model must agree with each other.
#include <diffuse/analytic/analytic.hpp>
#include <diffuse/analytic/noise_level.hpp>
#include <diffuse/backend/backend.hpp>
#include <diffuse/diffuse.hpp>
#include <diffuse/io/io.hpp>
#include <diffuse/models/models.hpp>
#include <diffuse/samplers/samplers.hpp>
#include <diffuse/process/process.hpp>
#include <diffuse/schedules/schedule.hpp>

#include "support/check.hpp"

#include <doctest/doctest.h>

using namespace diffuse;

namespace {

Eigen::MatrixXd to_matrix(const tensor<double, host_space>& t) {
    return as_eigen_matrix(t.cview());  // RowMajor map [n, d] copied into a MatrixXd
}

}  // namespace

TEST_CASE("exact x0 converted by process::convert is the exact eps, at every noise level of a schedule") {
    // For exact E[·|x_t] the conversion is linear, so E[eps|x_t] = (x_t − a E[x0|x_t])/s must hold
    // to rounding. Both sides come from 3×3 eigen-solves (κ(Σ) ≈ 3.5 here) whose errors are a few
    // u·κ each, and the conversion amplifies x0's error by a/s (≈ 34 at t = 0), so the bound is
    // 256 u (|x_t| + a|x̂0|)/s, u = 2^-53 (16 ulps of the conversion times κ and a safety 4).
    Eigen::Vector3d mu(0.5, -1.0, 2.0);
    Eigen::Matrix3d C;
    C << 1.0, 0.3, 0.1, 0.3, 0.5, -0.2, 0.1, -0.2, 2.0;
    const analytic::gaussian data(mu, C);
    const auto sched = schedules::discrete_schedule::named("scaled_linear", 1000, 0.00085, 0.012);
    philox_rng rng(5);
    const std::int64_t n = 64;
    tensor<double, host_space> x0(shape{n, 3}), xt(shape{n, 3}), x0_hat(shape{n, 3}), eps_hat(shape{n, 3});
    const Eigen::MatrixXd samples = data.sample(n, rng);
    as_eigen_matrix(x0.view()) = samples;
    for (int t : {0, 10, 250, 500, 999}) {
        const analytic::noise_level lv = process::level_at(sched, t);
        process::q_sample(xt, x0, lv.a, lv.s, rng);
        as_eigen_matrix(x0_hat.view()) = data.x0_mean(to_matrix(xt), lv.a, lv.s);
        process::convert(eps_hat, process::prediction_type::sample, x0_hat, process::prediction_type::epsilon, xt,
                         lv.a, lv.s);
        const Eigen::MatrixXd exact = data.eps_mean(to_matrix(xt), lv.a, lv.s);
        const double u = std::ldexp(1.0, -53);
        for (std::int64_t i = 0; i < n; ++i)
            for (int j = 0; j < 3; ++j) {
                const double bound = 256 * u * (std::abs(xt(i, j)) + lv.a * std::abs(x0_hat(i, j))) / lv.s;
                DIFFUSE_CHECK_CLOSE(eps_hat(i, j), exact(i, j), bound, 0.0);
            }
    }
}

TEST_CASE("the umbrella header exposes every folder") {
    CHECK(std::string(version_string).size() >= 5);
    CHECK(schedules::parse_spacing("trailing") == schedules::spacing::trailing);
    CHECK(process::parse_prediction_type("v_prediction") == process::prediction_type::v_prediction);
    CHECK(analytic::vp_level(0.36).a == 0.6);
    CHECK(io::crc32(std::string_view("123456789")) == 0xCBF43926u);
}
