#pragma once
// Shared helpers of tests/nn: seeded random tensors and the finite-difference check of a layer's
// input and parameter gradients (diffuse/testing/gradient_check.hpp).

#include <diffuse/core/philox.hpp>
#include <diffuse/nn/layer.hpp>
#include <diffuse/testing/gradient_check.hpp>

#include <doctest/doctest.h>

#include <cstdint>
#include <functional>
#include <span>
#include <string>

namespace nn_test {

using diffuse::nn::host_tensor;

/// N(mean, sd²) entries from Philox (seed, stream).
template <class T>
host_tensor<T> randn(diffuse::shape s, std::uint64_t seed, std::uint64_t stream = 0, double sd = 1.0,
                     double mean = 0.0) {
    host_tensor<T> t(s);
    for (std::int64_t i = 0; i < t.numel(); ++i)
        t.data()[i] = static_cast<T>(mean + sd * diffuse::philox_normal(seed, stream, static_cast<std::uint64_t>(i)));
    return t;
}

/// Fills every parameter of m with N(0, sd²) (norm weights get 1 + N(0, sd²) when their name ends in
/// "norm*.weight"), so no parameter is at a special value.
template <class T, class M>
void randomize(M& m, std::uint64_t seed, double sd = 0.5) {
    std::uint64_t stream = 100;
    for (auto& p : diffuse::nn::parameters_of<T>(m)) {
        const bool norm_weight = p.name.find("norm") != std::string::npos &&
                                 p.name.size() >= 6 && p.name.compare(p.name.size() - 6, 6, "weight") == 0;
        for (std::int64_t i = 0; i < p.param->numel(); ++i)
            p.param->value.data()[i] =
                static_cast<T>((norm_weight ? 1.0 : 0.0) +
                               sd * diffuse::philox_normal(seed, stream, static_cast<std::uint64_t>(i)));
        ++stream;
    }
}

template <class T>
double dot(const host_tensor<T>& a, const host_tensor<T>& b) {
    REQUIRE(a.shape() == b.shape());
    double s = 0;
    for (std::int64_t i = 0; i < a.numel(); ++i) s += static_cast<double>(a.data()[i]) * b.data()[i];
    return s;
}

inline std::span<double> span_of(host_tensor<double>& t) { return {t.data(), static_cast<std::size_t>(t.numel())}; }
inline std::span<const double> cspan_of(const host_tensor<double>& t) {
    return {t.data(), static_cast<std::size_t>(t.numel())};
}

/// Checks, for L(x, θ) = <w, forward(x)> with a random cotangent w:
///   the input gradient returned by backward, and every parameter gradient accumulated by it,
/// against central differences. `forward(x)` runs without a cache; `forward_backward(x, w)` runs
/// forward with a cache then backward(w) and returns dx. Parameter gradients are zeroed first.
template <class M>
void check_layer_gradients(const std::string& what, M& m, host_tensor<double>& x,
                           const std::function<host_tensor<double>(const host_tensor<double>&)>& forward,
                           const std::function<host_tensor<double>(const host_tensor<double>&,
                                                                   const host_tensor<double>&)>& forward_backward,
                           diffuse::testing::gradient_check_options opt = {}, bool check_input = true) {
    const host_tensor<double> y0 = forward(x);
    const host_tensor<double> w = randn<double>(y0.shape(), 977, 1);
    diffuse::nn::zero_grad<double>(m);
    const host_tensor<double> dx = forward_backward(x, w);
    auto loss = [&] { return dot(w, forward(x)); };
    if (check_input) {
        REQUIRE(dx.shape() == x.shape());
        auto r = diffuse::testing::gradient_check(what + " dx", span_of(x), cspan_of(dx), loss, opt);
        INFO(r.report());
        CHECK(r.passed);
    }
    for (auto& p : diffuse::nn::parameters_of<double>(m)) {
        auto r = diffuse::testing::gradient_check(what + " " + p.name, span_of(p.param->value),
                                                  cspan_of(p.param->grad), loss, opt);
        INFO(r.report());
        CHECK(r.passed);
    }
}

}  // namespace nn_test
