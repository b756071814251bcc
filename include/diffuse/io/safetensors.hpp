#pragma once
// .safetensors files (huggingface/safetensors) for host tensors: read, convert, build and write.
//
// Format:
//   bytes 0–7   N, the header length, a little-endian uint64 (at most 100,000,000, as the Python library)
//   N bytes     a UTF-8 JSON object, possibly right-padded with spaces:
//                 {"__metadata__": {"format": "pt"},
//                  "conv_in.weight": {"dtype": "F32", "shape": [32, 4, 3, 3], "data_offsets": [0, 4608]}, ...}
//               "__metadata__" (optional) maps strings to strings; every other key names a tensor.
//   the rest    the data buffer. data_offsets = [begin, end) are byte offsets into it; each tensor is
//               prod(shape) × element size bytes, little-endian, row-major (C order). The tensors cover
//               the buffer exactly: no overlaps, no holes, nothing after the last one.
// dtypes: F64 F32 F16 BF16 I64 I32 I16 I8 U64 U32 U16 U8 BOOL (safetensors_dtype). The FP8 dtypes
// are not supported.
//
// Reading (safetensors_file::read / parse) checks all of that and throws diffuse::error naming the
// file for every violation — file shorter than 8 bytes, header length above the file or the 100 MB
// limit, header not JSON or not an object, an entry without dtype / shape / data_offsets or with the
// wrong JSON types, an unknown dtype, negative dimensions, prod(shape) × size != end − begin
// (computed without overflow), offsets outside the buffer, begin > end, overlapping tensors, holes,
// duplicate names, bytes after the last tensor. Nothing is allocated from a size read in the file
// before it is checked against the file size.
//
// Converting. get<T>(name) returns tensor<T, host_space> for T = float or double from any float
// dtype (F16 and BF16 are decoded exactly; F64 -> float rounds to nearest) or any integer dtype, and
// for an integer T from an integer or BOOL dtype (range-checked); float data to an integer T is an
// error, as is a rank above 5 (diffuse::shape holds rank 0–5). get_into(name, view) fills a view of
// the same shape:
//   "tensor 'conv_in.weight' in 'x.safetensors' has shape [32, 3, 3, 3] but the model expects [32, 4, 3, 3]"
//
// Writing. add(name, view) stores float as F32, double as F64 and integers as their own width, or
// as an explicit dtype; F16 and BF16 round to nearest, ties to even (overflow -> ±inf, NaN -> quiet
// NaN). serialize() is deterministic and lays out bytes exactly as the Python library's
// safetensors.serialize does for the same tensors: the tensors sorted by dtype in the library's
// order (U64, I64, F64, F32, U32, I32, BF16, F16, U16, I16, I8, U8, BOOL — so each tensor starts at a
// multiple of its element size), then by name (byte order); the header is compact JSON (no spaces,
// UTF-8 as is) with "__metadata__" first (its keys sorted) and the tensors in layout order, padded
// with spaces to a multiple of 8 bytes. Hence parse(serialize(x)) has bitwise-identical tensors and
// serialize(parse(serialize(x))) == serialize(x) byte for byte.

#include <diffuse/core/error.hpp>
#include <diffuse/core/memory_space.hpp>
#include <diffuse/core/shape.hpp>
#include <diffuse/core/tensor.hpp>
#include <diffuse/io/detail/file.hpp>
#include <diffuse/io/json.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace diffuse::io {

/// Element types of .safetensors files.
enum class safetensors_dtype { f64, f32, f16, bf16, i64, i32, i16, i8, u64, u32, u16, u8, boolean };

/// All supported dtypes, in the order the Python library lays tensors out (largest alignment first).
inline constexpr safetensors_dtype safetensors_dtypes[] = {
    safetensors_dtype::u64, safetensors_dtype::i64,  safetensors_dtype::f64, safetensors_dtype::f32,
    safetensors_dtype::u32, safetensors_dtype::i32,  safetensors_dtype::bf16, safetensors_dtype::f16,
    safetensors_dtype::u16, safetensors_dtype::i16,  safetensors_dtype::i8,  safetensors_dtype::u8,
    safetensors_dtype::boolean};

/// The name in the header: "F64", "F32", "F16", "BF16", "I64", ..., "U8", "BOOL".
inline const char* safetensors_dtype_name(safetensors_dtype d) {
    switch (d) {
        case safetensors_dtype::f64: return "F64";
        case safetensors_dtype::f32: return "F32";
        case safetensors_dtype::f16: return "F16";
        case safetensors_dtype::bf16: return "BF16";
        case safetensors_dtype::i64: return "I64";
        case safetensors_dtype::i32: return "I32";
        case safetensors_dtype::i16: return "I16";
        case safetensors_dtype::i8: return "I8";
        case safetensors_dtype::u64: return "U64";
        case safetensors_dtype::u32: return "U32";
        case safetensors_dtype::u16: return "U16";
        case safetensors_dtype::u8: return "U8";
        case safetensors_dtype::boolean: return "BOOL";
    }
    return "?";
}

