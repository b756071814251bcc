// samplers/dpm_solver_multistep.hpp (and dpm_solver_common.hpp): the φ-functions and step weights,
// identities (SDE-DPM-Solver++(1) ≡ DDIM(η = 1), VE ≡ VP, k-diffusion's dpmpp_2m / dpmpp_2m_sde /
// dpmpp_3m_sde forms), diffusers' DPMSolverMultistepScheduler oracles (peers.md c.1 #3), the
// order-per-step rules, the history (begin_index, warm_start), thresholding, noise draws, errors.
// Orders: test_dpm_solver_multistep_order.cpp; SDE moments: test_dpm_solver_multistep_sde.cpp.
#include <diffuse/samplers/dpm_solver_multistep.hpp>
#include <diffuse/samplers/dpm_solver_common.hpp>  // phi(), parse_dpm_algorithm: tested here

#include <diffuse/analytic/gaussian.hpp>
#include <diffuse/core/eigen_adapter.hpp>
#include <diffuse/models/exact.hpp>
#include <diffuse/samplers/ddim.hpp>
#include <diffuse/schedules/discrete_schedule.hpp>
#include <diffuse/schedules/sigmas.hpp>
#include <diffuse/schedules/timesteps.hpp>

#include "samplers/diffusers_dummy.hpp"
#include "samplers/fixtures.hpp"
#include "support/check.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

using namespace diffuse;
using namespace diffuse::samplers;
using diffuse::models::exact_gaussian_denoiser;
using diffuse::test::eps;
using pt = prediction_type;
using schedules::discrete_schedule;

namespace {

using namespace diffuse::test;

using diffusers::abs_mean;
using diffusers::dummy_model;
using diffusers::dummy_noise_deter;
using diffusers::dummy_sample_deter;

/// The config of diffusers' test_scheduler_dpm_multi.py get_scheduler_config().
dpm_multistep_config diffusers_test_config() {
    dpm_multistep_config c;
    c.order = 2;
    c.algorithm = dpm_algorithm::dpmsolver_pp;
    c.solver_type = dpm_solver_type::midpoint;
    c.lower_order_final = false;
    c.euler_at_final = false;
    return c;
}

double max_diff(const Eigen::MatrixXd& a, const Eigen::MatrixXd& b) { return (a - b).cwiseAbs().maxCoeff(); }

}  // namespace

TEST_CASE("phi functions agree with their closed forms and limits") {
    // φ_k(0) = 1/k!; series (|z| < 1) and closed form (|z| >= 1) meet continuously at |z| = 1:
    // both are accurate to a few ulps there (the closed form loses <= 3 bits at |z| = 1), 1e-14 rel.
    CHECK(phi(1, 0.0) == 1.0);
    CHECK(phi(2, 0.0) == 0.5);
    DIFFUSE_CHECK_CLOSE(phi(3, 0.0), 1.0 / 6.0, 0.0, 2 * eps<double>);
    for (double z : {-1.0, 1.0}) {
        const double below = std::nextafter(z, 0.0);
        for (int k = 1; k <= 3; ++k) DIFFUSE_CHECK_CLOSE(phi(k, below), phi(k, z), 0.0, 1e-14);
    }
    // Against long double closed forms where they are accurate (|z| >= 0.5: cancellation <= 5
    // bits of the 64-bit mantissa): 1e-14 relative.
    for (double z : {-30.0, -3.0, -0.7, 0.5, 0.9, 2.5, 10.0}) {
        const long double zl = z, e = std::expm1(zl);
        DIFFUSE_CHECK_CLOSE(phi(1, z), static_cast<double>(e / zl), 0.0, 1e-14);
        DIFFUSE_CHECK_CLOSE(phi(2, z), static_cast<double>((e - zl) / (zl * zl)), 0.0, 1e-14);
        DIFFUSE_CHECK_CLOSE(phi(3, z), static_cast<double>((e - zl - zl * zl / 2) / (zl * zl * zl)), 0.0, 1e-14);
    }
    CHECK(phi(3, -std::numeric_limits<double>::infinity()) == 0.0);
    // Small z: φ_3(z) = 1/6 + z/24 + z²/120 + z³/720 + O(z⁴) (the closed form would lose ~log2(6/z²) bits).
    DIFFUSE_CHECK_CLOSE(phi(3, 1e-4), 1.0 / 6 + 1e-4 / 24 + 1e-8 / 120 + 1e-12 / 720, 0.0, 4 * eps<double>);
    DIFFUSE_CHECK_ERROR(phi(4, 0.0), "phi: k", "1, 2 or 3");
    DIFFUSE_CHECK_ERROR(phi(1, std::nan("")), "phi: z");
}

