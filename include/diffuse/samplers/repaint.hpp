#pragma once
// RePaint inpainting (Lugmayr et al. 2022, Alg. 1; diffusers RePaintScheduler and RePaintPipeline;
// docs/samplers/editing.md §3).
//
// A known image k [B, ...] and a mask M (1 = keep the known pixel, 0 = inpaint; diffusers'
// convention) are given once (set_known). The jump schedule (repaint_timesteps, diffusers'
// set_timesteps(N, jump_length, jump_n_sample)) is a list of training timesteps that goes down
// by r = T // N and, at the jump points, back up by jump_length entries, jump_n_sample − 1 times.
// A down entry t is one model step, x at ᾱ_t -> ᾱ' = ᾱ_{t−r} (1 when t − r < 0):
//   unknown:  x0 = p_x·x + p_m·m (clamped with clip_sample), eps = e_x·x + e_m·m
//             x_u = √ᾱ'·x0 + √(1 − ᾱ' − σ_η²)·eps + σ_η·z,   σ_η² = η²·(1−ᾱ')/(1−ᾱ_t)·(1 − ᾱ_t/ᾱ')
//             (the DDIM(η) / DDPM-posterior step; diffusers RePaintScheduler.step with eta)
//   known:    x_k = √ᾱ'·k + √(1 − ᾱ')·z                (the forward process from the known image)
//   x' = M·x_k + (1 − M)·x_u                          (one fused element-wise pass; same z in both)
// so the known region of the final x (ᾱ' = 1) is k exactly. A run of up entries between two
// down steps is the undo ("resampling jump") of the forward process from the level x is at,
// ᾱ_lo, to the level of the next down step, ᾱ_hi:
//   x <- √(ᾱ_hi/ᾱ_lo)·x + √(1 − ᾱ_hi/ᾱ_lo)·z          (one lincomb; for one training step this is
//                                                       x_t = √(1−β_t)·x_{t−1} + √β_t·z)
// applied to the whole image by prepare_step(i, x, rng) before the model call of step i.
//
// Stepping API: the steps are the down entries only (num_steps() model evaluations); the jumps
// live in prepare_step, so sample() runs RePaint unchanged. x starts as pure noise N(0, I) at
// the first timestep (diffusers: randn, no known-region merge before the first step).
// Noise: step() draws x.numel() normals every step (the known region is re-noised even with
// η = 0, as diffusers does); prepare_step() draws x.numel() normals before a step that follows
// a jump, none otherwise. step_with_noise / prepare_step_with_noise take z explicitly.
//
// Differences from diffusers (documented in editing.md): diffusers' undo_step applies the r
// single-step kernels with betas[t_last .. t_last + r − 1] (one normal draw each), which for
// r > 1 ends r − 1 training steps above the next level; here one exact kernel to the next level
// (the same law as the correct r-fold composition). η defaults to diffusers' 0.0 (the paper
// uses DDPM, η = 1). clip_sample defaults to false (diffusers: true). Any prediction type.

#include <diffuse/backend/for_each.hpp>
#include <diffuse/backend/lincomb.hpp>
#include <diffuse/backend/randn.hpp>
#include <diffuse/core/config.hpp>
#include <diffuse/core/error.hpp>
#include <diffuse/core/philox.hpp>
#include <diffuse/core/tensor.hpp>
#include <diffuse/models/denoiser.hpp>
#include <diffuse/samplers/ddim.hpp>
#include <diffuse/samplers/inversion.hpp>
#include <diffuse/samplers/sampler.hpp>
#include <diffuse/schedules/discrete_schedule.hpp>

#include <any>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace diffuse::samplers {

/// diffusers RePaintScheduler.set_timesteps(N, jump_length, jump_n_sample): the jump schedule in
/// training timesteps (entries × T // N). Requires 1 <= N <= T, jump_length >= 1, jump_n_sample >= 1.
inline std::vector<int> repaint_timesteps(int num_train_timesteps, int num_inference_steps, int jump_length,
                                          int jump_n_sample) {
    const int T = num_train_timesteps, N = num_inference_steps;
    require(T >= 1, "num_train_timesteps", T, ">= 1");
    require(N >= 1 && N <= T, "num_inference_steps", N, "in [1, " + std::to_string(T) + "] (num_train_timesteps)");
    require(jump_length >= 1, "jump_length", jump_length, ">= 1 (entries per resampling jump)");
    require(jump_n_sample >= 1, "jump_n_sample", jump_n_sample, ">= 1 (1 = no resampling)");
    std::map<int, int> jumps;
    for (int j = 0; j < N - jump_length; j += jump_length) jumps[j] = jump_n_sample - 1;
    std::vector<int> out;
    int t = N;
    while (t >= 1) {
        t = t - 1;
        out.push_back(t);
        auto it = jumps.find(t);
        if (it != jumps.end() && it->second > 0) {
            it->second -= 1;
            for (int k = 0; k < jump_length; ++k) {
                t = t + 1;
                out.push_back(t);
            }
        }
    }
    const int r = T / N;
    for (int& v : out) v *= r;
    return out;
}

