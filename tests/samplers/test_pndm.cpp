// samplers/pndm.hpp: PNDM / PLMS against a transcription of diffusers' PNDMScheduler loops
// (PRK and skip_prk, both previous-timestep rules, both histories), diffusers' full-loop oracles
// (test_scheduler_pndm.py; peers.md c.1), the transfer = DDIM identity, convergence orders on a
// logSNR grid (second order, closed_forms C4.5) and on a grid uniform in ρ = σ/α (fourth order
// with the PRK start), restart rules and argument errors.
#include <diffuse/samplers/pndm.hpp>

#include <diffuse/analytic/gaussian.hpp>
#include <diffuse/core/eigen_adapter.hpp>
#include <diffuse/models/exact.hpp>
#include <diffuse/samplers/ddim.hpp>
#include <diffuse/schedules/discrete_schedule.hpp>

#include "samplers/diffusers_dummy.hpp"
#include "samplers/fixtures.hpp"
#include "samplers/order_fixtures.hpp"
#include "support/check.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

using namespace diffuse;
using namespace diffuse::samplers;
using diffuse::models::exact_gaussian_denoiser;
using pt = prediction_type;
using schedules::discrete_schedule;

namespace {

using namespace diffuse::test;

/// A table uniform in ρ = √((1−ᾱ)/ᾱ): T = 12801, ρ from 0.3 (t = 0) to 1.5 (t = 12800). The range
/// is where e changes most for the test Gaussian, so the start method shows in the error.
discrete_schedule rho_table() {
    std::vector<double> ab(12801);
    for (int k = 0; k <= 12800; ++k) {
        const double rho = 0.3 + (1.5 - 0.3) * k / 12800.0;
        ab[static_cast<std::size_t>(k)] = 1.0 / (1.0 + rho * rho);
    }
    return discrete_schedule::from_alphas_cumprod(ab);
}

/// Max error against the exact flow from t = Tmax to ᾱ_0 (grid t_k = (N − k)·Tmax/N, final ᾱ_0).
double pndm_error(const discrete_schedule& sched, pndm_config cfg, int n, pt type = pt::epsilon) {
    const auto g = gaussian3();
    const int Tmax = sched.num_train_timesteps() - 1;
    const Eigen::MatrixXd xT = marginal_points(g, sched.alpha(Tmax), sched.sigma(Tmax), 7);
    const Eigen::MatrixXd exact = g.pf_ode_flow(xT, sched.alpha(Tmax), sched.sigma(Tmax), sched.alpha(0), sched.sigma(0));
    cfg.set_alpha_to_one = false;
    pndm_sampler s(sched, cfg);
    std::vector<int> grid;
    for (int k = 0; k < n; ++k) grid.push_back((n - k) * (Tmax / n));
    s.set_timesteps(grid);
    auto x = to_tensor(xT);
    philox_rng rng(0);
    sample(exact_gaussian_denoiser(g, type), s, x, rng);
    return (to_matrix(x) - exact).cwiseAbs().maxCoeff();
}

struct ladder {
    std::vector<double> errs;
    double slope;
};

ladder pndm_ladder(const discrete_schedule& sched, const pndm_config& cfg, const std::vector<int>& ns,
                   pt type = pt::epsilon) {
    ladder l;
    for (int n : ns) l.errs.push_back(pndm_error(sched, cfg, n, type));
    l.slope = last4_order(ns, l.errs);
    return l;
}

std::string describe(const std::vector<int>& ns, const ladder& l) {
    std::ostringstream os;
    os.precision(3);
    for (std::size_t i = 0; i < ns.size(); ++i) os << "N=" << ns[i] << ": " << l.errs[i] << "  ";
    os << "slope " << l.slope;
    return os.str();
}

// ---- A transcription of diffusers' PNDMScheduler (set_timesteps, step_prk, step_plms,
// _get_prev_sample) and of its tests' full_loop, in Eigen, with an exact Gaussian model. ----

struct diffusers_pndm {
    const discrete_schedule& sched;
    bool skip_prk;
    bool set_alpha_to_one;
    pt type;  // epsilon or v_prediction
    int T, N;
    std::vector<int> timesteps_asc, prk, plms;
    Eigen::MatrixXd cur_model_output, cur_sample;
    bool has_cur_sample = false, has_cur_out = false;
    std::vector<Eigen::MatrixXd> ets;
    int counter = 0;

