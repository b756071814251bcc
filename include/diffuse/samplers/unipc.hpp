#pragma once
// UniPC: unified predictor-corrector multistep solver (Zhao et al. 2023, "UniPC", Alg. 2 / the
// B(h) variants; official uni_pc.py multistep_uni_pc_bh_update; diffusers
// UniPCMultistepScheduler; docs/samplers/unipc.md).
//
// Levels ℓ_0 .. ℓ_N of a level_sequence (any (a, s): VE or VP), λ = log(a/s). Step i evaluates
// the model once at ℓ_i, so num_steps() = N = NFE. With data prediction (default) the history
// holds m_k = x0 estimates (noise prediction: eps estimates) of the model outputs at ℓ_k.
//
// Predictor UniP-p, from ℓ_i (x^c, the corrected state) to ℓ_{i+1}, h = λ_{i+1} − λ_i:
//   data:  hh = −h,  x' = (s'/s)·x^c − a'·expm1(hh)·m_i − a'·B(h)·Σ_{k<p} ρ^p_k·D_k
//   noise: hh = +h,  x' = (a'/a)·x^c − s'·expm1(hh)·m_i − s'·B(h)·Σ_{k<p} ρ^p_k·D_k
//   D_k = (m_{i−k} − m_i)/r_k,  r_k = (λ_{i−k} − λ_i)/h,  B(h) = hh (bh1) or expm1(hh) (bh2)
//   ρ^p: p = 2: 0.5; p = 3: R ρ = b on the first p − 1 rows/columns, with R[m][k] = r_k^m
//        (r_p = 1) and b_m = m!·hh·φ_{m+1}(hh)/B(h), φ_j(z) = Σ_n z^n/(n + j)!.
// Corrector UniC-q (q = the predictor order of the step being corrected): the same formula from
// ℓ_{i−1} to ℓ_i with the new model output m_i at the PREDICTED point added as D_t = m_i − m_{i−1}
// and ρ^c = the solution of the full q×q system (q = 1: 0.5). The model output at the predicted
// point is stored as history without re-evaluation at the corrected point, so UniPC costs one
// model evaluation per step.
//
// When the corrector runs. diffusers corrects x_i at the start of the next step() (x_i is
// returned uncorrected; step i + 1 corrects it with m_i, then predicts); the final step's result
// is never corrected. The official code runs predictor, model, corrector inside one update and
// skips the corrector on the last step explicitly. Both evaluate the model at the same
// (uncorrected) points with the same orders, so they give the same samples; this sampler follows
// diffusers (x after step i is the uncorrected x_{i+1}; tests/samplers/test_unipc.cpp checks it
// against a transcription of the official loop).
//
// One step i is, on the host, the table x_{i+1} = c_x·x_i + Σ_{k<=3} c_k·m_{i−k}
// (coefficients(i)): the correction of x_i is folded in as x_i^c = x_i + Δ(m_i, m_{i−1}, ...),
// with Δ = x^c − x^p from the difference of the corrector and predictor coefficients. On the
// data it is one lincomb for the new history entry (m_i = dx·x + dm·output, then thresholding
// when enabled) and one lincomb of x and up to 3 history tensors (a second pass for a 4th, order
// 3 with corrector). Folding differs from diffusers only when x is modified between steps:
// diffusers recomputes x^c from the stored previous state and drops such edits (they reach it
// only through m_i); here the correction is added to the x passed in.
//
// Orders per step (j = i − begin_index(), the history restarts at begin_index()):
//   p_i = min(order, j + 1, N − i if lower_order_final) — as diffusers and uni_pc.py; a step to
//   σ = 0 is always first order (x' = a'·x0 estimate; its exponential-integrator limit).
//   The corrector runs at step i > begin_index() unless corrector = false or i − 1 is listed in
//   disable_corrector (diffusers' indices: k listed = the result of step k is not corrected).

#include <diffuse/backend/lincomb.hpp>
#include <diffuse/core/error.hpp>
#include <diffuse/core/philox.hpp>
#include <diffuse/core/tensor.hpp>
#include <diffuse/models/denoiser.hpp>
#include <diffuse/process/parametrization.hpp>
#include <diffuse/samplers/detail/level_checks.hpp>
#include <diffuse/samplers/detail/multistep_history.hpp>
#include <diffuse/samplers/levels.hpp>
#include <diffuse/samplers/sampler.hpp>
#include <diffuse/samplers/thresholding.hpp>
#include <diffuse/schedules/discrete_schedule.hpp>
#include <diffuse/schedules/timesteps.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace diffuse::samplers {

