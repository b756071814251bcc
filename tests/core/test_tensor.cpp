// tensor, tensor_view, shape, memory spaces, errors.
#include <diffuse/core/config.hpp>
#include <diffuse/core/error.hpp>
#include <diffuse/core/memory_space.hpp>
#include <diffuse/core/shape.hpp>
#include <diffuse/core/tensor.hpp>

#include "support/check.hpp"

#include <doctest/doctest.h>

#include <type_traits>

using namespace diffuse;

TEST_CASE("shape: rank, numel, strides and printing") {
    const shape s{2, 3, 4, 5};
    CHECK(s.rank() == 4);
    CHECK(s.numel() == 120);
    CHECK(s.stride(0) == 60);
    CHECK(s.stride(3) == 1);
    CHECK(s.str() == "[2, 3, 4, 5]");
    CHECK(shape{}.numel() == 1);
    CHECK(shape{}.str() == "[]");
    CHECK(s.drop_front() == shape{3, 4, 5});
    CHECK(shape{2, 3} != shape{3, 2});
    CHECK(shape{1, 2, 3, 4, 5}.rank() == 5);
}

TEST_CASE("shape: rank above 5 and negative sizes are errors") {
    DIFFUSE_CHECK_ERROR((shape{1, 2, 3, 4, 5, 6}), "rank = 6", "at most 5");
    DIFFUSE_CHECK_ERROR((shape{2, -1}), "dimension = -1", ">= 0");
    DIFFUSE_CHECK_ERROR(shape{}.drop_front(), "rank = 0");
}

TEST_CASE("tensor: row-major layout and element access") {
    tensor<float, host_space> t(shape{2, 3, 4}, 0.0f);
    for (std::int64_t i = 0; i < t.numel(); ++i) t[i] = static_cast<float>(i);
    CHECK(t(1, 2, 3) == 23.0f);
    CHECK(t(0, 1, 0) == 4.0f);
    auto v = t.view();
    CHECK(v(1, 0, 1) == 13.0f);
    auto item = v.item(1);
    CHECK(item.shape() == shape{3, 4});
    CHECK(item(0, 0) == 12.0f);
    auto r = v.reshape(shape{6, 4});
    CHECK(r(5, 3) == 23.0f);
    DIFFUSE_CHECK_ERROR(v.reshape(shape{5, 5}), "reshape", "[2, 3, 4]", "[5, 5]");
    DIFFUSE_CHECK_ERROR(v.item(2), "index = 2", "[0, 2)");
    DIFFUSE_CHECK_ERROR(v(1, 2), "2 indices", "[2, 3, 4]");
}

TEST_CASE("tensor: copies are deep, moves steal, spaces are part of the type") {
    auto a = tensor<double, host_space>::from_values(shape{3}, {1, 2, 3});
    tensor<double, host_space> b = a;
    b[0] = 10;
    CHECK(a[0] == 1);
    tensor<double, host_space> c = std::move(b);
    CHECK(c[0] == 10);
    CHECK(b.data() == nullptr);
    auto h = a.to<host_space>();
    CHECK(h.to_vector() == std::vector<double>{1, 2, 3});
    static_assert(std::is_same_v<decltype(a)::space, host_space>);
    static_assert(std::is_convertible_v<tensor_view<float, host_space>, tensor_view<const float, host_space>>);
    static_assert(!std::is_convertible_v<tensor_view<const float, host_space>, tensor_view<float, host_space>>);
    DIFFUSE_CHECK_ERROR((tensor<double, host_space>::from_values(shape{2, 2}, {1, 2, 3})),
                        "values.size() = 3", "[2, 2]");
}

TEST_CASE("bool tensors convert from and to std::vector<bool>") {
    const std::vector<bool> v{true, false, false, true, true};
    const auto t = tensor<bool, host_space>::from_values(shape{5}, v);
    CHECK(t[3]);
    CHECK(!t[1]);
    CHECK(t.to_vector() == v);
}

TEST_CASE("copy between views checks shapes") {
    tensor<float, host_space> a(shape{2, 2}, 1.0f), b(shape{4}, 2.0f), c(shape{2, 2}, 3.0f);
    copy<float, host_space, host_space>(a.view(), c.cview());
    CHECK(a[3] == 3.0f);
    DIFFUSE_CHECK_ERROR((copy<float, host_space, host_space>(a.view(), b.cview())), "dst has shape [2, 2]",
                        "src has shape [4]");
}

TEST_CASE("device tensors without CUDA give a clear error, not a crash") {
    if constexpr (!has_cuda) {
        DIFFUSE_CHECK_ERROR((tensor<float, device_space>(shape{4})), "device tensors need",
                            "nvcc");
    }
    CHECK((std::is_same_v<default_space, host_space> || has_cuda));
}

TEST_CASE("error messages name the argument, the value and the allowed range") {
    DIFFUSE_CHECK_ERROR(require_open(1.5, 0.0, 1.0, "beta"), "diffuse::error: beta = 1.5",
                        "open interval (0, 1)");
    DIFFUSE_CHECK_ERROR(require_positive(-2.0, "sigma"), "sigma = -2", "> 0");
    DIFFUSE_CHECK_ERROR(require_nonnegative(std::nan(""), "eta"), "eta = nan");
    DIFFUSE_CHECK_ERROR(require_finite(INFINITY, "scale"), "scale = inf", "finite");
    DIFFUSE_CHECK_ERROR(fail_argument("spacing", "lead", "one of leading, trailing, linspace"),
                        "spacing = \"lead\"", "leading");
}

TEST_CASE("the compiled host backend is reported") {
    const std::string name = host_backend_name;
    CHECK((name == "serial" || name == "openmp"));
#if defined(DIFFUSE_BACKEND_OPENMP)
    CHECK(name == "openmp");
#elif defined(DIFFUSE_BACKEND_SERIAL)
    CHECK(name == "serial");
#endif
}