    diffusers_pndm(const discrete_schedule& s, bool skip, bool one, pt t, int n, schedules::spacing sp, int offset)
        : sched(s), skip_prk(skip), set_alpha_to_one(one), type(t), T(s.num_train_timesteps()), N(n) {
        const std::vector<int> desc = schedules::ddim_timesteps(T, N, sp, offset);
        timesteps_asc.assign(desc.rbegin(), desc.rend());
        const int K = static_cast<int>(timesteps_asc.size());
        if (skip_prk) {
            std::vector<int> v(timesteps_asc.begin(), timesteps_asc.end() - 1);  // [:-1]
            if (K >= 2) v.push_back(timesteps_asc[static_cast<std::size_t>(K - 2)]);  // [-2:-1]
            v.push_back(timesteps_asc.back());                                      // [-1:]
            plms.assign(v.rbegin(), v.rend());
        } else {
            std::vector<int> a;  // _timesteps[-4:].repeat(2) + tile([0, T // N // 2], 4)
            for (int k = K - 4; k < K; ++k) {
                a.push_back(timesteps_asc[static_cast<std::size_t>(k)]);
                a.push_back(timesteps_asc[static_cast<std::size_t>(k)] + T / N / 2);
            }
            a.pop_back();  // [:-1]
            std::vector<int> b;  // .repeat(2)[1:-1]
            for (int v : a) {
                b.push_back(v);
                b.push_back(v);
            }
            b.erase(b.begin());
            b.pop_back();
            prk.assign(b.rbegin(), b.rend());
            for (int k = K - 4; k >= 0; --k) plms.push_back(timesteps_asc[static_cast<std::size_t>(k)]);  // [:-3][::-1]
        }
    }
    double ab(int t) const { return t >= 0 ? sched.alpha_bar(t) : (set_alpha_to_one ? 1.0 : sched.alpha_bar(0)); }
    Eigen::MatrixXd model(const analytic::gaussian& g, const Eigen::MatrixXd& x, int t) const {
        const double a = sched.alpha(t), s = sched.sigma(t);
        const Eigen::MatrixXd eps = g.eps_mean(x, a, s);
        if (type == pt::epsilon) return eps;
        return Eigen::MatrixXd(a * eps - s * g.x0_mean(x, a, s));  // v = a·eps − s·x0 (VP)
    }
    Eigen::MatrixXd prev_sample(const Eigen::MatrixXd& sample, int t, int prev, Eigen::MatrixXd m) const {
        const double at = ab(t), ap = ab(prev), bt = 1 - at, bp = 1 - ap;
        if (type == pt::v_prediction) m = std::sqrt(at) * m + std::sqrt(bt) * sample;
        const double sample_coeff = std::sqrt(ap / at);
        const double denom = at * std::sqrt(bp) + std::sqrt(at * bt * ap);
        return sample_coeff * sample - (ap - at) * m / denom;
    }
    Eigen::MatrixXd step_prk(Eigen::MatrixXd m, int timestep, const Eigen::MatrixXd& sample) {
        const int diff = counter % 2 ? 0 : T / N / 2;
        const int prev = timestep - diff;
        timestep = prk[static_cast<std::size_t>(counter / 4 * 4)];
        if (counter % 4 == 0) {
            cur_model_output = (has_cur_out ? cur_model_output : Eigen::MatrixXd::Zero(m.rows(), m.cols())) + m / 6;
            has_cur_out = true;
            ets.push_back(m);
            cur_sample = sample;
            has_cur_sample = true;
        } else if ((counter - 1) % 4 == 0 || (counter - 2) % 4 == 0) {
            cur_model_output += m / 3;
        } else {
            m = cur_model_output + m / 6;
            has_cur_out = false;
        }
        const Eigen::MatrixXd src = has_cur_sample ? cur_sample : sample;
        ++counter;
        return prev_sample(src, timestep, prev, m);
    }
    Eigen::MatrixXd step_plms(Eigen::MatrixXd m, int timestep, Eigen::MatrixXd sample) {
        int prev = timestep - T / N;
        if (counter != 1) {
            if (ets.size() > 3) ets.erase(ets.begin(), ets.end() - 3);
            ets.push_back(m);
        } else {
            prev = timestep;
            timestep = timestep + T / N;
        }
        const std::size_t n = ets.size();
        if (n == 1 && counter == 0) {
            cur_sample = sample;
            has_cur_sample = true;
        } else if (n == 1 && counter == 1) {
            m = (m + ets.back()) / 2;
            sample = cur_sample;
            has_cur_sample = false;
        } else if (n == 2) {
            m = (3 * ets[n - 1] - ets[n - 2]) / 2;
        } else if (n == 3) {
            m = (23 * ets[n - 1] - 16 * ets[n - 2] + 5 * ets[n - 3]) / 12;
        } else {
            m = (55 * ets[n - 1] - 59 * ets[n - 2] + 37 * ets[n - 3] - 9 * ets[n - 4]) / 24;
        }
        ++counter;
        return prev_sample(sample, timestep, prev, m);
    }
    Eigen::MatrixXd full_loop(const analytic::gaussian& g, Eigen::MatrixXd x) {
        for (int t : prk) x = step_prk(model(g, x, t), t, x);
        for (int t : plms) x = step_plms(model(g, x, t), t, x);
        return x;
    }
};

}  // namespace

