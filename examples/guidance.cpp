// The guidance demo (docs/guidance.md §10): the fidelity–diversity trade-off of guidance on a 2-D
// class-labelled Gaussian mixture whose classes overlap, with its exact denoisers.
//
//   example_guidance [output-folder]      (default: demo-output)
//
// For each method and weight it samples n points (one target label per point, cycling through the
// classes) with DPM-Solver++(2M), 20 steps (trailing timesteps of the linear schedule), from the
// same noise, and measures
//   accuracy   the fraction of samples the exact Bayes classifier p(y | x0) assigns to their target label
//              (exact class-conditional samples reach the Bayes accuracy of the mixture, < 1 here);
//   spread     the RMS distance of a sample to the mean of its cluster (the samples of its target class
//              nearest to one component of that class), over the same for exact class samples
//              (1 = the data's diversity; guidance trades it for accuracy).
// Methods: CFG (diffusers formula, weight w: 0 unconditional, 1 conditional), CFG + rescale (φ = 0.7,
// in eps space as diffusers), APG (the paper's c + (w − 1)·update, η = 0, norm threshold 1, momentum −0.5,
// in x0 space as the paper),
// classifier guidance with the exact Bayes classifier on the unconditional model at scale s = w (equal to
// CFG, §5: the two curves coincide), and classifier guidance with a neural noise-conditional classifier
// (nn::encoder_classifier trained here on noisy samples for a few seconds).
// Writes: guidance_tradeoff.csv (method, weight, accuracy, spread), guidance_tradeoff.png,
// guidance_scatter.png (rows: methods, columns: weights), guidance_samples_<method>.npy [W, n, 2],
// guidance_labels.npy [n], guidance_weights.npy [W], guidance_exact.npy [n, 2], guidance.md.
// notebooks/guidance.ipynb plots the same files with matplotlib.

#include <diffuse/analytic/gaussian_mixture.hpp>
#include <diffuse/guidance/guidance.hpp>
#include <diffuse/io/npy.hpp>
#include <diffuse/io/plot.hpp>
#include <diffuse/io/png.hpp>
#include <diffuse/models/exact.hpp>
#include <diffuse/nn/encoder_classifier.hpp>
#include <diffuse/nn/init.hpp>
#include <diffuse/train/noise_classifier.hpp>
#include <diffuse/samplers/samplers.hpp>
#include <diffuse/schedules/schedule.hpp>

#include <Eigen/Dense>

#include <chrono>
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
using pt = process::prediction_type;
using mat = Eigen::MatrixXd;
using host = tensor<double, host_space>;
using models::class_labels;