/// The dtype of a header name, or nullopt for names this library does not support.
inline std::optional<safetensors_dtype> safetensors_dtype_from_name(std::string_view name) {
    for (safetensors_dtype d : safetensors_dtypes)
        if (name == safetensors_dtype_name(d)) return d;
    return std::nullopt;
}

/// Bytes per element.
inline std::size_t safetensors_dtype_size(safetensors_dtype d) {
    switch (d) {
        case safetensors_dtype::f64:
        case safetensors_dtype::i64:
        case safetensors_dtype::u64: return 8;
        case safetensors_dtype::f32:
        case safetensors_dtype::i32:
        case safetensors_dtype::u32: return 4;
        case safetensors_dtype::f16:
        case safetensors_dtype::bf16:
        case safetensors_dtype::i16:
        case safetensors_dtype::u16: return 2;
        default: return 1;
    }
}

/// F64, F32, F16 or BF16.
inline bool safetensors_is_float(safetensors_dtype d) {
    return d == safetensors_dtype::f64 || d == safetensors_dtype::f32 || d == safetensors_dtype::f16 ||
           d == safetensors_dtype::bf16;
}

/// The dtype add() uses for element type T: float -> F32, double -> F64, bool -> BOOL, and the
/// integer dtype of the same width and signedness for integers.
template <class T>
constexpr safetensors_dtype safetensors_dtype_of() {
    using U = std::remove_const_t<T>;
    static_assert(std::is_arithmetic_v<U> && !std::is_same_v<U, long double>, "no safetensors dtype for T");
    if constexpr (std::is_same_v<U, bool>) return safetensors_dtype::boolean;
    else if constexpr (std::is_same_v<U, float>) return safetensors_dtype::f32;
    else if constexpr (std::is_same_v<U, double>) return safetensors_dtype::f64;
    else if constexpr (std::is_signed_v<U>)
        return sizeof(U) == 1 ? safetensors_dtype::i8
             : sizeof(U) == 2 ? safetensors_dtype::i16
             : sizeof(U) == 4 ? safetensors_dtype::i32
                              : safetensors_dtype::i64;
    else
        return sizeof(U) == 1 ? safetensors_dtype::u8
             : sizeof(U) == 2 ? safetensors_dtype::u16
             : sizeof(U) == 4 ? safetensors_dtype::u32
                              : safetensors_dtype::u64;
}

/// One tensor of a .safetensors file: its raw little-endian, row-major bytes. The shape may have
/// any rank (get<T> needs rank <= 5).
struct safetensors_tensor {
    std::string name;
    safetensors_dtype dtype = safetensors_dtype::f32;
    std::vector<std::int64_t> shape;
    std::string data;

    /// prod(shape) (1 for rank 0).
    std::int64_t numel() const {
        std::int64_t n = 1;
        for (std::int64_t d : shape) n *= d;
        return n;
    }
    /// "[32, 4, 3, 3]"
    std::string shape_str() const {
        std::string s = "[";
        for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
        return s + "]";
    }
};

