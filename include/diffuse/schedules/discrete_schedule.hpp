#pragma once
// discrete_schedule: a discrete VP noise schedule on the training grid t = 0..T−1, indexed as
// in diffusers (docs/schedules.md §2):
//
//   ᾱ_t = Π_{i<=t} (1 − β_i)          (so ᾱ_0 = 1 − β_0, not 1)
//   x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε      α_t := √ᾱ_t, σ_t := √(1 − ᾱ_t)   (VP pair)
//   SNR_t = ᾱ_t/(1 − ᾱ_t)
//   log_snr(t) = log SNR_t             (VDM / Kingma et al. 2021 convention)
//   lambda(t)  = log(α_t/σ_t) = ½ log SNR_t   (DPM-Solver / UniPC half-log-SNR convention)
//   sigma_ve(t) = σ_t/α_t = √((1 − ᾱ_t)/ᾱ_t) = e^{−lambda(t)}   (k-diffusion / EDM σ)
//
// NAMING WARNING. alphas() is diffusers' per-step array 1 − β_t, whereas alpha(t) is the VP
// signal coefficient √ᾱ_t (DPM-Solver's alpha_t). They are different quantities.
//
// Accuracy (§2.2): the schedule stores log ᾱ_t (a compensated sum of log1p(−β_i)), 1 − ᾱ_t
// (as −expm1(log ᾱ_t)) and log(1 − ᾱ_t) (log1mexp), so 1 − ᾱ, σ and log SNR keep full relative
// precision near t = 0, where 1 − ᾱ ≈ Σβ is tiny, and near t = T−1, where ᾱ is tiny.
//
// Zero terminal SNR (§4): a schedule may end with β_{T−1} = 1, i.e. ᾱ_{T−1} = 0; then
// log_snr(T−1) = lambda(T−1) = −∞ and sigma_ve(T−1) = +∞.

#include <diffuse/core/error.hpp>
#include <diffuse/schedules/beta_schedule.hpp>
#include <diffuse/schedules/detail/numeric.hpp>

#include <cmath>
#include <cstddef>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace diffuse::schedules {

/// The log-SNR shift that moves a schedule tuned at resolution `base` to resolution `target`
/// (Hoogeboom et al. 2023, "simple diffusion", §3; docs/schedules.md §5):
/// logSNR' = logSNR + 2·log(base/target), i.e. SNR' = SNR·(base/target)².
inline double resolution_shift(double base, double target) {
    require_positive(base, "base");
    require_positive(target, "target");
    return 2.0 * std::log(base / target);
}

class discrete_schedule {
public:
    /// Builds from β_0..β_{T−1} (diffusers `trained_betas`). Requires T >= 1 and every β in
    /// (0, 1); the last β may be 1 (zero terminal SNR). ᾱ must not underflow to 0 before that.
    static discrete_schedule from_betas(std::span<const double> betas) {
        validate_betas(betas, /*allow_terminal_one=*/true);
        const std::size_t T = betas.size();
        const bool zero_terminal = betas[T - 1] == 1.0;
        std::vector<double> logs(T);
        for (std::size_t i = 0; i < T; ++i) logs[i] = std::log1p(-betas[i]);  // log(1 − β_i)
        std::vector<double> log_ab;
        if (zero_terminal) {
            log_ab = detail::compensated_cumsum(std::span<const double>(logs).first(T - 1));
            log_ab.push_back(-std::numeric_limits<double>::infinity());
        } else {
            log_ab = detail::compensated_cumsum(logs);
        }
        std::vector<double> one_minus(T), ab(T);
        for (std::size_t i = 0; i < T; ++i) {
            one_minus[i] = -std::expm1(log_ab[i]);  // 1 − ᾱ_t
            ab[i] = std::exp(log_ab[i]);
        }
        return discrete_schedule(std::vector<double>(betas.begin(), betas.end()), std::move(log_ab),
                                 std::move(one_minus), std::move(ab));
    }

