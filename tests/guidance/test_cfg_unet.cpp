// Classifier-free guidance of the U-Net (models/unet_denoiser.hpp): the joined 2B call of
// guidance/condition.hpp — labels with the null label, and context with the empty prompt's context — gives
// what two separate calls give, and bad halves are named.

#include "support/check.hpp"
#include "support/tiny_unets.hpp"

#include <diffuse/guidance/cfg.hpp>
#include <diffuse/guidance/condition.hpp>
#include <diffuse/models/unet_denoiser.hpp>
#include <diffuse/nn/init.hpp>
#include <diffuse/nn/unet2d.hpp>

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <vector>

using namespace diffuse;
using guidance::cfg_condition;
using models::noise_condition;
using models::unet_condition;
using HT = tensor<double, host_space>;

namespace {

HT random_tensor(shape s, std::uint64_t seed) {
    HT t(s);
    philox_rng rng(seed);
    rng.fill_normal(t.data(), static_cast<std::size_t>(t.numel()));
    return t;
}

double max_diff(const HT& a, const HT& b) {
    double m = 0.0;
    for (std::int64_t i = 0; i < a.numel(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
    return m;
}

}  // namespace

TEST_CASE("cfg with a U-Net: one 2B call with null labels / empty context equals two B calls") {
    const noise_condition level = noise_condition::vp(0.4, 600.0);
    SUBCASE("class labels and the null label of a UNet2DModel") {
        nn::unet_config c = test::tiny_unet2d();
        c.out_channels = c.in_channels;  // a denoiser's output has x_t's shape
        c.num_class_embeds = 4;          // 3 classes + the null label 3
        nn::unet2d<double> net(c);
        nn::init_parameters<double>(net, 2);
        const models::unet_denoiser<double> model(net);
        const HT x = random_tensor(shape{3, 3, 8, 8}, 5);
        const std::vector<int> labels = {0, 2, 1};
        const std::vector<int> nulls = guidance::null_labels(3, net.config().null_class_label());
        const cfg_condition<models::class_labels> cond{labels, nulls};
        HT joined(x.shape()), separate(x.shape());
        guidance::cfg(model, {.weight = 3.0})(joined.view(), x.cview(), level, cond);
        guidance::cfg(model, {.weight = 3.0, .batched = false})(separate.view(), x.cview(), level, cond);
        // each image's output depends on that image alone; the 2B call differs only in GEMM blocking:
        // double rounding of O(1) sums over <= 9·8 terms
        CHECK(max_diff(joined, separate) <= 1e-12);
    }
    SUBCASE("cross-attention context and the empty prompt's context of a UNet2DConditionModel") {
        const nn::unet_config c = test::tiny_cond();
        nn::unet2d<double> net(c);
        nn::init_parameters<double>(net, 3);
        const models::unet_denoiser<double> model(net);
        const HT x = random_tensor(shape{2, 2, 8, 8}, 6);
        const HT context = random_tensor(shape{2, 5, 3}, 7), empty = random_tensor(shape{2, 5, 3}, 8);
        unet_condition<double> pos, neg;
        pos.encoder_hidden_states = context.cview();
        neg.encoder_hidden_states = empty.cview();
        const cfg_condition<unet_condition<double>> cond{pos, neg};
        HT joined(x.shape()), separate(x.shape());
        guidance::cfg(model, {.weight = 5.0})(joined.view(), x.cview(), level, cond);
        guidance::cfg(model, {.weight = 5.0, .batched = false})(separate.view(), x.cview(), level, cond);
        CHECK(max_diff(joined, separate) <= 1e-12);
        // a half without context, or a context of the wrong batch, is named
        const cfg_condition<unet_condition<double>> half{pos, unet_condition<double>{}};
        DIFFUSE_CHECK_ERROR(guidance::cfg(model, {.weight = 5.0})(joined.view(), x.cview(), level, half),
                            "encoder_hidden_states is given for one half");
        const HT three = random_tensor(shape{3, 5, 3}, 9);
        unet_condition<double> wrong;
        wrong.encoder_hidden_states = three.cview();
        const cfg_condition<unet_condition<double>> bad{pos, wrong};
        DIFFUSE_CHECK_ERROR(guidance::cfg(model, {.weight = 5.0})(joined.view(), x.cview(), level, bad),
                            "uncond: encoder_hidden_states.shape()", "B = 2");
    }
}
