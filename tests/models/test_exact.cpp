// models/exact.hpp: the exact Gaussian and Gaussian-mixture denoisers equal analytic/'s
// E[x0|x_t], E[eps|x_t], score and v (closed_forms B1–B4; docs/denoisers.md §5).
#include <diffuse/models/exact.hpp>

#include <diffuse/analytic/gaussian.hpp>
#include <diffuse/analytic/gaussian_mixture.hpp>
#include <diffuse/core/eigen_adapter.hpp>
#include <diffuse/core/tensor.hpp>
#include <diffuse/backend/host_threads.hpp>
#include <diffuse/backend/randn.hpp>

#include "models/fixtures.hpp"
#include "support/check.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <vector>

using namespace diffuse;
using namespace diffuse::models;
using diffuse::test::eps;
using pt = prediction_type;

namespace {

using diffuse::test::batch;
using diffuse::test::test_gaussian;

analytic::gaussian_mixture test_mixture() {
    std::vector<Eigen::VectorXd> m(3, Eigen::VectorXd(3));
    m[0] << 1.0, 0.0, -1.0;
    m[1] << -2.0, 1.0, 0.5;
    m[2] << 0.0, -1.5, 2.0;
    std::vector<Eigen::MatrixXd> c = {0.3 * Eigen::MatrixXd::Identity(3, 3), 0.5 * Eigen::MatrixXd::Identity(3, 3),
                                      Eigen::MatrixXd(Eigen::Vector3d(0.2, 0.6, 0.4).asDiagonal())};
    return analytic::gaussian_mixture({0.3, 0.5, 0.2}, m, c, {0, 1, 1});
}

/// The reference prediction of an analytic model, in double, on the T-rounded input.
template <class Model, class T>
Eigen::MatrixXd reference(const Model& model, pt type, const tensor<T, host_space>& x, double a, double s) {
    const Eigen::MatrixXd xd = as_eigen_matrix(x.cview(), x.size(0), 3).template cast<double>();
    switch (type) {
        case pt::sample: return model.x0_mean(xd, a, s);
        case pt::epsilon: return model.eps_mean(xd, a, s);
        case pt::score: return model.score(xd, a, s);
        case pt::v_prediction: {
            const double r = std::hypot(a, s);
            return Eigen::MatrixXd((a / r) * model.eps_mean(xd, a, s) - (s / r) * model.x0_mean(xd, a, s));
        }
    }
    return {};
}

/// Every element of out within 1e-12 (double: the same double computation, so ~1 ulp) or one
/// rounding to T (float: 0.5·eps_f relative) of the reference.
template <class T>
void check_rows(const tensor<T, host_space>& out, const Eigen::MatrixXd& ref) {
    REQUIRE(out.size(0) == ref.rows());
    const double rtol = std::is_same_v<T, float> ? 0.5 * eps<float> : 1e-12;
    const double atol = std::is_same_v<T, float> ? 1e-37 : 1e-12;
    for (Eigen::Index i = 0; i < ref.rows(); ++i)
        for (Eigen::Index j = 0; j < ref.cols(); ++j) DIFFUSE_CHECK_CLOSE(out(i, j), ref(i, j), atol, rtol);
}

const std::vector<noise_condition> levels = {noise_condition::vp(0.7), noise_condition::vp(0.02),
                                             noise_condition::ve(3.0), noise_condition{0.0, 1.0},
                                             noise_condition{1.0, 0.0}, noise_condition{0.6, 0.5, 17.0}};

}  // namespace

static_assert(denoiser<exact_gaussian_denoiser, float, host_space>);
static_assert(denoiser<exact_gaussian_denoiser, double, host_space>);
static_assert(denoiser<exact_gaussian_denoiser, double, device_space>);  // compiles; throws at run time
static_assert(!denoiser<exact_gaussian_denoiser, double, host_space, class_labels>);
static_assert(denoiser<exact_mixture_denoiser, float, host_space>);
static_assert(denoiser<exact_mixture_denoiser, double, host_space, class_labels>);
static_assert(denoiser<exact_mixture_denoiser, float, host_space, std::vector<int>>);