TEST_CASE("dpm step weights equal the peers' closed forms and stay accurate for tiny steps") {
    // The peers' expressions (diffusers / dpm-solver): w_0 = −a'(e^{−h} − 1), w_1 = a'((e^{−h} − 1)/h + 1),
    // w_2 = −a'((e^{−h} − 1 + h)/h² − ½), noise: −s'(e^h − 1), −s'((e^h − 1)/h − 1), −s'((e^h − 1 − h)/h² − ½);
    // SDE (η = 1): X = (s'/s)e^{−h}, w_0 = a'(1 − e^{−2h}), w_1 = a'((1 − e^{−2h})/(−2h) + 1), c_z = s'√(1 − e^{−2h}).
    // At h ≈ 0.37 the closed forms lose <= 4 bits: 1e-13 relative.
    const noise_condition l{0.6, 0.8, {}}, l2 = level_of_sigma(state_space::vp, 0.92);
    const double h = lambda_of(l2) - lambda_of(l), a = l2.a, s = l2.s, em = std::exp(-h), ep = std::exp(h);
    const dpm_weights d = dpm_step_weights(true, l, l2);
    DIFFUSE_CHECK_CLOSE(d.h, std::log(1 / 0.92) - std::log(0.6 / 0.8), 1e-15, 0.0);
    DIFFUSE_CHECK_CLOSE(d.x, s / l.s, 0.0, 2 * eps<double>);
    DIFFUSE_CHECK_CLOSE(d.w[0], -a * (em - 1), 0.0, 1e-13);
    DIFFUSE_CHECK_CLOSE(d.w[1], a * ((em - 1) / h + 1), 0.0, 1e-13);
    DIFFUSE_CHECK_CLOSE(d.w[2], -a * ((em - 1 + h) / (h * h) - 0.5), 0.0, 1e-13);
    CHECK(d.z == 0.0);
    const dpm_weights n = dpm_step_weights(false, l, l2);
    DIFFUSE_CHECK_CLOSE(n.x, a / l.a, 0.0, 2 * eps<double>);
    DIFFUSE_CHECK_CLOSE(n.w[0], -s * (ep - 1), 0.0, 1e-13);
    DIFFUSE_CHECK_CLOSE(n.w[1], -s * ((ep - 1) / h - 1), 0.0, 1e-13);
    DIFFUSE_CHECK_CLOSE(n.w[2], -s * ((ep - 1 - h) / (h * h) - 0.5), 0.0, 1e-13);
    const dpm_weights sw = dpm_step_weights(true, l, l2, 1.0);
    DIFFUSE_CHECK_CLOSE(sw.x, s / l.s * em, 0.0, 4 * eps<double>);
    DIFFUSE_CHECK_CLOSE(sw.w[0], a * (1 - em * em), 0.0, 1e-13);
    DIFFUSE_CHECK_CLOSE(sw.w[1], a * ((1 - em * em) / (-2 * h) + 1), 0.0, 1e-13);
    DIFFUSE_CHECK_CLOSE(sw.z, s * std::sqrt(1 - em * em), 0.0, 1e-13);
    // The SDE third-order weight is a'·H·φ_3(−H), H = 2h ≈ a'·H/6 for small H. (diffusers' sde-dpmsolver++
    // order-3 branch writes a'·((1 − e^{−2h} − 2h)/(2h)² − ½) → −a' instead: docs/samplers/dpm_solver.md §5.)
    DIFFUSE_CHECK_CLOSE(sw.w[2], a * (-(std::exp(-2 * h) - 1 + 2 * h) / (4 * h * h) + 0.5), 0.0, 1e-12);
    // Tiny step h ≈ 1e-7: given h, w_0 = a'(1 − e^{−h}) is exact to a few ulps via expm1 (the
    // diffusers form exp(−h) − 1 would lose ~7 digits), and w_2 = a'·h·φ_3(−h) = a'(h/6)(1 − h/4 + O(h²))
    // to relative h² ≈ 1e-14 (series branch).
    const noise_condition t = level_of_sigma(state_space::vp, 0.92 * std::exp(-1e-7));
    const dpm_weights tiny = dpm_step_weights(true, l2, t);
    const long double hl = tiny.h;
    DIFFUSE_CHECK_CLOSE(tiny.w[0], static_cast<double>(-static_cast<long double>(t.a) * std::expm1(-hl)), 0.0,
                        4 * eps<double>);
    const double naive = -t.a * (std::exp(-tiny.h) - 1.0);
    MESSAGE("h = " << tiny.h << ": relative error of the exp(-h) - 1 form " << std::abs(naive / tiny.w[0] - 1));
    DIFFUSE_CHECK_CLOSE(tiny.w[2], t.a * tiny.h / 6 * (1 - tiny.h / 4), 0.0, 1e-12);
    // σ' = 0: first order only; x' = a'·D (data) or a'(x − s·E)/a (noise).
    const noise_condition zero{1.0, 0.0, {}};
    const dpm_weights dz = dpm_step_weights(true, l, zero), nz = dpm_step_weights(false, l, zero);
    CHECK(dz.x == 0.0);
    CHECK(dz.w[0] == 1.0);
    CHECK(std::isnan(dz.w[1]));
    CHECK(nz.x == 1.0 / 0.6);
    DIFFUSE_CHECK_CLOSE(nz.w[0], -0.8 / 0.6, 0.0, eps<double>);
    DIFFUSE_CHECK_ERROR(dpm_step_weights(true, l2, l), "to level", "[0, σ");
    DIFFUSE_CHECK_ERROR(dpm_step_weights(true, noise_condition{0.0, 1.0, {}}, l), "from level");
    DIFFUSE_CHECK_ERROR(dpm_step_weights(false, l, l2, 0.5), "eta", "noise prediction");
    DIFFUSE_CHECK_ERROR(dpm_step_weights(true, l, l2, -1.0), "eta", ">= 0");
}

TEST_CASE("sde-dpmsolver++ of order 1 with eta 1 equals DDIM eta 1 with the same noise") {
    // closed_forms C1: x' = (s'/s)e^{−h}x + a'(1 − e^{−2h})D + s'√(1 − e^{−2h})z is DDIM's η = 1 step; both
    // draw x.numel() normals per step (also at the last step), so the same seed gives the same z.
    // Tolerance: coefficients agree to ~1e-16 relative; 10 steps, O(1) values: 1e-13.
    const auto g = gaussian3();
    const discrete_schedule sched = discrete_schedule::named("linear", 1000);
    for (pt type : {pt::epsilon, pt::v_prediction}) {
        const exact_gaussian_denoiser model(g, type);
        ddim_sampler d(sched, ddim_config{.eta = 1.0});
        d.set_timesteps(10);
        dpm_multistep_config cfg;
        cfg.order = 1;
        cfg.algorithm = dpm_algorithm::sde_dpmsolver_pp;
        cfg.eta = 1.0;
        dpm_solver_multistep_sampler s(level_sequence::from_timesteps(sched, d.timesteps(), final_level::zero), cfg);
        const noise_condition l0 = d.state_level(0);
        const auto xT = to_tensor(marginal_points(g, l0.a, l0.s, 5));
        auto xd = xT, xs = xT;
        philox_rng r1(77), r2(77);
        sample(model, d, xd, r1);
        sample(model, s, xs, r2);
        CHECK(r1.normal_offset() == r2.normal_offset());
        CHECK(r2.normal_offset() == 10u * 48u);
        const double diff = max_diff(to_matrix(xs), to_matrix(xd));
        MESSAGE("SDE-DPM-Solver++(1) vs DDIM(eta = 1), " << process::to_string(type) << ": " << diff);
        CHECK(diff < 1e-13);
    }
}

