#pragma once
// EDM preconditioning (Karras et al. 2022, Table 1 and App. B.6; closed_forms A10;
// docs/denoisers.md §4).
//
// In σ-space x = x0 + σ·n, n ~ N(0, I), with data standard deviation σ_d, the denoiser is
//   D(x; σ) = c_skip(σ)·x + c_out(σ)·F(c_in(σ)·x; c_noise(σ))
// with F the raw network and
//   c_skip  = σ_d²/(σ² + σ_d²)          c_out = σ·σ_d/√(σ² + σ_d²)
//   c_in    = 1/√(σ² + σ_d²)            c_noise = ¼·log σ
//   loss weight λ(σ) = (σ² + σ_d²)/(σ·σ_d)² = 1/c_out²
// chosen so that, when std(x0) = σ_d, the network input c_in·x and the effective training target
// F_target = (x0 − c_skip·x)/c_out both have unit variance (the target's variance is
// ((1−c_skip)²σ_d² + c_skip²σ²)/c_out² = 1 with c_skip minimising it), and λ·c_out² = 1 equalises the
// loss across σ. Identities: c_skip + c_out²/σ_d² = 1, c_out² = σ²·c_skip, c_in²·(σ² + σ_d²) = 1.
//
// edm_denoiser<F> turns a raw network F, called as f(out, x_in, c_noise, cond) with
// x_in = c_in·x (a tensor of the shape of x), into a denoiser with prediction_type::sample.
// It accepts any level (a, s): x_ve = x_t/a and σ = s/a (closed_forms A10), so it runs under VP
// samplers too. edm_network_from_denoiser goes the other way: from a sample-predicting denoiser D
// it forms F(x_in; c_noise) = (D(x; σ) − c_skip·x)/c_out with σ = exp(4·c_noise), x = x_in/c_in —
// the exact raw network of an exact model (and the training target of F).

#include <diffuse/backend/lincomb.hpp>
#include <diffuse/core/error.hpp>
#include <diffuse/core/tensor.hpp>
#include <diffuse/models/denoiser.hpp>
#include <diffuse/models/prediction_adapter.hpp>

#include <cmath>
#include <concepts>
#include <type_traits>
#include <utility>

namespace diffuse::models {

/// The EDM preconditioning coefficients at one σ.
struct edm_coefficients {
    double c_skip;
    double c_out;
    double c_in;
    double c_noise;
    double loss_weight;  ///< λ(σ) = 1/c_out²
};

/// EDM Table 1 at σ > 0 (finite), σ_d > 0 (finite; EDM's default 0.5). Computed with
/// h = hypot(σ, σ_d) (no overflow of σ²): c_skip = (σ_d/h)², c_out = σ·(σ_d/h), c_in = 1/h,
/// c_noise = ¼ log σ, λ = (h/(σ·σ_d))².
inline edm_coefficients edm_preconditioning(double sigma, double sigma_data = 0.5) {
    require_positive(sigma, "sigma");
    require_positive(sigma_data, "sigma_data");
    const double h = std::hypot(sigma, sigma_data);
    const double r = sigma_data / h;
    const double w = h / (sigma * sigma_data);
    return {r * r, sigma * r, 1.0 / h, 0.25 * std::log(sigma), w * w};
}

/// σ from c_noise = ¼ log σ: σ = exp(4·c_noise).
inline double edm_sigma_from_c_noise(double c_noise) {
    require_finite(c_noise, "c_noise");
    return std::exp(4.0 * c_noise);
}

/// F is a raw EDM network for (T, Space, Cond): f(out, x_in, c_noise, cond) writes F(x_in; c_noise).
template <class F, class T, class Space = default_space, class Cond = no_condition>
concept edm_network = requires(const F& f, tensor_view<T, Space> out, tensor_view<const T, Space> x_in,
                               double c_noise, const Cond& cond) { f(out, x_in, c_noise, cond); };

/// D(x; σ) = c_skip·x + c_out·F(c_in·x; c_noise), a denoiser predicting x0 (prediction_type::sample).
template <class F>
class edm_denoiser {
public:
    explicit edm_denoiser(F network, double sigma_data = 0.5) : network_(std::move(network)), sigma_data_(sigma_data) {
        require_positive(sigma_data, "sigma_data");
    }

    prediction_type prediction() const { return prediction_type::sample; }
    double sigma_data() const { return sigma_data_; }
    const F& network() const { return network_; }

    /// x_t at level (a, s) with a > 0 and s > 0 (σ = s/a in (0, ∞); EDM never evaluates D at σ = 0).
    /// Allocates one temporary of x_t's shape for the network input.
    template <class T, class S, class Cond>
        requires edm_network<F, T, S, Cond>
    void operator()(tensor_view<T, S> out, std::type_identity_t<tensor_view<const T, S>> x_t,
                    const noise_condition& level, const Cond& cond) const {
        check_noise_condition(level);
        require(level.a > 0.0, "level.a", level.a, "> 0 for EDM preconditioning (σ = s/a must be finite)");
        require(level.s > 0.0, "level.s", level.s, "> 0 for EDM preconditioning (c_noise = ¼ log σ needs σ > 0)");
        detail::check_call_tensors(out, x_t, "edm_denoiser");
        const double sigma = level.sigma();
        const edm_coefficients c = edm_preconditioning(sigma, sigma_data_);
        // x_ve = x_t/a: the network input c_in·x_ve and the skip term c_skip·x_ve.
        tensor<T, S> x_in(x_t.shape());
        lincomb(x_in.view(), c.c_in / level.a, x_t);
        network_(out, x_in.cview(), c.c_noise, cond);
        lincomb(out, c.c_skip / level.a, x_t, c.c_out, tensor_view<const T, S>(out));
    }

private:
    F network_;
    double sigma_data_;
};

/// edm_denoiser(network, sigma_data).
template <class F>
edm_denoiser<std::decay_t<F>> edm_precondition(F&& network, double sigma_data = 0.5) {
    return edm_denoiser<std::decay_t<F>>(std::forward<F>(network), sigma_data);
}

/// The raw network F of a denoiser D in EDM parametrisation: F(x_in; c_noise) =
/// (D(x; σ) − c_skip·x)/c_out, x = x_in/c_in, σ = exp(4·c_noise), D evaluated at level (1, σ)
/// and converted to x0 with predict_as. edm_precondition of it gives D back (up to rounding).
template <class D>
class edm_network_from_denoiser {
public:
    explicit edm_network_from_denoiser(D model, double sigma_data = 0.5)
        : model_(std::move(model)), sigma_data_(sigma_data) {
        require_positive(sigma_data, "sigma_data");
    }
    const D& wrapped() const { return model_; }
    double sigma_data() const { return sigma_data_; }

    template <class T, class S, class Cond>
        requires denoiser<D, T, S, Cond>
    void operator()(tensor_view<T, S> out, std::type_identity_t<tensor_view<const T, S>> x_in, double c_noise,
                    const Cond& cond) const {
        const double sigma = edm_sigma_from_c_noise(c_noise);
        const edm_coefficients c = edm_preconditioning(sigma, sigma_data_);
        detail::check_call_tensors(out, x_in, "edm_network_from_denoiser");
        tensor<T, S> x(x_in.shape());
        lincomb(x.view(), 1.0 / c.c_in, x_in);
        predict_as(model_, prediction_type::sample, out, x.cview(), noise_condition::ve(sigma), cond);
        lincomb(out, -c.c_skip / c.c_out, x.cview(), 1.0 / c.c_out, tensor_view<const T, S>(out));
    }

private:
    D model_;
    double sigma_data_;
};

}  // namespace diffuse::models
