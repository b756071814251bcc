#pragma once
// encoder_classifier: a noise-conditional classifier p_φ(y | x_t, t) for classifier guidance
// (Dhariwal & Nichol 2021, §4; guided-diffusion's EncoderUNetModel with pool = "adaptive";
// docs/unet.md §9). It is the encoder half of the U-Net (nn/unet2d.hpp) followed by a pooling head:
//
//   temb   = time_embedding(sinusoidal(t))                           [B, E]
//   h      = conv_in(x)            (x ← 2x − 1 first when center_input_sample)   [B, C0, H, W]
//   h      = down_blocks.0 … down_blocks.{n−1}(h, temb)              (no skips are kept)
//   h      = mid_block(h, temb)                                      (when mid_block_type is set)
//   pooled = mean_{H', W'} SiLU(head.norm(h))                        [B, C_{n−1}]   (GroupNorm, SiLU, avg-pool)
//   logits = head.linear(pooled)                                     [B, K]
//
// guided-diffusion ends with a zero-initialised 1×1 conv on the pooled [B, C, 1, 1] map; on a 1×1 map that
// is a linear layer, which is what head.linear is. Parameter names follow unet2d's (diffusers' style):
//   conv_in, time_embedding.linear_1/2, down_blocks.i.{resnets,attentions,downsamplers}…, mid_block…,
//   head.norm, head.linear.
//
// Configuration: a unet_config (diffusers' UNet2DModel keys) plus num_classes K >= 2. Used: sample_size
// (informational), in_channels, center_input_sample, time_embedding_type ("positional"), time_embedding_dim,
// freq_shift, flip_sin_to_cos, down_block_types (DownBlock2D / AttnDownBlock2D), mid_block_type
// (UNetMidBlock2D or null), block_out_channels, layers_per_block, mid_block_scale_factor,
// downsample_padding, downsample_type, dropout, act_fn ("silu"), attention_head_dim, norm_num_groups,
// attn_norm_num_groups, norm_eps, resnet_time_scale_shift, add_attention. IGNORED (the decoder half does not
// exist): out_channels, up_block_types, upsample_type. REJECTED: UNet2DConditionModel configs
// (cross-attention), class embeddings (class_embed_type, num_class_embeds: the class is the output here).
//
// Every item of the batch is processed independently (group norms are per image), so row b of the logits
// depends on x[b] and t[b] only. Any H, W >= 1 that the downsamplers accept works (a 3×3 stride-2 conv with
// padding 1 maps 1 -> 1; padding 0 and the resnet downsampler need 2 or more).
//
// Free functions (rows are batch items; K classes):
//   log_softmax(logits)                 [B, K] -> [B, K],  log p(k) = z_k − LSE_j z_j   (computed in double)
//   cross_entropy(logits, labels)       mean_b −log p(y_b | x_b) and its gradient (softmax − onehot(y)) / B
//   class_log_prob_grad(f, x, t, y)     log p_φ(y_b | x_b, t_b) [B] and ∇ₓ of it [B, C, H, W], by ONE forward
//                                       and ONE backward with dlogits = onehot(y) − softmax(z) (row b of the
//                                       backward only reaches x[b]); parameter gradients are left unchanged.

#include <diffuse/core/error.hpp>
#include <diffuse/io/json.hpp>
#include <diffuse/nn/blocks/resnet_block.hpp>
#include <diffuse/nn/blocks/unet_blocks.hpp>
#include <diffuse/nn/detail/unet_builder.hpp>
#include <diffuse/nn/layer.hpp>
#include <diffuse/nn/layers/activations.hpp>
#include <diffuse/nn/layers/conv2d.hpp>
#include <diffuse/nn/layers/dropout.hpp>
#include <diffuse/nn/layers/group_norm.hpp>
#include <diffuse/nn/layers/linear.hpp>
#include <diffuse/nn/layers/tensor_ops.hpp>
#include <diffuse/nn/layers/timestep_embedding.hpp>
#include <diffuse/nn/unet_config.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace diffuse::nn {

// ---- configuration -----------------------------------------------------------------------------

