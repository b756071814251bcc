// samplers/repaint.hpp: diffusers' RePaint jump schedule, one step against the diffusers formula,
// the undo kernel, the known region exact at the end, the exact output law of RePaint with the
// exact Gaussian denoiser (affine impulse response through the sampler's own code) against the
// exact Gaussian conditional x_unknown | x_known as the number of resampling jumps grows, a
// fixed-seed Monte-Carlo check of the rng path through sample(), mask broadcasting and errors.
#include <diffuse/samplers/repaint.hpp>

#include <diffuse/analytic/gaussian.hpp>
#include <diffuse/backend/randn.hpp>
#include <diffuse/core/eigen_adapter.hpp>
#include <diffuse/models/exact.hpp>
#include <diffuse/schedules/discrete_schedule.hpp>

#include "samplers/fixtures.hpp"
#include "support/check.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <vector>

using namespace diffuse;
using namespace diffuse::samplers;
using diffuse::models::exact_gaussian_denoiser;
using pt = prediction_type;
using schedules::discrete_schedule;

namespace {

using namespace diffuse::test;

/// A 6-D Gaussian with a smooth (squared-exponential, length 1.5) covariance plus 0.05·I: a
/// 1-D "image" whose left half is known and right half inpainted.
analytic::gaussian smooth_gaussian6() {
    Eigen::VectorXd mu(6);
    Eigen::MatrixXd c(6, 6);
    for (int i = 0; i < 6; ++i) {
        mu(i) = 0.3 * std::sin(1.0 + i);
        for (int j = 0; j < 6; ++j) c(i, j) = std::exp(-(i - j) * (i - j) / (2.0 * 1.5 * 1.5)) + (i == j ? 0.05 : 0.0);
    }
    return analytic::gaussian(mu, c);
}

/// Mean and covariance of a Gaussian law.
struct moments {
    Eigen::VectorXd mean;
    Eigen::MatrixXd cov;
};

double gaussian_kl(const moments& p, const moments& q) {
    const Eigen::LLT<Eigen::MatrixXd> lq(q.cov), lp(p.cov);
    const Eigen::VectorXd dm = q.mean - p.mean;
    const double logdet_q = 2.0 * lq.matrixL().toDenseMatrix().diagonal().array().log().sum();
    const double logdet_p = 2.0 * lp.matrixL().toDenseMatrix().diagonal().array().log().sum();
    return 0.5 * (lq.solve(p.cov).trace() + dm.dot(lq.solve(dm)) - static_cast<double>(p.cov.rows()) + logdet_q -
                  logdet_p);
}

/// The exact output law of a RePaint run with the exact Gaussian model, from x_T ~ N(0, I).
/// Every operation is affine in (x, z): x' = P·x + q + R·z. P, q, R of each step (and of each
/// jump) are read off the sampler's own step_with_noise / prepare_step_with_noise on a batch of
/// 2d + 1 unit impulses (row 0 zero, rows 1..d x = e_j, rows d+1..2d z = e_c; closed_forms F1),
/// and the moments propagate exactly: mean' = P·mean + q, cov' = P·cov·Pᵀ + R·Rᵀ.
moments repaint_law(const analytic::gaussian& g, repaint_sampler& s, const Eigen::VectorXd& known,
                    const Eigen::VectorXd& mask) {
    const exact_gaussian_denoiser model(g, pt::epsilon);
    const std::int64_t d = g.dimension(), rows = 2 * d + 1;
    tensor<double, host_space> k(shape{rows, d}), m(shape{1, d});
    for (std::int64_t r = 0; r < rows; ++r)
        for (std::int64_t j = 0; j < d; ++j) k(r, j) = known(j);
    for (std::int64_t j = 0; j < d; ++j) m(0, j) = mask(j);
    s.set_known<double, host_space>(k.cview(), m.cview());  // the mask [1, d] broadcasts over rows
    tensor<double, host_space> x0(shape{rows, d}, 0.0), z(shape{rows, d}, 0.0), out(shape{rows, d});
    for (std::int64_t j = 0; j < d; ++j) {
        x0(1 + j, j) = 1.0;
        z(1 + d + j, j) = 1.0;
    }
    moments law{Eigen::VectorXd::Zero(d), Eigen::MatrixXd::Identity(d, d)};
    const auto apply = [&](const tensor<double, host_space>& y) {  // y = the map applied to the impulses
        const Eigen::MatrixXd Y = to_matrix(y);
        const Eigen::VectorXd q = Y.row(0).transpose();
        const Eigen::MatrixXd P = (Y.middleRows(1, d).rowwise() - Y.row(0)).transpose();
        const Eigen::MatrixXd R = (Y.middleRows(1 + d, d).rowwise() - Y.row(0)).transpose();
        law.mean = P * law.mean + q;
        law.cov = P * law.cov * P.transpose() + R * R.transpose();
    };
    for (std::size_t i = 0; i < s.num_steps(); ++i) {
        if (s.undo_before(i)) {
            tensor<double, host_space> y = x0;
            s.prepare_step_with_noise<double, host_space>(i, y.view(), z.cview());
            apply(y);
        }
        tensor<double, host_space> y = x0;
        model(out.view(), y.cview(), s.model_level(i));
        s.step_with_noise<double, host_space>(out.cview(), pt::epsilon, i, y.view(), z.cview());
        apply(y);
    }
    return law;
}

/// The exact conditional law of the unknown coordinates given the known ones (closed_forms B1).
moments exact_conditional(const analytic::gaussian& g, const std::vector<int>& kn, const std::vector<int>& un,
                          const Eigen::VectorXd& known) {
    const auto sub = [&](const std::vector<int>& a, const std::vector<int>& b) {
        Eigen::MatrixXd m(a.size(), b.size());
        for (std::size_t i = 0; i < a.size(); ++i)
            for (std::size_t j = 0; j < b.size(); ++j) m(i, j) = g.cov()(a[i], b[j]);
        return m;
    };
    Eigen::VectorXd mu_k(kn.size()), mu_u(un.size()), kv(kn.size());
    for (std::size_t i = 0; i < kn.size(); ++i) {
        mu_k(i) = g.mean()(kn[i]);
        kv(i) = known(kn[i]);
    }
    for (std::size_t i = 0; i < un.size(); ++i) mu_u(i) = g.mean()(un[i]);
    const Eigen::MatrixXd skk = sub(kn, kn), suk = sub(un, kn), suu = sub(un, un);
    const Eigen::LLT<Eigen::MatrixXd> l(skk);
    return {mu_u + suk * l.solve(kv - mu_k), suu - suk * l.solve(suk.transpose())};
}

moments block(const moments& m, const std::vector<int>& idx) {
    moments b{Eigen::VectorXd(idx.size()), Eigen::MatrixXd(idx.size(), idx.size())};
    for (std::size_t i = 0; i < idx.size(); ++i) {
        b.mean(i) = m.mean(idx[i]);
        for (std::size_t j = 0; j < idx.size(); ++j) b.cov(i, j) = m.cov(idx[i], idx[j]);
    }
    return b;
}

}  // namespace