namespace detail {

/// Rank of a dtype in the Python library's dtype enum (BOOL lowest, U64 highest); tensors are laid
/// out by descending rank.
inline int safetensors_layout_rank(safetensors_dtype d) {
    int r = 0;
    for (safetensors_dtype x : safetensors_dtypes) {
        if (x == d) return 100 - r;
        ++r;
    }
    return 0;
}

inline void require_little_endian_host_st(const std::string& source) {
    if constexpr (std::endian::native != std::endian::little)
        fail(source + ": .safetensors I/O is implemented for little-endian hosts only");
}

/// Encodes x in a binary floating-point format with E exponent bits and M mantissa bits (IEEE
/// layout, 1 + E + M = 16 bits), rounding to nearest, ties to even, directly from the double (no
/// double rounding). F16: E = 5, M = 10; BF16: E = 8, M = 7.
template <int E, int M>
std::uint16_t encode_small_float(double x) {
    constexpr int bias = (1 << (E - 1)) - 1;
    constexpr int emin = 1 - bias;
    constexpr int emax = bias;
    constexpr std::uint32_t exp_all = (1u << E) - 1;
    const std::uint32_t sign = std::signbit(x) ? 1u << (E + M) : 0u;
    if (std::isnan(x)) return static_cast<std::uint16_t>(sign | (exp_all << M) | (1u << (M - 1)));
    const double a = std::fabs(x);
    if (std::isinf(a)) return static_cast<std::uint16_t>(sign | (exp_all << M));
    if (a == 0) return static_cast<std::uint16_t>(sign);
    int k = 0;
    (void)std::frexp(a, &k);  // a = f·2^k, f in [0.5, 1)
    int e = std::max(k - 1, emin);
    const double s = std::ldexp(a, M - e);  // a in units of the target's quantum 2^(e − M); exact
    double r = std::floor(s);
    const double frac = s - r;  // exact: s has at most 53 significant bits
    if (frac > 0.5 || (frac == 0.5 && std::fmod(r, 2.0) != 0)) r += 1;
    if (r >= std::ldexp(1.0, M + 1)) {  // rounded up to the next binade
        r = std::ldexp(1.0, M);
        ++e;
    }
    if (e > emax) return static_cast<std::uint16_t>(sign | (exp_all << M));  // overflow -> inf
    const auto m = static_cast<std::uint32_t>(r);
    if (m < (1u << M)) return static_cast<std::uint16_t>(sign | m);  // subnormal (e == emin)
    const auto biased = static_cast<std::uint32_t>(e + bias);
    return static_cast<std::uint16_t>(sign | (biased << M) | (m - (1u << M)));
}

/// Decodes a 16-bit float of the same layout exactly.
template <int E, int M>
double decode_small_float(std::uint16_t bits) {
    constexpr int bias = (1 << (E - 1)) - 1;
    constexpr std::uint32_t exp_all = (1u << E) - 1;
    const bool negative = (bits >> (E + M)) & 1u;
    const std::uint32_t exp = (static_cast<std::uint32_t>(bits) >> M) & exp_all;
    const std::uint32_t man = static_cast<std::uint32_t>(bits) & ((1u << M) - 1);
    double v = 0;
    if (exp == exp_all) v = man ? std::numeric_limits<double>::quiet_NaN() : std::numeric_limits<double>::infinity();
    else if (exp == 0) v = std::ldexp(static_cast<double>(man), 1 - bias - M);
    else v = std::ldexp(static_cast<double>(man | (1u << M)), static_cast<int>(exp) - bias - M);
    return negative ? -v : v;
}

/// Whether the integer v (any integer type but bool) is representable in the integer type D.
template <class D, class S>
bool fits_integer(S v) {
    const auto lo = static_cast<long long>(std::numeric_limits<D>::min());  // <= 0
    const auto hi = static_cast<unsigned long long>(std::numeric_limits<D>::max());
    if constexpr (std::is_signed_v<S>) {
        const auto x = static_cast<long long>(v);
        return x < 0 ? x >= lo : static_cast<unsigned long long>(x) <= hi;
    } else {
        return static_cast<unsigned long long>(v) <= hi;
    }
}

template <class V>
V load_le(const char* p) {
    V v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

/// Decodes n elements of `src` (dtype d) into out[0..n), converting to T. Float dtypes to an integer
/// T must be refused by the caller.
template <class T>
void decode_elements(const safetensors_tensor& src, T* out, std::int64_t n, const std::string& where) {
    const char* p = src.data.data();
    auto convert_int = [&](auto tag) {
        using S = decltype(tag);
        for (std::int64_t i = 0; i < n; ++i) {
            const S v = load_le<S>(p + i * static_cast<std::int64_t>(sizeof(S)));
            if constexpr (std::is_floating_point_v<T>) {
                out[i] = static_cast<T>(v);
            } else if constexpr (std::is_same_v<T, bool>) {
                out[i] = v != S(0);
            } else {
                if (!fits_integer<T>(v))
                    fail(where + ": element " + std::to_string(i) + " = " + std::to_string(v) +
                         " does not fit the requested integer type");
                out[i] = static_cast<T>(v);
            }
        }
    };
    switch (src.dtype) {
        case safetensors_dtype::f64:
        case safetensors_dtype::f32:
        case safetensors_dtype::f16:
        case safetensors_dtype::bf16:
            if constexpr (std::is_floating_point_v<T>) {
                for (std::int64_t i = 0; i < n; ++i) {
                    double v = 0;
                    if (src.dtype == safetensors_dtype::f64) v = load_le<double>(p + 8 * i);
                    else if (src.dtype == safetensors_dtype::f32) v = load_le<float>(p + 4 * i);
                    else if (src.dtype == safetensors_dtype::f16)
                        v = decode_small_float<5, 10>(load_le<std::uint16_t>(p + 2 * i));
                    else
                        v = decode_small_float<8, 7>(load_le<std::uint16_t>(p + 2 * i));
                    out[i] = static_cast<T>(v);
                }
            } else {
                fail(where + ": holds floating-point dtype " + safetensors_dtype_name(src.dtype) +
                     "; refusing to convert floating-point data to an integer type");
            }
            break;
        case safetensors_dtype::i64: convert_int(std::int64_t{}); break;
        case safetensors_dtype::i32: convert_int(std::int32_t{}); break;
        case safetensors_dtype::i16: convert_int(std::int16_t{}); break;
        case safetensors_dtype::i8: convert_int(std::int8_t{}); break;
        case safetensors_dtype::u64: convert_int(std::uint64_t{}); break;
        case safetensors_dtype::u32: convert_int(std::uint32_t{}); break;
        case safetensors_dtype::u16: convert_int(std::uint16_t{}); break;
        case safetensors_dtype::u8: convert_int(std::uint8_t{}); break;
        case safetensors_dtype::boolean:
            for (std::int64_t i = 0; i < n; ++i) {
                const auto b = static_cast<unsigned char>(p[i]);
                if (b > 1)
                    fail(where + ": BOOL element " + std::to_string(i) + " has byte value " + std::to_string(int(b)) +
                         "; expected 0 or 1");
                out[i] = static_cast<T>(b);
            }
            break;
    }
}

/// Encodes n values of T as dtype d (little-endian). Integer dtypes accept integer or bool T only
/// and check the range.
template <class T>
std::string encode_elements(const T* in, std::int64_t n, safetensors_dtype d, const std::string& where) {
    const auto count = static_cast<std::size_t>(n);
    std::string out(count * safetensors_dtype_size(d), '\0');
    char* p = out.data();
    auto store = [&](std::size_t i, auto v) { std::memcpy(p + i * sizeof v, &v, sizeof v); };
    auto store_int = [&](auto tag) {
        using D = decltype(tag);
        if constexpr (std::is_floating_point_v<T>) {
            fail(where + ": refusing to store floating-point data as the integer dtype " +
                 std::string(safetensors_dtype_name(d)) + "; use F32, F64, F16 or BF16");
        } else {
            for (std::size_t i = 0; i < count; ++i) {
                const T v = in[i];
                if constexpr (!std::is_same_v<T, bool>) {
                    if (!fits_integer<D>(v))
                        fail(where + ": element " + std::to_string(i) + " = " + std::to_string(v) +
                             " does not fit dtype " + safetensors_dtype_name(d));
                }
                store(i, static_cast<D>(v));
            }
        }
    };
    switch (d) {
        case safetensors_dtype::f64:
            for (std::size_t i = 0; i < count; ++i) store(i, static_cast<double>(in[i]));
            break;
        case safetensors_dtype::f32:
            for (std::size_t i = 0; i < count; ++i) store(i, static_cast<float>(in[i]));
            break;
        case safetensors_dtype::f16:
            for (std::size_t i = 0; i < count; ++i) store(i, encode_small_float<5, 10>(static_cast<double>(in[i])));
            break;
        case safetensors_dtype::bf16:
            for (std::size_t i = 0; i < count; ++i) store(i, encode_small_float<8, 7>(static_cast<double>(in[i])));
            break;
        case safetensors_dtype::i64: store_int(std::int64_t{}); break;
        case safetensors_dtype::i32: store_int(std::int32_t{}); break;
        case safetensors_dtype::i16: store_int(std::int16_t{}); break;
        case safetensors_dtype::i8: store_int(std::int8_t{}); break;
        case safetensors_dtype::u64: store_int(std::uint64_t{}); break;
        case safetensors_dtype::u32: store_int(std::uint32_t{}); break;
        case safetensors_dtype::u16: store_int(std::uint16_t{}); break;
        case safetensors_dtype::u8: store_int(std::uint8_t{}); break;
        case safetensors_dtype::boolean:
            if constexpr (std::is_floating_point_v<T>) {
                fail(where + ": refusing to store floating-point data as dtype BOOL");
            } else {
                for (std::size_t i = 0; i < count; ++i) p[i] = in[i] != T(0) ? 1 : 0;
            }
            break;
    }
    return out;
}

/// Levenshtein distance (for "did you mean" lists).
inline std::size_t edit_distance(std::string_view a, std::string_view b) {
    std::vector<std::size_t> row(b.size() + 1);
    for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
    for (std::size_t i = 1; i <= a.size(); ++i) {
        std::size_t diag = row[0];
        row[0] = i;
        for (std::size_t j = 1; j <= b.size(); ++j) {
            const std::size_t up = row[j];
            row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
            diag = up;
        }
    }
    return row[b.size()];
}

/// a·b for non-negative values; false on overflow of uint64.
inline bool checked_mul(std::uint64_t a, std::uint64_t b, std::uint64_t& out) {
    if (a != 0 && b > std::numeric_limits<std::uint64_t>::max() / a) return false;
    out = a * b;
    return true;
}

inline constexpr std::uint64_t safetensors_max_header = 100000000;

}  // namespace detail

/// The tensors and metadata of one .safetensors file (see the header comment for the format).
class safetensors_file {
public:
    /// An empty file (no tensors, no metadata); `source` names it in error messages.
    explicit safetensors_file(std::string source = "safetensors data") : source_(std::move(source)) {}

