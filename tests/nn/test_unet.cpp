// The U-Net on its own: backward vs central finite differences on tiny configs (every input entry,
// spot-checked parameters), configs (diffusers keys, defaults, round trip, errors), weights (missing
// tensor, wrong shape, extra tensors), input errors, the summary, the Denoiser adapter, thread-count
// independence. Parity with PyTorch is in torch_parity/test_unet_torch.cpp.

#include <diffuse/backend/host_threads.hpp>
#include <diffuse/io/json.hpp>
#include <diffuse/io/safetensors.hpp>
#include <diffuse/models/unet_denoiser.hpp>
#include <diffuse/nn/init.hpp>
#include <diffuse/nn/unet2d.hpp>
#include <diffuse/nn/unet_config.hpp>
#include <diffuse/nn/unet_io.hpp>

#include "nn/layer_fixtures.hpp"
#include "support/tiny_unets.hpp"
#include "support/tmp.hpp"

#include <doctest/doctest.h>

#include <filesystem>
#include <vector>

using namespace diffuse;
using namespace diffuse::nn;
using HT = host_tensor<double>;

namespace {

}  // namespace

TEST_CASE("unet2d: backward matches finite differences on a tiny class-conditional UNet2DModel") {
    unet2d<double> net(test::tiny_unet2d());
    test::randomize_parameters(net, 3);
    HT x = nn_test::randn<double>({2, 3, 4, 4}, 4);
    unet_inputs<double> in;
    in.timesteps = {17.0, 503.5};
    in.class_labels = {2, 0};
    diffuse::testing::gradient_check_options opt;
    opt.max_entries = 3;  // spot-check 3 entries of every parameter tensor (all entries of the input)
    opt.seed = 5;
    // 1e-6 relative is ~1e4 ulp of the O(1) sums here; the finite difference itself is good to ~1e-9
    nn_test::check_layer_gradients(
        "unet2d", net, x, [&](const HT& v) { return net.forward(v.cview(), in); },
        [&](const HT& v, const HT& w) {
            unet2d<double>::cache c;
            net.forward(v.cview(), in, &c);
            return net.backward(w.cview(), c).dx;
        },
        opt, /*check_input=*/false);
    // all input entries
    HT w = nn_test::randn<double>({2, 2, 4, 4}, 6);
    unet2d<double>::cache c;
    net.forward(x.cview(), in, &c);
    HT dx = net.backward(w.cview(), c).dx;
    auto r = diffuse::testing::gradient_check("unet2d dx", nn_test::span_of(x), nn_test::cspan_of(dx),
                                              [&] { return nn_test::dot(w, net.forward(x.cview(), in)); });
    INFO(r.report());
    CHECK(r.passed);
}

TEST_CASE("unet2d: backward matches finite differences on a tiny cross-attention U-Net (odd size)") {
    unet2d<double> net(test::tiny_cond());
    test::randomize_parameters(net, 7);
    HT x = nn_test::randn<double>({1, 2, 5, 3}, 8);  // 5x3: the up path resizes to the skip sizes
    HT ctx = nn_test::randn<double>({1, 4, 3}, 9);
    unet_inputs<double> in;
    in.timesteps = {250.0};
    in.encoder_hidden_states = ctx.cview();
    diffuse::testing::gradient_check_options opt;
    opt.max_entries = 3;
    nn_test::check_layer_gradients(
        "unet2d (cross-attention)", net, x, [&](const HT& v) { return net.forward(v.cview(), in); },
        [&](const HT& v, const HT& w) {
            unet2d<double>::cache c;
            net.forward(v.cview(), in, &c);
            return net.backward(w.cview(), c).dx;
        },
        opt);
    // the context gradient
    HT w = nn_test::randn<double>({1, 2, 5, 3}, 10);
    unet2d<double>::cache c;
    net.forward(x.cview(), in, &c);
    HT dctx = net.backward(w.cview(), c).dencoder_hidden_states;
    auto r = diffuse::testing::gradient_check("encoder_hidden_states", nn_test::span_of(ctx),
                                              nn_test::cspan_of(dctx),
                                              [&] { return nn_test::dot(w, net.forward(x.cview(), in)); });
    INFO(r.report());
    CHECK(r.passed);
}

