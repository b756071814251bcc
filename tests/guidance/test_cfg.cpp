// Classifier-free guidance (guidance/cfg.hpp, combine.hpp, schedule.hpp; docs/guidance.md §3–§4):
// the formulas' limits, batching, spaces, intervals and schedules, and each variant against its
// published formula computed independently here on small tensors.

#include "guidance/guidance_fixtures.hpp"
#include "support/check.hpp"

#include <diffuse/guidance/cfg.hpp>
#include <diffuse/guidance/classifier.hpp>
#include <diffuse/guidance/combine.hpp>
#include <diffuse/guidance/condition.hpp>
#include <diffuse/guidance/schedule.hpp>
#include <diffuse/models/exact.hpp>
#include <diffuse/models/prediction_adapter.hpp>
#include <diffuse/samplers/ddim.hpp>
#include <diffuse/samplers/sampler.hpp>
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
using guidance::cfg_condition;
using guidance::cfg_formula;
using guidance::cfg_method;
using guidance::cfg_options;
using models::class_labels;
using models::exact_mixture_denoiser;
using models::noise_condition;
using pt = process::prediction_type;

namespace {

/// Records the batch size of every call of the wrapped model (which it forwards to).
template <class M>
struct recording {
    const M* model;
    std::vector<std::int64_t>* batches;
    pt prediction() const { return model->prediction(); }
    template <class T, class S, class C>
    void operator()(tensor_view<T, S> out, std::type_identity_t<tensor_view<const T, S>> x, const noise_condition& l,
                    const C& c) const {
        batches->push_back(x.size(0));
        (*model)(out, x, l, c);
    }
};

template <class T>
tensor<T, host_space> run(const auto& model, const tensor<T, host_space>& x, const noise_condition& level,
                          const auto& cond) {
    tensor<T, host_space> out(x.shape());
    model(out.view(), x.cview(), level, cond);
    return out;
}

template <class T>
double max_diff(const tensor<T, host_space>& a, const tensor<T, host_space>& b) {
    double m = 0.0;
    for (std::int64_t i = 0; i < a.numel(); ++i) m = std::max(m, std::abs(double(a[i]) - double(b[i])));
    return m;
}

template <class T>
bool bitwise_equal(const tensor<T, host_space>& a, const tensor<T, host_space>& b) {
    for (std::int64_t i = 0; i < a.numel(); ++i)
        if (a[i] != b[i]) return false;
    return true;
}

const std::vector<int> labels = {0, 2, 1, 2, 0, 1};

}  // namespace

TEST_CASE_TEMPLATE("cfg: the formulas' end points are the conditional and unconditional models bitwise", T, float,
                   double) {
    const exact_mixture_denoiser model(guidance_mixture(), pt::epsilon);
    const tensor<T, host_space> x = guidance_batch<T>(6);
    const std::vector<int> nulls = guidance::null_labels(6, model.null_class_label());
    const cfg_condition<class_labels> cond{labels, nulls};
    for (const noise_condition& level : guidance_levels()) {
        const tensor<T, host_space> c = run(model, x, level, class_labels(labels));
        const tensor<T, host_space> u = run(model, x, level, models::no_condition{});
        // diffusers: w = 1 conditional, w = 0 unconditional; original: w = 0 conditional, w = −1 unconditional
        CHECK(bitwise_equal(run(guidance::cfg(model, {.weight = 1.0}), x, level, cond), c));
        CHECK(bitwise_equal(run(guidance::cfg(model, {.weight = 0.0}), x, level, cond), u));
        CHECK(bitwise_equal(run(guidance::cfg(model, {.weight = 0.0, .formula = cfg_formula::original}), x, level, cond), c));
        CHECK(bitwise_equal(run(guidance::cfg(model, {.weight = -1.0, .formula = cfg_formula::original}), x, level, cond),
                            u));
        // Between them: u + w(c − u) in double, and the two conventions at w_orig = w − 1.
        const double w = 4.5;
        const tensor<T, host_space> g = run(guidance::cfg(model, {.weight = w}), x, level, cond);
        const tensor<T, host_space> go =
            run(guidance::cfg(model, {.weight = w - 1.0, .formula = cfg_formula::original}), x, level, cond);
        for (std::int64_t i = 0; i < x.numel(); ++i) {
            const double ref = double(u[i]) + w * (double(c[i]) - double(u[i]));
            // lincomb rounds w·c + (1 − w)·u in T: a few ulps of the terms (|w|, |1 − w| <= 5.5)
            const double tol = 16.0 * test::eps<T> * (std::abs(w * c[i]) + std::abs((1 - w) * u[i]) + 1e-300);
            DIFFUSE_CHECK_CLOSE(g[i], ref, tol, 0.0);
            DIFFUSE_CHECK_CLOSE(go[i], ref, tol, 0.0);
        }
    }
}

