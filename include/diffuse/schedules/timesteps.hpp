#pragma once
// Inference timestep selection on the integer training grid 0..T−1 (docs/schedules.md §6),
// reproducing the peers' rules exactly, including numpy's float arithmetic and its
// round-half-to-even. All diffusers sequences are returned in sampling order (decreasing);
// guided-diffusion's space_timesteps returns a set, here sorted increasing.
//
//   ddim_timesteps       diffusers DDIM / DDPM / PNDM / LCM `set_timesteps`          (§6.1)
//   multistep_timesteps  diffusers DPM-Solver++ multistep / UniPC / DEIS / SA-Solver (§6.2)
//   euler_timesteps      diffusers Euler family: float timesteps, linspace unrounded  (§6.3)
//   space_timesteps      guided-diffusion `respace.space_timesteps`, incl. "ddimN"    (§6.4)

#include <diffuse/core/error.hpp>
#include <diffuse/schedules/beta_schedule.hpp>
#include <diffuse/schedules/detail/numeric.hpp>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace diffuse::schedules {

/// diffusers' `timestep_spacing` (Lin et al. 2024, Table 2, names the three rules).
enum class spacing {
    leading,   ///< r = T // N; {0, r, ..., (N−1)r} + steps_offset
    trailing,  ///< r = T / N (float); round(T − k r) − 1, k = 0..N−1: always starts at T − 1
    linspace,  ///< round(linspace(0, T − 1, N)), half to even
};

/// "leading" | "trailing" | "linspace"; anything else is a diffuse::error listing the names.
inline spacing parse_spacing(std::string_view name) {
    if (name == "leading") return spacing::leading;
    if (name == "trailing") return spacing::trailing;
    if (name == "linspace") return spacing::linspace;
    fail_argument("timestep_spacing", name, detail::one_of({"leading", "trailing", "linspace"}));
}

inline std::string_view to_string(spacing s) {
    switch (s) {
        case spacing::leading: return "leading";
        case spacing::trailing: return "trailing";
        case spacing::linspace: return "linspace";
    }
    return "?";
}

namespace detail {

inline void require_steps(int num_inference_steps, int max_steps, std::string_view why) {
    if (num_inference_steps < 1 || num_inference_steps > max_steps)
        fail_argument("num_inference_steps", num_inference_steps,
                      "an integer in [1, " + std::to_string(max_steps) + "] (" + std::string(why) + ")");
}

inline void require_offset(int steps_offset, int largest, int T) {
    require(steps_offset >= 0, "steps_offset", steps_offset, "an integer >= 0");
    if (largest + steps_offset > T - 1)
        fail_argument("steps_offset", steps_offset,
                      "at most " + std::to_string(T - 1 - largest) + " here: the largest timestep " +
                          std::to_string(largest) + " + steps_offset must be <= num_train_timesteps - 1 = " +
                          std::to_string(T - 1));
}

/// diffusers' "trailing" values before the −1: round(np.arange(last, 0, −T/N)), numpy's float
/// arithmetic included. np.arange's length ceil(last/(T/N)) can exceed the intended count by
/// one through rounding (T = 1000: N = 61, 103, 121, ...), adding an element ≈ 1e-13 that
/// becomes timestep −1 in diffusers. Values that round to 0 (timestep −1) are dropped here.
inline std::vector<double> trailing_values(int last, int T, int N) {
    const double ratio = static_cast<double>(T) / N;
    std::vector<double> a = numpy_arange(static_cast<double>(last), 0.0, -ratio);
    for (double& v : a) v = round_half_even(v);
    while (!a.empty() && a.back() < 1.0) a.pop_back();
    return a;
}

/// leading: (arange(n)·r) reversed + offset, r = ratio_denominator // n.
inline std::vector<double> leading_values(int n, int r) {
    std::vector<double> v(static_cast<std::size_t>(n));
    for (int k = 0; k < n; ++k) v[static_cast<std::size_t>(k)] = static_cast<double>(n - 1 - k) * r;
    return v;
}

inline std::vector<int> to_int(const std::vector<double>& v) {
    std::vector<int> out(v.size());
    for (std::size_t i = 0; i < v.size(); ++i) out[i] = static_cast<int>(v[i]);
    return out;
}

inline int parse_int(std::string_view s, std::string_view argument, std::string_view whole) {
    while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
    while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
    int value = 0;
    const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
    if (ec != std::errc{} || ptr != s.data() + s.size() || s.empty())
        fail_argument(argument, whole, "\"ddimN\" or comma-separated integers such as \"10,15,20\"");
    return value;
}

}  // namespace detail

