// nn layers: forward against closed forms / independent loops, backward against central finite
// differences in double (diffuse/testing/gradient_check.hpp; tolerance atol 1e-7 + rtol 1e-6, see
// that header for the error budget), errors named.

#include <diffuse/backend/host_threads.hpp>
#include <diffuse/nn/layers/activations.hpp>
#include <diffuse/nn/layers/attention.hpp>
#include <diffuse/nn/layers/conv2d.hpp>
#include <diffuse/nn/layers/dropout.hpp>
#include <diffuse/nn/layers/embedding.hpp>
#include <diffuse/nn/layers/geglu.hpp>
#include <diffuse/nn/layers/group_norm.hpp>
#include <diffuse/nn/layers/layer_norm.hpp>
#include <diffuse/nn/layers/linear.hpp>
#include <diffuse/nn/layers/resample.hpp>
#include <diffuse/nn/layers/tensor_ops.hpp>
#include <diffuse/nn/layers/timestep_embedding.hpp>

#include "nn/layer_fixtures.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <vector>

using namespace diffuse;
using namespace diffuse::nn;
using nn_test::check_layer_gradients;
using nn_test::randn;
using nn_test::randomize;
using HT = host_tensor<double>;

TEST_CASE("linear: forward is x W^T + b and gradients match finite differences") {
    linear<double> lin(5, 3);
    randomize<double>(lin, 1);
    HT x = randn<double>({2, 4, 5}, 2);
    HT y = lin.forward(x.cview());
    CHECK(y.shape() == shape{2, 4, 3});
    for (int n = 0; n < 8; ++n)
        for (int o = 0; o < 3; ++o) {
            double ref = lin.bias.value[o];
            for (int i = 0; i < 5; ++i) ref += x[n * 5 + i] * lin.weight.value(o, i);
            CHECK(std::abs(y[n * 3 + o] - ref) <= 1e-14);
        }
    check_layer_gradients(
        "linear", lin, x, [&](const HT& v) { return lin.forward(v.cview()); },
        [&](const HT& v, const HT& w) {
            linear<double>::cache c;
            lin.forward(v.cview(), &c);
            return lin.backward(w.cview(), c);
        });
    linear<double> nobias(5, 2, false);
    randomize<double>(nobias, 3);
    CHECK(parameters_of<double>(nobias).size() == 1);
    check_layer_gradients(
        "linear without bias", nobias, x, [&](const HT& v) { return nobias.forward(v.cview()); },
        [&](const HT& v, const HT& w) {
            linear<double>::cache c;
            nobias.forward(v.cview(), &c);
            return nobias.backward(w.cview(), c);
        });
}

TEST_CASE("linear: parameter gradients accumulate, input gradients overwrite") {
    linear<double> lin(3, 2);
    randomize<double>(lin, 4);
    HT x = randn<double>({4, 3}, 5), w = randn<double>({4, 2}, 6);
    linear<double>::cache c;
    lin.forward(x.cview(), &c);
    zero_grad<double>(lin);
    HT dx1 = lin.backward(w.cview(), c);
    HT g1 = lin.weight.grad;
    HT dx2 = lin.backward(w.cview(), c);
    for (std::int64_t i = 0; i < g1.numel(); ++i) CHECK(lin.weight.grad[i] == 2 * g1[i]);
    for (std::int64_t i = 0; i < dx1.numel(); ++i) CHECK(dx2[i] == dx1[i]);
}

// the definition, loop by loop, as an independent oracle for conv2d
static HT naive_conv(const HT& x, const conv2d<double>& cv) {
    const auto B = x.size(0), H = x.size(2), W = x.size(3);
    const auto Ho = cv.out_h(H), Wo = cv.out_w(W);
    HT y({B, cv.out_channels(), Ho, Wo}, 0.0);
    for (std::int64_t b = 0; b < B; ++b)
        for (std::int64_t o = 0; o < cv.out_channels(); ++o)
            for (std::int64_t p = 0; p < Ho; ++p)
                for (std::int64_t q = 0; q < Wo; ++q) {
                    double s = cv.bias.value.numel() ? cv.bias.value[o] : 0.0;
                    for (std::int64_t ci = 0; ci < cv.in_channels(); ++ci)
                        for (std::int64_t i = 0; i < cv.kernel_h(); ++i)
                            for (std::int64_t j = 0; j < cv.kernel_w(); ++j) {
                                const auto r = p * cv.stride() - cv.padding().top + i;
                                const auto s2 = q * cv.stride() - cv.padding().left + j;
                                if (r < 0 || r >= H || s2 < 0 || s2 >= W) continue;
                                s += cv.weight.value(o, ci, i, j) * x(b, ci, r, s2);
                            }
                    y(b, o, p, q) = s;
                }
    return y;
}

