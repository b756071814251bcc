#pragma once
// Multi-head scaled dot-product attention (Vaswani et al. 2017, eq. 1; docs/unet.md §4), the
// `Attention` module of diffusers with its parameter names `to_q`, `to_k`, `to_v`, `to_out.0`.
//
// multi_head_attention — on token sequences:
//   x [B, N, Cq] (queries), context [B, M, Cc] (keys and values; context = x for self-attention)
//   Q = x W_qᵀ, K = context W_kᵀ, V = context W_vᵀ      [B, N|M, h·d]  (h heads of width d)
//   per batch item and head:  S = Q_h K_hᵀ / √d  [N, M],  P = softmax_rows(S),  O_h = P V_h  [N, d]
//   y = concat_h(O_h) W_oᵀ + b_o                          [B, N, Cq]
// The softmax subtracts each row's maximum first, so it never overflows.
// Backward per (b, h), from dO_h (after to_out's backward):
//   dV_h = Pᵀ dO_h,   dP = dO_h V_hᵀ,   dS = P ⊙ (dP − rowsum(dP ⊙ P))   (the softmax Jacobian),
//   dQ_h = dS K_h / √d,   dK_h = dSᵀ Q_h / √d,
// then the projections' backward; for self-attention dx = dx_q + dx_k + dx_v.
//
// spatial_attention — diffusers' Attention as AttnDownBlock2D / AttnUpBlock2D / UNetMidBlock2D use
// it on images ([B, C, H, W]):
//   h = group_norm(x) (when it has one),  tokens = h as [B, H·W, C],
//   y = (tokens_to_channels(mha(tokens)) + x) / rescale_output_factor
// (the residual connection and the division are part of that module in diffusers).

#include <diffuse/core/eigen_adapter.hpp>
#include <diffuse/backend/for_each.hpp>
#include <diffuse/nn/detail/flops.hpp>
#include <diffuse/nn/detail/parallel.hpp>
#include <diffuse/nn/layer.hpp>
#include <diffuse/nn/layers/group_norm.hpp>
#include <diffuse/nn/layers/linear.hpp>
#include <diffuse/nn/layers/tensor_ops.hpp>

#include <Eigen/Core>

#include <cmath>
#include <cstdint>
#include <optional>
#include <string>

namespace diffuse::nn {

template <class T>
class multi_head_attention {
public:
    struct cache {
        typename linear<T>::cache q_lin, k_lin, v_lin, out_lin;
        host_tensor<T> q, k, v;  ///< projections [B, N, h·d], [B, M, h·d], [B, M, h·d]
        host_tensor<T> p;        ///< softmax probabilities [B, h, N, M]
        bool self = true;
        bool filled = false;
    };

    multi_head_attention() = default;
    /// query_dim Cq, heads h, dim_head d; context_dim Cc (0: self-attention, Cc = Cq); qkv_bias for
    /// to_q/to_k/to_v (diffusers: True in the UNet2DModel blocks, False in transformer blocks);
    /// to_out.0 always has a bias.
    multi_head_attention(std::int64_t query_dim, std::int64_t heads, std::int64_t dim_head,
                         std::int64_t context_dim = 0, bool qkv_bias = false, bool out_bias = true)
        : cq_(query_dim), heads_(heads), d_(dim_head), cross_(context_dim > 0) {
        require_size(query_dim, "query_dim", "attention");
        require_size(heads, "heads", "attention");
        require_size(dim_head, "dim_head", "attention");
        cc_ = context_dim > 0 ? context_dim : query_dim;
        const std::int64_t inner = heads * dim_head;
        to_q = linear<T>(cq_, inner, qkv_bias);
        to_k = linear<T>(cc_, inner, qkv_bias);
        to_v = linear<T>(cc_, inner, qkv_bias);
        to_out = linear<T>(inner, cq_, out_bias);
    }

    linear<T> to_q, to_k, to_v, to_out;

    std::int64_t heads() const { return heads_; }
    std::int64_t dim_head() const { return d_; }
    std::int64_t query_dim() const { return cq_; }
    std::int64_t context_dim() const { return cc_; }
    bool is_cross() const { return cross_; }

    void collect(parameter_list<T>& out, const std::string& prefix) {
        to_q.collect(out, join_name(prefix, "to_q"));
        to_k.collect(out, join_name(prefix, "to_k"));
        to_v.collect(out, join_name(prefix, "to_v"));
        to_out.collect(out, join_name(prefix, "to_out.0"));
    }

