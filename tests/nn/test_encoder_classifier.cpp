// The noise-conditional classifier (nn/encoder_classifier.hpp): backward vs central finite differences on
// tiny configs (both down-block types, with and without a mid block, 4x4 down to 1x1 and an odd size),
// log_softmax / cross_entropy / class_log_prob_grad against closed forms and finite differences, parameter
// names, shapes, weights round trip, config JSON and errors. Training is in tests/train.

#include <diffuse/io/json.hpp>
#include <diffuse/io/safetensors.hpp>
#include <diffuse/nn/encoder_classifier.hpp>
#include <diffuse/nn/init.hpp>
#include <diffuse/nn/unet_io.hpp>

#include "nn/layer_fixtures.hpp"
#include "support/check.hpp"
#include "support/tiny_unets.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

using namespace diffuse;
using namespace diffuse::nn;
using HT = host_tensor<double>;

namespace {

// three levels 4x4 -> 2x2 -> 1x1, a DownBlock2D and two AttnDownBlock2D, mid block with attention,
// scale_shift resnets, center_input_sample
unet_config tiny_with_mid() {
    unet_config c = unet_config::defaults(unet_kind::unet2d);
    c.in_channels = 2;
    c.block_out_channels = {4, 8, 8};
    c.layers_per_block = 1;
    c.down_block_types = {"DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"};
    c.up_block_types = {"AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"};  // ignored by the classifier
    c.norm_num_groups = 2;
    c.attention_head_dim = {4};
    c.resnet_time_scale_shift = "scale_shift";
    c.attn_norm_num_groups = 2;
    c.center_input_sample = true;
    return c;
}

// two levels, AttnDownBlock2D first with a resnet downsampler, then a DownBlock2D; no mid block;
// two layers per block
unet_config tiny_without_mid() {
    unet_config c = unet_config::defaults(unet_kind::unet2d);
    c.in_channels = 1;
    c.block_out_channels = {4, 6};
    c.layers_per_block = 2;
    c.down_block_types = {"AttnDownBlock2D", "DownBlock2D"};
    c.up_block_types = {"UpBlock2D", "UpBlock2D"};
    c.downsample_type = "resnet";
    c.norm_num_groups = 2;
    c.attention_head_dim = {2};
    c.mid_block_type.reset();
    return c;
}

// every parameter (3 entries each) and every input entry, for L = <w, logits>
void check_classifier_gradients(const std::string& what, encoder_classifier<double>& net, HT& x,
                                const std::vector<double>& t) {
    diffuse::testing::gradient_check_options opt;
    opt.max_entries = 3;  // spot-check 3 entries of every parameter tensor
    opt.seed = 5;
    // default tolerance atol 1e-7 + rtol 1e-6: the finite difference is good to ~1e-9 on these O(1) sums
    nn_test::check_layer_gradients(
        what, net, x, [&](const HT& v) { return net.forward(v.cview(), t); },
        [&](const HT& v, const HT& w) {
            encoder_classifier<double>::cache c;
            net.forward(v.cview(), t, &c);
            return net.backward(w.cview(), c);
        },
        opt, /*check_input=*/false);
    HT w = nn_test::randn<double>({x.size(0), net.num_classes()}, 6);
    encoder_classifier<double>::cache c;
    net.forward(x.cview(), t, &c);
    HT dx = net.backward(w.cview(), c);
    REQUIRE(dx.shape() == x.shape());
    auto r = diffuse::testing::gradient_check(what + " dx (all entries)", nn_test::span_of(x), nn_test::cspan_of(dx),
                                              [&] { return nn_test::dot(w, net.forward(x.cview(), t)); });
    INFO(r.report());
    CHECK(r.passed);
}

std::vector<std::string> names_of(encoder_classifier<float>& m) {
    std::vector<std::string> n;
    for (auto& p : m.parameters()) n.push_back(p.name);
    return n;
}

}  // namespace

TEST_CASE("encoder_classifier: backward matches finite differences, attention blocks and mid block, 4x4 to 1x1") {
    encoder_classifier<double> net(tiny_with_mid(), 3);
    test::randomize_parameters(net, 3);
    HT x = nn_test::randn<double>({2, 2, 4, 4}, 4);
    check_classifier_gradients("classifier (mid)", net, x, {17.0, 503.5});
}

