#pragma once
// unet_config: the configuration of the conditional U-Net, with diffusers' config.json keys
// (docs/unet.md §5). One struct serves both diffusers classes:
//
//   UNet2DModel            blocks DownBlock2D / AttnDownBlock2D, UpBlock2D / AttnUpBlock2D, UNetMidBlock2D;
//                          attention_head_dim = width of one head (null: one head of the block's width)
//   UNet2DConditionModel   blocks DownBlock2D / CrossAttnDownBlock2D, UpBlock2D / CrossAttnUpBlock2D,
//                          UNetMidBlock2DCrossAttn; attention_head_dim = NUMBER of heads per block (int or
//                          list) — diffusers' historical naming, kept so configs load unchanged
//
// from_json(json) starts from that class's defaults (diffusers' __init__ defaults), applies every key
// present, and rejects: unknown keys, block types outside the lists above, keys of features diffuse does not
// support unless at their default value, and inconsistent values (channels not divisible by the
// groups or the heads, list lengths). Each error names the key, the value and what is accepted.
// to_json() writes every key of the class (as diffusers' save_pretrained does), so
// from_json(to_json(c)) == c.
//
// Class-conditional models and classifier-free guidance: diffusers has no notion of a null label.
// diffuse's convention (docs/unet.md §6): a model for K classes trained with label dropout uses
// num_class_embeds = K + 1, and label K (= null_class_label()) is the "no class" label.

#include <diffuse/core/error.hpp>
#include <diffuse/io/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace diffuse::nn {

enum class unet_kind { unet2d, unet2d_condition };

struct unet_config {
    unet_kind kind = unet_kind::unet2d;

    std::vector<std::int64_t> sample_size;  ///< [] (null), [s] (int) or [h, w]
    std::int64_t in_channels = 3;
    std::int64_t out_channels = 3;
    bool center_input_sample = false;
    std::string time_embedding_type = "positional";
    std::optional<std::int64_t> time_embedding_dim;
    double freq_shift = 0;
    bool flip_sin_to_cos = true;
    std::vector<std::string> down_block_types;
    std::optional<std::string> mid_block_type;
    std::vector<std::string> up_block_types;
    std::vector<std::int64_t> block_out_channels;
    std::int64_t layers_per_block = 2;
    double mid_block_scale_factor = 1;
    std::int64_t downsample_padding = 1;
    std::string downsample_type = "conv";  ///< UNet2DModel only
    std::string upsample_type = "conv";    ///< UNet2DModel only
    double dropout = 0;
    std::string act_fn = "silu";
    /// UNet2DModel: the head width (empty = null); UNet2DConditionModel: heads per block (one value
    /// for all blocks, or one per block).
    std::vector<std::int64_t> attention_head_dim;
    bool attention_head_dim_is_list = false;
    std::int64_t norm_num_groups = 32;
    std::optional<std::int64_t> attn_norm_num_groups;  ///< UNet2DModel only
    double norm_eps = 1e-5;
    std::string resnet_time_scale_shift = "default";
    bool add_attention = true;  ///< UNet2DModel only
    std::optional<std::string> class_embed_type;
    std::optional<std::int64_t> num_class_embeds;
    std::optional<std::int64_t> num_train_timesteps;  ///< UNet2DModel only (informational)
    // UNet2DConditionModel only
    std::int64_t cross_attention_dim = 1280;
    std::int64_t transformer_layers_per_block = 1;
    bool use_linear_projection = false;
    bool upcast_attention = false;
    std::int64_t conv_in_kernel = 3;
    std::int64_t conv_out_kernel = 3;

