#pragma once
// Finite-difference gradient checks for layers written against nn/layer.hpp (or anything else
// that computes a scalar loss and claims its gradient). Framework-neutral like the rest of
// diffuse/testing: the result has `passed`, the numbers and report().
//
//   gradient_check(name, values, analytic, loss, options)
//
// compares analytic[i] with the central difference
//   g_i ≈ (L(x + h e_i) − L(x − h e_i)) / (2h)
// on (a fixed, seeded subset of) the entries of `values`, perturbing them in place and restoring
// each one exactly. Error analysis in double (docs/unet.md §7): the truncation error is
// h²/6·|∂³L/∂x_i³| and the round-off error about ε·|L|/h (ε = 2^-52), so with h = 1e-6 and O(1)
// quantities both are ≲ 1e-10; the default tolerance |g − g_fd| ≤ atol + rtol·|g_fd| with
// atol = 1e-7, rtol = 1e-6 leaves three orders of margin and still catches any wrong term
// (a missing factor or a dropped path changes g by O(1)).

#include <diffuse/core/error.hpp>
#include <diffuse/core/philox.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <numeric>
#include <span>
#include <sstream>
#include <string>
#include <vector>

namespace diffuse::testing {

struct gradient_check_options {
    double step = 1e-6;            ///< h of the central difference
    double atol = 1e-7;            ///< absolute tolerance
    double rtol = 1e-6;            ///< relative tolerance, times |finite difference|
    std::int64_t max_entries = 0;  ///< check at most this many entries per tensor (0: all)
    std::uint64_t seed = 0;        ///< which entries, when a subset is checked
};

struct gradient_check_entry {
    std::int64_t index = 0;
    double analytic = 0, numeric = 0;
};

struct gradient_check_result {
    std::string name;
    bool passed = true;
    std::int64_t checked = 0;
    double max_abs_error = 0;                 ///< max |analytic − numeric|
    double max_scaled_error = 0;              ///< max |analytic − numeric| / (atol + rtol·|numeric|)
    std::vector<gradient_check_entry> worst;  ///< up to 5 entries with the largest scaled error

    std::string report() const {
        std::ostringstream os;
        os.precision(6);
        os << name << ": " << (passed ? "passed" : "FAILED") << ", " << checked
           << " entries, max |analytic − numeric| = " << max_abs_error
           << ", max error / tolerance = " << max_scaled_error;
        for (const auto& e : worst)
            os << "\n  [" << e.index << "] analytic " << e.analytic << ", numeric " << e.numeric;
        return os.str();
    }
};

/// Checks analytic ≈ ∂loss/∂values by central differences. `values` are perturbed in place and
/// restored; `loss()` must read them. analytic.size() == values.size().
inline gradient_check_result gradient_check(const std::string& name, std::span<double> values,
                                            std::span<const double> analytic, const std::function<double()>& loss,
                                            const gradient_check_options& options = {}) {
    require(analytic.size() == values.size(), "analytic.size()", analytic.size(),
            "equal to values.size() = " + std::to_string(values.size()));
    require_positive(options.step, "options.step");
    require_nonnegative(options.atol, "options.atol");
    require_nonnegative(options.rtol, "options.rtol");
    const std::int64_t n = static_cast<std::int64_t>(values.size());
    std::vector<std::int64_t> idx(static_cast<std::size_t>(n));
    std::iota(idx.begin(), idx.end(), std::int64_t{0});
    if (options.max_entries > 0 && options.max_entries < n) {
        // a seeded partial Fisher–Yates shuffle picks the subset
        for (std::int64_t i = 0; i < options.max_entries; ++i) {
            const double u = philox_uniform(options.seed, 0x67c4u, static_cast<std::uint64_t>(i));
            const std::int64_t j = i + std::min<std::int64_t>(n - i - 1, static_cast<std::int64_t>(u * (n - i)));
            std::swap(idx[static_cast<std::size_t>(i)], idx[static_cast<std::size_t>(j)]);
        }
        idx.resize(static_cast<std::size_t>(options.max_entries));
        std::sort(idx.begin(), idx.end());
    }
    gradient_check_result r;
    r.name = name;
    std::vector<std::pair<double, gradient_check_entry>> all;
    for (std::int64_t i : idx) {
        double& v = values[static_cast<std::size_t>(i)];
        const double saved = v;
        v = saved + options.step;
        const double lp = loss();
        v = saved - options.step;
        const double lm = loss();
        v = saved;
        const double fd = (lp - lm) / (2.0 * options.step);
        const double an = analytic[static_cast<std::size_t>(i)];
        const double err = std::abs(an - fd);
        const double tol = options.atol + options.rtol * std::abs(fd);
        const double scaled = std::isfinite(err) ? err / tol : INFINITY;
        r.max_abs_error = std::max(r.max_abs_error, err);
        r.max_scaled_error = std::max(r.max_scaled_error, scaled);
        if (!(scaled <= 1.0)) r.passed = false;
        all.push_back({scaled, {i, an, fd}});
        ++r.checked;
    }
    std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
    for (std::size_t k = 0; k < all.size() && k < 5; ++k) r.worst.push_back(all[k].second);
    return r;
}

}  // namespace diffuse::testing