/// B(h) of the UniPC update: bh1 = hh (official default `variant='bh1'`), bh2 = expm1(hh)
/// (diffusers default `solver_type='bh2'`).
enum class unipc_variant { bh1, bh2 };

/// What the history holds: x0 estimates (diffusers predict_x0 = True; official
/// algorithm_type = "data_prediction") or eps estimates ("noise_prediction").
enum class unipc_algorithm { data_prediction, noise_prediction };

inline unipc_variant parse_unipc_variant(std::string_view name) {
    if (name == "bh1") return unipc_variant::bh1;
    if (name == "bh2") return unipc_variant::bh2;
    fail_argument("unipc variant", name, "one of \"bh1\", \"bh2\" (diffusers solver_type, uni_pc.py variant)");
}

inline std::string_view to_string(unipc_variant v) { return v == unipc_variant::bh1 ? "bh1" : "bh2"; }

inline unipc_algorithm parse_unipc_algorithm(std::string_view name) {
    if (name == "data_prediction") return unipc_algorithm::data_prediction;
    if (name == "noise_prediction") return unipc_algorithm::noise_prediction;
    fail_argument("unipc algorithm", name, "one of \"data_prediction\", \"noise_prediction\"");
}

inline std::string_view to_string(unipc_algorithm a) {
    return a == unipc_algorithm::data_prediction ? "data_prediction" : "noise_prediction";
}

struct unipc_config {
    int order = 2;                                         ///< predictor order p in [1, 3] (solver_order)
    unipc_variant variant = unipc_variant::bh2;            ///< B(h)
    unipc_algorithm algorithm = unipc_algorithm::data_prediction;
    bool corrector = true;                                 ///< UniC on (false: UniP only)
    std::vector<std::size_t> disable_corrector{};          ///< k: the result of step k is not corrected
    bool lower_order_final = true;                         ///< p_i <= N − i (diffusers / uni_pc.py default)
    thresholding threshold{};                              ///< on the x0 estimates (data prediction only)
    model_input input = model_input::state;                ///< what the model is shown (levels.hpp)
    prediction_type prediction = prediction_type::epsilon; ///< what step(m, i, x, rng) assumes m is
    // set_timesteps(N) on a discrete schedule (diffusers' multistep timesteps):
    schedules::spacing timestep_spacing = schedules::spacing::linspace;
    int steps_offset = 0;
    final_level final_sigmas = final_level::zero;           ///< zero or sigma_min (final_sigmas_type)
};

/// x_{i+1} = c_x·x_i + Σ_k c_m[k]·m_{i−k} for one UniPC step (correction of x_i included).
struct unipc_coeffs {
    double c_x = 0.0;
    std::array<double, 4> c_m{};  ///< on m_i, m_{i−1}, m_{i−2}, m_{i−3}
    int predictor_order = 1;      ///< p_i
    int corrector_order = 0;      ///< q of the UniC applied to x_i (0: no correction at this step)
};

namespace detail {

/// φ_k(z) = Σ_{n>=0} z^n/(n + k)! (φ_0 = e^z, φ_{k+1}(z) = (φ_k(z) − 1/k!)/z): the series for
/// |z| < 1 (no cancellation at small steps), the recursion from expm1 otherwise.
inline double unipc_phi(int k, double z) {
    if (k == 0) return std::exp(z);
    double inv_fact = 1.0;  // 1/k!
    for (int j = 2; j <= k; ++j) inv_fact /= j;
    if (std::abs(z) < 1.0) {
        double term = inv_fact, sum = inv_fact;
        for (int n = 1; n < 60; ++n) {
            term *= z / (n + k);
            sum += term;
            if (std::abs(term) <= 1e-18 * std::abs(sum)) break;
        }
        return sum;
    }
    double p = std::expm1(z) / z;  // φ_1
    double f = 1.0;                // 1/j!
    for (int j = 1; j < k; ++j) {
        p = (p - f) / z;
        f /= (j + 1);
    }
    return p;
}

}  // namespace detail