    /// Builds from ᾱ_0..ᾱ_{T−1} (e.g. a checkpoint's `alphas_cumprod`). Requires every ᾱ finite,
    /// 0 < ᾱ_t < 1, strictly decreasing; the last may be exactly 0 (zero terminal SNR).
    /// β_t = (ᾱ_{t−1} − ᾱ_t)/ᾱ_{t−1} (β_0 = 1 − ᾱ_0).
    static discrete_schedule from_alphas_cumprod(std::span<const double> alphas_cumprod) {
        const std::size_t T = alphas_cumprod.size();
        require(T >= 1, "alphas_cumprod.size()", T, "at least 1 (num_train_timesteps >= 1)");
        for (std::size_t t = 0; t < T; ++t) {
            const double a = alphas_cumprod[t];
            const std::string arg = "alphas_cumprod[" + std::to_string(t) + "]";
            const bool last = t + 1 == T;
            if (!(std::isfinite(a) && a < 1 && (a > 0 || (a == 0 && last))))
                fail_argument(arg, a,
                              last ? "in [0, 1) (0 only at the last timestep, zero terminal SNR)"
                                   : "in the open interval (0, 1)");
            if (t > 0 && !(a < alphas_cumprod[t - 1]))
                fail_argument(arg, a,
                              "strictly less than alphas_cumprod[" + std::to_string(t - 1) +
                                  "] = " + diffuse::detail::format_value(alphas_cumprod[t - 1]) +
                                  " (alphas_cumprod must be strictly decreasing)");
        }
        std::vector<double> log_ab(T), one_minus(T);
        for (std::size_t t = 0; t < T; ++t) {
            log_ab[t] = std::log(alphas_cumprod[t]);  // −∞ for a zero terminal value
            one_minus[t] = 1.0 - alphas_cumprod[t];    // exact for ᾱ >= 1/2 (Sterbenz)
        }
        return discrete_schedule(betas_from_alphas_cumprod(alphas_cumprod), std::move(log_ab),
                                 std::move(one_minus),
                                 std::vector<double>(alphas_cumprod.begin(), alphas_cumprod.end()));
    }

    /// Builds from log SNR_0 > log SNR_1 > ... (the VDM convention, not the half-log-SNR λ):
    /// log ᾱ = −softplus(−logSNR), log(1 − ᾱ) = −softplus(logSNR) (§2.1). The last value may be
    /// −∞ (zero terminal SNR); all others finite and strictly decreasing.
    static discrete_schedule from_log_snr(std::span<const double> log_snr) {
        const std::size_t T = log_snr.size();
        require(T >= 1, "log_snr.size()", T, "at least 1 (num_train_timesteps >= 1)");
        for (std::size_t t = 0; t < T; ++t) {
            const double l = log_snr[t];
            const std::string arg = "log_snr[" + std::to_string(t) + "]";
            const bool last = t + 1 == T;
            const bool ok = std::isfinite(l) || (last && l == -std::numeric_limits<double>::infinity());
            if (!ok) fail_argument(arg, l, last ? "finite, or -inf at the last timestep" : "a finite number");
            if (t > 0 && !(l < log_snr[t - 1]))
                fail_argument(arg, l,
                              "strictly less than log_snr[" + std::to_string(t - 1) +
                                  "] = " + diffuse::detail::format_value(log_snr[t - 1]) +
                                  " (log SNR must be strictly decreasing)");
        }
        std::vector<double> log_ab(T), one_minus(T), ab(T);
        for (std::size_t t = 0; t < T; ++t) {
            log_ab[t] = -detail::softplus(-log_snr[t]);                // log sigmoid(L)
            one_minus[t] = std::exp(-detail::softplus(log_snr[t]));    // sigmoid(−L)
            ab[t] = std::exp(log_ab[t]);
        }
        return from_log_parts(std::move(log_ab), std::move(one_minus), std::move(ab));
    }

    /// A named β schedule (beta_schedule.hpp, make_betas) as a schedule.
    static discrete_schedule named(std::string_view name, int num_train_timesteps, double beta_start = 1e-4,
                                   double beta_end = 0.02, beta_options options = {}) {
        return from_betas(make_betas(name, num_train_timesteps, beta_start, beta_end, options));
    }

    // ---- whole arrays --------------------------------------------------------------------
    int num_train_timesteps() const { return static_cast<int>(betas_.size()); }
    std::span<const double> betas() const { return betas_; }
    /// diffusers' `alphas`: the per-step 1 − β_t (NOT √ᾱ_t; see alpha(t)).
    std::span<const double> alphas() const { return alphas_; }
    std::span<const double> alphas_cumprod() const { return alpha_bar_; }
    std::span<const double> log_alphas_cumprod() const { return log_alpha_bar_; }
    std::span<const double> one_minus_alphas_cumprod() const { return one_minus_alpha_bar_; }
    /// σ_ve for every t (diffusers Euler's `sigmas` before reversal; k-diffusion's table).
    std::vector<double> sigmas_ve() const { return map([this](int t) { return sigma_ve(t); }); }
    /// λ_t = ½ log SNR_t for every t (diffusers' `lambda_t`).
    std::vector<double> lambdas() const { return map([this](int t) { return lambda(t); }); }
    /// log SNR_t for every t.
    std::vector<double> log_snrs() const { return map([this](int t) { return log_snr(t); }); }

