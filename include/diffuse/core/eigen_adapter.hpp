#pragma once
// Host tensors as Eigen maps (DESIGN.md, "Eigen and xtensor stay on the host"): no copy, the map
// reads and writes the tensor's memory; the tensor must outlive the map.
//
//   as_eigen_vector(view)              Map of a column vector over all numel() elements (row-major order)
//   as_eigen_matrix(view)              rank-2 view [R, C] -> Map of a RowMajor R×C matrix
//   as_eigen_matrix(view, rows, cols)  any rank; rows·cols must equal numel() — the row-major
//                                      elements read as a RowMajor rows×cols matrix
//
// A view of const T gives a Map of a const matrix (read-only). Only host_space tensors are accepted.
// Rank or size mismatches throw diffuse::error:
//   "as_eigen_matrix: rows·cols = 2·4 = 8 but the tensor of shape [2, 3] has 6 elements"

#include <diffuse/core/error.hpp>
#include <diffuse/core/memory_space.hpp>
#include <diffuse/core/shape.hpp>
#include <diffuse/core/tensor.hpp>

#include <Eigen/Core>

#include <cstdint>
#include <string>
#include <type_traits>

namespace diffuse {

/// Eigen::Map of a dynamic column vector (const matrix when T is const).
template <class T>
using eigen_vector_map =
    Eigen::Map<std::conditional_t<std::is_const_v<T>, const Eigen::Matrix<std::remove_const_t<T>, Eigen::Dynamic, 1>,
                                  Eigen::Matrix<std::remove_const_t<T>, Eigen::Dynamic, 1>>>;

/// Eigen::Map of a dynamic RowMajor matrix (const matrix when T is const).
template <class T>
using eigen_matrix_map = Eigen::Map<
    std::conditional_t<std::is_const_v<T>,
                       const Eigen::Matrix<std::remove_const_t<T>, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>,
                       Eigen::Matrix<std::remove_const_t<T>, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>>;

/// All elements of a host tensor as an Eigen column vector (length numel()).
template <class T>
eigen_vector_map<T> as_eigen_vector(tensor_view<T, host_space> v) {
    return eigen_vector_map<T>(v.data(), static_cast<Eigen::Index>(v.numel()));
}
template <class T>
eigen_vector_map<T> as_eigen_vector(tensor<T, host_space>& t) {
    return as_eigen_vector(t.view());
}
template <class T>
eigen_vector_map<const T> as_eigen_vector(const tensor<T, host_space>& t) {
    return as_eigen_vector(t.cview());
}

/// The row-major elements of a host tensor as a RowMajor rows×cols matrix; rows·cols == numel().
template <class T>
eigen_matrix_map<T> as_eigen_matrix(tensor_view<T, host_space> v, std::int64_t rows, std::int64_t cols) {
    require(rows >= 0, "rows", rows, "a size >= 0");
    require(cols >= 0, "cols", cols, "a size >= 0");
    if (rows * cols != v.numel())
        fail("as_eigen_matrix: rows·cols = " + std::to_string(rows) + "·" + std::to_string(cols) + " = " +
             std::to_string(rows * cols) + " but the tensor of shape " + v.shape().str() + " has " +
             std::to_string(v.numel()) + " elements; expected equal");
    return eigen_matrix_map<T>(v.data(), static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(cols));
}
template <class T>
eigen_matrix_map<T> as_eigen_matrix(tensor<T, host_space>& t, std::int64_t rows, std::int64_t cols) {
    return as_eigen_matrix(t.view(), rows, cols);
}
template <class T>
eigen_matrix_map<const T> as_eigen_matrix(const tensor<T, host_space>& t, std::int64_t rows, std::int64_t cols) {
    return as_eigen_matrix(t.cview(), rows, cols);
}

/// A rank-2 host tensor [R, C] as a RowMajor R×C matrix (rows = size(0), cols = size(1)).
template <class T>
eigen_matrix_map<T> as_eigen_matrix(tensor_view<T, host_space> v) {
    if (v.rank() != 2)
        fail("as_eigen_matrix: tensor of shape " + v.shape().str() + " has rank " + std::to_string(v.rank()) +
             "; expected rank 2 [rows, cols] (or pass rows and cols explicitly)");
    return as_eigen_matrix(v, v.size(0), v.size(1));
}
template <class T>
eigen_matrix_map<T> as_eigen_matrix(tensor<T, host_space>& t) {
    return as_eigen_matrix(t.view());
}
template <class T>
eigen_matrix_map<const T> as_eigen_matrix(const tensor<T, host_space>& t) {
    return as_eigen_matrix(t.cview());
}

}  // namespace diffuse