    /// Reads and validates a .safetensors file; errors name the path.
    static safetensors_file read(const std::string& path) {
        std::string bytes = io::detail::read_file_bytes(path, "safetensors file");
        return parse(std::move(bytes), path);
    }

    /// Parses and validates the bytes of a .safetensors file; `what` names them in errors.
    static safetensors_file parse(std::string bytes, std::string_view what = "safetensors bytes") {
        safetensors_file f{std::string(what)};
        f.parse_bytes(bytes);
        return f;
    }

    /// The name used in error messages (the path for read()).
    const std::string& source() const { return source_; }

    std::size_t size() const { return tensors_.size(); }
    bool empty() const { return tensors_.empty(); }

    /// All tensors in the order of the data buffer (for a parsed file: ascending data_offsets);
    /// tensors added with add() / add_raw() follow in the order they were added.
    const std::vector<safetensors_tensor>& tensors() const { return tensors_; }

    /// Tensor names in the same order as tensors().
    std::vector<std::string> names() const {
        std::vector<std::string> out;
        out.reserve(tensors_.size());
        for (const safetensors_tensor& t : tensors_) out.push_back(t.name);
        return out;
    }

    bool contains(std::string_view name) const { return find(name) != nullptr; }

    /// The tensor `name`, or nullptr.
    const safetensors_tensor* find(std::string_view name) const {
        const auto it = index_.find(name);
        return it == index_.end() ? nullptr : &tensors_[it->second];
    }

