// Classifier guidance (guidance/classifier.hpp; docs/guidance.md §5): Bayes' rule on scores with the
// exact Bayes classifier of a labelled mixture, CFG = classifier guidance for exact models, guided-diffusion's
// condition_mean on a DDPM step, and the errors.

#include "guidance/guidance_fixtures.hpp"
#include "support/check.hpp"

#include <diffuse/backend/randn.hpp>
#include <diffuse/guidance/cfg.hpp>
#include <diffuse/guidance/classifier.hpp>
#include <diffuse/models/exact.hpp>
#include <diffuse/models/prediction_adapter.hpp>
#include <diffuse/samplers/ddpm.hpp>
#include <diffuse/samplers/guidance_tables.hpp>
#include <diffuse/schedules/discrete_schedule.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

using namespace diffuse;
using diffuse::test::guidance_batch;
using diffuse::test::guidance_levels;
using diffuse::test::guidance_mixture;
using guidance::classifier_mode;
using guidance::exact_bayes_classifier;
using models::class_labels;
using models::exact_mixture_denoiser;
using models::noise_condition;
using pt = process::prediction_type;

namespace {

const std::vector<int> labels = {0, 2, 1, 2, 0, 1};

template <class T>
tensor<T, host_space> run(const auto& model, const tensor<T, host_space>& x, const noise_condition& level,
                          const auto& cond) {
    tensor<T, host_space> out(x.shape());
    model(out.view(), x.cview(), level, cond);
    return out;
}

/// A classifier whose gradient has the wrong shape.
struct bad_classifier {
    template <class T, class S>
    tensor<T, S> log_prob_grad(tensor_view<const T, S> x, const noise_condition&, class_labels) const {
        return tensor<T, S>(shape{x.size(0), 3}, T(0));
    }
};

}  // namespace

TEST_CASE("exact_bayes_classifier: its gradient is the derivative of log p_t(y | x) (central differences)") {
    const exact_bayes_classifier cls(guidance_mixture());
    const tensor<double, host_space> x = guidance_batch<double>(6);
    for (const noise_condition& level : guidance_levels()) {
        const tensor<double, host_space> g = cls.log_prob_grad(x.cview(), level, labels);
        for (std::int64_t b = 0; b < 6; ++b) {
            for (std::int64_t j = 0; j < 2; ++j) {
                const double h = 1e-5;
                tensor<double, host_space> xp = x, xm = x;
                xp(b, j) += h;
                xm(b, j) -= h;
                const int y = labels[static_cast<std::size_t>(b)];
                const double fd =
                    (cls.log_posterior(xp.cview(), level)(b, y) - cls.log_posterior(xm.cview(), level)(b, y)) / (2 * h);
                // central differences: truncation ~h²·|f'''| and rounding ~1e-16/h; 1e-7 covers both here
                DIFFUSE_CHECK_CLOSE(g(b, j), fd, 1e-7, 1e-6);
            }
        }
    }
    // classify = argmax of the posterior; at a = 1, s → 0 a point at a component mean is that class
    const tensor<double, host_space> means =
        tensor<double, host_space>::from_values(shape{3, 2}, {-1.5, 0.5, 1.5, 1.0, 0.0, -1.5});
    CHECK(cls.classify(means.cview(), noise_condition::vp(0.9999)) == std::vector<int>{0, 1, 2});
}

TEST_CASE_TEMPLATE("classifier guidance at scale 1 with the Bayes classifier is the exact conditional model", T, float,
                   double) {
    const analytic::gaussian_mixture mix = guidance_mixture();
    const tensor<T, host_space> x = guidance_batch<T>(6);
    for (pt type : {pt::epsilon, pt::sample, pt::v_prediction, pt::score}) {
        const exact_mixture_denoiser model(mix, type);
        const auto guided = guidance::classifier_guidance(model, exact_bayes_classifier(mix), {.scale = 1.0});
        CHECK(guided.prediction() == type);
        for (const noise_condition& level : guidance_levels()) {
            const tensor<T, host_space> g = run(guided, x, level, class_labels(labels));
            const tensor<T, host_space> c = run(model, x, level, class_labels(labels));
            // u + c_score·∇log p(y|x) vs the conditional: both rounded to T from double (1 ulp each), the
            // shift itself computed in double; the terms are bounded by max(|u|, |shift|)
            const tensor<T, host_space> u = run(model, x, level, models::no_condition{});
            for (std::int64_t i = 0; i < x.numel(); ++i) {
                const double scale = std::abs(double(u[i])) + std::abs(double(c[i])) + 1.0;
                DIFFUSE_CHECK_CLOSE(g[i], c[i], 8 * test::eps<T> * scale + 1e-12 * scale, 0.0);
            }
        }
    }
}

TEST_CASE("classifier guidance at scale s equals CFG at weight w = s for exact models (diffusers formula)") {
    const analytic::gaussian_mixture mix = guidance_mixture();
    const tensor<double, host_space> x = guidance_batch<double>(6);
    const exact_mixture_denoiser model(mix, pt::epsilon);
    const std::vector<int> nulls = guidance::null_labels(6, model.null_class_label());
    for (double s : {0.0, 0.5, 3.0, 7.5}) {
        const auto cg = guidance::classifier_guidance(model, exact_bayes_classifier(mix), {.scale = s});
        const auto cf = guidance::cfg(model, {.weight = s});
        for (const noise_condition& level : guidance_levels()) {
            const tensor<double, host_space> a = run(cg, x, level, class_labels(labels));
            const tensor<double, host_space> b =
                run(cf, x, level, guidance::cfg_condition<class_labels>{labels, nulls});
            for (std::int64_t i = 0; i < x.numel(); ++i)
                DIFFUSE_CHECK_CLOSE(a[i], b[i], 1e-12 * (1 + s), 1e-12);
        }
    }
}

