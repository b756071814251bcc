#pragma once
// Exact model for Gaussian-mixture data x0 ~ Σ_k π_k N(m_k, C_k), optionally class-labelled
// (docs/exact_models.md §5–§6).
//
// Component k at noise level (a, s) is N(a m_k, V_k), V_k = a²C_k + s²I, so with
//   ℓ_k(x)   = log π_k + log N(x; a m_k, V_k)                         (one column per component)
//   r_k(x)   = exp(ℓ_k − LSE_j ℓ_j)        responsibilities p(k | x_t), by log-sum-exp
//   log p_t  = LSE_k ℓ_k
//   ∇log p_t = Σ_k r_k ∇log N(x; a m_k, V_k) = −Σ_k r_k V_k⁻¹(x − a m_k)
//   E[x0|x_t]   = Σ_k r_k d_k,   d_k = m_k + a C_k V_k⁻¹(x − a m_k)   (= (x + s²∇log p_t)/a)
//   E[eps|x_t]  = Σ_k r_k s V_k⁻¹(x − a m_k)                          (= −s∇log p_t)
//   Cov[x0|x_t] = Σ_k r_k (P_k + (d_k − x̂0)(d_k − x̂0)ᵀ),  P_k = s² C_k V_k⁻¹   (law of total variance)
//
// Classes: component k carries label y_k in {0, …, C−1}; several components may share a class
// and every class has at least one component. Without labels, component k is class k. Then
//   p(x0 | y) ∝ Σ_{k: y_k = y} π_k N(m_k, C_k),     prior π(y) = Σ_{k: y_k = y} π_k,
//   log p_t(y | x) = LSE_{k: y_k = y} ℓ_k − LSE_k ℓ_k          (the exact Bayes classifier)
//   ∇ₓ log p_t(y | x) = ∇log p_t(x | y) − ∇log p_t(x) = Σ_k (r_k^{(y)} − r_k) ∇log N(x; a m_k, V_k),
//   where r^{(y)} are the responsibilities within class y (0 outside it).
//
// Points and batches as in gaussian.hpp: a column vector [d] is one point, a matrix [n, d] holds
// one point per row. Host-only double math on Eigen types.

#include <diffuse/analytic/detail/checks.hpp>
#include <diffuse/analytic/gaussian.hpp>
#include <diffuse/core/error.hpp>
#include <diffuse/core/philox.hpp>

#include <Eigen/Dense>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <string>
#include <utility>
#include <vector>

namespace diffuse::analytic {

/// Draws from a gaussian_mixture: points as rows, and for each row its component and class.
struct mixture_sample {
    Eigen::MatrixXd x;           ///< [n, d]
    std::vector<int> component;  ///< [n], in [0, K)
    std::vector<int> label;      ///< [n], in [0, C): the class of that component
};

class gaussian_mixture {
public:
    /// Σ_k weights[k] N(means[k], covs[k]). K >= 1 components of one dimension d.
    /// weights: each finite and > 0, summing to 1 within 1e-12 (then divided by their sum).
    /// labels: empty (component k is class k) or one label per component, labels >= 0, and every
    /// class 0 … max(label) used by at least one component.
    gaussian_mixture(std::vector<double> weights, const std::vector<Eigen::VectorXd>& means,
                     const std::vector<Eigen::MatrixXd>& covs, std::vector<int> labels = {}) {
        require(!means.empty(), "means.size()", 0LL, ">= 1 (a mixture needs a component)");
        require(covs.size() == means.size(), "covs.size()", static_cast<long long>(covs.size()),
                "means.size() = " + std::to_string(means.size()));
        std::vector<gaussian> comps;
        comps.reserve(means.size());
        for (std::size_t k = 0; k < means.size(); ++k) {
            // Built by appends: GCC 12 warns falsely (-Wrestrict) on "[" + std::string.
            std::string idx = "[";
            idx += std::to_string(k);
            idx += ']';
            if (k > 0 && means[k].size() != means[0].size()) {
                fail_argument("means" + idx + ".size()", static_cast<long long>(means[k].size()),
                              "means[0].size() = " + std::to_string(means[0].size()) +
                                  " (all components have one dimension)");
            }
            comps.push_back(gaussian(means[k], covs[k], "means" + idx, "covs" + idx));
        }
        init(std::move(weights), std::move(comps), std::move(labels));
    }

