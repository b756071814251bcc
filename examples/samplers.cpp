// The samplers demo (README quick start, first command): every sampler of samplers/ on a 2-D
// class-labelled Gaussian mixture with its exact class-conditional denoiser, at 5 to 50 model
// evaluations (NFE).
//
//   example_samplers [output-folder]      (default: demo-output)
//
// For each sampler and NFE budget it draws n points (one class label per point, cycling through
// the classes), from the same standard-normal z for every sampler, and measures
//   ode error   deterministic samplers: the median over points of the distance to the exact
//               probability-flow ODE endpoint of the same start (a 2,000-evaluation Heun
//               reference from the same level), i.e. the solver error alone (the median, because
//               points at a boundary between two components jump across under any error);
//   mean error  every sampler: max over classes of the distance between the class's sample mean
//               and the exact class mean, in units of that class's standard deviation (the Monte
//               Carlo floor at n/C points per class is about 1/√(n/C) ≈ 0.04);
//   accuracy    every sampler: the fraction of points the exact Bayes classifier assigns to the
//               label they were sampled with (exact samples: the "exact" row).
// Writes to the output folder:
//   samplers_grid.png            scatter plots, one row per sampler, one column per NFE
//   samplers_error_vs_nfe.png    ODE error against NFE (log–log) for the deterministic samplers
//   samplers_nfe.npy [S, L], samplers_ode_error.npy [S, L], samplers_mean_error.npy [S, L],
//   samplers_accuracy.npy [S, L] (NaN where not applicable), samplers_names.txt (S lines:
//   name, kind), samplers_trajectory_<name>.npy [NFE + 1, P, 2] (P = 48 points at NFE 20),
//   samplers_exact.npy [n, 2] exact samples with samplers_labels.npy [n]
//   samplers.md                  the tables and the pictures
// notebooks/samplers.ipynb plots the trajectories and fits the convergence orders from these files.

#include <diffuse/analytic/gaussian_mixture.hpp>
#include <diffuse/io/npy.hpp>
#include <diffuse/io/plot.hpp>
#include <diffuse/io/png.hpp>
#include <diffuse/models/exact.hpp>
#include <diffuse/samplers/samplers.hpp>
#include <diffuse/schedules/schedule.hpp>

#include <Eigen/Dense>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <limits>
#include <map>
#include <numbers>
#include <sstream>
#include <string>
#include <vector>

using namespace diffuse;
using namespace diffuse::samplers;
using pt = prediction_type;
using mat = Eigen::MatrixXd;
using host = tensor<double, host_space>;