TEST_CASE("conv2d: matches the direct sum and finite differences for the U-Net's kernels") {
    struct cfg {
        const char* name;
        std::int64_t cin, cout, kh, kw, stride;
        padding2d pad;
        std::int64_t H, W;
    };
    const cfg cases[] = {
        {"3x3 pad 1", 3, 4, 3, 3, 1, padding2d::same(1), 5, 6},
        {"3x3 stride 2 pad 1", 2, 3, 3, 3, 2, padding2d::same(1), 6, 5},
        {"3x3 stride 2 pad (0,1,0,1)", 2, 3, 3, 3, 2, padding2d{0, 1, 0, 1}, 6, 6},
        {"1x1", 4, 3, 1, 1, 1, padding2d{}, 3, 4},
        {"2x3 no pad", 2, 2, 2, 3, 1, padding2d{}, 4, 5},
    };
    for (const auto& k : cases) {
        CAPTURE(k.name);
        conv2d<double> cv(k.cin, k.cout, k.kh, k.kw, k.stride, k.pad);
        randomize<double>(cv, 7);
        HT x = randn<double>({2, k.cin, k.H, k.W}, 8);
        HT y = cv.forward(x.cview());
        HT ref = naive_conv(x, cv);
        REQUIRE(y.shape() == ref.shape());
        for (std::int64_t i = 0; i < y.numel(); ++i) CHECK(std::abs(y[i] - ref[i]) <= 1e-13);
        check_layer_gradients(
            std::string("conv2d ") + k.name, cv, x, [&](const HT& v) { return cv.forward(v.cview()); },
            [&](const HT& v, const HT& w) {
                conv2d<double>::cache c;
                cv.forward(v.cview(), &c);
                return cv.backward(w.cview(), c);
            });
    }
}

TEST_CASE("conv2d: bad shapes and arguments are named") {
    conv2d<double> cv(3, 4, 3, 1, 1);
    HT x({1, 2, 5, 5}, 0.0);
    CHECK_THROWS_WITH_AS(cv.forward(x.cview()), doctest::Contains("conv2d: x has shape [1, 2, 5, 5]; expected [B, 3, H, W]"),
                         diffuse::error);
    CHECK_THROWS_WITH_AS(conv2d<double>(0, 4, 3), doctest::Contains("in_channels = 0"), diffuse::error);
    conv2d<double>::cache empty;
    CHECK_THROWS_WITH_AS(cv.backward(x.cview(), empty), doctest::Contains("empty cache"), diffuse::error);
    HT tiny({1, 3, 1, 1}, 0.0);
    conv2d<double> nopad(3, 4, 3);
    CHECK_THROWS_WITH_AS(nopad.forward(tiny.cview()), doctest::Contains("at least as large as the 3x3 kernel"),
                         diffuse::error);
}

