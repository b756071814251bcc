#pragma once
// What the DPM-Solver family shares (docs/samplers/dpm_solver.md §1): the algorithm and
// solver-type names, the φ-functions, and the weights of one exponential-integrator step on
// any levels (a, s) -> (a', s'). Used by dpm_solver_multistep.hpp and the singlestep solver.
//
// Notation. λ = log(a/s) (half log-SNR), h = λ' − λ > 0, ε-estimate E, x0-estimate D.
// The exact solution of the probability-flow ODE (η = 0) / of the η-family of reverse SDEs
// (data prediction, Lu et al. 2022b §4 / k-diffusion dpmpp_2m_sde) over one step is
//
//   data  (dpmsolver++):  x' = (s'/s)·e^{−ηh}·x + a'·∫_0^h (1+η)·e^{−(1+η)(h−u)} D(λ+u) du
//                              + s'·√(1 − e^{−2ηh})·z
//   noise (dpmsolver):    x' = (a'/a)·x − s'·∫_0^h e^{h−u} E(λ+u) du
//
// Expanding D(λ+u) = Σ_j u^j/j!·D^{(j)} and using ∫_0^H e^{−(H−v)} v^j/j! dv = H^{j+1}·φ_{j+1}(−H)
// with H = (1+η)·h gives, for the Taylor terms T_j = h^j·D^{(j)} (resp. h^j·E^{(j)}):
//
//   data:   x' = X·x + Σ_j w_j·T_j + c_z·z,  X = (s'/s)·e^{−ηh},  w_j = a'·H·φ_{j+1}(−H),
//           c_z = s'·√(−expm1(−2ηh))
//   noise:  x' = X·x + Σ_j w_j·T_j,           X = a'/a,            w_j = −s'·h·φ_{j+1}(h)
//
// where φ_k(z) = Σ_{i>=0} z^i/(i+k)! (φ_1(z) = (e^z − 1)/z, φ_2(z) = (e^z − 1 − z)/z²,
// φ_3(z) = (e^z − 1 − z − z²/2)/z³). The peers write the same weights as
//   w_0 = −a'·(e^{−h} − 1),  w_1 = a'·((e^{−h} − 1)/h + 1),  w_2 = −a'·((e^{−h} − 1 + h)/h² − 1/2)
// (diffusers with torch.exp(−h) − 1.0; dpm-solver and k-diffusion with expm1). We evaluate φ_k
// by its series for |z| < 1 and by expm1 otherwise, so no weight loses more than a few bits
// for any h (diffusers' exp(−h) − 1 loses log10(1/h) digits as h → 0).

#include <diffuse/core/error.hpp>
#include <diffuse/models/denoiser.hpp>
#include <diffuse/samplers/levels.hpp>

#include <cmath>
#include <limits>
#include <string>
#include <string_view>