struct repaint_config {
    double eta = 0.0;                 ///< η in [0, 1]: 0 = DDIM step (diffusers' default), 1 = DDPM posterior (paper)
    bool clip_sample = false;         ///< clamp x0 to [−clip_sample_range, clip_sample_range] (diffusers: true)
    double clip_sample_range = 1.0;
    prediction_type prediction = prediction_type::epsilon;  ///< what step(m, i, x, rng) assumes m is
};

/// The undo (resampling jump) before a step: x <- c_x·x + c_z·z, from the level of training
/// timestep from_timestep (−1: ᾱ = 1) up to to_timestep.
struct repaint_undo {
    int from_timestep, to_timestep;
    double c_x, c_z;
};

namespace detail::editing {

/// x[i] = mask[i] ? ka·k[i] + kz·z[i] : sa·clip(p_x·x + p_m·m) + d·(e_x·x + e_m·m) + cz·z[i].
template <class T>
struct repaint_merge_op {
    T* x;
    const T* m;
    const T* z;
    const T* known;
    const T* mask;
    double p_x, p_m, e_x, e_m, sa, d, cz, ka, kz;
    bool clip;
    double lo, hi;
    DIFFUSE_HOST_DEVICE void operator()(std::int64_t i) const {
        const double zi = static_cast<double>(z[i]);
        if (mask[i] != T(0)) {
            x[i] = static_cast<T>(ka * static_cast<double>(known[i]) + kz * zi);
            return;
        }
        const double xi = static_cast<double>(x[i]), mi = static_cast<double>(m[i]);
        double x0 = p_x * xi + p_m * mi;
        if (clip) x0 = x0 < lo ? lo : (x0 > hi ? hi : x0);
        const double eps = e_x * xi + e_m * mi;
        x[i] = static_cast<T>(sa * x0 + d * eps + cz * zi);
    }
};

}  // namespace detail::editing

class repaint_sampler {
public:
    explicit repaint_sampler(schedules::discrete_schedule schedule, repaint_config config = {})
        : schedule_(std::move(schedule)), config_(config) {
        require(std::isfinite(config_.eta) && config_.eta >= 0.0 && config_.eta <= 1.0, "eta", config_.eta,
                "in [0, 1] (0: DDIM step, 1: DDPM posterior variance)");
        require(std::isfinite(config_.clip_sample_range) && config_.clip_sample_range > 0.0, "clip_sample_range",
                config_.clip_sample_range, "a finite number > 0");
    }

    /// The jump schedule of diffusers (repaint_timesteps) and the steps / undos it implies.
    void set_timesteps(int num_inference_steps, int jump_length = 10, int jump_n_sample = 10) {
        const int T = schedule_.num_train_timesteps();
        std::vector<int> list = repaint_timesteps(T, num_inference_steps, jump_length, jump_n_sample);
        const int r = T / num_inference_steps;
        std::vector<int> down;
        std::vector<std::optional<std::pair<int, int>>> undo;  // per down step: (from, to) timesteps
        std::optional<std::pair<int, int>> pending;
        int level = list.front();  // the timestep of the level x is at (−1: ᾱ = 1)
        int t_last = list.front() + 1;
        for (int e : list) {
            if (e < t_last) {
                if (e != level)
                    fail("repaint_sampler.set_timesteps: internal schedule error (down entry " + std::to_string(e) +
                         " with x at timestep " + std::to_string(level) + ")");
                down.push_back(e);
                undo.push_back(pending);
                pending.reset();
                level = e - r >= 0 ? e - r : -1;
            } else {
                const int hi = e - r;
                if (!pending) pending = std::pair<int, int>{level, hi};
                pending->second = hi;
                level = hi;
            }
            t_last = e;
        }
        jump_list_ = std::move(list);
        down_ = std::move(down);
        undo_ = std::move(undo);
        stride_ = r;
    }