TEST_CASE("encoder_classifier: backward matches finite differences, resnet downsampler and no mid block, odd size") {
    encoder_classifier<double> net(tiny_without_mid(), 4);
    test::randomize_parameters(net, 7);
    HT x = nn_test::randn<double>({2, 1, 5, 3}, 8);  // 5x3 -> 2x1 through the resnet downsampler (avg-pool)
    check_classifier_gradients("classifier (no mid)", net, x, {250.0});
}

TEST_CASE("encoder_classifier: parameter names, logits shape, weights round trip") {
    encoder_classifier<float> net(tiny_with_mid(), 3);
    const auto names = names_of(net);
    auto has = [&](const std::string& n) { return std::find(names.begin(), names.end(), n) != names.end(); };
    for (const char* n : {"conv_in.weight", "time_embedding.linear_1.weight", "time_embedding.linear_2.bias",
                          "down_blocks.0.resnets.0.conv1.weight", "down_blocks.0.resnets.0.time_emb_proj.weight",
                          "down_blocks.0.downsamplers.0.conv.weight", "down_blocks.1.attentions.0.to_q.weight",
                          "down_blocks.1.attentions.0.group_norm.weight", "down_blocks.1.resnets.0.conv_shortcut.weight",
                          "mid_block.resnets.0.norm1.weight", "mid_block.attentions.0.to_out.0.bias",
                          "mid_block.resnets.1.conv2.bias", "head.norm.weight", "head.norm.bias", "head.linear.weight",
                          "head.linear.bias"})
        CHECK_MESSAGE(has(n), n);
    // the last level does not downsample; no decoder, no class embedding
    CHECK(!has("down_blocks.2.downsamplers.0.conv.weight"));
    for (const auto& n : names) {
        CHECK_MESSAGE(n.find("up_blocks") == std::string::npos, n);
        CHECK_MESSAGE(n.find("conv_out") == std::string::npos, n);
        CHECK_MESSAGE(n.find("class_embedding") == std::string::npos, n);
    }
    for (auto& p : net.parameters())
        if (p.name == "head.linear.weight") CHECK(p.param->shape() == shape{3, 8});
    encoder_classifier<float> plain(tiny_without_mid(), 2);
    const auto plain_names = names_of(plain);
    for (const auto& n : plain_names) CHECK_MESSAGE(n.find("mid_block") == std::string::npos, n);
    CHECK(std::find(plain_names.begin(), plain_names.end(), "down_blocks.0.downsamplers.0.time_emb_proj.weight") !=
          plain_names.end());

    // logits [B, K] with one shared timestep; weights through safetensors give the same logits
    init_parameters<float>(net, 11);
    host_tensor<float> x = nn_test::randn<float>({3, 2, 4, 4}, 12);
    const host_tensor<float> z = net.forward(x.cview(), {100.0});
    CHECK(z.shape() == shape{3, 3});
    encoder_classifier<float> again(tiny_with_mid(), 3);
    load_parameters<float>(again, save_parameters<float>(net));
    const host_tensor<float> z2 = again.forward(x.cview(), {100.0});
    for (std::int64_t i = 0; i < z.numel(); ++i) CHECK(z2.data()[i] == z.data()[i]);  // same weights, same arithmetic
    // one shared timestep == the same timestep per item
    const host_tensor<float> z3 = net.forward(x.cview(), {100.0, 100.0, 100.0});
    for (std::int64_t i = 0; i < z.numel(); ++i) CHECK(z3.data()[i] == z.data()[i]);
    // a 1x1 input passes every conv downsampler (3x3, stride 2, padding 1 maps 1 -> 1)
    CHECK(net.forward(nn_test::randn<float>({1, 2, 1, 1}, 13).cview(), {5.0}).shape() == shape{1, 3});
}

