// A tiny program that uses diffuse the way a downstream project would; built three ways by
// tests/consumers/run_consumer.cmake. Prints "consumer ok" when the results are right.
#include <diffuse/backend/backend.hpp>
#include <diffuse/core/tensor.hpp>
#include <diffuse/version.hpp>

#include <cmath>
#include <cstdio>

int main() {
    using namespace diffuse;
    philox_rng rng(1);
    tensor<double, host_space> x(shape{4, 8}), eps(shape{4, 8});
    randn(x, rng);
    randn(eps, rng);
    // x_t = a·x0 + s·eps with a² + s² = 1
    const double a = 0.6, s = 0.8;
    tensor<double, host_space> xt(shape{4, 8});
    lincomb(xt, a, x, s, eps);
    const double expected = a * sum(x) + s * sum(eps);
    const bool ok = std::abs(sum(xt) - expected) < 1e-12 * (1 + std::abs(expected));
    std::printf("diffuse %s, host backend %s: %s\n", version_string, host_backend_name,
                ok ? "consumer ok" : "consumer WRONG");
    return ok ? 0 : 1;
}
