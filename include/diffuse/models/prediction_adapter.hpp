#pragma once
// Prediction-type adapters (docs/denoisers.md §3): present any denoiser's output as another
// parametrisation, so a sampler that needs x0 (DDIM, DPM-Solver++, EDM Euler) or eps (DDPM,
// PNDM) can run any model.
//
//   predict_as(model, to, out, x_t, level, cond)   out = the `to` prediction of model at x_t
//   as_prediction(model, to)                       a denoiser declaring `to` that wraps model
//
// Each is the model's own output followed by one process::convert, a linear map in (x_t, value)
// with coefficients (c_xt, c_value) = process::conversion_coeffs(from, to, a, s) computed in
// double on the host (closed_forms A3, peers b.5):
//   from eps:     x0 = (x_t − s·eps)/a           score = −eps/s        v = â·eps − ŝ·x0
//   from x0:      eps = (x_t − a·x0)/s           score = −eps/s
//   from v:       x0 = â·x_t/r − ŝ·v             eps = ŝ·x_t/r + â·v    (r = √(a²+s²), (â, ŝ) = (a, s)/r)
//   from score:   eps = −s·score                 x0 = (x_t + s²·score)/a
// The coefficients are computed, and so checked, BEFORE the model is called: a conversion that
// is undefined at this level (eps or score -> x0 / v at a = 0, x0 -> eps / score / v at s = 0)
// throws diffuse::error ("a = 0; expected > 0 for the conversion epsilon -> sample: ...")
// without running the model. Rounding: the conversion amplifies the model's rounding by
// |c_value| (a/s for x0 -> eps, s/a for eps -> x0), see tests/models/test_denoiser.cpp.

#include <diffuse/backend/lincomb.hpp>
#include <diffuse/core/tensor.hpp>
#include <diffuse/models/denoiser.hpp>
#include <diffuse/process/parametrization.hpp>

#include <type_traits>
#include <utility>

namespace diffuse::models {

/// out = the `to` parametrisation of model's prediction at (x_t, level, cond). out: the shape of
/// x_t, not aliasing it. Throws before calling the model when the conversion is undefined.
template <class M, class T, class S, class Cond>
    requires denoiser<M, T, S, Cond>
void predict_as(const M& model, prediction_type to, tensor_view<T, S> out,
                std::type_identity_t<tensor_view<const T, S>> x_t, const noise_condition& level, const Cond& cond) {
    check_noise_condition(level);
    detail::check_call_tensors(out, x_t, "predict_as");
    const prediction_type from = model.prediction();
    const process::conversion c = process::conversion_coeffs(from, to, level.a, level.s);
    model(out, x_t, level, cond);
    if (from == to) return;
    lincomb(out, c.c_xt, x_t, c.c_value, tensor_view<const T, S>(out));
}

/// predict_as for an unconditional call.
template <class M, class T, class S>
    requires denoiser<M, T, S, no_condition>
void predict_as(const M& model, prediction_type to, tensor_view<T, S> out,
                std::type_identity_t<tensor_view<const T, S>> x_t, const noise_condition& level) {
    predict_as(model, to, out, x_t, level, no_condition{});
}

/// A denoiser that wraps M (held by value; wrap by_ref(m) to refer instead) and declares `to`.
template <class M>
class prediction_adapter {
public:
    prediction_adapter(M model, prediction_type to) : model_(std::move(model)), to_(to) {}

    prediction_type prediction() const { return to_; }
    /// The wrapped model's own prediction type.
    prediction_type inner_prediction() const { return model_.prediction(); }
    const M& inner() const { return model_; }

    template <class T, class S, class Cond>
        requires denoiser<M, T, S, Cond>
    void operator()(tensor_view<T, S> out, std::type_identity_t<tensor_view<const T, S>> x_t,
                    const noise_condition& level, const Cond& cond) const {
        predict_as(model_, to_, out, x_t, level, cond);
    }

private:
    M model_;
    prediction_type to_;
};

/// as_prediction(model, prediction_type::sample): model's output presented as x0.
template <class M>
prediction_adapter<std::decay_t<M>> as_prediction(M&& model, prediction_type to) {
    return prediction_adapter<std::decay_t<M>>(std::forward<M>(model), to);
}

}  // namespace diffuse::models