TEST_CASE("classifier guidance: condition_mean shifts a DDPM step's mean by s·σ²·g (guided-diffusion p_sample)") {
    const analytic::gaussian_mixture mix = guidance_mixture();
    const exact_mixture_denoiser model(mix, pt::epsilon);
    const exact_bayes_classifier cls(mix);
    samplers::ddpm_sampler sampler(schedules::discrete_schedule::named("linear", 1000));
    sampler.set_timesteps(20);
    const double s = 2.5;
    const auto guided = guidance::classifier_guidance(
        model, cls, {.scale = s, .mode = classifier_mode::condition_mean, .mean_shift = samplers::condition_mean_table(sampler)});
    const tensor<double, host_space> x = guidance_batch<double>(6);
    tensor<double, host_space> z(x.shape());
    philox_rng rng(3);
    randn(z.view(), rng);
    // steps where σ² is large, middling and small but not ~0 (the last step's σ² is β̃ of the step before)
    for (std::size_t i : {std::size_t(0), std::size_t(7), std::size_t(15)}) {
        noise_condition level = sampler.model_level(i);
        level.step = i;
        level.num_steps = sampler.num_steps();
        const tensor<double, host_space> mg = run(guided, x, level, class_labels(labels));
        const tensor<double, host_space> mu = run(model, x, level, models::no_condition{});
        tensor<double, host_space> xg = x, xu = x;
        sampler.step_with_noise(mg.cview(), pt::epsilon, i, xg.view(), z.cview());
        sampler.step_with_noise(mu.cview(), pt::epsilon, i, xu.view(), z.cview());
        const tensor<double, host_space> g = cls.log_prob_grad(x.cview(), level, labels);
        const double var = sampler.step_coeffs(i).variance;
        CHECK(var > 1e-4);
        // x' differences of O(1) values: rounding ~1e-16·|x'| ≈ 1e-15 absolute; the shift is >= ~1e-5 here
        for (std::int64_t k = 0; k < x.numel(); ++k)
            DIFFUSE_CHECK_CLOSE(xg[k] - xu[k], s * var * g[k], 1e-13, 1e-9);
    }
    // condition_score instead shifts eps by −s·√(1−ᾱ)·g: the DDPM mean moves by s·β/√α·g (not σ²)
    const auto by_score = guidance::classifier_guidance(model, cls, {.scale = s});
    noise_condition level = sampler.model_level(3);
    const tensor<double, host_space> me = run(by_score, x, level, class_labels(labels));
    const tensor<double, host_space> mu = run(model, x, level, models::no_condition{});
    const tensor<double, host_space> g = cls.log_prob_grad(x.cview(), level, labels);
    for (std::int64_t k = 0; k < x.numel(); ++k) DIFFUSE_CHECK_CLOSE(me[k] - mu[k], -s * level.s * g[k], 1e-13, 1e-9);
}

TEST_CASE("classifier guidance: errors name the argument, its value and what is allowed") {
    const analytic::gaussian_mixture mix = guidance_mixture();
    const exact_mixture_denoiser model(mix, pt::epsilon);
    const exact_bayes_classifier cls(mix);
    DIFFUSE_CHECK_ERROR(guidance::classifier_guidance(model, cls, {.scale = -1.0}), "scale = -1", ">= 0");
    DIFFUSE_CHECK_ERROR(guidance::classifier_guidance(model, cls, {.scale = std::nan("")}), "scale = nan", "finite");
    DIFFUSE_CHECK_ERROR(guidance::classifier_guidance(model, cls, {.mode = classifier_mode::condition_mean}),
                        "mean_shift.size() = 0", "condition_mean_table");
    DIFFUSE_CHECK_ERROR(guidance::classifier_guidance(model, cls, {.mean_shift = {1.0, 2.0}}), "mean_shift.size() = 2",
                        "0 with mode = condition_score");
    const tensor<double, host_space> x = guidance_batch<double>(6);
    const noise_condition level = noise_condition::vp(0.5);
    const std::vector<int> five = {0, 1, 2, 0, 1};
    DIFFUSE_CHECK_ERROR(run(guidance::classifier_guidance(model, cls), x, level, class_labels(five)), "labels.size() = 5",
                        "B = 6");
    const std::vector<int> bad = {0, 1, 2, 3, 1, 0};
    DIFFUSE_CHECK_ERROR(run(guidance::classifier_guidance(model, cls), x, level, class_labels(bad)), "labels[3] = 3",
                        "[0, 3)");
    DIFFUSE_CHECK_ERROR(run(guidance::classifier_guidance(model, bad_classifier{}), x, level, class_labels(labels)),
                        "gradient has shape [6, 3]", "shape of x_t, [6, 2]");
    // condition_mean needs the step index and a table of the run's length
    samplers::ddpm_sampler ddpm(schedules::discrete_schedule::named("linear", 1000));
    ddpm.set_timesteps(10);
    const auto cm = guidance::classifier_guidance(
        model, cls, {.mode = classifier_mode::condition_mean, .mean_shift = samplers::condition_mean_table(ddpm)});
    DIFFUSE_CHECK_ERROR(run(cm, x, level, class_labels(labels)), "condition_mean", "level.step");
    noise_condition l = level;
    l.step = 2;
    l.num_steps = 20;
    DIFFUSE_CHECK_ERROR(run(cm, x, l, class_labels(labels)), "mean_shift.size() = 10", "level.num_steps = 20");
}
