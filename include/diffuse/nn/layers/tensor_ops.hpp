#pragma once
// Parameter-free tensor plumbing of the U-Net, each with its adjoint (the backward):
//
//   add(a, b)                     y = a + b                      da = dy, db = dy
//   add_into(acc, x)              acc += x (summing the gradients of an activation used twice)
//   scale(x, s)                   y = s·x                        dx = s·dy
//   concat_channels(a, b)         [B, Ca, *] ⊕ [B, Cb, *] -> [B, Ca+Cb, *]   (torch.cat(dim=1))
//   split_channels(y, Ca)         the adjoint of concat: [B, Ca+Cb, *] -> ([B, Ca, *], [B, Cb, *])
//   channels_to_tokens(x)         [B, C, H, W] -> [B, H·W, C]    (x.view(B, C, HW).transpose(1, 2))
//   tokens_to_channels(t, H, W)   [B, H·W, C] -> [B, C, H, W]    (its inverse, and its adjoint)
//   add_channel_bias(x, v)        y[b, c, ...] = x[b, c, ...] + v[b, c]   (the time-embedding add)

#include <diffuse/backend/for_each.hpp>
#include <diffuse/nn/detail/parallel.hpp>
#include <diffuse/nn/layer.hpp>

#include <cstdint>
#include <string>
#include <utility>

