#pragma once
// moment_test and mixture_weight_test: do samples match an exact target? One call each
// (docs/testing-your-sampler.md §3; closed_forms F2–F3).
//
// moment_test(samples [n, d], target N(μ, Σ), options) makes m comparisons, each a two-sided test
// at level α/m (Bonferroni), so the whole call fails by chance with probability <= α
// (options.false_alarm, default 1e-6: closed_forms F2's budget for one assertion):
//   mean       z_j = √n (x̄_j − μ_j)/√Σ_jj ~ N(0, 1) exactly          pass iff |z_j| <= z* = Φ⁻¹(1 − α/(2m))
//   variance   (n − 1) S_jj/Σ_jj ~ χ²_{n−1} exactly (S unbiased)       pass iff S_jj/Σ_jj in [lo, hi], the
//              χ² quantiles at α/(2m) and 1 − α/(2m) divided by n − 1; reported also as
//              z = (S_jj − Σ_jj)/(Σ_jj √(2/(n−1))), since Var(S_jj) = 2Σ_jj²/(n − 1) for Gaussian data
//   covariance (options.covariance, j < k) z_jk = (S_jk − Σ_jk)/√((Σ_jk² + Σ_jj Σ_kk)/(n − 1)), the
//              exact Wishart variance; normal approximation, pass iff |z_jk| <= z*
// m = 2d, plus d(d−1)/2 with covariance. x̄ and S are independent for Gaussian samples, and the
// tests use the sample mean (not μ) inside S, so a mean defect does not leak into the variances.
// The result also states the power: the mean shift (z*/√n standard deviations) and the relative
// variance errors (hi − 1, 1 − lo) this n detects with probability ½.
//
// mixture_weight_test(samples, target mixture, options) checks the weights π_k: each sample is
// assigned to the components softly by the exact posterior r_k(x) = p(k | x) (a = 1, s = 0), and
//   ŵ_k = mean_i r_k(x_i),   E[ŵ_k] = π_k exactly,   Var(r_k(x)) <= π_k(1 − π_k) (r_k in [0, 1]),
// so the binomial variance bounds the true one. Bernstein's inequality with that variance gives
// a bound valid for every n: P(|ŵ_k − π_k| >= t) <= 2 exp(−n t²/(2π_k(1−π_k) + 2bt/3)),
// b = max(π_k, 1 − π_k), solved for t at level α/K. z_k = (ŵ_k − π_k)/√(π_k(1−π_k)/n) is reported
// for reading (conservative: its true standard deviation is <= 1). options.group = classes
// tests the class priors π(y) with p(y | x) instead.
//
// Samples: an Eigen matrix (rows are samples) or a tensor [n, ...] whose trailing dimensions
// multiply to d (float or double; device tensors are copied to the host). Everything is computed
// in double and is deterministic given the samples. Non-finite samples, n < 2 or a dimension
// other than the target's throw diffuse::error.

#include <diffuse/analytic/gaussian.hpp>
#include <diffuse/analytic/gaussian_mixture.hpp>
#include <diffuse/core/error.hpp>
#include <diffuse/core/memory_space.hpp>
#include <diffuse/core/tensor.hpp>
#include <diffuse/testing/detail/format.hpp>
#include <diffuse/testing/statistics.hpp>

#include <Eigen/Dense>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace diffuse::testing {

struct moment_options {
    double false_alarm = 1e-6;  ///< α: the probability that the whole call fails on exact samples, in (0, 1)
    bool covariance = true;     ///< also compare the off-diagonal covariances (d(d−1)/2 more comparisons)
    std::string name = "moment test";  ///< the report's title
};

