#pragma once
// A trained noise-conditional classifier (nn/encoder_classifier.hpp) as a guidance::classifier
// (docs/guidance.md §5): log_prob_grad(x_t, level, labels) = ∇_{x_t} log p_φ(labels | x_t, t), one forward
// and one backward pass of the network (nn::class_log_prob_grad), with t = level.timestep — the training
// timestep the classifier was trained on (train/noise_classifier.hpp), which samplers on a discrete schedule
// pass. x_t [B, ...] whose trailing elements number C·H·W is viewed as images [B, C, H, W] of `image_shape`
// (so 2-D or flat data works with a classifier trained on that layout); the gradient has x_t's shape.
// The classifier was trained on VP inputs (a² + s² = 1); a level (a, s) of another convention with the same
// σ = s/a is the same signal-to-noise ratio, so x_t/r with r = √(a² + s²) is the VP input it expects and the
// gradient in x_t is ∇_{x_vp}/r (identity for VP levels, r = 1).
// Host tensors; the network is referred to (it must outlive the adapter) and is not modified (its parameter
// gradients are saved and restored by class_log_prob_grad), but one network must not serve two threads.

#include <diffuse/core/error.hpp>
#include <diffuse/core/tensor.hpp>
#include <diffuse/models/denoiser.hpp>
#include <diffuse/nn/encoder_classifier.hpp>

#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <type_traits>

namespace diffuse::guidance {

template <class T>
class neural_classifier {
public:
    /// image_shape: [C, H, W] the network takes (C = its in_channels).
    neural_classifier(nn::encoder_classifier<T>& net, shape image_shape) : net_(&net), image_(image_shape) {
        require(image_.rank() == 3, "neural_classifier: image_shape", image_.str(), "[C, H, W]");
    }

    int n_classes() const { return static_cast<int>(net_->num_classes()); }
    const shape& image_shape() const { return image_; }

    template <class S>
    tensor<T, S> log_prob_grad(tensor_view<const T, S> x_t, const models::noise_condition& level,
                               std::span<const int> labels) const {
        tensor<T, S> out(x_t.shape());
        if constexpr (!std::is_same_v<S, host_space>) {
            fail(std::string("neural_classifier: x_t is in ") + S::name +
                 " memory; expected host_space tensors (nn/ runs on the host)");
        } else {
            models::check_noise_condition(level);
            if (!level.timestep)
                fail("neural_classifier: the noise level carries no training timestep, which the classifier is "
                     "conditioned on; use a sampler on a discrete schedule (it passes timesteps)");
            require(x_t.rank() >= 1 && x_t.size(0) >= 0 &&
                        (x_t.size(0) == 0 || x_t.numel() / x_t.size(0) == image_.numel()),
                    "neural_classifier: x_t.shape()", x_t.shape().str(),
                    "[B, ...] with " + std::to_string(image_.numel()) + " elements per item (image_shape " +
                        image_.str() + ")");
            const std::int64_t b = x_t.size(0);
            const double r = std::hypot(level.a, level.s);
            const shape images{b, image_[0], image_[1], image_[2]};
            tensor<T, host_space> x_vp(images);
            for (std::int64_t i = 0; i < x_vp.numel(); ++i) x_vp.data()[i] = static_cast<T>(x_t.data()[i] / r);
            const nn::class_log_prob_result<T> g = nn::class_log_prob_grad(*net_, x_vp.cview(), {*level.timestep}, labels);
            for (std::int64_t i = 0; i < g.grad.numel(); ++i) out.data()[i] = static_cast<T>(g.grad.data()[i] / r);
        }
        return out;
    }

private:
    nn::encoder_classifier<T>* net_;
    shape image_;
};

}  // namespace diffuse::guidance
