#pragma once
// Internals shared by the history-keeping samplers (unipc.hpp, pndm.hpp, ipndm.hpp):
//
//   history_store     the tensors a sampler keeps between steps (past model outputs, a stored
//                     start state), typed on first use: the sampler classes are not templates,
//                     their step() is, so the storage is created for the T, S of the first step
//                     and re-created when a restarted run uses another T, S or shape.
//   lincomb_many      out = Σ c_k x_k for any number of inputs: one lincomb of up to 4 inputs,
//                     then out = 1·out + (up to 3 more) per further call. Zero coefficients are
//                     skipped. out may alias the FIRST input only.
//   solve_small       a dense n×n solve (n <= 4) by Gaussian elimination with partial pivoting,
//                     for the UniPC coefficient systems (host, double).

#include <diffuse/backend/lincomb.hpp>
#include <diffuse/core/error.hpp>
#include <diffuse/core/tensor.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace diffuse::samplers::detail {

/// Typed tensor storage kept by a sampler between steps; copies are deep.
class history_store {
    struct base {
        virtual ~base() = default;
        virtual std::unique_ptr<base> clone() const = 0;
    };
    template <class T, class S>
    struct typed final : base {
        std::vector<tensor<T, S>> slots;
        std::unique_ptr<base> clone() const override { return std::make_unique<typed>(*this); }
    };

public:
    history_store() = default;
    history_store(const history_store& o) : p_(o.p_ ? o.p_->clone() : nullptr) {}
    history_store& operator=(const history_store& o) {
        if (this != &o) p_ = o.p_ ? o.p_->clone() : nullptr;
        return *this;
    }
    history_store(history_store&&) noexcept = default;
    history_store& operator=(history_store&&) noexcept = default;

    /// n tensors of shape sh for T, S (re-allocated only when the type, the count or the shape
    /// differs from what is held; the contents are then unspecified).
    template <class T, class S>
    std::vector<tensor<T, S>>& reset(std::size_t n, const shape& sh) {
        auto* t = dynamic_cast<typed<T, S>*>(p_.get());
        if (!t) {
            p_ = std::make_unique<typed<T, S>>();
            t = static_cast<typed<T, S>*>(p_.get());
        }
        bool same = t->slots.size() == n;
        for (std::size_t k = 0; same && k < n; ++k) same = t->slots[k].shape() == sh;
        if (!same) {
            t->slots.clear();
            for (std::size_t k = 0; k < n; ++k) t->slots.emplace_back(sh);
        }
        return t->slots;
    }

    /// The tensors held for T, S, or nullptr when none are (no step yet, or another T, S).
    template <class T, class S>
    std::vector<tensor<T, S>>* find() {
        auto* t = dynamic_cast<typed<T, S>*>(p_.get());
        return t ? &t->slots : nullptr;
    }

    void clear() { p_.reset(); }

private:
    std::unique_ptr<base> p_;
};

/// One term c·x of lincomb_many.
template <class T, class S>
struct term {
    double c;
    tensor_view<const T, S> x;
};

/// out = Σ_k terms[k].c · terms[k].x (terms with c == 0 are skipped; all zero gives out = 0).
/// out may alias terms[0].x only. One pass per 4 (first) or 3 (further) non-zero terms.
template <class T, class S, std::size_t N>
void lincomb_many(tensor_view<T, S> out, const std::array<term<T, S>, N>& terms) {
    std::array<term<T, S>, N> nz{};
    std::size_t n = 0;
    for (const auto& t : terms)
        if (t.c != 0.0) nz[n++] = t;
    if (n == 0) {
        lincomb(out, 0.0, terms[0].x);
        return;
    }
    std::size_t k = std::min<std::size_t>(n, 4);
    switch (k) {
        case 1: lincomb(out, nz[0].c, nz[0].x); break;
        case 2: lincomb(out, nz[0].c, nz[0].x, nz[1].c, nz[1].x); break;
        case 3: lincomb(out, nz[0].c, nz[0].x, nz[1].c, nz[1].x, nz[2].c, nz[2].x); break;
        default: lincomb(out, nz[0].c, nz[0].x, nz[1].c, nz[1].x, nz[2].c, nz[2].x, nz[3].c, nz[3].x); break;
    }
    const tensor_view<const T, S> o = out;
    while (k < n) {
        const std::size_t m = std::min<std::size_t>(n - k, 3);
        if (m == 1)
            lincomb(out, 1.0, o, nz[k].c, nz[k].x);
        else if (m == 2)
            lincomb(out, 1.0, o, nz[k].c, nz[k].x, nz[k + 1].c, nz[k + 1].x);
        else
            lincomb(out, 1.0, o, nz[k].c, nz[k].x, nz[k + 1].c, nz[k + 1].x, nz[k + 2].c, nz[k + 2].x);
        k += m;
    }
}

/// Solves A·y = b for n <= 4 (row-major A[r][c]) by Gaussian elimination with partial pivoting.
/// Throws diffuse::error when A is singular (a pivot below 1e-300 in magnitude).
inline std::array<double, 4> solve_small(std::array<std::array<double, 4>, 4> A, std::array<double, 4> b,
                                         std::size_t n) {
    for (std::size_t c = 0; c < n; ++c) {
        std::size_t piv = c;
        for (std::size_t r = c + 1; r < n; ++r)
            if (std::abs(A[r][c]) > std::abs(A[piv][c])) piv = r;
        if (!(std::abs(A[piv][c]) > 1e-300))
            fail("solve_small: singular " + std::to_string(n) + "x" + std::to_string(n) +
                 " coefficient system (repeated noise levels?)");
        std::swap(A[c], A[piv]);
        std::swap(b[c], b[piv]);
        for (std::size_t r = c + 1; r < n; ++r) {
            const double f = A[r][c] / A[c][c];
            for (std::size_t k = c; k < n; ++k) A[r][k] -= f * A[c][k];
            b[r] -= f * b[c];
        }
    }
    std::array<double, 4> y{};
    for (std::size_t r = n; r-- > 0;) {
        double s = b[r];
        for (std::size_t k = r + 1; k < n; ++k) s -= A[r][k] * y[k];
        y[r] = s / A[r][r];
    }
    return y;
}

}  // namespace diffuse::samplers::detail