TEST_CASE_TEMPLATE("cfg: one batched 2B call equals two separate calls, and the null label is the unconditional model",
                   T, float, double) {
    const exact_mixture_denoiser model(guidance_mixture(), pt::sample);
    const tensor<T, host_space> x = guidance_batch<T>(6);
    const std::vector<int> nulls = guidance::null_labels(6, model.null_class_label());
    std::vector<std::int64_t> batches;
    const recording<exact_mixture_denoiser> rec{&model, &batches};
    const noise_condition level = noise_condition::vp(0.4);
    const tensor<T, host_space> joined = run(guidance::cfg(rec, {.weight = 3.0}), x, level, cfg_condition<class_labels>{labels, nulls});
    CHECK(batches == std::vector<std::int64_t>{12});
    batches.clear();
    const tensor<T, host_space> separate =
        run(guidance::cfg(rec, {.weight = 3.0, .batched = false}), x, level, cfg_condition<class_labels>{labels, nulls});
    CHECK(batches == std::vector<std::int64_t>{6, 6});
    // A pair that cannot be joined (labels with no_condition) is two calls too.
    batches.clear();
    const tensor<T, host_space> mixed = run(guidance::cfg(rec, {.weight = 3.0}), x, level,
                                            cfg_condition<class_labels, models::no_condition>{labels, {}});
    CHECK(batches == std::vector<std::int64_t>{6, 6});
    // The exact model evaluates each row on its own: identical results.
    CHECK(bitwise_equal(joined, separate));
    CHECK(bitwise_equal(joined, mixed));
}

TEST_CASE("cfg: a negative condition takes the place of the null one") {
    // uncond = another class (a negative label): the result is c_y + w·(c_y − c_neg) in the original form,
    // i.e. the CFG formula with u the negative class's prediction
    const exact_mixture_denoiser model(guidance_mixture(), pt::epsilon);
    const tensor<double, host_space> x = guidance_batch<double>(6);
    const std::vector<int> negative = {1, 0, 2, 1, 2, 0};
    const noise_condition level = noise_condition::vp(0.35);
    const tensor<double, host_space> g = run(guidance::cfg(model, {.weight = 2.0, .formula = cfg_formula::original}), x,
                                             level, cfg_condition<class_labels>{labels, negative});
    const tensor<double, host_space> c = run(model, x, level, class_labels(labels));
    const tensor<double, host_space> n = run(model, x, level, class_labels(negative));
    for (std::int64_t i = 0; i < x.numel(); ++i)
        DIFFUSE_CHECK_CLOSE(g[i], c[i] + 2.0 * (c[i] - n[i]), 1e-14, 1e-14);
}

