#pragma once
// The order-measurement scaffolding shared by the samplers/ tests (closed_forms C2): the log-SNR
// grids of the protocol, one deterministic driver run from exact-marginal points, the max-abs
// error and the LSQ order over the asymptotic tail of a ladder.

#include <diffuse/core/philox.hpp>
#include <diffuse/samplers/levels.hpp>
#include <diffuse/samplers/sampler.hpp>
#include <diffuse/schedules/discrete_schedule.hpp>

#include "samplers/fixtures.hpp"

#include <Eigen/Dense>

#include <cmath>
#include <cstddef>
#include <vector>

namespace diffuse::test {

/// A log-SNR-uniform table of T = 2561 levels: logSNR from 9.12 (t = 0, λ = 4.56) to −10.06
/// (t = 2560, λ = −5.03), the range of closed_forms C2 (VP-linear, t in [1e-3, 1]).
inline schedules::discrete_schedule logsnr_table() {
    std::vector<double> ls(2561);
    for (int k = 0; k <= 2560; ++k) ls[static_cast<std::size_t>(k)] = 9.12 - (9.12 + 10.06) * k / 2560.0;
    return schedules::discrete_schedule::from_log_snr(ls);
}

/// n + 1 levels uniform in λ from −5.03 (ℓ_0, the noisy end) to 4.56 (ℓ_n, the data side),
/// σ = e^{−λ} (closed_forms C2: VP-linear t from 1 to 1e-3); VP states unless `space` says VE.
inline samplers::level_sequence logsnr_levels(int n, samplers::state_space space = samplers::state_space::vp) {
    std::vector<double> sig(static_cast<std::size_t>(n) + 1);
    for (int k = 0; k <= n; ++k) sig[static_cast<std::size_t>(k)] = std::exp(-(-5.03 + (4.56 + 5.03) * k / n));
    return samplers::level_sequence(sig, space);
}

/// Runs the sample() driver (rng seed 0) from the points xT and returns the result.
template <class M, class Sm>
Eigen::MatrixXd run_sampler(const M& model, Sm& s, const Eigen::MatrixXd& xT) {
    auto x = to_tensor(xT);
    philox_rng rng(0);
    samplers::sample(model, s, x, rng);
    return to_matrix(x);
}

/// max |a − b| over all entries.
inline double max_abs_diff(const Eigen::MatrixXd& a, const Eigen::MatrixXd& b) { return (a - b).cwiseAbs().maxCoeff(); }

/// LSQ slope of log err against log(1/N) over the last four entries of a ladder (the coarse
/// N = 10 (and 20) are pre-asymptotic, closed_forms C2).
inline double last4_order(const std::vector<int>& ns, const std::vector<double>& errs) {
    return fitted_order(std::vector<int>(ns.end() - 4, ns.end()), std::vector<double>(errs.end() - 4, errs.end()));
}

}  // namespace diffuse::test
