#pragma once
// The conditions guidance wrappers are called with (docs/guidance.md §2).
//
//   cfg_condition<C, U>{cond, uncond}   classifier-free guidance: the condition to follow and the one
//                                       to move away from — the null condition (the reserved null label,
//                                       the empty prompt's context) or a negative condition of the same
//                                       kind (a negative prompt, another label)
//   join_conditions(first, second)      the condition of the batch [first half; second half] (2B items),
//                                       so a CFG wrapper evaluates cond and uncond in ONE model call;
//                                       defined for class_labels, no_condition and unet_condition<T>.
//                                       `joinable<C, U>` says whether a pair can be joined; a pair that
//                                       cannot (e.g. class_labels with no_condition) is evaluated in two
//                                       calls
//   model_pair(first, second)           two denoisers presented as one whose condition `pair_member`
//                                       (or paired_condition{member, cond}) picks the model: CFG between
//                                       two networks (autoguidance, Karras et al. 2024: guide a model away
//                                       from a weaker version of itself, both given the same condition) or
//                                       between two exact models in tests
//   null_labels(B, null_label)          B copies of the null label (models' null_class_label())

#include <diffuse/backend/lincomb.hpp>
#include <diffuse/core/error.hpp>
#include <diffuse/core/tensor.hpp>
#include <diffuse/models/denoiser.hpp>
#include <diffuse/models/prediction_adapter.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

// Declared here, defined in models/unet_denoiser.hpp: joining and checking unet_conditions is template code
// instantiated only when a caller (who has included that header) uses it, so guidance does not pull nn/ into
// every translation unit.
namespace diffuse::models {
template <class T>
struct unet_condition;
}  // namespace diffuse::models

namespace diffuse::guidance {

using models::class_labels;
using models::no_condition;
using models::noise_condition;
using process::prediction_type;

/// What a classifier-free-guidance wrapper is called with: follow `cond`, move away from `uncond`.
template <class C, class U = C>
struct cfg_condition {
    C cond{};    ///< the condition to follow (labels [B], a prompt's context, ...)
    U uncond{};  ///< the null condition, or a negative condition in its place
};

/// B copies of a model's null label (exact_mixture_denoiser / unet_config null_class_label()).
inline std::vector<int> null_labels(std::int64_t batch, int null_label) {
    require(batch >= 0, "batch", batch, ">= 0");
    return std::vector<int>(static_cast<std::size_t>(batch), null_label);
}

// ---- joining two half-batch conditions into one 2B condition ----------------------------------------

/// The joined condition of two no_condition halves.
struct joined_no_condition {
    no_condition get() const { return {}; }
};

/// Labels [first..., second...], owned.
struct joined_labels {
    std::vector<int> labels;
    class_labels get() const { return labels; }
};

inline joined_no_condition join_conditions(no_condition, no_condition) { return {}; }

inline joined_labels join_conditions(class_labels first, class_labels second) {
    joined_labels j;
    j.labels.reserve(first.size() + second.size());
    j.labels.insert(j.labels.end(), first.begin(), first.end());
    j.labels.insert(j.labels.end(), second.begin(), second.end());
    return j;
}

namespace detail {

/// [first; second] along the batch dimension: shapes [B1, ...] and [B2, ...] with equal trailing shapes.
template <class T>
tensor<T, host_space> concat_batch(tensor_view<const T, host_space> first, tensor_view<const T, host_space> second,
                                   const char* what) {
    require(first.rank() >= 1, std::string(what) + ".rank()", first.rank(), ">= 1 (a batch [B, ...])");
    if (first.rank() != second.rank() || first.shape().drop_front() != second.shape().drop_front())
        fail(std::string("join_conditions: ") + what + " of the conditional half has shape " + first.shape().str() +
             " but the unconditional half has " + second.shape().str() +
             "; expected equal shapes after the batch dimension");
    std::vector<std::int64_t> dims;
    dims.push_back(first.size(0) + second.size(0));
    for (int i = 1; i < first.rank(); ++i) dims.push_back(first.size(i));
    tensor<T, host_space> out(shape::from_range(dims.begin(), dims.end()));
    std::copy(first.data(), first.data() + first.numel(), out.data());
    std::copy(second.data(), second.data() + second.numel(), out.data() + first.numel());
    return out;
}

}  // namespace detail

/// A joined unet_condition: labels, context, concatenated channels and class embeddings of both halves.
template <class T>
struct joined_unet_condition {
    std::vector<int> labels;
    std::optional<tensor<T, host_space>> encoder_hidden_states, concat, class_embedding;