    /// The tensor `name`; a missing name is an error that lists the closest names in the file:
    ///   "tensor 'conv_in.weigth' not found in 'x.safetensors' (12 tensors); closest names: conv_in.weight, ..."
    const safetensors_tensor& at(std::string_view name) const {
        if (const safetensors_tensor* t = find(name)) return *t;
        std::string msg = "tensor '" + std::string(name) + "' not found in '" + source_ + "' (" +
                          std::to_string(tensors_.size()) + " tensors)";
        constexpr std::size_t max_listed = 10;
        if (tensors_.empty()) {
            msg += "; the file holds no tensors";
        } else if (tensors_.size() <= max_listed) {
            msg += "; available: ";
            for (std::size_t i = 0; i < tensors_.size(); ++i) msg += (i ? ", " : "") + tensors_[i].name;
        } else {
            std::vector<std::pair<std::size_t, std::size_t>> scored;  // (distance, index)
            for (std::size_t i = 0; i < tensors_.size(); ++i)
                scored.emplace_back(detail::edit_distance(name, tensors_[i].name), i);
            std::stable_sort(scored.begin(), scored.end(),
                             [](const auto& a, const auto& b) { return a.first < b.first; });
            msg += "; closest names: ";
            for (std::size_t i = 0; i < max_listed; ++i) msg += (i ? ", " : "") + tensors_[scored[i].second].name;
        }
        fail(msg);
    }

    /// The "__metadata__" entries (string to string), in file order or the order set.
    const std::vector<std::pair<std::string, std::string>>& metadata() const { return metadata_; }

    /// The metadata value for `key`, or nullopt.
    std::optional<std::string> metadata_value(std::string_view key) const {
        for (const auto& kv : metadata_)
            if (kv.first == key) return kv.second;
        return std::nullopt;
    }

    /// Sets (or replaces) a "__metadata__" entry.
    void set_metadata(std::string key, std::string value) {
        if (!detail::is_valid_utf8(key) || !detail::is_valid_utf8(value))
            fail("safetensors file '" + source_ + "': metadata key and value must be valid UTF-8");
        for (auto& kv : metadata_) {
            if (kv.first == key) {
                kv.second = std::move(value);
                return;
            }
        }
        metadata_.emplace_back(std::move(key), std::move(value));
    }

    /// The tensor `name` converted to T (see the header comment for the allowed conversions).
    template <class T>
    tensor<T, host_space> get(std::string_view name) const {
        const safetensors_tensor& t = at(name);
        check_convertible<T>(t);
        tensor<T, host_space> out(diffuse_shape(t));
        detail::require_little_endian_host_st(source_);
        detail::decode_elements(t, out.data(), out.numel(), where(t));
        return out;
    }

    /// Fills `out` with the tensor `name` converted to T; the shapes must be equal:
    ///   "tensor 'conv_in.weight' in 'x.safetensors' has shape [32, 3, 3, 3] but the model expects [32, 4, 3, 3]"
    template <class T>
    void get_into(std::string_view name, tensor_view<T, host_space> out) const {
        static_assert(!std::is_const_v<T>, "get_into writes into the view");
        const safetensors_tensor& t = at(name);
        bool same = static_cast<int>(t.shape.size()) == out.rank();
        for (std::size_t i = 0; same && i < t.shape.size(); ++i) same = t.shape[i] == out.shape()[static_cast<int>(i)];
        if (!same)
            fail(where(t) + " has shape " + t.shape_str() + " but the model expects " + out.shape().str());
        check_convertible<T>(t);
        detail::require_little_endian_host_st(source_);
        detail::decode_elements(t, out.data(), out.numel(), where(t));
    }