TEST_CASE("one step of every variant equals its coefficient table and step equals step_with_noise") {
    // step(rng) draws z with randn from rng: the same as step_with_noise with z = randn of a copy of
    // rng (bitwise). The table applied by hand (estimates E_j = est.x·x_j + est.m·m_j, then
    // x' = x·state + Σ w_j E_j + z·noise) agrees to 1e-14 (two vs one rounding of O(1) sums).
    const auto g = gaussian3();
    const exact_gaussian_denoiser model(g, pt::v_prediction);
    const level_sequence levels = level_sequence::vp({9.0, 4.0, 2.0, 1.0, 0.4, 0.1});
    for (dpm_algorithm alg : {dpm_algorithm::dpmsolver, dpm_algorithm::dpmsolver_pp, dpm_algorithm::sde_dpmsolver_pp})
        for (int order : {1, 2, 3})
            for (dpm_solver_type st : {dpm_solver_type::midpoint, dpm_solver_type::heun}) {
                dpm_multistep_config cfg;
                cfg.order = order;
                cfg.algorithm = alg;
                cfg.solver_type = st;
                cfg.d2 = third_order_d2::taylor;
                cfg.eta = 0.7;
                cfg.s_noise = 0.9;
                cfg.lower_order_final = false;
                dpm_solver_multistep_sampler a(levels, cfg), b(levels, cfg);
                auto xa = to_tensor(marginal_points(g, levels[0].a, levels[0].s, 2));
                auto xb = xa;
                std::vector<Eigen::MatrixXd> xs, ests;
                philox_rng ra(5);
                tensor<double, host_space> m(xa.shape()), z(xa.shape());
                for (std::size_t i = 0; i < a.num_steps(); ++i) {
                    model(m.view(), xa.cview(), a.model_level(i));
                    const int k = a.step_order(i, std::min<std::size_t>(i, order - 1));
                    const dpm_multistep_coeffs c = a.coefficients(pt::v_prediction, i, k);
                    const Eigen::MatrixXd x = to_matrix(xa);
                    ests.insert(ests.begin(), c.est.x * x + c.est.m * to_matrix(m));
                    philox_rng copy = ra;
                    randn(z, copy);
                    Eigen::MatrixXd expect = c.x * x;
                    for (int j = 0; j < k; ++j) expect += c.w[j] * ests[static_cast<std::size_t>(j)];
                    if (a.draws_noise()) expect += c.z * to_matrix(z);
                    a.step(m.cview(), pt::v_prediction, i, xa.view(), ra);
                    b.step_with_noise(m.cview(), pt::v_prediction, i, xb.view(), z.cview());
                    CHECK(k == std::min<int>(order, static_cast<int>(i) + 1));
                    CHECK(max_diff(to_matrix(xa), expect) < 1e-14);
                    bool same = true;
                    for (std::int64_t e = 0; e < xa.numel(); ++e) same = same && xa[e] == xb[e];
                    CHECK(same);
                }
                CHECK(ra.normal_offset() == (a.draws_noise() ? 5u * 48u : 0u));
            }
}

TEST_CASE("the same solver on VE and VP levels of the same sigmas gives x_vp = a x_ve") {
    // Every weight is written in (a, s); VE is a = 1. Same z injected; relative 1e-13 (a few
    // roundings of O(1) values per step, 8 steps).
    const auto g = gaussian3();
    const exact_gaussian_denoiser model(g, pt::epsilon);
    const std::vector<double> sig{40.0, 12.0, 5.0, 2.0, 0.9, 0.4, 0.15, 0.05, 0.0};
    const level_sequence ve = level_sequence::ve(sig), vp = level_sequence::vp(sig);
    for (dpm_algorithm alg : {dpm_algorithm::dpmsolver, dpm_algorithm::dpmsolver_pp, dpm_algorithm::sde_dpmsolver_pp})
        for (int order : {2, 3}) {
            dpm_multistep_config cfg;
            cfg.order = order;
            cfg.algorithm = alg;
            dpm_solver_multistep_sampler sv(ve, cfg), sp(vp, cfg);
            CHECK(sv.init_noise_sigma() == 40.0);
            CHECK(sp.init_noise_sigma() == 1.0);
            auto xv = to_tensor(marginal_points(g, 1.0, 40.0, 4));
            tensor<double, host_space> xp(xv.shape()), mv(xv.shape()), mp(xv.shape()), z(xv.shape());
            lincomb(xp.view(), vp[0].a, xv.cview());
            philox_rng rz(3);
            for (std::size_t i = 0; i < sv.num_steps(); ++i) {
                model(mv.view(), xv.cview(), sv.model_level(i));
                model(mp.view(), xp.cview(), sp.model_level(i));
                randn(z, rz);
                sv.step_with_noise(mv.cview(), pt::epsilon, i, xv.view(), z.cview());
                sp.step_with_noise(mp.cview(), pt::epsilon, i, xp.view(), z.cview());
                const double a = vp[i + 1].a;
                CHECK(max_diff(to_matrix(xp), a * to_matrix(xv)) < 1e-13 * (1 + to_matrix(xp).cwiseAbs().maxCoeff()));
            }
        }
}