namespace detail {

/// The encoder's view of a U-Net config: the ignored decoder keys set to fixed values, so two configs
/// that differ only in them build the same classifier (and compare equal).
inline unet_config encoder_unet(unet_config u) {
    u.out_channels = u.in_channels > 0 ? u.in_channels : 1;
    u.up_block_types.assign(u.down_block_types.size(), "UpBlock2D");
    u.upsample_type = "conv";
    return u;
}

/// Strips the "diffuse::error: " prefix of a caught error (to re-throw it with more context).
inline std::string error_text(const diffuse::error& e) {
    std::string s = e.what();
    const std::string prefix = "diffuse::error: ";
    if (s.rfind(prefix, 0) == 0) s.erase(0, prefix.size());
    return s;
}

}  // namespace detail

/// An encoder_classifier's configuration: the U-Net keys it uses and the number of classes.
/// JSON form (to_json / from_json): one flat object with diffusers' UNet2DModel keys,
///   {"_class_name": "EncoderClassifier", "num_classes": K, "in_channels": …, "down_block_types": […], …}
/// out_channels, up_block_types and upsample_type are accepted and ignored by from_json, and not written.
struct encoder_classifier_config {
    unet_config unet = unet_config::defaults(unet_kind::unet2d);
    std::int64_t num_classes = 2;

    /// Throws diffuse::error ("encoder_classifier config: <key> = <value>; expected …") for anything the
    /// classifier does not support.
    void validate() const {
        const std::string who = "encoder_classifier config";
        if (unet.kind != unet_kind::unet2d)
            fail(who + ": a " + unet.class_name() +
                 " config is not supported (cross-attention blocks); expected a UNet2DModel config "
                 "(unet_kind::unet2d) with DownBlock2D / AttnDownBlock2D blocks");
        if (num_classes < 2) fail_argument(who + ": num_classes", num_classes, "an integer >= 2");
        if (unet.class_embed_type)
            fail_argument(who + ": class_embed_type", *unet.class_embed_type,
                          "null (a classifier has no class embedding: the class is its output)");
        if (unet.num_class_embeds)
            fail_argument(who + ": num_class_embeds", *unet.num_class_embeds,
                          "null (a classifier has no class embedding: the class is its output)");
        if (unet.down_block_types.empty()) fail(who + ": down_block_types = []; expected at least one block");
        if (unet.down_block_types.size() != unet.block_out_channels.size())
            fail(who + ": down_block_types has " + std::to_string(unet.down_block_types.size()) +
                 " entries and block_out_channels " + std::to_string(unet.block_out_channels.size()) +
                 "; expected one block type per level");
        try {
            detail::encoder_unet(unet).validate();
        } catch (const diffuse::error& e) {
            fail(who + " (the U-Net keys): " + detail::error_text(e));
        }
    }

    /// Reads the flat JSON form above; `what` names the source in errors.
    static encoder_classifier_config from_json(const io::json_value& j,
                                               std::string_view what = "encoder_classifier config.json") {
        const std::string w(what);
        if (!j.is_object()) fail(w + ": expected a JSON object (EncoderClassifier config)");
        encoder_classifier_config c;
        io::json_value u = io::json_value::object({{"_class_name", "UNet2DModel"}});
        bool have_classes = false;
        // the number of levels (UNet2DModel's defaults have 4 block types and 4 channel counts)
        const std::size_t default_levels = unet_config::defaults(unet_kind::unet2d).down_block_types.size();
        std::size_t levels = default_levels, channel_levels = default_levels;
        if (const auto* d = j.find("down_block_types"); d && d->is_array()) levels = d->as_array().size();
        if (const auto* b = j.find("block_out_channels"); b && b->is_array()) channel_levels = b->as_array().size();
        if (levels != channel_levels)
            fail(w + ": down_block_types has " + std::to_string(levels) + " entries and block_out_channels " +
                 std::to_string(channel_levels) + " (UNet2DModel's defaults have " + std::to_string(default_levels) +
                 " each); expected one block type per level");
        for (const auto& [key, value] : j.as_object()) {
            if (key == "_class_name") {
                const std::string& s = value.as_string(w + ": _class_name");
                if (s != "EncoderClassifier")
                    fail(w + ": _class_name = \"" + s + "\"; expected \"EncoderClassifier\"");
            } else if (key == "num_classes") {
                c.num_classes = value.as_int64(w + ": num_classes");
                have_classes = true;
            } else if (key == "out_channels" || key == "up_block_types" || key == "upsample_type") {
                continue;  // the decoder's keys: ignored
            } else if (!key.empty() && key[0] == '_') {
                continue;  // _diffusers_version, _name_or_path, ...
            } else {
                u.as_object().emplace_back(key, value);
            }
        }
        if (!have_classes) fail(w + ": num_classes is missing; expected the number of classes (an integer >= 2)");
        // fill the decoder keys so the U-Net parser's consistency checks pass
        u.as_object().emplace_back("up_block_types", io::json_value(std::vector<std::string>(levels, "UpBlock2D")));
        try {
            c.unet = unet_config::from_json(u, w);
        } catch (const diffuse::error& e) {
            fail(detail::error_text(e));
        }
        c.unet = detail::encoder_unet(std::move(c.unet));
        c.validate();
        return c;
    }