    /// Σ_k weights[k] components[k], with the same rules for weights and labels.
    gaussian_mixture(std::vector<double> weights, std::vector<gaussian> components,
                     std::vector<int> labels = {}) {
        require(!components.empty(), "components.size()", 0LL, ">= 1 (a mixture needs a component)");
        for (std::size_t k = 1; k < components.size(); ++k) {
            if (components[k].dimension() != components[0].dimension()) {
                fail_argument("components[" + std::to_string(k) + "].dimension()",
                              static_cast<long long>(components[k].dimension()),
                              "components[0].dimension() = " + std::to_string(components[0].dimension()));
            }
        }
        init(std::move(weights), std::move(components), std::move(labels));
    }

    Eigen::Index dimension() const { return comps_[0].dimension(); }
    int n_components() const { return static_cast<int>(comps_.size()); }
    int n_classes() const { return n_classes_; }
    /// π, [K], summing to 1.
    const std::vector<double>& weights() const { return weights_; }
    /// y_k, [K].
    const std::vector<int>& labels() const { return labels_; }
    const gaussian& component(int k) const {
        require(k >= 0 && k < n_components(), "k", k,
                "a component index in [0, " + std::to_string(n_components()) + ")");
        return comps_[static_cast<std::size_t>(k)];
    }
    /// π(y) = Σ_{k: y_k = y} π_k, [C].
    Eigen::VectorXd class_priors() const {
        Eigen::VectorXd p = Eigen::VectorXd::Zero(n_classes_);
        for (std::size_t k = 0; k < comps_.size(); ++k) p(labels_[k]) += weights_[k];
        return p;
    }
    /// E[x0] = Σ_k π_k m_k, [d].
    Eigen::VectorXd mean() const {
        Eigen::VectorXd m = Eigen::VectorXd::Zero(dimension());
        for (std::size_t k = 0; k < comps_.size(); ++k) m += weights_[k] * comps_[k].mean();
        return m;
    }
    /// Cov[x0] = Σ_k π_k (C_k + (m_k − E x0)(m_k − E x0)ᵀ), [d, d].
    Eigen::MatrixXd cov() const {
        const Eigen::VectorXd m = mean();
        Eigen::MatrixXd c = Eigen::MatrixXd::Zero(dimension(), dimension());
        for (std::size_t k = 0; k < comps_.size(); ++k) {
            const Eigen::VectorXd dm = comps_[k].mean() - m;
            c += weights_[k] * (comps_[k].cov() + dm * dm.transpose());
        }
        return c;
    }

    /// ℓ_k(x) = log π_k + log N(x; a m_k, V_k): x [d] -> [K], or [n, d] -> [n, K].
    template <class Derived>
    auto component_log_joint(const Eigen::MatrixBase<Derived>& x, double a, double s) const {
        detail::check_noise_level(a, s);
        return detail::rows_result<Derived>(log_terms(detail::as_rows(x, dimension(), "x"), a, s));
    }

    /// r_k = p(k | x_t) = softmax_k ℓ_k (log-sum-exp): x [d] -> [K], or [n, d] -> [n, K].
    template <class Derived>
    auto responsibilities(const Eigen::MatrixBase<Derived>& x, double a, double s) const {
        detail::check_noise_level(a, s);
        const Eigen::MatrixXd l = log_terms(detail::as_rows(x, dimension(), "x"), a, s);
        return detail::rows_result<Derived>(softmax_rows(l));
    }

