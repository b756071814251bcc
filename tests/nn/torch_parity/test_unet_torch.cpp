// The U-Net against PyTorch: tests/python/unet_mirror.py (a torch.nn mirror of diffusers'
// UNet2DModel / UNet2DConditionModel, checked there against diffusers' own modules) writes random
// weights, inputs, outputs and float64 autograd gradients for several configs; this test loads them
// through our config.json / safetensors readers and compares:
//   float forward   vs torch float32:  max|y − y_ref| ≤ 2e-5 · max(1, max|y_ref|)   (float32 rounding through
//                                      ~40 layers; measured ≤ 2.5e-6, see docs/unet.md §7)
//   double forward  vs torch float64:  ≤ 1e-12 · max(1, max|y_ref|)   (same float32 time embedding as
//                                      diffusers on both sides, everything else in double; measured ≤ 5e-15)
//   double backward vs torch.autograd: every gradient tensor ≤ 1e-12 · max(1, max|g_ref|)  (measured ≤ 2e-14)
// The cases live in the folder named by the environment variable DIFFUSE_UNET_CASES (CTest generates it
// with the mirror first, as a fixture).

#include <diffuse/io/safetensors.hpp>
#include <diffuse/nn/unet2d.hpp>
#include <diffuse/nn/unet_io.hpp>

#include "support/tmp.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

using namespace diffuse;
using namespace diffuse::nn;

namespace {

std::string cases_dir() {
    const char* d = std::getenv("DIFFUSE_UNET_CASES");
    if (!d || !*d)
        FAIL("DIFFUSE_UNET_CASES is not set: run through CTest, or generate the cases with "
             "/usr/bin/python3 tests/python/unet_mirror.py --out DIR and set DIFFUSE_UNET_CASES=DIR");
    return d;
}

template <class T>
struct loaded_inputs {
    host_tensor<T> sample;
    std::vector<double> timesteps;
    std::vector<std::int64_t> labels;
    host_tensor<T> class_embedding, context;
    bool has_class_embedding = false, has_context = false;

    unet_inputs<T> view() const {
        unet_inputs<T> in;
        in.timesteps = timesteps;
        in.class_labels = labels;
        if (has_class_embedding) in.class_embedding = class_embedding.cview();
        if (has_context) in.encoder_hidden_states = context.cview();
        return in;
    }
};

template <class T>
loaded_inputs<T> load_inputs(const io::safetensors_file& f, const unet2d<T>& model) {
    loaded_inputs<T> in;
    in.sample = f.get<T>("sample");
    auto t = f.get<double>("timestep");
    in.timesteps.assign(t.data(), t.data() + t.numel());
    if (f.contains("class_labels")) {
        if (model.is_identity_class()) {
            in.class_embedding = f.get<T>("class_labels");
            in.has_class_embedding = true;
        } else {
            auto l = f.get<std::int64_t>("class_labels");
            in.labels.assign(l.data(), l.data() + l.numel());
        }
    }
    if (f.contains("encoder_hidden_states")) {
        in.context = f.get<T>("encoder_hidden_states");
        in.has_context = true;
    }
    return in;
}

template <class T>
double max_abs(const host_tensor<T>& t) {
    double m = 0;
    for (std::int64_t i = 0; i < t.numel(); ++i) m = std::max(m, std::abs(static_cast<double>(t.data()[i])));
    return m;
}

template <class A, class B>
double max_diff(const host_tensor<A>& a, const host_tensor<B>& b) {
    REQUIRE(a.shape() == b.shape());
    double m = 0;
    for (std::int64_t i = 0; i < a.numel(); ++i)
        m = std::max(m, std::abs(static_cast<double>(a.data()[i]) - static_cast<double>(b.data()[i])));
    return m;
}

std::vector<std::string> case_names() {
    std::vector<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(cases_dir()))
        if (e.is_directory() && std::filesystem::exists(e.path() / "config.json"))
            names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
}

}  // namespace

