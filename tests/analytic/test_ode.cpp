// Self-test of the reference ODE integrator (tests/support/ode.hpp) that the exact-model tests
// compare against: on ODEs with known solutions it must reach ~1e-11 relative accuracy at
// rtol = 1e-12, forwards and backwards, so that a 1e-9 tolerance in test_gaussian.cpp measures
// the closed form and not the integrator.
#include "support/check.hpp"
#include "support/ode.hpp"

#include <Eigen/Dense>

#include <cmath>
#include <numbers>

using diffuse::test::dopri5;

TEST_CASE("dopri5: exponential decay y' = -y, forwards from t = 0 to 10") {
    Eigen::VectorXd y0(1);
    y0 << 1.0;
    const auto res =
        dopri5([](double, const Eigen::VectorXd& y) { return Eigen::VectorXd(-y); }, 0.0, y0, 10.0);
    // Reference exp(-10) ≈ 4.5e-5. Once |y| < atol/rtol = 0.1 the control is absolute (atol = 1e-13
    // per step), so allow 1e-12 absolute (10 atol) + 1e-10 relative (100 rtol).
    DIFFUSE_CHECK_CLOSE(res.y(0), std::exp(-10.0), 1e-12, 1e-10);
    CHECK(res.accepted > 10);
}

TEST_CASE("dopri5: harmonic oscillator over three periods") {
    Eigen::VectorXd y0(2);
    y0 << 1.0, 0.0;  // (cos t, -sin t)
    const double t1 = 6 * std::numbers::pi;
    const auto res = dopri5(
        [](double, const Eigen::VectorXd& y) {
            Eigen::VectorXd dy(2);
            dy << y(1), -y(0);
            return dy;
        },
        0.0, y0, t1);
    // Non-contracting: errors accumulate linearly over ~19 time units; 1e-10 absolute.
    DIFFUSE_CHECK_CLOSE(res.y(0), std::cos(t1), 1e-10, 0.0);
    DIFFUSE_CHECK_CLOSE(res.y(1), -std::sin(t1), 1e-10, 0.0);
}

TEST_CASE("dopri5: backwards in time with a time-dependent rate, y' = t*y from t = 2 to 0.001") {
    // y(t) = y(2)·exp((t² − 4)/2).
    Eigen::VectorXd y0(2);
    y0 << 3.0, -0.5;
    const auto res =
        dopri5([](double t, const Eigen::VectorXd& y) { return Eigen::VectorXd(t * y); }, 2.0, y0, 1e-3);
    const double factor = std::exp((1e-6 - 4.0) / 2);
    DIFFUSE_CHECK_CLOSE(res.y(0), 3.0 * factor, 0.0, 1e-10);
    DIFFUSE_CHECK_CLOSE(res.y(1), -0.5 * factor, 0.0, 1e-10);
}

TEST_CASE("dopri5: t1 == t0 returns y0") {
    Eigen::VectorXd y0(1);
    y0 << 2.5;
    const auto res =
        dopri5([](double, const Eigen::VectorXd& y) { return Eigen::VectorXd(y); }, 1.0, y0, 1.0);
    CHECK(res.y(0) == 2.5);
    CHECK(res.evaluations == 0);
}