TEST_CASE("log_softmax and cross_entropy: closed forms, stability, finite differences") {
    HT z({2, 3});
    const double zv[] = {1.0, 2.0, 3.0, 1000.0, 0.0, -1000.0};
    std::copy(zv, zv + 6, z.data());
    const HT lp = log_softmax(z.cview());
    const double lse = 3.0 + std::log(1.0 + std::exp(-1.0) + std::exp(-2.0));
    for (int k = 0; k < 3; ++k) DIFFUSE_CHECK_CLOSE(lp.data()[k], zv[k] - lse, 0.0, 4 * test::eps<double>);
    // no overflow for logits of ±1000: log p = 0, −1000, −2000 (e^-1000 underflows harmlessly)
    DIFFUSE_CHECK_CLOSE(lp.data()[3], 0.0, 0.0, 0.0);
    DIFFUSE_CHECK_CLOSE(lp.data()[4], -1000.0, 0.0, test::eps<double>);
    DIFFUSE_CHECK_CLOSE(lp.data()[5], -2000.0, 0.0, test::eps<double>);

    const std::vector<int> y{2, 1};
    const auto ce = cross_entropy(z.cview(), y);
    DIFFUSE_CHECK_CLOSE(ce.loss, -(lp.data()[2] + lp.data()[4]) / 2, 0.0, 4 * test::eps<double>);
    // dlogits vs finite differences of the mean loss (small logits so the difference is well conditioned)
    HT s = nn_test::randn<double>({4, 5}, 21);
    const std::vector<int> ys{0, 4, 2, 2};
    const auto g = cross_entropy(s.cview(), ys);
    auto r = diffuse::testing::gradient_check("cross_entropy dlogits", nn_test::span_of(s), nn_test::cspan_of(g.dlogits),
                                              [&] { return cross_entropy(s.cview(), ys).loss; });
    INFO(r.report());
    CHECK(r.passed);

    CHECK_THROWS_WITH_AS(cross_entropy(z.cview(), std::vector<int>{2, 3}),
                         doctest::Contains("cross_entropy: labels[1] = 3; expected a class in [0, 3)"), diffuse::error);
    CHECK_THROWS_WITH_AS(cross_entropy(z.cview(), std::vector<int>{-1, 0}),
                         doctest::Contains("labels[0] = -1"), diffuse::error);
    CHECK_THROWS_WITH_AS(cross_entropy(z.cview(), std::vector<int>{0}),
                         doctest::Contains("1 labels for a batch of 2"), diffuse::error);
}

TEST_CASE("class_log_prob_grad: value, finite differences, per-item independence, parameter gradients untouched") {
    encoder_classifier<double> net(tiny_with_mid(), 3);
    test::randomize_parameters(net, 31);
    HT x = nn_test::randn<double>({3, 2, 4, 4}, 32);
    const std::vector<double> t{3.0, 400.0, 999.0};
    const std::vector<int> y{0, 2, 1};
    // plant recognisable parameter gradients: the call must leave them as they are
    for (auto& p : net.parameters()) std::fill_n(p.param->grad.data(), p.param->numel(), 0.25);
    const auto r = class_log_prob_grad(net, x.cview(), t, y);
    for (auto& p : net.parameters())
        CHECK(std::all_of(p.param->grad.data(), p.param->grad.data() + p.param->numel(),
                          [](double g) { return g == 0.25; }));
    REQUIRE(r.log_prob.size() == 3);
    REQUIRE(r.grad.shape() == x.shape());
    // the same forward (rounding may differ in the last bits between runs of Eigen's GEMM on fresh buffers)
    const HT lp = log_softmax(net.forward(x.cview(), t).cview());
    for (std::size_t b = 0; b < 3; ++b)
        DIFFUSE_CHECK_CLOSE(r.log_prob[b], lp.data()[b * 3 + static_cast<std::size_t>(y[b])], 0.0, 64 * test::eps<double>);
    // ∇ of Σ_b log p(y_b | x_b): row b of the result is ∇_{x_b} of term b alone because no layer mixes items
    auto sum_log_prob = [&] {
        const HT l = log_softmax(net.forward(x.cview(), t).cview());
        double s = 0;
        for (std::size_t b = 0; b < 3; ++b) s += l.data()[b * 3 + static_cast<std::size_t>(y[b])];
        return s;
    };
    auto fd = diffuse::testing::gradient_check("class_log_prob_grad", nn_test::span_of(x), nn_test::cspan_of(r.grad),
                                               sum_log_prob);
    INFO(fd.report());
    CHECK(fd.passed);
    // item 1 alone gives the same value and gradient (up to GEMM blocking: 1e-12 relative)
    HT x1({1, 2, 4, 4});
    std::copy(x.data() + 32, x.data() + 64, x1.data());
    const auto r1 = class_log_prob_grad(net, x1.cview(), {400.0}, std::vector<int>{2});
    DIFFUSE_CHECK_CLOSE(r1.log_prob[0], r.log_prob[1], 1e-12, 1e-12);
    for (std::int64_t i = 0; i < 32; ++i) DIFFUSE_CHECK_CLOSE(r1.grad.data()[i], r.grad.data()[32 + i], 1e-12, 1e-12);

    CHECK_THROWS_WITH_AS(class_log_prob_grad(net, x.cview(), t, std::vector<int>{0, 3, 1}),
                         doctest::Contains("class_log_prob_grad: labels[1] = 3; expected a class in [0, 3)"),
                         diffuse::error);
    CHECK_THROWS_WITH_AS(class_log_prob_grad(net, x.cview(), t, std::vector<int>{0, 1}),
                         doctest::Contains("2 labels for a batch of 3"), diffuse::error);
}