TEST_CASE("group_norm: normalises each group and its gradients match finite differences") {
    group_norm<double> gn(2, 4, 1e-5);
    HT x = randn<double>({2, 4, 3, 3}, 9, 0, 2.0, 1.5);
    // with γ = 1, β = 0 every group has mean 0 and variance σ²/(σ² + eps)
    HT y = gn.forward(x.cview());
    for (int b = 0; b < 2; ++b)
        for (int g = 0; g < 2; ++g) {
            double m = 0, v = 0, mx = 0, vx = 0;
            const int n = 18;
            for (int i = 0; i < n; ++i) {
                m += y[(b * 4 + g * 2) * 9 + i];
                mx += x[(b * 4 + g * 2) * 9 + i];
            }
            m /= n;
            mx /= n;
            for (int i = 0; i < n; ++i) {
                v += std::pow(y[(b * 4 + g * 2) * 9 + i] - m, 2);
                vx += std::pow(x[(b * 4 + g * 2) * 9 + i] - mx, 2);
            }
            v /= n;
            vx /= n;
            CHECK(std::abs(m) <= 1e-14);
            CHECK(std::abs(v - vx / (vx + 1e-5)) <= 1e-13);
        }
    randomize<double>(gn, 10);
    check_layer_gradients(
        "group_norm", gn, x, [&](const HT& v) { return gn.forward(v.cview()); },
        [&](const HT& v, const HT& w) {
            group_norm<double>::cache c;
            gn.forward(v.cview(), &c);
            return gn.backward(w.cview(), c);
        });
    group_norm<double> one(1, 3), per_channel(3, 3);
    randomize<double>(one, 11);
    randomize<double>(per_channel, 12);
    HT x3 = randn<double>({2, 3, 4}, 13);
    for (auto* m : {&one, &per_channel})
        check_layer_gradients(
            "group_norm groups " + std::to_string(m->num_groups()), *m, x3,
            [&](const HT& v) { return m->forward(v.cview()); },
            [&](const HT& v, const HT& w) {
                group_norm<double>::cache c;
                m->forward(v.cview(), &c);
                return m->backward(w.cview(), c);
            });
}

TEST_CASE("group_norm: channels not divisible by groups and wrong channels are errors") {
    CHECK_THROWS_WITH_AS(group_norm<float>(3, 8),
                         doctest::Contains("num_channels = 8 is not divisible by num_groups = 3"), diffuse::error);
    group_norm<float> gn(2, 8);
    host_tensor<float> x({1, 4, 2, 2}, 0.f);
    CHECK_THROWS_WITH_AS(gn.forward(x.cview()), doctest::Contains("group_norm: x has shape [1, 4, 2, 2]"),
                         diffuse::error);
}

TEST_CASE("layer_norm: forward and finite-difference gradients") {
    layer_norm<double> ln(6);
    HT x = randn<double>({2, 3, 6}, 14, 0, 3.0, -1.0);
    HT y = ln.forward(x.cview());
    for (int r = 0; r < 6; ++r) {
        double m = 0;
        for (int i = 0; i < 6; ++i) m += y[r * 6 + i];
        CHECK(std::abs(m / 6) <= 1e-14);
    }
    randomize<double>(ln, 15);
    check_layer_gradients(
        "layer_norm", ln, x, [&](const HT& v) { return ln.forward(v.cview()); },
        [&](const HT& v, const HT& w) {
            layer_norm<double>::cache c;
            ln.forward(v.cview(), &c);
            return ln.backward(w.cview(), c);
        });
}

TEST_CASE("activations: closed-form values and finite-difference derivatives") {
    // silu(1) = 1/(1 + e^-1); gelu(1) = Φ(1) = 0.841344746068543; gelu_tanh(1) from its formula
    activation<double> silu(activation_kind::silu), gelu(activation_kind::gelu), gtanh(activation_kind::gelu_tanh);
    HT one({1}, 1.0);
    CHECK(std::abs(silu.forward(one.cview())[0] - 1.0 / (1.0 + std::exp(-1.0))) <= 1e-16);
    CHECK(std::abs(gelu.forward(one.cview())[0] - 0.8413447460685429) <= 1e-15);
    CHECK(std::abs(gtanh.forward(one.cview())[0] -
                   0.5 * (1 + std::tanh(std::sqrt(2 / M_PI) * (1 + 0.044715)))) <= 1e-15);
    HT x = randn<double>({3, 7}, 16, 0, 3.0);
    for (auto* a : {&silu, &gelu, &gtanh})
        check_layer_gradients(
            "activation", *a, x, [&](const HT& v) { return a->forward(v.cview()); },
            [&](const HT& v, const HT& w) {
                activation<double>::cache c;
                a->forward(v.cview(), &c);
                return a->backward(w.cview(), c);
            });
    // saturated inputs stay finite
    HT big = HT::from_values({4}, {-800.0, -50.0, 50.0, 800.0});
    HT ys = silu.forward(big.cview());
    for (int i = 0; i < 4; ++i) CHECK(std::isfinite(ys[i]));
    CHECK_THROWS_WITH_AS(parse_activation("relu6"), doctest::Contains("act_fn = \"relu6\""), diffuse::error);
}