    /// diffusers' _class_name.
    std::string class_name() const { return kind == unet_kind::unet2d ? "UNet2DModel" : "UNet2DConditionModel"; }
    /// The defaults of diffusers' __init__ for the kind.
    static unet_config defaults(unet_kind kind);
    /// Time-embedding width: time_embedding_dim or 4·block_out_channels[0].
    std::int64_t time_embed_dim() const {
        return time_embedding_dim ? *time_embedding_dim : 4 * block_out_channels.at(0);
    }
    /// Number of levels (= block_out_channels.size()).
    std::int64_t levels() const { return static_cast<std::int64_t>(block_out_channels.size()); }
    /// Heads of the attention at down level i (cross-attention model) — attention_head_dim per block.
    std::int64_t heads_at(std::size_t level) const {
        return attention_head_dim.size() == 1 ? attention_head_dim[0] : attention_head_dim.at(level);
    }
    /// The label reserved for "no class" (docs/unet.md §6): num_class_embeds − 1.
    std::int64_t null_class_label() const {
        if (!num_class_embeds || *num_class_embeds < 2)
            fail("null_class_label: the model needs num_class_embeds >= 2 (K classes + 1 null label); it has " +
                 (num_class_embeds ? std::to_string(*num_class_embeds) : std::string("none")));
        return *num_class_embeds - 1;
    }
    bool has_class_embedding() const { return class_embed_type.has_value() || num_class_embeds.has_value(); }

    /// Throws diffuse::error naming the first inconsistent key.
    void validate() const;

    static unet_config from_json(const io::json_value& j, std::string_view what = "config.json");
    io::json_value to_json() const;

    friend bool operator==(const unet_config&, const unet_config&) = default;
};

namespace detail {

inline std::string join_strings(const std::vector<std::string>& v) {
    std::string s = "[";
    for (std::size_t i = 0; i < v.size(); ++i) s += (i ? ", \"" : "\"") + v[i] + "\"";
    return s + "]";
}

inline bool contains_string(std::initializer_list<const char*> allowed, const std::string& s) {
    for (const char* a : allowed)
        if (s == a) return true;
    return false;
}

}  // namespace detail

inline unet_config unet_config::defaults(unet_kind kind) {
    unet_config c;
    c.kind = kind;
    if (kind == unet_kind::unet2d) {
        c.in_channels = c.out_channels = 3;
        c.down_block_types = {"DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"};
        c.mid_block_type = "UNetMidBlock2D";
        c.up_block_types = {"AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"};
        c.block_out_channels = {224, 448, 672, 896};
        c.attention_head_dim = {8};
    } else {
        c.in_channels = c.out_channels = 4;
        c.down_block_types = {"CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"};
        c.mid_block_type = "UNetMidBlock2DCrossAttn";
        c.up_block_types = {"UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"};
        c.block_out_channels = {320, 640, 1280, 1280};
        c.attention_head_dim = {8};
    }
    return c;
}