    /// The known image [B, ...] and the mask (1 = keep known, 0 = inpaint): the known image's
    /// shape, or one broadcastable to it (same rank, each dimension equal or 1), with every value
    /// exactly 0 or 1. Copied into the sampler; x must then have the known image's shape.
    template <class T, class S>
    void set_known(std::type_identity_t<tensor_view<const T, S>> known,
                   std::type_identity_t<tensor_view<const T, S>> mask) {
        require(known.rank() >= 1, "repaint_sampler.set_known: known.rank()", known.rank(), ">= 1 (a batch [B, ...])");
        const shape ks = known.shape(), ms = mask.shape();
        bool ok = ms.rank() == ks.rank();
        for (int d = 0; ok && d < ks.rank(); ++d) ok = ms[d] == ks[d] || ms[d] == 1;
        if (!ok)
            fail_argument("repaint_sampler.set_known: mask.shape()", ms.str(),
                          "the known image's shape " + ks.str() +
                              " or one broadcastable to it (same rank, each dimension equal or 1)");
        std::vector<T> mv;
        if constexpr (std::is_same_v<S, host_space>) {
            mv.assign(mask.data(), mask.data() + mask.numel());
        } else {
            tensor<T, S> tmp(ms);
            copy(tmp.view(), mask);
            mv = tmp.to_vector();
        }
        for (std::size_t i = 0; i < mv.size(); ++i)
            if (!(mv[i] == T(0) || mv[i] == T(1)))
                fail_argument("repaint_sampler.set_known: mask[" + std::to_string(i) + "]",
                              static_cast<double>(mv[i]), "0 or 1 (1 = keep the known pixel, 0 = inpaint)");
        // Expand the mask to the known image's shape on the host.
        std::vector<T> full(static_cast<std::size_t>(ks.numel()));
        std::int64_t mstride[max_rank] = {};
        {
            std::int64_t s = 1;
            for (int d = ks.rank() - 1; d >= 0; --d) {
                mstride[d] = ms[d] == 1 ? 0 : s;
                s *= ms[d];
            }
        }
        for (std::int64_t i = 0; i < ks.numel(); ++i) {
            std::int64_t rem = i, mi = 0;
            for (int d = ks.rank() - 1; d >= 0; --d) {
                const std::int64_t idx = rem % ks[d];
                rem /= ks[d];
                mi += idx * mstride[d];
            }
            full[static_cast<std::size_t>(i)] = mv[static_cast<std::size_t>(mi)];
        }
        tensor<T, S> k(ks);
        copy(k.view(), known);
        known_ = std::move(k);
        mask_ = tensor<T, S>::from_values(ks, full);
        known_shape_ = ks;
    }

    const repaint_config& config() const { return config_; }
    const schedules::discrete_schedule& schedule() const { return schedule_; }
    /// diffusers' timesteps list (with the up entries).
    const std::vector<int>& jump_timesteps() const { return jump_list_; }
    /// The training timesteps of the model steps (the down entries), in order.
    const std::vector<int>& timesteps() const { return down_; }
    /// r = T // N: the down stride in training timesteps.
    int stride() const { return stride_; }

    std::size_t num_steps() const { return down_.size(); }
    double timestep(std::size_t i) const {
        require_index(i);
        return down_[i];
    }
    int order() const { return 1; }
    double init_noise_sigma() const { return 1.0; }
    double model_input_scale(std::size_t) const { return 1.0; }
    noise_condition model_level(std::size_t i) const {
        require_index(i);
        return noise_condition::at(schedule_, down_[i]);
    }
    /// x at step i (after its jump, if any) is at the model's level.
    noise_condition state_level(std::size_t i) const { return model_level(i); }
    template <class T, class S>
    void scale_model_input(tensor_view<T, S> out, std::type_identity_t<tensor_view<const T, S>> x, std::size_t) const {
        lincomb(out, 1.0, x);
    }

    /// ᾱ' of step i (ᾱ_{t−r}, or 1 after timestep 0).
    double alpha_bar_prev(std::size_t i) const {
        require_index(i);
        return down_[i] - stride_ >= 0 ? schedule_.alpha_bar(down_[i] - stride_) : 1.0;
    }
    /// The unknown-region coefficients of step i (ddim_coefficients with η).
    ddim_coeffs coefficients(prediction_type from, std::size_t i) const {
        require_index(i);
        const int t = down_[i];
        return ddim_coefficients(from, schedule_.alpha(t), schedule_.sigma(t), alpha_bar_prev(i), config_.eta);
    }

