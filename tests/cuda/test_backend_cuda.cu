// The backend test bodies of tests/backend/backend_cases.hpp, run on device tensors; the
// serial host loop is the oracle (DESIGN.md, Testing policy).
#include <diffuse/backend/backend.hpp>

#include "backend/backend_cases.hpp"

#include <doctest/doctest.h>

using namespace diffuse;

TEST_CASE_TEMPLATE("device lincomb equals the sum of scaled inputs", T, float, double) {
    for (std::int64_t n : {1, 7, 1000, 100003}) test::check_lincomb<T, device_space>(n);
}

TEST_CASE_TEMPLATE("device lincomb may write into one of its inputs", T, float, double) {
    test::check_lincomb_in_place<T, device_space>();
}

TEST_CASE_TEMPLATE("device reductions match long-double loops", T, float, double) {
    for (std::int64_t n : {0, 1, 4095, 4096, 4097, 300001}) test::check_reductions<T, device_space>(n);
}

TEST_CASE_TEMPLATE("device quantile of |x| per batch item", T, float, double) {
    test::check_quantile<T, device_space>(3, 1, 0.995);
    test::check_quantile<T, device_space>(4, 768, 0.995);
    test::check_quantile<T, device_space>(2, 1001, 0.5);
}

TEST_CASE_TEMPLATE("device randn equals the host Philox draws", T, float, double) {
    // float: bitwise (the double draw rounded); double: within 8 ulp (device log/sin/cos).
    for (std::int64_t n : {1, 2, 3, 1001, 70001}) test::check_randn<T, device_space>(n, std::is_same_v<T, float>);
}

TEST_CASE("device tensors round-trip through the host") {
    auto h = tensor<float, host_space>::from_values(shape{2, 3}, {1, 2, 3, 4, 5, 6});
    auto d = h.to<device_space>();
    auto d2 = d;  // device-to-device copy
    CHECK(d2.to_vector() == h.to_vector());
}