/// diffusers DDIM / DDPM / PNDM / LCM timesteps (`scheduling_ddim.py::set_timesteps`; §6.1), decreasing:
///   linspace: round(linspace(0, T−1, N))      (numpy round: half to even)
///   leading : arange(N)·(T // N) + steps_offset
///   trailing: round(arange(T, 0, −T/N)) − 1
/// Requires 1 <= N <= T and, for leading, (N−1)(T // N) + steps_offset <= T − 1 (diffusers would
/// index past the end, issue #10003). steps_offset applies to leading only, as in diffusers.
inline std::vector<int> ddim_timesteps(int num_train_timesteps, int num_inference_steps, spacing s,
                                       int steps_offset = 0) {
    detail::require_num_train_timesteps(num_train_timesteps);
    const int T = num_train_timesteps, N = num_inference_steps;
    detail::require_steps(N, T, "at most num_train_timesteps");
    switch (s) {
        case spacing::linspace: {
            auto v = detail::numpy_linspace(0.0, T - 1.0, N);
            std::vector<int> out(v.size());
            for (std::size_t i = 0; i < v.size(); ++i) out[v.size() - 1 - i] = static_cast<int>(detail::round_half_even(v[i]));
            return out;
        }
        case spacing::leading: {
            const int r = T / N;
            detail::require_offset(steps_offset, (N - 1) * r, T);
            auto out = detail::to_int(detail::leading_values(N, r));
            for (int& t : out) t += steps_offset;
            return out;
        }
        case spacing::trailing: {
            auto out = detail::to_int(detail::trailing_values(T, T, N));
            for (int& t : out) t -= 1;
            return out;
        }
    }
    return {};
}

/// diffusers' multistep rule (DPM-Solver++ multistep, UniPC, DEIS, SA-Solver `set_timesteps`; §6.2):
/// N + 1 points, the last (t = 0 end) dropped, over [0, last_timestep):
///   linspace: round(linspace(0, last − 1, N + 1))[::-1][:-1]
///   leading : (arange(N + 1)·(last // (N + 1)))[::-1][:-1] + steps_offset
///   trailing: round(arange(last, 0, −T/N)) − 1   (fewer than N values when last < T)
/// last_timestep (default T) is T minus the number of λ_t below `lambda_min_clipped`:
/// discrete_schedule::num_timesteps_lambda_at_least. Requires 1 <= last_timestep <= T and
/// 1 <= N <= last − 1 for linspace / leading (so the timesteps are distinct), N <= T for trailing.
inline std::vector<int> multistep_timesteps(int num_train_timesteps, int num_inference_steps, spacing s,
                                            int steps_offset = 0, int last_timestep = -1) {
    detail::require_num_train_timesteps(num_train_timesteps);
    const int T = num_train_timesteps, N = num_inference_steps;
    const int last = last_timestep < 0 ? T : last_timestep;
    require(last >= 1 && last <= T, "last_timestep", last_timestep,
            "an integer in [1, num_train_timesteps] (or -1 for num_train_timesteps)");
    switch (s) {
        case spacing::linspace: {
            detail::require_steps(N, last - 1, "at most last_timestep - 1 for distinct timesteps");
            auto v = detail::numpy_linspace(0.0, last - 1.0, N + 1);
            std::vector<int> out;
            for (std::size_t i = v.size(); i-- > 1;) out.push_back(static_cast<int>(detail::round_half_even(v[i])));
            return out;
        }
        case spacing::leading: {
            detail::require_steps(N, last - 1, "at most last_timestep - 1 for distinct timesteps");
            const int r = last / (N + 1);
            detail::require_offset(steps_offset, N * r, T);
            auto v = detail::leading_values(N + 1, r);
            v.pop_back();
            auto out = detail::to_int(v);
            for (int& t : out) t += steps_offset;
            return out;
        }
        case spacing::trailing: {
            detail::require_steps(N, T, "at most num_train_timesteps");
            auto out = detail::to_int(detail::trailing_values(last, T, N));
            for (int& t : out) t -= 1;
            return out;
        }
    }
    return {};
}

/// diffusers Euler-family float timesteps (Euler, Euler ancestral, Heun, LMS, KDPM2 `set_timesteps`;
/// §6.3), decreasing. linspace is NOT rounded: linspace(0, T − 1, N); leading and trailing give the
/// same integers as ddim_timesteps. diffusers stores them as float32 (precision::float32 rounds
/// the linspace values to float; float64, the default, keeps them in double).
inline std::vector<double> euler_timesteps(int num_train_timesteps, int num_inference_steps, spacing s,
                                           int steps_offset = 0, precision prec = precision::float64) {
    if (s != spacing::linspace) {
        const auto ints = ddim_timesteps(num_train_timesteps, num_inference_steps, s, steps_offset);
        return std::vector<double>(ints.begin(), ints.end());
    }
    detail::require_num_train_timesteps(num_train_timesteps);
    detail::require_steps(num_inference_steps, num_train_timesteps, "at most num_train_timesteps");
    auto v = detail::numpy_linspace(0.0, num_train_timesteps - 1.0, num_inference_steps);
    std::reverse(v.begin(), v.end());
    if (prec == precision::float32) v = detail::round_to_float(std::move(v));
    return v;
}