class unipc_sampler : public begin_index_support {
public:
    unipc_sampler() = default;
    /// Any level sequence (VE or VP; σ_0 finite); num_steps() = levels.size() − 1.
    explicit unipc_sampler(level_sequence levels, unipc_config config = {}) : config_(std::move(config)) {
        check_config();
        set_levels(std::move(levels));
    }
    /// A discrete schedule; call set_timesteps(N) before sampling.
    explicit unipc_sampler(schedules::discrete_schedule schedule, unipc_config config = {})
        : schedule_(std::move(schedule)), config_(std::move(config)) {
        check_config();
    }

    /// diffusers' N multistep timesteps (schedules::multistep_timesteps with the configured
    /// spacing and offset) then the final level (final_sigmas), as VP levels with timesteps.
    void set_timesteps(int num_inference_steps) {
        require_schedule();
        const int T = schedule_->num_train_timesteps();
        const std::vector<int> ts =
            schedules::multistep_timesteps(T, num_inference_steps, config_.timestep_spacing, config_.steps_offset);
        set_timesteps(ts);
    }
    /// An explicit strictly decreasing sequence of training timesteps, then the final level.
    void set_timesteps(const std::vector<int>& timesteps) {
        require_schedule();
        for (std::size_t k = 1; k < timesteps.size(); ++k)
            if (!(timesteps[k] < timesteps[k - 1]))
                fail_argument("timesteps[" + std::to_string(k) + "]", timesteps[k],
                              "< timesteps[" + std::to_string(k - 1) + "] = " + std::to_string(timesteps[k - 1]) +
                                  " (strictly decreasing)");
        if (config_.final_sigmas == final_level::sigma_min && !timesteps.empty() && timesteps.back() == 0)
            fail_argument("timesteps.back()", 0, "> 0 with final_sigmas = sigma_min (the final level is t = 0)");
        set_levels(level_sequence::from_timesteps(*schedule_, timesteps, config_.final_sigmas, state_space::vp));
    }
    void set_levels(level_sequence levels) {
        require(levels.size() >= 2, "levels.size()", levels.size(), ">= 2 (N + 1 levels for N steps)");
        require(std::isfinite(levels.sigma(0)), "sigmas[0]", levels.sigma(0),
                "finite (UniPC needs a > 0 at the start: no σ = +inf)");
        levels_ = std::move(levels);
        reset_begin_index();
        last_step_.reset();
    }
    /// Start sample() at step k (img2img); the history restarts there.
    void set_begin_index(std::size_t k) {
        store_begin_index(k, num_steps(), "unipc_sampler");
        last_step_.reset();
    }

    const level_sequence& levels() const { return levels_; }
    const unipc_config& config() const { return config_; }
    std::size_t num_steps() const { return ::diffuse::samplers::detail::steps_of(levels_); }
    /// The level's training timestep when it has one, else σ_i.
    double timestep(std::size_t i) const {
        return ::diffuse::samplers::detail::timestep_or_sigma(levels_, i, "unipc_sampler");
    }
    int order() const { return config_.order; }
    double init_noise_sigma() const { return ::diffuse::samplers::detail::init_noise_sigma_of(levels_); }
    noise_condition state_level(std::size_t i) const {
        return ::diffuse::samplers::detail::step_level(levels_, i, "unipc_sampler");
    }
    double model_input_scale(std::size_t i) const { return model_input_scale_of(state_level(i), config_.input); }
    noise_condition model_level(std::size_t i) const { return seen_level(state_level(i), config_.input); }
    template <class T, class S>
    void scale_model_input(tensor_view<T, S> out, std::type_identity_t<tensor_view<const T, S>> x, std::size_t i) const {
        lincomb(out, model_input_scale(i), x);
    }

    /// The predictor order p_i of step i (steps from begin_index() on).
    int predictor_order(std::size_t i) const {
        ::diffuse::samplers::detail::require_step_index(i, num_steps(), "unipc_sampler");
        require(i >= begin_index(), "step index", i, ">= begin_index() = " + std::to_string(begin_index()));
        const std::size_t j = i - begin_index();
        std::size_t p = std::min<std::size_t>(static_cast<std::size_t>(config_.order), j + 1);
        if (config_.lower_order_final) p = std::min(p, num_steps() - i);
        if (levels_.sigma(i + 1) == 0.0) p = 1;
        return static_cast<int>(p);
    }
    /// Whether x_i is corrected at step i (UniC with the order of step i − 1).
    bool corrects(std::size_t i) const {
        ::diffuse::samplers::detail::require_step_index(i, num_steps(), "unipc_sampler");
        if (!config_.corrector || i <= begin_index()) return false;
        const auto& d = config_.disable_corrector;
        return std::find(d.begin(), d.end(), i - 1) == d.end();
    }