    // ---- per-timestep quantities (t in [0, T−1]) -----------------------------------------
    double beta(int t) const { return betas_[idx(t)]; }
    /// ᾱ_t.
    double alpha_bar(int t) const { return alpha_bar_[idx(t)]; }
    /// log ᾱ_t.
    double log_alpha_bar(int t) const { return log_alpha_bar_[idx(t)]; }
    /// 1 − ᾱ_t, with full relative precision for tiny values.
    double one_minus_alpha_bar(int t) const { return one_minus_alpha_bar_[idx(t)]; }
    /// log(1 − ᾱ_t).
    double log_one_minus_alpha_bar(int t) const { return log_one_minus_alpha_bar_[idx(t)]; }
    /// VP signal coefficient α_t = √ᾱ_t.
    double alpha(int t) const { return std::exp(0.5 * log_alpha_bar(t)); }
    /// log α_t = ½ log ᾱ_t.
    double log_alpha(int t) const { return 0.5 * log_alpha_bar(t); }
    /// VP noise coefficient σ_t = √(1 − ᾱ_t).
    double sigma(int t) const { return std::sqrt(one_minus_alpha_bar(t)); }
    /// log σ_t = ½ log(1 − ᾱ_t).
    double log_sigma(int t) const { return 0.5 * log_one_minus_alpha_bar(t); }
    /// SNR_t = ᾱ_t/(1 − ᾱ_t).
    double snr(int t) const { return alpha_bar(t) / one_minus_alpha_bar(t); }
    /// log SNR_t = log ᾱ_t − log(1 − ᾱ_t) (VDM convention).
    double log_snr(int t) const { return log_alpha_bar(t) - log_one_minus_alpha_bar(t); }
    /// λ_t = log α_t − log σ_t = ½ log SNR_t (DPM-Solver convention).
    double lambda(int t) const { return 0.5 * log_snr(t); }
    /// k-diffusion / EDM σ_t = √((1 − ᾱ_t)/ᾱ_t) = e^{−λ_t}; +∞ at a zero-terminal-SNR end.
    double sigma_ve(int t) const { return std::sqrt(one_minus_alpha_bar(t) / alpha_bar(t)); }

    /// True when ᾱ_{T−1} = 0 (β_{T−1} = 1).
    bool has_zero_terminal_snr() const { return alpha_bar_.back() == 0.0; }

    /// The number of timesteps kept when the tail with λ_t < lambda_min is cut: T − #{t : λ_t <
    /// lambda_min}. diffusers' multistep `last_timestep` for `lambda_min_clipped`, and the length
    /// dpm-solver's `numerical_clip_alpha(clipped_lambda=-5.1)` keeps (§7).
    int num_timesteps_lambda_at_least(double lambda_min) const {
        int below = 0;
        for (int t = 0; t < num_train_timesteps(); ++t)
            if (lambda(t) < lambda_min) ++below;
        return num_train_timesteps() - below;
    }

