#pragma once
// The layer interface of nn/ (DESIGN.md, Conventions; docs/unet.md §1).
//
// A layer is a forward/backward pair with an explicit cache:
//
//   host_tensor<T> forward(cview<T> x, cache* c = nullptr) const;   y = f(x; θ)
//   host_tensor<T> backward(cview<T> dy, const cache& c);           dx = (∂f/∂x)ᵀ dy,  θ.grad += (∂f/∂θ)ᵀ dy
//
// forward never changes the layer, so one layer object can serve several callers (a model is a
// const Denoiser at inference). When a cache pointer is given, forward stores in it what backward
// needs (usually the input or normalised activations). backward reads the cache of the matching
// forward call.
//
// THE GRADIENT RULE (written once, here):
//   * parameter gradients ACCUMULATE: backward adds (∂L/∂θ) into parameter::grad. Several
//     backward calls (a layer used twice, micro-batches) sum; call zero_grad() between steps.
//   * activation gradients OVERWRITE: backward returns ∂L/∂x as a fresh tensor; nothing is added
//     to anything the caller holds. A caller that feeds one activation to two layers adds the two
//     returned gradients itself (nn/layers/tensor_ops.hpp: add_into).
//
// Every layer lists its parameters with diffusers' names through
//   void collect(parameter_list<T>& out, const std::string& prefix)
// ("down_blocks.0.resnets.1.conv1" + ".weight"), which is what weight loading, saving, counting,
// optimizers and gradient checks walk.
//
// Tensors are host tensors, row-major, NCHW for images ([B, C, H, W]) and [B, N, C] for token
// sequences — the layouts PyTorch uses, so diffusers' weights are used as they are stored.

#include <diffuse/core/error.hpp>
#include <diffuse/core/memory_space.hpp>
#include <diffuse/core/shape.hpp>
#include <diffuse/core/tensor.hpp>
#include <diffuse/backend/for_each.hpp>

#include <algorithm>
#include <concepts>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace diffuse::nn {

template <class T>
using host_tensor = tensor<T, host_space>;
template <class T>
using view = tensor_view<T, host_space>;
template <class T>
using cview = tensor_view<const T, host_space>;

/// A trainable tensor and the gradient of the loss with respect to it (same shape).
template <class T>
struct parameter {
    static_assert(std::is_floating_point_v<T>, "parameters are float or double");
    host_tensor<T> value;  ///< what forward computes with
    host_tensor<T> grad;   ///< ∂L/∂value, accumulated by backward (the gradient rule above)

    parameter() = default;
    /// Zero value and zero gradient of shape s.
    explicit parameter(diffuse::shape s) : value(s, T(0)), grad(s, T(0)) {}

    const diffuse::shape& shape() const { return value.shape(); }
    std::int64_t numel() const { return value.numel(); }
    void zero_grad() { std::fill(grad.data(), grad.data() + grad.numel(), T(0)); }
};

/// A parameter with its diffusers name ("mid_block.attentions.0.to_q.weight").
template <class T>
struct named_parameter {
    std::string name;
    parameter<T>* param = nullptr;
};

template <class T>
using parameter_list = std::vector<named_parameter<T>>;

/// "a.b" + "c" -> "a.b.c"; "" + "c" -> "c".
inline std::string join_name(const std::string& prefix, std::string_view name) {
    if (prefix.empty()) return std::string(name);
    std::string s = prefix;
    s += '.';
    s += name;
    return s;
}

/// Anything that lists its parameters (a layer, a block, a model).
template <class M, class T>
concept has_parameters = requires(M& m, parameter_list<T>& out, const std::string& prefix) {
    m.collect(out, prefix);
};

/// All parameters of m with their names, in a fixed (construction) order.
template <class T, class M>
    requires has_parameters<M, T>
parameter_list<T> parameters_of(M& m, const std::string& prefix = "") {
    parameter_list<T> out;
    m.collect(out, prefix);
    return out;
}

/// Sets every parameter gradient of m to zero.
template <class T, class M>
    requires has_parameters<M, T>
void zero_grad(M& m) {
    for (auto& p : parameters_of<T>(m)) p.param->zero_grad();
}

/// Total number of scalar parameters of m.
template <class T, class M>
    requires has_parameters<M, T>
std::int64_t count_parameters(M& m) {
    std::int64_t n = 0;
    for (auto& p : parameters_of<T>(m)) n += p.param->numel();
    return n;
}

// ---- argument checks shared by the layers ------------------------------------------------------

/// Throws "<layer>: <what> has shape [..]; expected <expected>" unless ok.
inline void require_shape(bool ok, std::string_view layer, std::string_view what, const diffuse::shape& got,
                          std::string_view expected) {
    if (!ok)
        fail(std::string(layer) + ": " + std::string(what) + " has shape " + got.str() + "; expected " +
             std::string(expected));
}

/// Throws unless size > 0 (a channel count, a feature size, ...).
inline void require_size(std::int64_t size, std::string_view name, std::string_view layer) {
    if (size <= 0)
        fail(std::string(layer) + ": " + std::string(name) + " = " + std::to_string(size) +
             "; expected a size >= 1");
}

/// Throws unless the cache was filled by a forward call (backward without forward).
inline void require_cached(bool filled, std::string_view layer) {
    if (!filled)
        fail(std::string(layer) +
             ": backward called with an empty cache; call forward(x, &cache) first (docs/unet.md §1)");
}

/// A fresh zero tensor.
template <class T>
host_tensor<T> zeros(const diffuse::shape& s) {
    return host_tensor<T>(s, T(0));
}

/// A copy of a view (caches keep their inputs).
template <class T>
host_tensor<T> copy_of(cview<T> x) {
    host_tensor<T> y(x.shape());
    diffuse::for_each<host_space>(x.numel(), [&](std::int64_t i) { y.data()[i] = x.data()[i]; });
    return y;
}

}  // namespace diffuse::nn