namespace {

constexpr int n_points = 900;  // 300 per class
constexpr int steps = 20;
constexpr int classifier_steps = 800;   // AdamW steps of 128 noisy points for the neural classifier
const std::vector<double> weights{0.0, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0};

/// Three classes that overlap: class 0 left, class 1 right, class 2 a wide component in the middle-top
/// plus a small one at the bottom.
analytic::gaussian_mixture tradeoff_mixture() {
    auto cov = [](double sx, double sy, double angle) {
        Eigen::Matrix2d r;
        r << std::cos(angle), -std::sin(angle), std::sin(angle), std::cos(angle);
        return mat(r * Eigen::Vector2d(sx * sx, sy * sy).asDiagonal() * r.transpose());
    };
    return analytic::gaussian_mixture(
        {0.3, 0.3, 0.25, 0.15},
        {Eigen::Vector2d(-1.2, 0.0), Eigen::Vector2d(1.2, 0.2), Eigen::Vector2d(0.0, 1.3), Eigen::Vector2d(0.2, -1.6)},
        {cov(0.9, 0.6, 0.5), cov(0.8, 0.6, -0.4), cov(1.0, 0.5, 0.0), cov(0.5, 0.4, 0.0)}, {0, 1, 2, 2});
}

struct stats {
    double accuracy = 0.0, spread = 0.0;
};

/// Accuracy under the exact Bayes classifier, and the spread: the RMS distance of each sample to the mean of
/// its cluster, a cluster being the samples of one target class nearest (most responsible) to one of that
/// class's components — so moving clusters apart is not counted as diversity, shrinking them is.
stats measure(const analytic::gaussian_mixture& mix, const mat& x, const std::vector<int>& labels) {
    const mat lp = mix.class_log_posterior(x, 1.0, 0.0);
    stats s;
    int right = 0;
    for (Eigen::Index i = 0; i < x.rows(); ++i) {
        Eigen::Index k = 0;
        lp.row(i).maxCoeff(&k);
        right += static_cast<int>(k) == labels[static_cast<std::size_t>(i)];
    }
    s.accuracy = double(right) / double(x.rows());
    double ss = 0.0;
    Eigen::Index dof = 0;
    for (int y = 0; y < mix.n_classes(); ++y) {
        const analytic::gaussian_mixture cy = mix.conditional(y);
        std::vector<Eigen::Index> rows;
        for (Eigen::Index i = 0; i < x.rows(); ++i)
            if (labels[static_cast<std::size_t>(i)] == y) rows.push_back(i);
        mat xy(static_cast<Eigen::Index>(rows.size()), 2);
        for (std::size_t j = 0; j < rows.size(); ++j) xy.row(static_cast<Eigen::Index>(j)) = x.row(rows[j]);
        const mat r = cy.responsibilities(xy, 1.0, 0.0);
        for (int k = 0; k < cy.n_components(); ++k) {
            std::vector<Eigen::Index> in;
            for (Eigen::Index i = 0; i < xy.rows(); ++i) {
                Eigen::Index best = 0;
                r.row(i).maxCoeff(&best);
                if (best == k) in.push_back(i);
            }
            if (in.size() < 2) continue;
            Eigen::Vector2d m = Eigen::Vector2d::Zero();
            for (Eigen::Index i : in) m += xy.row(i).transpose();
            m /= double(in.size());
            for (Eigen::Index i : in) ss += (xy.row(i).transpose() - m).squaredNorm();
            dof += static_cast<Eigen::Index>(in.size()) - 1;
        }
    }
    s.spread = std::sqrt(ss / double(std::max<Eigen::Index>(dof, 1)));
    return s;
}

mat rows_of(const host& x) {
    mat m(x.size(0), 2);
    for (std::int64_t i = 0; i < x.size(0); ++i) m(i, 0) = x(i, 0), m(i, 1) = x(i, 1);
    return m;
}

std::string fmt(double v, const char* f = "%.3f") {
    char buf[64];
    std::snprintf(buf, sizeof buf, f, v);
    return buf;
}

}  // namespace