    // ---- derived schedules ---------------------------------------------------------------
    /// Lin et al. (2024) Alg. 1 (diffusers `rescale_zero_terminal_snr`; §4): with r_t = √ᾱ_t,
    /// r'_t = (r_t − r_{T−1})·r_0/(r_0 − r_{T−1}), ᾱ'_t = r'_t². Then ᾱ'_{T−1} = 0 and β'_{T−1} = 1
    /// exactly, and ᾱ'_0 = ᾱ_0 exactly (stored, not recomputed). 1 − ᾱ'_t is computed as
    /// (1 − r'_t)(1 + r'_t) with 1 − r'_t = (r_0(1 − r_t) − r_{T−1}(1 − r_0))/(r_0 − r_{T−1}), so it
    /// keeps full precision near t = 0. Requires T >= 2.
    discrete_schedule rescale_zero_terminal_snr() const {
        const int T = num_train_timesteps();
        require(T >= 2, "num_train_timesteps", T, "at least 2 to rescale to zero terminal SNR");
        const double r0 = alpha(0), rT = alpha(T - 1);
        const double one_minus_r0 = one_minus_alpha_bar(0) / (1.0 + r0);
        const double denom = r0 - rT;
        const auto n = static_cast<std::size_t>(T);
        std::vector<double> log_ab(n), one_minus(n), ab(n);
        for (int t = 0; t < T; ++t) {
            const auto i = static_cast<std::size_t>(t);
            if (t == 0) {
                log_ab[i] = log_alpha_bar_[0];
                one_minus[i] = one_minus_alpha_bar_[0];
                ab[i] = alpha_bar_[0];
            } else if (t == T - 1) {
                log_ab[i] = -std::numeric_limits<double>::infinity();
                one_minus[i] = 1.0;
                ab[i] = 0.0;
            } else {
                const double r = alpha(t);
                const double rp = (r - rT) * (r0 / denom);                     // r'_t
                const double one_minus_r = one_minus_alpha_bar_[i] / (1.0 + r);  // 1 − r_t
                const double one_minus_rp = (r0 * one_minus_r - rT * one_minus_r0) / denom;  // 1 − r'_t
                log_ab[i] = 2.0 * std::log(rp);
                one_minus[i] = one_minus_rp * (1.0 + rp);
                ab[i] = rp * rp;
            }
        }
        return from_log_parts(std::move(log_ab), std::move(one_minus), std::move(ab));
    }

    /// Replaces ᾱ_{T−1} by `alpha_bar_last` (default 2^−24), which diffusers' Euler, Euler
    /// ancestral, DPM-Solver++ multistep and UniPC do after rescale_zero_terminal_snr so that
    /// σ_max = √((1 − ᾱ)/ᾱ) is finite (≈ 4096). Requires 0 < alpha_bar_last < ᾱ_{T−2}. β_{T−1} is
    /// re-derived (diffusers leaves its `betas` array at β_{T−1} = 1).
    discrete_schedule with_terminal_alpha_bar(double alpha_bar_last = 0x1p-24) const {
        const int T = num_train_timesteps();
        const double prev = T >= 2 ? alpha_bar_[static_cast<std::size_t>(T - 2)] : 1.0;
        if (!(std::isfinite(alpha_bar_last) && alpha_bar_last > 0 && alpha_bar_last < prev))
            fail_argument("alpha_bar_last", alpha_bar_last,
                          "in the open interval (0, " + diffuse::detail::format_value(prev) +
                              ") (0 < value < alphas_cumprod[T-2])");
        std::vector<double> log_ab = log_alpha_bar_, one_minus = one_minus_alpha_bar_, ab = alpha_bar_;
        log_ab.back() = std::log(alpha_bar_last);
        one_minus.back() = 1.0 - alpha_bar_last;
        ab.back() = alpha_bar_last;
        return from_log_parts(std::move(log_ab), std::move(one_minus), std::move(ab));
    }

    /// Adds `shift` to every log SNR_t (§5): logSNR'_t = logSNR_t + shift, so SNR'_t = e^{shift}·SNR_t.
    /// Use resolution_shift(base, target) for Hoogeboom et al.'s 2·log(base/target).
    discrete_schedule shift_log_snr(double shift) const {
        require_finite(shift, "shift");
        std::vector<double> l = log_snrs();
        for (double& v : l) v += shift;
        return from_log_snr(l);
    }

    /// shift_log_snr(resolution_shift(base, target)).
    discrete_schedule resolution_shift(double base, double target) const {
        return shift_log_snr(schedules::resolution_shift(base, target));
    }

