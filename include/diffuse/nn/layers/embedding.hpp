#pragma once
// embedding: a lookup table (torch.nn.Embedding; diffusers name `<prefix>.weight`).
//
// Shapes: weight [num_embeddings, dim]; indices: B integers in [0, num_embeddings); y [B, dim] with
//   y[b, :] = weight[index_b, :]
// Backward: weight.grad[index_b, :] += dy[b, :] (an index used twice gets both rows); there is no
// gradient with respect to an integer index.

#include <diffuse/nn/layer.hpp>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace diffuse::nn {

template <class T>
class embedding {
public:
    struct cache {
        std::vector<std::int64_t> indices;
        bool filled = false;
    };

    embedding() = default;
    embedding(std::int64_t num_embeddings, std::int64_t dim) : num_(num_embeddings), dim_(dim) {
        require_size(num_embeddings, "num_embeddings", "embedding");
        require_size(dim, "embedding_dim", "embedding");
        weight = parameter<T>({num_, dim_});
    }

    parameter<T> weight;  ///< [num_embeddings, dim]

    std::int64_t num_embeddings() const { return num_; }
    std::int64_t dim() const { return dim_; }

    void collect(parameter_list<T>& out, const std::string& prefix) {
        out.push_back({join_name(prefix, "weight"), &weight});
    }

    /// Rows of the table: indices [B] -> y [B, dim]; an index outside [0, num) throws naming it.
    template <class I>
    host_tensor<T> forward(std::span<const I> indices, cache* c = nullptr) const {
        const std::int64_t B = static_cast<std::int64_t>(indices.size());
        host_tensor<T> y({B, dim_});
        std::vector<std::int64_t> idx(indices.size());
        for (std::int64_t b = 0; b < B; ++b) {
            const std::int64_t k = static_cast<std::int64_t>(indices[static_cast<std::size_t>(b)]);
            if (k < 0 || k >= num_)
                fail("embedding: index " + std::to_string(k) + " (batch item " + std::to_string(b) +
                     ") is out of range; expected an index in [0, " + std::to_string(num_) + ")");
            idx[static_cast<std::size_t>(b)] = k;
            std::copy(weight.value.data() + k * dim_, weight.value.data() + (k + 1) * dim_, y.data() + b * dim_);
        }
        if (c) {
            c->indices = std::move(idx);
            c->filled = true;
        }
        return y;
    }

    /// weight.grad[index_b] += dy[b] (no input gradient: indices are integers).
    void backward(cview<T> dy, const cache& c) {
        require_cached(c.filled, "embedding");
        const std::int64_t B = static_cast<std::int64_t>(c.indices.size());
        require_shape(dy.shape() == diffuse::shape{B, dim_}, "embedding", "dy", dy.shape(),
                      diffuse::shape{B, dim_}.str());
        for (std::int64_t b = 0; b < B; ++b) {
            T* g = weight.grad.data() + c.indices[static_cast<std::size_t>(b)] * dim_;
            for (std::int64_t i = 0; i < dim_; ++i) g[i] += dy.data()[b * dim_ + i];
        }
    }

private:
    std::int64_t num_ = 0, dim_ = 0;
};

}  // namespace diffuse::nn
