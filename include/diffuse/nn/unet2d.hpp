#pragma once
// unet2d: the conditional U-Net (Ronneberger et al. 2015; Ho et al. 2020 App. B; Rombach et al. 2022),
// diffusers' UNet2DModel and UNet2DConditionModel with their parameter names (docs/unet.md).
//
// forward(x [B, Cin, H, W], inputs) -> [B, Cout, H, W]:
//   x ← 2x − 1                                           (center_input_sample)
//   temb = time_embedding(sinusoidal(t))                 [B, E],  E = time_embed_dim
//        + class_embedding(labels)                       label table, MLP of sinusoidal(label), or identity
//   h = conv_in(x);  skips = [h]
//   down blocks (push skips) -> mid block -> up blocks (pop and concatenate skips)
//   y = conv_out(SiLU(conv_norm_out(h)))
// Conditioning enters through temb (timestep, class label: added), through every resnet's norm2
// (scale_shift = adaptive group norm), through cross-attention on encoder_hidden_states
// (UNet2DConditionModel), and through extra input channels (concatenation: in_channels > data channels).
//
// backward(dy, cache) returns dx and, when present, the gradients of encoder_hidden_states and of the
// identity class embedding; parameter gradients accumulate (nn/layer.hpp).

#include <diffuse/nn/blocks/resnet_block.hpp>
#include <diffuse/nn/blocks/transformer2d.hpp>
#include <diffuse/nn/blocks/unet_blocks.hpp>
#include <diffuse/nn/detail/unet_builder.hpp>
#include <diffuse/nn/layer.hpp>
#include <diffuse/nn/layers/activations.hpp>
#include <diffuse/nn/layers/conv2d.hpp>
#include <diffuse/nn/layers/embedding.hpp>
#include <diffuse/nn/layers/group_norm.hpp>
#include <diffuse/nn/layers/timestep_embedding.hpp>
#include <diffuse/nn/unet_config.hpp>

#include <cstdint>
#include <iomanip>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace diffuse::nn {

/// The inputs of one U-Net call besides the sample.
template <class T>
struct unet_inputs {
    std::vector<double> timesteps;           ///< [B], or one value for the whole batch
    std::vector<std::int64_t> class_labels;  ///< [B] for a label table or class_embed_type "timestep"
    std::optional<cview<T>> class_embedding;  ///< [B, E] for class_embed_type "identity"
    std::optional<cview<T>> encoder_hidden_states;  ///< [B, M, cross_attention_dim] (UNet2DConditionModel)
    std::optional<dropout_key> dropout;      ///< training: dropout randomness of this call
};

template <class T>
class unet2d {
public:
    struct cache {
        typename conv2d<T>::cache conv_in, conv_out;
        typename timestep_embedding<T>::cache time, class_mlp;
        typename embedding<T>::cache class_table;
        std::vector<typename down_block<T>::cache> down;
        typename mid_block<T>::cache mid;
        std::vector<typename up_block<T>::cache> up;
        typename group_norm<T>::cache norm_out;
        typename activation<T>::cache act_out;
        std::int64_t skips = 0;
        bool has_context = false;
        bool filled = false;
    };

    struct gradients {
        host_tensor<T> dx;                     ///< [B, Cin, H, W]
        host_tensor<T> dencoder_hidden_states;  ///< [B, M, D] (cross-attention model)
        host_tensor<T> dclass_embedding;       ///< [B, E] (class_embed_type "identity")
    };

    explicit unet2d(unet_config config) : config_(std::move(config)) {
        config_.validate();
        build();
    }

    const unet_config& config() const { return config_; }

    conv2d<T> conv_in;
    timestep_embedding<T> time_embedding;
    std::optional<embedding<T>> class_table;            ///< "class_embedding" (nn.Embedding)
    std::optional<timestep_embedding<T>> class_mlp;     ///< "class_embedding" (class_embed_type "timestep")
    std::vector<down_block<T>> down_blocks;
    std::optional<mid_block<T>> mid;
    std::vector<up_block<T>> up_blocks;
    group_norm<T> conv_norm_out;
    conv2d<T> conv_out;