TEST_CASE("unet2d: parameter names and counts follow diffusers") {
    unet2d<float> net(test::tiny_unet2d());
    auto ps = net.parameters();
    std::vector<std::string> names;
    for (auto& p : ps) names.push_back(p.name);
    auto has = [&](const char* n) { return std::find(names.begin(), names.end(), n) != names.end(); };
    CHECK(has("conv_in.weight"));
    CHECK(has("time_embedding.linear_1.weight"));
    CHECK(has("class_embedding.weight"));
    CHECK(has("down_blocks.0.resnets.0.time_emb_proj.weight"));
    CHECK(has("down_blocks.0.downsamplers.0.conv.weight"));
    CHECK(has("down_blocks.1.attentions.0.group_norm.weight"));
    CHECK(has("down_blocks.1.attentions.0.to_out.0.bias"));
    CHECK(has("mid_block.resnets.1.conv2.bias"));
    CHECK(has("up_blocks.0.resnets.1.conv_shortcut.weight"));
    CHECK(has("up_blocks.0.upsamplers.0.conv.weight"));
    CHECK(has("conv_norm_out.weight"));
    // scale_shift: time_emb_proj maps to 2·C; with scale_shift and no attn_norm_num_groups the mid attention has no norm
    CHECK(!has("mid_block.attentions.0.group_norm.weight"));
    for (auto& p : ps)
        if (p.name == "down_blocks.0.resnets.0.time_emb_proj.weight") CHECK(p.param->shape() == shape{8, 16});
    const std::string s = net.summary(2, 8, 8);
    CHECK(s.find("down_blocks.1 (AttnDownBlock2D)") != std::string::npos);
    CHECK(s.find("Total params: " + std::to_string(net.parameter_count())) != std::string::npos);
    MESSAGE(s);
}

TEST_CASE("unet_config: diffusers JSON round trip and defaults") {
    const char* text = R"({
  "_class_name": "UNet2DModel", "_diffusers_version": "0.30.0",
  "sample_size": 32, "in_channels": 3, "out_channels": 3,
  "block_out_channels": [64, 128, 128], "layers_per_block": 2,
  "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"],
  "up_block_types": ["AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
  "num_class_embeds": 11, "norm_eps": 1e-05, "attention_head_dim": null
})";
    unet_config c = unet_config::from_json(io::parse_json(text), "config.json");
    CHECK(c.kind == unet_kind::unet2d);
    CHECK(c.block_out_channels == std::vector<std::int64_t>{64, 128, 128});
    CHECK(c.attention_head_dim.empty());
    CHECK(c.norm_num_groups == 32);  // a default
    CHECK(c.null_class_label() == 10);
    CHECK(c.time_embed_dim() == 256);
    unet_config again = unet_config::from_json(io::parse_json(io::to_json(c.to_json())));
    CHECK(again == c);
    unet_config cc = test::tiny_cond();
    CHECK(unet_config::from_json(cc.to_json()) == cc);
}

