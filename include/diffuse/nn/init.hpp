#pragma once
// Parameter initialisation, reproducible (Philox keyed by seed; stream = parameter index).
//
// init_parameters(model, seed) — PyTorch's defaults for the layer each parameter belongs to, which
// is what a freshly constructed diffusers model has (diffusers adds no init of its own for these
// blocks):
//   conv / linear weight [out, in, ...]: U(−1/√fan_in, 1/√fan_in), fan_in = in·(kernel area)
//     (kaiming_uniform with a = √5);  their bias: U(−1/√fan_in, 1/√fan_in) with the layer's fan_in
//   group / layer norm: weight 1, bias 0 ("norm" in the module name, rank-1 tensors)
//   embedding tables ("class_embedding.weight" of rank 2, or an `embedding` name): N(0, 1)
// The rule is decided from the parameter's diffusers name and rank, so it applies to any module
// built from nn/ layers.

#include <diffuse/core/philox.hpp>
#include <diffuse/nn/layer.hpp>

#include <cmath>
#include <cstdint>
#include <string>

namespace diffuse::nn {

namespace detail {
inline bool is_norm_parameter(const std::string& name) {
    const auto dot = name.rfind('.');
    const std::string module = dot == std::string::npos ? name : name.substr(0, dot);
    const auto last = module.rfind('.');
    const std::string leaf = last == std::string::npos ? module : module.substr(last + 1);
    return leaf.find("norm") != std::string::npos;
}
}  // namespace detail

template <class T, class M>
    requires has_parameters<M, T>
void init_parameters(M& m, std::uint64_t seed) {
    auto params = parameters_of<T>(m);
    std::int64_t last_fan_in = 1;
    for (std::size_t k = 0; k < params.size(); ++k) {
        const std::string& name = params[k].name;
        parameter<T>& p = *params[k].param;
        T* v = p.value.data();
        const std::int64_t n = p.numel();
        const bool is_bias = name.ends_with(".bias");
        const bool table = p.value.rank() == 2 && (name.ends_with("class_embedding.weight") ||
                                                   name.find("embedding.weight") != std::string::npos) &&
                           name.find("time_embedding") == std::string::npos;
        if (p.value.rank() == 1 && detail::is_norm_parameter(name)) {
            for (std::int64_t i = 0; i < n; ++i) v[i] = is_bias ? T(0) : T(1);
            continue;
        }
        if (table) {
            for (std::int64_t i = 0; i < n; ++i) v[i] = static_cast<T>(philox_normal(seed, k, static_cast<std::uint64_t>(i)));
            continue;
        }
        std::int64_t fan_in = last_fan_in;
        if (!is_bias && p.value.rank() >= 2) {
            fan_in = n / p.value.size(0);
            last_fan_in = fan_in;
        }
        const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
        for (std::int64_t i = 0; i < n; ++i)
            v[i] = static_cast<T>(bound * (2.0 * philox_uniform(seed, k, static_cast<std::uint64_t>(i)) - 1.0));
    }
}

}  // namespace diffuse::nn
