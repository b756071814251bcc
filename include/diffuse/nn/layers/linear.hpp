#pragma once
// linear: y = x Wᵀ + b (torch.nn.Linear; diffusers names `<prefix>.weight`, `<prefix>.bias`).
//
// Shapes: x [..., in] (any leading dims, flattened to N rows), W [out, in], b [out], y [..., out].
//
// Backward (L a scalar loss, dy = ∂L/∂y [N, out]):
//   dx = dy W              [N, in]     (overwrites)
//   dW += dyᵀ x            [out, in]   (accumulates)
//   db += Σ_n dy[n, :]     [out]       (accumulates)
// Products run through Eigen (multi-threaded GEMM in an OpenMP build).

#include <diffuse/core/eigen_adapter.hpp>
#include <diffuse/nn/detail/flops.hpp>
#include <diffuse/nn/layer.hpp>

#include <Eigen/Core>

#include <cstdint>
#include <string>

namespace diffuse::nn {

template <class T>
class linear {
public:
    struct cache {
        host_tensor<T> x;  ///< the input [..., in]
        bool filled = false;
    };

    linear() = default;
    /// in_features -> out_features, with a bias unless bias = false.
    linear(std::int64_t in_features, std::int64_t out_features, bool bias = true)
        : in_(in_features), out_(out_features), has_bias_(bias) {
        require_size(in_features, "in_features", "linear");
        require_size(out_features, "out_features", "linear");
        weight = parameter<T>({out_, in_});
        if (has_bias_) this->bias = parameter<T>({out_});
    }

    parameter<T> weight;  ///< [out, in]
    parameter<T> bias;    ///< [out] (empty when the layer has no bias)

    std::int64_t in_features() const { return in_; }
    std::int64_t out_features() const { return out_; }
    bool has_bias() const { return has_bias_; }

    void collect(parameter_list<T>& out, const std::string& prefix) {
        out.push_back({join_name(prefix, "weight"), &weight});
        if (has_bias_) out.push_back({join_name(prefix, "bias"), &bias});
    }

    /// y = x Wᵀ + b; x [..., in] -> y [..., out].
    host_tensor<T> forward(cview<T> x, cache* c = nullptr) const {
        check_input(x);
        const std::int64_t n = x.numel() / in_;
        diffuse::shape ys = x.shape();
        ys = replace_last(ys, out_);
        host_tensor<T> y(ys);
        auto X = as_eigen_matrix(x, n, in_);
        auto W = as_eigen_matrix(weight.value.cview(), out_, in_);
        auto Y = as_eigen_matrix(y.view(), n, out_);
        Y.noalias() = X * W.transpose();
        detail::add_gemm_flops(n, out_, in_);
        if (has_bias_) Y.rowwise() += as_eigen_vector(bias.value.cview()).transpose();
        if (c) {
            c->x = copy_of(x);
            c->filled = true;
        }
        return y;
    }

    /// dx = dy W; dW += dyᵀ x; db += column sums of dy.
    host_tensor<T> backward(cview<T> dy, const cache& c) {
        require_cached(c.filled, "linear");
        const std::int64_t n = c.x.numel() / in_;
        require_shape(dy.numel() == n * out_ && dy.rank() >= 1 && dy.shape()[dy.rank() - 1] == out_, "linear",
                      "dy", dy.shape(), replace_last(c.x.shape(), out_).str() + " (the output's shape)");
        auto X = as_eigen_matrix(c.x.cview(), n, in_);
        auto dY = as_eigen_matrix(dy, n, out_);
        auto W = as_eigen_matrix(weight.value.cview(), out_, in_);
        host_tensor<T> dx(c.x.shape());
        as_eigen_matrix(dx.view(), n, in_).noalias() = dY * W;
        as_eigen_matrix(weight.grad.view(), out_, in_).noalias() += dY.transpose() * X;
        if (has_bias_) as_eigen_vector(bias.grad.view()) += dY.colwise().sum().transpose();
        detail::add_gemm_flops(2 * n, out_, in_);
        return dx;
    }

private:
    static diffuse::shape replace_last(diffuse::shape s, std::int64_t last) {
        std::int64_t d[max_rank];
        for (int i = 0; i < s.rank(); ++i) d[i] = s[i];
        d[s.rank() - 1] = last;
        return diffuse::shape::from_range(d, d + s.rank());
    }

    void check_input(cview<T> x) const {
        require_shape(x.rank() >= 1 && x.shape()[x.rank() - 1] == in_, "linear", "x", x.shape(),
                      "[..., " + std::to_string(in_) + "] (last dimension = in_features)");
    }

    std::int64_t in_ = 0, out_ = 0;
    bool has_bias_ = true;
};

}  // namespace diffuse::nn