TEST_CASE("cfg: standard CFG does not depend on the space it is combined in, the output declares that space") {
    const exact_mixture_denoiser model(guidance_mixture(), pt::epsilon);
    const tensor<double, host_space> x = guidance_batch<double>(6);
    const std::vector<int> nulls = guidance::null_labels(6, model.null_class_label());
    const cfg_condition<class_labels> cond{labels, nulls};
    for (const noise_condition& level : guidance_levels()) {
        const auto in_eps = guidance::cfg(model, {.weight = 5.0});
        CHECK(in_eps.prediction() == pt::epsilon);
        for (pt space : {pt::sample, pt::v_prediction, pt::score}) {
            const auto in_space = guidance::cfg(model, {.weight = 5.0, .space = space});
            CHECK(in_space.prediction() == space);
            tensor<double, host_space> a(x.shape()), b(x.shape());
            models::predict_as(in_eps, space, a.view(), x.cview(), level, cond);
            in_space(b.view(), x.cview(), level, cond);
            // Affine maps commute with affine combinations; both sides round the same terms in another order:
            // the CFG terms w·c, (1 − w)·u (|w|, |1 − w| <= 5) and the conversion terms c_xt·x, c_value·e, each
            // O(max(|x|, |e|) <= 10) — a few ulps of Σ|terms| <= 5·(|c_xt| + |c_value|)·10 + ... ; 64·ε per unit.
            const process::conversion cv = process::conversion_coeffs(pt::epsilon, space, level.a, level.s);
            const double terms = 10.0 * (1.0 + 5.0 * 2.0) * (1.0 + std::abs(cv.c_value) + std::abs(cv.c_xt));
            for (std::int64_t i = 0; i < x.numel(); ++i) DIFFUSE_CHECK_CLOSE(b[i], a[i], 64 * test::eps<double> * terms, 0.0);
        }
    }
}

TEST_CASE("cfg: guidance rescale equals Lin et al.'s formula, both std conventions give the same ratio") {
    // c and g by hand: item 0 c = (1, 2, 3, 6), g = (0, 4, 8, −4): mean(c) = 3, Σ(c − 3)² = 4 + 1 + 0 + 9 = 14;
    // mean(g) = 2, Σ(g − 2)² = 4 + 4 + 36 + 36 = 80. std ratio = √(14/80) for N−1 and N alike.
    tensor<double, host_space> c = tensor<double, host_space>::from_values(shape{2, 4}, {1, 2, 3, 6, 0.5, -0.5, 0.25, 1.0});
    tensor<double, host_space> g = tensor<double, host_space>::from_values(shape{2, 4}, {0, 4, 8, -4, 2, -1, 0.5, 3});
    const double r0 = std::sqrt(14.0 / 80.0);
    for (auto conv : {guidance::std_convention::unbiased, guidance::std_convention::biased}) {
        const std::vector<double> r = guidance::rescale_ratios<double, host_space>(g.cview(), c.cview(), conv);
        DIFFUSE_CHECK_CLOSE(r[0], r0, 0.0, 4 * test::eps<double>);
        // item 1 by the formula directly
        auto std_of = [&](const tensor<double, host_space>& t, double denom) {
            double m = 0, ss = 0;
            for (int j = 4; j < 8; ++j) m += t[j] / 4;
            for (int j = 4; j < 8; ++j) ss += (t[j] - m) * (t[j] - m);
            return std::sqrt(ss / denom);
        };
        const double denom = conv == guidance::std_convention::unbiased ? 3.0 : 4.0;
        DIFFUSE_CHECK_CLOSE(r[1], std_of(c, denom) / std_of(g, denom), 0.0, 8 * test::eps<double>);
        for (double phi : {0.0, 0.7, 1.0}) {
            tensor<double, host_space> out = g;
            guidance::rescale_guidance(out.view(), c.cview(), phi, conv);
            for (int i = 0; i < 8; ++i) {
                const double ri = r[static_cast<std::size_t>(i / 4)];
                DIFFUSE_CHECK_CLOSE(out[i], phi * g[i] * ri + (1 - phi) * g[i], 0.0, 8 * test::eps<double>);
            }
            if (phi == 0.0) CHECK(bitwise_equal(out, g));
            if (phi == 1.0) {  // std(out) = std(c) per item
                const std::vector<double> again =
                    guidance::rescale_ratios<double, host_space>(out.cview(), c.cview(), conv);
                DIFFUSE_CHECK_CLOSE(again[0], 1.0, 0.0, 8 * test::eps<double>);
                DIFFUSE_CHECK_CLOSE(again[1], 1.0, 0.0, 8 * test::eps<double>);
            }
        }
    }
    // An item with std(g) = 0 is left alone; φ outside [0, 1] is an error.
    tensor<double, host_space> flat = tensor<double, host_space>::from_values(shape{1, 3}, {2, 2, 2});
    tensor<double, host_space> c1 = tensor<double, host_space>::from_values(shape{1, 3}, {1, 2, 3});
    guidance::rescale_guidance(flat.view(), c1.cview(), 1.0);
    CHECK(flat[0] == 2.0);
    DIFFUSE_CHECK_ERROR(guidance::rescale_guidance(flat.view(), c1.cview(), 1.5), "guidance_rescale = 1.5", "[0, 1]");
}