namespace {

constexpr int n_points = 3000;         // points per run (1000 per class)
constexpr int n_traj = 48;             // trajectory points recorded at NFE 20
constexpr double sigma_max = 80.0, sigma_min = 0.002, rho = 7.0;
const std::vector<int> nfe_ladder{5, 7, 10, 14, 20, 28, 40, 50};
const std::vector<int> grid_nfe{5, 10, 20, 50};

/// Three classes, six components: class 0 two blobs on the left, class 1 a ring-like pair on
/// the right, class 2 two elongated components at the top and bottom.
analytic::gaussian_mixture demo_mixture() {
    auto cov = [](double sx, double sy, double angle) {
        Eigen::Matrix2d r;
        r << std::cos(angle), -std::sin(angle), std::sin(angle), std::cos(angle);
        return mat(r * Eigen::Vector2d(sx * sx, sy * sy).asDiagonal() * r.transpose());
    };
    std::vector<Eigen::VectorXd> means = {Eigen::Vector2d(-3.0, 1.2), Eigen::Vector2d(-3.2, -1.4),
                                          Eigen::Vector2d(3.0, 1.5),  Eigen::Vector2d(2.8, -1.5),
                                          Eigen::Vector2d(0.0, 3.4),  Eigen::Vector2d(0.2, -3.3)};
    std::vector<mat> covs = {cov(0.5, 0.3, 0.4), cov(0.4, 0.4, 0.0), cov(0.6, 0.2, -0.8),
                             cov(0.6, 0.2, 0.8), cov(1.1, 0.2, 0.1), cov(1.0, 0.25, -0.2)};
    return analytic::gaussian_mixture({0.2, 0.15, 0.15, 0.15, 0.2, 0.15}, means, covs, {0, 0, 1, 1, 2, 2});
}

/// Karras σ levels to 0 (VE): the k-diffusion default grid, N steps.
std::vector<double> karras(int n) { return schedules::karras_sigmas(n, sigma_min, sigma_max, rho, schedules::final_sigma::zero); }

/// Trajectory recording: the driver's callback stores the first n_traj rows after each step.
struct recorder {
    std::vector<mat>* out = nullptr;
    void operator()(const step_info&, tensor_view<const double, host_space> x) const {
        if (!out) return;
        out->push_back(as_eigen_matrix(x, x.size(0), 2).topRows(n_traj));
    }
};

/// One sampler of the demo: `build(N)` makes it for N method steps; `start_level` is the level
/// its first state is at. run() picks the largest N whose num_steps() (model evaluations) fits
/// the NFE budget, draws x_T = init_noise_sigma·z and samples.
struct entry {
    std::string name;
    bool deterministic;
    std::function<int(const models::exact_mixture_denoiser&, host&, philox_rng&, int, std::span<const int>,
                      std::vector<mat>*, noise_condition*)>
        run;
};

template <class Build>
entry make_entry(std::string name, bool deterministic, Build build) {
    entry e{std::move(name), deterministic, {}};
    e.run = [build](const models::exact_mixture_denoiser& model, host& x, philox_rng& rng, int target,
                    std::span<const int> labels, std::vector<mat>* traj, noise_condition* start) {
        int n = 1;
        while (build(n + 1).num_steps() <= static_cast<std::size_t>(target)) ++n;
        auto s = build(n);
        if (start) *start = s.state_level(0);
        lincomb(x, s.init_noise_sigma(), x);
        if (traj) traj->push_back(as_eigen_matrix(x.cview(), x.size(0), 2).topRows(n_traj));
        sample(model, s, x, rng, recorder{traj}, models::class_labels(labels));
        return static_cast<int>(s.num_steps());
    };
    return e;
}

std::vector<entry> all_samplers(const schedules::discrete_schedule& sched) {
    std::vector<entry> v;
    auto ve = [](int n) { return level_sequence::ve(karras(n)); };
    // Discrete-schedule samplers (VP state, diffusers' grids, trailing so they start at t = T − 1).
    v.push_back(make_entry("ddim", true, [&sched](int n) {
        ddim_sampler s(sched, ddim_config{.timestep_spacing = schedules::spacing::trailing});
        s.set_timesteps(n);
        return s;
    }));
    v.push_back(make_entry("plms", true, [&sched](int n) {
        pndm_sampler s(sched, pndm_config{.skip_prk_steps = true, .set_alpha_to_one = true,
                                          .timestep_spacing = schedules::spacing::trailing});
        s.set_timesteps(n);
        return s;
    }));
    // σ-space samplers on Karras levels (VE state, the model sees x at (1, σ)).
    v.push_back(make_entry("euler", true, [ve](int n) { return euler_sampler(ve(n)); }));
    v.push_back(make_entry("heun", true, [ve](int n) { return heun_sampler(ve(n)); }));
    v.push_back(make_entry("dpm2", true, [ve](int n) { return dpm2_sampler(ve(n)); }));
    v.push_back(make_entry("lms", true, [ve](int n) { return lms_sampler(ve(n)); }));
    v.push_back(make_entry("ipndm", true, [ve](int n) { return ipndm_sampler(ve(n)); }));
    v.push_back(make_entry("dpm_solver_2s", true, [ve](int n) {
        return dpm_solver_singlestep_sampler(ve(n), dpm_solver_singlestep_config{.order = 2});
    }));
    v.push_back(make_entry("dpm_solver_3s", true, [ve](int n) {
        return dpm_solver_singlestep_sampler(ve(n), dpm_solver_singlestep_config{.order = 3});
    }));
    v.push_back(make_entry("dpmpp_2m", true, [ve](int n) {
        return dpm_solver_multistep_sampler(ve(n), dpm_multistep_config{.order = 2});
    }));
    v.push_back(make_entry("dpmpp_3m", true, [ve](int n) {
        return dpm_solver_multistep_sampler(ve(n), dpm_multistep_config{.order = 3});
    }));
    v.push_back(make_entry("unipc_2", true, [ve](int n) { return unipc_sampler(ve(n), unipc_config{.order = 2}); }));
    v.push_back(make_entry("unipc_3", true, [ve](int n) { return unipc_sampler(ve(n), unipc_config{.order = 3}); }));
    // Stochastic samplers.
    v.push_back(make_entry("ddpm", false, [&sched](int n) {
        ddpm_sampler s(sched, ddpm_config{.timestep_spacing = schedules::spacing::trailing});
        s.set_timesteps(n);
        return s;
    }));
    v.push_back(make_entry("euler_ancestral", false, [ve](int n) { return euler_ancestral_sampler(ve(n)); }));
    v.push_back(make_entry("dpm2_ancestral", false, [ve](int n) { return dpm2_ancestral_sampler(ve(n)); }));
    v.push_back(make_entry("dpmpp_2s_ancestral", false, [ve](int n) { return dpmpp_2s_ancestral_sampler(ve(n)); }));
    v.push_back(make_entry("dpmpp_sde", false, [ve](int n) { return dpmpp_sde_sampler(ve(n)); }));
    v.push_back(make_entry("sde_dpmpp_2m", false, [ve](int n) {
        return dpm_solver_multistep_sampler(
            ve(n), dpm_multistep_config{.order = 2, .algorithm = dpm_algorithm::sde_dpmsolver_pp});
    }));
    return v;
}

/// The exact PF-ODE endpoint from x at level `start`: Heun (2,000 evaluations) on Karras levels
/// from σ_start to 0 in VE (x_ve = x/a). Heun's global error at 1,000 steps is ~1e-7 here.
mat reference_endpoint(const models::exact_mixture_denoiser& model, const host& x_start, const noise_condition& start,
                       std::span<const int> labels) {
    host x = x_start;
    lincomb(x, 1.0 / start.a, x);
    heun_sampler h(level_sequence::ve(schedules::karras_sigmas(1000, 1e-4, start.sigma(), rho, schedules::final_sigma::zero)));
    philox_rng rng(0);
    sample(model, h, x, rng, no_callback{}, models::class_labels(labels));
    return as_eigen_matrix(x.cview(), x.size(0), 2);
}

/// The median over points of |x_i − ref_i|. A few points near the boundary between two
/// components of a class change component under a small perturbation (the PF-ODE map is
/// discontinuous there); they dominate an RMS and hide the solver's order, the median does not.
double median_distance(const mat& x, const mat& ref) {
    std::vector<double> d(static_cast<std::size_t>(x.rows()));
    for (Eigen::Index i = 0; i < x.rows(); ++i) d[static_cast<std::size_t>(i)] = (x.row(i) - ref.row(i)).norm();
    std::nth_element(d.begin(), d.begin() + static_cast<std::ptrdiff_t>(d.size() / 2), d.end());
    return d[d.size() / 2];
}

struct class_stats {
    double mean_error = 0.0;  // max over classes, in class standard deviations
    double accuracy = 0.0;
};

class_stats evaluate(const analytic::gaussian_mixture& mix, const mat& x, std::span<const int> labels) {
    class_stats r;
    const mat post = mix.class_posterior(x, 1.0, 0.0);
    int right = 0;
    for (Eigen::Index i = 0; i < x.rows(); ++i) {
        Eigen::Index best;
        post.row(i).maxCoeff(&best);
        right += best == labels[static_cast<std::size_t>(i)];
    }
    r.accuracy = static_cast<double>(right) / static_cast<double>(x.rows());
    for (int y = 0; y < mix.n_classes(); ++y) {
        const analytic::gaussian_mixture c = mix.conditional(y);
        Eigen::Vector2d m = Eigen::Vector2d::Zero();
        int n = 0;
        for (Eigen::Index i = 0; i < x.rows(); ++i)
            if (labels[static_cast<std::size_t>(i)] == y) m += x.row(i).transpose(), ++n;
        m /= n;
        const Eigen::Vector2d d = m - c.mean();
        const double sd = std::sqrt(c.cov().trace() / 2.0);
        r.mean_error = std::max(r.mean_error, d.norm() / sd);
    }
    return r;
}

std::string fmt(double v, const char* f = "%.3g") {
    if (std::isnan(v)) return "–";
    char b[32];
    std::snprintf(b, sizeof b, f, v);
    return b;
}

}  // namespace