    /// x [B, N, Cq], context [B, M, Cc] (cross-attention; required iff the layer was built with a
    /// context_dim) -> y [B, N, Cq].
    host_tensor<T> forward(cview<T> x, std::optional<cview<T>> context = std::nullopt, cache* c = nullptr) const {
        require_shape(x.rank() == 3 && x.size(2) == cq_, "attention", "x", x.shape(),
                      "[B, N, " + std::to_string(cq_) + "] (query_dim = " + std::to_string(cq_) + ")");
        if (cross_ && !context)
            fail("attention: this cross-attention layer needs a context (encoder_hidden_states) of shape [B, M, " +
                 std::to_string(cc_) + "]");
        if (!cross_ && context)
            fail("attention: a context was given to a self-attention layer (built without context_dim)");
        const cview<T> ctx = context ? *context : x;
        if (cross_)
            require_shape(ctx.rank() == 3 && ctx.size(0) == x.size(0) && ctx.size(2) == cc_, "attention", "context",
                          ctx.shape(),
                          "[" + std::to_string(x.size(0)) + ", M, " + std::to_string(cc_) +
                              "] (batch of x, cross_attention_dim = " + std::to_string(cc_) + ")");
        const std::int64_t B = x.size(0), N = x.size(1), M = ctx.size(1), inner = heads_ * d_;
        host_tensor<T> q = to_q.forward(x, c ? &c->q_lin : nullptr);
        host_tensor<T> k = to_k.forward(ctx, c ? &c->k_lin : nullptr);
        host_tensor<T> v = to_v.forward(ctx, c ? &c->v_lin : nullptr);
        host_tensor<T> o({B, N, inner});
        host_tensor<T> p;
        if (c) p = host_tensor<T>({B, heads_, N, M});
        const T sc = static_cast<T>(1.0 / std::sqrt(static_cast<double>(d_)));
        detail::parallel_for(B * heads_, [&](std::int64_t bh) {
            const std::int64_t b = bh / heads_, h = bh % heads_;
            auto Q = head(q.data(), b, h, N);
            auto K = head(k.data(), b, h, M);
            auto V = head(v.data(), b, h, M);
            auto O = head(o.data(), b, h, N);
            matrix S = (Q * K.transpose()) * sc;  // [N, M]
            softmax_rows(S);
            O.noalias() = S * V;
            if (c) std::copy(S.data(), S.data() + N * M, p.data() + bh * N * M);
        });
        detail::add_gemm_flops(2 * B * heads_ * N, M, d_);  // Q Kᵀ and P V
        host_tensor<T> y = to_out.forward(o.cview(), c ? &c->out_lin : nullptr);
        if (c) {
            c->q = std::move(q);
            c->k = std::move(k);
            c->v = std::move(v);
            c->p = std::move(p);
            c->self = !cross_;
            c->filled = true;
        }
        return y;
    }

    /// Gradients of the queries' input and (cross-attention) of the context.
    struct gradients {
        host_tensor<T> dx;        ///< [B, N, Cq]
        host_tensor<T> dcontext;  ///< [B, M, Cc] (empty for self-attention: already in dx)
    };

    gradients backward(cview<T> dy, const cache& c) {
        require_cached(c.filled, "attention");
        const std::int64_t B = c.q.size(0), N = c.q.size(1), M = c.k.size(1), inner = heads_ * d_;
        host_tensor<T> dO = to_out.backward(dy, c.out_lin);  // [B, N, inner]
        host_tensor<T> dq({B, N, inner}), dk({B, M, inner}), dv({B, M, inner});
        const T sc = static_cast<T>(1.0 / std::sqrt(static_cast<double>(d_)));
        detail::parallel_for(B * heads_, [&](std::int64_t bh) {
            const std::int64_t b = bh / heads_, h = bh % heads_;
            auto Q = head(const_cast<T*>(c.q.data()), b, h, N);
            auto K = head(const_cast<T*>(c.k.data()), b, h, M);
            auto V = head(const_cast<T*>(c.v.data()), b, h, M);
            auto dOh = head(dO.data(), b, h, N);
            Eigen::Map<const matrix> P(c.p.data() + bh * N * M, N, M);
            head(dv.data(), b, h, M).noalias() = P.transpose() * dOh;
            matrix dP = dOh * V.transpose();  // [N, M]
            // dS = P ⊙ (dP − rowsum(dP ⊙ P))
            for (std::int64_t i = 0; i < N; ++i) {
                T dot = 0;
                for (std::int64_t j = 0; j < M; ++j) dot += dP(i, j) * P(i, j);
                for (std::int64_t j = 0; j < M; ++j) dP(i, j) = P(i, j) * (dP(i, j) - dot);
            }
            head(dq.data(), b, h, N).noalias() = (dP * K) * sc;
            head(dk.data(), b, h, M).noalias() = (dP.transpose() * Q) * sc;
        });
        detail::add_gemm_flops(4 * B * heads_ * N, M, d_);  // dV, dP, dQ, dK
        gradients g;
        g.dx = to_q.backward(dq.cview(), c.q_lin);
        host_tensor<T> dck = to_k.backward(dk.cview(), c.k_lin);
        host_tensor<T> dcv = to_v.backward(dv.cview(), c.v_lin);
        add_into(dck.view(), dcv.cview());
        if (c.self)
            add_into(g.dx.view(), dck.cview());
        else
            g.dcontext = std::move(dck);
        return g;
    }

private:
    using matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    using head_map = Eigen::Map<matrix, 0, Eigen::OuterStride<>>;

