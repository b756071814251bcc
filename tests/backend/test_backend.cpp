// Host backend primitives (serial build and OpenMP build; the serial twin compiles this file
// without OpenMP). Bodies shared with the CUDA tests live in backend_cases.hpp.
#include <diffuse/backend/backend.hpp>
#include <diffuse/backend/for_each.hpp>
#include <diffuse/backend/host_threads.hpp>
#include <diffuse/backend/lincomb.hpp>
#include <diffuse/backend/randn.hpp>
#include <diffuse/backend/reduce.hpp>

#include "backend/backend_cases.hpp"

#include <doctest/doctest.h>

#include <limits>

using namespace diffuse;
using diffuse::test::eps;

TEST_CASE_TEMPLATE("lincomb equals the sum of scaled inputs, 1 to 4 terms", T, float, double) {
    // sizes below and above the OpenMP threshold, and odd sizes
    for (std::int64_t n : {1, 7, 1000, 100003}) test::check_lincomb<T, host_space>(n);
}

TEST_CASE_TEMPLATE("lincomb may write into one of its inputs", T, float, double) {
    test::check_lincomb_in_place<T, host_space>();
}

TEST_CASE("lincomb rejects shape mismatch and non-finite coefficients") {
    tensor<double, host_space> out(shape{2, 3}, 0.0), x(shape{3, 2}, 1.0), y(shape{2, 3}, 1.0);
    DIFFUSE_CHECK_ERROR(lincomb(out, 1.0, x), "shape mismatch", "out has shape [2, 3]",
                        "x0 has shape [3, 2]");
    DIFFUSE_CHECK_ERROR(lincomb(out, 1.0, y, 2.0, x), "x1 has shape [3, 2]");
    DIFFUSE_CHECK_ERROR(lincomb(out, std::numeric_limits<double>::quiet_NaN(), y), "c0", "finite");
    DIFFUSE_CHECK_ERROR(lincomb(out, 1.0, y, INFINITY, y), "c1 = inf", "finite");
}

TEST_CASE_TEMPLATE("sum, sum_squares and max_abs match long-double loops", T, float, double) {
    for (std::int64_t n : {0, 1, 4095, 4096, 4097, 300001}) test::check_reductions<T, host_space>(n);
}

TEST_CASE("max_abs propagates NaN instead of ignoring it") {
    tensor<double, host_space> x(shape{10000}, 1.0);
    x[7777] = std::numeric_limits<double>::quiet_NaN();
    CHECK(std::isnan(max_abs(x)));
}

TEST_CASE("sum of a constant is exact and independent of chunking") {
    tensor<double, host_space> x(shape{123457}, 0.25);
    CHECK(sum(x) == 0.25 * 123457);
}

TEST_CASE_TEMPLATE("quantile of |x| per batch item uses torch.quantile's linear rule", T, float, double) {
    test::check_quantile<T, host_space>(3, 1, 0.995);
    test::check_quantile<T, host_space>(4, 768, 0.995);
    test::check_quantile<T, host_space>(2, 1001, 0.5);
    test::check_quantile<T, host_space>(2, 10, 0.0);
    test::check_quantile<T, host_space>(2, 10, 1.0);
}

TEST_CASE("quantile on a known sequence, torch.quantile of 1..5") {
    // torch.quantile(tensor([1.,2.,3.,4.,5.]), q): rank = 4q; q = 0.3 -> 1 + 0.2·1 = 2.2;
    // q = 0.995 -> rank 3.98 -> 4 + 0.98 = 4.98. Values are |x| so signs do not matter.
    auto x = tensor<double, host_space>::from_values(shape{1, 5}, {-5, 2, -1, 4, 3});
    DIFFUSE_CHECK_CLOSE(quantile_abs_per_batch(x, 0.3)[0], 2.2, 0.0, 4 * eps<double>);
    DIFFUSE_CHECK_CLOSE(quantile_abs_per_batch(x, 0.995)[0], 4.98, 0.0, 4 * eps<double>);
    CHECK(quantile_abs_per_batch(x, 0.0)[0] == 1.0);
    CHECK(quantile_abs_per_batch(x, 1.0)[0] == 5.0);
}

TEST_CASE("quantile rejects bad arguments") {
    tensor<double, host_space> x(shape{2, 4}, 1.0);
    DIFFUSE_CHECK_ERROR(quantile_abs_per_batch(x, 1.5), "q = 1.5", "[0, 1]");
    DIFFUSE_CHECK_ERROR(quantile_abs_per_batch(x, -0.1), "q = -0.1");
    tensor<double, host_space> scalar(shape{}, 1.0);
    DIFFUSE_CHECK_ERROR(quantile_abs_per_batch(scalar, 0.5), "x.rank()", "at least 1");
    tensor<double, host_space> empty(shape{3, 0});
    DIFFUSE_CHECK_ERROR(quantile_abs_per_batch(empty, 0.5), "at least one element per batch item");
}

TEST_CASE_TEMPLATE("randn is philox_normal element by element, bitwise", T, float, double) {
    for (std::int64_t n : {1, 2, 3, 1001, 70001}) test::check_randn<T, host_space>(n, true);
}

TEST_CASE("randn: one fill equals several consecutive fills") {
    philox_rng a(42), b(42);
    tensor<float, host_space> whole(shape{1000});
    randn(whole, a);
    std::vector<float> parts;
    for (std::int64_t n : {1, 2, 333, 664}) {
        tensor<float, host_space> part(shape{n});
        randn(part, b);
        for (std::int64_t i = 0; i < n; ++i) parts.push_back(part[i]);
    }
    REQUIRE(parts.size() == 1000);
    for (std::size_t i = 0; i < parts.size(); ++i) CHECK(parts[i] == whole[static_cast<std::int64_t>(i)]);
}

TEST_CASE("OpenMP with 1 and 2 threads gives bitwise the serial results") {
    // In a serial build the thread count is fixed at 1 and this checks the serial loop
    // against itself; the OpenMP build compares threads, and the serial twin executable
    // (test_backend_serial) runs the same bodies without OpenMP.
    const std::int64_t n = 200003;
    const auto x = test::pattern<double>(shape{n}, 0.3), y = test::pattern<double>(shape{n}, 0.8);
    std::vector<double> sums, lin, noise;
    for (int threads : {1, 2}) {
        scoped_host_threads guard(threads);
        sums.push_back(sum(x));
        tensor<double, host_space> out(shape{n});
        lincomb(out, 0.3, x, 0.7, y);
        lin.push_back(out[n - 1] + out[n / 2]);
        philox_rng rng(99);
        randn(out, rng);
        // the serial oracle: a plain loop over philox_normal
        for (std::int64_t i = 0; i < n; i += 997) CHECK(out[i] == philox_normal(99, 0, static_cast<std::uint64_t>(i)));
        noise.push_back(sum(out));
    }
    CHECK(sums[0] == sums[1]);
    CHECK(lin[0] == lin[1]);
    CHECK(noise[0] == noise[1]);
}

TEST_CASE("for_each visits every index exactly once") {
    const std::int64_t n = 100000;
    std::vector<int> hits(static_cast<std::size_t>(n), 0);
    struct op {
        int* h;
        void operator()(std::int64_t i) const { h[i] += 1; }
    };
    for_each<host_space>(n, op{hits.data()});
    int wrong = 0;
    for (int h : hits) wrong += (h != 1);
    CHECK(wrong == 0);
}

TEST_CASE("host thread control validates its argument") {
    DIFFUSE_CHECK_ERROR(set_host_thread_count(0), "n = 0", ">= 1");
    CHECK(host_thread_count() >= 1);
}