namespace {

// k-diffusion's samplers (sampling.py @4601bf0, re-derived in the notation of the file comment of
// dpm_solver_multistep.hpp), on VE σ with a denoiser D(x, σ) and injected noise z_i.
using denoise_fn = std::function<Eigen::MatrixXd(const Eigen::MatrixXd&, double)>;

Eigen::MatrixXd kdiff_dpmpp_2m(const denoise_fn& D, Eigen::MatrixXd x, const std::vector<double>& sig) {
    Eigen::MatrixXd old;
    for (std::size_t i = 0; i + 1 < sig.size(); ++i) {
        const Eigen::MatrixXd den = D(x, sig[i]);
        const double t = -std::log(sig[i]), tn = sig[i + 1] > 0 ? -std::log(sig[i + 1]) : 0.0, h = tn - t;
        if (old.size() == 0 || sig[i + 1] == 0) {
            x = sig[i + 1] == 0 ? den : Eigen::MatrixXd((sig[i + 1] / sig[i]) * x - std::expm1(-h) * den);
        } else {
            const double r = (t + std::log(sig[i - 1])) / h;
            const Eigen::MatrixXd dd = (1 + 1 / (2 * r)) * den - (1 / (2 * r)) * old;
            x = (sig[i + 1] / sig[i]) * x - std::expm1(-h) * dd;
        }
        old = den;
    }
    return x;
}

Eigen::MatrixXd kdiff_dpmpp_2m_sde(const denoise_fn& D, Eigen::MatrixXd x, const std::vector<double>& sig, double eta,
                                   bool heun, const std::vector<Eigen::MatrixXd>& z) {
    Eigen::MatrixXd old;
    double h_last = 0;
    for (std::size_t i = 0; i + 1 < sig.size(); ++i) {
        const Eigen::MatrixXd den = D(x, sig[i]);
        double h = h_last;
        if (sig[i + 1] == 0) {
            x = den;
        } else {
            const double t = -std::log(sig[i]), s = -std::log(sig[i + 1]);
            h = s - t;
            const double eh = eta * h;
            x = sig[i + 1] / sig[i] * std::exp(-eh) * x - std::expm1(-h - eh) * den;
            if (old.size() != 0) {
                const double r = h_last / h;
                if (heun)
                    x += (-std::expm1(-h - eh) / (-h - eh) + 1) * (1 / r) * (den - old);
                else
                    x += 0.5 * -std::expm1(-h - eh) * (1 / r) * (den - old);
            }
            if (eta > 0) x += z[i] * sig[i + 1] * std::sqrt(-std::expm1(-2 * eh));
        }
        old = den;
        h_last = h;
    }
    return x;
}

Eigen::MatrixXd kdiff_dpmpp_3m_sde(const denoise_fn& D, Eigen::MatrixXd x, const std::vector<double>& sig, double eta,
                                   const std::vector<Eigen::MatrixXd>& z) {
    Eigen::MatrixXd d1, d2;
    double h1 = 0, h2 = 0;
    int have = 0;  // how many of h_1, h_2 are set
    for (std::size_t i = 0; i + 1 < sig.size(); ++i) {
        const Eigen::MatrixXd den = D(x, sig[i]);
        double h = 0;
        if (sig[i + 1] == 0) {
            x = den;
        } else {
            const double t = -std::log(sig[i]), s = -std::log(sig[i + 1]);
            h = s - t;
            const double he = h * (eta + 1);
            x = std::exp(-he) * x - std::expm1(-he) * den;
            if (have >= 2) {
                const double r0 = h1 / h, r1 = h2 / h;
                const Eigen::MatrixXd d10 = (den - d1) / r0, d11 = (d1 - d2) / r1;
                const Eigen::MatrixXd dd1 = d10 + (d10 - d11) * r0 / (r0 + r1), dd2 = (d10 - d11) / (r0 + r1);
                const double phi2 = std::expm1(-he) / he + 1, phi3 = phi2 / he - 0.5;
                x += phi2 * dd1 - phi3 * dd2;
            } else if (have == 1) {
                const double r = h1 / h;
                x += (std::expm1(-he) / he + 1) * ((den - d1) / r);
            }
            if (eta > 0) x += z[i] * sig[i + 1] * std::sqrt(-std::expm1(-2 * h * eta));
        }
        d2 = d1;
        d1 = den;
        h2 = h1;
        h1 = h;
        have = std::min(have + 1, 2);
    }
    return x;
}

}  // namespace

TEST_CASE("k-diffusion's dpmpp_2m, dpmpp_2m_sde and dpmpp_3m_sde equal ours on VE levels") {
    // k-diffusion: first-order start, σ_next = 0 ⇒ x = denoised (our forced first-order step), no
    // lower_order_final; dpmpp_3m_sde's second step is the heun-type 2nd-order step, its 3M step
    // uses the peers' D2. Same noise; Karras σ (80 → 0.03, ρ = 7) + 0. Tolerance 1e-12 relative to
    // max|x| (x ~ 80 at the start; different but equivalent roundings per step).
    const auto g = gaussian3();
    const exact_gaussian_denoiser model(g, pt::sample);
    const denoise_fn D = [&](const Eigen::MatrixXd& x, double s) { return Eigen::MatrixXd(g.x0_mean(x, 1.0, s)); };
    const std::vector<double> sig = schedules::karras_sigmas(12, 0.03, 80.0, 7.0, schedules::final_sigma::zero);
    const Eigen::MatrixXd xT = marginal_points(g, 1.0, 80.0, 9);
    philox_rng rz(11);
    std::vector<Eigen::MatrixXd> zs;
    std::vector<tensor<double, host_space>> zt;
    for (std::size_t i = 0; i + 1 < sig.size(); ++i) {
        tensor<double, host_space> z(shape{16, 3});
        randn(z, rz);
        zs.push_back(to_matrix(z));
        zt.push_back(z);
    }
    auto ours = [&](dpm_multistep_config cfg) {
        cfg.lower_order_final = false;
        dpm_solver_multistep_sampler s(level_sequence::ve(sig), cfg);
        auto x = to_tensor(xT);
        tensor<double, host_space> m(x.shape());
        for (std::size_t i = 0; i < s.num_steps(); ++i) {
            model(m.view(), x.cview(), s.model_level(i));
            s.step_with_noise(m.cview(), pt::sample, i, x.view(), zt[i].cview());
        }
        return to_matrix(x);
    };
    const double tol = 1e-12 * 80;
    {
        dpm_multistep_config c;
        const double d = max_diff(ours(c), kdiff_dpmpp_2m(D, xT, sig));
        MESSAGE("dpmpp_2m: " << d);
        CHECK(d < tol);
    }
    for (double eta : {0.0, 0.5, 1.0})
        for (bool heun : {false, true}) {
            dpm_multistep_config c;
            c.algorithm = dpm_algorithm::sde_dpmsolver_pp;
            c.eta = eta;
            c.solver_type = heun ? dpm_solver_type::heun : dpm_solver_type::midpoint;
            const double d = max_diff(ours(c), kdiff_dpmpp_2m_sde(D, xT, sig, eta, heun, zs));
            MESSAGE("dpmpp_2m_sde eta " << eta << std::string(heun ? " heun: " : " midpoint: ") << d);
            CHECK(d < tol);
        }
    for (double eta : {0.0, 1.0}) {
        dpm_multistep_config c;
        c.order = 3;
        c.algorithm = dpm_algorithm::sde_dpmsolver_pp;
        c.eta = eta;
        c.solver_type = dpm_solver_type::heun;
        const double d = max_diff(ours(c), kdiff_dpmpp_3m_sde(D, xT, sig, eta, zs));
        MESSAGE("dpmpp_3m_sde eta " << eta << ": " << d);
        CHECK(d < tol);
    }
    // sde-dpmsolver++ with η = 0 is dpmsolver++ (the same weights: e^{0} = 1, c_z = 0), draws nothing.
    dpm_multistep_config ode, sde;
    sde.algorithm = dpm_algorithm::sde_dpmsolver_pp;
    sde.eta = 0.0;
    CHECK(max_diff(ours(ode), ours(sde)) == 0.0);
    CHECK_FALSE(dpm_solver_multistep_sampler(level_sequence::ve(sig), sde).draws_noise());
}