struct moment_result {
    std::string name;
    std::int64_t n = 0;              ///< number of samples
    Eigen::Index d = 0;              ///< dimension
    Eigen::VectorXd target_mean, sample_mean;  ///< μ, x̄
    Eigen::VectorXd target_variance;           ///< Σ_jj
    Eigen::VectorXd variance_ratio;            ///< S_jj/Σ_jj (S unbiased, divided by n − 1)
    Eigen::VectorXd mean_z;                    ///< √n (x̄_j − μ_j)/√Σ_jj
    Eigen::VectorXd variance_z;                ///< (S_jj − Σ_jj)/(Σ_jj √(2/(n−1)))
    Eigen::MatrixXd covariance_z;              ///< z_jk off the diagonal, variance_z on it (empty without covariance)
    Eigen::MatrixXd sample_cov;                ///< S (empty without covariance)
    int comparisons = 0;                       ///< m
    double false_alarm = 0.0;                  ///< α
    double z_bound = 0.0;                      ///< z* = Φ⁻¹(1 − α/(2m))
    double variance_ratio_low = 0.0, variance_ratio_high = 0.0;  ///< accepted S_jj/Σ_jj interval
    double detectable_mean_shift = 0.0;        ///< z*/√n, in standard deviations (50 % power)
    bool mean_passed = false, variance_passed = false, covariance_passed = true;
    bool passed = false;                       ///< all comparisons within their bounds
    std::string worst;                         ///< the comparison closest to (or beyond) its bound

    std::string report() const {
        std::string r = detail::format(
            "%s: %s: n = %lld samples of dimension %d; false-alarm rate %g split over %d comparisons "
            "(|z| <= %.3f, variance ratio in [%.5f, %.5f])\n",
            name.c_str(), detail::verdict(passed), static_cast<long long>(n), static_cast<int>(d), false_alarm,
            comparisons, z_bound, variance_ratio_low, variance_ratio_high);
        r += "  coord  target mean  sample mean    mean z   target var  var ratio     var z\n";
        for (Eigen::Index j = 0; j < d; ++j) {
            const bool bad_mean = !(std::abs(mean_z(j)) <= z_bound);
            const bool bad_var = !(variance_ratio(j) >= variance_ratio_low && variance_ratio(j) <= variance_ratio_high);
            r += detail::format("  %5d %12.5g %12.5g %+9.3f%s %11.5g %10.5f %+9.3f%s\n", static_cast<int>(j),
                                target_mean(j), sample_mean(j), mean_z(j), bad_mean ? "!" : " ", target_variance(j),
                                variance_ratio(j), variance_z(j), bad_var ? "!" : " ");
        }
        if (covariance_z.size() > 0 && d > 1) {
            double worst_z = 0.0;
            int wj = 0, wk = 1;
            for (Eigen::Index j = 0; j < d; ++j)
                for (Eigen::Index k = j + 1; k < d; ++k)
                    if (!(std::abs(covariance_z(j, k)) <= std::abs(worst_z))) {
                        worst_z = covariance_z(j, k);
                        wj = static_cast<int>(j);
                        wk = static_cast<int>(k);
                    }
            r += detail::format("  off-diagonal covariances: %s, largest |z| = %.3f at (%d, %d)\n",
                                covariance_passed ? "within the bound" : "OUTSIDE the bound", std::abs(worst_z), wj, wk);
        }
        r += "  worst: " + worst + "\n";
        r += detail::format(
            "  power: with probability 1/2 this n detects a mean shift of %.3g standard deviations, or a variance "
            "%.2f%% low or %.2f%% high\n",
            detectable_mean_shift, 100.0 * (1.0 - variance_ratio_low), 100.0 * (variance_ratio_high - 1.0));
        return r;
    }
};

/// How mixture_weight_test groups the components.
enum class mixture_group {
    components,  ///< the weights π_k, by the component posterior p(k | x)
    classes,     ///< the class priors π(y), by the class posterior p(y | x)
};

struct mixture_options {
    double false_alarm = 1e-6;  ///< α for the whole call, Bonferroni-split over the K weights
    mixture_group group = mixture_group::components;
    std::string name = "mixture weight test";
};

struct mixture_weight_result {
    std::string name;
    std::int64_t n = 0;
    mixture_group group = mixture_group::components;
    std::vector<double> target_weights;  ///< π_k (or π(y))
    std::vector<double> sample_weights;  ///< ŵ_k = mean_i p(k | x_i)
    std::vector<double> z;               ///< (ŵ_k − π_k)/√(π_k(1−π_k)/n)
    std::vector<double> bound;           ///< the Bernstein half-width t_k: pass iff |ŵ_k − π_k| <= t_k
    double false_alarm = 0.0;
    bool passed = false;