TEST_CASE("pndm transfer is DDIM eta 0 in a cancellation-free form") {
    // Eq. 9 vs ddim_coefficients for an eps model: equal to rounding (1e-15 relative).
    for (auto [ab, abp] : {std::pair{0.02, 0.05}, std::pair{0.5, 0.9}, std::pair{0.9991, 0.9999}, std::pair{0.3, 1.0}}) {
        const pndm_transfer t = pndm_transfer_coefficients(ab, abp);
        const ddim_coeffs d = ddim_coefficients(pt::epsilon, std::sqrt(ab), std::sqrt(1 - ab), abp, 0.0);
        DIFFUSE_CHECK_CLOSE(t.c_x, d.c_x, 0.0, 1e-15);
        DIFFUSE_CHECK_CLOSE(t.c_e, d.c_m, 1e-16, 1e-13);
    }
    // ᾱ' = ᾱ (diffusers' last step from t = 0 to ᾱ_0): the identity.
    const pndm_transfer id = pndm_transfer_coefficients(0.9999, 0.9999);
    CHECK(id.c_x == 1.0);
    CHECK(id.c_e == 0.0);
}

TEST_CASE("pndm timesteps match diffusers, PRK with steps_offset and skip_prk") {
    const discrete_schedule sched = discrete_schedule::named("linear", 1000);
    pndm_sampler s(sched, pndm_config{.steps_offset = 1});
    s.set_timesteps(10);
    // test_scheduler_pndm.py::test_steps_offset.
    CHECK(s.timesteps() == std::vector<int>{901, 851, 851, 801, 801, 751, 751, 701, 701, 651, 651, 601, 601, 501, 401,
                                            301, 201, 101, 1});
    CHECK(s.num_steps() == 19u);
    pndm_sampler p(sched, pndm_config{.skip_prk_steps = true});
    p.set_timesteps(10);
    CHECK(p.timesteps() == std::vector<int>{900, 800, 800, 700, 600, 500, 400, 300, 200, 100, 0});
    CHECK(p.plan()[1].stage == pndm_stage::plms_heun);
    CHECK(p.plan()[1].t_from == 900);
    CHECK(p.plan().back().t_to == -1);
    p.set_timesteps(1);
    CHECK(p.timesteps() == std::vector<int>{0});
}