TEST_CASE_TEMPLATE("dpm-solver++ multistep reproduces diffusers test_scheduler_dpm_multi oracles", T, float, double) {
    // peers.md c.1 #3: T = 1000 linear 1e-4..0.02, order 2, dpmsolver++ midpoint, lower_order_final
    // off, final_sigmas_type "sigma_min", linspace N = 10 (t = 999, 899, ..., 100). Tolerance as
    // diffusers: 1e-3 on mean|x| (1e-2 on the sum).
    const discrete_schedule sched = discrete_schedule::named("linear", 1000);
    auto run = [&](dpm_multistep_config cfg, pt type) {
        cfg.prediction = type;
        dpm_solver_multistep_sampler s = dpm_solver_multistep_sampler::from_schedule(sched, 10, cfg, final_level::sigma_min);
        auto x = dummy_sample_deter<T>();
        philox_rng rng(0);
        sample(dummy_model{type}, s, x, rng);
        return abs_mean(x);
    };
    {
        dpm_solver_multistep_sampler s =
            dpm_solver_multistep_sampler::from_schedule(sched, 10, diffusers_test_config(), final_level::sigma_min);
        const std::vector<double> ts{999, 899, 799, 699, 599, 500, 400, 300, 200, 100};
        for (std::size_t i = 0; i < ts.size(); ++i) CHECK(s.timestep(i) == ts[i]);
        CHECK(s.levels().sigma(10) == sched.sigma_ve(0));
    }
    const double eps_mean = run(diffusers_test_config(), pt::epsilon);
    const double v_mean = run(diffusers_test_config(), pt::v_prediction);
    dpm_multistep_config thr = diffusers_test_config();
    thr.threshold = thresholding{.enabled = true, .ratio = 0.87, .max_value = 0.5};
    const double thr_mean = run(thr, pt::epsilon);
    MESSAGE("full loop mean: epsilon " << eps_mean << ", v " << v_mean << ", thresholding " << thr_mean);
    DIFFUSE_CHECK_CLOSE(eps_mean, 0.3301, 1e-3, 0.0);
    DIFFUSE_CHECK_CLOSE(v_mean, 0.2251, 1e-3, 0.0);
    DIFFUSE_CHECK_CLOSE(thr_mean, 1.1364, 1e-3, 0.0);

    // use_karras_sigmas + v_prediction: 10 Karras σ from σ(999) to σ(0), timesteps = round(σ → t);
    // diffusers appends σ_last = σ(0) again, so its 10th step has h = 0 and leaves x unchanged: our
    // sequence is the 10 Karras levels (9 steps).
    {
        const std::vector<double> table = sched.sigmas_ve();
        const std::vector<double> ks = schedules::karras_sigmas(10, table.front(), table.back(), 7.0, schedules::final_sigma::none);
        const level_sequence levels = level_sequence::vp(
            ks, [table](double s) { return std::round(schedules::sigma_to_t(table, s)); });
        dpm_multistep_config cfg = diffusers_test_config();
        cfg.prediction = pt::v_prediction;
        dpm_solver_multistep_sampler s(levels, cfg);
        const std::vector<double> ts{999, 937, 864, 775, 663, 511, 301, 102, 18};
        for (std::size_t i = 0; i < ts.size(); ++i) CHECK(s.timestep(i) == ts[i]);
        auto x = dummy_sample_deter<T>();
        philox_rng rng(0);
        sample(dummy_model{pt::v_prediction}, s, x, rng);
        MESSAGE("Karras + v full loop mean " << abs_mean(x));
        DIFFUSE_CHECK_CLOSE(abs_mean(x), 0.2096, 1e-3, 0.0);
    }

    // test_full_loop_with_noise: t_start = 5 (timesteps 500, ..., 100), x = add_noise(sample, noise, 500)
    // with dummy_noise_deter = 1 − sample − 1/768; the history starts at the begin index.
    {
        dpm_solver_multistep_sampler s =
            dpm_solver_multistep_sampler::from_schedule(sched, 10, diffusers_test_config(), final_level::sigma_min);
        s.set_begin_index(5);
        CHECK(s.timestep(5) == 500.0);
        const auto x0 = dummy_sample_deter<T>();
        const auto noise = dummy_noise_deter<T>();
        tensor<T, host_space> x(x0.shape());
        add_noise(s, x.view(), x0.cview(), noise.cview(), 5);
        philox_rng rng(0);
        sample(dummy_model{}, s, x, rng);
        MESSAGE("with noise: sum " << abs_mean(x) * 768 << ", mean " << abs_mean(x));
        DIFFUSE_CHECK_CLOSE(abs_mean(x) * 768, 318.4111, 1e-2, 0.0);
        DIFFUSE_CHECK_CLOSE(abs_mean(x), 0.4146, 1e-3, 0.0);
    }
}

