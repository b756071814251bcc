#pragma once
// reference_trajectory: record a whole sampler run, save it as .npy files, load it back and
// compare two runs step by step (golden tests; docs/testing-your-sampler.md §4).
//
//   testing::reference_trajectory<double> rec;
//   samplers::sample(model, sampler, x, rng, rec);          // as the driver's callback, or
//   rec.record(i, x, timestep);                              // from a hand-written loop
//   rec.save("golden/ddim10");                               // a folder of .npy + index.csv
//   auto golden = testing::reference_trajectory<double>::load("golden/ddim10");
//   auto cmp = testing::compare_trajectories(rec, golden, 1e-12, 1e-12);
//   CHECK_MESSAGE(cmp.passed, cmp.report());
//
// Each record is (step, timestep, x): step is the driver's step index (−1 by convention for the
// initial state, record_initial), timestep what the sampler reports (NaN when unknown), x a host
// copy of the state (device tensors are copied). The folder holds x_00000.npy, x_00001.npy, ...
// (numpy.save's bytes, io/npy.hpp) and index.csv with the header "step,timestep,file" and one
// row per record (timesteps with 17 significant digits, so they round-trip exactly); numpy
// reads it with np.genfromtxt(path, delimiter=',', names=True, dtype=None). Saving writes the
// index last and never deletes files; only the files the index names are loaded.
//
// compare_trajectories(actual, expected, atol, rtol) checks, position by position, equal step
// indices, equal timesteps (NaN equals NaN), equal shapes and every element within
// |a − e| <= atol + rtol·|e| (NaN matches only NaN; atol = rtol = 0 demands equal values, i.e.
// a bitwise-reproducible run up to the sign of zero), and equal lengths. It returns the first
// mismatching position with the reason and the first offending element, the largest error and
// the per-step errors; it never throws for a mismatch (bad tolerances throw diffuse::error).

#include <diffuse/core/error.hpp>
#include <diffuse/core/memory_space.hpp>
#include <diffuse/core/tensor.hpp>
#include <diffuse/io/detail/file.hpp>
#include <diffuse/io/npy.hpp>
#include <diffuse/samplers/sampler.hpp>
#include <diffuse/testing/detail/format.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <optional>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace diffuse::testing {

/// One recorded state.
template <class T>
struct trajectory_step {
    std::int64_t step = 0;                                       ///< step index (−1: initial state)
    double timestep = std::numeric_limits<double>::quiet_NaN();  ///< the sampler's timestep, NaN if unknown
    tensor<T, host_space> x;                                     ///< the state after that step
};

template <class T>
class reference_trajectory {
    static_assert(std::is_floating_point_v<T> || std::is_integral_v<T>, "reference_trajectory records numeric tensors");

public:
    /// Records every step; with record_every = k > 1 the driver callback records only the steps
    /// i with i % k == 0 and the last one (record() always records).
    explicit reference_trajectory(std::size_t record_every = 1) : every_(record_every) {
        require(record_every >= 1, "record_every", record_every, ">= 1");
    }

    /// The callback of samplers::sample: records x after step info.index.
    template <class U, class S>
    void operator()(const samplers::step_info& info, tensor_view<const U, S> x) {
        static_assert(std::is_same_v<U, T>,
                      "reference_trajectory<T> records tensors of T: use reference_trajectory<float> for a float run");
        if (info.index % every_ == 0 || info.index + 1 == info.num_steps)
            record(static_cast<std::int64_t>(info.index), x, info.timestep);
    }

    /// Records a copy of x as step `step` (from a hand-written loop).
    template <class U, class S>
    void record(std::int64_t step, tensor_view<U, S> x, double timestep = std::numeric_limits<double>::quiet_NaN()) {
        static_assert(std::is_same_v<std::remove_const_t<U>, T>,
                      "reference_trajectory<T> records tensors of T: use reference_trajectory<float> for a float run");
        trajectory_step<T> s;
        s.step = step;
        s.timestep = timestep;
        s.x = tensor<T, host_space>(x.shape());
        copy(s.x.view(), tensor_view<const T, S>(x));
        steps_.push_back(std::move(s));
    }
    template <class S>
    void record(std::int64_t step, const tensor<T, S>& x, double timestep = std::numeric_limits<double>::quiet_NaN()) {
        record(step, x.cview(), timestep);
    }

    /// Records the initial state x_T as step −1.
    template <class U, class S>
    void record_initial(tensor_view<U, S> x, double timestep = std::numeric_limits<double>::quiet_NaN()) {
        record(-1, x, timestep);
    }
    template <class S>
    void record_initial(const tensor<T, S>& x, double timestep = std::numeric_limits<double>::quiet_NaN()) {
        record(-1, x.cview(), timestep);
    }