inline void unet_config::validate() const {
    const std::string cls = class_name();
    auto bad = [&](const std::string& key, const std::string& value, const std::string& allowed) {
        fail(cls + " config: " + key + " = " + value + "; expected " + allowed);
    };
    const std::size_t n = block_out_channels.size();
    if (n == 0) bad("block_out_channels", "[]", "at least one level");
    for (std::int64_t ch : block_out_channels)
        if (ch <= 0) bad("block_out_channels", std::to_string(ch), "positive channel counts");
    if (down_block_types.size() != n || up_block_types.size() != n)
        fail(cls + " config: down_block_types has " + std::to_string(down_block_types.size()) +
             " entries and up_block_types " + std::to_string(up_block_types.size()) +
             "; expected one per block_out_channels entry (" + std::to_string(n) + ")");
    if (in_channels <= 0) bad("in_channels", std::to_string(in_channels), "a positive channel count");
    if (out_channels <= 0) bad("out_channels", std::to_string(out_channels), "a positive channel count");
    if (layers_per_block < 1) bad("layers_per_block", std::to_string(layers_per_block), "an integer >= 1");
    if (time_embedding_type != "positional")
        bad("time_embedding_type", "\"" + time_embedding_type + "\"", "\"positional\" (the only one supported)");
    if (act_fn != "silu") bad("act_fn", "\"" + act_fn + "\"", "\"silu\" (the only one supported)");
    if (resnet_time_scale_shift != "default" && resnet_time_scale_shift != "scale_shift")
        bad("resnet_time_scale_shift", "\"" + resnet_time_scale_shift + "\"", "\"default\" or \"scale_shift\"");
    if (norm_num_groups <= 0) bad("norm_num_groups", std::to_string(norm_num_groups), "a positive integer");
    for (std::int64_t ch : block_out_channels)
        if (ch % norm_num_groups != 0)
            fail(cls + " config: norm_num_groups = " + std::to_string(norm_num_groups) +
                 " does not divide the block channels " + std::to_string(ch) +
                 "; expected a group count dividing every entry of block_out_channels");
    if (!(norm_eps > 0)) bad("norm_eps", std::to_string(norm_eps), "a number > 0");
    if (!(mid_block_scale_factor > 0))
        bad("mid_block_scale_factor", std::to_string(mid_block_scale_factor), "a number > 0");
    if (downsample_padding < 0) bad("downsample_padding", std::to_string(downsample_padding), "an integer >= 0");
    if (!(dropout >= 0 && dropout < 1)) bad("dropout", std::to_string(dropout), "a probability in [0, 1)");
    if (time_embedding_dim && *time_embedding_dim <= 0)
        bad("time_embedding_dim", std::to_string(*time_embedding_dim), "a positive integer or null");
    if (class_embed_type && *class_embed_type != "timestep" && *class_embed_type != "identity")
        bad("class_embed_type", "\"" + *class_embed_type + "\"", "null, \"timestep\" or \"identity\"");
    if (num_class_embeds && *num_class_embeds <= 0)
        bad("num_class_embeds", std::to_string(*num_class_embeds), "a positive integer or null");
    if (block_out_channels[0] / 2 > 0 && static_cast<double>(block_out_channels[0] / 2) == freq_shift)
        bad("freq_shift", std::to_string(freq_shift),
            "a value other than block_out_channels[0] / 2 (it divides the embedding's frequency exponent)");

    if (kind == unet_kind::unet2d) {
        for (const auto& t : down_block_types)
            if (!detail::contains_string({"DownBlock2D", "AttnDownBlock2D"}, t))
                bad("down_block_types", detail::join_strings(down_block_types),
                    "entries \"DownBlock2D\" or \"AttnDownBlock2D\" (\"" + t + "\" is not supported)");
        for (const auto& t : up_block_types)
            if (!detail::contains_string({"UpBlock2D", "AttnUpBlock2D"}, t))
                bad("up_block_types", detail::join_strings(up_block_types),
                    "entries \"UpBlock2D\" or \"AttnUpBlock2D\" (\"" + t + "\" is not supported)");
        if (mid_block_type && *mid_block_type != "UNetMidBlock2D")
            bad("mid_block_type", "\"" + *mid_block_type + "\"", "\"UNetMidBlock2D\" or null");
        if (downsample_type != "conv" && downsample_type != "resnet")
            bad("downsample_type", "\"" + downsample_type + "\"", "\"conv\" or \"resnet\"");
        if (upsample_type != "conv" && upsample_type != "resnet")
            bad("upsample_type", "\"" + upsample_type + "\"", "\"conv\" or \"resnet\"");
        if (attention_head_dim.size() > 1 || (attention_head_dim.size() == 1 && attention_head_dim[0] <= 0))
            bad("attention_head_dim", std::to_string(attention_head_dim.empty() ? 0 : attention_head_dim[0]),
                "a positive head width or null");
        if (attn_norm_num_groups && (*attn_norm_num_groups <= 0 || block_out_channels.back() % *attn_norm_num_groups))
            bad("attn_norm_num_groups", std::to_string(*attn_norm_num_groups),
                "null or a group count dividing the last block's channels");
        // the attention needs heads = C / head_dim >= 1
        for (std::size_t i = 0; i < n; ++i)
            if (!attention_head_dim.empty() && block_out_channels[i] < attention_head_dim[0] &&
                (down_block_types[i] == "AttnDownBlock2D" || up_block_types[n - 1 - i] == "AttnUpBlock2D"))
                bad("attention_head_dim", std::to_string(attention_head_dim[0]),
                    "at most the channels of every attention level (" + std::to_string(block_out_channels[i]) + ")");
    } else {
        for (const auto& t : down_block_types)
            if (!detail::contains_string({"DownBlock2D", "CrossAttnDownBlock2D"}, t))
                bad("down_block_types", detail::join_strings(down_block_types),
                    "entries \"DownBlock2D\" or \"CrossAttnDownBlock2D\" (\"" + t + "\" is not supported)");
        for (const auto& t : up_block_types)
            if (!detail::contains_string({"UpBlock2D", "CrossAttnUpBlock2D"}, t))
                bad("up_block_types", detail::join_strings(up_block_types),
                    "entries \"UpBlock2D\" or \"CrossAttnUpBlock2D\" (\"" + t + "\" is not supported)");
        if (mid_block_type && *mid_block_type != "UNetMidBlock2DCrossAttn")
            bad("mid_block_type", "\"" + *mid_block_type + "\"", "\"UNetMidBlock2DCrossAttn\" or null");
        if (cross_attention_dim <= 0) bad("cross_attention_dim", std::to_string(cross_attention_dim), "a positive integer");
        if (transformer_layers_per_block < 1)
            bad("transformer_layers_per_block", std::to_string(transformer_layers_per_block), "an integer >= 1");
        if (attention_head_dim.size() != 1 && attention_head_dim.size() != n)
            bad("attention_head_dim", "a list of " + std::to_string(attention_head_dim.size()),
                "an integer or a list of " + std::to_string(n) + " integers (heads per block)");
        for (std::size_t i = 0; i < n; ++i) {
            const std::int64_t h = heads_at(i);
            if (h <= 0 || block_out_channels[i] % h != 0)
                fail(cls + " config: attention_head_dim (heads) = " + std::to_string(h) + " at block " +
                     std::to_string(i) + " does not divide its channels " + std::to_string(block_out_channels[i]) +
                     "; expected a head count dividing the block's channels");
        }
        for (std::int64_t k : {conv_in_kernel, conv_out_kernel})
            if (k < 1 || k % 2 == 0)
                bad(k == conv_in_kernel ? "conv_in_kernel" : "conv_out_kernel", std::to_string(k),
                    "an odd positive kernel size");
    }
}