    /// The jump before step i, if any.
    std::optional<repaint_undo> undo_before(std::size_t i) const {
        require_index(i);
        if (!undo_[i]) return std::nullopt;
        const auto [lo, hi] = *undo_[i];
        const double ab_lo = lo >= 0 ? schedule_.alpha_bar(lo) : 1.0;
        const double ab_hi = schedule_.alpha_bar(hi);
        return repaint_undo{lo, hi, std::sqrt(ab_hi / ab_lo), std::sqrt((ab_lo - ab_hi) / ab_lo)};
    }

    /// Before the model call of step i: the resampling jump up to the step's level (if any).
    template <class T, class S>
    void prepare_step(std::size_t i, tensor_view<T, S> x, philox_rng& rng) {
        require_index(i);
        if (!undo_[i]) return;
        tensor<T, S>& z = detail::editing::buffer<T, S>(z_, x.shape());
        randn(z.view(), rng);
        prepare_step_with_noise<T, S>(i, x, z.cview());
    }
    template <class T, class S>
    void prepare_step_with_noise(std::size_t i, tensor_view<T, S> x, std::type_identity_t<tensor_view<const T, S>> z) {
        const std::optional<repaint_undo> u = undo_before(i);
        if (!u) return;
        require_same_shape(z.shape(), "z", x.shape(), "x");
        lincomb(x, u->c_x, tensor_view<const T, S>(x), u->c_z, z);
    }

    /// x <- x at ᾱ' with the known region merged; draws x.numel() normals.
    template <class T, class S>
    void step(std::type_identity_t<tensor_view<const T, S>> m, prediction_type from, std::size_t i,
              tensor_view<T, S> x, philox_rng& rng) {
        require_index(i);
        tensor<T, S>& z = detail::editing::buffer<T, S>(z_, x.shape());
        randn(z.view(), rng);
        step_with_noise<T, S>(m, from, i, x, z.cview());
    }
    template <class T, class S>
    void step(std::type_identity_t<tensor_view<const T, S>> m, std::size_t i, tensor_view<T, S> x,
              philox_rng& rng) {
        step<T, S>(m, config_.prediction, i, x, rng);
    }

    /// step() with the standard-normal tensor z given (the same z re-noises the known region).
    template <class T, class S>
    void step_with_noise(std::type_identity_t<tensor_view<const T, S>> m, prediction_type from, std::size_t i,
                         tensor_view<T, S> x, std::type_identity_t<tensor_view<const T, S>> z) const {
        require_index(i);
        samplers::detail::require_step_tensors<T, S>(m, x, "repaint_sampler.step");
        require_same_shape(z.shape(), "z", x.shape(), "x");
        const auto* k = std::any_cast<tensor<T, S>>(&known_);
        const auto* mk = std::any_cast<tensor<T, S>>(&mask_);
        if (k == nullptr || mk == nullptr) {
            if (known_.has_value())
                fail("repaint_sampler.step: the known image was set with another element type or memory space "
                     "than x; call set_known with tensors of x's type");
            fail("repaint_sampler.step: no known image; call set_known(known, mask) first");
        }
        if (x.shape() != known_shape_)
            fail_argument("repaint_sampler.step: x.shape()", x.shape().str(),
                          "the known image's shape " + known_shape_.str());
        const ddim_coeffs c = coefficients(from, i);
        const double abp = alpha_bar_prev(i);
        detail::editing::repaint_merge_op<T> op{x.data(),     m.data(), z.data(), k->data(), mk->data(),
                                                c.p_x,        c.p_m,    c.e_x,    c.e_m,     c.sqrt_ab_prev,
                                                c.d,          c.c_z,    std::sqrt(abp), std::sqrt(1.0 - abp),
                                                config_.clip_sample, -config_.clip_sample_range,
                                                config_.clip_sample_range};
        for_each<S>(x.numel(), op);
    }

private:
    void require_index(std::size_t i) const { samplers::detail::require_step_index(i, num_steps(), "repaint_sampler"); }

    schedules::discrete_schedule schedule_;
    repaint_config config_;
    std::vector<int> jump_list_, down_;
    std::vector<std::optional<std::pair<int, int>>> undo_;
    int stride_ = 1;
    std::any known_, mask_, z_;  // tensor<T, S>
    shape known_shape_{};
};

}  // namespace diffuse::samplers