    /// The flat JSON form (every used UNet2DModel key, num_classes, _class_name "EncoderClassifier").
    io::json_value to_json() const {
        io::json_value u = detail::encoder_unet(unet).to_json();
        io::json_value j = io::json_value::object({{"_class_name", "EncoderClassifier"}, {"num_classes", num_classes}});
        for (const auto& [key, value] : u.as_object()) {
            if (key == "_class_name" || key == "out_channels" || key == "up_block_types" || key == "upsample_type")
                continue;
            j.as_object().emplace_back(key, value);
        }
        return j;
    }

    friend bool operator==(const encoder_classifier_config& a, const encoder_classifier_config& b) {
        return a.num_classes == b.num_classes && detail::encoder_unet(a.unet) == detail::encoder_unet(b.unet);
    }
};

// ---- the model ---------------------------------------------------------------------------------

template <class T>
class encoder_classifier {
public:
    struct cache {
        typename conv2d<T>::cache conv_in;
        typename timestep_embedding<T>::cache time;
        std::vector<typename down_block<T>::cache> down;
        typename mid_block<T>::cache mid;
        typename group_norm<T>::cache norm;
        typename activation<T>::cache act;
        typename linear<T>::cache head;
        std::vector<diffuse::shape> skip_shapes;  ///< the (unused) skips the down blocks push
        diffuse::shape pooled_from;              ///< [B, C, H', W'] before the mean
        bool filled = false;
    };

    explicit encoder_classifier(encoder_classifier_config config) : config_(std::move(config)) {
        config_.validate();
        build();
    }
    encoder_classifier(const unet_config& unet, std::int64_t num_classes)
        : encoder_classifier(encoder_classifier_config{unet, num_classes}) {}

    const encoder_classifier_config& config() const { return config_; }
    std::int64_t num_classes() const { return config_.num_classes; }
    std::int64_t in_channels() const { return config_.unet.in_channels; }

    conv2d<T> conv_in;
    timestep_embedding<T> time_embedding;
    std::vector<down_block<T>> down_blocks;
    std::optional<mid_block<T>> mid;
    group_norm<T> head_norm;    ///< "head.norm"
    linear<T> head_linear;      ///< "head.linear"

    void collect(parameter_list<T>& out, const std::string& prefix) {
        conv_in.collect(out, join_name(prefix, "conv_in"));
        time_embedding.collect(out, join_name(prefix, "time_embedding"));
        for (std::size_t i = 0; i < down_blocks.size(); ++i)
            down_blocks[i].collect(out, join_name(prefix, "down_blocks." + std::to_string(i)));
        if (mid) mid->collect(out, join_name(prefix, "mid_block"));
        head_norm.collect(out, join_name(prefix, "head.norm"));
        head_linear.collect(out, join_name(prefix, "head.linear"));
    }

    parameter_list<T> parameters() { return parameters_of<T>(*this); }
    std::int64_t parameter_count() { return count_parameters<T>(*this); }