    std::string report() const {
        const char* what = group == mixture_group::components ? "component" : "class";
        std::string r = detail::format(
            "%s: %s: n = %lld samples, %d %s weights; false-alarm rate %g split over %d comparisons "
            "(Bernstein bound with the binomial variance)\n",
            name.c_str(), detail::verdict(passed), static_cast<long long>(n), static_cast<int>(target_weights.size()),
            what, false_alarm, static_cast<int>(target_weights.size()));
        r += detail::format("  %9s  target weight  sample weight  |difference|      bound        z\n", what);
        for (std::size_t k = 0; k < target_weights.size(); ++k) {
            const double diff = std::abs(sample_weights[k] - target_weights[k]);
            r += detail::format("  %9d  %13.6f  %13.6f  %12.3e  %9.3e  %+7.3f%s\n", static_cast<int>(k),
                                target_weights[k], sample_weights[k], diff, bound[k], z[k],
                                diff <= bound[k] ? "" : "  !");
        }
        return r;
    }
};

namespace detail {

/// Rows of an Eigen matrix as a MatrixXd, checked: n >= 2 rows, d columns, finite.
inline Eigen::MatrixXd checked_samples(Eigen::MatrixXd x, Eigen::Index d, const char* who) {
    require(x.rows() >= 2, std::string(who) + ": number of samples", static_cast<long long>(x.rows()), ">= 2");
    if (x.cols() != d)
        fail(std::string(who) + ": samples have dimension " + std::to_string(x.cols()) + " but the target has " +
             std::to_string(d) + "; expected equal (samples are rows [n, d])");
    for (Eigen::Index i = 0; i < x.rows(); ++i)
        for (Eigen::Index j = 0; j < d; ++j)
            if (!std::isfinite(x(i, j)))
                fail_argument(std::string(who) + ": sample " + std::to_string(i) + ", coordinate " + std::to_string(j),
                              x(i, j), "a finite number (the sampler produced a non-finite value)");
    return x;
}

/// A tensor [n, ...] as an n × d MatrixXd (trailing dimensions flattened, row-major).
template <class T, class S>
Eigen::MatrixXd tensor_rows(tensor_view<const T, S> x, const char* who) {
    require(x.rank() >= 1, std::string(who) + ": samples.rank()", x.rank(), ">= 1 (a batch [n, ...])");
    tensor<std::remove_const_t<T>, host_space> host(x.shape());
    copy(host.view(), x);
    const std::int64_t n = x.size(0);
    const std::int64_t d = n > 0 ? x.numel() / n : 0;
    Eigen::MatrixXd m(n, d);
    for (std::int64_t i = 0; i < n; ++i)
        for (std::int64_t j = 0; j < d; ++j) m(i, j) = static_cast<double>(host[i * d + j]);
    return m;
}

/// The Bernstein half-width t with 2 exp(−n t²/(2v + 2bt/3)) = a: the positive root of
/// n t² − (2/3) b L t − 2 v L = 0, L = log(2/a).
inline double bernstein_half_width(double n, double v, double b, double a) {
    const double l = std::log(2.0 / a);
    const double p = (2.0 / 3.0) * b * l;
    return (p + std::sqrt(p * p + 8.0 * n * v * l)) / (2.0 * n);
}

inline moment_result moment_test_rows(const Eigen::MatrixXd& x, const analytic::gaussian& target,
                                      const moment_options& options) {
    require_open(options.false_alarm, 0.0, 1.0, "options.false_alarm");
    const Eigen::Index d = target.dimension();
    const Eigen::MatrixXd& sigma = target.cov();
    moment_result r;
    r.name = options.name;
    r.n = x.rows();
    r.d = d;
    r.false_alarm = options.false_alarm;
    r.target_mean = target.mean();
    r.target_variance = sigma.diagonal();
    r.sample_mean = x.colwise().mean().transpose();
    const double n = static_cast<double>(r.n);
    const bool cov = options.covariance && d > 1;
    r.comparisons = static_cast<int>(2 * d + (cov ? d * (d - 1) / 2 : 0));
    const double a = options.false_alarm / r.comparisons;  // per comparison, two-sided
    r.z_bound = normal_upper_quantile(0.5 * a);
    r.variance_ratio_low = chi_square_quantile(0.5 * a, n - 1.0) / (n - 1.0);
    r.variance_ratio_high = chi_square_upper_quantile(0.5 * a, n - 1.0) / (n - 1.0);
    r.detectable_mean_shift = r.z_bound / std::sqrt(n);

    // Two-pass moments about the sample mean.
    const Eigen::MatrixXd centred = x.rowwise() - r.sample_mean.transpose();
    Eigen::VectorXd var(d);
    if (cov) {
        r.sample_cov = (centred.transpose() * centred) / (n - 1.0);
        var = r.sample_cov.diagonal();
    } else {
        var = centred.colwise().squaredNorm().transpose() / (n - 1.0);
    }
    r.mean_z = ((r.sample_mean - r.target_mean).array() / (r.target_variance.array() / n).sqrt()).matrix();
    r.variance_ratio = (var.array() / r.target_variance.array()).matrix();
    r.variance_z = ((r.variance_ratio.array() - 1.0) / std::sqrt(2.0 / (n - 1.0))).matrix();

    // Verdicts, and the comparison nearest its bound (as a fraction of the bound).
    double worst_frac = -1.0;
    auto consider = [&](double frac, const std::string& what) {
        if (frac > worst_frac) {
            worst_frac = frac;
            r.worst = what;
        }
    };
    r.mean_passed = true;
    r.variance_passed = true;
    for (Eigen::Index j = 0; j < d; ++j) {
        const double az = std::abs(r.mean_z(j));
        r.mean_passed = r.mean_passed && az <= r.z_bound;
        consider(az / r.z_bound, detail::format("mean z of coordinate %d = %+.3f (bound +-%.3f)", static_cast<int>(j),
                                        r.mean_z(j), r.z_bound));
        const double q = r.variance_ratio(j);
        r.variance_passed = r.variance_passed && q >= r.variance_ratio_low && q <= r.variance_ratio_high;
        const double frac = q >= 1.0 ? (q - 1.0) / (r.variance_ratio_high - 1.0) : (1.0 - q) / (1.0 - r.variance_ratio_low);
        consider(frac, detail::format("variance ratio of coordinate %d = %.5f (accepted [%.5f, %.5f], z = %+.3f)",
                              static_cast<int>(j), q, r.variance_ratio_low, r.variance_ratio_high, r.variance_z(j)));
    }
    if (cov) {
        r.covariance_z = Eigen::MatrixXd(d, d);
        for (Eigen::Index j = 0; j < d; ++j) {
            r.covariance_z(j, j) = r.variance_z(j);
            for (Eigen::Index k = j + 1; k < d; ++k) {
                const double s2 = (sigma(j, k) * sigma(j, k) + sigma(j, j) * sigma(k, k)) / (n - 1.0);
                const double z = (r.sample_cov(j, k) - sigma(j, k)) / std::sqrt(s2);
                r.covariance_z(j, k) = r.covariance_z(k, j) = z;
                r.covariance_passed = r.covariance_passed && std::abs(z) <= r.z_bound;
                consider(std::abs(z) / r.z_bound,
                         detail::format("covariance z of coordinates (%d, %d) = %+.3f (bound +-%.3f; sample %.5g, target %.5g)",
                                static_cast<int>(j), static_cast<int>(k), z, r.z_bound, r.sample_cov(j, k),
                                sigma(j, k)));
            }
        }
    }
    r.passed = r.mean_passed && r.variance_passed && r.covariance_passed;
    return r;
}

inline mixture_weight_result mixture_test_rows(const Eigen::MatrixXd& x, const analytic::gaussian_mixture& target,
                                               const mixture_options& options) {
    require_open(options.false_alarm, 0.0, 1.0, "options.false_alarm");
    mixture_weight_result r;
    r.name = options.name;
    r.n = x.rows();
    r.group = options.group;
    r.false_alarm = options.false_alarm;
    // Posteriors at the clean level (a, s) = (1, 0), by log-sum-exp in analytic/.
    const Eigen::MatrixXd post = options.group == mixture_group::components ? target.responsibilities(x, 1.0, 0.0)
                                                                             : target.class_posterior(x, 1.0, 0.0);
    Eigen::VectorXd prior(post.cols());
    if (options.group == mixture_group::components)
        for (int k = 0; k < target.n_components(); ++k) prior(k) = target.weights()[static_cast<std::size_t>(k)];
    else
        prior = target.class_priors();
    const Eigen::Index groups = post.cols();
    const double n = static_cast<double>(r.n);
    const double a = options.false_alarm / static_cast<double>(groups);
    r.passed = true;
    for (Eigen::Index k = 0; k < groups; ++k) {
        const double p = prior(k), w = post.col(k).mean(), v = p * (1.0 - p);
        const double t = bernstein_half_width(n, v, std::max(p, 1.0 - p), a);
        const double diff = std::abs(w - p);
        r.target_weights.push_back(p);
        r.sample_weights.push_back(w);
        r.bound.push_back(t);
        r.z.push_back(v > 0.0 ? (w - p) / std::sqrt(v / n) : 0.0);
        r.passed = r.passed && diff <= t;
    }
    return r;
}

}  // namespace detail