    /// The coefficient table of step i (history restarted at begin_index()).
    unipc_coeffs coefficients(std::size_t i) const {
        const geometry g = predictor_geometry(i);
        unipc_coeffs c;
        c.predictor_order = g.p;
        c.c_x = g.Ax;
        std::array<double, 4> delta{};
        if (corrects(i)) {
            const geometry q = predictor_geometry(i - 1);
            c.corrector_order = q.p;
            const std::array<double, 4> rho_c = corrector_rhos(q);
            double sum = 0.0;
            for (int k = 1; k < q.p; ++k) {
                const double w = (rho_c[k - 1] - q.rho_p[k - 1]) / q.r[k - 1];
                delta[k + 1] = -q.AB * w;
                sum += w;
            }
            delta[0] = -q.AB * rho_c[q.p - 1];
            delta[1] = q.AB * (rho_c[q.p - 1] + sum);
        }
        double sum_p = 0.0;
        for (int k = 1; k < g.p; ++k) {
            const double w = g.rho_p[k - 1] / g.r[k - 1];
            c.c_m[k] = -g.AB * w;
            sum_p += w;
        }
        c.c_m[0] = -g.Am + g.AB * sum_p;
        for (std::size_t k = 0; k < 4; ++k) c.c_m[k] += g.Ax * delta[k];
        return c;
    }

    /// x <- x at level i + 1 (corrected at level i first when corrects(i)); m a `from`
    /// prediction at (c_in·x, model_level(i)). Steps run in order from begin_index(); step
    /// begin_index() restarts the history. Draws no noise.
    template <class T, class S>
    void step(std::type_identity_t<tensor_view<const T, S>> m, prediction_type from, std::size_t i,
              tensor_view<T, S> x, philox_rng& /*rng*/) {
        namespace sd = ::diffuse::samplers::detail;
        sd::require_step_index(i, num_steps(), "unipc_sampler.step");
        sd::require_step_tensors<T, S>(m, x, "unipc_sampler.step");
        const std::size_t cap = static_cast<std::size_t>(config_.order) + 1;
        std::vector<tensor<T, S>>* hist = nullptr;
        if (i == begin_index()) {
            hist = &history_.reset<T, S>(cap, x.shape());
            head_ = 0;
        } else {
            hist = history_.find<T, S>();
            if (!last_step_ || *last_step_ + 1 != i || !hist)
                fail_argument("unipc_sampler.step: step index", i,
                              "the next step " + (last_step_ ? std::to_string(*last_step_ + 1) : std::string("(none)")) +
                                  " or begin_index() = " + std::to_string(begin_index()) +
                                  " (history samplers run their steps in order)");
            if ((*hist)[0].shape() != x.shape())
                fail("unipc_sampler.step: x has shape " + x.shape().str() + " but the history has shape " +
                     (*hist)[0].shape().str() + "; expected the shape of the run's first step");
        }
        // The new history entry m_i (x0 or eps estimate), in the slot of the oldest one.
        head_ = (head_ + cap - 1) % cap;
        tensor<T, S>& mi = (*hist)[head_];
        const noise_condition seen = model_level(i);
        const double c_in = model_input_scale(i);
        const affine_estimate d = config_.algorithm == unipc_algorithm::data_prediction
                                      ? x0_from_output(from, seen, c_in)
                                      : eps_from_output(from, seen, c_in);
        lincomb(mi.view(), d.x, tensor_view<const T, S>(x), d.m, m);
        if (config_.threshold.enabled) apply_thresholding(mi.view(), config_.threshold);
        last_step_ = i;

        const unipc_coeffs c = coefficients(i);
        // m_{i−k} for k < cap (older entries are never used: their coefficients are 0).
        auto h = [&](std::size_t k) {
            return sd::term<T, S>{k < cap ? c.c_m[k] : 0.0, (*hist)[(head_ + (k < cap ? k : 0)) % cap].cview()};
        };
        sd::lincomb_many<T, S, 5>(x, {sd::term<T, S>{c.c_x, tensor_view<const T, S>(x)}, h(0), h(1), h(2), h(3)});
    }