TEST_CASE("the order of each step follows the warm-up, final-step and lower_order_final rules") {
    const discrete_schedule sched = discrete_schedule::named("linear", 1000);
    auto orders = [&](dpm_multistep_config cfg, int n, final_level last) {
        const dpm_solver_multistep_sampler s = dpm_solver_multistep_sampler::from_schedule(sched, n, cfg, last);
        std::vector<int> k;
        for (std::size_t i = 0; i < s.num_steps(); ++i)
            k.push_back(s.step_order(i, std::min<std::size_t>(i, static_cast<std::size_t>(cfg.order) - 1)));
        return k;
    };
    dpm_multistep_config c3;
    c3.order = 3;
    // diffusers (threshold 15) and dpm-solver (10) both lower the last two steps of order 3 for N = 8:
    // dpm-solver's min(order, steps + 1 − step), diffusers' lower_order_final / lower_order_second.
    CHECK(orders(c3, 8, final_level::sigma_min) == std::vector<int>{1, 2, 3, 3, 3, 3, 2, 1});
    c3.lower_order_final_below = 10;
    CHECK(orders(c3, 8, final_level::sigma_min) == std::vector<int>{1, 2, 3, 3, 3, 3, 2, 1});
    // N = 12: only diffusers' threshold applies.
    CHECK(orders(c3, 12, final_level::sigma_min) == std::vector<int>{1, 2, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3});
    c3.lower_order_final_below = 15;
    CHECK(orders(c3, 12, final_level::sigma_min) == std::vector<int>{1, 2, 3, 3, 3, 3, 3, 3, 3, 3, 2, 1});
    // N = 16 >= 15: full order, except a final step to σ = 0 (always first order).
    CHECK(orders(c3, 16, final_level::sigma_min).back() == 3);
    CHECK(orders(c3, 16, final_level::zero).back() == 1);
    CHECK(orders(c3, 16, final_level::zero)[14] == 3);
    // euler_at_final: the last step only.
    c3.euler_at_final = true;
    const auto eaf = orders(c3, 16, final_level::sigma_min);
    CHECK(eaf[15] == 1);
    CHECK(eaf[14] == 3);
    // Order 2 and lower_order_final off.
    dpm_multistep_config c2;
    c2.lower_order_final = false;
    CHECK(orders(c2, 5, final_level::sigma_min) == std::vector<int>{1, 2, 2, 2, 2});
    c2.lower_order_final = true;
    CHECK(orders(c2, 5, final_level::sigma_min) == std::vector<int>{1, 2, 2, 2, 1});
}

TEST_CASE("from_schedule follows diffusers set_timesteps including lambda_min_clipped") {
    // Cosine schedule, λ_min_clipped = −5.1 (diffusers' recommendation): the spacing runs over the
    // timesteps with λ_t >= −5.1 only, so the first level has λ >= −5.1.
    const discrete_schedule cos = discrete_schedule::named("squaredcos_cap_v2", 1000);
    const int last = cos.num_timesteps_lambda_at_least(-5.1);
    REQUIRE(last < 1000);
    const auto s = dpm_solver_multistep_sampler::from_schedule(cos, 20, {}, final_level::zero,
                                                               schedules::spacing::linspace, 0, -5.1);
    const std::vector<int> ts = schedules::multistep_timesteps(1000, 20, schedules::spacing::linspace, 0, last);
    REQUIRE(s.num_steps() == ts.size());
    for (std::size_t i = 0; i < ts.size(); ++i) CHECK(s.timestep(i) == ts[i]);
    CHECK(s.levels().lambda(0) >= -5.1);
    CHECK(s.levels().sigma(20) == 0.0);
    // Without clipping the first timestep is 999 (λ ≈ −8.3 for this schedule).
    const auto u = dpm_solver_multistep_sampler::from_schedule(cos, 20);
    CHECK(u.timestep(0) == 999.0);
    CHECK(u.levels().lambda(0) < -5.1);
    DIFFUSE_CHECK_ERROR(dpm_solver_multistep_sampler::from_schedule(cos, 20, {}, final_level::zero,
                                                                    schedules::spacing::linspace, 0, std::nan("")),
                        "lambda_min_clipped");
}

