// models/denoiser.hpp and models/prediction_adapter.hpp: noise_condition, the denoiser concept,
// predict_as / as_prediction (docs/denoisers.md §1–§3; closed_forms A3, peers b.5).
#include <diffuse/models/denoiser.hpp>
#include <diffuse/models/prediction_adapter.hpp>

#include <diffuse/analytic/gaussian.hpp>
#include <diffuse/analytic/gaussian_mixture.hpp>
#include <diffuse/core/tensor.hpp>
#include <diffuse/models/exact.hpp>
#include <diffuse/schedules/discrete_schedule.hpp>

#include "models/fixtures.hpp"
#include "support/check.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

using namespace diffuse;
using namespace diffuse::models;
using diffuse::test::eps;
using pt = prediction_type;

namespace {

using diffuse::test::batch;
using diffuse::test::test_gaussian;

/// A model whose prediction is declared but that counts its calls (to check that a refused
/// conversion never runs the model).
struct counting_model {
    pt type = pt::epsilon;
    mutable int calls = 0;
    pt prediction() const { return type; }
    template <class T, class S>
    void operator()(tensor_view<T, S> out, tensor_view<const T, S> x_t, const noise_condition&, no_condition) const {
        ++calls;
        for (std::int64_t i = 0; i < out.numel(); ++i) out[i] = x_t[i];
    }
};

/// Not a denoiser: a call but no prediction().
inline constexpr auto plain_lambda = [](tensor_view<double, host_space> out, tensor_view<const double, host_space>,
                                        const noise_condition&, no_condition) { (void)out; };
/// Not a denoiser: prediction() but the wrong call signature (no level).
struct no_level_model {
    pt prediction() const { return pt::sample; }
    void operator()(tensor_view<double, host_space>, tensor_view<const double, host_space>) const {}
};
/// Not a denoiser: prediction() returns a string.
struct string_prediction_model {
    const char* prediction() const { return "epsilon"; }
    void operator()(tensor_view<double, host_space>, tensor_view<const double, host_space>, const noise_condition&,
                    no_condition) const {}
};

}  // namespace

static_assert(!denoiser<decltype(plain_lambda), double, host_space>);
static_assert(!denoiser<no_level_model, double, host_space>);
static_assert(!denoiser<string_prediction_model, double, host_space>);
static_assert(denoiser<counting_model, float, host_space>);
static_assert(denoiser<counting_model, double, host_space>);
static_assert(!denoiser<counting_model, double, host_space, class_labels>);
static_assert(denoiser<prediction_adapter<exact_gaussian_denoiser>, float, host_space>);
static_assert(denoiser<prediction_adapter<exact_mixture_denoiser>, double, host_space, class_labels>);
static_assert(!denoiser<prediction_adapter<exact_gaussian_denoiser>, double, host_space, class_labels>);
static_assert(denoiser<denoiser_ref<exact_gaussian_denoiser>, double, host_space>);
static_assert(denoiser<prediction_adapter<denoiser_ref<counting_model>>, float, host_space>);

TEST_CASE("noise_condition: sigma, constructors and checks") {
    const noise_condition vp = noise_condition::vp(0.36, 10.0);
    DIFFUSE_CHECK_CLOSE(vp.a, 0.6, 0.0, 2 * eps<double>);
    DIFFUSE_CHECK_CLOSE(vp.s, 0.8, 0.0, 2 * eps<double>);
    DIFFUSE_CHECK_CLOSE(vp.sigma(), 0.8 / 0.6, 0.0, 4 * eps<double>);
    REQUIRE(vp.timestep.has_value());
    CHECK(*vp.timestep == 10.0);

    const noise_condition ve = noise_condition::ve(2.5);
    CHECK(ve.a == 1.0);
    CHECK(ve.s == 2.5);
    CHECK(ve.sigma() == 2.5);
    CHECK_FALSE(ve.timestep.has_value());
    CHECK(noise_condition{0.0, 1.0}.sigma() == std::numeric_limits<double>::infinity());
    CHECK(noise_condition{}.sigma() == 0.0);

    const auto sched = schedules::discrete_schedule::named("linear", 1000);
    const noise_condition at = noise_condition::at(sched, 499);
    CHECK(at.a == sched.alpha(499));
    CHECK(at.s == sched.sigma(499));
    CHECK(*at.timestep == 499.0);
    const noise_condition fl = noise_condition::from_level(process::vp_level_from_sigma(3.0));
    DIFFUSE_CHECK_CLOSE(fl.sigma(), 3.0, 0.0, 4 * eps<double>);
    CHECK(fl.level().a == fl.a);

    DIFFUSE_CHECK_ERROR(check_noise_condition(noise_condition{0.0, 0.0}), "level.s = 0", "> 0 when level.a = 0");
    DIFFUSE_CHECK_ERROR(check_noise_condition(noise_condition{std::nan(""), 1.0}), "level.a = nan", ">= 0");
    DIFFUSE_CHECK_ERROR(check_noise_condition(noise_condition{1.0, -0.1}), "level.s = -0.1", ">= 0");
    DIFFUSE_CHECK_ERROR(check_noise_condition(noise_condition{1.0, 1.0, std::numeric_limits<double>::infinity()}),
                        "level.timestep = inf", "finite");
    DIFFUSE_CHECK_ERROR(noise_condition::vp(1.5), "alpha_bar = 1.5");
}

