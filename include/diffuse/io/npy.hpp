#pragma once
// .npy files (NumPy's array format) for host tensors of rank 0–5.
//
// Format (numpy.lib.format, versions 1.0, 2.0 and 3.0 are read; 1.0 is written):
//   bytes 0–5   "\x93NUMPY"                magic
//   bytes 6–7   major, minor version      1.0 / 2.0 / 3.0
//   next 2 or 4 header length, little-endian (2 bytes for 1.0, 4 for 2.0 and 3.0)
//   header      a Python dict literal, e.g. {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
//               padded with spaces and ended by '\n' so that the data starts at a multiple of 64
//   data        prod(shape) elements, row-major (C order), little-endian
//
// Element types (descr): float32 '<f4', float64 '<f8', int8 '|i1', int16 '<i2', int32 '<i4',
// int64 '<i8', uint8 '|u1', uint16 '<u2', uint32 '<u4', uint64 '<u8', bool '|b1'.
// save_npy writes the same bytes as numpy.save (numpy >= 1.23, including the spare header space
// numpy leaves for growing the first axis), so files diff cleanly against Python output.
//
// This is a direct implementation, not xtensor's xnpy: xnpy depends on the key order of the
// header, does not check the data size and reports errors without the file name. Here every bad
// input throws diffuse::error naming the file and the problem — missing or truncated file, bad
// magic, unknown version, a header that is not a dict, fortran_order True, big-endian or
// unsupported dtype, rank above 5, shape / data size mismatch (short or long), or a dtype other
// than the one requested:
//   "npy file 'x.npy': holds dtype '<f8' (float64) but float32 ('<f4') was requested; ..."

