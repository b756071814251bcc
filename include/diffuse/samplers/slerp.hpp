#pragma once
// Spherical linear interpolation of two noise tensors (Shoemake 1985; the form used for
// latent-noise interpolation in the Stable Diffusion community; docs/samplers/editing.md §4).
//
//   cos θ = ⟨v0, v1⟩ / (‖v0‖·‖v1‖)
//   |cos θ| > dot_threshold (0.9995):  out = (1 − t)·v0 + t·v1                    (lerp fallback)
//   otherwise:                          out = sin(θ − tθ)/sin θ · v0 + sin(tθ)/sin θ · v1
//
// per batch item (slerp_mode::per_item, default: item b of [B, ...] uses its own angle) or over
// the whole tensor (slerp_mode::whole). The dot products are accumulated in double over fixed
// chunks (deterministic for any thread count, like backend/reduce.hpp) on the tensors' memory
// space; the interpolation is one lincomb per item (per_item) or one in all (whole).
//
// Why: two independent N(0, I) draws in d dimensions are nearly orthogonal (cos θ = O(1/√d))
// and of norm ≈ √d, so slerp stays on that shell (‖out‖ = ‖v0‖ exactly when ‖v0‖ = ‖v1‖), i.e.
// keeps unit variance per element, while lerp at t = ½ shrinks the variance to ½.
// t may be any finite number (t outside [0, 1] extrapolates along the great circle).

#include <diffuse/backend/for_each.hpp>
#include <diffuse/backend/lincomb.hpp>
#include <diffuse/backend/reduce.hpp>
#include <diffuse/core/config.hpp>
#include <diffuse/core/error.hpp>
#include <diffuse/core/tensor.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