TEST_CASE("encoder_classifier_config: JSON round trip, ignored decoder keys, errors") {
    encoder_classifier_config c{tiny_with_mid(), 5};
    const io::json_value j = c.to_json();
    CHECK(j.find("_class_name")->as_string() == "EncoderClassifier");
    CHECK(j.find("num_classes")->as_int64() == 5);
    CHECK(j.find("up_block_types") == nullptr);
    CHECK(j.find("out_channels") == nullptr);
    const auto back = encoder_classifier_config::from_json(io::parse_json(io::to_json(j)));
    CHECK(back == c);
    // the decoder's keys are ignored, whatever they say; defaults apply to the rest
    const auto d = encoder_classifier_config::from_json(io::parse_json(R"({
        "_class_name": "EncoderClassifier", "num_classes": 10, "in_channels": 1, "block_out_channels": [32, 64],
        "down_block_types": ["DownBlock2D", "AttnDownBlock2D"], "up_block_types": ["NoSuchBlock"],
        "out_channels": 7, "norm_num_groups": 8})"));
    CHECK(d.num_classes == 10);
    CHECK(d.unet.block_out_channels == std::vector<std::int64_t>{32, 64});
    CHECK(d.unet.layers_per_block == 2);  // UNet2DModel's default
    CHECK(encoder_classifier<float>(d).num_classes() == 10);

    auto parse = [](const std::string& s) { return encoder_classifier_config::from_json(io::parse_json(s), "clf.json"); };
    const std::string base = R"("block_out_channels": [8, 16], "norm_num_groups": 4,
        "down_block_types": ["DownBlock2D", "AttnDownBlock2D"])";
    CHECK_NOTHROW(parse("{\"num_classes\": 3, " + base + "}"));
    CHECK_THROWS_WITH_AS(parse("{" + base + "}"), doctest::Contains("clf.json: num_classes is missing"), diffuse::error);
    CHECK_THROWS_WITH_AS(parse("{\"num_classes\": 1, " + base + "}"),
                         doctest::Contains("num_classes = 1; expected an integer >= 2"), diffuse::error);
    CHECK_THROWS_WITH_AS(parse("{\"_class_name\": \"UNet2DModel\", \"num_classes\": 3, " + base + "}"),
                         doctest::Contains("_class_name = \"UNet2DModel\"; expected \"EncoderClassifier\""),
                         diffuse::error);
    CHECK_THROWS_WITH_AS(parse("{\"num_classes\": 3, \"frobnicate\": 1, " + base + "}"),
                         doctest::Contains("unsupported UNet2DModel config keys: frobnicate"), diffuse::error);
    CHECK_THROWS_WITH_AS(parse(R"({"num_classes": 3, "block_out_channels": [8, 16], "norm_num_groups": 4})"),
                         doctest::Contains("down_block_types has 4 entries and block_out_channels 2"), diffuse::error);
    CHECK_THROWS_WITH_AS(parse("{\"num_classes\": 3, \"num_class_embeds\": 4, " + base + "}"),
                         doctest::Contains("num_class_embeds = 4; expected null"), diffuse::error);
}