namespace diffuse::nn {

template <class T>
host_tensor<T> add(cview<T> a, cview<T> b) {
    require_same_shape(a.shape(), "a", b.shape(), "b");
    host_tensor<T> y(a.shape());
    diffuse::for_each<host_space>(a.numel(), [&](std::int64_t i) { y.data()[i] = a.data()[i] + b.data()[i]; });
    return y;
}

template <class T>
void add_into(view<T> acc, cview<T> x) {
    require_same_shape(acc.shape(), "acc", x.shape(), "x");
    diffuse::for_each<host_space>(x.numel(), [&](std::int64_t i) { acc.data()[i] += x.data()[i]; });
}

template <class T>
host_tensor<T> scale(cview<T> x, T s) {
    host_tensor<T> y(x.shape());
    diffuse::for_each<host_space>(x.numel(), [&](std::int64_t i) { y.data()[i] = s * x.data()[i]; });
    return y;
}

namespace detail {
inline diffuse::shape with_dim1(const diffuse::shape& s, std::int64_t c) {
    std::int64_t d[max_rank];
    for (int i = 0; i < s.rank(); ++i) d[i] = s[i];
    d[1] = c;
    return diffuse::shape::from_range(d, d + s.rank());
}
}  // namespace detail

/// torch.cat([a, b], dim=1): [B, Ca, *] and [B, Cb, *] with equal B and trailing dims.
template <class T>
host_tensor<T> concat_channels(cview<T> a, cview<T> b) {
    bool ok = a.rank() >= 2 && a.rank() == b.rank() && a.size(0) == b.size(0);
    for (int i = 2; ok && i < a.rank(); ++i) ok = a.size(i) == b.size(i);
    if (!ok)
        fail("concat_channels: cannot concatenate shapes " + a.shape().str() + " and " + b.shape().str() +
             " along dimension 1; expected equal batch and trailing dimensions");
    const std::int64_t B = a.size(0), S = a.numel() / (B * a.size(1));
    const std::int64_t na = a.size(1) * S, nb = b.size(1) * S;
    host_tensor<T> y(detail::with_dim1(a.shape(), a.size(1) + b.size(1)));
    detail::parallel_for(B, [&](std::int64_t i) {
        std::copy(a.data() + i * na, a.data() + (i + 1) * na, y.data() + i * (na + nb));
        std::copy(b.data() + i * nb, b.data() + (i + 1) * nb, y.data() + i * (na + nb) + na);
    });
    return y;
}

/// The adjoint of concat_channels: the first ca channels and the rest.
template <class T>
std::pair<host_tensor<T>, host_tensor<T>> split_channels(cview<T> y, std::int64_t ca) {
    require(y.rank() >= 2 && ca >= 0 && ca <= y.size(1), "split_channels ca", ca,
            "in [0, C] for a tensor of shape " + y.shape().str());
    const std::int64_t B = y.size(0), C = y.size(1), S = y.numel() / (B * C);
    host_tensor<T> a(detail::with_dim1(y.shape(), ca)), b(detail::with_dim1(y.shape(), C - ca));
    const std::int64_t na = ca * S, nb = (C - ca) * S;
    detail::parallel_for(B, [&](std::int64_t i) {
        std::copy(y.data() + i * (na + nb), y.data() + i * (na + nb) + na, a.data() + i * na);
        std::copy(y.data() + i * (na + nb) + na, y.data() + (i + 1) * (na + nb), b.data() + i * nb);
    });
    return {std::move(a), std::move(b)};
}

/// [B, C, H, W] -> [B, H·W, C].
template <class T>
host_tensor<T> channels_to_tokens(cview<T> x) {
    require_shape(x.rank() == 4, "channels_to_tokens", "x", x.shape(), "[B, C, H, W]");
    const std::int64_t B = x.size(0), C = x.size(1), S = x.size(2) * x.size(3);
    host_tensor<T> t({B, S, C});
    detail::parallel_for(B, [&](std::int64_t b) {
        const T* xs = x.data() + b * C * S;
        T* ts = t.data() + b * C * S;
        for (std::int64_t c = 0; c < C; ++c)
            for (std::int64_t s = 0; s < S; ++s) ts[s * C + c] = xs[c * S + s];
    });
    return t;
}

/// [B, H·W, C] -> [B, C, H, W].
template <class T>
host_tensor<T> tokens_to_channels(cview<T> t, std::int64_t H, std::int64_t W) {
    require_shape(t.rank() == 3 && t.size(1) == H * W, "tokens_to_channels", "t", t.shape(),
                  "[B, " + std::to_string(H * W) + ", C] (H·W tokens)");
    const std::int64_t B = t.size(0), C = t.size(2), S = H * W;
    host_tensor<T> x({B, C, H, W});
    detail::parallel_for(B, [&](std::int64_t b) {
        const T* ts = t.data() + b * C * S;
        T* xs = x.data() + b * C * S;
        for (std::int64_t s = 0; s < S; ++s)
            for (std::int64_t c = 0; c < C; ++c) xs[c * S + s] = ts[s * C + c];
    });
    return x;
}

/// y[b, c, ...] = x[b, c, ...] + v[b, c]; x [B, C, *], v [B, C].
template <class T>
host_tensor<T> add_channel_bias(cview<T> x, cview<T> v) {
    require_shape(v.rank() == 2 && x.rank() >= 2 && v.size(0) == x.size(0) && v.size(1) == x.size(1),
                  "add_channel_bias", "v", v.shape(),
                  "[" + std::to_string(x.rank() >= 1 ? x.size(0) : 0) + ", " +
                      std::to_string(x.rank() >= 2 ? x.size(1) : 0) + "] (batch and channels of x)");
    const std::int64_t BC = v.numel(), S = x.numel() / BC;
    host_tensor<T> y(x.shape());
    detail::parallel_for(BC, [&](std::int64_t i) {
        for (std::int64_t s = 0; s < S; ++s) y.data()[i * S + s] = x.data()[i * S + s] + v.data()[i];
    });
    return y;
}

/// The adjoint of add_channel_bias for v: dv[b, c] = Σ_s dy[b, c, s].
template <class T>
host_tensor<T> sum_spatial(cview<T> dy) {
    require_shape(dy.rank() >= 2, "sum_spatial", "dy", dy.shape(), "[B, C, ...]");
    const std::int64_t B = dy.size(0), C = dy.size(1), S = dy.numel() / (B * C);
    host_tensor<T> v({B, C});
    detail::parallel_for(B * C, [&](std::int64_t i) {
        T s = 0;
        for (std::int64_t k = 0; k < S; ++k) s += dy.data()[i * S + k];
        v.data()[i] = s;
    });
    return v;
}

}  // namespace diffuse::nn