namespace detail {

// The keys each class accepts (diffusers' __init__ arguments), and those accepted only at their
// default value because the feature is not supported.
inline const std::vector<std::string>& unet2d_keys() {
    static const std::vector<std::string> k{
        "sample_size", "in_channels", "out_channels", "center_input_sample", "time_embedding_type",
        "time_embedding_dim", "freq_shift", "flip_sin_to_cos", "down_block_types", "mid_block_type",
        "up_block_types", "block_out_channels", "layers_per_block", "mid_block_scale_factor", "downsample_padding",
        "downsample_type", "upsample_type", "dropout", "act_fn", "attention_head_dim", "norm_num_groups",
        "attn_norm_num_groups", "norm_eps", "resnet_time_scale_shift", "add_attention", "class_embed_type",
        "num_class_embeds", "num_train_timesteps"};
    return k;
}

inline const std::vector<std::string>& unet2d_condition_keys() {
    static const std::vector<std::string> k{
        "sample_size", "in_channels", "out_channels", "center_input_sample", "flip_sin_to_cos", "freq_shift",
        "down_block_types", "mid_block_type", "up_block_types", "only_cross_attention", "block_out_channels",
        "layers_per_block", "downsample_padding", "mid_block_scale_factor", "dropout", "act_fn", "norm_num_groups",
        "norm_eps", "cross_attention_dim", "transformer_layers_per_block", "reverse_transformer_layers_per_block",
        "encoder_hid_dim", "encoder_hid_dim_type", "attention_head_dim", "num_attention_heads",
        "dual_cross_attention", "use_linear_projection", "class_embed_type", "addition_embed_type",
        "addition_time_embed_dim", "num_class_embeds", "upcast_attention", "resnet_time_scale_shift",
        "resnet_skip_time_act", "resnet_out_scale_factor", "time_embedding_type", "time_embedding_dim",
        "time_embedding_act_fn", "timestep_post_act", "time_cond_proj_dim", "conv_in_kernel", "conv_out_kernel",
        "projection_class_embeddings_input_dim", "attention_type", "class_embeddings_concat",
        "mid_block_only_cross_attention", "cross_attention_norm", "addition_embed_type_num_heads"};
    return k;
}

// UNet2DConditionModel keys of features diffuse does not support: accepted only at these defaults.
inline const io::json_value& unet2d_condition_fixed() {
    static const io::json_value fixed = io::json_value::object({
        {"only_cross_attention", false},
        {"reverse_transformer_layers_per_block", nullptr},
        {"encoder_hid_dim", nullptr},
        {"encoder_hid_dim_type", nullptr},
        {"num_attention_heads", nullptr},
        {"dual_cross_attention", false},
        {"addition_embed_type", nullptr},
        {"addition_time_embed_dim", nullptr},
        {"resnet_skip_time_act", false},
        {"resnet_out_scale_factor", 1.0},
        {"time_embedding_act_fn", nullptr},
        {"timestep_post_act", nullptr},
        {"time_cond_proj_dim", nullptr},
        {"projection_class_embeddings_input_dim", nullptr},
        {"attention_type", "default"},
        {"class_embeddings_concat", false},
        {"mid_block_only_cross_attention", nullptr},
        {"cross_attention_norm", nullptr},
        {"addition_embed_type_num_heads", 64},
    });
    return fixed;
}

inline bool json_equal_value(const io::json_value& a, const io::json_value& b) {
    if (a.is_number() && b.is_number()) return a.as_double() == b.as_double();
    return a == b;
}

}  // namespace detail