    /// log p_t(x) = LSE_k ℓ_k: x [d] -> double, or [n, d] -> [n].
    template <class Derived>
    auto log_prob(const Eigen::MatrixBase<Derived>& x, double a, double s) const {
        detail::check_noise_level(a, s);
        const Eigen::MatrixXd l = log_terms(detail::as_rows(x, dimension(), "x"), a, s);
        Eigen::VectorXd out(l.rows());
        for (Eigen::Index i = 0; i < l.rows(); ++i) out(i) = log_sum_exp(l.row(i));
        return detail::scalar_result<Derived>(std::move(out));
    }

    /// log p_t(y | x) = LSE_{k∈y} ℓ_k − LSE_k ℓ_k, the exact Bayes classifier on the log scale:
    /// x [d] -> [C], or [n, d] -> [n, C].
    template <class Derived>
    auto class_log_posterior(const Eigen::MatrixBase<Derived>& x, double a, double s) const {
        detail::check_noise_level(a, s);
        return detail::rows_result<Derived>(class_log_rows(detail::as_rows(x, dimension(), "x"), a, s));
    }

    /// p_t(y | x) = exp(class_log_posterior): x [d] -> [C], or [n, d] -> [n, C].
    template <class Derived>
    auto class_posterior(const Eigen::MatrixBase<Derived>& x, double a, double s) const {
        detail::check_noise_level(a, s);
        Eigen::MatrixXd lp = class_log_rows(detail::as_rows(x, dimension(), "x"), a, s);
        return detail::rows_result<Derived>(Eigen::MatrixXd(lp.array().exp()));
    }

    /// ∇ₓ log p_t(x) = Σ_k r_k ∇log N(x; a m_k, V_k): shape of x.
    template <class Derived>
    auto score(const Eigen::MatrixBase<Derived>& x, double a, double s) const {
        detail::check_noise_level(a, s);
        const Eigen::MatrixXd xr = detail::as_rows(x, dimension(), "x");
        const Eigen::MatrixXd r = softmax_rows(log_terms(xr, a, s));
        return detail::rows_result<Derived>(
            weighted_component_sum(xr, r, [&](const gaussian& g) { return g.score(xr, a, s); }));
    }

    /// ∇ₓ log p_t(x | y) = Σ_{k∈y} r_k^{(y)} ∇log N(x; a m_k, V_k), the score of conditional(y): shape of x.
    template <class Derived>
    auto conditional_score(const Eigen::MatrixBase<Derived>& x, double a, double s, int y) const {
        check_label(y);
        detail::check_noise_level(a, s);
        const Eigen::MatrixXd xr = detail::as_rows(x, dimension(), "x");
        const Eigen::MatrixXd r = class_responsibilities(log_terms(xr, a, s), y);
        return detail::rows_result<Derived>(
            weighted_component_sum(xr, r, [&](const gaussian& g) { return g.score(xr, a, s); }));
    }

    /// ∇ₓ log p_t(y | x) = Σ_k (r_k^{(y)} − r_k) ∇log N(x; a m_k, V_k)
    ///                   = conditional_score(x, y) − score(x) (the exact classifier-guidance term): shape of x.
    template <class Derived>
    auto class_log_posterior_grad(const Eigen::MatrixBase<Derived>& x, double a, double s, int y) const {
        check_label(y);
        detail::check_noise_level(a, s);
        const Eigen::MatrixXd xr = detail::as_rows(x, dimension(), "x");
        const Eigen::MatrixXd l = log_terms(xr, a, s);
        const Eigen::MatrixXd w = class_responsibilities(l, y) - softmax_rows(l);
        return detail::rows_result<Derived>(
            weighted_component_sum(xr, w, [&](const gaussian& g) { return g.score(xr, a, s); }));
    }

    /// E[x0 | x_t] = Σ_k r_k E_k[x0 | x_t]: shape of x.
    template <class Derived>
    auto x0_mean(const Eigen::MatrixBase<Derived>& x, double a, double s) const {
        detail::check_noise_level(a, s);
        const Eigen::MatrixXd xr = detail::as_rows(x, dimension(), "x");
        const Eigen::MatrixXd r = softmax_rows(log_terms(xr, a, s));
        return detail::rows_result<Derived>(
            weighted_component_sum(xr, r, [&](const gaussian& g) { return g.x0_mean(xr, a, s); }));
    }

