#pragma once
// tensor<T, Space>: an owning, contiguous, row-major array of rank 0–5 whose memory space is
// part of its type; tensor_view<T, Space>: the non-owning counterpart (T may be const).
//
// Element access with operator() / operator[] exists only for host tensors; device tensors are
// touched only by backend primitives (backend/*.hpp) or copied with to<host_space>().
// Shape errors throw diffuse::error naming the shapes:
//   "shape mismatch: out has shape [2, 3] but x has shape [3, 2]; expected equal shapes"

#include <diffuse/core/error.hpp>
#include <diffuse/core/memory_space.hpp>
#include <diffuse/core/shape.hpp>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace diffuse {

template <class T, class Space = default_space>
class tensor_view {
    static_assert(std::is_arithmetic_v<std::remove_const_t<T>>, "tensor elements are arithmetic");
    static_assert(is_memory_space_v<Space>, "Space is host_space or device_space");

public:
    using element_type = T;
    using value_type = std::remove_const_t<T>;
    using space = Space;

    tensor_view() = default;
    tensor_view(T* data, diffuse::shape s) : data_(data), shape_(s) {}

    /// A view of T converts to a view of const T (never the other way).
    template <class U>
        requires(std::is_const_v<T> && std::is_same_v<T, const U>)
    tensor_view(const tensor_view<U, Space>& other) : data_(other.data()), shape_(other.shape()) {}

    T* data() const { return data_; }
    const diffuse::shape& shape() const { return shape_; }
    int rank() const { return shape_.rank(); }
    std::int64_t size(int i) const { return shape_[i]; }
    std::int64_t numel() const { return shape_.numel(); }
    bool empty() const { return numel() == 0; }

    /// Flat element access (host only).
    T& operator[](std::int64_t i) const
        requires std::is_same_v<Space, host_space>
    {
        return data_[i];
    }

    /// Multi-index element access (host only): t(b, c, h, w).
    template <class... I>
    T& operator()(I... idx) const
        requires(std::is_same_v<Space, host_space> && (std::is_integral_v<I> && ...))
    {
        return data_[offset(idx...)];
    }

    /// Same data, another shape with the same number of elements.
    tensor_view reshape(diffuse::shape s) const {
        if (s.numel() != numel())
            fail("reshape: cannot view shape " + shape_.str() + " as " + s.str() +
                 "; expected the same number of elements (" + std::to_string(numel()) + ")");
        return {data_, s};
    }

    /// Item i along the leading dimension: [B, ...] -> [...].
    tensor_view item(std::int64_t i) const {
        require(rank() >= 1, "rank", rank(), "at least 1 to take an item");
        require(i >= 0 && i < size(0), "index", i, "in [0, " + std::to_string(size(0)) + ")");
        const diffuse::shape inner = shape_.drop_front();
        return {data_ + i * inner.numel(), inner};
    }

private:
    template <class... I>
    std::int64_t offset(I... idx) const {
        const std::int64_t ix[] = {static_cast<std::int64_t>(idx)...};
        constexpr int n = sizeof...(I);
        if (n != shape_.rank())
            fail("index: " + std::to_string(n) + " indices for a tensor of shape " + shape_.str());
        std::int64_t off = 0;
        for (int k = 0; k < n; ++k) off = off * shape_[k] + ix[k];
        return off;
    }

    T* data_ = nullptr;
    diffuse::shape shape_{};
};

template <class T, class Space = default_space>
class tensor {
    static_assert(std::is_arithmetic_v<T> && !std::is_const_v<T>, "tensor elements are arithmetic");
    static_assert(is_memory_space_v<Space>, "Space is host_space or device_space");

public:
    using value_type = T;
    using space = Space;

    tensor() = default;

    /// Uninitialised storage of the given shape.
    explicit tensor(diffuse::shape s) : shape_(s) {
        data_ = static_cast<T*>(detail::allocate_bytes<Space>(bytes()));
    }

    /// Every element equal to value.
    tensor(diffuse::shape s, T value) : tensor(s) { fill_host_or_copy(value); }

    /// A host tensor from values in row-major order (values.size() must equal numel).
    static tensor from_values(diffuse::shape s, const std::vector<T>& values) {
        require(static_cast<std::int64_t>(values.size()) == s.numel(), "values.size()",
                values.size(), "equal to the number of elements of shape " + s.str() + " (" +
                                   std::to_string(s.numel()) + ")");
        tensor t(s);
        if constexpr (std::is_same_v<T, bool>) {  // std::vector<bool> is packed: copy element-wise
            std::unique_ptr<bool[]> buf(new bool[values.size()]);
            std::copy(values.begin(), values.end(), buf.get());
            detail::copy_bytes<Space, host_space>(t.data_, buf.get(), t.bytes());
        } else {
            detail::copy_bytes<Space, host_space>(t.data_, values.data(), t.bytes());
        }
        return t;
    }