TEST_CASE("unet_config: unsupported keys, block types and inconsistent values are named") {
    auto parse = [](const std::string& s) { return unet_config::from_json(io::parse_json(s), "config.json"); };
    const std::string base = R"("_class_name": "UNet2DModel", "block_out_channels": [32, 64], "norm_num_groups": 8,
        "down_block_types": ["DownBlock2D", "AttnDownBlock2D"], "up_block_types": ["AttnUpBlock2D", "UpBlock2D"])";
    CHECK_NOTHROW(parse("{" + base + "}"));
    CHECK_THROWS_WITH_AS(parse("{" + base + R"(, "frobnicate": 1, "foo": 2})"),
                         doctest::Contains("unsupported UNet2DModel config keys: frobnicate, foo"), diffuse::error);
    CHECK_THROWS_WITH_AS(
        parse(R"({"_class_name": "UNet2DModel", "block_out_channels": [32, 64], "norm_num_groups": 8,
        "down_block_types": ["DownBlock2D", "SkipDownBlock2D"], "up_block_types": ["AttnUpBlock2D", "UpBlock2D"]})"),
        doctest::Contains("\"SkipDownBlock2D\" is not supported"), diffuse::error);
    std::string five = base;
    five.replace(five.find("\"norm_num_groups\": 8"), 20, "\"norm_num_groups\": 5");
    CHECK_THROWS_WITH_AS(parse("{" + five + "}"),
                         doctest::Contains("norm_num_groups = 5 does not divide the block channels 32"),
                         diffuse::error);
    CHECK_THROWS_WITH_AS(parse("{" + base + R"(, "time_embedding_type": "fourier"})"),
                         doctest::Contains("time_embedding_type = \"fourier\""), diffuse::error);
    CHECK_THROWS_WITH_AS(parse("{" + base + R"(, "act_fn": "mish"})"), doctest::Contains("act_fn = \"mish\""),
                         diffuse::error);
    CHECK_THROWS_WITH_AS(parse(R"({"_class_name": "VQModel"})"), doctest::Contains("_class_name = \"VQModel\""),
                         diffuse::error);
    CHECK_THROWS_WITH_AS(
        parse(R"({"_class_name": "UNet2DConditionModel", "addition_embed_type": "text_time"})"),
        doctest::Contains("addition_embed_type = \"text_time\" is not supported"), diffuse::error);
    CHECK_THROWS_WITH_AS(
        parse(R"({"_class_name": "UNet2DConditionModel", "block_out_channels": [32, 64], "norm_num_groups": 8,
        "attention_head_dim": 3, "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"]})"),
        doctest::Contains("attention_head_dim (heads) = 3 at block 0 does not divide its channels 32"), diffuse::error);
    CHECK_THROWS_WITH_AS(parse("{" + base + R"(, "layers_per_block": [1, 2]})"),
                         doctest::Contains("layers_per_block = [1, 2] (a list) is not supported"), diffuse::error);
}

TEST_CASE("unet2d weights: missing tensor, wrong shape and extra tensors are errors naming them") {
    unet2d<float> net(test::tiny_unet2d());
    init_parameters<float>(net, 1);
    io::safetensors_file f = save_parameters<float>(net);
    unet2d<float> other(test::tiny_unet2d());
    CHECK_NOTHROW(load_parameters<float>(other, f));
    // wrong shape: a model with 4 input channels reading a 3-channel conv_in
    unet_config c4 = test::tiny_unet2d();
    c4.in_channels = 4;
    unet2d<float> four(c4);
    CHECK_THROWS_WITH_AS(load_parameters<float>(four, f),
                         doctest::Contains("'conv_in.weight' in 'diffusion_pytorch_model.safetensors' has shape "
                                           "[4, 3, 3, 3] but the model expects [4, 4, 3, 3]"),
                         diffuse::error);
    // missing tensor: drop one
    io::safetensors_file partial("partial.safetensors");
    for (const auto& t : f.tensors())
        if (t.name != "mid_block.resnets.0.norm1.bias") partial.add_raw(t.name, t.dtype, t.shape, t.data);
    CHECK_THROWS_WITH_AS(load_parameters<float>(other, partial),
                         doctest::Contains("have no tensor 'mid_block.resnets.0.norm1.bias' (shape [8])"),
                         diffuse::error);
    // wrong dtype: an integer tensor where a weight should be
    io::safetensors_file ints("ints.safetensors");
    for (const auto& t : f.tensors()) {
        if (t.name == "conv_out.bias") {
            host_tensor<std::int32_t> z({2}, 0);
            ints.add(t.name, z.cview());
        } else {
            ints.add_raw(t.name, t.dtype, t.shape, t.data);
        }
    }
    CHECK_THROWS_WITH_AS(load_parameters<float>(other, ints),
                         doctest::Contains("tensor 'conv_out.bias' has dtype I32; expected a floating-point dtype"),
                         diffuse::error);
    // extra tensors: strict refuses, non-strict ignores
    io::safetensors_file extra = io::safetensors_file::parse(f.serialize(), "extra.safetensors");
    extra.add("unused.weight", host_tensor<float>({2}, 1.f));
    CHECK_THROWS_WITH_AS(load_parameters<float>(other, extra),
                         doctest::Contains("1 tensors the model does not use: unused.weight"), diffuse::error);
    CHECK_NOTHROW(load_parameters<float>(other, extra, false));
    // save/load a folder: F32 round trip bitwise, a double model loads the F32 file exactly
    const std::string dir = diffuse::test::temp().file("unet_io");
    save_unet(net, dir);
    unet2d<float> back = load_unet<float>(dir);
    unet2d<double> back64 = load_unet<double>(dir);
    auto a = net.parameters(), b = back.parameters();
    auto b64 = back64.parameters();
    std::size_t differ = 0;
    for (std::size_t i = 0; i < a.size(); ++i)
        for (std::int64_t k = 0; k < a[i].param->numel(); ++k) {
            differ += a[i].param->value[k] != b[i].param->value[k];
            differ += static_cast<double>(a[i].param->value[k]) != b64[i].param->value[k];
        }
    CHECK(differ == 0);
    std::filesystem::remove_all(dir);
    CHECK_THROWS_WITH_AS(load_unet<float>(dir), doctest::Contains("config.json"), diffuse::error);
}

