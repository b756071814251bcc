// The demo (README quick start, first command): every noise schedule side by side.
//
//   example_schedules [output-folder]      (default: demo-output)
//
// Prints a comparison table, and writes to the output folder:
//   alpha_bar.png, log_snr.png      ᾱ_t and log-SNR against t/T for all schedules (io/plot.hpp)
//   schedules_t.npy                 [n]     the normalised time grid t/T
//   schedules_alpha_bar.npy         [S, n]  ᾱ of every schedule on that grid
//   schedules_log_snr.npy           [S, n]  log SNR = log(ᾱ/(1 − ᾱ)) (VDM convention; −inf at ᾱ = 0)
//   schedule_names.txt              S lines, the row names
//   report.md                       the table, the timestep spacings and the pictures
// notebooks/schedules.ipynb plots the same arrays with matplotlib.

#include <diffuse/io/npy.hpp>
#include <diffuse/io/plot.hpp>
#include <diffuse/schedules/schedule.hpp>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

using namespace diffuse;

namespace {

constexpr int T = 1000;  // training timesteps of every discrete schedule; n = T grid points

struct curve {
    std::string name;
    std::vector<double> alpha_bar;  // on t_i = (i + 1)/T, i = 0..T−1
    std::vector<double> log_snr;
};

curve from_discrete(std::string name, const schedules::discrete_schedule& s) {
    return {std::move(name), std::vector<double>(s.alphas_cumprod().begin(), s.alphas_cumprod().end()), s.log_snrs()};
}

/// A continuous schedule sampled at t_i = t_max·(i + 1)/T.
template <class S>
curve from_continuous(std::string name, const S& s, double t_max) {
    curve c{std::move(name), {}, {}};
    for (int i = 0; i < T; ++i) {
        const double t = t_max * (i + 1) / T;
        c.alpha_bar.push_back(std::exp(2.0 * s.log_alpha(t)));
        c.log_snr.push_back(s.log_snr(t));
    }
    return c;
}

/// First t/T at which log SNR drops below 0 (SNR = 1), linearly interpolated.
double snr_one_crossing(const curve& c) {
    for (int i = 1; i < T; ++i) {
        const double a = c.log_snr[i - 1], b = c.log_snr[i];
        if (a >= 0 && b < 0) return (i + a / (a - b)) / T;
    }
    return c.log_snr.front() < 0 ? 1.0 / T : 1.0;
}

std::string fmt(const char* f, double v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, f, v);
    return buf;
}

std::string join(const std::vector<int>& v) {
    std::string s;
    for (std::size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
    return s;
}

}  // namespace

