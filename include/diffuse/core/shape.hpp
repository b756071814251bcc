#pragma once
// shape: the dimensions of a row-major tensor, rank 0 to 5 ([B, C, H, W] and one spare).

#include <diffuse/core/error.hpp>

#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>

namespace diffuse {

inline constexpr int max_rank = 5;

class shape {
public:
    shape() = default;

    shape(std::initializer_list<std::int64_t> dims) {
        require(dims.size() <= static_cast<std::size_t>(max_rank), "rank",
                static_cast<int>(dims.size()), "at most 5");
        for (std::int64_t d : dims) {
            require(d >= 0, "dimension", d, "a size >= 0");
            dims_[rank_++] = d;
        }
    }

    template <class It>
    static shape from_range(It first, It last) {
        shape s;
        for (; first != last; ++first) {
            require(s.rank_ < max_rank, "rank", s.rank_ + 1, "at most 5");
            require(*first >= 0, "dimension", static_cast<std::int64_t>(*first), "a size >= 0");
            s.dims_[s.rank_++] = static_cast<std::int64_t>(*first);
        }
        return s;
    }

    int rank() const { return rank_; }
    std::int64_t operator[](int i) const { return dims_[static_cast<std::size_t>(i)]; }

    /// Number of elements: the product of the dimensions (1 for rank 0).
    std::int64_t numel() const {
        std::int64_t n = 1;
        for (int i = 0; i < rank_; ++i) n *= dims_[static_cast<std::size_t>(i)];
        return n;
    }

    /// Row-major stride of dimension i, in elements.
    std::int64_t stride(int i) const {
        std::int64_t s = 1;
        for (int k = i + 1; k < rank_; ++k) s *= dims_[static_cast<std::size_t>(k)];
        return s;
    }

    /// The shape without its first dimension ([B, C, H, W] -> [C, H, W]).
    shape drop_front() const {
        require(rank_ >= 1, "rank", rank_, "at least 1 to drop the leading dimension");
        shape s;
        for (int i = 1; i < rank_; ++i) s.dims_[s.rank_++] = dims_[static_cast<std::size_t>(i)];
        return s;
    }

    friend bool operator==(const shape& a, const shape& b) {
        if (a.rank_ != b.rank_) return false;
        for (int i = 0; i < a.rank_; ++i)
            if (a.dims_[static_cast<std::size_t>(i)] != b.dims_[static_cast<std::size_t>(i)]) return false;
        return true;
    }
    friend bool operator!=(const shape& a, const shape& b) { return !(a == b); }

    /// "[2, 3, 4]"
    std::string str() const {
        std::string s = "[";
        for (int i = 0; i < rank_; ++i) {
            if (i) s += ", ";
            s += std::to_string(dims_[static_cast<std::size_t>(i)]);
        }
        return s + "]";
    }

private:
    std::array<std::int64_t, max_rank> dims_{};
    int rank_ = 0;
};

/// Throws diffuse::error naming both arguments and their shapes unless a == b.
inline void require_same_shape(const shape& a, const char* a_name, const shape& b, const char* b_name) {
    if (a != b) {
        fail(std::string("shape mismatch: ") + a_name + " has shape " + a.str() + " but " + b_name +
             " has shape " + b.str() + "; expected equal shapes");
    }
}

}  // namespace diffuse