    std::size_t size() const { return steps_.size(); }
    bool empty() const { return steps_.empty(); }
    const std::vector<trajectory_step<T>>& steps() const { return steps_; }
    /// Record k (checked).
    const trajectory_step<T>& operator[](std::size_t k) const {
        require(k < steps_.size(), "k", k, "a record index in [0, " + std::to_string(steps_.size()) + ")");
        return steps_[k];
    }
    const trajectory_step<T>& back() const {
        require(!steps_.empty(), "size()", 0, ">= 1 (nothing recorded)");
        return steps_.back();
    }
    void clear() { steps_.clear(); }

    /// Writes folder/x_00000.npy, ... and folder/index.csv (the folder is created if needed).
    void save(const std::string& folder) const {
        std::error_code ec;
        std::filesystem::create_directories(folder, ec);
        if (ec) fail("reference_trajectory::save: cannot create folder '" + folder + "': " + ec.message());
        std::string index = "step,timestep,file\n";
        for (std::size_t k = 0; k < steps_.size(); ++k) {
            const std::string file = detail::format("x_%05zu.npy", k);
            io::save_npy((std::filesystem::path(folder) / file).string(), steps_[k].x.cview());
            index += detail::format("%lld,%.17g,%s\n", static_cast<long long>(steps_[k].step), steps_[k].timestep,
                                    file.c_str());
        }
        const std::string path = (std::filesystem::path(folder) / "index.csv").string();
        io::detail::write_file_bytes(path, index.data(), index.size(), "trajectory index");
    }

    /// Reads a folder written by save() (or by hand: the same index.csv and .npy files of dtype T).
    static reference_trajectory load(const std::string& folder) {
        const std::string path = (std::filesystem::path(folder) / "index.csv").string();
        const std::string text = io::detail::read_file_bytes(path, "trajectory index");
        std::istringstream in(text);
        std::string line;
        if (!std::getline(in, line) || strip(line) != "step,timestep,file")
            fail("trajectory index '" + path + "': first line is \"" + strip(line) +
                 "\"; expected the header \"step,timestep,file\"");
        reference_trajectory t;
        int line_no = 1;
        while (std::getline(in, line)) {
            ++line_no;
            line = strip(line);
            if (line.empty()) continue;
            const std::size_t c1 = line.find(','), c2 = c1 == std::string::npos ? c1 : line.find(',', c1 + 1);
            if (c2 == std::string::npos || line.find(',', c2 + 1) != std::string::npos)
                fail("trajectory index '" + path + "', line " + std::to_string(line_no) + ": \"" + line +
                     "\"; expected three fields step,timestep,file");
            trajectory_step<T> s;
            s.step = parse_integer(line.substr(0, c1), path, line_no);
            s.timestep = parse_double(line.substr(c1 + 1, c2 - c1 - 1), path, line_no);
            const std::string file = line.substr(c2 + 1);
            if (file.empty() || file.find('/') != std::string::npos || file.find('\\') != std::string::npos ||
                file[0] == '.')
                fail("trajectory index '" + path + "', line " + std::to_string(line_no) + ": file \"" + file +
                     "\"; expected a plain file name inside the folder");
            s.x = io::load_npy<T>((std::filesystem::path(folder) / file).string());
            t.steps_.push_back(std::move(s));
        }
        return t;
    }

private:
    static std::string strip(std::string s) {
        while (!s.empty() && (s.back() == '\r' || s.back() == ' ' || s.back() == '\n')) s.pop_back();
        std::size_t b = 0;
        while (b < s.size() && s[b] == ' ') ++b;
        return s.substr(b);
    }
    static std::int64_t parse_integer(const std::string& f, const std::string& path, int line_no) {
        char* end = nullptr;
        const long long v = std::strtoll(f.c_str(), &end, 10);
        if (f.empty() || *end != '\0')
            fail("trajectory index '" + path + "', line " + std::to_string(line_no) + ": step \"" + f +
                 "\"; expected an integer");
        return v;
    }
    static double parse_double(const std::string& f, const std::string& path, int line_no) {
        char* end = nullptr;
        const double v = std::strtod(f.c_str(), &end);
        if (f.empty() || *end != '\0')
            fail("trajectory index '" + path + "', line " + std::to_string(line_no) + ": timestep \"" + f +
                 "\"; expected a number (or nan)");
        return v;
    }

    std::size_t every_ = 1;
    std::vector<trajectory_step<T>> steps_;
};

/// The outcome of compare_trajectories.
struct trajectory_comparison {
    bool passed = false;
    std::size_t actual_size = 0, expected_size = 0;
    std::size_t compared = 0;                    ///< positions compared (the shorter length)
    std::optional<std::size_t> first_mismatch;   ///< position of the first mismatching record
    std::int64_t first_mismatch_step = 0;        ///< its step index
    std::string problem;                         ///< what mismatched there (empty when passed)
    double max_abs_error = 0.0;                  ///< largest |a − e| over all compared elements (inf: shape or NaN mismatch)
    std::size_t max_error_position = 0;          ///< where it occurred
    std::vector<double> step_max_abs_error;      ///< per compared position
    double atol = 0.0, rtol = 0.0;