int main(int argc, char** argv) {
    namespace fs = std::filesystem;
    const fs::path out = argc > 1 ? argv[1] : "demo-output";
    fs::create_directories(out);
    const auto t0 = std::chrono::steady_clock::now();

    const analytic::gaussian_mixture mix = tradeoff_mixture();
    const models::exact_mixture_denoiser eps_model(mix, pt::epsilon), x0_model(mix, pt::sample);
    const guidance::exact_bayes_classifier bayes(mix);
    std::vector<int> labels(n_points);
    for (int i = 0; i < n_points; ++i) labels[static_cast<std::size_t>(i)] = i % mix.n_classes();
    const std::vector<int> nulls = guidance::null_labels(n_points, eps_model.null_class_label());
    const guidance::cfg_condition<class_labels> cfg_cond{labels, nulls};

    // Exact class-conditional samples: the reference accuracy (Bayes) and spread.
    mat exact(n_points, 2);
    {
        philox_rng rng(11);
        for (int y = 0; y < mix.n_classes(); ++y) {
            const analytic::mixture_sample s = mix.conditional(y).sample(n_points, rng);
            for (int i = y; i < n_points; i += mix.n_classes()) exact.row(i) = s.x.row(i);
        }
    }
    const stats ref = measure(mix, exact, labels);

    // The same starting noise x_T = σ_max·z for every run.
    host z(shape{n_points, 2});
    {
        philox_rng rng(2024);
        randn(z.view(), rng);
    }
    // DPM-Solver++(2M) on the VP levels of 20 trailing timesteps of the linear schedule: the levels carry
    // their training timesteps, which the neural classifier is conditioned on.
    const schedules::discrete_schedule schedule = schedules::discrete_schedule::named("linear", 1000);
    const std::vector<int> timesteps = schedules::ddim_timesteps(1000, steps, schedules::spacing::trailing);
    const samplers::level_sequence levels =
        samplers::level_sequence::from_timesteps(schedule, timesteps, samplers::final_level::zero);
    auto run = [&](const auto& model, const auto& cond) {
        samplers::dpm_solver_multistep_sampler sampler(levels);
        host x(z.shape());
        lincomb(x.view(), 1.0, z.cview());
        philox_rng rng(0);
        samplers::sample(model, sampler, x, rng, {}, cond);
        return rows_of(x);
    };

    struct method {
        std::string name, key;
        std::function<mat(double)> sample;
    };
    std::vector<method> methods;
    methods.push_back({"CFG", "cfg", [&](double w) { return run(guidance::cfg(models::by_ref(eps_model), {.weight = w}), cfg_cond); }});
    methods.push_back({"CFG + rescale 0.7", "cfg_rescale", [&](double w) {
                           return run(guidance::cfg(models::by_ref(eps_model), {.weight = w, .guidance_rescale = 0.7}),
                                      cfg_cond);
                       }});
    methods.push_back({"APG", "apg", [&](double w) {
                           // the paper's form c + (w − 1)·update: the `original` formula at w − 1
                           return run(guidance::cfg(models::by_ref(x0_model),
                                                    {.weight = w - 1.0,
                                                     .formula = guidance::cfg_formula::original,
                                                     .method = guidance::cfg_method::apg,
                                                     .apg = {.eta = 0.0, .norm_threshold = 1.0, .momentum = -0.5}}),
                                      cfg_cond);
                       }});
    methods.push_back({"classifier (exact Bayes)", "classifier_exact", [&](double w) {
                           return run(guidance::classifier_guidance(models::by_ref(eps_model), bayes, {.scale = w}),
                                      class_labels(labels));
                       }});

    // A neural noise-conditional classifier for the same mixture: points as [2, 1, 1] images, the U-Net
    // encoder (two DownBlock2D levels of 16 and 32 channels) + pooling head, trained on noisy samples.
    nn::unet_config unet = nn::unet_config::defaults(nn::unet_kind::unet2d);
    unet.in_channels = 2;
    unet.block_out_channels = {16, 32};
    unet.layers_per_block = 1;
    unet.down_block_types = {"DownBlock2D", "DownBlock2D"};
    unet.up_block_types = {"UpBlock2D", "UpBlock2D"};  // ignored by the classifier
    unet.mid_block_type.reset();
    unet.attention_head_dim.clear();
    unet.norm_num_groups = 4;
    nn::encoder_classifier<float> classifier(unet, mix.n_classes());
    nn::init_parameters<float>(classifier, 1);
    train::noise_classifier_options topt;
    topt.steps = classifier_steps;
    topt.batch = 128;
    topt.lr = 3e-3;
    topt.seed = 7;
    const auto tc = std::chrono::steady_clock::now();
    const std::vector<double> losses = train::train_noise_classifier(
        classifier,
        [&](std::int64_t n, philox_rng& rng) {
            const analytic::mixture_sample s = mix.sample(n, rng);
            train::labelled_batch<float> b{nn::host_tensor<float>(shape{n, 2, 1, 1}), s.label};
            for (std::int64_t i = 0; i < n; ++i) b.x0.data()[2 * i] = float(s.x(i, 0)), b.x0.data()[2 * i + 1] = float(s.x(i, 1));
            return b;
        },
        schedule, topt);
    const double train_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - tc).count();
    const guidance::neural_classifier<float> neural(classifier, shape{2, 1, 1});
    const models::exact_mixture_denoiser eps_model_f(mix, pt::epsilon);
    auto run_f = [&](const auto& model, const auto& cond) {
        samplers::dpm_solver_multistep_sampler sampler(levels);
        tensor<float, host_space> x(z.shape());
        for (std::int64_t i = 0; i < x.numel(); ++i) x[i] = float(z[i]);
        philox_rng rng(0);
        samplers::sample(model, sampler, x, rng, {}, cond);
        mat m(x.size(0), 2);
        for (std::int64_t i = 0; i < x.size(0); ++i) m(i, 0) = x(i, 0), m(i, 1) = x(i, 1);
        return m;
    };
    methods.push_back({"classifier (neural)", "classifier_neural", [&](double w) {
                           return run_f(guidance::classifier_guidance(models::by_ref(eps_model_f), neural, {.scale = w}),
                                        class_labels(labels));
                       }});

    const std::size_t W = weights.size(), M = methods.size();
    std::vector<std::vector<stats>> table(M, std::vector<stats>(W));
    std::vector<std::vector<mat>> samples(M, std::vector<mat>(W));
    for (std::size_t m = 0; m < M; ++m) {
        host all(shape{static_cast<std::int64_t>(W), n_points, 2});
        for (std::size_t k = 0; k < W; ++k) {
            samples[m][k] = methods[m].sample(weights[k]);
            table[m][k] = measure(mix, samples[m][k], labels);
            for (int i = 0; i < n_points; ++i)
                for (int j = 0; j < 2; ++j) all(static_cast<std::int64_t>(k), i, j) = samples[m][k](i, j);
        }
        io::save_npy((out / ("guidance_samples_" + methods[m].key + ".npy")).string(), all);
    }
    io::save_npy((out / "guidance_weights.npy").string(), weights);
    io::save_npy((out / "guidance_labels.npy").string(), std::vector<std::int64_t>(labels.begin(), labels.end()));
    {
        host ex(shape{n_points, 2});
        for (int i = 0; i < n_points; ++i) ex(i, 0) = exact(i, 0), ex(i, 1) = exact(i, 1);
        io::save_npy((out / "guidance_exact.npy").string(), ex);
    }
    {
        std::ofstream csv(out / "guidance_tradeoff.csv");
        csv << "method,weight,accuracy,spread\n";
        for (std::size_t m = 0; m < M; ++m)
            for (std::size_t k = 0; k < W; ++k)
                csv << methods[m].key << ',' << weights[k] << ',' << fmt(table[m][k].accuracy, "%.6f") << ','
                    << fmt(table[m][k].spread / ref.spread, "%.6f") << '\n';
    }

    // Trade-off: accuracy against relative spread, one line per method (weights increase to the left).
    {
        std::vector<io::series> ser;
        for (std::size_t m = 0; m < M; ++m) {
            io::series s;
            s.label = methods[m].name;
            for (std::size_t k = 0; k < W; ++k) s.x.push_back(table[m][k].spread / ref.spread), s.y.push_back(table[m][k].accuracy);
            s.markers = true;
            s.thickness = m == 3 ? 1 : 2;  // the exact classifier's curve lies on CFG's
            ser.push_back(std::move(s));
        }
        io::series e;
        e.label = "exact class samples";
        e.x = {1.0};
        e.y = {ref.accuracy};
        e.lines = false;
        e.markers = true;
        e.marker_size = 9;
        e.color = io::colors::black;
        ser.push_back(std::move(e));
        io::plot_options o;
        o.width = 900;
        o.height = 600;
        o.title = "fidelity vs diversity (weights 0, 1, 1.5, 2, 3, 5, 8)";
        o.x_min = 0.4, o.x_max = 2.0;  // rescale's 2-D values run off to the right (see the table)
        o.x_label = "spread / spread of the data";
        o.y_label = "Bayes accuracy";
        io::save_line_plot((out / "guidance_tradeoff.png").string(), ser, o);
    }
    // Scatter grid: one row per method, one column per weight, coloured by target label.
    {
        const int pw = 160, ph = 160, label_w = 190, head_h = 24;
        io::canvas big(label_w + static_cast<int>(W) * pw, head_h + static_cast<int>(M) * ph);
        for (std::size_t k = 0; k < W; ++k)
            big.text(label_w + static_cast<int>(k) * pw + pw / 2 - 20, 6, "w " + fmt(weights[k], "%g"), io::colors::black, 2);
        for (std::size_t m = 0; m < M; ++m) {
            const int y0 = head_h + static_cast<int>(m) * ph;
            big.text(6, y0 + ph / 2, methods[m].name, io::colors::black);
            for (std::size_t k = 0; k < W; ++k) {
                std::vector<io::series> ser;
                for (int y = 0; y < mix.n_classes(); ++y) {
                    io::series s;
                    for (int i = y; i < n_points; i += mix.n_classes())
                        s.x.push_back(samples[m][k](i, 0)), s.y.push_back(samples[m][k](i, 1));
                    s.lines = false;
                    s.markers = true;
                    s.marker_size = 1;
                    s.color = io::cycle_color(static_cast<std::size_t>(y));
                    ser.push_back(std::move(s));
                }
                io::plot_options o;
                o.width = pw;
                o.height = ph;
                o.x_min = -4.5, o.x_max = 4.5, o.y_min = -4.5, o.y_max = 4.5;
                o.grid = false;
                o.legend = false;
                big.draw_image(io::line_plot(ser, o), label_w + static_cast<int>(k) * pw, y0);
            }
        }
        io::save_png((out / "guidance_scatter.png").string(), big.image());
    }

    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::ostringstream md;
    md << "# Guidance: fidelity against diversity on a 2-D mixture\n\n"
       << n_points << " points (" << n_points / mix.n_classes() << " per target class), exact denoisers, DPM-Solver++(2M) "
       << steps << " steps (trailing timesteps of the linear schedule, T = 1000), the same noise for every run ("
       << fmt(seconds, "%.1f") << " s in all, of which " << fmt(train_seconds, "%.1f") << " s train the neural classifier: "
       << classifier_steps << " AdamW steps of 128 noisy points, cross-entropy " << fmt(losses.front(), "%.3f") << " → "
       << fmt(losses.back(), "%.3f") << " nats).\n\n"
       << "Accuracy: fraction of samples the exact Bayes classifier assigns to their target label. Spread: RMS distance of a "
       << "sample to the mean of its cluster (its target class's samples nearest one component of the class), relative "
       << "to exact class samples. Exact class samples: accuracy "
       << fmt(ref.accuracy, "%.4f") << " (the Bayes accuracy of the classes), spread 1.\n\n"
       << "Weight w: CFG's diffusers weight (0 unconditional, 1 conditional); classifier guidance's scale s = w on the "
       << "unconditional model (s = 0 is the unconditional model, s = 1 the exact conditional one).\n\n"
       << "![trade-off](guidance_tradeoff.png)\n\n![samples](guidance_scatter.png)\n\n";
    md << "| method |";
    for (double w : weights) md << " w = " << fmt(w, "%g") << " |";
    md << "\n|---|";
    for (std::size_t k = 0; k < W; ++k) md << "---|";
    md << "\n";
    for (std::size_t m = 0; m < M; ++m) {
        md << "| " << methods[m].name << " |";
        for (std::size_t k = 0; k < W; ++k)
            md << ' ' << fmt(table[m][k].accuracy, "%.3f") << " / " << fmt(table[m][k].spread / ref.spread, "%.2f") << " |";
        md << "\n";
    }
    md << "\nEach cell: accuracy / relative spread. The exact-Bayes classifier guidance row equals CFG's (they are the same "
          "score, docs/guidance.md §5). Guidance rescale acts on the per-sample std over a sample's elements: in 2-D "
          "that is |x₁ − x₂|/√2 of the eps prediction, so it is shown for completeness — it was designed for images.\n";
    std::ofstream(out / "guidance.md") << md.str();
    std::cout << md.str();
    return 0;
}