    /// guided-diffusion's SpacedDiffusion (§6.4): keeps ᾱ at the given training timesteps
    /// (strictly increasing, in [0, T−1]) and re-derives β'_k = 1 − ᾱ_{t_k}/ᾱ_{t_{k−1}}
    /// (β'_0 = 1 − ᾱ_{t_0}). The kept timesteps are the `timestep_map` back to the model's t.
    discrete_schedule respaced(std::span<const int> use_timesteps) const {
        require(!use_timesteps.empty(), "use_timesteps.size()", use_timesteps.size(), "at least 1");
        std::vector<double> log_ab, one_minus, ab;
        for (std::size_t k = 0; k < use_timesteps.size(); ++k) {
            const int t = use_timesteps[k];
            if (t < 0 || t >= num_train_timesteps() || (k > 0 && t <= use_timesteps[k - 1]))
                fail_argument("use_timesteps[" + std::to_string(k) + "]", t,
                              "strictly increasing integers in [0, " + std::to_string(num_train_timesteps() - 1) + "]");
            log_ab.push_back(log_alpha_bar_[static_cast<std::size_t>(t)]);
            one_minus.push_back(one_minus_alpha_bar_[static_cast<std::size_t>(t)]);
            ab.push_back(alpha_bar_[static_cast<std::size_t>(t)]);
        }
        return from_log_parts(std::move(log_ab), std::move(one_minus), std::move(ab));
    }

private:
    // Every factory supplies ᾱ_t, log ᾱ_t and 1 − ᾱ_t, each computed in its most accurate form.
    discrete_schedule(std::vector<double> betas, std::vector<double> log_ab, std::vector<double> one_minus,
                      std::vector<double> ab)
        : betas_(std::move(betas)),
          log_alpha_bar_(std::move(log_ab)),
          one_minus_alpha_bar_(std::move(one_minus)),
          alpha_bar_(std::move(ab)) {
        const std::size_t T = betas_.size();
        alphas_.resize(T);
        log_one_minus_alpha_bar_.resize(T);
        for (std::size_t t = 0; t < T; ++t) {
            alphas_[t] = 1.0 - betas_[t];
            // log(1 − ᾱ): log1p(−ᾱ) when ᾱ is small, log of the accurate 1 − ᾱ otherwise.
            log_one_minus_alpha_bar_[t] =
                alpha_bar_[t] < 0.5 ? std::log1p(-alpha_bar_[t]) : std::log(one_minus_alpha_bar_[t]);
            const bool last = t + 1 == T;
            if (!(alpha_bar_[t] > 0 || (last && betas_[t] == 1.0)))
                fail_argument("alphas_cumprod[" + std::to_string(t) + "]", alpha_bar_[t],
                              "> 0: the cumulative product underflows double (log alphas_cumprod = " +
                                  diffuse::detail::format_value(log_alpha_bar_[t]) +
                                  "); only a final beta = 1 may make it 0");
        }
    }

    // From log ᾱ_t and 1 − ᾱ_t (both strictly monotone, already validated): β_t is re-derived as
    // the difference of whichever neighbour pair is accurate, (d_t − d_{t−1})/ᾱ_{t−1} with
    // d = 1 − ᾱ while ᾱ_{t−1} >= 1/2, else (ᾱ_{t−1} − ᾱ_t)/ᾱ_{t−1}.
    static discrete_schedule from_log_parts(std::vector<double> log_ab, std::vector<double> one_minus,
                                            std::vector<double> ab) {
        const std::size_t T = log_ab.size();
        std::vector<double> betas(T);
        for (std::size_t t = 0; t < T; ++t) {
            if (t == 0) {
                betas[t] = one_minus[0];
                continue;
            }
            const double ab_prev = ab[t - 1];
            if (ab[t] == 0.0)
                betas[t] = 1.0;  // zero terminal SNR: β = 1 exactly
            else
                betas[t] = ab_prev >= 0.5 ? (one_minus[t] - one_minus[t - 1]) / ab_prev : (ab_prev - ab[t]) / ab_prev;
        }
        for (std::size_t t = 0; t < T; ++t) {
            const bool last = t + 1 == T;
            if (!(betas[t] > 0 && (betas[t] < 1 || (last && betas[t] == 1.0))))
                fail_argument("betas[" + std::to_string(t) + "]", betas[t],
                              "in (0, 1) (the derived schedule is not strictly decreasing in alphas_cumprod)");
        }
        return discrete_schedule(std::move(betas), std::move(log_ab), std::move(one_minus), std::move(ab));
    }

    std::size_t idx(int t) const {
        if (t < 0 || t >= num_train_timesteps())
            fail_argument("t", t, "an integer timestep in [0, " + std::to_string(num_train_timesteps() - 1) + "]");
        return static_cast<std::size_t>(t);
    }

    template <class F>
    std::vector<double> map(F f) const {
        std::vector<double> out(betas_.size());
        for (int t = 0; t < num_train_timesteps(); ++t) out[static_cast<std::size_t>(t)] = f(t);
        return out;
    }

    std::vector<double> betas_;
    std::vector<double> log_alpha_bar_;
    std::vector<double> one_minus_alpha_bar_;
    std::vector<double> alpha_bar_;
    std::vector<double> alphas_;
    std::vector<double> log_one_minus_alpha_bar_;
};

}  // namespace diffuse::schedules