namespace diffuse::samplers {

/// What the solver integrates (diffusers `algorithm_type`, dpm-solver `algorithm_type`).
enum class dpm_algorithm {
    dpmsolver,         ///< noise prediction, ODE (Lu et al. 2022, DPM-Solver)
    dpmsolver_pp,      ///< data prediction, ODE (Lu et al. 2022b, DPM-Solver++)
    sde_dpmsolver_pp,  ///< data prediction, reverse SDE family with η (η = 1: diffusers
                       ///< "sde-dpmsolver++"; any η: k-diffusion dpmpp_2m_sde / dpmpp_3m_sde)
};

/// The second-order correction of a two-point step (diffusers `solver_type`; dpm-solver's
/// names in parentheses).
enum class dpm_solver_type {
    midpoint,  ///< D1 weight ½·w_0 ("dpmsolver")
    heun,      ///< D1 weight w_1 = a'·H·φ_2(−H), the Taylor weight ("taylor")
};

/// "dpmsolver", "dpmsolver++" or "sde-dpmsolver++" (diffusers' spellings).
inline dpm_algorithm parse_dpm_algorithm(std::string_view name) {
    if (name == "dpmsolver") return dpm_algorithm::dpmsolver;
    if (name == "dpmsolver++") return dpm_algorithm::dpmsolver_pp;
    if (name == "sde-dpmsolver++") return dpm_algorithm::sde_dpmsolver_pp;
    fail_argument("algorithm_type", name,
                  "one of \"dpmsolver\", \"dpmsolver++\", \"sde-dpmsolver++\" (diffusers' deprecated "
                  "\"sde-dpmsolver\" is not provided)");
}

/// "midpoint" or "heun" (diffusers), or dpm-solver's "dpmsolver" (= midpoint) / "taylor" (= heun).
inline dpm_solver_type parse_dpm_solver_type(std::string_view name) {
    if (name == "midpoint" || name == "dpmsolver") return dpm_solver_type::midpoint;
    if (name == "heun" || name == "taylor") return dpm_solver_type::heun;
    fail_argument("solver_type", name,
                  "one of \"midpoint\", \"heun\" (or dpm-solver's \"dpmsolver\" = midpoint, \"taylor\" = heun)");
}

inline std::string_view to_string(dpm_algorithm a) {
    switch (a) {
        case dpm_algorithm::dpmsolver: return "dpmsolver";
        case dpm_algorithm::dpmsolver_pp: return "dpmsolver++";
        case dpm_algorithm::sde_dpmsolver_pp: return "sde-dpmsolver++";
    }
    return "unknown";
}

inline std::string_view to_string(dpm_solver_type t) {
    switch (t) {
        case dpm_solver_type::midpoint: return "midpoint";
        case dpm_solver_type::heun: return "heun";
    }
    return "unknown";
}

/// True for the data-prediction algorithms (dpmsolver++, sde-dpmsolver++): the solver's
/// estimate is x0; false for dpmsolver (the estimate is eps).
constexpr bool predicts_data(dpm_algorithm a) { return a != dpm_algorithm::dpmsolver; }

/// φ_k(z) = Σ_{i>=0} z^i/(i+k)! for k = 1, 2, 3 and any z (φ_k(−∞) = 0). Series for |z| < 1
/// (25 terms: remainder < 1/25! ≈ 6e-26), expm1-based closed form otherwise.
inline double phi(int k, double z) {
    require(k >= 1 && k <= 3, "phi: k", k, "1, 2 or 3");
    require(!std::isnan(z) && z != std::numeric_limits<double>::infinity(), "phi: z", z, "a number < +inf");
    if (std::abs(z) < 1.0) {
        double fact = 1.0;  // (i + k)!
        for (int j = 2; j <= k; ++j) fact *= j;
        double term = 1.0 / fact, sum = term;
        for (int i = 1; i < 25; ++i) {
            term *= z / (i + k);
            sum += term;
        }
        return sum;
    }
    if (std::isinf(z)) return 0.0;
    const double e = std::expm1(z);
    switch (k) {
        case 1: return e / z;
        case 2: return (e - z) / (z * z);
        default: return (e - z - 0.5 * z * z) / (z * z * z);
    }
}

/// The weights of one exponential-integrator step from level `from` to `to` (see the file
/// comment): x' = x·state + Σ_j w[j]·T_j + z·noise with T_j = h^j·(j-th λ-derivative of the
/// estimate). `h` = λ' − λ (+inf when to.s = 0).
///
/// A step to s' = 0 (σ' = 0) is first order only: x = 0, w[0] = a' (data) — i.e. x' = a'·D —
/// or x = a'/a, w[0] = −a'·s/a (noise; the limit of −s'·(e^h − 1)) — i.e. x' = a'·(x − s·E)/a;
/// w[1], w[2] are NaN there (the multistep differences D1, D2 blow up as h → ∞).
struct dpm_weights {
    double h = 0.0;
    double x = 0.0;
    double w[3] = {0.0, 0.0, 0.0};
    double z = 0.0;
};

/// from: a > 0, s > 0 (finite σ); to: σ' < σ, s' >= 0. eta: finite >= 0, and 0 unless
/// data_prediction (the noise-prediction SDE is not provided).
inline dpm_weights dpm_step_weights(bool data_prediction, const noise_condition& from, const noise_condition& to,
                                    double eta = 0.0) {
    require(std::isfinite(from.a) && from.a > 0.0 && std::isfinite(from.s) && from.s > 0.0, "dpm step: from level (a, s)",
            from.sigma(), "a finite σ = s/a > 0 (a > 0, s > 0)");
    require(std::isfinite(to.a) && to.a > 0.0 && std::isfinite(to.s) && to.s >= 0.0 && to.sigma() < from.sigma(),
            "dpm step: to level σ'", to.sigma(), "in [0, σ = " + std::to_string(from.sigma()) + ")");
    require(std::isfinite(eta) && eta >= 0.0, "eta", eta, "a finite number >= 0");
    if (!data_prediction && eta != 0.0)
        fail_argument("eta", eta, "0 for noise prediction (dpmsolver; the SDE variant is sde-dpmsolver++ only)");
    const double nan = std::numeric_limits<double>::quiet_NaN();
    dpm_weights r;
    if (to.s == 0.0) {
        r.h = std::numeric_limits<double>::infinity();
        if (data_prediction) {
            r.x = 0.0;
            r.w[0] = to.a;
        } else {
            r.x = to.a / from.a;
            r.w[0] = -to.a * from.s / from.a;
        }
        r.w[1] = r.w[2] = nan;
        return r;
    }
    const double h = lambda_of(to) - lambda_of(from);
    r.h = h;
    if (data_prediction) {
        const double H = (1.0 + eta) * h;
        r.x = (to.s / from.s) * std::exp(-eta * h);
        r.w[0] = -to.a * std::expm1(-H);  // a'·H·φ_1(−H), to the last bit
        r.w[1] = to.a * H * phi(2, -H);
        r.w[2] = to.a * H * phi(3, -H);
        r.z = eta > 0.0 ? to.s * std::sqrt(-std::expm1(-2.0 * eta * h)) : 0.0;
    } else {
        r.x = to.a / from.a;
        r.w[0] = -to.s * std::expm1(h);
        r.w[1] = -to.s * h * phi(2, h);
        r.w[2] = -to.s * h * phi(3, h);
    }
    return r;
}

}  // namespace diffuse::samplers