TEST_CASE("the history restarts at the begin index and warm_start continues it") {
    const auto g = gaussian3();
    const exact_gaussian_denoiser model(g, pt::epsilon);
    const discrete_schedule sched = discrete_schedule::named("linear", 1000);
    dpm_multistep_config cfg;
    cfg.order = 3;
    dpm_solver_multistep_sampler s = dpm_solver_multistep_sampler::from_schedule(sched, 12, cfg, final_level::zero);
    const noise_condition l0 = s.state_level(0);
    const auto xT = to_tensor(marginal_points(g, l0.a, l0.s, 8));
    // Two runs of the driver give bitwise the same result (the second restarts the history).
    auto x1 = xT, x2 = xT;
    philox_rng rng(0);
    sample(model, s, x1, rng);
    CHECK(s.history_size() == 0);  // the last step (to σ = 0) keeps nothing
    sample(model, s, x2, rng);
    bool same = true;
    for (std::int64_t i = 0; i < x1.numel(); ++i) same = same && x1[i] == x2[i];
    CHECK(same);
    // A run from begin index 4 equals a fresh sampler on tail(4) of the levels.
    s.set_begin_index(4);
    auto x3 = to_tensor(marginal_points(g, s.state_level(4).a, s.state_level(4).s, 8)), x4 = x3;
    sample(model, s, x3, rng);
    dpm_solver_multistep_sampler t(s.levels().tail(4), cfg);
    // tail has 8 steps (< 15): lower_order_final counts the full run's N = 12 in s, 8 in t; both
    // lower the last two steps, so the orders agree.
    sample(model, t, x4, rng);
    same = true;
    for (std::int64_t i = 0; i < x3.numel(); ++i) same = same && x3[i] == x4[i];
    CHECK(same);
    // warm_start: history of the real trajectory at steps 0..3, then a run from 4 equals the
    // uninterrupted run (bitwise: the same estimates in the same slots).
    dpm_solver_multistep_sampler u = dpm_solver_multistep_sampler::from_schedule(sched, 12, cfg, final_level::zero);
    auto full = xT;
    tensor<double, host_space> m(full.shape());
    std::vector<tensor<double, host_space>> xs, ms;
    for (std::size_t i = 0; i < 4; ++i) {
        model(m.view(), full.cview(), u.model_level(i));
        xs.push_back(full);
        ms.push_back(m);
        u.step(m.cview(), pt::epsilon, i, full.view(), rng);
    }
    CHECK(u.history_size() == 2);
    auto resumed = full;
    // A fresh sampler warm-started with the estimates of steps 2 and 3 continues from step 4.
    dpm_solver_multistep_sampler w = dpm_solver_multistep_sampler::from_schedule(sched, 12, cfg, final_level::zero);
    w.set_begin_index(4);
    w.warm_start(ms[2].cview(), pt::epsilon, 2, xs[2].cview());
    CHECK(w.history_size() == 1);
    w.warm_start(ms[3].cview(), pt::epsilon, 3, xs[3].cview());
    CHECK(w.history_size() == 2);
    sample(model, w, resumed, rng);
    dpm_solver_multistep_sampler v = dpm_solver_multistep_sampler::from_schedule(sched, 12, cfg, final_level::zero);
    auto whole = xT;
    sample(model, v, whole, rng);
    same = true;
    for (std::int64_t i = 0; i < whole.numel(); ++i) same = same && whole[i] == resumed[i];
    CHECK(same);
}

TEST_CASE("thresholding clamps the x0 estimate before it enters the step and the history") {
    // With thresholding on, E = thr(dx·x + dm·m) (data) or (x − a·thr(x0))/s (noise); the step is the
    // same table applied to the thresholded estimates (1e-14, as the table test).
    const level_sequence levels = level_sequence::vp({9.0, 4.0, 2.0, 1.0, 0.4});
    const dummy_model model{pt::epsilon};
    thresholding thr{.enabled = true, .ratio = 0.9, .max_value = 1.5};
    for (dpm_algorithm alg : {dpm_algorithm::dpmsolver, dpm_algorithm::dpmsolver_pp}) {
        dpm_multistep_config cfg;
        cfg.algorithm = alg;
        cfg.threshold = thr;
        cfg.lower_order_final = false;
        dpm_solver_multistep_sampler s(levels, cfg);
        tensor<double, host_space> x(shape{2, 5}), m(x.shape());
        for (std::int64_t i = 0; i < x.numel(); ++i) x[i] = 3.0 * std::sin(0.9 * i + 0.2);
        std::vector<Eigen::MatrixXd> ests;
        philox_rng rng(0);
        for (std::size_t i = 0; i < s.num_steps(); ++i) {
            const noise_condition l = s.state_level(i);
            const noise_condition ml{l.a, l.s, 100.0 * (4 - static_cast<double>(i))};
            tensor<double, host_space> mm(x.shape());
            model(mm.view(), x.cview(), ml);
            const int k = s.step_order(i, std::min<std::size_t>(i, 1));
            const dpm_multistep_coeffs c = s.coefficients(pt::epsilon, i, k);
            const affine_estimate d = x0_from_output(pt::epsilon, l, 1.0);
            tensor<double, host_space> x0(x.shape());
            lincomb(x0.view(), d.x, x.cview(), d.m, mm.cview());
            apply_thresholding(x0, thr);
            Eigen::MatrixXd e = to_matrix(x0);
            if (alg == dpm_algorithm::dpmsolver) e = (to_matrix(x) - l.a * e) / l.s;
            ests.insert(ests.begin(), e);
            Eigen::MatrixXd expect = c.x * to_matrix(x);
            for (int j = 0; j < k; ++j) expect += c.w[j] * ests[static_cast<std::size_t>(j)];
            s.step(mm.cview(), pt::epsilon, i, x.view(), rng);
            CHECK(max_diff(to_matrix(x), expect) < 1e-14 * (1 + expect.cwiseAbs().maxCoeff()));
        }
    }
}

TEST_CASE("dpm-solver multistep runs in float and agrees with double") {
    // 2M over 20 steps in float vs double: float rounding (6e-8) amplified by at most ~10 per step
    // sequence of O(1) values: 1e-5 absolute.
    const auto g = gaussian3();
    const discrete_schedule sched = discrete_schedule::named("linear", 1000);
    const exact_gaussian_denoiser model(g, pt::epsilon);
    dpm_multistep_config cfg;
    cfg.order = 3;
    dpm_solver_multistep_sampler s = dpm_solver_multistep_sampler::from_schedule(sched, 20, cfg);
    const Eigen::MatrixXd xT = marginal_points(g, s.state_level(0).a, s.state_level(0).s, 1);
    auto xd = to_tensor(xT);
    tensor<float, host_space> xf(xd.shape());
    for (std::int64_t i = 0; i < xd.numel(); ++i) xf[i] = static_cast<float>(xd[i]);
    philox_rng rng(0);
    sample(model, s, xd, rng);
    sample(model, s, xf, rng);  // the history buffers switch to float: the run restarts at 0
    double d = 0;
    for (std::int64_t i = 0; i < xd.numel(); ++i) d = std::max(d, std::abs(xd[i] - static_cast<double>(xf[i])));
    MESSAGE("float vs double, 3M 20 steps: " << d);
    CHECK(d < 1e-5);
}