    /// step with the configured prediction type.
    template <class T, class S>
    void step(std::type_identity_t<tensor_view<const T, S>> m, std::size_t i, tensor_view<T, S> x, philox_rng& rng) {
        step<T, S>(m, config_.prediction, i, x, rng);
    }

private:
    /// Predictor geometry of step i with its order.
    struct geometry {
        int p = 1;
        double Ax = 0, Am = 0, AB = 0;  ///< x' = Ax·x − Am·m_i − AB·Σ ρ_k D_k
        double hh = 0, B = 0;
        std::array<double, 3> r{};      ///< r_1 .. r_{p−1}
        std::array<double, 3> rho_p{};  ///< ρ^p_1 .. ρ^p_{p−1}
    };

    void check_config() const {
        require(config_.order >= 1 && config_.order <= 3, "order", config_.order,
                "in [1, 3] (UniPC predictor order p; the corrector raises the accuracy to p + 1)");
        check_thresholding(config_.threshold);
        if (config_.threshold.enabled && config_.algorithm != unipc_algorithm::data_prediction)
            fail_argument("threshold.enabled", "true",
                          "false with algorithm = noise_prediction (thresholding acts on x0 estimates)");
    }
    void require_schedule() const {
        if (!schedule_)
            fail("unipc_sampler.set_timesteps: no discrete schedule; construct with one, or use set_levels");
    }

    /// b_k = k!·hh·φ_{k+1}(hh)/B(h), k = 1 .. n.
    static std::array<double, 4> b_vector(double hh, double B, int n) {
        std::array<double, 4> b{};
        double fact = 1.0;
        for (int k = 1; k <= n; ++k) {
            fact *= k;
            b[k - 1] = fact * hh * detail::unipc_phi(k + 1, hh) / B;
        }
        return b;
    }

    geometry predictor_geometry(std::size_t i) const {
        geometry g;
        g.p = predictor_order(i);
        const noise_condition& from = levels_[i];
        const noise_condition& to = levels_[i + 1];
        const bool data = config_.algorithm == unipc_algorithm::data_prediction;
        if (to.s == 0.0) {  // σ' = 0: first order, x' = a'·x0 estimate
            if (data) {
                g.Ax = 0.0;
                g.Am = -to.a;
            } else {
                g.Ax = to.a / from.a;
                g.Am = to.a * from.s / from.a;
            }
            return g;
        }
        const double lam_s = levels_.lambda(i);
        const double h = levels_.lambda(i + 1) - lam_s;
        g.hh = data ? -h : h;
        g.B = config_.variant == unipc_variant::bh1 ? g.hh : std::expm1(g.hh);
        const double em1 = std::expm1(g.hh);
        if (data) {
            g.Ax = to.s / from.s;
            g.Am = to.a * em1;
            g.AB = to.a * g.B;
        } else {
            g.Ax = to.a / from.a;
            g.Am = to.s * em1;
            g.AB = to.s * g.B;
        }
        for (int k = 1; k < g.p; ++k) g.r[k - 1] = (levels_.lambda(i - k) - lam_s) / h;
        if (g.p == 2) {
            g.rho_p[0] = 0.5;  // diffusers / uni_pc.py: "for order 2, we use a simplified version"
        } else if (g.p == 3) {
            const std::array<double, 4> b = b_vector(g.hh, g.B, 2);
            std::array<std::array<double, 4>, 4> R{};
            R[0] = {1.0, 1.0, 0.0, 0.0};
            R[1] = {g.r[0], g.r[1], 0.0, 0.0};
            const std::array<double, 4> y = detail::solve_small(R, b, 2);
            g.rho_p = {y[0], y[1], 0.0};
        }
        return g;
    }

    /// ρ^c of the UniC that corrects the result of a step with geometry q (order q.p).
    static std::array<double, 4> corrector_rhos(const geometry& q) {
        if (q.p == 1) return {0.5, 0.0, 0.0, 0.0};  // "for order 1, we use a simplified version"
        const std::array<double, 4> b = b_vector(q.hh, q.B, q.p);
        std::array<std::array<double, 4>, 4> R{};
        for (int m = 0; m < q.p; ++m) {
            for (int k = 0; k + 1 < q.p; ++k) R[m][k] = std::pow(q.r[k], m);
            R[m][q.p - 1] = 1.0;
        }
        return detail::solve_small(R, b, static_cast<std::size_t>(q.p));
    }

    std::optional<schedules::discrete_schedule> schedule_;
    level_sequence levels_;
    unipc_config config_{};
    detail::history_store history_;
    std::size_t head_ = 0;
    std::optional<std::size_t> last_step_;
};

}  // namespace diffuse::samplers