    void collect(parameter_list<T>& out, const std::string& prefix) {
        conv_in.collect(out, join_name(prefix, "conv_in"));
        time_embedding.collect(out, join_name(prefix, "time_embedding"));
        if (class_table) class_table->collect(out, join_name(prefix, "class_embedding"));
        if (class_mlp) class_mlp->collect(out, join_name(prefix, "class_embedding"));
        for (std::size_t i = 0; i < down_blocks.size(); ++i)
            down_blocks[i].collect(out, join_name(prefix, "down_blocks." + std::to_string(i)));
        if (mid) mid->collect(out, join_name(prefix, "mid_block"));
        for (std::size_t i = 0; i < up_blocks.size(); ++i)
            up_blocks[i].collect(out, join_name(prefix, "up_blocks." + std::to_string(i)));
        conv_norm_out.collect(out, join_name(prefix, "conv_norm_out"));
        conv_out.collect(out, join_name(prefix, "conv_out"));
    }

    parameter_list<T> parameters() { return parameters_of<T>(*this); }
    std::int64_t parameter_count() { return count_parameters<T>(*this); }

    /// x [B, in_channels, H, W] -> [B, out_channels, H, W].
    host_tensor<T> forward(cview<T> x, const unet_inputs<T>& in, cache* c = nullptr) const {
        const std::int64_t B = check_inputs(x, in);
        // time (and class) embedding
        std::vector<double> t(static_cast<std::size_t>(B));
        for (std::int64_t b = 0; b < B; ++b) t[b] = in.timesteps.size() == 1 ? in.timesteps[0] : in.timesteps[b];
        const std::int64_t C0 = config_.block_out_channels[0];
        host_tensor<T> e = sinusoidal_embedding<T>(t, C0, config_.flip_sin_to_cos, config_.freq_shift);
        host_tensor<T> temb = time_embedding.forward(e.cview(), c ? &c->time : nullptr);
        if (class_table) {
            host_tensor<T> ce = class_table->forward(std::span<const std::int64_t>(in.class_labels),
                                                     c ? &c->class_table : nullptr);
            add_into(temb.view(), ce.cview());
        } else if (class_mlp) {
            std::vector<double> labels(in.class_labels.begin(), in.class_labels.end());
            host_tensor<T> le = sinusoidal_embedding<T>(labels, C0, config_.flip_sin_to_cos, config_.freq_shift);
            host_tensor<T> ce = class_mlp->forward(le.cview(), c ? &c->class_mlp : nullptr);
            add_into(temb.view(), ce.cview());
        } else if (is_identity_class()) {
            add_into(temb.view(), *in.class_embedding);
        }
        block_context<T> ctx{temb.cview(), in.encoder_hidden_states, in.dropout};
        // input
        host_tensor<T> h;
        if (config_.center_input_sample) {
            host_tensor<T> xc(x.shape());
            for (std::int64_t i = 0; i < x.numel(); ++i) xc.data()[i] = T(2) * x.data()[i] - T(1);
            h = conv_in.forward(xc.cview(), c ? &c->conv_in : nullptr);
        } else {
            h = conv_in.forward(x, c ? &c->conv_in : nullptr);
        }
        std::vector<host_tensor<T>> skips;
        skips.push_back(h);
        if (c) {
            c->down.resize(down_blocks.size());
            c->up.resize(up_blocks.size());
        }
        for (std::size_t i = 0; i < down_blocks.size(); ++i)
            h = down_blocks[i].forward(std::move(h), ctx, skips, c ? &c->down[i] : nullptr);
        if (mid) h = mid->forward(std::move(h), ctx, c ? &c->mid : nullptr);
        std::size_t top = skips.size();
        // UNet2DConditionModel upsamples to the next skip's size when H or W is not divisible by 2^upsamplers
        const std::int64_t up_factor = std::int64_t{1} << (config_.levels() - 1);
        const bool to_size = config_.kind == unet_kind::unet2d_condition &&
                             (x.size(2) % up_factor != 0 || x.size(3) % up_factor != 0);
        for (std::size_t i = 0; i < up_blocks.size(); ++i) {
            std::int64_t oh = 0, ow = 0;
            if (to_size && i + 1 < up_blocks.size()) {
                const auto& next = skips[top - up_blocks[i].resnets.size() - 1];
                oh = next.size(2);
                ow = next.size(3);
            }
            h = up_blocks[i].forward(std::move(h), ctx, skips, top, c ? &c->up[i] : nullptr, oh, ow);
        }
        const activation<T> silu(activation_kind::silu);
        h = conv_norm_out.forward(h.cview(), c ? &c->norm_out : nullptr);
        h = silu.forward(h.cview(), c ? &c->act_out : nullptr);
        h = conv_out.forward(h.cview(), c ? &c->conv_out : nullptr);
        if (c) {
            c->skips = static_cast<std::int64_t>(skips.size());
            c->has_context = in.encoder_hidden_states.has_value();
            c->filled = true;
        }
        return h;
    }