TEST_CASE("repaint jump schedule equals diffusers' set_timesteps") {
    // Re-derived by running diffusers' RePaintScheduler.set_timesteps algorithm in Python.
    CHECK(repaint_timesteps(1000, 10, 3, 2) ==
          std::vector<int>{900, 800, 700, 600, 700, 800, 900, 800, 700, 600, 500, 400, 300, 400,
                           500, 600, 500, 400, 300, 200, 100, 0,   100, 200, 300, 200, 100, 0});
    CHECK(repaint_timesteps(100, 7, 2, 3) ==
          std::vector<int>{84, 70, 56, 70, 84, 70, 56, 70, 84, 70, 56, 42, 28, 42, 56, 42,
                           28, 42, 56, 42, 28, 14, 0,  14, 28, 14, 0,  14, 28, 14, 0});
    CHECK(repaint_timesteps(1000, 5, 10, 10) == std::vector<int>{800, 600, 400, 200, 0});  // jump_length >= N
    CHECK(repaint_timesteps(1000, 4, 1, 3) ==
          std::vector<int>{750, 500, 750, 500, 750, 500, 250, 500, 250, 500, 250, 0, 250, 0, 250, 0});
    const std::vector<int> l = repaint_timesteps(250, 20, 5, 2);
    CHECK(l.size() == 50u);
    CHECK(std::vector<int>(l.begin(), l.begin() + 16) ==
          std::vector<int>{228, 216, 204, 192, 180, 168, 156, 144, 132, 120, 132, 144, 156, 168, 180, 168});
    CHECK(l.back() == 0);
    // The stepping view: down entries are model steps, runs of up entries are undos before them.
    repaint_sampler s(discrete_schedule::named("linear", 1000));
    s.set_timesteps(10, 3, 2);
    CHECK(s.jump_timesteps() == repaint_timesteps(1000, 10, 3, 2));
    CHECK(s.timesteps() == std::vector<int>{900, 800, 700, 600, 800, 700, 600, 500, 400, 300, 500, 400, 300, 200,
                                            100, 0, 200, 100, 0});
    CHECK(s.num_steps() == 19u);
    for (std::size_t i = 0; i < s.num_steps(); ++i) {
        const auto u = s.undo_before(i);
        if (i == 4 || i == 10 || i == 16) {
            REQUIRE(u.has_value());
            CHECK(u->to_timestep == s.timesteps()[i]);
            CHECK(u->from_timestep == (i == 4 ? 500 : i == 10 ? 200 : -1));
        } else {
            CHECK(!u.has_value());
        }
    }
}