TEST_CASE("encoder_classifier: unsupported configs and bad inputs are named") {
    CHECK_THROWS_WITH_AS(encoder_classifier<float>(tiny_with_mid(), 1),
                         doctest::Contains("num_classes = 1; expected an integer >= 2"), diffuse::error);
    unet_config labelled = tiny_with_mid();
    labelled.num_class_embeds = 3;
    CHECK_THROWS_WITH_AS(encoder_classifier<float>(labelled, 3),
                         doctest::Contains("num_class_embeds = 3; expected null (a classifier has no class embedding"),
                         diffuse::error);
    labelled = tiny_with_mid();
    labelled.class_embed_type = "timestep";
    CHECK_THROWS_WITH_AS(encoder_classifier<float>(labelled, 3), doctest::Contains("class_embed_type = \"timestep\""),
                         diffuse::error);
    unet_config cross = unet_config::defaults(unet_kind::unet2d_condition);
    CHECK_THROWS_WITH_AS(encoder_classifier<float>(cross, 3),
                         doctest::Contains("UNet2DConditionModel config is not supported (cross-attention blocks)"),
                         diffuse::error);
    unet_config cross_block = tiny_with_mid();
    cross_block.down_block_types[1] = "CrossAttnDownBlock2D";
    CHECK_THROWS_WITH_AS(encoder_classifier<float>(cross_block, 3),
                         doctest::Contains("\"CrossAttnDownBlock2D\" is not supported"), diffuse::error);
    unet_config levels = tiny_with_mid();
    levels.block_out_channels = {4, 8};
    CHECK_THROWS_WITH_AS(encoder_classifier<float>(levels, 3),
                         doctest::Contains("down_block_types has 3 entries and block_out_channels 2"), diffuse::error);
    unet_config groups = tiny_with_mid();
    groups.norm_num_groups = 3;
    CHECK_THROWS_WITH_AS(encoder_classifier<float>(groups, 3),
                         doctest::Contains("norm_num_groups = 3 does not divide the block channels 4"), diffuse::error);

    encoder_classifier<float> net(tiny_with_mid(), 3);
    CHECK_THROWS_WITH_AS(net.forward(host_tensor<float>({1, 3, 4, 4}, 0.f).cview(), {1.0}),
                         doctest::Contains("encoder_classifier: x has shape [1, 3, 4, 4]; expected [B, 2, H, W]"),
                         diffuse::error);
    CHECK_THROWS_WITH_AS(net.forward(host_tensor<float>({2, 2, 4, 4}, 0.f).cview(), {1.0, 2.0, 3.0}),
                         doctest::Contains("3 timesteps for a batch of 2; expected 1 (shared) or 2"), diffuse::error);
    CHECK_THROWS_WITH_AS(net.forward(host_tensor<float>({1, 2, 4, 4}, 0.f).cview(), {NAN}),
                         doctest::Contains("expected a finite number"), diffuse::error);
    encoder_classifier<float>::cache empty;
    CHECK_THROWS_WITH_AS(net.backward(host_tensor<float>({1, 3}, 0.f).cview(), empty),
                         doctest::Contains("backward called with an empty cache"), diffuse::error);
    encoder_classifier<float>::cache c;
    net.forward(host_tensor<float>({2, 2, 4, 4}, 0.f).cview(), {1.0}, &c);
    CHECK_THROWS_WITH_AS(net.backward(host_tensor<float>({2, 4}, 0.f).cview(), c),
                         doctest::Contains("dlogits has shape [2, 4]; expected [2, 3]"), diffuse::error);
    // padding 0 needs 2 or more pixels per side at every downsampling level
    unet_config pad0 = tiny_with_mid();
    pad0.downsample_padding = 0;
    encoder_classifier<float> net0(pad0, 3);
    CHECK(net0.forward(host_tensor<float>({1, 2, 4, 4}, 0.f).cview(), {1.0}).shape() == shape{1, 3});
    CHECK_THROWS_WITH_AS(net0.forward(host_tensor<float>({1, 2, 2, 2}, 0.f).cview(), {1.0}),
                         doctest::Contains("which down_blocks.1's downsampler cannot reduce (1x1 at that level)"),
                         diffuse::error);
}