TEST_CASE("geglu: h * gelu(g) and finite-difference gradients") {
    geglu<double> ff(4, 3);
    randomize<double>(ff, 17);
    HT x = randn<double>({2, 2, 4}, 18);
    HT y = ff.forward(x.cview());
    HT hg = ff.proj.forward(x.cview());
    for (int n = 0; n < 4; ++n)
        for (int i = 0; i < 3; ++i) {
            const double h = hg[n * 6 + i], g = hg[n * 6 + 3 + i];
            CHECK(std::abs(y[n * 3 + i] - h * 0.5 * g * (1 + std::erf(g / std::sqrt(2.0)))) <= 1e-14);
        }
    check_layer_gradients(
        "geglu", ff, x, [&](const HT& v) { return ff.forward(v.cview()); },
        [&](const HT& v, const HT& w) {
            geglu<double>::cache c;
            ff.forward(v.cview(), &c);
            return ff.backward(w.cview(), c);
        });
}

TEST_CASE("dropout: reproducible keep mask with the stated rate, identity without a key") {
    const double p = 0.3;
    dropout<double> d(p);
    HT x({100000}, 1.0);
    dropout<double>::cache c;
    HT y = d.forward(x.cview(), dropout_key{5, 2}, &c);
    std::int64_t kept = 0;
    for (std::int64_t i = 0; i < y.numel(); ++i) {
        CHECK((y[i] == 0.0 || std::abs(y[i] - 1.0 / (1 - p)) <= 1e-15));
        kept += y[i] != 0.0;
    }
    // kept ~ Binomial(n, 0.7): |kept − 0.7n| ≤ 6·sd (sd = √(n·0.21) ≈ 145) fails with prob < 2e-9
    CHECK(std::abs(static_cast<double>(kept) - 70000.0) <= 6 * std::sqrt(100000 * 0.21));
    HT dx = d.backward(x.cview(), c);
    for (std::int64_t i = 0; i < 1000; ++i) CHECK(dx[i] == y[i]);
    {
        scoped_host_threads one(1);
        HT y1 = d.forward(x.cview(), dropout_key{5, 2});
        for (std::int64_t i = 0; i < y.numel(); i += 97) CHECK(y1[i] == y[i]);
    }
    HT other = d.forward(x.cview(), dropout_key{5, 3});
    std::int64_t same = 0;
    for (std::int64_t i = 0; i < 1000; ++i) same += other[i] == y[i];
    CHECK(same < 1000);
    HT id = d.forward(x.cview(), std::nullopt);
    for (std::int64_t i = 0; i < 1000; ++i) CHECK(id[i] == 1.0);
    CHECK_THROWS_WITH_AS(dropout<double>(1.0), doctest::Contains("dropout p = 1"), diffuse::error);
}

TEST_CASE("embedding: rows of the table, scatter-add gradient, index errors") {
    embedding<double> e(4, 3);
    randomize<double>(e, 19);
    const std::vector<int> idx{2, 0, 2};
    embedding<double>::cache c;
    HT y = e.forward(std::span<const int>(idx), &c);
    for (int b = 0; b < 3; ++b)
        for (int i = 0; i < 3; ++i) CHECK(y(b, i) == e.weight.value(idx[b], i));
    HT w = randn<double>({3, 3}, 20);
    zero_grad<double>(e);
    e.backward(w.cview(), c);
    for (int i = 0; i < 3; ++i) {
        CHECK(e.weight.grad(2, i) == w(0, i) + w(2, i));
        CHECK(e.weight.grad(0, i) == w(1, i));
        CHECK(e.weight.grad(1, i) == 0.0);
    }
    const std::vector<int> bad{1, 4};
    CHECK_THROWS_WITH_AS(e.forward(std::span<const int>(bad)),
                         doctest::Contains("index 4 (batch item 1) is out of range; expected an index in [0, 4)"),
                         diffuse::error);
}