TEST_CASE("cfg: CFG-Zero* equals its published formula, zero_init_steps output zeros") {
    // item 0: c = (1, 2), u = (2, 0): <c,u> = 2, ‖u‖² = 4 -> α = 2/(4 + 1e-8)
    tensor<double, host_space> c = tensor<double, host_space>::from_values(shape{2, 2}, {1, 2, -1, 0.5});
    tensor<double, host_space> u = tensor<double, host_space>::from_values(shape{2, 2}, {2, 0, 0.5, 0.5});
    const std::vector<double> alpha = guidance::cfg_zero_star_scale<double, host_space>(c.cview(), u.cview());
    DIFFUSE_CHECK_CLOSE(alpha[0], 2.0 / (4.0 + 1e-8), 0.0, 2 * test::eps<double>);
    DIFFUSE_CHECK_CLOSE(alpha[1], (-0.5 + 0.25) / (0.5 + 1e-8), 0.0, 2 * test::eps<double>);
    const double w = 3.0;
    tensor<double, host_space> out(c.shape()), out_o(c.shape());
    guidance::cfg_zero_star_combine(out.view(), c.cview(), u.cview(), w, cfg_formula::diffusers);
    guidance::cfg_zero_star_combine(out_o.view(), c.cview(), u.cview(), w, cfg_formula::original);
    for (int i = 0; i < 4; ++i) {
        const double a = alpha[static_cast<std::size_t>(i / 2)];
        // diffusers: pred = α u + w (c − α u);  original: pred = c + w (c − α u)
        DIFFUSE_CHECK_CLOSE(out[i], a * u[i] + w * (c[i] - a * u[i]), 0.0, 16 * test::eps<double>);
        DIFFUSE_CHECK_CLOSE(out_o[i], c[i] + w * (c[i] - a * u[i]), 0.0, 16 * test::eps<double>);
    }
    // In a run: step 0 outputs zeros (zero_init_steps = 1), later steps the CFG-Zero* combination.
    const exact_mixture_denoiser model(guidance_mixture(), pt::epsilon);
    const auto guided = guidance::cfg(model, {.weight = 2.0, .method = cfg_method::zero_star, .zero_init_steps = 1});
    const tensor<double, host_space> x = guidance_batch<double>(6);
    const std::vector<int> nulls = guidance::null_labels(6, model.null_class_label());
    noise_condition level = noise_condition::vp(0.3);
    level.step = 0;
    level.num_steps = 10;
    const tensor<double, host_space> z = run(guided, x, level, cfg_condition<class_labels>{labels, nulls});
    for (std::int64_t i = 0; i < z.numel(); ++i) CHECK(z[i] == 0.0);
    level.step = 1;
    const tensor<double, host_space> g = run(guided, x, level, cfg_condition<class_labels>{labels, nulls});
    const tensor<double, host_space> cc = run(model, x, level, class_labels(labels));
    const tensor<double, host_space> uu = run(model, x, level, models::no_condition{});
    tensor<double, host_space> ref(x.shape());
    guidance::cfg_zero_star_combine(ref.view(), cc.cview(), uu.cview(), 2.0, cfg_formula::diffusers);
    CHECK(max_diff(g, ref) <= 1e-15 * 10);
    level.step.reset();
    DIFFUSE_CHECK_ERROR(run(guided, x, level, cfg_condition<class_labels>{labels, nulls}), "zero_init_steps",
                        "level.step");
}