TEST_CASE("unet2d: wrong inputs are errors naming the shapes") {
    unet2d<float> net(test::tiny_unet2d());
    host_tensor<float> x({2, 3, 4, 4}, 0.f);
    unet_inputs<float> in;
    in.timesteps = {1.0, 2.0};
    in.class_labels = {0, 1};
    CHECK_NOTHROW(net.forward(x.cview(), in));
    host_tensor<float> wrong({2, 4, 4, 4}, 0.f);
    CHECK_THROWS_WITH_AS(net.forward(wrong.cview(), in),
                         doctest::Contains("sample has shape [2, 4, 4, 4]; expected [B, 3, H, W] (in_channels = 3)"),
                         diffuse::error);
    host_tensor<float> odd({2, 3, 5, 4}, 0.f);
    CHECK_THROWS_WITH_AS(net.forward(odd.cview(), in), doctest::Contains("5x4 is not divisible by 2^(levels − 1) = 2"),
                         diffuse::error);
    unet_inputs<float> no_labels = in;
    no_labels.class_labels.clear();
    CHECK_THROWS_WITH_AS(net.forward(x.cview(), no_labels), doctest::Contains("needs 2 class labels; got 0"),
                         diffuse::error);
    unet_inputs<float> bad_label = in;
    bad_label.class_labels = {0, 3};
    CHECK_THROWS_WITH_AS(net.forward(x.cview(), bad_label), doctest::Contains("index 3 (batch item 1) is out of range"),
                         diffuse::error);
    unet_inputs<float> bad_t = in;
    bad_t.timesteps = {1.0, 2.0, 3.0};
    CHECK_THROWS_WITH_AS(net.forward(x.cview(), bad_t), doctest::Contains("3 timesteps for a batch of 2"),
                         diffuse::error);
    unet2d<float> cond(test::tiny_cond());
    host_tensor<float> xc({1, 2, 4, 4}, 0.f);
    unet_inputs<float> cin;
    cin.timesteps = {3.0};
    CHECK_THROWS_WITH_AS(cond.forward(xc.cview(), cin), doctest::Contains("encoder_hidden_states [B, M, 3] is required"),
                         diffuse::error);
    host_tensor<float> ctx({1, 5, 4}, 0.f);
    cin.encoder_hidden_states = ctx.cview();
    CHECK_THROWS_WITH_AS(cond.forward(xc.cview(), cin),
                         doctest::Contains("encoder_hidden_states has shape [1, 5, 4]; expected [1, M, 3]"),
                         diffuse::error);
    unet2d<float>::cache empty;
    CHECK_THROWS_WITH_AS(net.backward(x.cview(), empty), doctest::Contains("empty cache"), diffuse::error);
}