/// Samples (rows of an Eigen matrix [n, d]) against the Gaussian target N(μ, Σ).
template <class Derived>
moment_result moment_test(const Eigen::MatrixBase<Derived>& samples, const analytic::gaussian& target,
                          const moment_options& options = {}) {
    return detail::moment_test_rows(detail::checked_samples(samples.template cast<double>(), target.dimension(),
                                                            "moment_test"),
                                    target, options);
}

/// Samples (a tensor [n, ...], trailing dimensions flattened to d) against N(μ, Σ).
template <class T, class S>
moment_result moment_test(tensor_view<T, S> samples, const analytic::gaussian& target,
                          const moment_options& options = {}) {
    const tensor_view<const std::remove_const_t<T>, S> x = samples;
    return detail::moment_test_rows(
        detail::checked_samples(detail::tensor_rows(x, "moment_test"), target.dimension(), "moment_test"), target,
        options);
}
template <class T, class S>
moment_result moment_test(const tensor<T, S>& samples, const analytic::gaussian& target,
                          const moment_options& options = {}) {
    return moment_test(samples.cview(), target, options);
}

/// Against N(mean, cov) given directly (cov symmetric positive definite; checked by analytic::gaussian).
template <class Samples>
moment_result moment_test(const Samples& samples, const Eigen::VectorXd& mean, const Eigen::MatrixXd& cov,
                          const moment_options& options = {}) {
    return moment_test(samples, analytic::gaussian(mean, cov), options);
}

/// The mixture weights (or class priors) of samples (Eigen rows [n, d]) against a Gaussian mixture.
template <class Derived>
mixture_weight_result mixture_weight_test(const Eigen::MatrixBase<Derived>& samples,
                                          const analytic::gaussian_mixture& target, const mixture_options& options = {}) {
    return detail::mixture_test_rows(
        detail::checked_samples(samples.template cast<double>(), target.dimension(), "mixture_weight_test"), target,
        options);
}

/// The same for a tensor [n, ...].
template <class T, class S>
mixture_weight_result mixture_weight_test(tensor_view<T, S> samples, const analytic::gaussian_mixture& target,
                                          const mixture_options& options = {}) {
    const tensor_view<const std::remove_const_t<T>, S> x = samples;
    return detail::mixture_test_rows(detail::checked_samples(detail::tensor_rows(x, "mixture_weight_test"),
                                                             target.dimension(), "mixture_weight_test"),
                                     target, options);
}
template <class T, class S>
mixture_weight_result mixture_weight_test(const tensor<T, S>& samples, const analytic::gaussian_mixture& target,
                                          const mixture_options& options = {}) {
    return mixture_weight_test(samples.cview(), target, options);
}

}  // namespace diffuse::testing