TEST_CASE("unet2d vs PyTorch: float forward matches the float32 mirror") {
    const auto names = case_names();
    REQUIRE(names.size() >= 8);
    for (const auto& name : names) {
        CAPTURE(name);
        const std::string dir = cases_dir() + "/" + name;
        unet2d<float> model = load_unet<float>(dir);
        const auto inputs = io::safetensors_file::read(dir + "/inputs.safetensors");
        const auto outputs = io::safetensors_file::read(dir + "/outputs.safetensors");
        auto in = load_inputs<float>(inputs, model);
        host_tensor<float> y = model.forward(in.sample.cview(), in.view());
        host_tensor<float> ref = outputs.get<float>("output");
        const double err = max_diff(y, ref), scale = std::max(1.0, max_abs(ref));
        MESSAGE(name << ": float max |y − torch| = " << err << " (max |y| " << max_abs(ref) << ")");
        CHECK(err <= 2e-5 * scale);
    }
}

TEST_CASE("unet2d vs PyTorch: double forward and backward match the float64 mirror and autograd") {
    for (const auto& name : case_names()) {
        CAPTURE(name);
        const std::string dir = cases_dir() + "/" + name;
        unet2d<double> model = load_unet<double>(dir);
        const auto inputs = io::safetensors_file::read(dir + "/inputs.safetensors");
        const auto outputs = io::safetensors_file::read(dir + "/outputs.safetensors");
        auto in = load_inputs<double>(inputs, model);
        unet2d<double>::cache cache;
        host_tensor<double> y = model.forward(in.sample.cview(), in.view(), &cache);
        host_tensor<double> ref = outputs.get<double>("output_f64");
        const double err = max_diff(y, ref);
        MESSAGE(name << ": double max |y − torch| = " << err);
        CHECK(err <= 1e-12 * std::max(1.0, max_abs(ref)));

        zero_grad<double>(model);
        host_tensor<double> w = inputs.get<double>("cotangent");
        auto g = model.backward(w.cview(), cache);
        double worst = 0;
        std::string worst_name;
        auto compare = [&](const std::string& what, const host_tensor<double>& got, const host_tensor<double>& want) {
            const double e = max_diff(got, want) / std::max(1.0, max_abs(want));
            if (e > worst) {
                worst = e;
                worst_name = what;
            }
            INFO(what);
            CHECK(e <= 1e-12);
        };
        compare("grad/sample", g.dx, outputs.get<double>("grad/sample"));
        if (outputs.contains("grad/encoder_hidden_states"))
            compare("grad/encoder_hidden_states", g.dencoder_hidden_states,
                    outputs.get<double>("grad/encoder_hidden_states"));
        std::size_t n = 0;
        for (auto& p : model.parameters()) {
            compare("grad/" + p.name, p.param->grad, outputs.get<double>("grad/" + p.name));
            ++n;
        }
        MESSAGE(name << ": " << n << " parameter gradients, worst relative error " << worst << " (" << worst_name
                     << ")");
    }
}

TEST_CASE("unet2d: save then load round-trips configs and weights bitwise") {
    const auto names = case_names();
    const std::string name = names.front();
    const std::string dir = cases_dir() + "/" + name;
    unet2d<float> model = load_unet<float>(dir);
    const std::string out = diffuse::test::temp().file("roundtrip_" + name);
    save_unet(model, out);
    unet2d<float> again = load_unet<float>(out);
    CHECK(again.config() == model.config());
    auto a = model.parameters(), b = again.parameters();
    REQUIRE(a.size() == b.size());
    std::size_t differ = 0;
    for (std::size_t i = 0; i < a.size(); ++i)
        for (std::int64_t k = 0; k < a[i].param->numel(); ++k) differ += a[i].param->value[k] != b[i].param->value[k];
    CHECK(differ == 0);
    // the weights file we write is byte-identical to the mirror's (same names, order, dtype, header)
    const auto ours = io::safetensors_file::read(out + "/diffusion_pytorch_model.safetensors").serialize();
    const auto theirs = io::safetensors_file::read(dir + "/diffusion_pytorch_model.safetensors").serialize();
    CHECK(ours == theirs);
    std::filesystem::remove_all(out);
}