TEST_CASE("repaint undo is the forward kernel: one level is sqrt(1 - beta), sqrt(beta)") {
    const discrete_schedule sched = discrete_schedule::named("linear", 1000);
    repaint_sampler s(sched);
    s.set_timesteps(1000, 4, 2);  // r = 1: single training-step jumps
    bool seen = false;
    for (std::size_t i = 0; i < s.num_steps(); ++i) {
        const auto u = s.undo_before(i);
        if (!u) continue;
        seen = true;
        // A run of 4 single steps from t_lo to t_hi = t_lo + 4: √(ᾱ_hi/ᾱ_lo) = Π √(1 − β).
        double prod = 1.0;
        for (int t = u->from_timestep + 1; t <= u->to_timestep; ++t) prod *= 1.0 - sched.beta(t);
        DIFFUSE_CHECK_CLOSE(u->c_x * u->c_x, prod, 0.0, 1e-12);
        DIFFUSE_CHECK_CLOSE(u->c_x * u->c_x + u->c_z * u->c_z, 1.0, 1e-15, 0.0);
    }
    CHECK(seen);
    // One level: x_t = √(1 − β_t)·x_{t−1} + √β_t·z.
    repaint_sampler one(sched);
    one.set_timesteps(1000, 1, 2);
    const auto u = one.undo_before(2);  // 999 → 998, jump 997 → 998
    REQUIRE(u.has_value());
    CHECK(u->to_timestep == 998);
    DIFFUSE_CHECK_CLOSE(u->c_x, std::sqrt(1.0 - sched.beta(998)), 0.0, 1e-12);
    DIFFUSE_CHECK_CLOSE(u->c_z, std::sqrt(sched.beta(998)), 0.0, 1e-12);
}