    /// x [B, in_channels, H, W], timesteps [B] or one for all -> logits [B, K].
    /// dropout: the randomness of this call when the config has dropout > 0 (training); none: no dropout.
    host_tensor<T> forward(cview<T> x, const std::vector<double>& timesteps, cache* c = nullptr,
                           std::optional<dropout_key> dropout = std::nullopt) const {
        const std::int64_t B = check_inputs(x, timesteps);
        const unet_config& u = config_.unet;
        std::vector<double> t(static_cast<std::size_t>(B));
        for (std::int64_t b = 0; b < B; ++b)
            t[static_cast<std::size_t>(b)] = timesteps.size() == 1 ? timesteps[0] : timesteps[static_cast<std::size_t>(b)];
        host_tensor<T> e = sinusoidal_embedding<T>(t, u.block_out_channels[0], u.flip_sin_to_cos, u.freq_shift);
        host_tensor<T> temb = time_embedding.forward(e.cview(), c ? &c->time : nullptr);
        block_context<T> ctx{temb.cview(), std::nullopt, dropout};
        host_tensor<T> h;
        if (u.center_input_sample) {
            host_tensor<T> xc(x.shape());
            for (std::int64_t i = 0; i < x.numel(); ++i) xc.data()[i] = T(2) * x.data()[i] - T(1);
            h = conv_in.forward(xc.cview(), c ? &c->conv_in : nullptr);
        } else {
            h = conv_in.forward(x, c ? &c->conv_in : nullptr);
        }
        std::vector<host_tensor<T>> skips;  // the down blocks push their outputs; the encoder does not use them
        if (c) {
            c->down.resize(down_blocks.size());
            c->skip_shapes.clear();
        }
        for (std::size_t i = 0; i < down_blocks.size(); ++i) {
            h = down_blocks[i].forward(std::move(h), ctx, skips, c ? &c->down[i] : nullptr);
            if (c)
                for (const auto& s : skips) c->skip_shapes.push_back(s.shape());
            skips.clear();  // indices restart at 0 per block: see backward
        }
        if (mid) h = mid->forward(std::move(h), ctx, c ? &c->mid : nullptr);
        // head: GroupNorm -> SiLU -> mean over H', W' -> linear
        const activation<T> silu(activation_kind::silu);
        h = head_norm.forward(h.cview(), c ? &c->norm : nullptr);
        h = silu.forward(h.cview(), c ? &c->act : nullptr);
        const std::int64_t C = h.size(1), S = h.size(2) * h.size(3);
        host_tensor<T> pooled = sum_spatial(h.cview());
        const T inv_s = T(1) / static_cast<T>(S);
        for (std::int64_t i = 0; i < pooled.numel(); ++i) pooled.data()[i] *= inv_s;
        host_tensor<T> logits = head_linear.forward(pooled.cview(), c ? &c->head : nullptr);
        if (c) {
            c->pooled_from = diffuse::shape{B, C, h.size(2), h.size(3)};
            c->filled = true;
        }
        return logits;
    }

    /// dlogits [B, K] -> dx [B, in_channels, H, W]; parameter gradients accumulate (nn/layer.hpp).
    host_tensor<T> backward(cview<T> dlogits, const cache& c) {
        require_cached(c.filled, "encoder_classifier");
        const std::int64_t B = c.pooled_from[0], C = c.pooled_from[1], Hh = c.pooled_from[2], Wh = c.pooled_from[3];
        require_shape(dlogits.shape() == diffuse::shape{B, config_.num_classes}, "encoder_classifier", "dlogits",
                      dlogits.shape(),
                      "[" + std::to_string(B) + ", " + std::to_string(config_.num_classes) + "] (the logits' shape)");
        host_tensor<T> dpooled = head_linear.backward(dlogits, c.head);
        // the mean: every position of channel c gets dpooled[b, c] / S
        const std::int64_t S = Hh * Wh;
        host_tensor<T> d({B, C, Hh, Wh});
        const T inv_s = T(1) / static_cast<T>(S);
        for (std::int64_t i = 0; i < B * C; ++i) std::fill_n(d.data() + i * S, S, dpooled.data()[i] * inv_s);
        const activation<T> silu(activation_kind::silu);
        d = silu.backward(d.cview(), c.act);
        d = head_norm.backward(d.cview(), c.norm);
        block_gradients<T> g;
        g.dtemb = host_tensor<T>({B, config_.unet.time_embed_dim()}, T(0));
        if (mid) d = mid->backward(std::move(d), c.mid, g);
        // the skips' gradients are zero (nothing used them); each block indexes its own from 0
        std::size_t end = c.skip_shapes.size();
        for (std::size_t i = down_blocks.size(); i-- > 0;) {
            const std::size_t n = c.down[i].skip_index.size();
            std::vector<host_tensor<T>> dskips;
            dskips.reserve(n);
            for (std::size_t k = end - n; k < end; ++k) dskips.emplace_back(c.skip_shapes[k], T(0));
            end -= n;
            d = down_blocks[i].backward(std::move(d), c.down[i], dskips, g);
        }
        host_tensor<T> dx = conv_in.backward(d.cview(), c.conv_in);
        if (config_.unet.center_input_sample)
            for (std::int64_t i = 0; i < dx.numel(); ++i) dx.data()[i] *= T(2);
        time_embedding.backward(g.dtemb.cview(), c.time);
        return dx;
    }

private:
    std::int64_t check_inputs(cview<T> x, const std::vector<double>& timesteps) const {
        const std::string who = "encoder_classifier";
        const std::int64_t cin = config_.unet.in_channels;
        require_shape(x.rank() == 4 && x.size(1) == cin, who, "x", x.shape(),
                      "[B, " + std::to_string(cin) + ", H, W] (in_channels = " + std::to_string(cin) + ")");
        const std::int64_t B = x.size(0);
        require_size(B, "batch size", who);
        if (x.size(2) < 1 || x.size(3) < 1) fail(who + ": x has an empty spatial size " + x.shape().str());
        const auto nt = static_cast<std::int64_t>(timesteps.size());
        if (nt != 1 && nt != B)
            fail(who + ": " + std::to_string(nt) + " timesteps for a batch of " + std::to_string(B) +
                 "; expected 1 (shared) or " + std::to_string(B));
        // the spatial size through the downsamplers
        std::int64_t h = x.size(2), w = x.size(3);
        for (std::size_t i = 0; i < down_blocks.size(); ++i) {
            const auto& blk = down_blocks[i];
            bool ok = true;
            if (blk.downsampler && blk.downsampler->conv) {
                // a 3×3 stride-2 conv needs size + (padding on both sides) >= 3
                const std::int64_t p = config_.unet.downsample_padding, pad = p == 0 ? 1 : 2 * p;
                ok = h + pad >= 3 && w + pad >= 3;
                if (ok) {
                    h = blk.downsampler->conv->out_h(h);
                    w = blk.downsampler->conv->out_w(w);
                }
            } else if (blk.resnet_downsampler) {
                ok = h >= 2 && w >= 2;
                h /= 2;
                w /= 2;
            }
            if (!ok)
                fail(who + ": x has spatial size " + std::to_string(x.size(2)) + "x" + std::to_string(x.size(3)) +
                     ", which down_blocks." + std::to_string(i) + "'s downsampler cannot reduce (" +
                     std::to_string(h) + "x" + std::to_string(w) +
                     " at that level); expected a size the downsamplers accept (2 or more per side at every "
                     "downsampling level with downsample_padding = 0 or downsample_type \"resnet\")");
        }
        return B;
    }

