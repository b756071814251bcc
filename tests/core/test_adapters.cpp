// Host adapters: xtensor (copy in, copy out, non-owning view) and Eigen maps.
#include <diffuse/core/eigen_adapter.hpp>
#include <diffuse/core/tensor.hpp>
#include <diffuse/core/xtensor_adapter.hpp>

#include "support/check.hpp"

#include <doctest/doctest.h>

#include <xtensor/xbuilder.hpp>
#include <xtensor/xmath.hpp>
#include <xtensor/xtensor.hpp>
#include <xtensor/xview.hpp>

#include <cmath>
#include <cstdint>
#include <numeric>
#include <vector>

using namespace diffuse;

namespace {

tensor<double, host_space> iota_tensor(shape s, double start = 0.0) {
    std::vector<double> v(static_cast<std::size_t>(s.numel()));
    std::iota(v.begin(), v.end(), start);
    return tensor<double, host_space>::from_values(s, v);
}

}  // namespace

TEST_CASE("xtensor adapter: to_xarray copies shape and row-major values") {
    const auto t = iota_tensor({2, 3, 4});
    const xt::xarray<double> a = to_xarray(t);
    REQUIRE(a.dimension() == 3);
    CHECK(a.shape()[0] == 2);
    CHECK(a.shape()[1] == 3);
    CHECK(a.shape()[2] == 4);
    for (std::int64_t i = 0; i < 2; ++i)
        for (std::int64_t j = 0; j < 3; ++j)
            for (std::int64_t k = 0; k < 4; ++k) CHECK(a(i, j, k) == t(i, j, k));

    // a copy: changing the xarray leaves the tensor alone
    xt::xarray<double> b = to_xarray(t.cview());
    b(0, 0, 0) = 100.0;
    CHECK(t(0, 0, 0) == 0.0);

    // rank 0
    const tensor<float, host_space> s = tensor<float, host_space>::from_values(shape{}, {2.5f});
    const xt::xarray<float> sa = to_xarray(s);
    CHECK(sa.dimension() == 0);
    CHECK(sa() == 2.5f);
}

TEST_CASE("xtensor adapter: from_xarray copies expressions of any layout, rank <= 5") {
    xt::xarray<float> a = {{1.f, 2.f, 3.f}, {4.f, 5.f, 6.f}};
    const auto t = from_xarray(a);
    static_assert(std::is_same_v<std::decay_t<decltype(t)>, tensor<float, host_space>>);
    CHECK(t.shape() == shape{2, 3});
    CHECK(t.to_vector() == std::vector<float>{1, 2, 3, 4, 5, 6});

    // a column-major array is reordered to row-major
    xt::xarray<int, xt::layout_type::column_major> cm = {{1, 2, 3}, {4, 5, 6}};
    const auto tc = from_xarray(cm);
    CHECK(tc.to_vector() == std::vector<int>{1, 2, 3, 4, 5, 6});

    // lazy expressions and views are evaluated
    const auto tl = from_xarray(2.0 * xt::arange<double>(5.0));
    CHECK(tl.shape() == shape{5});
    CHECK(tl.to_vector() == std::vector<double>{0, 2, 4, 6, 8});
    const auto tv = from_xarray(xt::view(a, 1, xt::all()));
    CHECK(tv.to_vector() == std::vector<float>{4, 5, 6});

    // fixed-rank xtensor, rank 5, and rank 0
    xt::xtensor<std::int64_t, 5> r5 = xt::zeros<std::int64_t>({1, 2, 1, 2, 3});
    r5(0, 1, 0, 1, 2) = 7;
    const auto t5 = from_xarray(r5);
    CHECK(t5.shape() == shape{1, 2, 1, 2, 3});
    CHECK(t5(0, 1, 0, 1, 2) == 7);
    xt::xarray<double> r0 = xt::xarray<double>::from_shape({});
    r0() = 4.0;
    CHECK(from_xarray(r0).shape() == shape{});
    CHECK(from_xarray(r0)[0] == 4.0);

    // round trip
    const auto orig = iota_tensor({2, 1, 3, 2});
    CHECK(from_xarray(to_xarray(orig)).to_vector() == orig.to_vector());
}

TEST_CASE("xtensor adapter: from_xarray refuses rank 6") {
    const xt::xarray<double> r6 = xt::zeros<double>({1, 2, 1, 1, 1, 3});
    DIFFUSE_CHECK_ERROR(from_xarray(r6), "from_xarray", "[1, 2, 1, 1, 1, 3]", "rank 6", "at most 5");
}

TEST_CASE("xtensor adapter: as_xtensor_view is non-owning and writes through") {
    auto t = iota_tensor({2, 3});
    auto v = as_xtensor_view(t);
    REQUIRE(v.dimension() == 2);
    CHECK(v.shape()[0] == 2);
    CHECK(v.shape()[1] == 3);
    CHECK(v.data() == t.data());  // no copy
    CHECK(v(1, 2) == 5.0);
    v(1, 2) = -1.0;
    CHECK(t(1, 2) == -1.0);
    v += 10.0;  // whole-array xtensor expression writes through
    CHECK(t(0, 0) == 10.0);
    CHECK(t(1, 2) == 9.0);
    xt::view(v, 0, xt::all()) = xt::xarray<double>({7.0, 8.0, 9.0});
    CHECK(t.to_vector() == std::vector<double>{7, 8, 9, 13, 14, 9});

    // const: read-only, still no copy, reductions work
    const auto& ct = t;
    auto cv = as_xtensor_view(ct);
    CHECK(cv.data() == t.data());
    CHECK(xt::sum(cv)() == 60.0);

    // through a tensor_view of a sub-item
    auto sub = as_xtensor_view(t.view().item(1));
    sub(0) = 0.5;
    CHECK(t(1, 0) == 0.5);
}

