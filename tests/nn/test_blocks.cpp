// The U-Net's blocks on their own: resnet_block2d (default and scale_shift time conditioning, 1×1
// shortcut, up/down resampling, output_scale_factor) and transformer2d (conv and linear projections,
// two blocks), and a down_block / up_block pair with its skip connections (blocks/unet_blocks.hpp) —
// input, context, time-embedding and parameter gradients against central finite differences in
// double (tolerance: testing/gradient_check.hpp defaults).

#include <diffuse/nn/blocks/resnet_block.hpp>
#include <diffuse/nn/blocks/transformer2d.hpp>
#include <diffuse/nn/blocks/unet_blocks.hpp>

#include "nn/layer_fixtures.hpp"

#include <doctest/doctest.h>

using namespace diffuse;
using namespace diffuse::nn;
using HT = host_tensor<double>;

TEST_CASE("resnet_block2d: finite-difference gradients for every time conditioning and resampling") {
    struct cfg {
        const char* name;
        std::int64_t cin, cout;
        time_embedding_norm norm;
        resnet_resample rs;
        double scale;
    };
    const cfg cases[] = {
        {"default, shortcut", 4, 6, time_embedding_norm::default_add, resnet_resample::none, 1.0},
        {"scale_shift, identity shortcut, scale 1.5", 4, 4, time_embedding_norm::scale_shift, resnet_resample::none, 1.5},
        {"down", 4, 4, time_embedding_norm::default_add, resnet_resample::down, 1.0},
        {"up, scale_shift", 4, 4, time_embedding_norm::scale_shift, resnet_resample::up, 1.0},
    };
    for (const auto& k : cases) {
        CAPTURE(k.name);
        resnet_block_options o;
        o.in_channels = k.cin;
        o.out_channels = k.cout;
        o.temb_channels = 5;
        o.groups = 2;
        o.time_norm = k.norm;
        o.resample = k.rs;
        o.output_scale_factor = k.scale;
        resnet_block2d<double> blk(o);
        nn_test::randomize<double>(blk, 1, 0.3);
        HT x = nn_test::randn<double>({2, k.cin, 4, 4}, 2), temb = nn_test::randn<double>({2, 5}, 3);
        nn_test::check_layer_gradients(
            std::string("resnet ") + k.name, blk, x, [&](const HT& v) { return blk.forward(v.cview(), temb.cview()); },
            [&](const HT& v, const HT& w) {
                resnet_block2d<double>::cache c;
                blk.forward(v.cview(), temb.cview(), std::nullopt, &c);
                return blk.backward(w.cview(), c).dx;
            });
        // the time-embedding gradient
        HT y = blk.forward(x.cview(), temb.cview());
        HT w = nn_test::randn<double>(y.shape(), 4);
        resnet_block2d<double>::cache c;
        blk.forward(x.cview(), temb.cview(), std::nullopt, &c);
        HT dtemb = blk.backward(w.cview(), c).dtemb;
        auto r = diffuse::testing::gradient_check("dtemb", nn_test::span_of(temb), nn_test::cspan_of(dtemb),
                                                  [&] { return nn_test::dot(w, blk.forward(x.cview(), temb.cview())); });
        INFO(r.report());
        CHECK(r.passed);
    }
}

TEST_CASE("resnet_block2d: dropout is active only with a key and reproducible") {
    resnet_block_options o;
    o.in_channels = o.out_channels = 4;
    o.temb_channels = 3;
    o.groups = 2;
    o.dropout = 0.5;
    resnet_block2d<float> blk(o);
    nn_test::randomize<float>(blk, 5, 0.3);
    auto x = nn_test::randn<float>({1, 4, 4, 4}, 6);
    auto t = nn_test::randn<float>({1, 3}, 7);
    auto a = blk.forward(x.cview(), t.cview(), dropout_key{1, 2});
    auto b = blk.forward(x.cview(), t.cview(), dropout_key{1, 2});
    auto c = blk.forward(x.cview(), t.cview(), dropout_key{1, 3});
    auto d = blk.forward(x.cview(), t.cview());
    auto e = blk.forward(x.cview(), t.cview());
    std::size_t ab = 0, ac = 0, de = 0;
    for (std::int64_t i = 0; i < a.numel(); ++i) {
        ab += a[i] != b[i];
        ac += a[i] != c[i];
        de += d[i] != e[i];
    }
    CHECK(ab == 0);
    CHECK(ac > 0);
    CHECK(de == 0);
    auto bad = nn_test::randn<float>({1, 4}, 8);
    CHECK_THROWS_WITH_AS(blk.forward(x.cview(), bad.cview()),
                         doctest::Contains("temb has shape [1, 4]; expected [1, 3] (batch, temb_channels)"),
                         diffuse::error);
}