    void build() {
        const unet_config c = detail::encoder_unet(config_.unet);
        const auto& boc = c.block_out_channels;
        const std::int64_t E = c.time_embed_dim(), G = c.norm_num_groups;
        const double eps = c.norm_eps;
        conv_in = conv2d<T>(c.in_channels, boc[0], 3, 1, 1);
        time_embedding = timestep_embedding<T>(boc[0], E);
        detail::unet_builder<T> build(c);  // the same encoder half as unet2d
        down_blocks = build.down_blocks();
        mid = build.mid();
        head_norm = group_norm<T>(G, boc.back(), eps);
        head_linear = linear<T>(boc.back(), config_.num_classes);
    }

    encoder_classifier_config config_;
};

// ---- softmax, cross-entropy and the guidance gradient ------------------------------------------

/// log softmax of each row: logits [B, K] -> [B, K], z_k − (m + log Σ_j e^{z_j − m}), m = max_j z_j
/// (in double; cast to T).
template <class T>
host_tensor<T> log_softmax(cview<T> logits) {
    require_shape(logits.rank() == 2 && logits.size(1) >= 1, "log_softmax", "logits", logits.shape(), "[B, K]");
    const std::int64_t B = logits.size(0), K = logits.size(1);
    host_tensor<T> out(logits.shape());
    for (std::int64_t b = 0; b < B; ++b) {
        const T* z = logits.data() + b * K;
        double m = static_cast<double>(z[0]);
        for (std::int64_t k = 1; k < K; ++k) m = std::max(m, static_cast<double>(z[k]));
        double s = 0;
        for (std::int64_t k = 0; k < K; ++k) s += std::exp(static_cast<double>(z[k]) - m);
        const double lse = m + std::log(s);
        for (std::int64_t k = 0; k < K; ++k) out.data()[b * K + k] = static_cast<T>(static_cast<double>(z[k]) - lse);
    }
    return out;
}

namespace detail {
inline void check_labels(std::span<const int> labels, std::int64_t B, std::int64_t K, const std::string& who) {
    if (static_cast<std::int64_t>(labels.size()) != B)
        fail(who + ": " + std::to_string(labels.size()) + " labels for a batch of " + std::to_string(B) +
             "; expected one label per row (" + std::to_string(B) + ")");
    for (std::size_t b = 0; b < labels.size(); ++b)
        if (labels[b] < 0 || labels[b] >= K)
            fail_argument(who + ": labels[" + std::to_string(b) + "]", labels[b],
                          "a class in [0, " + std::to_string(K) + ")");
}
}  // namespace detail