// Bound for out = c_xt·x_t + c_v·value where value carries an error dv: the conversion passes
// |c_v|·dv on (the amplification: s/a for eps -> x0, a/s for x0 -> eps) and adds the rounding of
// the lincomb in T, at most 2u·(|c_xt·x_t| + |c_v·value|) (two products, one sum, one store).
// The value itself is one rounding of a double result: dv = u·|value| + 1e-14·(1 + |value|) for the
// double error of analytic::gaussian (x0_mean, eps_mean, score are separate formulas).
static double conversion_bound(process::conversion c, double xt, double value, double u) {
    const double dv = u * std::fabs(value) + 1e-14 * (1.0 + std::fabs(value));
    return std::fabs(c.c_value) * dv + 2.0 * u * (std::fabs(c.c_xt * xt) + std::fabs(c.c_value * value)) + 1e-300;
}

TEST_CASE_TEMPLATE("as_prediction of an exact model equals the exact model of the target type", T, float, double) {
    const analytic::gaussian g = test_gaussian();
    const tensor<T, host_space> x = batch<T>(5);
    const double u = eps<T>;
    const std::vector<noise_condition> levels = {noise_condition::vp(0.9), noise_condition::vp(0.5),
                                                 noise_condition::vp(0.01), noise_condition::ve(4.0),
                                                 noise_condition::ve(0.05)};
    for (pt from : process::all_prediction_types) {
        const exact_gaussian_denoiser source(g, from);
        for (pt to : process::all_prediction_types) {
            const auto adapted = as_prediction(source, to);
            CHECK(adapted.prediction() == to);
            CHECK(adapted.inner_prediction() == from);
            const exact_gaussian_denoiser target(g, to);
            for (const noise_condition& level : levels) {
                CAPTURE(process::to_string(from));
                CAPTURE(process::to_string(to));
                CAPTURE(level.a);
                CAPTURE(level.s);
                tensor<T, host_space> out(x.shape()), ref(x.shape()), value(x.shape());
                adapted(out.view(), x.cview(), level, no_condition{});
                target(ref.view(), x.cview(), level, no_condition{});
                source(value.view(), x.cview(), level, no_condition{});
                const process::conversion c = process::conversion_coeffs(from, to, level.a, level.s);
                for (std::int64_t i = 0; i < x.numel(); ++i) {
                    // + the reference's own rounding to T and its double error (another formula of
                    // analytic::gaussian, accurate to a few ulps of its inputs and outputs).
                    const double tol = conversion_bound(c, x[i], value[i], u) + u * std::fabs(double(ref[i])) +
                                       1e-14 * (1.0 + std::fabs(double(ref[i])) + std::fabs(double(x[i])));
                    DIFFUSE_CHECK_CLOSE(out[i], ref[i], tol, 0.0);
                }
                // predict_as is the same computation.
                tensor<T, host_space> out2(x.shape());
                predict_as(source, to, out2.view(), x.cview(), level);
                for (std::int64_t i = 0; i < x.numel(); ++i) CHECK(out2[i] == out[i]);
            }
        }
    }
}

TEST_CASE_TEMPLATE("as_prediction round trips from -> to -> from", T, float, double) {
    const exact_gaussian_denoiser base_eps(test_gaussian(), pt::epsilon);
    const tensor<T, host_space> x = batch<T>(4);
    const double u = eps<T>;
    for (pt from : process::all_prediction_types) {
        const auto source = as_prediction(by_ref(base_eps), from);
        for (pt to : process::all_prediction_types) {
            const auto back = as_prediction(as_prediction(source, to), from);
            for (const noise_condition& level : {noise_condition::vp(0.3), noise_condition::vp(0.8),
                                                 noise_condition::ve(2.0)}) {
                CAPTURE(process::to_string(from));
                CAPTURE(process::to_string(to));
                CAPTURE(level.a);
                tensor<T, host_space> v0(x.shape()), mid(x.shape()), v1(x.shape());
                source(v0.view(), x.cview(), level, no_condition{});
                as_prediction(source, to)(mid.view(), x.cview(), level, no_condition{});
                back(v1.view(), x.cview(), level, no_condition{});
                const process::conversion c1 = process::conversion_coeffs(from, to, level.a, level.s);
                const process::conversion c2 = process::conversion_coeffs(to, from, level.a, level.s);
                for (std::int64_t i = 0; i < x.numel(); ++i) {
                    // First conversion's error e1 (value exact), amplified by |c2_v|, plus the
                    // second lincomb's rounding.
                    const double e1 = 2.0 * u * (std::fabs(c1.c_xt * x[i]) + std::fabs(c1.c_value * v0[i]));
                    const double tol = std::fabs(c2.c_value) * e1 +
                                       2.0 * u * (std::fabs(c2.c_xt * x[i]) + std::fabs(c2.c_value * mid[i])) +
                                       u * std::fabs(double(v0[i]));
                    DIFFUSE_CHECK_CLOSE(v1[i], v0[i], tol, 0.0);
                }
            }
        }
    }
}