TEST_CASE("transformer2d: finite-difference gradients for conv and linear projections") {
    for (bool linear_projection : {false, true}) {
        CAPTURE(linear_projection);
        transformer2d<double> tr(4, 2, 3, 2, 5, 2, linear_projection);  // C 4, inner 2·3 = 6, 2 blocks, context 5
        nn_test::randomize<double>(tr, 9, 0.3);
        HT x = nn_test::randn<double>({2, 4, 3, 2}, 10), ctx = nn_test::randn<double>({2, 3, 5}, 11);
        nn_test::check_layer_gradients(
            "transformer2d", tr, x, [&](const HT& v) { return tr.forward(v.cview(), ctx.cview()); },
            [&](const HT& v, const HT& w) {
                transformer2d<double>::cache c;
                tr.forward(v.cview(), ctx.cview(), &c);
                return tr.backward(w.cview(), c).dx;
            });
        HT y = tr.forward(x.cview(), ctx.cview());
        HT w = nn_test::randn<double>(y.shape(), 12);
        transformer2d<double>::cache c;
        tr.forward(x.cview(), ctx.cview(), &c);
        HT dctx = tr.backward(w.cview(), c).dcontext;
        auto r = diffuse::testing::gradient_check("dcontext", nn_test::span_of(ctx), nn_test::cspan_of(dctx),
                                                  [&] { return nn_test::dot(w, tr.forward(x.cview(), ctx.cview())); });
        INFO(r.report());
        CHECK(r.passed);
        auto names = parameters_of<double>(tr, "attentions.0");
        CHECK(names[2].name == "attentions.0.proj_in.weight");
        CHECK(names.back().name == "attentions.0.proj_out.bias");
    }
}

// x -> skip s0 = x;  down: h = resnet(x), skip s1 = h;  up: h = resnet(h ‖ pop s1), h = resnet(h ‖ pop s0)
TEST_CASE("down_block and up_block: skips are pushed and popped in order, gradients flow through them") {
    auto resnet = [](std::int64_t cin, std::int64_t cout) {
        resnet_block_options o;
        o.in_channels = cin;
        o.out_channels = cout;
        o.temb_channels = 3;
        o.groups = 2;
        return resnet_block2d<double>(o);
    };
    struct pair_model {
        down_block<double> down;
        up_block<double> up;
        void collect(parameter_list<double>& out, const std::string& p) {
            down.collect(out, join_name(p, "down_blocks.0"));
            up.collect(out, join_name(p, "up_blocks.0"));
        }
    } m;
    m.down.resnets.push_back(resnet(2, 4));
    m.up.resnets.push_back(resnet(4 + 4, 4));
    m.up.resnets.push_back(resnet(4 + 2, 4));
    nn_test::randomize<double>(m, 13, 0.3);
    HT temb = nn_test::randn<double>({2, 3}, 14);
    const block_context<double> ctx{temb.cview(), std::nullopt, std::nullopt};
    auto forward = [&](const HT& x, typename down_block<double>::cache* cd, typename up_block<double>::cache* cu) {
        std::vector<host_tensor<double>> skips{x};
        HT h = m.down.forward(x, ctx, skips, cd);
        std::size_t top = skips.size();
        h = m.up.forward(std::move(h), ctx, skips, top, cu);
        CHECK(top == 0);
        return h;
    };
    HT x = nn_test::randn<double>({2, 2, 3, 3}, 15);
    nn_test::check_layer_gradients(
        "down/up pair", m, x, [&](const HT& v) { return forward(v, nullptr, nullptr); },
        [&](const HT& v, const HT& w) {
            typename down_block<double>::cache cd;
            typename up_block<double>::cache cu;
            forward(v, &cd, &cu);
            block_gradients<double> g;
            g.dtemb = HT({2, 3}, 0.0);
            std::vector<host_tensor<double>> dskips(2);
            HT d = m.up.backward(copy_of(w.cview()), cu, dskips, g);
            d = m.down.backward(std::move(d), cd, dskips, g);
            add_into(d.view(), dskips[0].cview());  // s0 = x itself
            return d;
        });
    auto names = parameters_of<double>(m);
    CHECK(names.front().name == "down_blocks.0.resnets.0.norm1.weight");
    CHECK(names.back().name == "up_blocks.0.resnets.1.conv_shortcut.bias");
}