inline unet_config unet_config::from_json(const io::json_value& j, std::string_view what) {
    const std::string w(what);
    if (!j.is_object()) fail(w + ": expected a JSON object with diffusers' U-Net config keys");
    unet_kind kind = unet_kind::unet2d;
    if (const auto* cn = j.find("_class_name")) {
        const std::string& s = cn->as_string(w + ": _class_name");
        if (s == "UNet2DModel")
            kind = unet_kind::unet2d;
        else if (s == "UNet2DConditionModel")
            kind = unet_kind::unet2d_condition;
        else
            fail(w + ": _class_name = \"" + s + "\"; expected \"UNet2DModel\" or \"UNet2DConditionModel\"");
    } else if (j.contains("cross_attention_dim")) {
        kind = unet_kind::unet2d_condition;
    }
    unet_config c = defaults(kind);
    const auto& keys = kind == unet_kind::unet2d ? detail::unet2d_keys() : detail::unet2d_condition_keys();
    std::vector<std::string> unknown;
    for (const auto& [key, value] : j.as_object()) {
        if (!key.empty() && key[0] == '_') continue;  // _class_name, _diffusers_version, _name_or_path
        bool known = false;
        for (const auto& k : keys) known = known || k == key;
        if (!known) unknown.push_back(key);
    }
    if (!unknown.empty()) {
        std::string list;
        for (std::size_t i = 0; i < unknown.size(); ++i) list += (i ? ", " : "") + unknown[i];
        fail(w + ": unsupported " + c.class_name() + " config keys: " + list + " (docs/unet.md §5 lists the supported ones)");
    }
    if (kind == unet_kind::unet2d_condition) {
        for (const auto& [key, def] : detail::unet2d_condition_fixed().as_object())
            if (const auto* v = j.find(key); v && !detail::json_equal_value(*v, def))
                fail(w + ": " + key + " = " + io::to_json(*v, -1) + " is not supported; expected " +
                     io::to_json(def, -1) + " (its default)");
    }
    auto key_what = [&](const char* k) { return w + ": " + k; };
    auto get_int = [&](const char* k, std::int64_t& out) {
        if (const auto* v = j.find(k)) out = v->as_int64(key_what(k));
    };
    auto get_opt_int = [&](const char* k, std::optional<std::int64_t>& out) {
        if (const auto* v = j.find(k)) out = v->is_null() ? std::nullopt : std::optional(v->as_int64(key_what(k)));
    };
    auto get_double = [&](const char* k, double& out) {
        if (const auto* v = j.find(k)) out = v->as_double(key_what(k));
    };
    auto get_bool = [&](const char* k, bool& out) {
        if (const auto* v = j.find(k)) out = v->as_bool(key_what(k));
    };
    auto get_string = [&](const char* k, std::string& out) {
        if (const auto* v = j.find(k)) out = v->as_string(key_what(k));
    };
    auto get_opt_string = [&](const char* k, std::optional<std::string>& out) {
        if (const auto* v = j.find(k)) out = v->is_null() ? std::nullopt : std::optional(v->as_string(key_what(k)));
    };
    auto get_strings = [&](const char* k, std::vector<std::string>& out) {
        if (const auto* v = j.find(k)) {
            out.clear();
            for (const auto& e : v->as_array(key_what(k))) out.push_back(e.as_string(key_what(k)));
        }
    };
    auto get_ints = [&](const char* k, std::vector<std::int64_t>& out) {
        if (const auto* v = j.find(k)) {
            out.clear();
            for (const auto& e : v->as_array(key_what(k))) out.push_back(e.as_int64(key_what(k)));
        }
    };
    if (const auto* v = j.find("sample_size")) {
        c.sample_size.clear();
        if (v->is_array())
            for (const auto& e : v->as_array()) c.sample_size.push_back(e.as_int64(key_what("sample_size")));
        else if (!v->is_null())
            c.sample_size.push_back(v->as_int64(key_what("sample_size")));
    }
    get_int("in_channels", c.in_channels);
    get_int("out_channels", c.out_channels);
    get_bool("center_input_sample", c.center_input_sample);
    get_string("time_embedding_type", c.time_embedding_type);
    get_opt_int("time_embedding_dim", c.time_embedding_dim);
    get_double("freq_shift", c.freq_shift);
    get_bool("flip_sin_to_cos", c.flip_sin_to_cos);
    get_strings("down_block_types", c.down_block_types);
    get_opt_string("mid_block_type", c.mid_block_type);
    get_strings("up_block_types", c.up_block_types);
    get_ints("block_out_channels", c.block_out_channels);
    if (const auto* v = j.find("layers_per_block"); v && v->is_array())
        fail(w + ": layers_per_block = " + io::to_json(*v, -1) + " (a list) is not supported; expected one integer");
    get_int("layers_per_block", c.layers_per_block);
    get_double("mid_block_scale_factor", c.mid_block_scale_factor);
    get_int("downsample_padding", c.downsample_padding);
    get_string("downsample_type", c.downsample_type);
    get_string("upsample_type", c.upsample_type);
    get_double("dropout", c.dropout);
    get_string("act_fn", c.act_fn);
    if (const auto* v = j.find("attention_head_dim")) {
        c.attention_head_dim.clear();
        c.attention_head_dim_is_list = v->is_array();
        if (v->is_array())
            for (const auto& e : v->as_array()) c.attention_head_dim.push_back(e.as_int64(key_what("attention_head_dim")));
        else if (!v->is_null())
            c.attention_head_dim.push_back(v->as_int64(key_what("attention_head_dim")));
        else if (kind == unet_kind::unet2d_condition)
            fail(w + ": attention_head_dim = null; expected the number of heads (an integer or a list)");
    }
    get_int("norm_num_groups", c.norm_num_groups);
    get_opt_int("attn_norm_num_groups", c.attn_norm_num_groups);
    get_double("norm_eps", c.norm_eps);
    get_string("resnet_time_scale_shift", c.resnet_time_scale_shift);
    get_bool("add_attention", c.add_attention);
    get_opt_string("class_embed_type", c.class_embed_type);
    get_opt_int("num_class_embeds", c.num_class_embeds);
    get_opt_int("num_train_timesteps", c.num_train_timesteps);
    if (const auto* v = j.find("cross_attention_dim"); v && v->is_array())
        fail(w + ": cross_attention_dim = " + io::to_json(*v, -1) + " (a list) is not supported; expected one integer");
    get_int("cross_attention_dim", c.cross_attention_dim);
    if (const auto* v = j.find("transformer_layers_per_block"); v && v->is_array())
        fail(w + ": transformer_layers_per_block = " + io::to_json(*v, -1) +
             " (a list) is not supported; expected one integer");
    get_int("transformer_layers_per_block", c.transformer_layers_per_block);
    get_bool("use_linear_projection", c.use_linear_projection);
    get_bool("upcast_attention", c.upcast_attention);
    get_int("conv_in_kernel", c.conv_in_kernel);
    get_int("conv_out_kernel", c.conv_out_kernel);
    if (kind == unet_kind::unet2d_condition && c.norm_num_groups <= 0)
        fail(w + ": norm_num_groups must be a positive integer (null, which diffusers allows for other blocks, is "
                 "not supported)");
    c.validate();
    return c;
}