TEST_CASE("unet_denoiser: the U-Net as a Denoiser, with labels, context and concatenated channels") {
    unet2d<double> net(test::tiny_unet2d());
    test::randomize_parameters(net, 11);
    models::unet_denoiser<double> model(net, process::prediction_type::epsilon);
    static_assert(models::denoiser<models::unet_denoiser<double>, double, host_space, models::class_labels>);
    HT x = nn_test::randn<double>({2, 3, 4, 4}, 12), out({2, 3, 4, 4});
    const std::vector<int> labels{1, 2};
    CHECK_THROWS_WITH_AS(model(out.view(), x.cview(), models::noise_condition::vp(0.5), models::class_labels(labels)),
                         doctest::Contains("carries no training timestep"), diffuse::error);
    // out has x_t's shape: with out_channels 2 ≠ 3 the adapter refuses
    CHECK_THROWS_WITH_AS(
        model(out.view(), x.cview(), models::noise_condition::vp(0.5, 100.0), models::class_labels(labels)),
        doctest::Contains("shape mismatch"), diffuse::error);
    // concatenation conditioning: x_t has 2 channels, one more is appended: in_channels 3, out 2
    HT x2 = nn_test::randn<double>({2, 2, 4, 4}, 13), extra = nn_test::randn<double>({2, 1, 4, 4}, 14);
    HT out2({2, 2, 4, 4});
    models::unet_condition<double> cond;
    cond.labels = labels;
    cond.concat = extra.cview();
    model(out2.view(), x2.cview(), models::noise_condition::vp(0.5, 100.0), cond);
    unet_inputs<double> in;
    in.timesteps = {100.0};
    in.class_labels = {1, 2};
    HT xin = concat_channels(x2.cview(), extra.cview());
    HT ref = net.forward(xin.cview(), in);
    for (std::int64_t i = 0; i < ref.numel(); ++i) CHECK(out2[i] == ref[i]);
}

TEST_CASE("unet2d: OpenMP threads give the serial result bitwise (forward and backward)") {
    unet2d<float> net(test::tiny_unet2d());
    init_parameters<float>(net, 21);
    host_tensor<float> x = nn_test::randn<float>({3, 3, 8, 8}, 22), w = nn_test::randn<float>({3, 2, 8, 8}, 23);
    unet_inputs<float> in;
    in.timesteps = {5.0, 500.0, 999.0};
    in.class_labels = {0, 1, 2};
    auto run = [&](int threads) {
        scoped_host_threads t(threads);
        zero_grad<float>(net);
        unet2d<float>::cache c;
        host_tensor<float> y = net.forward(x.cview(), in, &c);
        host_tensor<float> dx = net.backward(w.cview(), c).dx;
        std::vector<float> all(y.data(), y.data() + y.numel());
        all.insert(all.end(), dx.data(), dx.data() + dx.numel());
        for (auto& p : net.parameters()) all.insert(all.end(), p.param->grad.data(), p.param->grad.data() + p.param->numel());
        return all;
    };
    const auto a = run(1), b = run(2);
    REQUIRE(a.size() == b.size());
    std::size_t differ = 0;
    for (std::size_t i = 0; i < a.size(); ++i) differ += a[i] != b[i];
    CHECK(differ == 0);
}

TEST_CASE("init_parameters: torch's default ranges, reproducible") {
    unet2d<double> a(test::tiny_unet2d()), b(test::tiny_unet2d());
    init_parameters<double>(a, 9);
    init_parameters<double>(b, 9);
    auto pa = a.parameters(), pb = b.parameters();
    for (std::size_t i = 0; i < pa.size(); ++i) {
        CAPTURE(pa[i].name);
        for (std::int64_t k = 0; k < pa[i].param->numel(); ++k) CHECK(pa[i].param->value[k] == pb[i].param->value[k]);
        if (pa[i].name == "conv_in.weight") {
            const double bound = 1 / std::sqrt(27.0);  // fan_in = 3·3·3
            for (std::int64_t k = 0; k < pa[i].param->numel(); ++k) CHECK(std::abs(pa[i].param->value[k]) <= bound);
        }
        if (pa[i].name == "conv_norm_out.weight")
            for (std::int64_t k = 0; k < pa[i].param->numel(); ++k) CHECK(pa[i].param->value[k] == 1.0);
    }
}
