#pragma once
// Weights and configs in diffusers' formats (docs/unet.md §5):
//
//   load_parameters(model, file)      every parameter from a safetensors file with diffusers' names;
//                                     a missing tensor, a wrong shape (both shapes named), an integer
//                                     dtype or — strict — a tensor the model does not have is an error
//   save_parameters(model, dtype)     a safetensors_file with every parameter (F32 by default, as diffusers)
//   load_unet<T>(dir)                 dir/config.json + dir/diffusion_pytorch_model.safetensors
//   save_unet(model, dir)             writes both (diffusers' save_pretrained layout)
//
// Round trip: save then load gives bitwise-equal parameters when the file dtype holds T exactly
// (F32 for float, F64 for double); loading F32 weights into a double model converts exactly.

#include <diffuse/core/error.hpp>
#include <diffuse/io/json.hpp>
#include <diffuse/io/safetensors.hpp>
#include <diffuse/nn/layer.hpp>
#include <diffuse/nn/unet2d.hpp>
#include <diffuse/nn/unet_config.hpp>

#include <filesystem>
#include <optional>
#include <set>
#include <string>

namespace diffuse::nn {

/// Fills every parameter of m from f. strict: tensors in f that m does not have are an error too.
template <class T, class M>
    requires has_parameters<M, T>
void load_parameters(M& m, const io::safetensors_file& f, bool strict = true) {
    auto params = parameters_of<T>(m);
    std::set<std::string> used;
    for (auto& p : params) {
        if (!f.contains(p.name))
            fail("weights '" + f.source() + "' have no tensor '" + p.name + "' (shape " + p.param->shape().str() +
                 ") that the model needs; " + std::to_string(f.size()) + " tensors in the file, " +
                 std::to_string(params.size()) + " parameters in the model");
        const io::safetensors_tensor& t = f.at(p.name);
        if (!io::safetensors_is_float(t.dtype))
            fail("weights '" + f.source() + "': tensor '" + p.name + "' has dtype " +
                 io::safetensors_dtype_name(t.dtype) + "; expected a floating-point dtype (F32, F16, BF16 or F64)");
        f.get_into<T>(p.name, p.param->value.view());
        used.insert(p.name);
    }
    if (strict && used.size() != f.size()) {
        std::string extra;
        std::size_t n = 0;
        for (const auto& name : f.names())
            if (!used.count(name)) {
                if (n < 8) extra += (n ? ", " : "") + name;
                ++n;
            }
        fail("weights '" + f.source() + "' have " + std::to_string(n) +
             " tensors the model does not use: " + extra + (n > 8 ? ", ..." : "") +
             " (a different config? load with strict = false to ignore them)");
    }
}

/// Every parameter of m, named as diffusers names it, stored as dtype.
template <class T, class M>
    requires has_parameters<M, T>
io::safetensors_file save_parameters(M& m, io::safetensors_dtype dtype = io::safetensors_dtype::f32) {
    io::safetensors_file f("diffusion_pytorch_model.safetensors");
    f.set_metadata("format", "pt");
    for (auto& p : parameters_of<T>(m)) f.add(p.name, p.param->value.cview(), dtype);
    return f;
}

/// A U-Net from a diffusers model folder (config.json and diffusion_pytorch_model.safetensors).
template <class T>
unet2d<T> load_unet(const std::string& dir, bool strict = true) {
    const std::filesystem::path d(dir);
    const io::json_value j = io::read_json_file((d / "config.json").string());
    unet2d<T> model(unet_config::from_json(j, (d / "config.json").string()));
    load_parameters<T>(model, io::safetensors_file::read((d / "diffusion_pytorch_model.safetensors").string()),
                       strict);
    return model;
}

/// Writes config.json and diffusion_pytorch_model.safetensors into dir (created if needed).
template <class T>
void save_unet(unet2d<T>& model, const std::string& dir,
               std::optional<io::safetensors_dtype> dtype = std::nullopt) {
    const std::filesystem::path d(dir);
    std::error_code ec;
    std::filesystem::create_directories(d, ec);
    if (ec) fail("save_unet: cannot create directory '" + dir + "': " + ec.message());
    io::write_json_file((d / "config.json").string(), model.config().to_json());
    save_parameters<T>(model, dtype ? *dtype : io::safetensors_dtype_of<T>())
        .write((d / "diffusion_pytorch_model.safetensors").string());
}

}  // namespace diffuse::nn