    /// E[eps | x_t] = Σ_k r_k E_k[eps | x_t]: shape of x.
    template <class Derived>
    auto eps_mean(const Eigen::MatrixBase<Derived>& x, double a, double s) const {
        detail::check_noise_level(a, s);
        const Eigen::MatrixXd xr = detail::as_rows(x, dimension(), "x");
        const Eigen::MatrixXd r = softmax_rows(log_terms(xr, a, s));
        return detail::rows_result<Derived>(
            weighted_component_sum(xr, r, [&](const gaussian& g) { return g.eps_mean(xr, a, s); }));
    }

    /// Cov[x0 | x_t] = Σ_k r_k (P_k + (d_k − x̂0)(d_k − x̂0)ᵀ) for ONE point x [d] -> [d, d].
    template <class Derived>
    Eigen::MatrixXd x0_cov(const Eigen::MatrixBase<Derived>& x, double a, double s) const {
        static_assert(detail::is_point<Derived>, "x0_cov takes one point [d]; use x0_covs for a batch");
        return x0_covs(x.transpose(), a, s).front();
    }

    /// Cov[x0 | x_t] for each row of x [n, d] -> n matrices [d, d].
    std::vector<Eigen::MatrixXd> x0_covs(const Eigen::MatrixXd& x, double a, double s) const {
        detail::check_noise_level(a, s);
        const Eigen::MatrixXd xr = detail::as_rows(x, dimension(), "x");
        const Eigen::MatrixXd r = softmax_rows(log_terms(xr, a, s));
        const Eigen::Index n = xr.rows(), d = dimension();
        std::vector<Eigen::MatrixXd> dk;
        std::vector<Eigen::MatrixXd> pk;
        for (const gaussian& g : comps_) {
            dk.push_back(g.x0_mean(xr, a, s));
            pk.push_back(g.x0_cov(a, s));
        }
        Eigen::MatrixXd xhat = Eigen::MatrixXd::Zero(n, d);
        for (std::size_t k = 0; k < comps_.size(); ++k)
            xhat += r.col(static_cast<Eigen::Index>(k)).asDiagonal() * dk[k];
        std::vector<Eigen::MatrixXd> out(static_cast<std::size_t>(n), Eigen::MatrixXd::Zero(d, d));
        for (Eigen::Index i = 0; i < n; ++i) {
            for (std::size_t k = 0; k < comps_.size(); ++k) {
                const double rk = r(i, static_cast<Eigen::Index>(k));
                const Eigen::VectorXd dev = (dk[k].row(i) - xhat.row(i)).transpose();
                out[static_cast<std::size_t>(i)] += rk * (pk[k] + dev * dev.transpose());
            }
        }
        return out;
    }

    /// p(x0 | y): the components of class y with weights π_k / π(y). Its components all carry
    /// label 0 (one class).
    gaussian_mixture conditional(int y) const {
        check_label(y);
        std::vector<double> w;
        std::vector<gaussian> c;
        double total = 0.0;
        for (std::size_t k = 0; k < comps_.size(); ++k) {
            if (labels_[k] == y) {
                w.push_back(weights_[k]);
                c.push_back(comps_[k]);
                total += weights_[k];
            }
        }
        for (double& wk : w) wk /= total;
        return gaussian_mixture(std::move(w), std::move(c), std::vector<int>(c.size(), 0));
    }