    /// Adds a tensor stored as safetensors_dtype_of<T>() (float -> F32, double -> F64, ...).
    template <class T>
    void add(std::string name, tensor_view<T, host_space> t) {
        add(std::move(name), t, safetensors_dtype_of<T>());
    }
    template <class T>
    void add(std::string name, const tensor<T, host_space>& t) {
        add(std::move(name), t.cview(), safetensors_dtype_of<T>());
    }

    /// Adds a tensor stored as `dtype`: float dtypes take any T (F16/BF16 round to nearest even);
    /// integer dtypes and BOOL take integer or bool T, range-checked.
    template <class T>
    void add(std::string name, tensor_view<T, host_space> t, safetensors_dtype dtype) {
        check_new_name(name);
        detail::require_little_endian_host_st(source_);
        safetensors_tensor st;
        st.dtype = dtype;
        for (int i = 0; i < t.rank(); ++i) st.shape.push_back(t.shape()[i]);
        st.data = detail::encode_elements<std::remove_const_t<T>>(t.data(), t.numel(), dtype,
                                                                  "tensor '" + name + "' for '" + source_ + "'");
        st.name = std::move(name);
        insert(std::move(st));
    }
    template <class T>
    void add(std::string name, const tensor<T, host_space>& t, safetensors_dtype dtype) {
        add(std::move(name), t.cview(), dtype);
    }

    /// Adds a tensor from raw little-endian bytes; data.size() must be prod(shape) × element size.
    void add_raw(std::string name, safetensors_dtype dtype, std::vector<std::int64_t> shape, std::string data) {
        check_new_name(name);
        std::uint64_t n = safetensors_dtype_size(dtype);
        for (std::int64_t d : shape) {
            if (d < 0)
                fail("add_raw: tensor '" + name + "' for '" + source_ + "' has negative dimension " +
                     std::to_string(d));
            if (!detail::checked_mul(n, static_cast<std::uint64_t>(d), n))
                fail("add_raw: tensor '" + name + "' for '" + source_ + "': shape is too large");
        }
        safetensors_tensor st{std::move(name), dtype, std::move(shape), std::move(data)};
        if (st.data.size() != n)
            fail("add_raw: tensor '" + st.name + "' for '" + source_ + "' of dtype " + safetensors_dtype_name(dtype) +
                 " and shape " + st.shape_str() + " needs " + std::to_string(n) + " bytes but " +
                 std::to_string(st.data.size()) + " were given");
        insert(std::move(st));
    }

    /// The file's bytes in the canonical layout (see the header comment).
    std::string serialize() const {
        std::vector<std::size_t> order(tensors_.size());
        for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
        std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
            const int ra = detail::safetensors_layout_rank(tensors_[a].dtype);
            const int rb = detail::safetensors_layout_rank(tensors_[b].dtype);
            if (ra != rb) return ra > rb;
            return tensors_[a].name < tensors_[b].name;
        });
        json_object header;
        if (!metadata_.empty()) {
            std::vector<std::pair<std::string, std::string>> meta = metadata_;
            std::sort(meta.begin(), meta.end());
            json_object m;
            for (auto& kv : meta) m.emplace_back(std::move(kv.first), json_value(std::move(kv.second)));
            header.emplace_back("__metadata__", json_value(std::move(m)));
        }
        std::uint64_t offset = 0;
        for (std::size_t i : order) {
            const safetensors_tensor& t = tensors_[i];
            json_array shape;
            for (std::int64_t d : t.shape) shape.emplace_back(d);
            const std::uint64_t end = offset + t.data.size();
            json_object entry;
            entry.emplace_back("dtype", json_value(safetensors_dtype_name(t.dtype)));
            entry.emplace_back("shape", json_value(std::move(shape)));
            entry.emplace_back("data_offsets", json_value::array({json_value(offset), json_value(end)}));
            header.emplace_back(t.name, json_value(std::move(entry)));
            offset = end;
        }
        json_format compact;
        compact.indent = -1;
        compact.ensure_ascii = false;
        compact.spaces = false;
        std::string text = to_json(json_value(std::move(header)), compact);
        text.append((8 - text.size() % 8) % 8, ' ');
        if (text.size() > detail::safetensors_max_header)
            fail("safetensors file '" + source_ + "': the header would be " + std::to_string(text.size()) +
                 " bytes, above the format's limit of 100000000");
        std::string out;
        out.reserve(8 + text.size() + offset);
        const std::uint64_t n = text.size();
        for (int k = 0; k < 8; ++k) out += static_cast<char>((n >> (8 * k)) & 0xFF);
        out += text;
        for (std::size_t i : order) out += tensors_[i].data;
        return out;
    }

    /// Writes serialize() to `path`.
    void write(const std::string& path) const {
        const std::string bytes = serialize();
        io::detail::write_file_bytes(path, bytes.data(), bytes.size(), "safetensors file");
    }