TEST_CASE("sinusoidal_embedding: diffusers' formula, flip, freq_shift, odd dim") {
    const std::vector<double> t{0.0, 1.0, 10.5, 999.0};
    for (bool flip : {false, true})
        for (double shift : {0.0, 1.0}) {
            CAPTURE(flip);
            CAPTURE(shift);
            host_tensor<double> e = sinusoidal_embedding<double>(t, 8, flip, shift);
            for (int b = 0; b < 4; ++b)
                for (int i = 0; i < 4; ++i) {
                    // the float32 evaluation differs from the exact value by a few ulps of t·f_i
                    const double f = std::exp(-std::log(10000.0) * i / (4 - shift));
                    const double arg = t[b] * f, tol = 1e-6 + 4 * std::abs(arg) * 6e-8;
                    const double s = e(b, flip ? 4 + i : i), c = e(b, flip ? i : 4 + i);
                    CHECK(std::abs(s - std::sin(arg)) <= tol);
                    CHECK(std::abs(c - std::cos(arg)) <= tol);
                }
        }
    host_tensor<double> odd = sinusoidal_embedding<double>(t, 7, true, 0.0);
    for (int b = 0; b < 4; ++b) CHECK(odd(b, 6) == 0.0);
    // float and double models see the same (float32) embedding
    host_tensor<float> ef = sinusoidal_embedding<float>(t, 8, true, 1.0);
    host_tensor<double> ed = sinusoidal_embedding<double>(t, 8, true, 1.0);
    for (std::int64_t i = 0; i < ef.numel(); ++i) CHECK(static_cast<double>(ef[i]) == ed[i]);
    const std::vector<double> nan{std::nan("")};
    CHECK_THROWS_WITH_AS(sinusoidal_embedding<float>(nan, 8, true, 0.0), doctest::Contains("finite"), diffuse::error);
    CHECK_THROWS_WITH_AS(sinusoidal_embedding<float>(t, 8, true, 4.0), doctest::Contains("freq_shift"),
                         diffuse::error);
}

TEST_CASE("timestep_embedding MLP: finite-difference gradients") {
    timestep_embedding<double> te(6, 5);
    randomize<double>(te, 21);
    HT x = randn<double>({3, 6}, 22);
    check_layer_gradients(
        "timestep_embedding", te, x, [&](const HT& v) { return te.forward(v.cview()); },
        [&](const HT& v, const HT& w) {
            timestep_embedding<double>::cache c;
            te.forward(v.cview(), &c);
            return te.backward(w.cview(), c);
        });
    auto names = parameters_of<double>(te, "time_embedding");
    REQUIRE(names.size() == 4);
    CHECK(names[0].name == "time_embedding.linear_1.weight");
    CHECK(names[3].name == "time_embedding.linear_2.bias");
}

// softmax(Q Kᵀ/√d) V by hand for one head, as the oracle
TEST_CASE("attention: self and cross attention match the definition and finite differences") {
    multi_head_attention<double> self_attn(6, 2, 3, 0, true);
    randomize<double>(self_attn, 23);
    HT x = randn<double>({2, 4, 6}, 24);
    HT y = self_attn.forward(x.cview());
    {
        HT q = self_attn.to_q.forward(x.cview()), k = self_attn.to_k.forward(x.cview()),
           v = self_attn.to_v.forward(x.cview());
        HT o({2, 4, 6}, 0.0);
        for (int b = 0; b < 2; ++b)
            for (int h = 0; h < 2; ++h)
                for (int i = 0; i < 4; ++i) {
                    double s[4], mx = -1e300, z = 0;
                    for (int j = 0; j < 4; ++j) {
                        s[j] = 0;
                        for (int e = 0; e < 3; ++e) s[j] += q(b, i, h * 3 + e) * k(b, j, h * 3 + e);
                        s[j] /= std::sqrt(3.0);
                        mx = std::max(mx, s[j]);
                    }
                    for (int j = 0; j < 4; ++j) z += std::exp(s[j] - mx);
                    for (int e = 0; e < 3; ++e)
                        for (int j = 0; j < 4; ++j) o(b, i, h * 3 + e) += std::exp(s[j] - mx) / z * v(b, j, h * 3 + e);
                }
        HT ref = self_attn.to_out.forward(o.cview());
        for (std::int64_t i = 0; i < y.numel(); ++i) CHECK(std::abs(y[i] - ref[i]) <= 1e-13);
    }
    check_layer_gradients(
        "self-attention", self_attn, x, [&](const HT& v) { return self_attn.forward(v.cview()); },
        [&](const HT& v, const HT& w) {
            multi_head_attention<double>::cache c;
            self_attn.forward(v.cview(), std::nullopt, &c);
            return self_attn.backward(w.cview(), c).dx;
        });

    multi_head_attention<double> cross(6, 3, 2, 5, false);
    randomize<double>(cross, 25);
    HT ctx = randn<double>({2, 3, 5}, 26);
    check_layer_gradients(
        "cross-attention (query input)", cross, x, [&](const HT& v) { return cross.forward(v.cview(), ctx.cview()); },
        [&](const HT& v, const HT& w) {
            multi_head_attention<double>::cache c;
            cross.forward(v.cview(), ctx.cview(), &c);
            return cross.backward(w.cview(), c).dx;
        });
    // the context gradient
    HT w = randn<double>({2, 4, 6}, 27);
    multi_head_attention<double>::cache c;
    cross.forward(x.cview(), ctx.cview(), &c);
    HT dctx = cross.backward(w.cview(), c).dcontext;
    auto r = diffuse::testing::gradient_check(
        "cross-attention dcontext", nn_test::span_of(ctx), nn_test::cspan_of(dctx),
        [&] { return nn_test::dot(w, cross.forward(x.cview(), ctx.cview())); });
    INFO(r.report());
    CHECK(r.passed);
    CHECK_THROWS_WITH_AS(cross.forward(x.cview()), doctest::Contains("needs a context"), diffuse::error);
    HT wrong = randn<double>({2, 3, 4}, 28);
    CHECK_THROWS_WITH_AS(cross.forward(x.cview(), wrong.cview()),
                         doctest::Contains("context has shape [2, 3, 4]; expected [2, M, 5]"), diffuse::error);
}