TEST_CASE_TEMPLATE("exact_gaussian_denoiser equals analytic gaussian for every prediction type", T, float, double) {
    const analytic::gaussian g = test_gaussian();
    const tensor<T, host_space> x = batch<T>(5);
    for (pt type : process::all_prediction_types) {
        const exact_gaussian_denoiser model(g, type);
        CHECK(model.prediction() == type);
        for (const noise_condition& level : levels) {
            CAPTURE(process::to_string(type));
            CAPTURE(level.a);
            CAPTURE(level.s);
            tensor<T, host_space> out(x.shape());
            model(out.view(), x.cview(), level, no_condition{});
            check_rows(out, reference(g, type, x, level.a, level.s));
        }
    }
}

TEST_CASE("exact_gaussian_denoiser defaults to epsilon and accepts B-by-anything inputs whose trailing size is d") {
    const exact_gaussian_denoiser model(test_gaussian());
    CHECK(model.prediction() == pt::epsilon);
    const tensor<double, host_space> x = batch<double>(4);
    tensor<double, host_space> flat(x.shape());
    model(flat.view(), x.cview(), noise_condition::vp(0.4));
    const tensor_view<const double, host_space> x4(x.data(), shape{4, 1, 3, 1});
    tensor<double, host_space> out4(shape{4, 1, 3, 1});
    model(out4.view(), x4, noise_condition::vp(0.4));
    for (std::int64_t i = 0; i < x.numel(); ++i) CHECK(out4[i] == flat[i]);
}

TEST_CASE_TEMPLATE("exact_mixture_denoiser unconditional equals analytic mixture", T, float, double) {
    const analytic::gaussian_mixture mix = test_mixture();
    const tensor<T, host_space> x = batch<T>(6);
    for (pt type : process::all_prediction_types) {
        const exact_mixture_denoiser model(mix, type);
        for (const noise_condition& level : levels) {
            CAPTURE(process::to_string(type));
            CAPTURE(level.a);
            tensor<T, host_space> out(x.shape());
            model(out.view(), x.cview(), level, no_condition{});
            check_rows(out, reference(mix, type, x, level.a, level.s));
        }
    }
}

TEST_CASE("exact_mixture_denoiser on many rows is blocked identically for every thread count") {
    // 3 blocks of detail::exact_row_block rows (the last partial): the parallel path. Each row's
    // value depends on that row only and the blocks are fixed, so 1 and 2 threads agree bitwise
    // and both equal the analytic model evaluated on all rows at once (to its own rounding).
    const analytic::gaussian_mixture mix = test_mixture();
    const std::int64_t n = 2 * models::detail::exact_row_block + 123;
    tensor<double, host_space> x(shape{n, 3});
    philox_rng rng(17);
    randn(x, rng);
    const exact_mixture_denoiser model(mix, pt::sample);
    tensor<double, host_space> one(x.shape()), two(x.shape());
    {
        scoped_host_threads t(1);
        model(one.view(), x.cview(), noise_condition::vp(0.3), no_condition{});
    }
    {
        scoped_host_threads t(2);
        model(two.view(), x.cview(), noise_condition::vp(0.3), no_condition{});
    }
    for (std::int64_t k = 0; k < one.numel(); ++k) REQUIRE(one.cview()[k] == two.cview()[k]);
    check_rows(one, reference(mix, pt::sample, x, std::sqrt(0.3), std::sqrt(0.7)));
}