private:
    std::string where(const safetensors_tensor& t) const { return "tensor '" + t.name + "' in '" + source_ + "'"; }

    template <class T>
    void check_convertible(const safetensors_tensor& t) const {
        static_assert(std::is_arithmetic_v<T> && !std::is_same_v<T, long double>, "T is float, double or an integer");
        if constexpr (!std::is_floating_point_v<T>) {
            if (safetensors_is_float(t.dtype))
                fail(where(t) + " has floating-point dtype " + safetensors_dtype_name(t.dtype) +
                     "; refusing to convert it to an integer type (request float or double)");
        }
    }

    diffuse::shape diffuse_shape(const safetensors_tensor& t) const {
        if (t.shape.size() > static_cast<std::size_t>(max_rank))
            fail(where(t) + " has rank " + std::to_string(t.shape.size()) + " (shape " + t.shape_str() +
                 "); diffuse tensors have rank 0 to " + std::to_string(max_rank));
        return diffuse::shape::from_range(t.shape.begin(), t.shape.end());
    }

    void check_new_name(const std::string& name) const {
        if (name == "__metadata__")
            fail("safetensors file '" + source_ + "': '__metadata__' is reserved and cannot name a tensor");
        if (contains(name)) fail("safetensors file '" + source_ + "': duplicate tensor name '" + name + "'");
        if (!detail::is_valid_utf8(name))
            fail("safetensors file '" + source_ + "': tensor name '" + name + "' is not valid UTF-8");
    }

    void insert(safetensors_tensor t) {
        index_.emplace(t.name, tensors_.size());
        tensors_.push_back(std::move(t));
    }

    [[noreturn]] void bad(const std::string& message) const {
        fail("safetensors file '" + source_ + "': " + message);
    }

    struct entry_info {
        std::string name;
        safetensors_dtype dtype = safetensors_dtype::f32;
        std::vector<std::int64_t> shape;
        std::uint64_t begin = 0, end = 0;
    };

    std::uint64_t offset_value(const json_value& v, const std::string& name) const {
        if (!v.is_integer() || v.as_int64() < 0)
            bad("tensor '" + name + "': 'data_offsets' must be two non-negative integers [begin, end], found " +
                to_json(v, -1));
        return static_cast<std::uint64_t>(v.as_int64());
    }

    entry_info parse_entry(const std::string& name, const json_value& v) const {
        entry_info e;
        e.name = name;
        if (!v.is_object())
            bad("header entry '" + name + "' is " + json_type_name(v.type()) +
                "; expected an object with keys 'dtype', 'shape' and 'data_offsets'");
        const json_value* dtype = v.find("dtype");
        const json_value* shape = v.find("shape");
        const json_value* offsets = v.find("data_offsets");
        for (auto [key, p] : {std::pair{"dtype", dtype}, std::pair{"shape", shape}, std::pair{"data_offsets", offsets}})
            if (!p) bad("tensor '" + name + "': header entry lacks '" + key + "'");
        if (!dtype->is_string())
            bad("tensor '" + name + "': 'dtype' is " + json_type_name(dtype->type()) +
                "; expected a string such as \"F32\"");
        const std::optional<safetensors_dtype> d = safetensors_dtype_from_name(dtype->as_string());
        if (!d) {
            std::string supported;
            for (safetensors_dtype x : safetensors_dtypes) supported += std::string(supported.empty() ? "" : ", ") +
                                                                        safetensors_dtype_name(x);
            bad("tensor '" + name + "': unknown or unsupported dtype '" + dtype->as_string() + "'; supported: " +
                supported);
        }
        e.dtype = *d;
        if (!shape->is_array())
            bad("tensor '" + name + "': 'shape' is " + json_type_name(shape->type()) +
                "; expected an array of non-negative integers");
        for (const json_value& dim : shape->as_array()) {
            if (!dim.is_integer())
                bad("tensor '" + name + "': 'shape' " + to_json(*shape, -1) +
                    " holds a value that is not an integer; expected non-negative integers");
            if (dim.as_int64() < 0)
                bad("tensor '" + name + "': negative dimension " + std::to_string(dim.as_int64()) + " in shape " +
                    to_json(*shape, -1));
            e.shape.push_back(dim.as_int64());
        }
        if (!offsets->is_array() || offsets->size() != 2)
            bad("tensor '" + name + "': 'data_offsets' must be two non-negative integers [begin, end], found " +
                to_json(*offsets, -1));
        e.begin = offset_value(offsets->as_array()[0], name);
        e.end = offset_value(offsets->as_array()[1], name);
        return e;
    }

    void parse_bytes(const std::string& bytes) {
        detail::require_little_endian_host_st(source_);
        if (bytes.size() < 8)
            bad("the file is " + std::to_string(bytes.size()) +
                " bytes long; a .safetensors file starts with an 8-byte header length (truncated or empty file)");
        std::uint64_t n = 0;
        for (int k = 7; k >= 0; --k) n = (n << 8) | static_cast<unsigned char>(bytes[static_cast<std::size_t>(k)]);
        if (n > detail::safetensors_max_header)
            bad("header length " + std::to_string(n) +
                " is larger than the limit of 100000000 bytes (a corrupt file, or not a .safetensors file)");
        const std::uint64_t rest = bytes.size() - 8;
        if (n > rest)
            bad("header length " + std::to_string(n) + " is larger than the " + std::to_string(rest) +
                " bytes after the length field (truncated file)");
        const std::string_view text(bytes.data() + 8, static_cast<std::size_t>(n));
        const json_value header = parse_json(text, "safetensors file '" + source_ + "': header");
        if (!header.is_object())
            bad(std::string("the header is ") + json_type_name(header.type()) + "; expected a JSON object");
        const std::uint64_t data_size = rest - n;
        std::vector<entry_info> entries;
        for (const json_member& m : header.as_object()) {
            if (m.first == "__metadata__") {
                if (!m.second.is_object())
                    bad(std::string("'__metadata__' is ") + json_type_name(m.second.type()) +
                        "; expected an object mapping strings to strings");
                for (const json_member& kv : m.second.as_object()) {
                    if (!kv.second.is_string())
                        bad("'__metadata__' value for key '" + kv.first + "' is " + json_type_name(kv.second.type()) +
                            "; expected a string");
                    metadata_.emplace_back(kv.first, kv.second.as_string());
                }
                continue;
            }
            entry_info e = parse_entry(m.first, m.second);
            if (e.begin > e.end)
                bad("tensor '" + e.name + "': data_offsets [" + std::to_string(e.begin) + ", " + std::to_string(e.end) +
                    "] have begin > end");
            std::uint64_t need = safetensors_dtype_size(e.dtype);
            for (std::int64_t dim : e.shape)
                if (!detail::checked_mul(need, static_cast<std::uint64_t>(dim), need))
                    bad("tensor '" + e.name + "': shape " + to_json(m.second.at("shape"), -1) +
                        " of dtype " + safetensors_dtype_name(e.dtype) + " overflows 64-bit byte counts");
            if (need != e.end - e.begin)
                bad("tensor '" + e.name + "': shape " + to_json(m.second.at("shape"), -1) + " of dtype " +
                    safetensors_dtype_name(e.dtype) + " needs " + std::to_string(need) + " bytes but data_offsets [" +
                    std::to_string(e.begin) + ", " + std::to_string(e.end) + "] span " +
                    std::to_string(e.end - e.begin));
            if (e.end > data_size)
                bad("tensor '" + e.name + "': data_offsets [" + std::to_string(e.begin) + ", " + std::to_string(e.end) +
                    "] run past the end of the data buffer (" + std::to_string(data_size) + " bytes; truncated file?)");
            entries.push_back(std::move(e));
        }
        std::stable_sort(entries.begin(), entries.end(), [](const entry_info& a, const entry_info& b) {
            return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
        });
        std::uint64_t covered = 0;
        for (std::size_t i = 0; i < entries.size(); ++i) {
            const entry_info& e = entries[i];
            const auto span = [](const entry_info& x) {
                return "[" + std::to_string(x.begin) + ", " + std::to_string(x.end) + "]";
            };
            if (e.begin < covered) {
                const entry_info& prev = entries[i - 1];
                bad("tensors '" + prev.name + "' (data_offsets " + span(prev) + ") and '" + e.name +
                    "' (data_offsets " + span(e) + ") overlap");
            }
            if (e.begin > covered)
                bad("bytes [" + std::to_string(covered) + ", " + std::to_string(e.begin) +
                    ") of the data buffer belong to no tensor (a hole " +
                    (i == 0 ? std::string("before '") + e.name + "'"
                            : "between '" + entries[i - 1].name + "' and '" + e.name + "'") +
                    "); the tensors must cover the data buffer exactly");
            covered = e.end;
        }
        if (covered != data_size)
            bad("the data buffer is " + std::to_string(data_size) + " bytes but the tensors cover only " +
                std::to_string(covered) + "; the tensors must cover the data buffer exactly (extra bytes at the end)");
        const char* data = bytes.data() + 8 + n;
        tensors_.reserve(entries.size());
        for (entry_info& e : entries) {
            safetensors_tensor t;
            t.name = std::move(e.name);
            t.dtype = e.dtype;
            t.shape = std::move(e.shape);
            t.data.assign(data + e.begin, static_cast<std::size_t>(e.end - e.begin));
            insert(std::move(t));
        }
    }

    std::string source_;
    std::vector<safetensors_tensor> tensors_;
    std::map<std::string, std::size_t, std::less<>> index_;
    std::vector<std::pair<std::string, std::string>> metadata_;
};

}  // namespace diffuse::io