int main(int argc, char** argv) {
    const std::filesystem::path out = argc > 1 ? argv[1] : "demo-output";
    std::filesystem::create_directories(out);
    const analytic::gaussian_mixture mix = demo_mixture();
    const models::exact_mixture_denoiser model(mix, pt::sample);
    const auto sched = schedules::discrete_schedule::named("linear", 1000);
    std::vector<int> labels(n_points);
    for (int i = 0; i < n_points; ++i) labels[static_cast<std::size_t>(i)] = i % mix.n_classes();

    // The common standard-normal start and the exact samples (per label, from the conditional).
    host z(shape{n_points, 2});
    {
        philox_rng rng(20261123);
        randn(z, rng);
    }
    mat exact(n_points, 2);
    {
        philox_rng rng(7);
        for (int y = 0; y < mix.n_classes(); ++y) {
            const auto s = mix.conditional(y).sample(n_points, rng);
            for (int i = y; i < n_points; i += mix.n_classes()) exact.row(i) = s.x.row(i);
        }
    }
    const class_stats exact_stats = evaluate(mix, exact, labels);

    const std::vector<entry> samplers = all_samplers(sched);
    const std::size_t S = samplers.size(), L = nfe_ladder.size();
    host nfe(shape{static_cast<std::int64_t>(S), static_cast<std::int64_t>(L)}), ode_err(nfe.shape()),
        mean_err(nfe.shape()), acc(nfe.shape());
    std::vector<std::vector<mat>> grid(S);  // samples at grid_nfe
    std::map<std::pair<double, double>, mat> references;  // by start level (a, s)

    for (std::size_t k = 0; k < S; ++k) {
        const entry& e = samplers[k];
        for (std::size_t l = 0; l < L; ++l) {
            host x = z;
            philox_rng rng(1000 + k);
            std::vector<mat> traj;
            noise_condition start;
            const bool record = nfe_ladder[l] == 20;
            const int used = e.run(model, x, rng, nfe_ladder[l], labels, record ? &traj : nullptr, &start);
            const mat xs = as_eigen_matrix(x.cview(), n_points, 2);
            nfe.data()[k * L + l] = used;
            const class_stats st = evaluate(mix, xs, labels);
            mean_err.data()[k * L + l] = st.mean_error;
            acc.data()[k * L + l] = st.accuracy;
            ode_err.data()[k * L + l] = std::numeric_limits<double>::quiet_NaN();
            if (e.deterministic) {
                const auto key = std::make_pair(start.a, start.s);
                if (!references.count(key)) {
                    host x0 = z;
                    lincomb(x0, start.a == 1.0 ? start.s : 1.0, x0);  // the same x_T the sampler started from
                    references[key] = reference_endpoint(model, x0, start, labels);
                }
                ode_err.data()[k * L + l] = median_distance(xs, references[key]);
            }
            if (std::find(grid_nfe.begin(), grid_nfe.end(), nfe_ladder[l]) != grid_nfe.end()) grid[k].push_back(xs);
            if (record) {
                host t(shape{static_cast<std::int64_t>(traj.size()), n_traj, 2});
                for (std::size_t j = 0; j < traj.size(); ++j)
                    as_eigen_matrix(t.view(), static_cast<std::int64_t>(traj.size()) * n_traj, 2)
                        .middleRows(static_cast<Eigen::Index>(j) * n_traj, n_traj) = traj[j];
                io::save_npy((out / ("samplers_trajectory_" + e.name + ".npy")).string(), t);
            }
        }
        std::cout << "  " << e.name << " done\n";
    }

    io::save_npy((out / "samplers_nfe.npy").string(), nfe);
    io::save_npy((out / "samplers_ode_error.npy").string(), ode_err);
    io::save_npy((out / "samplers_mean_error.npy").string(), mean_err);
    io::save_npy((out / "samplers_accuracy.npy").string(), acc);
    {
        host ex(shape{n_points, 2});
        as_eigen_matrix(ex.view()) = exact;
        io::save_npy((out / "samplers_exact.npy").string(), ex);
        tensor<std::int32_t, host_space> lab(shape{n_points});
        std::copy(labels.begin(), labels.end(), lab.data());
        io::save_npy((out / "samplers_labels.npy").string(), lab);
        std::ofstream names(out / "samplers_names.txt");
        for (const entry& e : samplers) names << e.name << ' ' << (e.deterministic ? "deterministic" : "stochastic") << '\n';
    }

    // The scatter grid: one panel per (sampler, NFE), plus the exact samples in the first row.
    const int pw = 180, ph = 180, cols = static_cast<int>(grid_nfe.size());
    const int rows = static_cast<int>(S) + 1;
    const int label_w = 150, head_h = 24;
    io::canvas big(label_w + cols * pw, head_h + rows * ph);
    auto panel = [&](const mat& pts, const std::string& title) {
        std::vector<io::series> ser;
        for (int y = 0; y < mix.n_classes(); ++y) {
            io::series s;
            for (Eigen::Index i = 0; i < pts.rows(); ++i)
                if (labels[static_cast<std::size_t>(i)] == y) s.x.push_back(pts(i, 0)), s.y.push_back(pts(i, 1));
            s.lines = false;
            s.markers = true;
            s.marker_size = 1;
            s.color = io::cycle_color(static_cast<std::size_t>(y));
            ser.push_back(std::move(s));
        }
        io::plot_options o;
        o.width = pw;
        o.height = ph;
        o.title = title;
        o.x_min = -6.5, o.x_max = 6.5, o.y_min = -6.5, o.y_max = 6.5;
        o.grid = false;
        o.legend = false;
        return io::line_plot(ser, o);
    };
    auto blit = [&](const tensor<std::uint8_t, host_space>& img, int x0, int y0) { big.draw_image(img, x0, y0); };
    for (int c = 0; c < cols; ++c)
        big.text(label_w + c * pw + pw / 2 - io::canvas::text_width("NFE " + std::to_string(grid_nfe[c])), 6,
                 "NFE " + std::to_string(grid_nfe[c]), io::colors::black, 2);
    big.text(8, head_h + ph / 2, "exact", io::colors::black);
    blit(panel(exact, ""), label_w, head_h);
    for (std::size_t k = 0; k < S; ++k) {
        const int y0 = head_h + static_cast<int>(k + 1) * ph;
        big.text(8, y0 + ph / 2, samplers[k].name, io::colors::black);
        for (int c = 0; c < cols; ++c) blit(panel(grid[k][static_cast<std::size_t>(c)], ""), label_w + c * pw, y0);
    }
    io::save_png((out / "samplers_grid.png").string(), big.image());

    // Error against NFE, log–log, deterministic samplers.
    {
        std::vector<io::series> ser;
        for (std::size_t k = 0; k < S; ++k) {
            if (!samplers[k].deterministic) continue;
            io::series s;
            s.label = samplers[k].name;
            for (std::size_t l = 0; l < L; ++l) {
                const double e = ode_err.cview()[k * L + l];
                if (e > 0) s.x.push_back(nfe.cview()[k * L + l]), s.y.push_back(e);
            }
            s.markers = true;
            ser.push_back(std::move(s));
        }
        io::plot_options o;
        o.width = 900;
        o.height = 640;
        o.title = "error against the exact PF-ODE endpoint";
        o.x_label = "NFE (model evaluations)";
        o.y_label = "median error";
        o.x_scale = io::axis_scale::log;
        o.y_scale = io::axis_scale::log;
        io::save_line_plot((out / "samplers_error_vs_nfe.png").string(), ser, o);
    }

    // The report.
    std::ostringstream md;
    md << "# Samplers on a 2-D class-labelled Gaussian mixture\n\n"
       << n_points << " points (" << n_points / mix.n_classes() << " per class), exact class-conditional denoiser, "
       << "the same starting noise for every sampler. σ-space samplers use Karras levels (σ " << sigma_max << " → "
       << sigma_min << " → 0, ρ = 7); DDIM, PLMS and DDPM the linear schedule (T = 1000, trailing spacing).\n\n"
       << "ODE error: the median over points of the distance to the exact PF-ODE endpoint of the same start "
       << "(deterministic samplers; the median, since points at a boundary between two components jump across). "
       << "Exact samples: Bayes accuracy " << fmt(exact_stats.accuracy, "%.4f") << ", mean error "
       << fmt(exact_stats.mean_error) << " sd (the Monte Carlo floor).\n\n"
       << "![grid](samplers_grid.png)\n\n![error](samplers_error_vs_nfe.png)\n\n";
    auto header = [&] {
        md << "| sampler |";
        for (int v : nfe_ladder) md << " NFE " << v << " |";
        md << "\n|---|";
        for (std::size_t l = 0; l < L; ++l) md << "---|";
        md << "\n";
    };
    auto table = [&](const host& t, const char* f) {
        for (std::size_t k = 0; k < S; ++k) {
            md << "| " << samplers[k].name << " |";
            for (std::size_t l = 0; l < L; ++l) {
                const int used = static_cast<int>(nfe.cview()[k * L + l]);
                md << ' ' << fmt(t.cview()[k * L + l], f) << (used != nfe_ladder[l] ? " (" + std::to_string(used) + ")" : "")
                   << " |";
            }
            md << "\n";
        }
    };
    md << "\n**ODE error** (median distance to the exact endpoint; NFE actually used in parentheses when it differs):\n\n";
    header();
    table(ode_err, "%.2e");
    md << "\n**Class-mean error** (max over classes, in class standard deviations):\n\n";
    header();
    table(mean_err, "%.3f");
    md << "\n**Bayes-classifier accuracy** (exact samples: " << fmt(exact_stats.accuracy, "%.4f") << "):\n\n";
    header();
    table(acc, "%.4f");
    std::ofstream(out / "samplers.md") << md.str();
    std::cout << md.str();
    return 0;
}