    tensor(const tensor& other) : tensor(other.shape_) {
        detail::copy_bytes<Space, Space>(data_, other.data_, bytes());
    }
    tensor(tensor&& other) noexcept
        : data_(std::exchange(other.data_, nullptr)), shape_(std::exchange(other.shape_, {})) {}
    tensor& operator=(const tensor& other) {
        if (this != &other) *this = tensor(other);
        return *this;
    }
    tensor& operator=(tensor&& other) noexcept {
        std::swap(data_, other.data_);
        std::swap(shape_, other.shape_);
        return *this;
    }
    ~tensor() { detail::free_bytes<Space>(data_); }

    T* data() { return data_; }
    const T* data() const { return data_; }
    const diffuse::shape& shape() const { return shape_; }
    int rank() const { return shape_.rank(); }
    std::int64_t size(int i) const { return shape_[i]; }
    std::int64_t numel() const { return shape_.numel(); }
    std::size_t bytes() const { return static_cast<std::size_t>(numel()) * sizeof(T); }
    bool empty() const { return numel() == 0; }

    tensor_view<T, Space> view() { return {data_, shape_}; }
    tensor_view<const T, Space> view() const { return {data_, shape_}; }
    tensor_view<const T, Space> cview() const { return {data_, shape_}; }
    operator tensor_view<T, Space>() { return view(); }
    operator tensor_view<const T, Space>() const { return cview(); }

    T& operator[](std::int64_t i)
        requires std::is_same_v<Space, host_space>
    {
        return data_[i];
    }
    const T& operator[](std::int64_t i) const
        requires std::is_same_v<Space, host_space>
    {
        return data_[i];
    }
    template <class... I>
    T& operator()(I... idx)
        requires(std::is_same_v<Space, host_space> && (std::is_integral_v<I> && ...))
    {
        return view()(idx...);
    }
    template <class... I>
    const T& operator()(I... idx) const
        requires(std::is_same_v<Space, host_space> && (std::is_integral_v<I> && ...))
    {
        return cview()(idx...);
    }

    /// Reinterprets the shape (same number of elements); keeps the data.
    void reshape(diffuse::shape s) { shape_ = view().reshape(s).shape(); }

    /// A copy in another memory space (host <-> device), or the same one.
    template <class Dst>
    tensor<T, Dst> to() const {
        tensor<T, Dst> out(shape_);
        detail::copy_bytes<Dst, Space>(out.data(), data_, bytes());
        return out;
    }
    tensor<T, host_space> to_host() const { return to<host_space>(); }

    /// Row-major copy of the elements into a std::vector (from any space).
    std::vector<T> to_vector() const {
        if constexpr (std::is_same_v<T, bool>) {  // std::vector<bool> is packed: go through a buffer
            std::unique_ptr<bool[]> buf(new bool[static_cast<std::size_t>(numel())]);
            detail::copy_bytes<host_space, Space>(buf.get(), data_, bytes());
            return std::vector<bool>(buf.get(), buf.get() + numel());
        } else {
            std::vector<T> v(static_cast<std::size_t>(numel()));
            detail::copy_bytes<host_space, Space>(v.data(), data_, bytes());
            return v;
        }
    }

private:
    void fill_host_or_copy(T value) {
        if constexpr (std::is_same_v<Space, host_space>) {
            std::fill(data_, data_ + numel(), value);
        } else {
            const std::vector<T> v(static_cast<std::size_t>(numel()), value);
            detail::copy_bytes<Space, host_space>(data_, v.data(), bytes());
        }
    }

    T* data_ = nullptr;
    diffuse::shape shape_{};
};

/// Copies src into dst (same shape; spaces may differ).
template <class T, class DstSpace, class SrcSpace>
void copy(tensor_view<T, DstSpace> dst, tensor_view<const T, SrcSpace> src) {
    require_same_shape(dst.shape(), "dst", src.shape(), "src");
    detail::copy_bytes<DstSpace, SrcSpace>(dst.data(), src.data(),
                                           static_cast<std::size_t>(src.numel()) * sizeof(T));
}

}  // namespace diffuse