TEST_CASE("pndm equals a transcription of diffusers' PNDMScheduler loops") {
    // Same arithmetic in a different order: measured max 5.3e-15 on O(1) values over <= 24
    // steps; bound 1e-12 (factor 100 of margin).
    const auto g = gaussian3();
    const discrete_schedule sched = discrete_schedule::named("linear", 1000);
    double worst = 0.0;
    for (bool skip : {false, true})
        for (pt type : {pt::epsilon, pt::v_prediction})
            for (auto [sp, n] : {std::pair{schedules::spacing::leading, 10}, std::pair{schedules::spacing::leading, 7},
                                 std::pair{schedules::spacing::linspace, 10}, std::pair{schedules::spacing::trailing, 15}})
                for (bool one : {false, true}) {
                    diffusers_pndm ref(sched, skip, one, type, n, sp, 0);
                    pndm_config cfg{.skip_prk_steps = skip, .set_alpha_to_one = one, .timestep_spacing = sp,
                                    .previous = prev_rule::diffusers_subtract, .history = pndm_history::model_output,
                                    .prediction = type};
                    pndm_sampler s(sched, cfg);
                    s.set_timesteps(n);
                    std::vector<int> ts = ref.prk;
                    ts.insert(ts.end(), ref.plms.begin(), ref.plms.end());
                    CHECK(s.timesteps() == ts);
                    const int t0 = s.timesteps().front();
                    const Eigen::MatrixXd xT = marginal_points(g, sched.alpha(t0), sched.sigma(t0), 3);
                    auto x = to_tensor(xT);
                    philox_rng rng(0);
                    sample(exact_gaussian_denoiser(g, type), s, x, rng);
                    const double err = (to_matrix(x) - ref.full_loop(g, xT)).cwiseAbs().maxCoeff();
                    worst = std::max(worst, err);
                    CHECK_MESSAGE(err < 1e-12, "skip_prk " << skip << " " << process::to_string(type) << " "
                                                           << schedules::to_string(sp) << " N = " << n
                                                           << " set_alpha_to_one " << one << ": " << err);
                }
    MESSAGE("max |pndm_sampler − diffusers transcription| over 32 configurations: " << worst);
}

TEST_CASE("pndm lookup rule equals diffusers_subtract on leading grids, and epsilon history equals model_output for eps") {
    const auto g = gaussian3();
    const discrete_schedule sched = discrete_schedule::named("linear", 1000);
    for (bool skip : {false, true}) {
        pndm_sampler a(sched, pndm_config{.skip_prk_steps = skip});
        pndm_sampler b(sched, pndm_config{.skip_prk_steps = skip, .previous = prev_rule::diffusers_subtract,
                                          .history = pndm_history::model_output});
        a.set_timesteps(20);
        b.set_timesteps(20);
        const Eigen::MatrixXd xT = marginal_points(g, sched.alpha(950), sched.sigma(950), 4);
        auto x = to_tensor(xT), y = to_tensor(xT);
        philox_rng rng(0);
        sample(exact_gaussian_denoiser(g, pt::epsilon), a, x, rng);
        sample(exact_gaussian_denoiser(g, pt::epsilon), b, y, rng);
        CHECK((to_matrix(x) - to_matrix(y)).cwiseAbs().maxCoeff() < 1e-13);  // same steps, same order: rounding only
        // v-prediction: the two histories differ (diffusers combines raw v's): report the size.
        pndm_sampler c(sched, pndm_config{.skip_prk_steps = skip, .history = pndm_history::model_output});
        c.set_timesteps(20);
        auto u = to_tensor(xT), v = to_tensor(xT);
        sample(exact_gaussian_denoiser(g, pt::v_prediction), a, u, rng);
        sample(exact_gaussian_denoiser(g, pt::v_prediction), c, v, rng);
        const double dv = (to_matrix(u) - to_matrix(v)).cwiseAbs().maxCoeff();
        const double de = (to_matrix(u) - to_matrix(x)).cwiseAbs().maxCoeff();
        MESSAGE("skip_prk " << skip << ", v model: |eps history − model_output history| = " << dv
                            << ", |eps history (v model) − eps model| = " << de);
        CHECK(de < 1e-12);  // epsilon history: independent of the declared type (conversion rounding only)
        CHECK(dv > 1e-6);
    }
}