TEST_CASE_TEMPLATE("exact_mixture_denoiser with labels equals the conditional mixture row by row", T, float, double) {
    const analytic::gaussian_mixture mix = test_mixture();
    const tensor<T, host_space> x = batch<T>(5);
    const std::vector<int> labels = {1, 0, 2, 1, 0};  // 2 = the null label: the whole mixture
    for (pt type : {pt::sample, pt::epsilon, pt::score, pt::v_prediction}) {
        const exact_mixture_denoiser model(mix, type);
        CHECK(model.n_classes() == 2);
        CHECK(model.null_class_label() == 2);
        for (const noise_condition& level : levels) {
            CAPTURE(process::to_string(type));
            CAPTURE(level.a);
            tensor<T, host_space> out(x.shape());
            model(out.view(), x.cview(), level, class_labels(labels));
            const Eigen::MatrixXd ref0 = reference(mix.conditional(0), type, x, level.a, level.s);
            const Eigen::MatrixXd ref1 = reference(mix.conditional(1), type, x, level.a, level.s);
            const Eigen::MatrixXd refu = reference(mix, type, x, level.a, level.s);
            Eigen::MatrixXd ref(5, 3);
            for (int b = 0; b < 5; ++b) {
                const int y = labels[static_cast<std::size_t>(b)];
                ref.row(b) = y == 0 ? ref0.row(b) : y == 1 ? ref1.row(b) : refu.row(b);
            }
            check_rows(out, ref);
        }
    }
    SUBCASE("a vector of labels converts to class_labels") {
        const exact_mixture_denoiser model(mix, pt::sample);
        tensor<T, host_space> a(x.shape()), b(x.shape());
        model(a.view(), x.cview(), noise_condition::vp(0.5), labels);
        model(b.view(), x.cview(), noise_condition::vp(0.5), class_labels(labels));
        for (std::int64_t i = 0; i < a.numel(); ++i) CHECK(a[i] == b[i]);
    }
}

TEST_CASE("exact denoisers: errors name argument, value and allowed range") {
    const exact_gaussian_denoiser g(test_gaussian(), pt::sample);
    const exact_mixture_denoiser m(test_mixture(), pt::sample);
    const tensor<double, host_space> x = batch<double>(3);
    tensor<double, host_space> out(x.shape());
    const noise_condition lv = noise_condition::vp(0.5);

    tensor<double, host_space> x4(shape{3, 4}), out4(shape{3, 4});
    DIFFUSE_CHECK_ERROR(g(out4.view(), x4.cview(), lv), "exact_gaussian_denoiser: x_t.shape() = \"[3, 4]\"",
                        "[B, d] with d = 3");
    tensor<double, host_space> x1(shape{3}), out1(shape{3});
    DIFFUSE_CHECK_ERROR(g(out1.view(), x1.cview(), lv), "x_t.shape() = \"[3]\"", "[B, d]");
    tensor<double, host_space> out2(shape{2, 3});
    DIFFUSE_CHECK_ERROR(g(out2.view(), x.cview(), lv), "shape mismatch: out has shape [2, 3]", "[3, 3]");
    tensor<double, host_space> y = x;
    DIFFUSE_CHECK_ERROR(g(y.view(), y.cview(), lv), "out aliases x_t");
    DIFFUSE_CHECK_ERROR(g(out.view(), x.cview(), noise_condition{0.0, 0.0}), "level.s = 0", "> 0 when level.a = 0");
    DIFFUSE_CHECK_ERROR(g(out.view(), x.cview(), noise_condition{-1.0, 0.5}), "level.a = -1", ">= 0");

    const std::vector<int> two = {0, 1};
    DIFFUSE_CHECK_ERROR(m(out.view(), x.cview(), lv, class_labels(two)), "labels.size() = 2", "batch size B = 3");
    const std::vector<int> bad = {0, 3, 1};
    DIFFUSE_CHECK_ERROR(m(out.view(), x.cview(), lv, class_labels(bad)), "labels[1] = 3",
                        "class label in [0, 2) or the null label 2");
    const std::vector<int> neg = {0, 1, -1};
    DIFFUSE_CHECK_ERROR(m(out.view(), x.cview(), lv, class_labels(neg)), "labels[2] = -1", "[0, 2)");
}