int main(int argc, char** argv) try {
    const std::filesystem::path out = argc > 1 ? argv[1] : "demo-output";
    std::filesystem::create_directories(out);

    using schedules::discrete_schedule;
    const auto linear = discrete_schedule::named("linear", T, 1e-4, 0.02);
    const auto scaled = discrete_schedule::named("scaled_linear", T, 0.00085, 0.012);
    const auto cosine = discrete_schedule::named("squaredcos_cap_v2", T);

    std::vector<curve> curves;
    curves.push_back(from_discrete("linear (DDPM)", linear));
    curves.push_back(from_discrete("scaled_linear (SD)", scaled));
    curves.push_back(from_discrete("squaredcos_cap_v2 (cosine)", cosine));
    curves.push_back(from_discrete("sigmoid (GeoDiff)", discrete_schedule::named("sigmoid", T, 1e-4, 0.02)));
    curves.push_back(from_discrete("linear + zero terminal SNR", linear.rescale_zero_terminal_snr()));
    curves.push_back(from_discrete("scaled_linear + zero term. SNR", scaled.rescale_zero_terminal_snr()));
    curves.push_back(from_discrete("cosine shifted 64->256", cosine.resolution_shift(64, 256)));
    curves.push_back(from_continuous("VP linear SDE (0.1, 20)", schedules::vp_linear(), 1.0));
    curves.push_back(from_continuous("VP cosine (dpm-solver)", schedules::vp_cosine(), schedules::vp_cosine().t_max()));

    // ---- the table ----------------------------------------------------------------------------
    std::ostringstream table;
    table << "| schedule | ᾱ first | ᾱ last | log SNR first | log SNR last | σ_max = √((1−ᾱ)/ᾱ) | SNR = 1 at t/T |\n"
          << "|---|---|---|---|---|---|---|\n";
    std::printf("%-32s %11s %11s %9s %9s %12s %8s\n", "schedule", "abar first", "abar last", "lsnr 1st",
                "lsnr last", "sigma_max", "SNR=1");
    for (const auto& c : curves) {
        const double a0 = c.alpha_bar.front(), a1 = c.alpha_bar.back();
        const double smax = std::sqrt((1 - a1) / a1);
        std::printf("%-32s %11.5g %11.5g %9.3f %9.3f %12.6g %8.3f\n", c.name.c_str(), a0, a1, c.log_snr.front(),
                    c.log_snr.back(), smax, snr_one_crossing(c));
        table << "| " << c.name << " | " << fmt("%.6g", a0) << " | " << fmt("%.6g", a1) << " | "
              << fmt("%.3f", c.log_snr.front()) << " | " << fmt("%.3f", c.log_snr.back()) << " | "
              << (std::isfinite(smax) ? fmt("%.6g", smax) : std::string("∞")) << " | "
              << fmt("%.3f", snr_one_crossing(c)) << " |\n";
    }

    // guided-diffusion's T-rescaled linear keeps the curve when T changes; diffusers' does not.
    const auto gd4000 = discrete_schedule::named("guided_linear", 4000);
    const auto df4000 = discrete_schedule::named("linear", 4000, 1e-4, 0.02);
    std::printf("\nT = 4000: guided_linear abar_T = %.6g, diffusers linear abar_T = %.6g (T = 1000: %.6g)\n",
                gd4000.alpha_bar(3999), df4000.alpha_bar(3999), linear.alpha_bar(T - 1));

    // ---- timestep spacings (diffusers' rules, T = 1000, N = 10) ---------------------------------
    using schedules::spacing;
    const auto lead = schedules::ddim_timesteps(T, 10, spacing::leading, 1);
    const auto trail = schedules::ddim_timesteps(T, 10, spacing::trailing);
    const auto lin = schedules::ddim_timesteps(T, 10, spacing::linspace);
    const auto karras = schedules::karras_sigmas(10, 0.002, 80.0, 7.0);
    std::printf("\nDDIM timesteps, T = 1000, N = 10\n  leading + steps_offset 1: %s\n  trailing: %s\n  linspace: %s\n",
                join(lead).c_str(), join(trail).c_str(), join(lin).c_str());
    std::printf("Karras sigmas (n = 10, 0.002..80, rho = 7):");
    for (double s : karras) std::printf(" %.6g", s);
    std::printf("\n");

    // ---- arrays for the notebook ------------------------------------------------------------------
    const std::int64_t S = static_cast<std::int64_t>(curves.size());
    tensor<double, host_space> ab(shape{S, T}), ls(shape{S, T});
    std::vector<double> grid(T);
    for (int i = 0; i < T; ++i) grid[static_cast<std::size_t>(i)] = (i + 1.0) / T;
    std::ofstream names(out / "schedule_names.txt");
    for (std::int64_t s = 0; s < S; ++s) {
        names << curves[static_cast<std::size_t>(s)].name << "\n";
        for (int i = 0; i < T; ++i) {
            ab(s, i) = curves[static_cast<std::size_t>(s)].alpha_bar[static_cast<std::size_t>(i)];
            ls(s, i) = curves[static_cast<std::size_t>(s)].log_snr[static_cast<std::size_t>(i)];
        }
    }
    io::save_npy((out / "schedules_t.npy").string(), grid);
    io::save_npy((out / "schedules_alpha_bar.npy").string(), ab);
    io::save_npy((out / "schedules_log_snr.npy").string(), ls);

    // ---- pictures ----------------------------------------------------------------------------------
    std::vector<io::series> sa, sl;
    for (const auto& c : curves) {
        io::series a{grid, c.alpha_bar, c.name};
        io::series l{{}, {}, c.name};
        for (int i = 0; i < T; ++i)  // log SNR is −inf where ᾱ = 0: those points are not drawn
            if (std::isfinite(c.log_snr[static_cast<std::size_t>(i)])) {
                l.x.push_back(grid[static_cast<std::size_t>(i)]);
                l.y.push_back(c.log_snr[static_cast<std::size_t>(i)]);
            }
        sa.push_back(std::move(a));
        sl.push_back(std::move(l));
    }
    io::plot_options pa;
    pa.width = 960;
    pa.height = 600;
    pa.title = "alpha_bar(t) of every schedule";
    pa.x_label = "t / T";
    pa.y_label = "alpha_bar";
    io::save_line_plot((out / "alpha_bar.png").string(), sa, pa);
    io::plot_options pl = pa;
    pl.title = "log SNR(t) = log(alpha_bar / (1 - alpha_bar))";
    pl.y_label = "log SNR";
    pl.y_min = -25.0;
    pl.y_max = 12.0;
    io::save_line_plot((out / "log_snr.png").string(), sl, pl);

    // ---- report -------------------------------------------------------------------------------------
    std::ofstream report(out / "report.md");
    report << "# diffuse demo: noise schedules\n\n"
           << "T = 1000 training steps for every discrete schedule; continuous schedules sampled at the same\n"
           << "t/T grid. log SNR is log(ᾱ/(1−ᾱ)) (VDM convention; DPM-Solver's λ is half of it).\n\n"
           << table.str() << "\n"
           << "guided-diffusion's T-rescaled linear keeps the curve when T changes: at T = 4000 its ᾱ_T = "
           << fmt("%.6g", gd4000.alpha_bar(3999)) << ", diffusers' unscaled linear gives " << fmt("%.6g", df4000.alpha_bar(3999))
           << " (T = 1000: " << fmt("%.6g", linear.alpha_bar(T - 1)) << ").\n\n"
           << "## Timestep spacings (diffusers' rules, T = 1000, N = 10)\n\n"
           << "| spacing | timesteps |\n|---|---|\n"
           << "| leading + steps_offset 1 | " << join(lead) << " |\n"
           << "| trailing | " << join(trail) << " |\n"
           << "| linspace | " << join(lin) << " |\n\n"
           << "## Pictures\n\n![alpha_bar](alpha_bar.png)\n\n![log SNR](log_snr.png)\n\n"
           << "Arrays: `schedules_t.npy`, `schedules_alpha_bar.npy`, `schedules_log_snr.npy`, `schedule_names.txt`\n"
           << "(plotted again by `notebooks/schedules.ipynb`).\n";
    std::printf("\nwrote %s\n", (out / "report.md").string().c_str());
    return 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
}