TEST_CASE_TEMPLATE("pndm reproduces diffusers test_full_loop oracles", T, float, double) {
    // test_scheduler_pndm.py (PRK, leading, N = 10, linear 1e-4..0.02 unless stated); tolerance as
    // diffusers: 1e-2 on sum |x|, 1e-3 on mean |x|. The v-prediction oracle needs diffusers'
    // history (raw v's combined, converted at the transfer source).
    using namespace diffuse::test::diffusers;
    struct oracle {
        pt type;
        double beta_start;
        bool set_alpha_to_one;
        double sum, mean;
    };
    for (const oracle& o : {oracle{pt::epsilon, 1e-4, false, 198.1318, 0.2580}, oracle{pt::v_prediction, 1e-4, false, 67.3986, 0.0878},
                            oracle{pt::epsilon, 0.01, true, 230.0399, 0.2995}, oracle{pt::epsilon, 0.01, false, 186.9482, 0.2434}}) {
        pndm_config cfg{.set_alpha_to_one = o.set_alpha_to_one, .history = pndm_history::model_output, .prediction = o.type};
        pndm_sampler s(discrete_schedule::named("linear", 1000, o.beta_start, 0.02), cfg);
        s.set_timesteps(10);
        auto x = dummy_sample_deter<T>();
        philox_rng rng(0);
        sample(dummy_model{o.type}, s, x, rng);
        MESSAGE("PNDM " << process::to_string(o.type) << " beta_start " << o.beta_start << " set_alpha_to_one "
                        << o.set_alpha_to_one << ": sum " << abs_sum(x) << " mean " << abs_sum(x) / 768.0);
        DIFFUSE_CHECK_CLOSE(abs_sum(x), o.sum, 1e-2, 0.0);
        DIFFUSE_CHECK_CLOSE(abs_sum(x) / 768.0, o.mean, 1e-3, 0.0);
    }
}

TEST_CASE("pndm and plms are second order on a logSNR grid") {
    // closed_forms C4.5: PLMS is exactly second order on a logSNR grid (measured 2.00–2.04 there).
    // Bands ± 0.15 about 2.
    const discrete_schedule sched = logsnr_table();
    const std::vector<int> ns = {10, 20, 40, 80, 160, 320};
    for (bool skip : {true, false}) {
        const ladder l = pndm_ladder(sched, pndm_config{.skip_prk_steps = skip}, ns);
        MESSAGE(std::string(skip ? "PLMS (skip_prk)" : "PNDM (PRK start)") << " logSNR grid: " << describe(ns, l));
        CHECK(l.slope > 1.85);
        CHECK(l.slope < 2.2);
    }
}

TEST_CASE("pndm with diffusers' model_output history is first order for a v-prediction model") {
    // diffusers combines raw v's and converts the combination with the coefficients (√ᾱ, √(1−ᾱ))
    // and the state of ONE point (the transfer source), whereas e = √ᾱ·v + √(1−ᾱ)·x holds at each
    // evaluation point with its own ᾱ and x: the combined e is off by O(h) per step (local O(h²)),
    // so the method is first order (measured 0.99 for PRK and skip_prk, N = 40..320); the
    // epsilon history keeps second order (2.0). Bands ± 0.15.
    const discrete_schedule sched = logsnr_table();
    const std::vector<int> ns = {10, 20, 40, 80, 160, 320};
    for (bool skip : {false, true}) {
        const ladder raw = pndm_ladder(sched, pndm_config{.skip_prk_steps = skip, .history = pndm_history::model_output},
                                       ns, pt::v_prediction);
        const ladder eps = pndm_ladder(sched, pndm_config{.skip_prk_steps = skip}, ns, pt::v_prediction);
        MESSAGE("skip_prk " << skip << ", v model, model_output history: " << describe(ns, raw));
        MESSAGE("skip_prk " << skip << ", v model, epsilon history: " << describe(ns, eps));
        CHECK(std::abs(raw.slope - 1.0) < 0.15);
        CHECK(std::abs(eps.slope - 2.0) < 0.15);
    }
}

TEST_CASE("pndm is fourth order on a grid uniform in rho, plms with the Heun start third") {
    // On a ρ-uniform grid the transfer is an Euler step of d(x/a)/dρ = e, PRK is classical RK4
    // (local O(h⁵)) and the PLMS steps are AB4: fourth order (closed_forms C4.5 measured 3.92
    // with an exact start). The skip_prk start (Euler predictor + Heun: local O(h³)) and its AB2
    // step (local O(h³)) limit PLMS to third order. Pairwise slopes N = 80..640: PRK 3.91, 3.96,
    // 3.98; skip_prk 2.97, 2.99, 2.99. Bands: ± 0.3.
    const discrete_schedule sched = rho_table();
    const std::vector<int> ns = {20, 40, 80, 160, 320, 640};
    const ladder prk = pndm_ladder(sched, pndm_config{}, ns);
    MESSAGE("PNDM (PRK start) rho grid: " << describe(ns, prk));
    CHECK(std::abs(prk.slope - 4.0) < 0.3);
    const ladder plms = pndm_ladder(sched, pndm_config{.skip_prk_steps = true}, ns);
    MESSAGE("PLMS (skip_prk) rho grid: " << describe(ns, plms));
    CHECK(std::abs(plms.slope - 3.0) < 0.3);
}