#include <diffuse/core/error.hpp>
#include <diffuse/core/memory_space.hpp>
#include <diffuse/core/shape.hpp>
#include <diffuse/core/tensor.hpp>
#include <diffuse/io/detail/file.hpp>

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace diffuse::io {

/// What the header of an .npy file says.
struct npy_header {
    std::string descr;           ///< dtype string as written, e.g. "<f4"
    bool fortran_order = false;  ///< always false for files this library accepts
    diffuse::shape shape;        ///< rank 0–5
    int version_major = 1;
    int version_minor = 0;
    std::size_t data_offset = 0;  ///< bytes before the first element (a multiple of 64 from numpy)
};

namespace detail {

template <class T>
inline constexpr bool npy_supported_v =
    std::is_arithmetic_v<T> && !std::is_same_v<T, long double> &&
    (std::is_same_v<T, bool> || sizeof(T) == 1 || sizeof(T) == 2 || sizeof(T) == 4 || sizeof(T) == 8) &&
    !(std::is_floating_point_v<T> && sizeof(T) < 4);

/// A parsed descr: kind 'f', 'i', 'u' or 'b' and the item size in bytes.
struct npy_dtype {
    char kind = 0;
    int size = 0;
    friend bool operator==(const npy_dtype&, const npy_dtype&) = default;
};

template <class T>
constexpr npy_dtype dtype_of() {
    static_assert(npy_supported_v<T>, "npy: element type has no .npy dtype here");
    if constexpr (std::is_same_v<T, bool>) return {'b', 1};
    else if constexpr (std::is_floating_point_v<T>) return {'f', static_cast<int>(sizeof(T))};
    else if constexpr (std::is_signed_v<T>) return {'i', static_cast<int>(sizeof(T))};
    else return {'u', static_cast<int>(sizeof(T))};
}

inline std::string descr_string(npy_dtype d) {
    return std::string(1, d.size == 1 ? '|' : '<') + d.kind + std::to_string(d.size);
}

inline std::string dtype_name(npy_dtype d) {
    switch (d.kind) {
        case 'f': return "float" + std::to_string(8 * d.size);
        case 'i': return "int" + std::to_string(8 * d.size);
        case 'u': return "uint" + std::to_string(8 * d.size);
        case 'b': return "bool";
        default: return "?";
    }
}

inline bool is_supported(npy_dtype d) {
    switch (d.kind) {
        case 'f': return d.size == 4 || d.size == 8;
        case 'i':
        case 'u': return d.size == 1 || d.size == 2 || d.size == 4 || d.size == 8;
        case 'b': return d.size == 1;
        default: return false;
    }
}

inline void require_little_endian_host(const std::string& source) {
    if constexpr (std::endian::native != std::endian::little)
        fail(source + ": .npy I/O is implemented for little-endian hosts only");
}

/// Parses a descr such as "<f4" / "|u1"; throws for big-endian or unsupported dtypes.
inline npy_dtype parse_descr(const std::string& descr, const std::string& source) {
    const std::string supported =
        "; supported: float32 '<f4', float64 '<f8', int8/16/32/64 '|i1' '<i2' '<i4' '<i8', "
        "uint8/16/32/64 '|u1' '<u2' '<u4' '<u8', bool '|b1'";
    if (descr.size() < 3) fail(source + ": unsupported dtype '" + descr + "'" + supported);
    const char order = descr[0];
    npy_dtype d;
    d.kind = descr[1];
    bool digits = true;
    for (std::size_t i = 2; i < descr.size(); ++i) digits = digits && descr[i] >= '0' && descr[i] <= '9';
    if (!digits || descr.size() > 4 || (order != '<' && order != '>' && order != '|' && order != '='))
        fail(source + ": unsupported dtype '" + descr + "'" + supported);
    d.size = std::stoi(descr.substr(2));
    if (!is_supported(d)) fail(source + ": unsupported dtype '" + descr + "'" + supported);
    if (order == '>' && d.size > 1)
        fail(source + ": big-endian dtype '" + descr +
             "' is not supported; re-save it little-endian, e.g. arr.astype('" + descr_string(d) + "')");
    return d;
}

/// A tiny reader for the Python dict literal of an .npy header.
class header_parser {
public:
    header_parser(std::string_view text, const std::string& source) : s_(text), source_(source) {}

    void parse(npy_header& h) {
        skip_ws();
        if (!eat('{')) {
            fail(source_ + ": header is not a Python dict literal (expected '{', found \"" +
                 std::string(s_.substr(0, 40)) + "\")");
        }
        bool have_descr = false, have_fortran = false, have_shape = false;
        for (;;) {
            skip_ws();
            if (eat('}')) break;
            const std::string key = parse_string("a quoted key");
            skip_ws();
            if (!eat(':')) bad("':' after key '" + key + "'");
            skip_ws();
            if (key == "descr") {
                if (peek() == '[' || peek() == '{')
                    fail(source_ + ": unsupported dtype (structured or record arrays are not supported)");
                h.descr = parse_string("a dtype string for 'descr'");
                dup(have_descr, key);
            } else if (key == "fortran_order") {
                if (eat_word("True")) h.fortran_order = true;
                else if (eat_word("False")) h.fortran_order = false;
                else bad("True or False for 'fortran_order'");
                dup(have_fortran, key);
            } else if (key == "shape") {
                parse_shape(h);
                dup(have_shape, key);
            } else {
                fail(source_ + ": unexpected key '" + key +
                     "' in header; expected exactly 'descr', 'fortran_order' and 'shape'");
            }
            skip_ws();
            if (eat(',')) continue;
            skip_ws();
            if (eat('}')) break;
            bad("',' or '}' in the header dict");
        }
        skip_ws();
        if (pos_ != s_.size()) bad("only spaces and '\\n' after the header dict");
        if (!have_descr || !have_fortran || !have_shape)
            fail(source_ + ": header lacks key '" +
                 std::string(!have_descr ? "descr" : !have_fortran ? "fortran_order" : "shape") + "'");
    }

private:
    char peek() const { return pos_ < s_.size() ? s_[pos_] : '\0'; }
    bool eat(char c) {
        if (peek() != c) return false;
        ++pos_;
        return true;
    }
    bool eat_word(std::string_view w) {
        if (s_.substr(pos_, w.size()) != w) return false;
        pos_ += w.size();
        return true;
    }
    void skip_ws() {
        while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\n' || s_[pos_] == '\t' || s_[pos_] == '\r'))
            ++pos_;
    }
    [[noreturn]] void bad(const std::string& expected) {
        fail(source_ + ": malformed header at character " + std::to_string(pos_) + ": expected " + expected +
             " in \"" + std::string(s_) + "\"");
    }
    void dup(bool& seen, const std::string& key) {
        if (seen) fail(source_ + ": header has key '" + key + "' twice");
        seen = true;
    }
    std::string parse_string(const std::string& what) {
        const char q = peek();
        if (q != '\'' && q != '"') bad(what);
        ++pos_;
        const std::size_t end = s_.find(q, pos_);
        if (end == std::string_view::npos) bad("a closing quote");
        std::string out(s_.substr(pos_, end - pos_));
        pos_ = end + 1;
        return out;
    }
    void parse_shape(npy_header& h) {
        if (!eat('(')) bad("a tuple '(...)' for 'shape'");
        std::vector<std::int64_t> dims;
        for (;;) {
            skip_ws();
            if (eat(')')) break;
            if (peek() == '-') fail(source_ + ": negative dimension in shape");
            if (peek() < '0' || peek() > '9') bad("a non-negative integer in 'shape'");
            std::int64_t v = 0;
            while (peek() >= '0' && peek() <= '9') {
                const int digit = peek() - '0';
                if (v > (std::numeric_limits<std::int64_t>::max() - digit) / 10)
                    fail(source_ + ": dimension in shape is too large");
                v = v * 10 + digit;
                ++pos_;
            }
            eat('L');  // numpy under Python 2 wrote (3L,)
            dims.push_back(v);
            skip_ws();
            if (eat(',')) continue;
            skip_ws();
            if (eat(')')) break;
            bad("',' or ')' in 'shape'");
        }
        if (dims.size() > static_cast<std::size_t>(max_rank))
            fail(source_ + ": rank " + std::to_string(dims.size()) + " is above the maximum rank " +
                 std::to_string(max_rank) + " of diffuse tensors");
        std::int64_t n = 1;
        for (std::int64_t d : dims) {
            if (d != 0 && n > std::numeric_limits<std::int64_t>::max() / 16 / d)
                fail(source_ + ": shape is too large");
            n *= d;
        }
        h.shape = diffuse::shape::from_range(dims.begin(), dims.end());
    }

    std::string_view s_;
    const std::string& source_;
    std::size_t pos_ = 0;
};

/// Bytes of magic + version + header length; header_len is set from them.
inline std::size_t parse_prefix(const unsigned char* p, std::size_t n, npy_header& h, std::size_t& header_len,
                                const std::string& source) {
    static constexpr unsigned char magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
    if (std::memcmp(p, magic, n < 6 ? n : 6) != 0)
        fail(source + ": bad magic; not an .npy file (expected the bytes \\x93NUMPY)");
    if (n < 8) fail(source + ": truncated (" + std::to_string(n) + " bytes; an .npy file starts with 10)");
    h.version_major = p[6];
    h.version_minor = p[7];
    if (!((h.version_major == 1 || h.version_major == 2 || h.version_major == 3) && h.version_minor == 0))
        fail(source + ": unsupported .npy format version " + std::to_string(h.version_major) + "." +
             std::to_string(h.version_minor) + "; expected 1.0, 2.0 or 3.0");
    const std::size_t prefix = h.version_major == 1 ? 10 : 12;
    if (n < prefix) fail(source + ": truncated inside the header length field");
    header_len = std::size_t(p[8]) | (std::size_t(p[9]) << 8);
    if (prefix == 12) header_len |= (std::size_t(p[10]) << 16) | (std::size_t(p[11]) << 24);
    return prefix;
}

inline void parse_header_text(std::string_view text, npy_header& h, const std::string& source) {
    header_parser(text, source).parse(h);
    if (h.fortran_order)
        fail(source + ": fortran_order is True (column-major data) which is not supported; save a "
                      "C-contiguous array, e.g. np.save(path, np.ascontiguousarray(a))");
    (void)parse_descr(h.descr, source);
}

/// Checks that the data holds exactly prod(shape) elements of the header's dtype.
inline void check_data_size(const npy_header& h, std::size_t data_bytes, const std::string& source) {
    const npy_dtype d = parse_descr(h.descr, source);
    const std::size_t need = static_cast<std::size_t>(h.shape.numel()) * static_cast<std::size_t>(d.size);
    if (data_bytes != need)
        fail(source + ": " + (data_bytes < need ? "truncated: " : "size mismatch: ") + "shape " + h.shape.str() +
             " of dtype '" + h.descr + "' needs " + std::to_string(need) + " data bytes but the file has " +
             std::to_string(data_bytes));
}

template <class T>
void check_requested(const npy_header& h, const std::string& source) {
    const npy_dtype have = parse_descr(h.descr, source);
    constexpr npy_dtype want = dtype_of<T>();
    if (!(have == want))
        fail(source + ": holds dtype '" + h.descr + "' (" + dtype_name(have) + ") but " + dtype_name(want) + " ('" +
             descr_string(want) + "') was requested; load it with the matching element type or with "
                                  "load_npy_as<T> to convert");
}

template <class T>
void check_bools(const T* data, std::int64_t n, const std::string& source) {
    if constexpr (std::is_same_v<T, bool>) {
        const auto* bytes = reinterpret_cast<const unsigned char*>(data);
        for (std::int64_t i = 0; i < n; ++i)
            if (bytes[i] > 1)
                fail(source + ": bool element " + std::to_string(i) + " has byte value " +
                     std::to_string(int(bytes[i])) + "; expected 0 or 1");
    } else {
        (void)data, (void)n, (void)source;
    }
}

inline std::string file_source(const std::string& path) { return "npy file '" + path + "'"; }

/// The header bytes numpy.save writes for this dtype and shape (version 1.0).
inline std::string make_header(npy_dtype d, const diffuse::shape& s) {
    std::string shape_repr = "(";
    for (int i = 0; i < s.rank(); ++i) {
        if (i) shape_repr += ", ";
        shape_repr += std::to_string(s[i]);
    }
    if (s.rank() == 1) shape_repr += ",";
    shape_repr += ")";
    std::string dict = "{'descr': '" + descr_string(d) + "', 'fortran_order': False, 'shape': " + shape_repr + ", }";
    // numpy >= 1.23 leaves room for the first axis to grow to 21 digits (GROWTH_AXIS_MAX_DIGITS).
    if (s.rank() > 0) dict += std::string(21 - std::to_string(s[0]).size(), ' ');
    const std::size_t hlen = dict.size() + 1;           // + '\n'
    const std::size_t pad = 64 - ((10 + hlen) % 64);    // numpy pads even when already aligned
    dict += std::string(pad, ' ');
    dict += '\n';
    std::string out = "\x93NUMPY";
    out += char(1);
    out += char(0);
    if (dict.size() > 0xFFFF) fail("npy: header too long for format 1.0");
    out += char(dict.size() & 0xFF);
    out += char((dict.size() >> 8) & 0xFF);
    return out + dict;
}

template <class T>
std::string encode(const T* data, const diffuse::shape& s) {
    require_little_endian_host("npy");
    std::string out = make_header(dtype_of<T>(), s);
    const std::size_t header = out.size();
    const std::size_t bytes = static_cast<std::size_t>(s.numel()) * sizeof(T);
    out.resize(header + bytes);
    if (bytes) std::memcpy(out.data() + header, data, bytes);
    return out;
}

template <class Src, class Dst>
void convert_values(const Src* src, Dst* dst, std::int64_t n, const std::string& source) {
    for (std::int64_t i = 0; i < n; ++i) {
        const Src v = src[i];
        if constexpr (std::is_floating_point_v<Dst> || std::is_same_v<Src, Dst>) {
            dst[i] = static_cast<Dst>(v);
        } else if constexpr (std::is_same_v<Dst, bool>) {
            dst[i] = v != Src(0);
        } else if constexpr (std::is_same_v<Src, bool>) {
            dst[i] = v ? Dst(1) : Dst(0);
        } else if constexpr (std::is_integral_v<Src>) {
            if (!std::in_range<Dst>(v))
                fail(source + ": element " + std::to_string(i) + " = " + std::to_string(v) +
                     " does not fit the requested integer type");
            dst[i] = static_cast<Dst>(v);
        } else {
            static_assert(!std::is_same_v<Src, Src>, "unreachable");
        }
    }
}

}  // namespace detail

/// The dtype string numpy uses for T, e.g. npy_descr<float>() == "<f4", npy_descr<std::uint8_t>() == "|u1".
template <class T>
std::string npy_descr() {
    return detail::descr_string(detail::dtype_of<T>());
}

/// The .npy bytes of a host tensor (what numpy.save would write).
template <class T>
std::string to_npy_bytes(tensor_view<T, host_space> t) {
    return detail::encode<std::remove_const_t<T>>(t.data(), t.shape());
}
template <class T>
std::string to_npy_bytes(const tensor<T, host_space>& t) {
    return to_npy_bytes(t.cview());
}

/// Parses the header of .npy bytes (checks magic, version, dict, dtype support and data size).
inline npy_header parse_npy_header(std::string_view bytes, const std::string& source = "npy bytes") {
    npy_header h;
    std::size_t header_len = 0;
    const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
    const std::size_t prefix = detail::parse_prefix(p, bytes.size(), h, header_len, source);
    if (bytes.size() - prefix < header_len)
        fail(source + ": truncated inside the header (header length " + std::to_string(header_len) + ", " +
             std::to_string(bytes.size() - prefix) + " bytes left)");
    detail::parse_header_text(bytes.substr(prefix, header_len), h, source);
    h.data_offset = prefix + header_len;
    detail::check_data_size(h, bytes.size() - h.data_offset, source);
    return h;
}

/// Reads .npy bytes holding dtype T exactly; `source` names the bytes in error messages.
template <class T>
tensor<T, host_space> from_npy_bytes(std::string_view bytes, const std::string& source = "npy bytes") {
    detail::require_little_endian_host(source);
    const npy_header h = parse_npy_header(bytes, source);
    detail::check_requested<T>(h, source);
    tensor<T, host_space> t(h.shape);
    if (t.bytes()) std::memcpy(t.data(), bytes.data() + h.data_offset, t.bytes());
    detail::check_bools(t.data(), t.numel(), source);
    return t;
}

/// Reads only the header of an .npy file (dtype and shape), checking it as load_npy does.
inline npy_header read_npy_header(const std::string& path) {
    const std::string source = detail::file_source(path);
    detail::file_ptr f = detail::open_for_reading(path, "npy file");
    unsigned char prefix_bytes[12] = {};
    const std::size_t got = std::fread(prefix_bytes, 1, sizeof prefix_bytes, f.get());
    npy_header h;
    std::size_t header_len = 0;
    const std::size_t prefix = detail::parse_prefix(prefix_bytes, got, h, header_len, source);
    std::string text(header_len, '\0');
    if (std::fseek(f.get(), static_cast<long>(prefix), SEEK_SET) != 0 ||
        std::fread(text.data(), 1, header_len, f.get()) != header_len)
        fail(source + ": truncated inside the header (header length " + std::to_string(header_len) + ")");
    detail::parse_header_text(text, h, source);
    h.data_offset = prefix + header_len;
    if (std::fseek(f.get(), 0, SEEK_END) != 0) fail(source + ": cannot seek");
    const long end = std::ftell(f.get());
    if (end < 0) fail(source + ": cannot determine the file size");
    detail::check_data_size(h, static_cast<std::size_t>(end) - h.data_offset, source);
    return h;
}

/// Loads an .npy file whose dtype is exactly T's (see npy_descr<T>()); any other dtype is an error.
template <class T>
tensor<T, host_space> load_npy(const std::string& path) {
    const std::string source = detail::file_source(path);
    detail::require_little_endian_host(source);
    const npy_header h = read_npy_header(path);
    detail::check_requested<T>(h, source);
    tensor<T, host_space> t(h.shape);
    detail::file_ptr f = detail::open_for_reading(path, "npy file");
    if (std::fseek(f.get(), static_cast<long>(h.data_offset), SEEK_SET) != 0 ||
        (t.bytes() && std::fread(t.data(), 1, t.bytes(), f.get()) != t.bytes()))
        fail(source + ": truncated while reading the data");
    detail::check_bools(t.data(), t.numel(), source);
    return t;
}

/// Loads an .npy file of any supported dtype and converts the values to T with static_cast.
/// Conversions to an integer type accept only integer or bool files and check the range.
template <class T>
tensor<T, host_space> load_npy_as(const std::string& path) {
    const std::string source = detail::file_source(path);
    const npy_header h = read_npy_header(path);
    const detail::npy_dtype d = detail::parse_descr(h.descr, source);
    if (d == detail::dtype_of<T>()) return load_npy<T>(path);
    tensor<T, host_space> out(h.shape);
    auto convert = [&](auto tag) {
        using Src = decltype(tag);
        if constexpr (std::is_integral_v<T> && std::is_floating_point_v<Src>) {
            fail(source + ": holds dtype '" + h.descr + "' (" + detail::dtype_name(d) +
                 "); load_npy_as refuses to convert floating-point data to an integer type");
        } else {
            const tensor<Src, host_space> src = load_npy<Src>(path);
            detail::convert_values(src.data(), out.data(), src.numel(), source);
        }
    };
    switch (d.kind) {
        case 'f': d.size == 4 ? convert(float{}) : convert(double{}); break;
        case 'b': convert(bool{}); break;
        case 'i':
            if (d.size == 1) convert(std::int8_t{});
            else if (d.size == 2) convert(std::int16_t{});
            else if (d.size == 4) convert(std::int32_t{});
            else convert(std::int64_t{});
            break;
        default:
            if (d.size == 1) convert(std::uint8_t{});
            else if (d.size == 2) convert(std::uint16_t{});
            else if (d.size == 4) convert(std::uint32_t{});
            else convert(std::uint64_t{});
            break;
    }
    return out;
}

/// Writes a host tensor of any rank 0–5 as an .npy file (format 1.0, little-endian, C order).
template <class T>
void save_npy(const std::string& path, tensor_view<T, host_space> t) {
    const std::string bytes = to_npy_bytes(t);
    detail::write_file_bytes(path, bytes.data(), bytes.size(), "npy file");
}
template <class T>
void save_npy(const std::string& path, const tensor<T, host_space>& t) {
    save_npy(path, t.cview());
}

/// Writes a std::vector as a 1-D .npy array of shape (n,) — for tables written by examples.
template <class T>
void save_npy(const std::string& path, const std::vector<T>& values) {
    static_assert(!std::is_same_v<T, bool>, "std::vector<bool> is not contiguous; use a tensor<bool>");
    save_npy(path, tensor_view<const T, host_space>(values.data(), diffuse::shape{static_cast<std::int64_t>(values.size())}));
}

}  // namespace diffuse::io