TEST_CASE("attention: softmax is stable for huge logits") {
    multi_head_attention<float> a(4, 1, 4, 0, true);
    randomize<float>(a, 29, 50.0);  // logits of order 1e5
    host_tensor<float> x = randn<float>({1, 5, 4}, 30, 0, 30.0);
    host_tensor<float> y = a.forward(x.cview());
    for (std::int64_t i = 0; i < y.numel(); ++i) CHECK(std::isfinite(y[i]));
}

TEST_CASE("spatial_attention: group norm, residual and rescale, finite differences") {
    spatial_attention<double> sa(4, 2, 2, 2, 1e-5, 1.7);
    randomize<double>(sa, 31);
    HT x = randn<double>({2, 4, 3, 2}, 32);
    check_layer_gradients(
        "spatial_attention", sa, x, [&](const HT& v) { return sa.forward(v.cview()); },
        [&](const HT& v, const HT& w) {
            spatial_attention<double>::cache c;
            sa.forward(v.cview(), &c);
            return sa.backward(w.cview(), c);
        });
    auto names = parameters_of<double>(sa, "mid_block.attentions.0");
    CHECK(names.front().name == "mid_block.attentions.0.group_norm.weight");
    CHECK(names.back().name == "mid_block.attentions.0.to_out.0.bias");
    spatial_attention<double> nonorm(4, 1, 4, 0, 1e-5);
    CHECK(parameters_of<double>(nonorm).size() == 8);
}

TEST_CASE("resampling: nearest upsample, average pool, up/downsample blocks") {
    HT x = randn<double>({1, 2, 3, 4}, 33);
    HT u = upsample_nearest2x(x.cview());
    CHECK(u.shape() == shape{1, 2, 6, 8});
    CHECK(u(0, 1, 5, 7) == x(0, 1, 2, 3));
    HT p = avg_pool2x2(u.cview());
    for (std::int64_t i = 0; i < x.numel(); ++i) CHECK(std::abs(p[i] - x[i]) <= 1e-15);
    // adjoints: <up(x), w> = <x, up*(w)>, <pool(z), w> = <z, pool*(w)>
    HT w = randn<double>({1, 2, 6, 8}, 34);
    HT ut = upsample_nearest2x_backward(w.cview());
    CHECK(std::abs(nn_test::dot(u, w) - nn_test::dot(x, ut)) <= 1e-12);
    HT z = randn<double>({1, 2, 7, 5}, 35), w2 = randn<double>({1, 2, 3, 2}, 36);
    HT pz = avg_pool2x2(z.cview()), pt = avg_pool2x2_backward(w2.cview(), 7, 5);
    CHECK(std::abs(nn_test::dot(pz, w2) - nn_test::dot(z, pt)) <= 1e-12);

    upsample2d<double> up(3, true, 2);
    downsample2d<double> down0(3, true, 3, 0), down1(3, true, 3, 1), pool(3, false);
    HT xi = randn<double>({2, 3, 4, 4}, 37);
    CHECK(down0.forward(xi.cview()).shape() == shape{2, 3, 2, 2});
    CHECK(down1.forward(xi.cview()).shape() == shape{2, 3, 2, 2});
    for (auto* m : {&down0, &down1, &pool}) {
        randomize<double>(*m, 38);
        check_layer_gradients(
            "downsample2d", *m, xi, [&](const HT& v) { return m->forward(v.cview()); },
            [&](const HT& v, const HT& wv) {
                downsample2d<double>::cache c;
                m->forward(v.cview(), &c);
                return m->backward(wv.cview(), c);
            });
    }
    randomize<double>(up, 39);
    check_layer_gradients(
        "upsample2d", up, xi, [&](const HT& v) { return up.forward(v.cview()); },
        [&](const HT& v, const HT& wv) {
            upsample2d<double>::cache c;
            up.forward(v.cview(), &c);
            return up.backward(wv.cview(), c);
        });
    CHECK(parameters_of<double>(down0, "downsamplers.0").front().name == "downsamplers.0.conv.weight");
}

