#pragma once
// A high-accuracy adaptive ODE integrator for tests: the explicit Runge–Kutta pair of Dormand and
// Prince, order 5 with an embedded order-4 error estimate (Dormand & Prince 1980; Hairer, Nørsett
// & Wanner, Solving ODEs I, §II.4–II.5, Table 5.2), with local extrapolation (the 5th-order
// solution is propagated), FSAL, and the standard step-size control
//   err = sqrt(mean_i (e_i / (atol + rtol·max(|y_i|, |y_new_i|)))²),  accept when err <= 1,
//   h_new = h · min(5, max(0.2, 0.9·err^(-1/5)))   (no growth right after a rejection).
// In double with rtol = 1e-12 it reproduces smooth linear ODEs to ~1e-11 relative, which is the
// reference accuracy the exact-model tests need (closed_forms.md §0: test tolerance 1e-9).
// Integrates forwards or backwards (t1 < t0); the last step is clipped to land on t1 exactly.

#include <Eigen/Dense>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <stdexcept>
#include <string>

namespace diffuse::test {

struct ode_options {
    double rtol = 1e-12;
    double atol = 1e-13;
    double h0 = 0.0;                   ///< first step size magnitude; 0 = automatic (Hairer's heuristic)
    std::size_t max_steps = 10000000;  ///< accepted + rejected steps before giving up
};

struct ode_result {
    Eigen::VectorXd y;            ///< the solution at t1
    std::size_t accepted = 0;     ///< accepted steps
    std::size_t rejected = 0;     ///< rejected steps
    std::size_t evaluations = 0;  ///< calls of f
};

/// Solves y' = f(t, y), y(t0) = y0, and returns y(t1). f: (double t, const Eigen::VectorXd& y)
/// -> Eigen::VectorXd of the same size. Throws std::runtime_error when the step size underflows
/// or max_steps is exceeded.
template <class F>
ode_result dopri5(F&& f, double t0, const Eigen::VectorXd& y0, double t1, const ode_options& opt = {}) {
    // Butcher tableau (c, A), 5th-order weights b (= row 7 of A, FSAL) and error weights e = b − b̂.
    constexpr double c2 = 1.0 / 5, c3 = 3.0 / 10, c4 = 4.0 / 5, c5 = 8.0 / 9;
    constexpr double a21 = 1.0 / 5;
    constexpr double a31 = 3.0 / 40, a32 = 9.0 / 40;
    constexpr double a41 = 44.0 / 45, a42 = -56.0 / 15, a43 = 32.0 / 9;
    constexpr double a51 = 19372.0 / 6561, a52 = -25360.0 / 2187, a53 = 64448.0 / 6561, a54 = -212.0 / 729;
    constexpr double a61 = 9017.0 / 3168, a62 = -355.0 / 33, a63 = 46732.0 / 5247, a64 = 49.0 / 176,
                     a65 = -5103.0 / 18656;
    constexpr double b1 = 35.0 / 384, b3 = 500.0 / 1113, b4 = 125.0 / 192, b5 = -2187.0 / 6784,
                     b6 = 11.0 / 84;
    constexpr double e1 = 71.0 / 57600, e3 = -71.0 / 16695, e4 = 71.0 / 1920, e5 = -17253.0 / 339200,
                     e6 = 22.0 / 525, e7 = -1.0 / 40;

    ode_result res;
    Eigen::VectorXd y = y0;
    if (t1 == t0) {
        res.y = y;
        return res;
    }
    const double dir = t1 > t0 ? 1.0 : -1.0;
    const double n = static_cast<double>(y.size());
    auto norm = [&](const Eigen::VectorXd& v, const Eigen::VectorXd& ya, const Eigen::VectorXd& yb) {
        const Eigen::ArrayXd sc = opt.atol + opt.rtol * ya.array().abs().max(yb.array().abs());
        return std::sqrt((v.array() / sc).square().sum() / n);
    };
    auto eval = [&](double t, const Eigen::VectorXd& yy) {
        ++res.evaluations;
        return Eigen::VectorXd(f(t, yy));
    };

    double t = t0;
    Eigen::VectorXd k1 = eval(t, y);
    double h = opt.h0;
    if (h <= 0.0) {  // Hairer, Nørsett & Wanner, §II.4 "Starting step size"
        const double d0 = norm(y, y, y), d1 = norm(k1, y, y);
        double h_try = (d0 < 1e-5 || d1 < 1e-5) ? 1e-6 : 0.01 * d0 / d1;
        h_try = std::min(h_try, std::abs(t1 - t0));
        const Eigen::VectorXd y1 = y + dir * h_try * k1;
        const double d2 = norm(eval(t + dir * h_try, y1) - k1, y, y) / h_try;
        const double dm = std::max(d1, d2);
        const double h1 = dm <= 1e-15 ? std::max(1e-6, h_try * 1e-3) : std::pow(0.01 / dm, 1.0 / 5);
        h = std::min(100 * h_try, h1);
    }
    bool last_rejected = false;
    while (dir * (t1 - t) > 0) {
        if (res.accepted + res.rejected >= opt.max_steps)
            throw std::runtime_error("dopri5: max_steps exceeded");
        const double remaining = std::abs(t1 - t);
        bool final_step = false;
        if (h >= remaining) {
            h = remaining;
            final_step = true;
        }
        if (h <= 16 * std::numeric_limits<double>::epsilon() * std::max(1.0, std::abs(t))) {
            throw std::runtime_error("dopri5: step size underflow at t = " + std::to_string(t));
        }
        const double hs = dir * h;
        const Eigen::VectorXd k2 = eval(t + c2 * hs, y + hs * (a21 * k1));
        const Eigen::VectorXd k3 = eval(t + c3 * hs, y + hs * (a31 * k1 + a32 * k2));
        const Eigen::VectorXd k4 = eval(t + c4 * hs, y + hs * (a41 * k1 + a42 * k2 + a43 * k3));
        const Eigen::VectorXd k5 = eval(t + c5 * hs, y + hs * (a51 * k1 + a52 * k2 + a53 * k3 + a54 * k4));
        const Eigen::VectorXd k6 =
            eval(t + hs, y + hs * (a61 * k1 + a62 * k2 + a63 * k3 + a64 * k4 + a65 * k5));
        const double t_new = final_step ? t1 : t + hs;
        const Eigen::VectorXd y_new = y + hs * (b1 * k1 + b3 * k3 + b4 * k4 + b5 * k5 + b6 * k6);
        const Eigen::VectorXd k7 = eval(t_new, y_new);
        const Eigen::VectorXd err_vec = hs * (e1 * k1 + e3 * k3 + e4 * k4 + e5 * k5 + e6 * k6 + e7 * k7);
        const double err = norm(err_vec, y, y_new);
        if (std::isfinite(err) && err <= 1.0) {
            ++res.accepted;
            t = t_new;
            y = y_new;
            k1 = k7;  // FSAL
            double fac = err == 0.0 ? 5.0 : 0.9 * std::pow(err, -1.0 / 5);
            fac = std::min(last_rejected ? 1.0 : 5.0, std::max(0.2, fac));
            h *= fac;
            last_rejected = false;
        } else {
            ++res.rejected;
            const double fac = std::isfinite(err) ? std::max(0.2, 0.9 * std::pow(err, -1.0 / 5)) : 0.2;
            h *= fac;
            last_rejected = true;
        }
    }
    res.y = y;
    return res;
}

}  // namespace diffuse::test