TEST_CASE("dpm-solver multistep names parse and bad arguments are rejected") {
    CHECK(parse_dpm_algorithm("dpmsolver") == dpm_algorithm::dpmsolver);
    CHECK(parse_dpm_algorithm("dpmsolver++") == dpm_algorithm::dpmsolver_pp);
    CHECK(parse_dpm_algorithm("sde-dpmsolver++") == dpm_algorithm::sde_dpmsolver_pp);
    CHECK(parse_dpm_solver_type("midpoint") == dpm_solver_type::midpoint);
    CHECK(parse_dpm_solver_type("heun") == dpm_solver_type::heun);
    CHECK(parse_dpm_solver_type("dpmsolver") == dpm_solver_type::midpoint);
    CHECK(parse_dpm_solver_type("taylor") == dpm_solver_type::heun);
    CHECK(parse_third_order_d2("peers") == third_order_d2::peers);
    CHECK(parse_third_order_d2("taylor") == third_order_d2::taylor);
    for (dpm_algorithm a : {dpm_algorithm::dpmsolver, dpm_algorithm::dpmsolver_pp, dpm_algorithm::sde_dpmsolver_pp})
        CHECK(parse_dpm_algorithm(to_string(a)) == a);
    DIFFUSE_CHECK_ERROR(parse_dpm_algorithm("sde-dpmsolver"), "algorithm_type", "\"sde-dpmsolver\"", "dpmsolver++");
    DIFFUSE_CHECK_ERROR(parse_dpm_algorithm("deis"), "algorithm_type", "deis");
    DIFFUSE_CHECK_ERROR(parse_dpm_solver_type("bh2"), "solver_type", "bh2", "midpoint");
    DIFFUSE_CHECK_ERROR(parse_third_order_d2("exact"), "third_order_d2", "peers", "taylor");

    const level_sequence levels = level_sequence::vp({9.0, 4.0, 2.0, 1.0});
    auto with = [&](auto change) {
        dpm_multistep_config c;
        change(c);
        return dpm_solver_multistep_sampler(levels, c);
    };
    DIFFUSE_CHECK_ERROR(with([](auto& c) { c.order = 0; }), "order = 0", "1, 2 or 3");
    DIFFUSE_CHECK_ERROR(with([](auto& c) { c.order = 4; }), "order = 4");
    DIFFUSE_CHECK_ERROR(with([](auto& c) { c.eta = -0.5; }), "eta = -0.5", ">= 0");
    DIFFUSE_CHECK_ERROR(with([](auto& c) { c.eta = std::nan(""); }), "eta");
    DIFFUSE_CHECK_ERROR(with([](auto& c) { c.s_noise = -1.0; }), "s_noise");
    DIFFUSE_CHECK_ERROR(with([](auto& c) { c.lower_order_final_below = -1; }), "lower_order_final_below");
    DIFFUSE_CHECK_ERROR(with([](auto& c) { c.threshold.ratio = 0.0; }), "thresholding.ratio", "(0, 1]");
    DIFFUSE_CHECK_ERROR(with([](auto& c) { c.threshold.ratio = 1.5; }), "thresholding.ratio");
    DIFFUSE_CHECK_ERROR(with([](auto& c) { c.threshold.max_value = 0.0; }), "thresholding.max_value");
    DIFFUSE_CHECK_ERROR(with([](auto& c) { c.algorithm = static_cast<dpm_algorithm>(9); }), "algorithm = 9");
    DIFFUSE_CHECK_ERROR(with([](auto& c) { c.solver_type = static_cast<dpm_solver_type>(9); }), "solver_type = 9");
    DIFFUSE_CHECK_ERROR(with([](auto& c) { c.d2 = static_cast<third_order_d2>(9); }), "d2 = 9");
    DIFFUSE_CHECK_ERROR(dpm_solver_multistep_sampler(level_sequence::vp({std::numeric_limits<double>::infinity(), 1.0})),
                        "sigmas[0]", "finite");

    dpm_multistep_config cfg;
    cfg.order = 3;
    cfg.algorithm = dpm_algorithm::sde_dpmsolver_pp;
    dpm_solver_multistep_sampler s(levels, cfg);
    tensor<double, host_space> x(shape{2, 3}, 0.1), m(shape{2, 3}, 0.2), bad(shape{3, 2}, 0.0), big(shape{4, 3}, 0.1);
    philox_rng rng(0);
    DIFFUSE_CHECK_ERROR(s.step(m.cview(), 3, x.view(), rng), "step index", "[0, 3)");
    DIFFUSE_CHECK_ERROR(s.step(bad.cview(), 0, x.view(), rng), "shape");
    DIFFUSE_CHECK_ERROR(s.step(x.cview(), 0, x.view(), rng), "aliases");
    DIFFUSE_CHECK_ERROR(s.step(m.cview(), 1, x.view(), rng), "step 1 does not follow", "begin_index() = 0");
    DIFFUSE_CHECK_ERROR(s.step_with_noise(m.cview(), 0, x.view(), bad.cview()), "z", "shape");
    s.step(m.cview(), 0, x.view(), rng);
    DIFFUSE_CHECK_ERROR(s.step(m.cview(), 2, x.view(), rng), "step 2 does not follow", "(0)");
    tensor<double, host_space> mb(shape{4, 3}, 0.2);
    DIFFUSE_CHECK_ERROR(s.step(mb.cview(), 1, big.view(), rng), "shape [4, 3]", "history", "restart");
    tensor<float, host_space> xf(shape{2, 3}, 0.1f), mf(shape{2, 3}, 0.2f);
    DIFFUSE_CHECK_ERROR(s.step(mf.cview(), 1, xf.view(), rng), "element type");
    DIFFUSE_CHECK_ERROR(s.warm_start(m.cview(), pt::epsilon, 3, x.cview()), "warm_start", "step index");
    DIFFUSE_CHECK_ERROR(s.warm_start(bad.cview(), pt::epsilon, 0, x.cview()), "shape");
    DIFFUSE_CHECK_ERROR(s.coefficients(pt::epsilon, 1, 3), "k = 3", "min(3, i + 1)");
    DIFFUSE_CHECK_ERROR(s.set_begin_index(3), "set_begin_index", "[0, 3)");
    const dpm_solver_multistep_sampler z(level_sequence::vp({9.0, 4.0, 0.0}), cfg);
    DIFFUSE_CHECK_ERROR(z.coefficients(pt::epsilon, 1, 2), "k = 2", "σ = 0");
}