TEST_CASE("cfg: APG equals its published formula, with η = 1 and no threshold or momentum it is CFG") {
    tensor<double, host_space> c = tensor<double, host_space>::from_values(shape{2, 3}, {1, 2, 2, 0.5, -1, 0.25});
    tensor<double, host_space> u = tensor<double, host_space>::from_values(shape{2, 3}, {0, 1, 3, 1, 1, -0.5});
    // Independent: Δ = c − u, threshold, projection on c, update = Δ⊥ + ηΔ∥, pred = base + w·update.
    auto reference = [&](double w, cfg_formula f, double eta, double r, const std::vector<double>* running) {
        std::vector<double> out(6);
        for (int b = 0; b < 2; ++b) {
            double d[3], cn = 0, dn = 0, dc = 0;
            for (int j = 0; j < 3; ++j) {
                d[j] = running ? (*running)[static_cast<std::size_t>(3 * b + j)] : c[3 * b + j] - u[3 * b + j];
                cn += c[3 * b + j] * c[3 * b + j];
            }
            for (int j = 0; j < 3; ++j) dn += d[j] * d[j];
            const double sc = r > 0 ? std::min(1.0, r / std::sqrt(dn)) : 1.0;
            for (int j = 0; j < 3; ++j) d[j] *= sc;
            for (int j = 0; j < 3; ++j) dc += d[j] * c[3 * b + j] / std::sqrt(cn);
            for (int j = 0; j < 3; ++j) {
                const double par = dc * c[3 * b + j] / std::sqrt(cn), orth = d[j] - par;
                const double base = f == cfg_formula::diffusers ? u[3 * b + j] : c[3 * b + j];
                out[static_cast<std::size_t>(3 * b + j)] = base + w * (orth + eta * par);
            }
        }
        return out;
    };
    for (cfg_formula f : {cfg_formula::diffusers, cfg_formula::original}) {
        for (double eta : {0.0, 0.5, 1.0}) {
            for (double r : {0.0, 0.8}) {
                tensor<double, host_space> out(c.shape());
                guidance::apg_combine(out.view(), c.cview(), u.cview(), 4.0, f, {.eta = eta, .norm_threshold = r});
                const std::vector<double> ref = reference(4.0, f, eta, r, nullptr);
                for (int i = 0; i < 6; ++i)
                    DIFFUSE_CHECK_CLOSE(out[i], ref[static_cast<std::size_t>(i)], 0.0, 32 * test::eps<double>);
            }
        }
        tensor<double, host_space> apg(c.shape()), plain(c.shape());
        guidance::apg_combine(apg.view(), c.cview(), u.cview(), 4.0, f, {});
        guidance::cfg_combine(plain.view(), c.cview(), u.cview(), 4.0, f);
        CHECK(max_diff(apg, plain) <= 32 * test::eps<double> * 8);
    }
    // Momentum β: Δ̄_1 = Δ_1, Δ̄_2 = Δ_2 + β Δ̄_1 (same c, u twice here: Δ̄_2 = (1 + β)Δ).
    guidance::apg_state<double, host_space> state;
    const guidance::apg_options o{.eta = 0.0, .norm_threshold = 0.0, .momentum = -0.5};
    tensor<double, host_space> out(c.shape());
    guidance::apg_combine(out.view(), c.cview(), u.cview(), 2.0, cfg_formula::diffusers, o, &state);
    guidance::apg_combine(out.view(), c.cview(), u.cview(), 2.0, cfg_formula::diffusers, o, &state);
    std::vector<double> running(6);
    for (int i = 0; i < 6; ++i) running[static_cast<std::size_t>(i)] = 0.5 * (c[i] - u[i]);
    const std::vector<double> ref = reference(2.0, cfg_formula::diffusers, 0.0, 0.0, &running);
    for (int i = 0; i < 6; ++i) DIFFUSE_CHECK_CLOSE(out[i], ref[static_cast<std::size_t>(i)], 0.0, 32 * test::eps<double>);
}

