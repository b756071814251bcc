// Adam / AdamW (nn/optim/adam.hpp) against closed forms. Included through the nn/ umbrella, which
// this file thereby checks as users include it.

#include <diffuse/nn/nn.hpp>
#include <diffuse/nn/optim/adam.hpp>

#include <doctest/doctest.h>

#include <cmath>

using namespace diffuse;
using namespace diffuse::nn;

TEST_CASE("adam: a constant gradient moves every parameter by lr·g/(|g| + eps) per step") {
    // m/(1 − β₁ᵗ) = g and v/(1 − β₂ᵗ) = g² exactly for constant g (geometric sums), so each step is
    // lr·g/(|g| + eps); 1e-12 allows the rounding of the bias corrections over 50 steps.
    linear<double> lin(3, 2);
    for (std::int64_t i = 0; i < lin.weight.numel(); ++i) lin.weight.value.data()[i] = 0.1 * static_cast<double>(i);
    adam<double> opt(parameters_of<double>(lin), adam_options{0.01, 0.9, 0.999, 1e-8});
    const double g0 = 0.37;
    host_tensor<double> w0 = lin.weight.value;
    for (int t = 1; t <= 50; ++t) {
        opt.zero_grad();
        for (std::int64_t i = 0; i < lin.weight.numel(); ++i) lin.weight.grad.data()[i] = (i % 2 ? -g0 : g0);
        for (std::int64_t i = 0; i < lin.bias.numel(); ++i) lin.bias.grad.data()[i] = 2 * g0;
        opt.step();
        for (std::int64_t i = 0; i < lin.weight.numel(); ++i) {
            const double g = i % 2 ? -g0 : g0;
            const double expect = w0.data()[i] - t * 0.01 * g / (std::abs(g) + 1e-8);
            CHECK(std::abs(lin.weight.value.data()[i] - expect) <= 1e-12);
        }
    }
    CHECK(opt.steps() == 50);
}

TEST_CASE("adamw: decoupled decay multiplies by (1 − lr·λ) first; adam adds λ·θ to the gradient") {
    linear<double> a(1, 1, false), b(1, 1, false);
    a.weight.value.data()[0] = 2.0;
    b.weight.value.data()[0] = 2.0;
    adam<double> wopt(parameters_of<double>(a), adam_options{0.1, 0.9, 0.999, 1e-8, 0.5, true});
    adam<double> lopt(parameters_of<double>(b), adam_options{0.1, 0.9, 0.999, 1e-8, 0.5, false});
    a.weight.grad.data()[0] = 0.0;  // pure decay
    b.weight.grad.data()[0] = 0.0;
    wopt.step();
    lopt.step();
    // AdamW: θ = 2·(1 − 0.05) = 1.9 (zero gradient: no Adam move beyond eps effects)
    CHECK(std::abs(a.weight.value.data()[0] - 1.9) <= 1e-12);
    // Adam + L2: g = λθ = 1 (constant first step): θ = 2 − 0.1·1/(1 + 1e-8)
    CHECK(std::abs(b.weight.value.data()[0] - (2 - 0.1 / (1 + 1e-8))) <= 1e-12);
    CHECK_THROWS_WITH_AS(adam<double>(parameters_of<double>(a), adam_options{-1.0}),
                         doctest::Contains("adam lr = -1"), diffuse::error);
    CHECK_THROWS_WITH_AS(adam<double>(parameters_of<double>(a), adam_options{0.1, 1.0}),
                         doctest::Contains("adam beta1 = 1"), diffuse::error);
}