/// guided-diffusion `space_timesteps(T, section_counts)` (respace.py; §6.4): T is split into
/// len(counts) sections of sizes T // n (+1 for the first T % n); section i takes counts[i]
/// indices start + round(k·(size − 1)/(counts[i] − 1)), accumulated by repeated addition and
/// rounded half to even, as Python does. Returned sorted increasing, without duplicates.
inline std::vector<int> space_timesteps(int num_timesteps, std::span<const int> section_counts) {
    require(num_timesteps >= 1, "num_timesteps", num_timesteps, "an integer >= 1");
    require(!section_counts.empty(), "section_counts.size()", section_counts.size(), "at least 1");
    const int n = static_cast<int>(section_counts.size());
    const int size_per = num_timesteps / n, extra = num_timesteps % n;
    int start = 0;
    std::set<int> steps;
    for (int i = 0; i < n; ++i) {
        const int size = size_per + (i < extra ? 1 : 0);
        const int count = section_counts[static_cast<std::size_t>(i)];
        const std::string arg = "section_counts[" + std::to_string(i) + "]";
        require(count >= 0, arg, count, "an integer >= 0");
        if (size < count)
            fail_argument(arg, count,
                          "at most " + std::to_string(size) + ", the size of section " + std::to_string(i) +
                              " (" + std::to_string(num_timesteps) + " timesteps in " + std::to_string(n) +
                              " sections)");
        const double frac_stride = count <= 1 ? 1.0 : static_cast<double>(size - 1) / (count - 1);
        double cur = 0.0;
        for (int k = 0; k < count; ++k) {
            steps.insert(start + static_cast<int>(detail::round_half_even(cur)));
            cur += frac_stride;
        }
        start += size;
    }
    require(!steps.empty(), "section_counts", "all zero", "at least one section count >= 1");
    return std::vector<int>(steps.begin(), steps.end());
}

/// space_timesteps with guided-diffusion's string forms: "ddimN" — the first integer stride i in
/// [1, T) with len(range(0, T, i)) == N, giving {0, i, 2i, ...} (error if none); or
/// comma-separated section counts such as "10,15,20".
inline std::vector<int> space_timesteps(int num_timesteps, std::string_view spec) {
    require(num_timesteps >= 1, "num_timesteps", num_timesteps, "an integer >= 1");
    if (spec.starts_with("ddim")) {
        const int desired = detail::parse_int(spec.substr(4), "section_counts", spec);
        for (int i = 1; i < num_timesteps; ++i) {
            if ((num_timesteps + i - 1) / i == desired) {  // len(range(0, T, i))
                std::vector<int> out;
                for (int t = 0; t < num_timesteps; t += i) out.push_back(t);
                return out;
            }
        }
        fail_argument("section_counts", spec,
                      "\"ddimN\" with N = ceil(" + std::to_string(num_timesteps) +
                          " / i) for some integer stride i in [1, " + std::to_string(num_timesteps - 1) +
                          "]: no integer stride gives exactly " + std::to_string(desired) + " steps");
    }
    std::vector<int> counts;
    std::size_t pos = 0;
    while (true) {
        const std::size_t comma = spec.find(',', pos);
        counts.push_back(detail::parse_int(spec.substr(pos, comma == std::string_view::npos ? std::string_view::npos : comma - pos),
                                           "section_counts", spec));
        if (comma == std::string_view::npos) break;
        pos = comma + 1;
    }
    return space_timesteps(num_timesteps, counts);
}

/// diffusers DDIM's previous timestep, t − T // N, used whatever the spacing (§7): right for
/// leading (and trailing when N divides T); for other grids look the previous timestep up in
/// the sequence instead (diffusers issues #9261, #11347).
inline int ddim_prev_timestep(int t, int num_train_timesteps, int num_inference_steps) {
    detail::require_num_train_timesteps(num_train_timesteps);
    detail::require_steps(num_inference_steps, num_train_timesteps, "at most num_train_timesteps");
    return t - num_train_timesteps / num_inference_steps;
}

}  // namespace diffuse::schedules