template <class T>
struct cross_entropy_result {
    double loss = 0;         ///< mean_b −log softmax(z_b)[y_b]
    host_tensor<T> dlogits;  ///< ∂loss/∂z = (softmax(z) − onehot(y)) / B   [B, K]
};

/// The mean cross-entropy of logits [B, K] against labels [B] (each in [0, K)) and its gradient.
template <class T>
cross_entropy_result<T> cross_entropy(cview<T> logits, std::span<const int> labels) {
    require_shape(logits.rank() == 2 && logits.size(0) >= 1, "cross_entropy", "logits", logits.shape(), "[B, K]");
    const std::int64_t B = logits.size(0), K = logits.size(1);
    detail::check_labels(labels, B, K, "cross_entropy");
    const host_tensor<T> lp = log_softmax(logits);
    cross_entropy_result<T> r;
    r.dlogits = host_tensor<T>(logits.shape());
    double total = 0;
    for (std::int64_t b = 0; b < B; ++b) {
        const int y = labels[static_cast<std::size_t>(b)];
        total -= static_cast<double>(lp.data()[b * K + y]);
        for (std::int64_t k = 0; k < K; ++k) {
            const double p = std::exp(static_cast<double>(lp.data()[b * K + k]));
            r.dlogits.data()[b * K + k] = static_cast<T>((p - (k == y ? 1.0 : 0.0)) / static_cast<double>(B));
        }
    }
    r.loss = total / static_cast<double>(B);
    return r;
}

template <class T>
struct class_log_prob_result {
    std::vector<double> log_prob;  ///< log p_φ(y_b | x_b, t_b)   [B]
    host_tensor<T> grad;           ///< ∇_{x_b} log p_φ(y_b | x_b, t_b)   [B, C, H, W]
};

/// log p_φ(y_b | x_b, t_b) and its gradient in x_b for every item b (the classifier-guidance term,
/// Dhariwal & Nichol 2021 Alg. 1/2): one forward, then one backward with
///   dlogits[b, k] = onehot(y_b)_k − softmax(z_b)_k   (= ∂ log softmax(z_b)[y_b] / ∂z_b).
/// Since no layer mixes batch items, row b of dx is ∇_{x_b} of item b's term alone.
/// The classifier's parameter gradients are saved and restored, so they are unchanged by the call (not
/// thread-safe on one classifier object). timesteps: [B] or one for all; labels: [B], each in [0, K).
template <class T>
class_log_prob_result<T> class_log_prob_grad(encoder_classifier<T>& classifier, cview<T> x,
                                             const std::vector<double>& timesteps, std::span<const int> labels) {
    if (x.rank() == 4) detail::check_labels(labels, x.size(0), classifier.num_classes(), "class_log_prob_grad");
    typename encoder_classifier<T>::cache c;
    const host_tensor<T> z = classifier.forward(x, timesteps, &c);
    const std::int64_t B = z.size(0), K = z.size(1);
    detail::check_labels(labels, B, K, "class_log_prob_grad");
    const host_tensor<T> lp = log_softmax(z.cview());
    class_log_prob_result<T> r;
    r.log_prob.resize(static_cast<std::size_t>(B));
    host_tensor<T> dz(z.shape());
    for (std::int64_t b = 0; b < B; ++b) {
        const int y = labels[static_cast<std::size_t>(b)];
        r.log_prob[static_cast<std::size_t>(b)] = static_cast<double>(lp.data()[b * K + y]);
        for (std::int64_t k = 0; k < K; ++k)
            dz.data()[b * K + k] =
                static_cast<T>((k == y ? 1.0 : 0.0) - std::exp(static_cast<double>(lp.data()[b * K + k])));
    }
    // keep the caller's parameter gradients: backward accumulates into them
    auto params = classifier.parameters();
    std::vector<host_tensor<T>> saved;
    saved.reserve(params.size());
    for (auto& p : params) {
        saved.push_back(p.param->grad);
        p.param->zero_grad();
    }
    r.grad = classifier.backward(dz.cview(), c);
    for (std::size_t k = 0; k < params.size(); ++k) params[k].param->grad = std::move(saved[k]);
    return r;
}

}  // namespace diffuse::nn