TEST_CASE("one repaint step equals diffusers' RePaintScheduler.step formula") {
    const discrete_schedule sched = discrete_schedule::named("linear", 1000);
    for (double eta : {0.0, 0.5, 1.0}) {
        repaint_sampler s(sched, repaint_config{.eta = eta});
        s.set_timesteps(50, 10, 2);
        tensor<double, host_space> known(shape{1, 4}), mask(shape{1, 4}), x(shape{1, 4}), e(shape{1, 4}), z(shape{1, 4});
        for (int i = 0; i < 4; ++i) {
            known[i] = 0.5 - 0.4 * i;
            mask[i] = i < 2 ? 1.0 : 0.0;
            x[i] = 0.9 * i - 1.1;
            e[i] = 0.3 + 0.2 * i;
            z[i] = -0.6 + 0.5 * i;
        }
        s.set_known<double, host_space>(known.cview(), mask.cview());
        const std::size_t i = 3;
        const int t = s.timesteps()[i], tp = t - 20;
        tensor<double, host_space> y = x;
        s.step_with_noise<double, host_space>(e.cview(), pt::epsilon, i, y.view(), z.cview());
        const double ab = sched.alpha_bar(t), abp = sched.alpha_bar(tp);
        const double var = (1 - abp) / (1 - ab) * (1 - ab / abp);
        const double sd = eta * std::sqrt(var);
        for (int j = 0; j < 4; ++j) {
            const double x0 = (x[j] - std::sqrt(1 - ab) * e[j]) / std::sqrt(ab);
            const double unknown = std::sqrt(abp) * x0 + std::sqrt(1 - abp - sd * sd) * e[j] + sd * z[j];
            const double kn = std::sqrt(abp) * known[j] + std::sqrt(1 - abp) * z[j];
            DIFFUSE_CHECK_CLOSE(y[j], mask[j] * kn + (1 - mask[j]) * unknown, 1e-15, 1e-14);
        }
    }
}

TEST_CASE_TEMPLATE("repaint output equals the known image exactly in the known region", T, float, double) {
    const auto g = smooth_gaussian6();
    const exact_gaussian_denoiser model(g, pt::epsilon);
    for (double eta : {0.0, 1.0}) {
        repaint_sampler s(discrete_schedule::named("linear", 1000), repaint_config{.eta = eta});
        s.set_timesteps(20, 5, 3);
        tensor<T, host_space> known(shape{8, 6}), mask(shape{8, 6}), x(shape{8, 6});
        for (int i = 0; i < 48; ++i) {
            known[i] = static_cast<T>(std::cos(0.37 * i));
            mask[i] = static_cast<T>((i * 7) % 3 == 0 ? 1 : 0);
        }
        s.set_known<T, host_space>(known.cview(), mask.cview());
        philox_rng rng(11);
        randn(x.view(), rng);
        sample(model, s, x, rng);
        int known_count = 0;
        for (int i = 0; i < 48; ++i)
            if (mask[i] == T(1)) {
                ++known_count;
                CHECK(x[i] == known[i]);  // √1·k + √0·z: exact
            } else {
                CHECK(std::isfinite(static_cast<double>(x[i])));
            }
        CHECK(known_count == 16);
        // Each step drew 48 normals, each jump 48 more.
        std::size_t jumps = 0;
        for (std::size_t i = 0; i < s.num_steps(); ++i) jumps += s.undo_before(i) ? 1 : 0;
        CHECK(rng.normal_offset() == 48u * (1 + s.num_steps() + jumps));
    }
}