    // the [rows, d] block of head h of batch item b in a [B, rows, h·d] tensor
    head_map head(T* base, std::int64_t b, std::int64_t h, std::int64_t rows) const {
        const std::int64_t inner = heads_ * d_;
        return head_map(base + b * rows * inner + h * d_, rows, d_, Eigen::OuterStride<>(inner));
    }

    // each row ← exp(row − max row) / Σ exp(row − max row): the maximum keeps exp ≤ 1 (no overflow);
    // Eigen's vectorised exp
    static void softmax_rows(matrix& S) {
        for (Eigen::Index i = 0; i < S.rows(); ++i) {
            auto row = S.row(i).array();
            row = (row - row.maxCoeff()).exp();
            row /= row.sum();
        }
    }

    std::int64_t cq_ = 0, cc_ = 0, heads_ = 1, d_ = 1;
    bool cross_ = false;
};

template <class T>
class spatial_attention {
public:
    struct cache {
        typename group_norm<T>::cache norm;
        typename multi_head_attention<T>::cache attn;
        std::int64_t H = 0, W = 0;
        bool filled = false;
    };

    spatial_attention() = default;
    /// channels C, heads h with C = h·d; norm_groups 0 = no group norm (diffusers: norm_num_groups None).
    spatial_attention(std::int64_t channels, std::int64_t heads, std::int64_t dim_head, std::int64_t norm_groups,
                      double eps, double rescale_output_factor = 1.0)
        : attn(channels, heads, dim_head, 0, /*qkv_bias=*/true, /*out_bias=*/true), rescale_(rescale_output_factor) {
        if (norm_groups > 0) norm.emplace(norm_groups, channels, eps);
        require_positive(rescale_output_factor, "rescale_output_factor");
    }

    std::optional<group_norm<T>> norm;  ///< diffusers `group_norm`
    multi_head_attention<T> attn;       ///< to_q, to_k, to_v, to_out.0 at the same prefix

    void collect(parameter_list<T>& out, const std::string& prefix) {
        if (norm) norm->collect(out, join_name(prefix, "group_norm"));
        attn.collect(out, prefix);
    }

    /// x [B, C, H, W] -> y [B, C, H, W] = (attention(norm(x)) + x) / rescale_output_factor.
    host_tensor<T> forward(cview<T> x, cache* c = nullptr) const {
        require_shape(x.rank() == 4 && x.size(1) == attn.query_dim(), "spatial_attention", "x", x.shape(),
                      "[B, " + std::to_string(attn.query_dim()) + ", H, W]");
        const std::int64_t H = x.size(2), W = x.size(3);
        host_tensor<T> h = norm ? norm->forward(x, c ? &c->norm : nullptr) : copy_of(x);
        host_tensor<T> tokens = channels_to_tokens(h.cview());
        host_tensor<T> a = attn.forward(tokens.cview(), std::nullopt, c ? &c->attn : nullptr);
        host_tensor<T> y = tokens_to_channels(a.cview(), H, W);
        const T r = static_cast<T>(rescale_);
        diffuse::for_each<host_space>(y.numel(), [&](std::int64_t i) {
            y.data()[i] = (y.data()[i] + x.data()[i]) / r;
        });
        if (c) {
            c->H = H;
            c->W = W;
            c->filled = true;
        }
        return y;
    }

    host_tensor<T> backward(cview<T> dy, const cache& c) {
        require_cached(c.filled, "spatial_attention");
        host_tensor<T> d = copy_of(dy);  // ∂L/∂(attention + x) = dy / rescale_output_factor
        const T r = static_cast<T>(rescale_);
        for (std::int64_t i = 0; i < d.numel(); ++i) d.data()[i] /= r;
        host_tensor<T> dtok = channels_to_tokens(d.cview());
        auto g = attn.backward(dtok.cview(), c.attn);
        host_tensor<T> dh = tokens_to_channels(g.dx.cview(), c.H, c.W);
        host_tensor<T> dx = norm ? norm->backward(dh.cview(), c.norm) : std::move(dh);
        add_into(dx.view(), d.cview());  // the residual path
        return dx;
    }

private:
    double rescale_ = 1.0;
};

}  // namespace diffuse::nn
