// Classifier guidance with a neural noise-conditional classifier (guidance/neural_classifier.hpp,
// nn/encoder_classifier.hpp, train/noise_classifier.hpp; docs/guidance.md §5): its input gradient against
// finite differences, and guided samples of the exact unconditional model of a 16-D three-class mixture that
// the exact Bayes classifier assigns to their target class far more often than unguided ones.

#include "guidance/guidance_fixtures.hpp"
#include "support/check.hpp"
#include "support/labelled_mixture.hpp"

#include <diffuse/guidance/guidance.hpp>
#include <diffuse/guidance/neural_classifier.hpp>
#include <diffuse/models/exact.hpp>
#include <diffuse/nn/init.hpp>
#include <diffuse/samplers/ddim.hpp>
#include <diffuse/samplers/sampler.hpp>
#include <diffuse/schedules/discrete_schedule.hpp>
#include <diffuse/train/noise_classifier.hpp>

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <vector>

using namespace diffuse;
using models::class_labels;
using models::noise_condition;
using pt = process::prediction_type;

namespace {

/// Fraction of rows of x [n, 16] that the exact Bayes classifier (at t = 0) assigns to labels[i].
double bayes_accuracy(const analytic::gaussian_mixture& mix, const tensor<float, host_space>& x,
                      const std::vector<int>& labels) {
    const guidance::exact_bayes_classifier bayes(mix);
    const std::vector<int> got = bayes.classify(x.cview(), noise_condition{1.0, 0.0});
    int right = 0;
    for (std::size_t i = 0; i < got.size(); ++i) right += got[i] == labels[i];
    return double(right) / double(got.size());
}

}  // namespace

TEST_CASE("neural_classifier: the guidance gradient is the derivative of log p(y | x_t, t) (central differences)") {
    nn::encoder_classifier<double> net(test::mixture_classifier_config(), 3);
    nn::init_parameters<double>(net, 5);
    const guidance::neural_classifier<double> cls(net, shape{1, 4, 4});
    CHECK(cls.n_classes() == 3);
    philox_rng rng(4);
    tensor<double, host_space> x(shape{3, 16});  // flat rows, viewed as [3, 1, 4, 4]
    rng.fill_normal(x.data(), 48);
    const std::vector<int> y = {2, 0, 1};
    const noise_condition level = noise_condition::vp(0.6, 250.0);
    const tensor<double, host_space> g = cls.log_prob_grad(x.cview(), level, class_labels(y));
    CHECK(g.shape() == x.shape());
    auto log_p = [&](const tensor<double, host_space>& xx, std::int64_t b) {
        const tensor_view<const double, host_space> img(xx.data(), shape{3, 1, 4, 4});
        return nn::class_log_prob_grad(net, img, {250.0}, y).log_prob[static_cast<std::size_t>(b)];
    };
    for (std::int64_t b = 0; b < 3; ++b) {
        for (std::int64_t j = 0; j < 16; j += 3) {
            const double h = 1e-6;
            tensor<double, host_space> xp = x, xm = x;
            xp(b, j) += h;
            xm(b, j) -= h;
            // double network, h = 1e-6: truncation ~1e-12·|f'''|, rounding ~1e-16/1e-6 = 1e-10
            DIFFUSE_CHECK_CLOSE(g(b, j), (log_p(xp, b) - log_p(xm, b)) / (2 * h), 1e-7, 1e-6);
        }
    }
    // The same SNR in VE form: x_ve = x/a at (1, σ = s/a) is the VP input scaled by r = √(1 + σ²) = 1/a, and
    // the gradient in x_ve is the VP one divided by r.
    const double a = level.a;
    tensor<double, host_space> x_ve = x;
    for (std::int64_t i = 0; i < x.numel(); ++i) x_ve[i] = x[i] / a;
    const noise_condition ve{1.0, level.s / a, 250.0};
    const tensor<double, host_space> g_ve = cls.log_prob_grad(x_ve.cview(), ve, class_labels(y));
    for (std::int64_t i = 0; i < x.numel(); ++i) DIFFUSE_CHECK_CLOSE(g_ve[i], g[i] * a, 1e-13, 1e-12);
    DIFFUSE_CHECK_ERROR(cls.log_prob_grad(x.cview(), noise_condition::vp(0.6), class_labels(y)), "no training timestep");
    tensor<double, host_space> wrong(shape{3, 15});
    DIFFUSE_CHECK_ERROR(cls.log_prob_grad(wrong.cview(), level, class_labels(y)), "x_t.shape() = \"[3, 15]\"",
                        "16 elements per item");
}

TEST_CASE("neural classifier guidance raises the exact Bayes accuracy of samples over unguided sampling") {
    // The classifier of tests/train/test_noise_classifier.cpp: 500 AdamW steps of 64 noisy images.
    const analytic::gaussian_mixture mix = test::three_class_image_mixture();
    const schedules::discrete_schedule sched = schedules::discrete_schedule::named("linear", 1000);
    nn::encoder_classifier<float> net(test::mixture_classifier_config(), 3);
    nn::init_parameters<float>(net, 1);
    train::noise_classifier_options o;
    o.steps = 500;
    o.batch = 64;
    o.lr = 3e-3;
    o.seed = 3;
    train::train_noise_classifier(
        net, [&](std::int64_t n, philox_rng& rng) { return test::mixture_batch<float>(mix, n, rng); }, sched, o);

    // 600 samples, 200 per target class, DDIM 50 steps from the same noise, with the exact unconditional model.
    const std::int64_t n = 600;
    std::vector<int> labels(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) labels[static_cast<std::size_t>(i)] = static_cast<int>(i % 3);
    const models::exact_mixture_denoiser uncond(mix, pt::epsilon);
    tensor<float, host_space> z(shape{n, 16});
    philox_rng zr(99);
    zr.fill_normal(z.data(), static_cast<std::size_t>(z.numel()));
    auto sample_with = [&](const auto& model, const auto& cond) {
        samplers::ddim_sampler sampler(sched);
        sampler.set_timesteps(50);
        tensor<float, host_space> x = z;
        philox_rng rng(0);
        samplers::sample(model, sampler, x, rng, {}, cond);
        return x;
    };
    const double unguided = bayes_accuracy(mix, sample_with(uncond, models::no_condition{}), labels);
    const guidance::neural_classifier<float> neural(net, shape{1, 4, 4});
    const guidance::exact_bayes_classifier exact(mix);
    for (double s : {1.0, 3.0}) {
        const double with_neural =
            bayes_accuracy(mix, sample_with(guidance::classifier_guidance(uncond, neural, {.scale = s}), class_labels(labels)), labels);
        const double with_exact =
            bayes_accuracy(mix, sample_with(guidance::classifier_guidance(uncond, exact, {.scale = s}), class_labels(labels)), labels);
        MESSAGE("scale " << s << ": Bayes accuracy of samples, unguided " << unguided << ", neural classifier "
                         << with_neural << ", exact Bayes classifier " << with_exact);
        // Unguided samples hit their target with probability 1/3 (binomial sd over 600 ≈ 0.019); exact guidance
        // at s = 1 gives the class-conditional model (Bayes accuracy 0.92 at t = 0).
        CHECK(unguided < 1.0 / 3.0 + 5 * 0.0193);
        CHECK(with_neural > unguided + 0.4);
        CHECK(with_neural > with_exact - 0.08);
    }
}
