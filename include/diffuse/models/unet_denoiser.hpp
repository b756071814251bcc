#pragma once
// unet_denoiser: a U-Net (nn/unet2d.hpp) as a Denoiser (models/denoiser.hpp), so every sampler and
// guidance wrapper can run it (docs/unet.md §6).
//
//   unet_denoiser<T> model(net, prediction_type::epsilon);
//   model(out, x_t, level, cond)      out = net(x_t, level.timestep, cond)
//
// The network sees x_t as given (diffusers' convention: VP form, a = √ᾱ) and the training timestep
// level.timestep, which a sampler built from a discrete schedule always provides (a level without a
// timestep is an error naming it: interpolate one with levels' σ→t map, or wrap an EDM network with
// edm_preconditioning instead). Conditions:
//   no_condition                unconditional model
//   class_labels                labels [B] for a class-conditional model (num_class_embeds / "timestep")
//   unet_condition<T>           labels, encoder_hidden_states [B, M, D] (cross-attention model),
//                               extra channels [B, Ce, H, W] appended to x_t (concatenation conditioning,
//                               e.g. an inpainting mask and masked image: in_channels = C + Ce) and/or
//                               a class embedding [B, E] (class_embed_type "identity")
// Host tensors only (nn/ runs on the host).

#include <diffuse/core/error.hpp>
#include <diffuse/core/tensor.hpp>
#include <diffuse/models/denoiser.hpp>
#include <diffuse/nn/layers/tensor_ops.hpp>
#include <diffuse/nn/unet2d.hpp>

#include <optional>
#include <span>
#include <string>
#include <vector>

namespace diffuse::models {

/// The condition of a cross-attention U-Net call.
template <class T>
struct unet_condition {
    std::span<const int> labels{};                                    ///< [B] or empty
    std::optional<tensor_view<const T, host_space>> encoder_hidden_states;  ///< [B, M, cross_attention_dim]
    std::optional<tensor_view<const T, host_space>> concat;  ///< [B, Ce, H, W] appended to x_t's channels
    std::optional<tensor_view<const T, host_space>> class_embedding;  ///< [B, E] (class_embed_type "identity")
};

template <class T>
class unet_denoiser {
public:
    explicit unet_denoiser(const nn::unet2d<T>& net, prediction_type prediction = prediction_type::epsilon)
        : net_(&net), prediction_(prediction) {}

    prediction_type prediction() const { return prediction_; }
    const nn::unet2d<T>& net() const { return *net_; }

    void operator()(tensor_view<T, host_space> out, tensor_view<const T, host_space> x_t,
                    const noise_condition& level, const no_condition&) const {
        run(out, x_t, level, unet_condition<T>{});
    }
    void operator()(tensor_view<T, host_space> out, tensor_view<const T, host_space> x_t,
                    const noise_condition& level, class_labels labels) const {
        unet_condition<T> cond;
        cond.labels = labels;
        run(out, x_t, level, cond);
    }
    void operator()(tensor_view<T, host_space> out, tensor_view<const T, host_space> x_t,
                    const noise_condition& level, const unet_condition<T>& cond) const {
        run(out, x_t, level, cond);
    }

private:
    void run(tensor_view<T, host_space> out, tensor_view<const T, host_space> x_t, const noise_condition& level,
             const unet_condition<T>& cond) const {
        detail::check_call_tensors(out, x_t, "unet_denoiser");
        check_noise_condition(level);
        if (!level.timestep)
            fail("unet_denoiser: the noise level (a = " + std::to_string(level.a) + ", s = " +
                 std::to_string(level.s) +
                 ") carries no training timestep, which the U-Net is conditioned on; use a sampler on a discrete "
                 "schedule (it passes timesteps) or levels with a σ→t map");
        nn::unet_inputs<T> in;
        in.timesteps = {*level.timestep};
        in.class_labels.assign(cond.labels.begin(), cond.labels.end());
        in.encoder_hidden_states = cond.encoder_hidden_states;
        in.class_embedding = cond.class_embedding;
        nn::host_tensor<T> y;
        if (cond.concat) {
            const nn::host_tensor<T> xin = nn::concat_channels(x_t, *cond.concat);
            y = net_->forward(xin.cview(), in);
        } else {
            y = net_->forward(x_t, in);
        }
        require_same_shape(y.shape(), "the U-Net's output", out.shape(), "out");
        std::copy(y.data(), y.data() + y.numel(), out.data());
    }

    const nn::unet2d<T>* net_;
    prediction_type prediction_;
};

}  // namespace diffuse::models