    std::string report() const {
        std::string r = detail::format("trajectory comparison: %s: %zu records against %zu expected, atol %g, rtol %g; "
                                       "max |error| %.3e at record %zu\n",
                                       detail::verdict(passed), actual_size, expected_size, atol, rtol, max_abs_error,
                                       max_error_position);
        if (first_mismatch)
            r += detail::format("  first mismatch at record %zu (step %lld): ", *first_mismatch,
                                static_cast<long long>(first_mismatch_step)) +
                 problem + "\n";
        return r;
    }
};

namespace detail {

/// Equal timesteps, NaN equal to NaN.
inline bool same_timestep(double a, double b) { return a == b || (std::isnan(a) && std::isnan(b)); }

}  // namespace detail

/// Compares `actual` with `expected` record by record (see the header comment). atol, rtol >= 0.
template <class T, class U>
trajectory_comparison compare_trajectories(const reference_trajectory<T>& actual, const reference_trajectory<U>& expected,
                                           double atol, double rtol) {
    require_nonnegative(atol, "atol");
    require_nonnegative(rtol, "rtol");
    trajectory_comparison c;
    c.atol = atol;
    c.rtol = rtol;
    c.actual_size = actual.size();
    c.expected_size = expected.size();
    c.compared = std::min(actual.size(), expected.size());
    auto mismatch = [&](std::size_t k, std::int64_t step, std::string why) {
        if (!c.first_mismatch) {
            c.first_mismatch = k;
            c.first_mismatch_step = step;
            c.problem = std::move(why);
        }
    };
    const double inf = std::numeric_limits<double>::infinity();
    for (std::size_t k = 0; k < c.compared; ++k) {
        const trajectory_step<T>& a = actual.steps()[k];
        const trajectory_step<U>& e = expected.steps()[k];
        if (a.step != e.step)
            mismatch(k, a.step, detail::format("step index %lld but the reference has %lld", static_cast<long long>(a.step),
                                               static_cast<long long>(e.step)));
        if (!detail::same_timestep(a.timestep, e.timestep))
            mismatch(k, a.step, detail::format("timestep %.17g but the reference has %.17g", a.timestep, e.timestep));
        double err = 0.0;
        if (a.x.shape() != e.x.shape()) {
            err = inf;
            mismatch(k, a.step, "shape " + a.x.shape().str() + " but the reference has shape " + e.x.shape().str());
        } else {
            bool reported = false;
            for (std::int64_t i = 0; i < a.x.numel(); ++i) {
                const double av = static_cast<double>(a.x[i]), ev = static_cast<double>(e.x[i]);
                double d;
                bool ok;
                if (std::isnan(av) || std::isnan(ev)) {
                    ok = std::isnan(av) && std::isnan(ev);
                    d = ok ? 0.0 : inf;
                } else if (std::isinf(av) || std::isinf(ev)) {
                    ok = av == ev;
                    d = ok ? 0.0 : inf;
                } else {
                    d = std::abs(av - ev);
                    ok = d <= atol + rtol * std::abs(ev);
                }
                if (d > err) err = d;
                if (!ok && !reported) {
                    reported = true;
                    mismatch(k, a.step,
                             detail::format("element %lld of shape %s is %.17g but the reference has %.17g "
                                            "(|difference| %.3e > allowed %.3e)",
                                            static_cast<long long>(i), a.x.shape().str().c_str(), av, ev, d,
                                            atol + rtol * std::abs(ev)));
                }
            }
        }
        c.step_max_abs_error.push_back(err);
        if (err > c.max_abs_error || (k == 0 && err >= c.max_abs_error)) {
            c.max_abs_error = err;
            c.max_error_position = k;
        }
    }
    if (actual.size() != expected.size())
        mismatch(c.compared, c.compared < actual.size() ? actual.steps()[c.compared].step
                                                        : (c.compared < expected.size() ? expected.steps()[c.compared].step : 0),
                 detail::format("the run has %zu records but the reference has %zu", actual.size(), expected.size()));
    c.passed = !c.first_mismatch;
    return c;
}

/// Compares `actual` with the trajectory saved in `folder` (loaded as reference_trajectory<T>).
template <class T>
trajectory_comparison compare_trajectories(const reference_trajectory<T>& actual, const std::string& folder, double atol,
                                           double rtol) {
    return compare_trajectories(actual, reference_trajectory<T>::load(folder), atol, rtol);
}

}  // namespace diffuse::testing