TEST_CASE("repaint with the exact Gaussian approaches the exact conditional as resampling grows") {
    // Exact output moments of the real sampler (per-step impulse response, no Monte Carlo) against
    // N(μ_u + Σ_uk Σ_kk⁻¹(k − μ_k), Σ_uu − Σ_uk Σ_kk⁻¹ Σ_ku) on the 6-D smooth Gaussian, left half
    // known. RePaint is an approximation; measured (η = 1, jump_length 10, KL(out || exact)):
    //   jump_n_sample      1       2       4       10      20
    //   N = 50           0.0634  0.0440  0.0390  0.0393  0.0394   (floor: respaced DDPM, C7)
    //   N = 250          0.0577  0.0222  0.0108  0.0094  0.0113
    //   N = 1000         0.0626  0.0235  0.0084  0.0033  0.0039
    // Plain replacement (1: no jumps) over-disperses the unknown part (variance ratio up to 1.54)
    // and biases its mean (0.066 sd); jumps harmonise it (mean error 0.024 sd at N = 1000, 20
    // jumps) until the fixed_small under-dispersion of the many extra DDPM passes takes over.
    // Asserted: the mean error decreases with every added jump, KL decreases up to 4 jumps,
    // plain replacement KL > 0.05, and KL < 0.005 at N = 1000 with 10 jumps (1.5x margin).
    const auto g = smooth_gaussian6();
    const std::vector<int> kn = {0, 1, 2}, un = {3, 4, 5};
    Eigen::VectorXd known(6), mask(6);
    known << 1.2, 0.9, 0.4, 0.0, 0.0, 0.0;
    mask << 1, 1, 1, 0, 0, 0;
    const moments target = exact_conditional(g, kn, un, known);
    const discrete_schedule sched = discrete_schedule::named("linear", 1000);
    const std::vector<int> jumps = {1, 2, 4, 10, 20};
    for (int N : {50, 250, 1000}) {
        std::vector<double> kls, mean_errs;
        for (int n_sample : jumps) {
            repaint_sampler s(sched, repaint_config{.eta = 1.0});
            s.set_timesteps(N, 10, n_sample);
            const moments law = repaint_law(g, s, known, mask);
            // Known region: exactly k, zero variance.
            for (int j : kn) {
                CHECK(law.mean(j) == known(j));
                CHECK(law.cov.row(j).cwiseAbs().maxCoeff() == 0.0);
            }
            const moments u = block(law, un);
            kls.push_back(gaussian_kl(u, target));
            const Eigen::ArrayXd sd = target.cov.diagonal().cwiseSqrt().array();
            mean_errs.push_back(((u.mean - target.mean).array() / sd).abs().maxCoeff());
            const Eigen::ArrayXd ratio = u.cov.diagonal().array() / target.cov.diagonal().array();
            MESSAGE("RePaint N = " << N << ", jump_length 10, jump_n_sample " << n_sample << " (" << s.num_steps()
                                   << " model steps): KL(out || exact) = " << kls.back()
                                   << ", max |mean err|/sd = " << mean_errs.back() << ", variance ratio in ["
                                   << ratio.minCoeff() << ", " << ratio.maxCoeff() << "]");
        }
        for (std::size_t i = 1; i < jumps.size(); ++i) CHECK(mean_errs[i] < mean_errs[i - 1]);
        CHECK(kls[1] < kls[0]);
        CHECK(kls[2] < kls[1]);
        CHECK(kls[0] > 0.05);
        if (N == 1000) CHECK(kls[3] < 0.005);
    }
}

TEST_CASE("repaint through sample() draws its noise right: fixed-seed Monte Carlo against the exact law") {
    // n = 20000 rows (one known image) through the driver with rng (start noise, step noise, jump
    // noise), unknown block whitened by the exactly propagated law: w = L⁻¹(x_u − mean) ~ N(0, I).
    // 9 statistics, each |z| < 5 (two-sided 5.7e-7 each, 5.2e-6 in all): mean z = √n·w̄_j,
    // variance z = (S_jj − 1)/√(2/n), covariance z = √n·S_jk.
    const auto g = smooth_gaussian6();
    const exact_gaussian_denoiser model(g, pt::epsilon);
    Eigen::VectorXd known(6), mask(6);
    known << 1.2, 0.9, 0.4, 0.0, 0.0, 0.0;
    mask << 1, 1, 1, 0, 0, 0;
    const discrete_schedule sched = discrete_schedule::named("linear", 1000);
    repaint_sampler exact_s(sched, repaint_config{.eta = 1.0});
    exact_s.set_timesteps(20, 5, 3);
    const moments u = block(repaint_law(g, exact_s, known, mask), {3, 4, 5});
    const std::int64_t n = 20000;
    repaint_sampler s(sched, repaint_config{.eta = 1.0});
    s.set_timesteps(20, 5, 3);
    tensor<double, host_space> k(shape{n, 6}), m(shape{1, 6}), x(shape{n, 6});
    for (std::int64_t r = 0; r < n; ++r)
        for (int j = 0; j < 6; ++j) k(r, j) = known(j);
    for (int j = 0; j < 6; ++j) m(0, j) = mask(j);
    s.set_known<double, host_space>(k.cview(), m.cview());
    philox_rng rng(77);
    randn(x.view(), rng);
    sample(model, s, x, rng);
    const Eigen::MatrixXd X = to_matrix(x);
    for (int j = 0; j < 3; ++j) CHECK((X.col(j).array() == known(j)).all());
    const Eigen::MatrixXd centred = X.rightCols(3).rowwise() - u.mean.transpose();
    const Eigen::MatrixXd L = u.cov.llt().matrixL();
    const Eigen::MatrixXd w = L.triangularView<Eigen::Lower>().solve(centred.transpose()).transpose();
    const Eigen::VectorXd wbar = w.colwise().mean();
    const Eigen::MatrixXd S = (w.transpose() * w) / static_cast<double>(n);
    const double sn = std::sqrt(static_cast<double>(n));
    for (int j = 0; j < 3; ++j) {
        const double zm = sn * wbar(j), zv = (S(j, j) - 1.0) / std::sqrt(2.0 / n);
        MESSAGE("unknown coordinate " << j + 3 << ": mean z = " << zm << ", variance z = " << zv);
        CHECK(std::abs(zm) < 5.0);
        CHECK(std::abs(zv) < 5.0);
        for (int l = j + 1; l < 3; ++l) {
            MESSAGE("covariance (" << j + 3 << ", " << l + 3 << ") z = " << sn * S(j, l));
            CHECK(std::abs(sn * S(j, l)) < 5.0);
        }
    }
}