    gradients backward(cview<T> dy, const cache& c) {
        require_cached(c.filled, "unet2d");
        const activation<T> silu(activation_kind::silu);
        host_tensor<T> d = conv_out.backward(dy, c.conv_out);
        d = silu.backward(d.cview(), c.act_out);
        d = conv_norm_out.backward(d.cview(), c.norm_out);
        const std::int64_t B = d.size(0);
        block_gradients<T> g;
        g.dtemb = host_tensor<T>({B, config_.time_embed_dim()}, T(0));
        std::vector<host_tensor<T>> dskips(static_cast<std::size_t>(c.skips));
        for (std::size_t i = up_blocks.size(); i-- > 0;) d = up_blocks[i].backward(std::move(d), c.up[i], dskips, g);
        if (mid) d = mid->backward(std::move(d), c.mid, g);
        for (std::size_t i = down_blocks.size(); i-- > 0;)
            d = down_blocks[i].backward(std::move(d), c.down[i], dskips, g);
        add_into(d.view(), dskips[0].cview());
        gradients out;
        out.dx = conv_in.backward(d.cview(), c.conv_in);
        if (config_.center_input_sample)
            for (std::int64_t i = 0; i < out.dx.numel(); ++i) out.dx.data()[i] *= T(2);
        // the embedding: temb = time_embedding(...) + class term
        time_embedding.backward(g.dtemb.cview(), c.time);
        if (class_table) class_table->backward(g.dtemb.cview(), c.class_table);
        if (class_mlp) class_mlp->backward(g.dtemb.cview(), c.class_mlp);
        if (is_identity_class()) out.dclass_embedding = copy_of(g.dtemb.cview());
        if (g.has_context) out.dencoder_hidden_states = std::move(g.dcontext);
        return out;
    }