    /// n draws from the mixture. Consumes n·d normal draws (row i uses draws i·d … i·d + d − 1)
    /// and n uniform draws (draw i picks the component of row i by inverse CDF of π); row i is
    /// then component(k).from_standard_normal(z_i). A one-component mixture therefore returns
    /// exactly gaussian::sample's points for the same generator state.
    mixture_sample sample(Eigen::Index n, philox_rng& rng) const {
        require(n >= 0, "n", static_cast<long long>(n), ">= 0");
        const Eigen::Index d = dimension();
        Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> z(n, d);
        rng.fill_normal(z.data(), static_cast<std::size_t>(n * d));
        std::vector<double> cum(comps_.size());
        double acc = 0.0;
        for (std::size_t k = 0; k < comps_.size(); ++k) cum[k] = (acc += weights_[k]);
        mixture_sample out{Eigen::MatrixXd(n, d), std::vector<int>(static_cast<std::size_t>(n)),
                           std::vector<int>(static_cast<std::size_t>(n))};
        for (Eigen::Index i = 0; i < n; ++i) {
            const double u = rng.uniform() * acc;  // acc = Σπ = 1 up to rounding
            int k = 0;
            while (k + 1 < n_components() && !(u < cum[static_cast<std::size_t>(k)])) ++k;
            out.component[static_cast<std::size_t>(i)] = k;
            out.label[static_cast<std::size_t>(i)] = labels_[static_cast<std::size_t>(k)];
        }
        // Map each component's rows in one product, in row order.
        for (int k = 0; k < n_components(); ++k) {
            std::vector<Eigen::Index> rows;
            for (Eigen::Index i = 0; i < n; ++i)
                if (out.component[static_cast<std::size_t>(i)] == k) rows.push_back(i);
            if (rows.empty()) continue;
            Eigen::MatrixXd zk(static_cast<Eigen::Index>(rows.size()), d);
            for (std::size_t j = 0; j < rows.size(); ++j)
                zk.row(static_cast<Eigen::Index>(j)) = z.row(rows[j]);
            const Eigen::MatrixXd xk = comps_[static_cast<std::size_t>(k)].from_standard_normal(zk);
            for (std::size_t j = 0; j < rows.size(); ++j)
                out.x.row(rows[j]) = xk.row(static_cast<Eigen::Index>(j));
        }
        return out;
    }

private:
    void init(std::vector<double> weights, std::vector<gaussian> comps, std::vector<int> labels) {
        const std::size_t k_count = comps.size();
        require(weights.size() == k_count, "weights.size()", static_cast<long long>(weights.size()),
                "the number of components, " + std::to_string(k_count));
        double sum = 0.0;
        for (std::size_t k = 0; k < k_count; ++k) {
            if (!(std::isfinite(weights[k]) && weights[k] > 0.0)) {
                fail_argument("weights[" + std::to_string(k) + "]", weights[k], "a finite number > 0");
            }
            sum += weights[k];
        }
        if (!(std::abs(sum - 1.0) <= 1e-12)) {
            fail_argument("sum of weights", sum, "1 (to within 1e-12)");
        }
        for (double& w : weights) w /= sum;
        if (labels.empty()) {
            labels.resize(k_count);
            for (std::size_t k = 0; k < k_count; ++k) labels[k] = static_cast<int>(k);
        }
        require(labels.size() == k_count, "labels.size()", static_cast<long long>(labels.size()),
                "0 (one class per component) or the number of components, " + std::to_string(k_count));
        int max_label = -1;
        for (std::size_t k = 0; k < k_count; ++k) {
            require(labels[k] >= 0, "labels[" + std::to_string(k) + "]", labels[k], ">= 0");
            max_label = std::max(max_label, labels[k]);
        }
        for (int y = 0; y <= max_label; ++y) {
            if (std::find(labels.begin(), labels.end(), y) == labels.end()) {
                fail_argument("labels", "no component with label " + std::to_string(y),
                              "every class 0 … max(labels) = " + std::to_string(max_label) +
                                  " to have at least one component");
            }
        }
        weights_ = std::move(weights);
        comps_ = std::move(comps);
        labels_ = std::move(labels);
        n_classes_ = max_label + 1;
        log_weights_.resize(k_count);
        for (std::size_t k = 0; k < k_count; ++k) log_weights_[k] = std::log(weights_[k]);
    }