TEST_CASE("cfg: APG momentum runs across the steps of a sampling run and restarts at step 0") {
    const exact_mixture_denoiser model(guidance_mixture(), pt::epsilon);
    const auto guided = guidance::cfg(
        model, {.weight = 3.0, .method = cfg_method::apg, .apg = {.eta = 0.0, .norm_threshold = 2.0, .momentum = -0.5}});
    samplers::ddim_sampler sampler(schedules::discrete_schedule::named("linear", 1000));
    sampler.set_timesteps(8);
    const std::vector<int> nulls = guidance::null_labels(6, model.null_class_label());
    const cfg_condition<class_labels> cond{labels, nulls};
    philox_rng rng(1);
    tensor<double, host_space> x1 = guidance_batch<double>(6, 1.0), x2 = x1;
    samplers::sample(guided, sampler, x1, rng, {}, cond);
    samplers::sample(guided, sampler, x2, rng, {}, cond);  // a second run: the buffer restarts
    CHECK(bitwise_equal(x1, x2));
    // The same run by hand: a stepping loop with apg_combine and an explicit state.
    tensor<double, host_space> x3 = guidance_batch<double>(6, 1.0);
    guidance::apg_state<double, host_space> state;
    for (std::size_t i = 0; i < sampler.num_steps(); ++i) {
        const noise_condition level = sampler.model_level(i);
        const tensor<double, host_space> c = run(model, x3, level, class_labels(labels));
        const tensor<double, host_space> u = run(model, x3, level, models::no_condition{});
        tensor<double, host_space> g(x3.shape());
        guidance::apg_combine(g.view(), c.cview(), u.cview(), 3.0, cfg_formula::diffusers, guided.options().apg, &state);
        sampler.step(g.cview(), pt::epsilon, i, x3.view(), rng);
    }
    CHECK(max_diff(x1, x3) <= 1e-12);
    // A run that begins later (img2img: begin index 3) after a full run restarts the buffer too: it equals
    // the same partial run with a fresh wrapper.
    const auto fresh = guidance::cfg(model, guided.options());
    sampler.set_begin_index(3);
    tensor<double, host_space> x4 = guidance_batch<double>(6, 1.0), x5 = x4;
    samplers::sample(guided, sampler, x4, rng, {}, cond);
    samplers::sample(fresh, sampler, x5, rng, {}, cond);
    CHECK(bitwise_equal(x4, x5));
    // ... and so does one that begins after the previous run's last step (another number of steps).
    sampler.set_timesteps(30);
    sampler.set_begin_index(20);
    const auto fresh2 = guidance::cfg(model, guided.options());
    tensor<double, host_space> x6 = guidance_batch<double>(6, 1.0), x7 = x6;
    samplers::sample(guided, sampler, x6, rng, {}, cond);
    samplers::sample(fresh2, sampler, x7, rng, {}, cond);
    CHECK(bitwise_equal(x6, x7));
    // A copy has its own buffer: interleaving two runs on a wrapper and its copy equals two fresh runs.
    sampler.set_timesteps(8);
    const auto copy = guided;
    tensor<double, host_space> y1 = guidance_batch<double>(6, 1.0), y2 = y1;
    for (std::size_t i = 0; i < sampler.num_steps(); ++i) {
        noise_condition level = sampler.model_level(i);
        level.step = i;
        level.num_steps = sampler.num_steps();
        for (auto [w, y] : {std::pair{&guided, &y1}, std::pair{&copy, &y2}}) {
            tensor<double, host_space> g(y->shape());
            (*w)(g.view(), y->cview(), level, cond);
            sampler.step(g.cview(), pt::epsilon, i, y->view(), rng);
        }
    }
    CHECK(bitwise_equal(y1, x1));
    CHECK(bitwise_equal(y2, x1));
}