TEST_CASE("repaint mask broadcasting equals the expanded mask") {
    // [B, C, W] known with a [B, 1, W] mask (diffusers' per-pixel mask over channels) and a
    // [1, C, W] mask: the same run as with the mask expanded by hand, bitwise.
    const discrete_schedule sched = discrete_schedule::named("linear", 1000);
    struct affine_model {  // any deterministic model: eps = 0.3·x
        pt prediction() const { return pt::epsilon; }
        void operator()(tensor_view<double, host_space> out, tensor_view<const double, host_space> in,
                        const models::noise_condition&, models::no_condition = {}) const {
            for (std::int64_t i = 0; i < in.numel(); ++i) out[i] = 0.3 * in[i];
        }
    };
    tensor<double, host_space> known(shape{2, 3, 4});
    for (std::int64_t i = 0; i < known.numel(); ++i) known[i] = std::sin(0.5 * i);
    tensor<double, host_space> m_bw(shape{2, 1, 4}), m_cw(shape{1, 3, 4});
    for (std::int64_t i = 0; i < m_bw.numel(); ++i) m_bw[i] = (i % 3 == 0) ? 1.0 : 0.0;
    for (std::int64_t i = 0; i < m_cw.numel(); ++i) m_cw[i] = (i % 2 == 0) ? 1.0 : 0.0;
    for (const tensor<double, host_space>* mb : {&m_bw, &m_cw}) {
        tensor<double, host_space> full(shape{2, 3, 4});
        for (int b = 0; b < 2; ++b)
            for (int c = 0; c < 3; ++c)
                for (int w = 0; w < 4; ++w)
                    full(b, c, w) = (*mb)(mb->size(0) == 1 ? 0 : b, mb->size(1) == 1 ? 0 : c, w);
        std::vector<tensor<double, host_space>> outs;
        const tensor<double, host_space>* full_p = &full;
        for (const tensor<double, host_space>* mk : {mb, full_p}) {
            repaint_sampler s(sched, repaint_config{.eta = 1.0});
            s.set_timesteps(10, 3, 2);
            s.set_known<double, host_space>(known.cview(), mk->cview());
            tensor<double, host_space> x(shape{2, 3, 4});
            philox_rng rng(3);
            randn(x.view(), rng);
            sample(affine_model{}, s, x, rng);
            outs.push_back(x);
        }
        for (std::int64_t i = 0; i < known.numel(); ++i) CHECK(outs[0][i] == outs[1][i]);
    }
}