TEST_CASE("eigen adapter: as_eigen_vector over all elements, writes through") {
    auto t = iota_tensor({2, 2, 3});
    auto v = as_eigen_vector(t);
    CHECK(v.size() == 12);
    CHECK(v.data() == t.data());
    CHECK(v(7) == 7.0);
    v *= 2.0;
    CHECK(t(1, 1, 2) == 22.0);
    const auto& ct = t;
    auto cv = as_eigen_vector(ct);
    static_assert(std::is_same_v<decltype(cv), eigen_vector_map<const double>>);
    CHECK(cv.sum() == 132.0);
    tensor_view<const double, host_space> cview = t.cview();
    CHECK(as_eigen_vector(cview).maxCoeff() == 22.0);
}

TEST_CASE("eigen adapter: as_eigen_matrix is RowMajor with rows = size(0)") {
    auto t = iota_tensor({2, 3});
    auto m = as_eigen_matrix(t);
    CHECK(m.rows() == 2);
    CHECK(m.cols() == 3);
    for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 3; ++j) CHECK(m(i, j) == t(i, j));
    m(1, 0) = 42.0;
    CHECK(t(1, 0) == 42.0);
    m.row(0).setConstant(-1.0);
    CHECK(t.to_vector() == std::vector<double>{-1, -1, -1, 42, 4, 5});

    // explicit rows/cols for any rank: [2, 2, 3] as 4×3
    auto t3 = iota_tensor({2, 2, 3});
    auto m3 = as_eigen_matrix(t3, 4, 3);
    CHECK(m3(3, 1) == t3(1, 1, 1));
    m3(2, 2) = 0.25;
    CHECK(t3(1, 0, 2) == 0.25);
    const auto& ct3 = t3;
    auto cm3 = as_eigen_matrix(ct3, 6, 2);
    static_assert(std::is_same_v<decltype(cm3), eigen_matrix_map<const double>>);
    CHECK(cm3(5, 1) == 11.0);
}

TEST_CASE("eigen adapter: GEMM through the maps matches a hand loop") {
    const std::int64_t M = 5, K = 7, N = 4;
    tensor<double, host_space> a({M, K}), b({K, N}), c({M, N}, 0.0);
    for (std::int64_t i = 0; i < a.numel(); ++i) a[i] = std::sin(0.3 * double(i)) + 0.1 * double(i % 3);
    for (std::int64_t i = 0; i < b.numel(); ++i) b[i] = std::cos(0.7 * double(i)) - 0.05 * double(i);
    as_eigen_matrix(c).noalias() = as_eigen_matrix(a.cview()) * as_eigen_matrix(b.cview());
    for (std::int64_t i = 0; i < M; ++i)
        for (std::int64_t j = 0; j < N; ++j) {
            double ref = 0.0;
            for (std::int64_t k = 0; k < K; ++k) ref += a(i, k) * b(k, j);
            DIFFUSE_CHECK_CLOSE(c(i, j), ref, 1e-14, 16 * test::eps<double>);
        }

    // float, and a matrix-vector product into a vector map
    tensor<float, host_space> af({3, 2}), x({2}), y({3});
    for (std::int64_t i = 0; i < 6; ++i) af[i] = float(i + 1);
    x[0] = 0.5f;
    x[1] = -2.0f;
    as_eigen_vector(y.view()) = as_eigen_matrix(af.cview()) * as_eigen_vector(x.cview());
    CHECK(y.to_vector() == std::vector<float>{1 * 0.5f - 2 * 2.0f, 3 * 0.5f - 4 * 2.0f, 5 * 0.5f - 6 * 2.0f});
}

TEST_CASE("eigen adapter: rank and size mismatches are errors") {
    auto t = iota_tensor({2, 3, 4});
    DIFFUSE_CHECK_ERROR(as_eigen_matrix(t), "as_eigen_matrix", "[2, 3, 4]", "rank 3", "expected rank 2");
    auto v = iota_tensor({5});
    DIFFUSE_CHECK_ERROR(as_eigen_matrix(v.view()), "rank 1");
    DIFFUSE_CHECK_ERROR(as_eigen_matrix(t, 5, 5), "rows·cols = 5·5 = 25", "[2, 3, 4]", "24 elements");
    DIFFUSE_CHECK_ERROR(as_eigen_matrix(t, -2, -12), "rows = -2");
    // empty tensors map to empty matrices
    tensor<double, host_space> e({0, 3});
    CHECK(as_eigen_matrix(e).rows() == 0);
    CHECK(as_eigen_matrix(e).cols() == 3);
    CHECK(as_eigen_vector(e).size() == 0);
}