TEST_CASE("tensor ops: concat/split and tokens/channels are adjoint pairs") {
    HT a = randn<double>({2, 3, 2, 2}, 40), b = randn<double>({2, 1, 2, 2}, 41);
    HT ab = concat_channels(a.cview(), b.cview());
    CHECK(ab.shape() == shape{2, 4, 2, 2});
    CHECK(ab(1, 3, 1, 0) == b(1, 0, 1, 0));
    auto [a2, b2] = split_channels(ab.cview(), 3);
    for (std::int64_t i = 0; i < a.numel(); ++i) CHECK(a2[i] == a[i]);
    for (std::int64_t i = 0; i < b.numel(); ++i) CHECK(b2[i] == b[i]);
    HT t = channels_to_tokens(a.cview());
    CHECK(t.shape() == shape{2, 4, 3});
    CHECK(t(1, 3, 2) == a(1, 2, 1, 1));
    HT back = tokens_to_channels(t.cview(), 2, 2);
    for (std::int64_t i = 0; i < a.numel(); ++i) CHECK(back[i] == a[i]);
    HT c = randn<double>({2, 3, 2, 3}, 42);
    CHECK_THROWS_WITH_AS(concat_channels(a.cview(), c.cview()), doctest::Contains("cannot concatenate shapes"),
                         diffuse::error);
}

TEST_CASE("layers: OpenMP threads give the serial result bitwise") {
    conv2d<float> cv(8, 16, 3, 1, 1);
    group_norm<float> gn(4, 16);
    multi_head_attention<float> at(16, 2, 8, 0, true);
    randomize<float>(cv, 43);
    randomize<float>(gn, 44);
    randomize<float>(at, 45);
    host_tensor<float> x = randn<float>({4, 8, 6, 6}, 46);
    auto run = [&](int threads) {
        scoped_host_threads t(threads);
        zero_grad<float>(cv);
        zero_grad<float>(gn);
        zero_grad<float>(at);
        conv2d<float>::cache c1;
        group_norm<float>::cache c2;
        multi_head_attention<float>::cache c3;
        host_tensor<float> h = cv.forward(x.cview(), &c1);
        h = gn.forward(h.cview(), &c2);
        host_tensor<float> tok = channels_to_tokens(h.cview());
        host_tensor<float> y = at.forward(tok.cview(), std::nullopt, &c3);
        host_tensor<float> w = randn<float>(y.shape(), 47);
        host_tensor<float> d = at.backward(w.cview(), c3).dx;
        d = tokens_to_channels(d.cview(), 6, 6);
        d = gn.backward(d.cview(), c2);
        d = cv.backward(d.cview(), c1);
        std::vector<float> out(y.data(), y.data() + y.numel());
        out.insert(out.end(), d.data(), d.data() + d.numel());
        for (auto* g : {&cv.weight.grad, &gn.weight.grad, &at.to_q.weight.grad})
            out.insert(out.end(), g->data(), g->data() + g->numel());
        return out;
    };
    const auto serial = run(1);
    const auto parallel = run(2);
    REQUIRE(serial.size() == parallel.size());
    std::size_t differ = 0;
    for (std::size_t i = 0; i < serial.size(); ++i) differ += serial[i] != parallel[i];
    CHECK(differ == 0);
}