TEST_CASE("repaint rejects bad masks and arguments with readable errors") {
    const discrete_schedule sched = discrete_schedule::named("linear", 1000);
    DIFFUSE_CHECK_ERROR(repaint_sampler(sched, repaint_config{.eta = 1.5}), "eta", "[0, 1]");
    DIFFUSE_CHECK_ERROR(repaint_sampler(sched, repaint_config{.clip_sample_range = -1.0}), "clip_sample_range");
    repaint_sampler s(sched);
    DIFFUSE_CHECK_ERROR(s.set_timesteps(1001), "num_inference_steps", "[1, 1000]");
    DIFFUSE_CHECK_ERROR(s.set_timesteps(10, 0, 2), "jump_length", ">= 1");
    DIFFUSE_CHECK_ERROR(s.set_timesteps(10, 2, 0), "jump_n_sample", ">= 1");
    s.set_timesteps(10, 3, 2);
    tensor<double, host_space> known(shape{2, 6}, 0.5), x(shape{2, 6}, 0.0), m(shape{2, 6}, 0.0);
    philox_rng rng(0);
    DIFFUSE_CHECK_ERROR(s.step(m.cview(), 0, x.view(), rng), "set_known");
    // Mask of the wrong shape: other dimension, other rank.
    tensor<double, host_space> bad1(shape{2, 5}, 1.0), bad2(shape{12}, 1.0), bad3(shape{3, 6}, 1.0);
    DIFFUSE_CHECK_ERROR((s.set_known<double, host_space>(known.cview(), bad1.cview())), "mask.shape()", "[2, 5]",
                        "broadcastable");
    DIFFUSE_CHECK_ERROR((s.set_known<double, host_space>(known.cview(), bad2.cview())), "mask.shape()");
    DIFFUSE_CHECK_ERROR((s.set_known<double, host_space>(known.cview(), bad3.cview())), "mask.shape()");
    // Values outside {0, 1}.
    tensor<double, host_space> half(shape{2, 6}, 0.0), two(shape{1, 6}, 1.0), nan(shape{2, 6}, 0.0);
    half[7] = 0.5;
    two[3] = 2.0;
    nan[0] = std::numeric_limits<double>::quiet_NaN();
    DIFFUSE_CHECK_ERROR((s.set_known<double, host_space>(known.cview(), half.cview())), "mask[7]", "0.5", "0 or 1");
    DIFFUSE_CHECK_ERROR((s.set_known<double, host_space>(known.cview(), two.cview())), "mask[3]", "0 or 1");
    DIFFUSE_CHECK_ERROR((s.set_known<double, host_space>(known.cview(), nan.cview())), "mask[0]", "0 or 1");
    // x of another shape than the known image; another element type.
    tensor<double, host_space> mask(shape{1, 6}, 1.0);
    s.set_known<double, host_space>(known.cview(), mask.cview());
    tensor<double, host_space> x3(shape{3, 6}, 0.0), m3(shape{3, 6}, 0.0);
    DIFFUSE_CHECK_ERROR(s.step(m3.cview(), 0, x3.view(), rng), "x.shape()", "[2, 6]");
    tensor<float, host_space> xf(shape{2, 6}, 0.0f), mf(shape{2, 6}, 0.0f);
    DIFFUSE_CHECK_ERROR(s.step(mf.cview(), 0, xf.view(), rng), "element type");
    DIFFUSE_CHECK_ERROR(s.step(m.cview(), 19, x.view(), rng), "step index");
    // Noise of the wrong shape; a known image without a batch dimension.
    tensor<double, host_space> z_bad(shape{3, 6}, 0.0);
    DIFFUSE_CHECK_ERROR((s.step_with_noise<double, host_space>(m.cview(), pt::epsilon, 0, x.view(), z_bad.cview())), "z",
                        "shape");
    DIFFUSE_CHECK_ERROR((s.prepare_step_with_noise<double, host_space>(4, x.view(), z_bad.cview())), "z", "shape");
    tensor<double, host_space> scalar(shape{}, 1.0);
    DIFFUSE_CHECK_ERROR((s.set_known<double, host_space>(scalar.cview(), scalar.cview())), "known.rank()", ">= 1");
}