    /// A torchinfo-like table: top-level modules with output shape and parameter count for an input
    /// of batch B and size H×W, then totals (parameters, float32 megabytes).
    std::string summary(std::int64_t B, std::int64_t H, std::int64_t W) {
        std::ostringstream os;
        auto count = [](auto& m) { return count_parameters<T>(m); };
        auto shp = [&](std::int64_t c, std::int64_t h, std::int64_t w) {
            return "[" + std::to_string(B) + ", " + std::to_string(c) + ", " + std::to_string(h) + ", " +
                   std::to_string(w) + "]";
        };
        auto row = [&](const std::string& name, const std::string& shape, std::int64_t params) {
            os << std::left << std::setw(34) << name << std::setw(24) << shape << std::right << std::setw(12)
               << params << "\n";
        };
        const std::string rule(70, '=');
        os << config_.class_name() << " (diffuse::nn::unet2d<" << (sizeof(T) == 4 ? "float" : "double") << ">)\n"
           << rule << "\n"
           << std::left << std::setw(34) << "Layer (diffusers name)" << std::setw(24) << "Output shape" << std::right
           << std::setw(12) << "Param #" << "\n"
           << rule << "\n";
        const std::int64_t E = config_.time_embed_dim();
        row("time_embedding", "[" + std::to_string(B) + ", " + std::to_string(E) + "]", count(time_embedding));
        if (class_table) row("class_embedding (table)", "[" + std::to_string(B) + ", " + std::to_string(E) + "]", count(*class_table));
        if (class_mlp) row("class_embedding (timestep)", "[" + std::to_string(B) + ", " + std::to_string(E) + "]", count(*class_mlp));
        const auto& boc = config_.block_out_channels;
        row("conv_in", shp(boc[0], H, W), count(conv_in));
        std::int64_t h = H, w = W;
        std::vector<std::pair<std::int64_t, std::int64_t>> sizes{{h, w}};
        for (std::size_t i = 0; i < down_blocks.size(); ++i) {
            if (down_blocks[i].downsampler) {
                const auto& cv = *down_blocks[i].downsampler->conv;
                h = cv.out_h(h);
                w = cv.out_w(w);
            } else if (down_blocks[i].resnet_downsampler) {
                h /= 2;
                w /= 2;
            }
            sizes.push_back({h, w});
            row("down_blocks." + std::to_string(i) + " (" + config_.down_block_types[i] + ")", shp(boc[i], h, w),
                count(down_blocks[i]));
        }
        if (mid) row("mid_block (" + *config_.mid_block_type + ")", shp(boc.back(), h, w), count(*mid));
        for (std::size_t i = 0; i < up_blocks.size(); ++i) {
            // a non-final up block upsamples to the size of level n − 2 − i (sizes[k] = size at level k)
            const bool last = i + 1 == up_blocks.size();
            const auto& s = sizes[last ? 0 : up_blocks.size() - 2 - i];
            const std::int64_t oh = s.first, ow = s.second;
            row("up_blocks." + std::to_string(i) + " (" + config_.up_block_types[i] + ")",
                shp(boc[boc.size() - 1 - i], oh, ow), count(up_blocks[i]));
        }
        row("conv_norm_out", shp(boc[0], H, W), count(conv_norm_out));
        row("conv_out", shp(config_.out_channels, H, W), count(conv_out));
        const std::int64_t total = count(*this);
        os << rule << "\nTotal params: " << total << "\nParameter size (MB): " << std::fixed << std::setprecision(2)
           << static_cast<double>(total) * sizeof(T) / 1e6 << "\n"
           << rule << "\n";
        return os.str();
    }

    bool is_identity_class() const { return config_.class_embed_type && *config_.class_embed_type == "identity"; }
    bool needs_class_labels() const { return class_table.has_value() || class_mlp.has_value(); }

private:
    std::int64_t check_inputs(cview<T> x, const unet_inputs<T>& in) const {
        const std::string cls = config_.class_name();
        require_shape(x.rank() == 4 && x.size(1) == config_.in_channels, cls, "sample", x.shape(),
                      "[B, " + std::to_string(config_.in_channels) + ", H, W] (in_channels = " +
                          std::to_string(config_.in_channels) + ")");
        const std::int64_t B = x.size(0);
        require_size(B, "batch size", cls);
        const std::int64_t down = std::int64_t{1} << (config_.levels() - 1);
        if (config_.kind == unet_kind::unet2d && (x.size(2) % down != 0 || x.size(3) % down != 0))
            fail(cls + ": sample size " + std::to_string(x.size(2)) + "x" + std::to_string(x.size(3)) +
                 " is not divisible by 2^(levels − 1) = " + std::to_string(down) +
                 "; expected H and W divisible by it (the skip connections must line up)");
        if (x.size(2) < 1 || x.size(3) < 1) fail(cls + ": sample has an empty spatial size " + x.shape().str());
        const auto nt = static_cast<std::int64_t>(in.timesteps.size());
        if (nt != 1 && nt != B)
            fail(cls + ": " + std::to_string(nt) + " timesteps for a batch of " + std::to_string(B) +
                 "; expected 1 (shared) or " + std::to_string(B));
        if (needs_class_labels()) {
            if (static_cast<std::int64_t>(in.class_labels.size()) != B)
                fail(cls + ": the model is class-conditional (class_embedding) and needs " + std::to_string(B) +
                     " class labels; got " + std::to_string(in.class_labels.size()));
        } else if (!in.class_labels.empty()) {
            fail(cls + ": class labels were given but the model has no class embedding (num_class_embeds and "
                       "class_embed_type are null)");
        }
        if (is_identity_class()) {
            if (!in.class_embedding)
                fail(cls + ": class_embed_type \"identity\" needs a class embedding input [B, " +
                     std::to_string(config_.time_embed_dim()) + "]");
            require_shape(in.class_embedding->shape() == diffuse::shape{B, config_.time_embed_dim()}, cls,
                          "class_embedding", in.class_embedding->shape(),
                          "[" + std::to_string(B) + ", " + std::to_string(config_.time_embed_dim()) + "]");
        }
        if (config_.kind == unet_kind::unet2d_condition) {
            if (!in.encoder_hidden_states)
                fail(cls + ": encoder_hidden_states [B, M, " + std::to_string(config_.cross_attention_dim) +
                     "] is required");
            const auto& s = in.encoder_hidden_states->shape();
            require_shape(s.rank() == 3 && s[0] == B && s[2] == config_.cross_attention_dim && s[1] >= 1, cls,
                          "encoder_hidden_states", s,
                          "[" + std::to_string(B) + ", M, " + std::to_string(config_.cross_attention_dim) +
                              "] (batch, tokens, cross_attention_dim)");
        } else if (in.encoder_hidden_states) {
            fail(cls + ": encoder_hidden_states given to a UNet2DModel (it has no cross-attention)");
        }
        return B;
    }