TEST_CASE("model_pair: CFG between two models given the same condition (autoguidance)") {
    const analytic::gaussian_mixture mix = guidance_mixture();
    const exact_mixture_denoiser good(mix, pt::sample), weak(mix, pt::epsilon);  // two "networks"
    const guidance::model_pair pair(good, weak);
    using pc = guidance::paired_condition<class_labels>;
    const guidance::cfg_condition<pc> cond{pc{guidance::pair_member::first, labels},
                                           pc{guidance::pair_member::second, labels}};
    const tensor<double, host_space> x = guidance_batch<double>(6);
    const noise_condition level = noise_condition::vp(0.3);
    // Both are the same exact model in different parametrisations: any weight gives the conditional model.
    const tensor<double, host_space> g = run(guidance::cfg(pair, {.weight = 2.5}), x, level, cond);
    const tensor<double, host_space> c = run(good, x, level, class_labels(labels));
    CHECK(max_diff(g, c) <= 1e-12);
}

TEST_CASE("cfg: intervals in steps and in σ, and per-step weight schedules") {
    const exact_mixture_denoiser model(guidance_mixture(), pt::epsilon);
    std::vector<std::int64_t> batches;
    const recording<exact_mixture_denoiser> rec{&model, &batches};
    const std::vector<int> nulls = guidance::null_labels(6, model.null_class_label());
    const cfg_condition<class_labels> cond{labels, nulls};
    samplers::ddim_sampler sampler(schedules::discrete_schedule::named("linear", 1000));
    sampler.set_timesteps(10);
    philox_rng rng(1);
    SUBCASE("steps: diffusers' int(start·N) <= i < int(stop·N)") {
        tensor<double, host_space> x = guidance_batch<double>(6, 1.0);
        samplers::sample(guidance::cfg(rec, {.weight = 3.0, .interval = guidance::guidance_interval::steps(0.25, 0.75)}),
                         sampler, x, rng, {}, cond);
        // int(2.5) = 2 ... int(7.5) = 7: steps 2..6 guided (2B calls)
        const std::vector<std::int64_t> expect = {6, 6, 12, 12, 12, 12, 12, 6, 6, 6};
        CHECK(batches == expect);
    }
    SUBCASE("σ: lo < σ <= hi") {
        tensor<double, host_space> x = guidance_batch<double>(6, 1.0);
        const double lo = sampler.model_level(6).sigma(), hi = sampler.model_level(2).sigma();
        samplers::sample(guidance::cfg(rec, {.weight = 3.0, .interval = guidance::guidance_interval::sigmas(lo, hi)}),
                         sampler, x, rng, {}, cond);
        const std::vector<std::int64_t> expect = {6, 6, 12, 12, 12, 12, 6, 6, 6, 6};
        CHECK(batches == expect);
    }
    SUBCASE("weights: linear and cosine ramps, tables, functions; the identity weight skips the uncond call") {
        const auto lin = guidance::guidance_weight::linear(1.0, 5.5);
        const auto cosw = guidance::guidance_weight::cosine(1.0, 5.0);
        noise_condition l = sampler.model_level(0);
        l.num_steps = 10;
        for (std::size_t i = 0; i < 10; ++i) {
            l.step = i;
            DIFFUSE_CHECK_CLOSE(lin.at(l), 1.0 + 0.5 * double(i), 1e-15, 0.0);
            DIFFUSE_CHECK_CLOSE(cosw.at(l), 5.0 - 4.0 * 0.5 * (1 + std::cos(M_PI * double(i) / 9.0)), 1e-14, 0.0);
        }
        tensor<double, host_space> x = guidance_batch<double>(6, 1.0);
        samplers::sample(guidance::cfg(rec, {.weight = lin}), sampler, x, rng, {}, cond);
        CHECK(batches.front() == 6);  // w_0 = 1: the conditional model alone
        CHECK(batches.back() == 12);
        const auto f = guidance::guidance_weight::function([](const noise_condition& lv) { return lv.sigma() > 1 ? 2.0 : 1.0; });
        l.step = 0;
        CHECK(f.at(l) == (l.sigma() > 1 ? 2.0 : 1.0));
        const auto table = guidance::guidance_weight::per_step({1, 2, 3});
        l.step = 1;
        DIFFUSE_CHECK_ERROR(table.at(l), "per_step: table.size() = 3", "level.num_steps = 10");
    }
}