inline io::json_value unet_config::to_json() const {
    using io::json_value;
    auto opt_int = [](const std::optional<std::int64_t>& v) { return v ? json_value(*v) : json_value(nullptr); };
    auto opt_str = [](const std::optional<std::string>& v) { return v ? json_value(*v) : json_value(nullptr); };
    json_value sample = sample_size.empty()       ? json_value(nullptr)
                        : sample_size.size() == 1 ? json_value(sample_size[0])
                                                  : json_value(sample_size);
    json_value heads = attention_head_dim.empty()  ? json_value(nullptr)
                       : attention_head_dim_is_list ? json_value(attention_head_dim)
                                                    : json_value(attention_head_dim[0]);
    json_value j = json_value::object({{"_class_name", class_name()}});
    auto set = [&](const char* k, json_value v) { j.as_object().emplace_back(k, std::move(v)); };
    set("sample_size", sample);
    set("in_channels", in_channels);
    set("out_channels", out_channels);
    set("center_input_sample", center_input_sample);
    set("flip_sin_to_cos", flip_sin_to_cos);
    set("freq_shift", freq_shift == static_cast<double>(static_cast<std::int64_t>(freq_shift))
                          ? json_value(static_cast<std::int64_t>(freq_shift))
                          : json_value(freq_shift));
    set("down_block_types", json_value(down_block_types));
    set("mid_block_type", opt_str(mid_block_type));
    set("up_block_types", json_value(up_block_types));
    set("block_out_channels", json_value(block_out_channels));
    set("layers_per_block", layers_per_block);
    set("mid_block_scale_factor", mid_block_scale_factor);
    set("downsample_padding", downsample_padding);
    set("dropout", dropout);
    set("act_fn", act_fn);
    set("attention_head_dim", heads);
    set("norm_num_groups", norm_num_groups);
    set("norm_eps", norm_eps);
    set("resnet_time_scale_shift", resnet_time_scale_shift);
    set("class_embed_type", opt_str(class_embed_type));
    set("num_class_embeds", opt_int(num_class_embeds));
    set("time_embedding_type", time_embedding_type);
    set("time_embedding_dim", opt_int(time_embedding_dim));
    if (kind == unet_kind::unet2d) {
        set("downsample_type", downsample_type);
        set("upsample_type", upsample_type);
        set("attn_norm_num_groups", opt_int(attn_norm_num_groups));
        set("add_attention", add_attention);
        set("num_train_timesteps", opt_int(num_train_timesteps));
    } else {
        set("cross_attention_dim", cross_attention_dim);
        set("transformer_layers_per_block", transformer_layers_per_block);
        set("use_linear_projection", use_linear_projection);
        set("upcast_attention", upcast_attention);
        set("conv_in_kernel", conv_in_kernel);
        set("conv_out_kernel", conv_out_kernel);
        for (const auto& [key, def] : detail::unet2d_condition_fixed().as_object()) set(key.c_str(), def);
    }
    return j;
}

}  // namespace diffuse::nn