TEST_CASE("pndm restarts at a PLMS step and refuses a start inside the warm-up") {
    const auto g = gaussian3();
    const discrete_schedule sched = discrete_schedule::named("linear", 1000);
    pndm_sampler s(sched);
    s.set_timesteps(20);
    DIFFUSE_CHECK_ERROR(s.set_begin_index(5), "set_begin_index", "PLMS step", "12");
    CHECK(s.begin_index() == 0u);
    s.set_begin_index(12);
    CHECK(s.begin_index() == 12u);
    pndm_sampler p(sched, pndm_config{.skip_prk_steps = true});
    p.set_timesteps(20);
    DIFFUSE_CHECK_ERROR(p.set_begin_index(1), "set_begin_index", "Heun");
    p.set_begin_index(6);
    // Running twice from the same begin index gives the same result (the history restarts).
    const int t = p.timesteps()[6];
    const Eigen::MatrixXd x6 = marginal_points(g, sched.alpha(t), sched.sigma(t), 5);
    auto x = to_tensor(x6), y = to_tensor(x6);
    philox_rng rng(0);
    sample(exact_gaussian_denoiser(g, pt::epsilon), p, x, rng);
    sample(exact_gaussian_denoiser(g, pt::epsilon), p, y, rng);
    CHECK((to_matrix(x) - to_matrix(y)).cwiseAbs().maxCoeff() == 0.0);
}

TEST_CASE("pndm rejects bad arguments with readable errors") {
    const discrete_schedule sched = discrete_schedule::named("linear", 1000);
    pndm_sampler s(sched);
    DIFFUSE_CHECK_ERROR(s.set_timesteps(3), "num_inference_steps", ">= 4", "skip_prk_steps");
    DIFFUSE_CHECK_ERROR(s.set_timesteps(0), "num_inference_steps");
    DIFFUSE_CHECK_ERROR(s.set_timesteps(1001), "num_inference_steps");
    DIFFUSE_CHECK_ERROR(s.set_timesteps(std::vector<int>{900, 950, 100, 0}), "timesteps[1]", "decreasing");
    DIFFUSE_CHECK_ERROR(s.set_timesteps(std::vector<int>{1000, 900, 800, 700}), "timesteps[0]", "[0, 999]");
    DIFFUSE_CHECK_ERROR(pndm_transfer_coefficients(1.0, 0.5), "alpha_bar", "(0, 1)");
    DIFFUSE_CHECK_ERROR(pndm_transfer_coefficients(0.5, 0.0), "alpha_bar_prev", "(0, 1]");
    DIFFUSE_CHECK_ERROR(adams_bashforth_weights(5), "Adams", "[1, 4]");
    tensor<double, host_space> x(shape{2, 3}, 0.0), m(shape{2, 3}, 0.0), bad(shape{3, 2}, 0.0);
    philox_rng rng(0);
    DIFFUSE_CHECK_ERROR(s.step(m.cview(), 0, x.view(), rng), "step index", "set_timesteps");  // before setup
    s.set_timesteps(10);
    DIFFUSE_CHECK_ERROR(s.step(m.cview(), 19, x.view(), rng), "step index", "[0, 19)");
    DIFFUSE_CHECK_ERROR(s.step(m.cview(), 3, x.view(), rng), "step index", "in order");
    DIFFUSE_CHECK_ERROR(s.step(bad.cview(), 0, x.view(), rng), "shape");
    DIFFUSE_CHECK_ERROR(s.step(x.cview(), 0, x.view(), rng), "aliases");
    s.step(m.cview(), 0, x.view(), rng);
    DIFFUSE_CHECK_ERROR(s.step(m.cview(), 2, x.view(), rng), "the next step 1");
    DIFFUSE_CHECK_ERROR(s.set_begin_index(19), "set_begin_index", "[0, 19)");
    // diffusers_subtract with a grid whose stride sends a PRK half-step source out of range.
    pndm_sampler t(sched, pndm_config{.skip_prk_steps = true, .previous = prev_rule::diffusers_subtract});
    DIFFUSE_CHECK_ERROR(t.set_timesteps(std::vector<int>{999, 998}, 2), "source timestep", "[0, 999]");
}
