#pragma once
// Numeric building blocks shared by the schedules/ headers (docs/schedules.md, "Numerics"):
//   * stable scalar functions: softplus, log1mexp, log_sigmoid;
//   * compensated (Neumaier) prefix sums, used for log ᾱ_t = Σ log1p(−β_i);
//   * bit-faithful emulations of the numpy / torch array constructors that the peers use to
//     build timesteps and betas (np.linspace, np.arange, torch.linspace in float32) and of
//     numpy's round-half-to-even, so that parity with diffusers is exact, not approximate.
//
// The emulations store intermediate products in `volatile` locals: a compiler allowed to
// contract a*b + c into one fused multiply-add (GCC's default with -march=...+fma) would
// otherwise round differently from numpy, and a single ulp can flip a round-half-even tie.

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace diffuse::schedules::detail {

/// softplus(x) = log(1 + eˣ), without overflow for large x or loss for very negative x.
inline double softplus(double x) {
    if (x == INFINITY) return INFINITY;
    return (x > 0 ? x : 0.0) + std::log1p(std::exp(-std::abs(x)));
}

/// log(1 − eˣ) for x <= 0 (Mächler 2012, "Accurately computing log(1 − exp(−|a|))"):
/// log(−expm1(x)) near 0, log1p(−exp(x)) for x < −ln 2. log1mexp(0) = −∞, log1mexp(−∞) = 0.
inline double log1mexp(double x) {
    constexpr double ln2 = 0.693147180559945309417232121458176568;
    return x > -ln2 ? std::log(-std::expm1(x)) : std::log1p(-std::exp(x));
}

/// log σ(x) = −softplus(−x), the log of the logistic sigmoid.
inline double log_sigmoid(double x) { return -softplus(-x); }

/// Inclusive prefix sums out[i] = Σ_{j<=i} x[j] with Neumaier's compensated summation: the
/// error of each partial sum is O(ε)·Σ|x_j| instead of O(i·ε)·Σ|x_j|.
inline std::vector<double> compensated_cumsum(std::span<const double> x) {
    std::vector<double> out(x.size());
    double sum = 0.0, comp = 0.0;
    for (std::size_t i = 0; i < x.size(); ++i) {
        const double v = x[i];
        const double t = sum + v;
        if (std::abs(sum) >= std::abs(v))
            comp += (sum - t) + v;
        else
            comp += (v - t) + sum;
        sum = t;
        out[i] = sum + comp;
    }
    return out;
}

/// numpy's round (np.round, np.rint): nearest integer, ties to even. Independent of the
/// floating-point environment's rounding mode.
inline double round_half_even(double x) {
    const double r = std::round(x);  // ties away from zero
    if (std::abs(x - std::trunc(x)) == 0.5) return 2.0 * std::round(x / 2.0);
    return r;
}

/// np.linspace(start, stop, num) in float64, as numpy 1.x/2.x computes it:
/// step = (stop − start)/(num − 1); y_i = i·step + start; y_{num−1} = stop.
inline std::vector<double> numpy_linspace(double start, double stop, int num) {
    std::vector<double> y(static_cast<std::size_t>(num > 0 ? num : 0));
    if (num <= 0) return y;
    if (num == 1) {
        y[0] = start;
        return y;
    }
    const double step = (stop - start) / static_cast<double>(num - 1);
    for (int i = 0; i < num; ++i) {
        volatile double p = static_cast<double>(i) * step;  // no fused multiply-add
        y[static_cast<std::size_t>(i)] = p + start;
    }
    y.back() = stop;
    return y;
}

/// np.arange(start, stop, step) for float64 arguments, as numpy computes it: length
/// ceil((stop − start)/step); y_0 = start, y_1 = start + step, and then y_i = start + i·δ with
/// δ = y_1 − y_0 (numpy's DOUBLE_fill), which is not always exactly `step`.
inline std::vector<double> numpy_arange(double start, double stop, double step) {
    const double len_d = std::ceil((stop - start) / step);
    const std::size_t len = len_d > 0 ? static_cast<std::size_t>(len_d) : 0;
    std::vector<double> y(len);
    if (len == 0) return y;
    y[0] = start;
    if (len == 1) return y;
    y[1] = start + step;
    const double delta = y[1] - y[0];
    for (std::size_t i = 2; i < len; ++i) {
        volatile double p = static_cast<double>(i) * delta;  // no fused multiply-add
        y[i] = start + p;
    }
    return y;
}

/// torch.linspace(start, end, steps, dtype=float32) on the CPU, scalar kernel: start and end are
/// rounded to float, step = (end − start)/(steps − 1) in float, and the values are computed
/// from both ends: start + step·i for i < steps/2, end − step·(steps − 1 − i) otherwise.
/// Each float operation is evaluated in double and rounded to float; because double has more
/// than 2·24 + 2 significand bits this double rounding gives exactly the IEEE float result of
/// +, −, ×, ÷ (Figueroa 1995). The product is stored in a volatile float: otherwise GCC may
/// narrow the expression to float arithmetic and fuse it into a float FMA (-ffp-contract=fast),
/// which rounds once instead of twice. This is the unfused IEEE result; a PyTorch build whose
/// kernel is vectorised or compiled with FMA contraction may differ by one float ulp at some
/// entries (not checked against torch here).
inline std::vector<double> torch_linspace_float32(double start_d, double end_d, int steps) {
    std::vector<double> y(static_cast<std::size_t>(steps > 0 ? steps : 0));
    if (steps <= 0) return y;
    const float start = static_cast<float>(start_d);
    const float end = static_cast<float>(end_d);
    if (steps == 1) {
        y[0] = static_cast<double>(start);
        return y;
    }
    const float range = static_cast<float>(static_cast<double>(end) - static_cast<double>(start));
    const float step = static_cast<float>(static_cast<double>(range) / static_cast<double>(steps - 1));
    const int halfway = steps / 2;
    for (int i = 0; i < steps; ++i) {
        float v;
        if (i < halfway) {
            volatile float p = static_cast<float>(static_cast<double>(step) * i);
            v = static_cast<float>(static_cast<double>(start) + static_cast<double>(p));
        } else {
            volatile float p = static_cast<float>(static_cast<double>(step) * (steps - 1 - i));
            v = static_cast<float>(static_cast<double>(end) - static_cast<double>(p));
        }
        y[static_cast<std::size_t>(i)] = static_cast<double>(v);
    }
    return y;
}

/// "one of \"a\", \"b\", \"c\"" — the allowed-values phrase for error messages.
inline std::string one_of(std::initializer_list<std::string_view> names) {
    std::string s = "one of ";
    bool first = true;
    for (auto n : names) {
        if (!first) s += ", ";
        s += '"';
        s += n;
        s += '"';
        first = false;
    }
    return s;
}

}  // namespace diffuse::schedules::detail
