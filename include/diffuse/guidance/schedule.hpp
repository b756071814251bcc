#pragma once
// When guidance acts and how strongly (docs/guidance.md §4).
//
//   guidance_weight     the weight w of a step: a constant (implicit from double), a per-step table
//                       (e.g. CFG++'s, samplers/guidance_tables.hpp), a linear or cosine ramp over the
//                       run, or any function of the noise_condition. Step-based forms read level.step and
//                       level.num_steps, which the driver (samplers/sampler.hpp) sets.
//   guidance_interval   where guidance acts:
//     steps(start, stop)      diffusers' guiders: fractions of the run; step i is guided when
//                             int(start·N) <= i < int(stop·N)        0 <= start <= stop <= 1
//     sigmas(lo, hi)          Kynkäänniemi et al. 2024 ("Applying guidance in a limited interval"):
//                             guided when lo < σ <= hi, σ = level.sigma()     0 <= lo < hi <= +inf
// Outside the interval a guidance wrapper returns the conditional prediction (one B-sized model call).

#include <diffuse/core/error.hpp>
#include <diffuse/models/denoiser.hpp>

#include <cmath>
#include <cstddef>
#include <functional>
#include <limits>
#include <numbers>
#include <string>
#include <utility>
#include <vector>

namespace diffuse::guidance {

namespace detail {

/// The step index of a call; a diffuse::error naming what needs it when the level carries none.
inline std::size_t require_step(const models::noise_condition& level, const char* who) {
    if (!level.step)
        fail(std::string(who) +
             " is given in steps, but the noise level carries no step index (level.step); the driver "
             "samplers::sample sets it — in a loop of your own set level.step = i and level.num_steps = N");
    if (*level.step >= level.num_steps)
        fail_argument("level.step", *level.step, "< level.num_steps = " + std::to_string(level.num_steps));
    return *level.step;
}

}  // namespace detail

/// The guidance weight of each model call.
class guidance_weight {
public:
    /// A constant weight (implicit, so options.weight = 7.5 works).
    guidance_weight(double w = 1.0) : constant_(w) {}  // NOLINT(google-explicit-constructor)

    /// w_i = table[i] for step i (level.step); table.size() must equal the run's num_steps.
    static guidance_weight per_step(std::vector<double> table) {
        require(!table.empty(), "per_step: table.size()", 0, ">= 1");
        guidance_weight g;
        g.table_ = std::move(table);
        g.kind_ = kind::table;
        return g;
    }
    /// w_i = first + (last − first)·i/(N − 1) (first for N = 1).
    static guidance_weight linear(double first, double last) {
        require_finite(first, "linear: first");
        require_finite(last, "linear: last");
        guidance_weight g(first);
        g.last_ = last;
        g.kind_ = kind::linear;
        return g;
    }
    /// w_i = last + (first − last)·(1 + cos(π·i/(N − 1)))/2: first at step 0, last at the end.
    static guidance_weight cosine(double first, double last) {
        guidance_weight g = linear(first, last);
        g.kind_ = kind::cosine;
        return g;
    }
    /// w = f(level) for any function of the noise condition (σ = level.sigma(), level.step, ...).
    static guidance_weight function(std::function<double(const models::noise_condition&)> f) {
        require(static_cast<bool>(f), "function: f", "empty", "a callable");
        guidance_weight g;
        g.function_ = std::move(f);
        g.kind_ = kind::function;
        return g;
    }

    bool is_constant() const { return kind_ == kind::constant; }
    double constant_value() const { return constant_; }

    /// The weight at this call (not range-checked here: the wrapper checks it against its formula).
    double at(const models::noise_condition& level) const {
        switch (kind_) {
            case kind::constant: return constant_;
            case kind::table: {
                const std::size_t i = detail::require_step(level, "a per-step guidance weight");
                if (table_.size() != level.num_steps)
                    fail_argument("per_step: table.size()", table_.size(),
                                  "the run's number of steps, level.num_steps = " + std::to_string(level.num_steps));
                return table_[i];
            }
            case kind::linear:
            case kind::cosine: {
                const std::size_t i = detail::require_step(level, "a linear/cosine guidance weight ramp");
                const double u = level.num_steps <= 1 ? 0.0
                                                      : static_cast<double>(i) / static_cast<double>(level.num_steps - 1);
                if (kind_ == kind::linear) return constant_ + (last_ - constant_) * u;
                return last_ + (constant_ - last_) * 0.5 * (1.0 + std::cos(std::numbers::pi * u));
            }
            case kind::function: return function_(level);
        }
        return constant_;
    }

private:
    enum class kind { constant, table, linear, cosine, function };
    kind kind_ = kind::constant;
    double constant_ = 1.0;
    double last_ = 1.0;
    std::vector<double> table_;
    std::function<double(const models::noise_condition&)> function_;
};

/// Where guidance acts; the default acts everywhere.
class guidance_interval {
public:
    guidance_interval() = default;

    /// diffusers' guider interval: steps int(start·N) <= i < int(stop·N), 0 <= start <= stop <= 1.
    static guidance_interval steps(double start, double stop) {
        require(std::isfinite(start) && start >= 0.0 && start <= 1.0, "guidance_interval::steps: start", start,
                "a fraction of the run in [0, 1]");
        require(std::isfinite(stop) && stop >= 0.0 && stop <= 1.0, "guidance_interval::steps: stop", stop,
                "a fraction of the run in [0, 1]");
        require(start <= stop, "guidance_interval::steps: start", start,
                "<= stop = " + diffuse::detail::format_value(stop) + " (bounds in order)");
        guidance_interval g;
        g.kind_ = kind::steps;
        g.lo_ = start;
        g.hi_ = stop;
        return g;
    }
    /// Kynkäänniemi et al. 2024: guided when lo < σ <= hi, 0 <= lo < hi <= +inf.
    static guidance_interval sigmas(double lo, double hi) {
        require(std::isfinite(lo) && lo >= 0.0, "guidance_interval::sigmas: lo", lo, "a finite σ >= 0");
        require(!std::isnan(hi) && hi > lo, "guidance_interval::sigmas: hi", hi,
                "> lo = " + diffuse::detail::format_value(lo) + " (bounds in order; +inf allowed)");
        guidance_interval g;
        g.kind_ = kind::sigmas;
        g.lo_ = lo;
        g.hi_ = hi;
        return g;
    }

    /// Whether guidance acts at this call.
    bool contains(const models::noise_condition& level) const {
        switch (kind_) {
            case kind::all: return true;
            case kind::steps: {
                const std::size_t i = detail::require_step(level, "a guidance interval");
                const auto n = static_cast<double>(level.num_steps);
                const auto first = static_cast<std::size_t>(lo_ * n);  // Python int(): truncation
                const auto last = static_cast<std::size_t>(hi_ * n);
                return first <= i && i < last;
            }
            case kind::sigmas: {
                const double sigma = level.sigma();
                return lo_ < sigma && sigma <= hi_;
            }
        }
        return true;
    }

private:
    enum class kind { all, steps, sigmas };
    kind kind_ = kind::all;
    double lo_ = 0.0, hi_ = std::numeric_limits<double>::infinity();
};

}  // namespace diffuse::guidance