TEST_CASE("as_prediction with class labels passes the condition through") {
    std::vector<Eigen::VectorXd> m(2, Eigen::VectorXd(3));
    m[0] << 1.0, 0.0, -1.0;
    m[1] << -2.0, 1.0, 0.5;
    const analytic::gaussian_mixture mix({0.4, 0.6}, m,
                                         {0.3 * Eigen::MatrixXd::Identity(3, 3), 0.5 * Eigen::MatrixXd::Identity(3, 3)});
    const exact_mixture_denoiser eps_model(mix, pt::epsilon), x0_model(mix, pt::sample);
    const tensor<double, host_space> x = batch<double>(4);
    const std::vector<int> labels = {1, 0, 0, 1};
    const noise_condition level = noise_condition::vp(0.4);
    tensor<double, host_space> out(x.shape()), ref(x.shape());
    as_prediction(eps_model, pt::sample)(out.view(), x.cview(), level, class_labels(labels));
    x0_model(ref.view(), x.cview(), level, class_labels(labels));
    for (std::int64_t i = 0; i < x.numel(); ++i) DIFFUSE_CHECK_CLOSE(out[i], ref[i], 1e-13, 1e-13);
    tensor<double, host_space> out2(x.shape());
    predict_as(eps_model, pt::sample, out2.view(), x.cview(), level, labels);
    for (std::int64_t i = 0; i < x.numel(); ++i) CHECK(out2[i] == out[i]);
}

TEST_CASE("prediction adapters refuse undefined conversions before running the model") {
    const counting_model eps_model{pt::epsilon};
    const tensor<double, host_space> x = batch<double>(2);
    tensor<double, host_space> out(x.shape());
    const noise_condition pure_noise{0.0, 1.0};

    DIFFUSE_CHECK_ERROR(as_prediction(by_ref(eps_model), pt::sample)(out.view(), x.cview(), pure_noise, no_condition{}),
                        "a = 0", "> 0 for the conversion epsilon -> sample", "zero terminal SNR");
    DIFFUSE_CHECK_ERROR(predict_as(eps_model, pt::v_prediction, out.view(), x.cview(), pure_noise),
                        "a = 0", "epsilon -> v_prediction");
    const counting_model score_model{pt::score};
    DIFFUSE_CHECK_ERROR(predict_as(score_model, pt::sample, out.view(), x.cview(), pure_noise), "a = 0",
                        "score -> sample");
    const counting_model x0_model{pt::sample};
    DIFFUSE_CHECK_ERROR(predict_as(x0_model, pt::epsilon, out.view(), x.cview(), noise_condition{1.0, 0.0}), "s = 0",
                        "sample -> epsilon");
    CHECK(eps_model.calls == 0);
    CHECK(score_model.calls == 0);
    CHECK(x0_model.calls == 0);

    // Defined at a = 0: eps -> score, v -> sample, sample -> eps; and the identity.
    predict_as(eps_model, pt::score, out.view(), x.cview(), pure_noise);
    for (std::int64_t i = 0; i < x.numel(); ++i) CHECK(out[i] == -x[i]);
    const counting_model v_model{pt::v_prediction};
    predict_as(v_model, pt::sample, out.view(), x.cview(), pure_noise);  // x0 = â·x/r − ŝ·v = −v
    for (std::int64_t i = 0; i < x.numel(); ++i) CHECK(out[i] == -x[i]);
    predict_as(eps_model, pt::epsilon, out.view(), x.cview(), pure_noise);
    for (std::int64_t i = 0; i < x.numel(); ++i) CHECK(out[i] == x[i]);
    CHECK(eps_model.calls == 2);

    tensor<double, host_space> y = x;
    DIFFUSE_CHECK_ERROR(predict_as(eps_model, pt::sample, y.view(), y.cview(), noise_condition::vp(0.5)),
                        "predict_as: out aliases x_t");
    tensor<double, host_space> wrong(shape{3, 3});
    DIFFUSE_CHECK_ERROR(predict_as(eps_model, pt::sample, wrong.view(), x.cview(), noise_condition::vp(0.5)),
                        "shape mismatch: out has shape [3, 3] but x_t has shape [2, 3]");
    DIFFUSE_CHECK_ERROR(predict_as(eps_model, pt::sample, out.view(), x.cview(), noise_condition{0.0, 0.0}),
                        "level.s = 0");
}