    models::unet_condition<T> get() const {
        models::unet_condition<T> c;
        c.labels = labels;
        if (encoder_hidden_states) c.encoder_hidden_states = encoder_hidden_states->cview();
        if (concat) c.concat = concat->cview();
        if (class_embedding) c.class_embedding = class_embedding->cview();
        return c;
    }
};

/// Joins two unet_conditions; each part must be present in both halves or in neither.
template <class T>
joined_unet_condition<T> join_conditions(const models::unet_condition<T>& first,
                                         const models::unet_condition<T>& second) {
    joined_unet_condition<T> j;
    if (first.labels.empty() != second.labels.empty())
        fail("join_conditions: labels are given for one half of the CFG batch only; expected both or neither");
    j.labels.insert(j.labels.end(), first.labels.begin(), first.labels.end());
    j.labels.insert(j.labels.end(), second.labels.begin(), second.labels.end());
    auto join = [](const auto& a, const auto& b, const char* what) -> std::optional<tensor<T, host_space>> {
        if (a.has_value() != b.has_value())
            fail(std::string("join_conditions: ") + what +
                 " is given for one half of the CFG batch only; expected both or neither (the empty prompt's "
                 "context for the unconditional half)");
        if (!a) return std::nullopt;
        return detail::concat_batch<T>(*a, *b, what);
    };
    j.encoder_hidden_states = join(first.encoder_hidden_states, second.encoder_hidden_states, "encoder_hidden_states");
    j.concat = join(first.concat, second.concat, "concat");
    j.class_embedding = join(first.class_embedding, second.class_embedding, "class_embedding");
    return j;
}

/// (C, U) can be joined into one condition of the 2B batch.
template <class C, class U>
concept joinable = requires(const C& c, const U& u) { join_conditions(c, u).get(); };

// ---- batch checks ------------------------------------------------------------------------------------

namespace detail {
template <class C>
struct is_unet_condition : std::false_type {};
template <class T>
struct is_unet_condition<models::unet_condition<T>> : std::true_type {};

inline void check_labels_batch(class_labels labels, std::int64_t batch, const char* which) {
    require(labels.size() == static_cast<std::size_t>(batch), std::string(which) + ": labels.size()", labels.size(),
            "the batch size B = " + std::to_string(batch) + " of x_t (one label per item)");
}
}  // namespace detail

/// Throws unless a condition carries one entry per batch item (B); `which` names the half ("cond"). Labels
/// (anything convertible to class_labels: a span, a std::vector<int>) and unet_condition are checked; other
/// conditions are left to the model.
template <class C>
void check_condition_batch(const C& c, std::int64_t batch, const char* which) {
    if constexpr (std::is_convertible_v<const C&, class_labels>) {
        detail::check_labels_batch(class_labels(c), batch, which);
    } else if constexpr (detail::is_unet_condition<C>::value) {
        if (!c.labels.empty()) detail::check_labels_batch(class_labels(c.labels), batch, which);
        auto check = [&](const auto& t, const char* what) {
            if (t && (t->rank() < 1 || t->size(0) != batch))
                fail_argument(std::string(which) + ": " + what + ".shape()", t->shape().str(),
                              "[B, ...] with B = " + std::to_string(batch) + " (the batch size of x_t)");
        };
        check(c.encoder_hidden_states, "encoder_hidden_states");
        check(c.concat, "concat");
        check(c.class_embedding, "class_embedding");
    }
}

// ---- two models as one ---------------------------------------------------------------------------

/// Which model of a model_pair a call goes to.
enum class pair_member { first, second };

/// A model_pair call that also passes a condition to the chosen model (autoguidance: both networks get
/// the same class label or prompt: cfg_condition<paired_condition<C>>{{first, c}, {second, c}}).
template <class C>
struct paired_condition {
    pair_member which = pair_member::first;
    C cond{};
};

/// Two denoisers as one: called with pair_member::first it is `first`, with ::second it is `second`
/// converted to first's prediction type (one lincomb, models/prediction_adapter.hpp). Both are held by
/// value (wrap with models::by_ref to refer instead).
template <class M1, class M2>
class model_pair {
public:
    model_pair(M1 first, M2 second) : first_(std::move(first)), second_(std::move(second)) {}

    prediction_type prediction() const { return first_.prediction(); }
    const M1& first() const { return first_; }
    const M2& second() const { return second_; }

    template <class T, class S>
        requires(models::denoiser<M1, T, S, no_condition> && models::denoiser<M2, T, S, no_condition>)
    void operator()(tensor_view<T, S> out, std::type_identity_t<tensor_view<const T, S>> x_t,
                    const noise_condition& level, pair_member which) const {
        if (which == pair_member::first)
            first_(out, x_t, level, no_condition{});
        else
            models::predict_as(second_, first_.prediction(), out, x_t, level, no_condition{});
    }

    template <class T, class S, class C>
        requires(models::denoiser<M1, T, S, C> && models::denoiser<M2, T, S, C>)
    void operator()(tensor_view<T, S> out, std::type_identity_t<tensor_view<const T, S>> x_t,
                    const noise_condition& level, const paired_condition<C>& call) const {
        if (call.which == pair_member::first)
            first_(out, x_t, level, call.cond);
        else
            models::predict_as(second_, first_.prediction(), out, x_t, level, call.cond);
    }

private:
    M1 first_;
    M2 second_;
};

}  // namespace diffuse::guidance