namespace diffuse::samplers {

enum class slerp_mode {
    per_item,  ///< one angle per batch item (dimension 0)
    whole,     ///< one angle for the whole tensor
};

struct slerp_options {
    double dot_threshold = 0.9995;  ///< |cos θ| above this: lerp (θ ≈ 0 or π)
    slerp_mode mode = slerp_mode::per_item;
};

/// out = c0·v0 + c1·v1; theta = acos(cos θ); linear = the lerp fallback was taken.
struct slerp_coeffs {
    double c0, c1;
    double theta;
    bool linear;
};

/// The coefficients for interpolation weight t between vectors at angle acos(cos_theta).
inline slerp_coeffs slerp_coefficients(double t, double cos_theta, double dot_threshold = 0.9995) {
    require(std::isfinite(t), "t", t, "finite");
    require(std::isfinite(dot_threshold) && dot_threshold > 0.0 && dot_threshold <= 1.0, "dot_threshold",
            dot_threshold, "in (0, 1]");
    require(std::isfinite(cos_theta), "cos_theta", cos_theta, "finite (non-zero, finite inputs)");
    const double c = std::max(-1.0, std::min(1.0, cos_theta));
    const double theta = std::acos(c);
    const double sin_theta = std::sin(theta);
    if (std::abs(c) > dot_threshold || sin_theta == 0.0) return {1.0 - t, t, theta, true};
    const double theta_t = theta * t;
    return {std::sin(theta - theta_t) / sin_theta, std::sin(theta_t) / sin_theta, theta, false};
}

namespace detail::editing {

/// partial[3j .. 3j+2] = (Σ a², Σ b², Σ a·b) over chunk j % chunks of item j / chunks.
template <class T>
struct dot3_op {
    const T* a;
    const T* b;
    std::int64_t n_item, chunks;
    double* partial;
    DIFFUSE_HOST_DEVICE void operator()(std::int64_t j) const {
        const std::int64_t item = j / chunks, c = j % chunks;
        const std::int64_t lo = item * n_item + c * reduce_chunk;
        const std::int64_t end = (item + 1) * n_item;
        const std::int64_t hi = lo + reduce_chunk < end ? lo + reduce_chunk : end;
        double aa = 0.0, bb = 0.0, ab = 0.0;
        for (std::int64_t i = lo; i < hi; ++i) {
            const double x = static_cast<double>(a[i]), y = static_cast<double>(b[i]);
            aa += x * x;
            bb += y * y;
            ab += x * y;
        }
        partial[3 * j] = aa;
        partial[3 * j + 1] = bb;
        partial[3 * j + 2] = ab;
    }
};

/// (‖a_b‖², ‖b_b‖², ⟨a_b, b_b⟩) for each of `items` equal consecutive slices.
template <class T, class S>
std::vector<std::array<double, 3>> item_dots(tensor_view<const T, S> a, tensor_view<const T, S> b,
                                             std::int64_t items) {
    const std::int64_t n_item = a.numel() / items;
    const std::int64_t chunks = (n_item + reduce_chunk - 1) / reduce_chunk;
    tensor<double, S> partial(shape{3 * items * chunks});
    for_each<S>(items * chunks, dot3_op<T>{a.data(), b.data(), n_item, chunks, partial.view().data()});
    const std::vector<double> p = partial.to_vector();
    std::vector<std::array<double, 3>> out(static_cast<std::size_t>(items), {0.0, 0.0, 0.0});
    for (std::int64_t j = 0; j < items * chunks; ++j)
        for (int k = 0; k < 3; ++k) out[static_cast<std::size_t>(j / chunks)][k] += p[static_cast<std::size_t>(3 * j + k)];
    return out;
}

}  // namespace detail::editing

/// out = slerp(v0, v1; t), per item or whole (see the file comment). out may alias v0 or v1.
/// Returns the coefficients used (one per item, or one). Throws for shape mismatch, empty
/// tensors, a zero-norm item, non-finite t or a threshold outside (0, 1].
template <class T, class S>
std::vector<slerp_coeffs> slerp(tensor_view<T, S> out, double t, std::type_identity_t<tensor_view<const T, S>> v0,
                                std::type_identity_t<tensor_view<const T, S>> v1, slerp_options options = {}) {
    require(std::isfinite(t), "slerp: t", t, "finite");
    require(std::isfinite(options.dot_threshold) && options.dot_threshold > 0.0 && options.dot_threshold <= 1.0,
            "slerp: dot_threshold", options.dot_threshold, "in (0, 1]");
    require_same_shape(v0.shape(), "v0", v1.shape(), "v1");
    require_same_shape(out.shape(), "out", v0.shape(), "v0");
    require(v0.numel() > 0, "slerp: v0.numel()", v0.numel(), "> 0");
    const bool per_item = options.mode == slerp_mode::per_item;
    if (per_item) require(v0.rank() >= 1, "slerp: v0.rank()", v0.rank(), ">= 1 (a batch [B, ...])");
    const std::int64_t items = per_item ? v0.size(0) : 1;
    const auto dots = detail::editing::item_dots<T, S>(v0, v1, items);
    std::vector<slerp_coeffs> coeffs;
    for (std::int64_t b = 0; b < items; ++b) {
        const auto& d = dots[static_cast<std::size_t>(b)];
        const std::string where = per_item ? "[item " + std::to_string(b) + "]" : "";
        require(d[0] > 0.0 && std::isfinite(d[0]), "slerp: ‖v0" + where + "‖²", d[0], "finite and > 0");
        require(d[1] > 0.0 && std::isfinite(d[1]), "slerp: ‖v1" + where + "‖²", d[1], "finite and > 0");
        coeffs.push_back(slerp_coefficients(t, d[2] / std::sqrt(d[0] * d[1]), options.dot_threshold));
    }
    if (!per_item) {
        lincomb(out, coeffs[0].c0, v0, coeffs[0].c1, v1);
    } else {
        for (std::int64_t b = 0; b < items; ++b)
            lincomb(out.item(b), coeffs[static_cast<std::size_t>(b)].c0, v0.item(b), coeffs[static_cast<std::size_t>(b)].c1,
                    v1.item(b));
    }
    return coeffs;
}

/// slerp on owning tensors.
template <class T, class S>
std::vector<slerp_coeffs> slerp(tensor<T, S>& out, double t, const tensor<T, S>& v0, const tensor<T, S>& v1,
                                slerp_options options = {}) {
    return slerp<T, S>(out.view(), t, v0.cview(), v1.cview(), options);
}

}  // namespace diffuse::samplers
