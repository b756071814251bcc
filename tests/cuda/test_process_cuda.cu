// process/ on device tensors: the forward process, the conversions and the posterior mean run
// through the backend primitives, so they must give the host's results (serial oracle) on the
// device up to the rounding of fused multiply-adds.
#include <diffuse/process/forward.hpp>
#include <diffuse/process/losses.hpp>
#include <diffuse/process/parametrization.hpp>
#include <diffuse/process/posterior.hpp>

#include "backend/backend_cases.hpp"
#include "cuda/device_check.hpp"

#include <doctest/doctest.h>

using namespace diffuse;

TEST_CASE_TEMPLATE("device q_sample, convert and posterior mean equal the host", T, float, double) {
    const shape s{4, 3, 8, 8};
    const auto hx0 = test::pattern<T>(s, 0.3);
    const auto dx0 = hx0.template to<device_space>();
    philox_rng hr(17), dr(17);
    tensor<T, host_space> hxt(s);
    tensor<T, device_space> dxt(s);
    process::q_sample(hxt, hx0, 0.6, 0.8, hr);  // same seed: the same noise on both sides
    process::q_sample(dxt, dx0, 0.6, 0.8, dr);
    const double tol = 16 * test::eps<T>;
    test::check_same_on_device(dxt, hxt, tol);

    tensor<T, host_space> heps(s);
    tensor<T, device_space> deps(s);
    process::convert(heps, process::prediction_type::sample, hx0, process::prediction_type::epsilon, hxt, 0.6, 0.8);
    process::convert(deps, process::prediction_type::sample, dx0, process::prediction_type::epsilon, dxt, 0.6, 0.8);
    test::check_same_on_device(deps, heps, 64 * test::eps<T>);
}

TEST_CASE_TEMPLATE("device KL and decoder log-likelihood equal the host", T, float, double) {
    // Element-wise functors computing in double: device exp/log/erfc differ from the host's libm
    // by a few ulps of double, far below T's rounding.
    const shape s{2, 3, 4, 4};
    const auto hm1 = test::pattern<T>(s, 0.1), hm2 = test::pattern<T>(s, 0.5), hlv = test::pattern<T>(s, 0.9);
    const auto dm1 = hm1.template to<device_space>(), dm2 = hm2.template to<device_space>(),
               dlv = hlv.template to<device_space>();
    tensor<T, host_space> hk(s), hll(s);
    tensor<T, device_space> dk(s), dll(s);
    process::normal_kl(hk, hm1, hlv, hm2, -0.5);
    process::normal_kl(dk, dm1, dlv, dm2, -0.5);
    test::check_same_on_device(dk, hk, 8 * test::eps<T>);
    for (auto cdf : {process::normal_cdf::exact, process::normal_cdf::tanh_approx}) {
        process::discretized_gaussian_log_likelihood(hll, hm1, hm2, -2.0, cdf);
        process::discretized_gaussian_log_likelihood(dll, dm1, dm2, -2.0, cdf);
        test::check_same_on_device(dll, hll, 8 * test::eps<T>);
    }
}