    void build() {
        const unet_config& c = config_;
        const auto& boc = c.block_out_channels;
        const std::size_t n = boc.size();
        const std::int64_t E = c.time_embed_dim(), G = c.norm_num_groups;
        const double eps = c.norm_eps;
        const bool cond = c.kind == unet_kind::unet2d_condition;
        const std::int64_t kin = cond ? c.conv_in_kernel : 3, kout = cond ? c.conv_out_kernel : 3;
        conv_in = conv2d<T>(c.in_channels, boc[0], kin, 1, (kin - 1) / 2);
        time_embedding = timestep_embedding<T>(boc[0], E);
        if (!c.class_embed_type && c.num_class_embeds) class_table.emplace(*c.num_class_embeds, E);
        if (c.class_embed_type && *c.class_embed_type == "timestep") class_mlp.emplace(boc[0], E);
        detail::unet_builder<T> build(c);  // the encoder half and the resnet/attention factories
        down_blocks = build.down_blocks();
        mid = build.mid();
        std::int64_t out_ch = boc[n - 1];
        for (std::size_t i = 0; i < n; ++i) {
            const std::int64_t prev_out = out_ch;
            out_ch = boc[n - 1 - i];
            const std::int64_t in_ch = boc[n - 1 - std::min(i + 1, n - 1)];
            const bool final_block = i + 1 == n;
            const std::string& type = c.up_block_types[i];
            up_block<T> blk;
            blk.first_resnet = build.resnet_index();
            const std::int64_t L = c.layers_per_block + 1;
            for (std::int64_t j = 0; j < L; ++j) {
                const std::int64_t skip_ch = j == L - 1 ? in_ch : out_ch;
                const std::int64_t res_in = j == 0 ? prev_out : out_ch;
                blk.resnets.push_back(build.resnet(res_in + skip_ch, out_ch, 1.0, resnet_resample::none));
                if (type == "AttnUpBlock2D") blk.attentions.push_back(build.spatial(out_ch, 1.0, G));
                if (type == "CrossAttnUpBlock2D")
                    blk.attentions.push_back(build.transformer(out_ch, c.heads_at(n - 1 - i)));
            }
            if (!final_block) {
                if (type == "AttnUpBlock2D" && c.upsample_type == "resnet")
                    blk.resnet_upsampler.emplace(build.resnet(out_ch, out_ch, 1.0, resnet_resample::up));
                else
                    blk.upsampler.emplace(out_ch, true, out_ch);
            }
            up_blocks.push_back(std::move(blk));
        }
        conv_norm_out = group_norm<T>(G, boc[0], eps);
        conv_out = conv2d<T>(boc[0], c.out_channels, kout, 1, (kout - 1) / 2);
    }

    unet_config config_;
};

}  // namespace diffuse::nn
