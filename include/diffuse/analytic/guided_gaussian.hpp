#pragma once
// Exact guided targets for Gaussian class conditionals (docs/guidance.md §8; closed_forms D3–D4).
//
// CFG with weight g (diffusers formula, g = 1 + w_HS) on a conditional model p(x|y) = N(m_c, Σ_c) and an
// unconditional one p(x) = N(m_u, Σ_u) has, at every level, the guided score
//     s_g(x) = g·∇log p_t(x|y) + (1 − g)·∇log p_t(x)                         (the CFG combination)
//
// The tilted density  p_g(x) ∝ p(x|y)^g · p(x)^{1−g}  is Gaussian when its precision
//     P = g·Σ_c⁻¹ + (1 − g)·Σ_u⁻¹ is positive definite:   p_g = N(P⁻¹(g Σ_c⁻¹ m_c + (1 − g) Σ_u⁻¹ m_u), P⁻¹).
// Its score is s_g at t = 0 (σ = 0) exactly. At t > 0 the noised tilt p_{g,t} and the guided score agree
// only when Σ_c = Σ_u (then p_g = N(g m_c + (1 − g) m_u, Σ) and both are −V_t⁻¹(x − a m_g), at every
// level). Otherwise s_g is not the score of any noising of p_g, and the probability-flow ODE driven by s_g
// ends at a different law (Bradley & Nakkiran 2024). For diagonal Σ_c = diag(l_c), Σ_u = diag(l_u) and
// equal means μ it is solvable per coordinate: in VE form y = x/a, σ = s/a,
//     dy/dσ = −σ·s_g = σ·K(σ)·(y − μ),   K = g/(l_c + σ²) + (1 − g)/(l_u + σ²)
//     y(σ_t) − μ = Φ(σ_t)/Φ(σ_s) · (y(σ_s) − μ),   Φ(σ) = (l_c + σ²)^{g/2} (l_u + σ²)^{(1−g)/2}
// so from y ~ N(μ, l_u + σ_T²) at large σ_T the ODE ends with variance → l_c^g l_u^{1−g} (a weighted
// geometric mean) while the tilt has 1/(g/l_c + (1 − g)/l_u) (a weighted harmonic mean).

#include <diffuse/analytic/gaussian.hpp>
#include <diffuse/core/error.hpp>

#include <Eigen/Dense>

#include <cmath>
#include <string>

namespace diffuse::analytic {

/// The tilted Gaussian p(x|y)^g p(x)^{1−g} (normalised); throws unless its precision is positive definite.
inline gaussian tilted_gaussian(const gaussian& cond, const gaussian& uncond, double g) {
    require_finite(g, "g");
    require(cond.dimension() == uncond.dimension(), "uncond.dimension()", static_cast<long long>(uncond.dimension()),
            "cond.dimension() = " + std::to_string(cond.dimension()));
    const Eigen::MatrixXd pc = cond.cov().inverse(), pu = uncond.cov().inverse();
    Eigen::MatrixXd p = g * pc + (1.0 - g) * pu;
    p = 0.5 * (p + p.transpose());
    const Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> eig(p);
    const double lmin = eig.eigenvalues().minCoeff();
    require(lmin > 0.0, "tilted_gaussian: smallest eigenvalue of g·Σ_c⁻¹ + (1 − g)·Σ_u⁻¹", lmin,
            "> 0 (the tilt p(x|y)^g p(x)^(1−g) is a Gaussian only when this precision is positive definite)");
    Eigen::MatrixXd cov = p.inverse();
    cov = 0.5 * (cov + cov.transpose());
    const Eigen::VectorXd mean = cov * (g * pc * cond.mean() + (1.0 - g) * pu * uncond.mean());
    return gaussian(mean, cov);
}

/// Φ(σ_to)/Φ(σ_from) per coordinate: the gain of the CFG probability-flow ODE (diagonal covariances
/// l_c, l_u, equal means) from σ_from to σ_to in VE form (the file comment).
inline Eigen::ArrayXd cfg_flow_gain(const Eigen::ArrayXd& l_cond, const Eigen::ArrayXd& l_uncond, double g,
                                    double sigma_from, double sigma_to) {
    require(l_cond.size() == l_uncond.size(), "l_uncond.size()", static_cast<long long>(l_uncond.size()),
            "l_cond.size() = " + std::to_string(l_cond.size()));
    require((l_cond > 0.0).all() && l_cond.isFinite().all(), "cfg_flow_gain: l_cond", "a variance <= 0 or not finite",
            "finite variances > 0");
    require((l_uncond > 0.0).all() && l_uncond.isFinite().all(), "cfg_flow_gain: l_uncond",
            "a variance <= 0 or not finite", "finite variances > 0");
    require_nonnegative(sigma_from, "sigma_from");
    require_nonnegative(sigma_to, "sigma_to");
    auto log_phi = [&](double sigma) {
        const double s2 = sigma * sigma;
        return (0.5 * g * (l_cond + s2).log() + 0.5 * (1.0 - g) * (l_uncond + s2).log()).eval();
    };
    return (log_phi(sigma_to) - log_phi(sigma_from)).exp();
}

/// The exact CFG probability-flow ODE map for Gaussians with diagonal covariances and equal means:
/// rows x_s [n, d] at level (a_s, s_s), a_s > 0, to level (a_t, s_t).
inline Eigen::MatrixXd cfg_pf_ode_flow(const gaussian& cond, const gaussian& uncond, double g, const Eigen::MatrixXd& x_s,
                                       double a_s, double s_s, double a_t, double s_t) {
    const Eigen::Index d = cond.dimension();
    require(uncond.dimension() == d, "uncond.dimension()", static_cast<long long>(uncond.dimension()),
            "cond.dimension() = " + std::to_string(d));
    require(x_s.cols() == d, "x_s.cols()", static_cast<long long>(x_s.cols()), "d = " + std::to_string(d));
    auto off_diagonal = [](const Eigen::MatrixXd& m) { return (m - Eigen::MatrixXd(m.diagonal().asDiagonal())).norm(); };
    require(off_diagonal(cond.cov()) == 0.0 && off_diagonal(uncond.cov()) == 0.0, "cfg_pf_ode_flow: covariances",
            "not diagonal", "diagonal Σ_c and Σ_u (the closed form is per coordinate)");
    require((cond.mean() - uncond.mean()).norm() == 0.0, "cfg_pf_ode_flow: means", "different",
            "equal means (with different means the flow needs a quadrature; closed_forms D4)");
    require(std::isfinite(a_s) && a_s > 0.0, "a_s", a_s, "a finite number > 0");
    require(std::isfinite(a_t) && a_t > 0.0, "a_t", a_t, "a finite number > 0");
    require_nonnegative(s_s, "s_s");
    require_nonnegative(s_t, "s_t");
    const Eigen::ArrayXd gain =
        cfg_flow_gain(cond.cov().diagonal().array(), uncond.cov().diagonal().array(), g, s_s / a_s, s_t / a_t);
    const Eigen::RowVectorXd mu = cond.mean().transpose();
    Eigen::MatrixXd y = x_s / a_s;
    y.rowwise() -= mu;
    y = y * gain.matrix().asDiagonal();
    y.rowwise() += mu;
    return a_t * y;
}

}  // namespace diffuse::analytic