TEST_CASE("cfg: errors name the argument, its value and what is allowed") {
    const exact_mixture_denoiser model(guidance_mixture(), pt::epsilon);
    DIFFUSE_CHECK_ERROR(guidance::cfg(model, {.weight = -0.5}), "weight = -0.5", ">= 0");
    DIFFUSE_CHECK_ERROR(guidance::cfg(model, {.weight = -1.5, .formula = cfg_formula::original}), "weight = -1.5",
                        ">= −1");
    DIFFUSE_CHECK_ERROR(guidance::cfg(model, {.weight = std::nan("")}), "weight = nan", "finite");
    DIFFUSE_CHECK_ERROR(guidance::cfg(model, {.weight = INFINITY}), "weight = inf", "finite");
    DIFFUSE_CHECK_ERROR(guidance::cfg(model, {.guidance_rescale = -0.1}), "guidance_rescale = -0.1", "[0, 1]");
    DIFFUSE_CHECK_ERROR(guidance::cfg(model, {.apg = {.eta = -1.0}}), "apg.eta = -1", ">= 0");
    DIFFUSE_CHECK_ERROR(guidance::cfg(model, {.zero_init_steps = 2}), "zero_init_steps = 2", "zero_star");
    DIFFUSE_CHECK_ERROR(guidance::guidance_interval::steps(0.8, 0.2), "start = 0.8", "<= stop");
    DIFFUSE_CHECK_ERROR(guidance::guidance_interval::steps(-0.1, 0.5), "start = -0.1", "[0, 1]");
    DIFFUSE_CHECK_ERROR(guidance::guidance_interval::steps(0.1, 1.5), "stop = 1.5", "[0, 1]");
    DIFFUSE_CHECK_ERROR(guidance::guidance_interval::sigmas(2.0, 1.0), "hi = 1", "> lo = 2");
    DIFFUSE_CHECK_ERROR(guidance::guidance_interval::sigmas(-1.0, 1.0), "lo = -1", ">= 0");

    const tensor<double, host_space> x = guidance_batch<double>(6);
    const std::vector<int> nulls = guidance::null_labels(6, model.null_class_label());
    const std::vector<int> five = {0, 1, 2, 0, 1};
    const noise_condition level = noise_condition::vp(0.5);
    // a condition batch that does not match the input batch
    DIFFUSE_CHECK_ERROR(run(guidance::cfg(model, {.weight = 2.0}), x, level, cfg_condition<class_labels>{five, nulls}),
                        "cond", "labels.size() = 5", "B = 6");
    DIFFUSE_CHECK_ERROR(run(guidance::cfg(model, {.weight = 2.0}), x, level, cfg_condition<class_labels>{labels, five}),
                        "uncond", "labels.size() = 5", "B = 6");
    // labels held in vectors: 7 + 5 would join to 2B = 12 and pass the model's own check
    const std::vector<int> seven = {0, 1, 2, 0, 1, 2, 0};
    DIFFUSE_CHECK_ERROR(run(guidance::cfg(model, {.weight = 2.0}), x, level, cfg_condition<std::vector<int>>{seven, five}),
                        "cond: labels.size() = 7", "B = 6");
    // a weight schedule that goes negative at some step
    const auto bad = guidance::cfg(model, {.weight = guidance::guidance_weight::linear(2.0, -1.0)});
    noise_condition l = level;
    l.step = 9;
    l.num_steps = 10;
    DIFFUSE_CHECK_ERROR(run(bad, x, l, cfg_condition<class_labels>{labels, nulls}), "guidance weight at step 9 = -1",
                        ">= 0");
    // step-based options without a step index
    const auto steps_only = guidance::cfg(model, {.weight = 2.0, .interval = guidance::guidance_interval::steps(0, 0.5)});
    DIFFUSE_CHECK_ERROR(run(steps_only, x, level, cfg_condition<class_labels>{labels, nulls}), "level.step",
                        "samplers::sample sets it");
}