    void check_label(int y) const {
        require(y >= 0 && y < n_classes_, "y", y, "a class label in [0, " + std::to_string(n_classes_) + ")");
    }

    // ℓ [n, K]: column k is log π_k + log N(x; a m_k, V_k).
    Eigen::MatrixXd log_terms(const Eigen::MatrixXd& x, double a, double s) const {
        Eigen::MatrixXd l(x.rows(), n_components());
        for (std::size_t k = 0; k < comps_.size(); ++k) {
            l.col(static_cast<Eigen::Index>(k)) = comps_[k].log_prob(x, a, s).array() + log_weights_[k];
        }
        return l;
    }

    // log Σ_j exp(l_j), shifting by the maximum so no term overflows and the largest is exp(0) = 1.
    static double log_sum_exp(const Eigen::Ref<const Eigen::RowVectorXd>& l) {
        const double m = l.maxCoeff();
        if (m == -std::numeric_limits<double>::infinity()) return m;
        return m + std::log((l.array() - m).exp().sum());
    }

    // Row-wise softmax of l [n, K]: exp(l − max) / Σ exp(l − max).
    static Eigen::MatrixXd softmax_rows(const Eigen::MatrixXd& l) {
        Eigen::MatrixXd r(l.rows(), l.cols());
        for (Eigen::Index i = 0; i < l.rows(); ++i) {
            const Eigen::ArrayXd e = (l.row(i).array() - l.row(i).maxCoeff()).exp().transpose();
            r.row(i) = (e / e.sum()).matrix().transpose();
        }
        return r;
    }

    // Responsibilities within class y, [n, K] (0 in columns of other classes).
    Eigen::MatrixXd class_responsibilities(const Eigen::MatrixXd& l, int y) const {
        Eigen::MatrixXd masked = l;
        for (std::size_t k = 0; k < comps_.size(); ++k) {
            if (labels_[k] != y)
                masked.col(static_cast<Eigen::Index>(k))
                    .setConstant(-std::numeric_limits<double>::infinity());
        }
        return softmax_rows(masked);
    }

    // log p_t(y | x) [n, C].
    Eigen::MatrixXd class_log_rows(const Eigen::MatrixXd& x, double a, double s) const {
        const Eigen::MatrixXd l = log_terms(x, a, s);
        Eigen::MatrixXd out(l.rows(), n_classes_);
        Eigen::RowVectorXd lc(static_cast<Eigen::Index>(comps_.size()));
        for (Eigen::Index i = 0; i < l.rows(); ++i) {
            const double total = log_sum_exp(l.row(i));
            for (int y = 0; y < n_classes_; ++y) {
                for (std::size_t k = 0; k < comps_.size(); ++k) {
                    lc(static_cast<Eigen::Index>(k)) = labels_[k] == y
                                                           ? l(i, static_cast<Eigen::Index>(k))
                                                           : -std::numeric_limits<double>::infinity();
                }
                out(i, y) = log_sum_exp(lc) - total;
            }
        }
        return out;
    }

    // Σ_k w[:, k] ⊙ f(component k) [n, d]: the per-row weighted sum over components of a
    // per-component result f(g) [n, d] (a score, posterior mean, ...).
    template <class F>
    Eigen::MatrixXd weighted_component_sum(const Eigen::MatrixXd& x, const Eigen::MatrixXd& w, F&& f) const {
        Eigen::MatrixXd out = Eigen::MatrixXd::Zero(x.rows(), x.cols());
        for (std::size_t k = 0; k < comps_.size(); ++k) {
            out += w.col(static_cast<Eigen::Index>(k)).asDiagonal() * f(comps_[k]);
        }
        return out;
    }

    std::vector<double> weights_;
    std::vector<double> log_weights_;
    std::vector<gaussian> comps_;
    std::vector<int> labels_;
    int n_classes_ = 0;
};

}  // namespace diffuse::analytic
