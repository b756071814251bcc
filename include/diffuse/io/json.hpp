#pragma once
// JSON values, a strict parser and a Python-compatible writer, for diffusers' config.json files and
// the headers of .safetensors files. No third-party dependency.
//
//   json_value v = parse_json(text, "config.json");      // RFC 8259 + NaN / Infinity / -Infinity
//   std::int64_t n = v.at("layers_per_block", "config.json").as_int64("config.json: layers_per_block");
//   std::string s = to_json(v);                           // what json.dumps(v, indent=2) writes
//
// Values. json_value holds null, a boolean, a number, a string, an array or an object. A number
// remembers how it was written: a literal without fraction or exponent that fits int64 is kept as
// an integer (so 42 is written back as 42, and integers above 2^53 stay exact); every other number
// is a double (1e-05, 1.0, 18446744073709551616). Objects keep their members in insertion order
// (a vector of key/value pairs); the parser rejects duplicate keys.
//
// Grammar (RFC 8259): value = object | array | string | number | true | false | null, with
//   number = -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
//   string = '"' (any UTF-8 character except '"', '\' and U+0000–U+001F | escape)* '"'
//   escape = \" \\ \/ \b \f \n \r \t \uXXXX (a UTF-16 surrogate pair becomes one UTF-8 character)
// and whitespace = space, tab, CR, LF. As an extension the tokens NaN, Infinity and -Infinity are
// read as doubles, because Python's json.dump writes them. Numbers whose magnitude overflows a
// double read as ±Infinity and ones that underflow read as ±0, as in Python. The parser rejects
// trailing text, nesting deeper than 512 arrays/objects, unterminated strings, raw control
// characters in strings, unpaired surrogates and invalid UTF-8; every error names the input, the
// line and column (1-based, in bytes) and what was expected:
//   "config.json: line 3, column 7: expected ',' or '}' after an object member, found ']'"
//
// Writing. to_json(v, indent) writes like Python's json.dumps(v, indent=indent): indent >= 0 puts
// one element per line ("," at line ends, ": " after keys); indent < 0 writes one line with ", "
// and ": " (json.dumps's default). Non-ASCII characters are escaped as \uXXXX (ensure_ascii=True).
// Integers print as integers; doubles print as Python's repr (the shortest digits that read back
// to the same double, e.g. 1e-05, 0.0001, 1.0, 1e+16) and non-finite ones as NaN / Infinity /
// -Infinity. json_format also offers serde_json's compact style (no spaces, raw UTF-8), which the
// safetensors header uses. parse_json(to_json(v)) == v for every value v holding valid UTF-8.

#include <diffuse/core/error.hpp>
#include <diffuse/io/detail/file.hpp>

#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

namespace diffuse::io {

class json_value;
/// A JSON array.
using json_array = std::vector<json_value>;
/// One member of a JSON object: key and value.
using json_member = std::pair<std::string, json_value>;
/// A JSON object: members in insertion order.
using json_object = std::vector<json_member>;

/// What a json_value holds. `integer` and `real` are both JSON numbers.
enum class json_type { null, boolean, integer, real, string, array, object };

/// "null", "a boolean", "an integer", "a number", "a string", "an array", "an object".
inline const char* json_type_name(json_type t) {
    switch (t) {
        case json_type::null: return "null";
        case json_type::boolean: return "a boolean";
        case json_type::integer: return "an integer";
        case json_type::real: return "a number";
        case json_type::string: return "a string";
        case json_type::array: return "an array";
        case json_type::object: return "an object";
    }
    return "?";
}

/// How to_json writes.
struct json_format {
    int indent = 2;            ///< >= 0: one element per line, indented by this many spaces; < 0: one line
    bool ensure_ascii = true;  ///< escape non-ASCII characters as \uXXXX (Python's default)
    bool spaces = true;        ///< ": " after keys and ", " between one-line items (false: ":" and ",")
};

inline std::string to_json(const json_value& v, const json_format& format);

class json_value {
public:
    /// null
    json_value() noexcept = default;
    json_value(std::nullptr_t) noexcept {}
    json_value(bool b) : v_(b) {}
    json_value(char) = delete;  // ambiguous: a character is neither a number nor a string here

    /// Integers are stored as int64; an unsigned value above INT64_MAX is stored as a double.
    template <class I>
        requires(std::is_integral_v<I> && !std::is_same_v<I, bool> && !std::is_same_v<I, char>)
    json_value(I i) {
        if constexpr (std::is_unsigned_v<I> && sizeof(I) >= sizeof(std::int64_t)) {
            if (i > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
                v_ = static_cast<double>(i);
                return;
            }
        }
        v_ = static_cast<std::int64_t>(i);
    }
    template <class F>
        requires std::is_floating_point_v<F>
    json_value(F d) : v_(static_cast<double>(d)) {}

    json_value(const char* s) : v_(std::string(s)) {}
    json_value(std::string s) : v_(std::move(s)) {}
    json_value(std::string_view s) : v_(std::string(s)) {}
    json_value(json_array a) : v_(std::move(a)) {}
    json_value(json_object o) : v_(std::move(o)) {}

    /// An array from a vector of anything a json_value can be built from: json_value(std::vector{1, 2}).
    template <class T>
        requires(!std::is_same_v<T, json_value> && !std::is_same_v<T, json_member> &&
                 std::is_constructible_v<json_value, const T&>)
    json_value(const std::vector<T>& values) : v_(json_array(values.begin(), values.end())) {}

    /// json_value::array({1, "two", 3.0})
    static json_value array(std::initializer_list<json_value> values = {}) { return json_array(values); }
    /// json_value::object({{"a", 1}, {"b", json_value::array({1, 2})}})
    static json_value object(std::initializer_list<json_member> members = {}) { return json_object(members); }

    json_type type() const { return static_cast<json_type>(v_.index()); }
    bool is_null() const { return type() == json_type::null; }
    bool is_bool() const { return type() == json_type::boolean; }
    /// An integer or a double.
    bool is_number() const { return type() == json_type::integer || type() == json_type::real; }
    /// Stored as an integer (the literal had no fraction or exponent and fit int64).
    bool is_integer() const { return type() == json_type::integer; }
    bool is_double() const { return type() == json_type::real; }
    bool is_string() const { return type() == json_type::string; }
    bool is_array() const { return type() == json_type::array; }
    bool is_object() const { return type() == json_type::object; }

    // The as_* accessors throw diffuse::error unless the value has the requested type:
    //   "<what> is a string ("2"); expected an integer"
    // `what` names the value for the message, e.g. "config.json: key 'layers_per_block'".

    bool as_bool(std::string_view what = "JSON value") const {
        if (!is_bool()) wrong_type(what, "a boolean");
        return std::get<bool>(v_);
    }
    /// Integers convert to double (exactly up to 2^53).
    double as_double(std::string_view what = "JSON value") const {
        if (is_integer()) return static_cast<double>(std::get<std::int64_t>(v_));
        if (!is_double()) wrong_type(what, "a number");
        return std::get<double>(v_);
    }
    /// An integer, or a double with an integral value in the int64 range (2.0 -> 2); 1.5 is an error.
    std::int64_t as_int64(std::string_view what = "JSON value") const {
        if (is_integer()) return std::get<std::int64_t>(v_);
        if (!is_double()) wrong_type(what, "an integer");
        const double d = std::get<double>(v_);
        if (!(d == std::floor(d) && d >= -9223372036854775808.0 && d < 9223372036854775808.0))
            fail(std::string(what) + " = " + to_json(*this, json_format{-1, true, true}) +
                 " is not an integer; expected an integer");
        return static_cast<std::int64_t>(d);
    }
    const std::string& as_string(std::string_view what = "JSON value") const {
        if (!is_string()) wrong_type(what, "a string");
        return std::get<std::string>(v_);
    }
    std::string& as_string(std::string_view what = "JSON value") {
        if (!is_string()) wrong_type(what, "a string");
        return std::get<std::string>(v_);
    }
    const json_array& as_array(std::string_view what = "JSON value") const {
        if (!is_array()) wrong_type(what, "an array");
        return std::get<json_array>(v_);
    }
    json_array& as_array(std::string_view what = "JSON value") {
        if (!is_array()) wrong_type(what, "an array");
        return std::get<json_array>(v_);
    }
    const json_object& as_object(std::string_view what = "JSON value") const {
        if (!is_object()) wrong_type(what, "an object");
        return std::get<json_object>(v_);
    }
    json_object& as_object(std::string_view what = "JSON value") {
        if (!is_object()) wrong_type(what, "an object");
        return std::get<json_object>(v_);
    }

    /// Number of elements of an array or members of an object; an error for other types.
    std::size_t size() const {
        if (is_array()) return std::get<json_array>(v_).size();
        if (is_object()) return std::get<json_object>(v_).size();
        wrong_type("JSON value", "an array or an object");
    }

    /// Element i of an array: "<what>: index 5 is out of range for an array of 3 elements".
    const json_value& at(std::size_t index, std::string_view what = "JSON array") const {
        const json_array& a = as_array(what);
        if (index >= a.size())
            fail(std::string(what) + ": index " + std::to_string(index) + " is out of range for an array of " +
                 std::to_string(a.size()) + " elements");
        return a[index];
    }
    json_value& at(std::size_t index, std::string_view what = "JSON array") {
        return const_cast<json_value&>(static_cast<const json_value&>(*this).at(index, what));
    }

    /// True when this is an object with member `key` (false for every other type).
    bool contains(std::string_view key) const { return find(key) != nullptr; }

    /// The member `key` of an object, or nullptr when absent or when this is not an object.
    const json_value* find(std::string_view key) const {
        if (!is_object()) return nullptr;
        for (const json_member& m : std::get<json_object>(v_))
            if (m.first == key) return &m.second;
        return nullptr;
    }
    json_value* find(std::string_view key) {
        return const_cast<json_value*>(static_cast<const json_value&>(*this).find(key));
    }

    /// The member `key` of an object. Errors name `what` (when given) and list the keys:
    ///   "config.json: key 'foo' not found in object; keys are: a, b, c"
    const json_value& at(std::string_view key, std::string_view what = "") const {
        const json_object& o = as_object(what.empty() ? std::string_view("JSON value") : what);
        for (const json_member& m : o)
            if (m.first == key) return m.second;
        std::string msg;
        if (!what.empty()) msg.append(what).append(": ");
        msg.append("key '").append(key).append("' not found in object; keys are: ");
        if (o.empty()) msg += "(none, the object is empty)";
        constexpr std::size_t max_listed = 60;
        for (std::size_t i = 0; i < o.size() && i < max_listed; ++i) msg.append(i ? ", " : "").append(o[i].first);
        if (o.size() > max_listed) msg += ", ... (" + std::to_string(o.size() - max_listed) + " more)";
        fail(msg);
    }
    json_value& at(std::string_view key, std::string_view what = "") {
        return const_cast<json_value&>(static_cast<const json_value&>(*this).at(key, what));
    }

    /// Sets member `key` of an object (replacing its value, or appending a new member); returns the value.
    json_value& set(std::string key, json_value value) {
        json_object& o = as_object("JSON value (set)");
        for (json_member& m : o) {
            if (m.first == key) {
                m.second = std::move(value);
                return m.second;
            }
        }
        o.emplace_back(std::move(key), std::move(value));
        return o.back().second;
    }

    /// Appends to an array; returns the new element.
    json_value& push_back(json_value value) {
        json_array& a = as_array("JSON value (push_back)");
        a.push_back(std::move(value));
        return a.back();
    }

    /// Structural equality: same type and same contents, object members in the same order. Integers
    /// and doubles are different (1 != 1.0). Doubles compare as values that print the same: NaN equals
    /// NaN and -0.0 differs from 0.0, so parse_json(to_json(v)) == v holds for every v.
    friend bool operator==(const json_value& a, const json_value& b) {
        if (a.type() != b.type()) return false;
        if (a.is_double()) {
            const double x = std::get<double>(a.v_), y = std::get<double>(b.v_);
            if (std::isnan(x) || std::isnan(y)) return std::isnan(x) && std::isnan(y);
            return x == y && std::signbit(x) == std::signbit(y);
        }
        return a.v_ == b.v_;
    }

private:
    [[noreturn]] void wrong_type(std::string_view what, const char* expected) const {
        std::string preview = to_json(*this, json_format{-1, true, true});
        if (preview.size() > 60) preview = preview.substr(0, 57) + "...";
        fail(std::string(what) + " is " + json_type_name(type()) + (is_null() ? "" : " (" + preview + ")") +
             "; expected " + expected);
    }

    std::variant<std::nullptr_t, bool, std::int64_t, double, std::string, json_array, json_object> v_;
};

namespace detail {

/// Appends the UTF-8 encoding of code point cp (<= 0x10FFFF, not a surrogate).
inline void append_utf8(std::string& out, std::uint32_t cp) {
    if (cp < 0x80) {
        out += static_cast<char>(cp);
    } else if (cp < 0x800) {
        out += static_cast<char>(0xC0 | (cp >> 6));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out += static_cast<char>(0xE0 | (cp >> 12));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
        out += static_cast<char>(0xF0 | (cp >> 18));
        out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    }
}

/// Decodes one UTF-8 character of s at i (s[i] >= 0x80); returns its length (2–4) and sets cp, or 0
/// when the bytes are not valid UTF-8 (bad lead byte, missing continuation, overlong, surrogate,
/// above U+10FFFF).
inline std::size_t decode_utf8(std::string_view s, std::size_t i, std::uint32_t& cp) {
    const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
    const unsigned char c = byte(i);
    std::size_t len = 0;
    std::uint32_t min = 0;
    if (c >= 0xC2 && c <= 0xDF) len = 2, cp = c & 0x1Fu, min = 0x80;
    else if (c >= 0xE0 && c <= 0xEF) len = 3, cp = c & 0x0Fu, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4) len = 4, cp = c & 0x07u, min = 0x10000;
    else return 0;
    if (s.size() - i < len) return 0;
    for (std::size_t k = 1; k < len; ++k) {
        if ((byte(i + k) & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (byte(i + k) & 0x3Fu);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return len;
}

/// Whether s is valid UTF-8 (as JSON text requires).
inline bool is_valid_utf8(std::string_view s) {
    for (std::size_t i = 0; i < s.size();) {
        std::uint32_t cp = 0;
        const std::size_t len = static_cast<unsigned char>(s[i]) < 0x80 ? 1 : decode_utf8(s, i, cp);
        if (len == 0) return false;
        i += len;
    }
    return true;
}

inline std::string describe_byte(unsigned char c) {
    if (c >= 0x20 && c < 0x7F) return std::string("'") + static_cast<char>(c) + "'";
    static const char hex[] = "0123456789abcdef";
    return std::string("byte 0x") + hex[c >> 4] + hex[c & 15];
}

/// Recursive-descent parser for parse_json.
class json_parser {
public:
    json_parser(std::string_view text, std::string_view what) : s_(text), what_(what) {}

    json_value parse_document() {
        skip_ws();
        json_value v = parse_value();
        skip_ws();
        if (pos_ != s_.size()) error_at(pos_, "expected the end of the input after the JSON value");
        return v;
    }

private:
    static constexpr int max_depth = 512;

    [[noreturn]] void error_at(std::size_t pos, const std::string& message, bool show_found = true) const {
        std::size_t line = 1, line_start = 0;
        for (std::size_t i = 0; i < pos && i < s_.size(); ++i) {
            if (s_[i] == '\n') {
                ++line;
                line_start = i + 1;
            }
        }
        std::string msg(what_);
        msg += ": line " + std::to_string(line) + ", column " + std::to_string(pos - line_start + 1) + ": " + message;
        if (show_found)
            msg += pos < s_.size() ? ", found " + describe_byte(static_cast<unsigned char>(s_[pos]))
                                   : ", found the end of the input";
        fail(msg);
    }

    bool at_end() const { return pos_ >= s_.size(); }
    char peek() const { return at_end() ? '\0' : s_[pos_]; }

    void skip_ws() {
        while (!at_end() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) ++pos_;
    }

    bool eat_word(std::string_view w) {
        if (s_.substr(pos_, w.size()) != w) return false;
        pos_ += w.size();
        return true;
    }

    json_value parse_value() {
        switch (peek()) {
            case '{': return parse_object();
            case '[': return parse_array();
            case '"': return json_value(parse_string());
            case 't':
                if (eat_word("true")) return json_value(true);
                break;
            case 'f':
                if (eat_word("false")) return json_value(false);
                break;
            case 'n':
                if (eat_word("null")) return json_value();
                break;
            case 'N':
                if (eat_word("NaN")) return json_value(std::numeric_limits<double>::quiet_NaN());
                break;
            case 'I':
                if (eat_word("Infinity")) return json_value(std::numeric_limits<double>::infinity());
                break;
            case '-':
                if (eat_word("-Infinity")) return json_value(-std::numeric_limits<double>::infinity());
                return parse_number();
            default:
                if (peek() >= '0' && peek() <= '9') return parse_number();
                break;
        }
        error_at(pos_, "expected a JSON value (object, array, string, number, true, false or null)");
    }

    void enter(std::size_t pos) {
        if (++depth_ > max_depth)
            error_at(pos, "arrays and objects are nested deeper than " + std::to_string(max_depth) + " levels",
                     false);
    }

    json_value parse_object() {
        enter(pos_);
        ++pos_;  // '{'
        json_object members;
        std::unordered_set<std::string> keys;  // used once the object is large (linear search before)
        constexpr std::size_t linear_limit = 16;
        skip_ws();
        if (peek() == '}') {
            ++pos_;
            --depth_;
            return members;
        }
        for (;;) {
            skip_ws();
            const std::size_t key_pos = pos_;
            if (peek() != '"')
                error_at(pos_, members.empty() ? "expected a string key or '}' in an object"
                                               : "expected a string key after ',' in an object");
            std::string key = parse_string();
            bool duplicate = false;
            if (members.size() < linear_limit) {
                for (const json_member& m : members) duplicate = duplicate || m.first == key;
            } else {
                if (keys.empty())
                    for (const json_member& m : members) keys.insert(m.first);
                duplicate = !keys.insert(key).second;
            }
            if (duplicate) error_at(key_pos, "duplicate key '" + key + "' in an object", false);
            skip_ws();
            if (peek() != ':') error_at(pos_, "expected ':' after the object key '" + key + "'");
            ++pos_;
            skip_ws();
            json_value v = parse_value();
            members.emplace_back(std::move(key), std::move(v));
            skip_ws();
            if (peek() == ',') {
                ++pos_;
                continue;
            }
            if (peek() == '}') {
                ++pos_;
                break;
            }
            error_at(pos_, "expected ',' or '}' after an object member");
        }
        --depth_;
        return members;
    }

    json_value parse_array() {
        enter(pos_);
        ++pos_;  // '['
        json_array elements;
        skip_ws();
        if (peek() == ']') {
            ++pos_;
            --depth_;
            return elements;
        }
        for (;;) {
            skip_ws();
            elements.push_back(parse_value());
            skip_ws();
            if (peek() == ',') {
                ++pos_;
                continue;
            }
            if (peek() == ']') {
                ++pos_;
                break;
            }
            error_at(pos_, "expected ',' or ']' after an array element");
        }
        --depth_;
        return elements;
    }

    std::uint32_t parse_hex4(std::size_t escape_pos) {
        if (s_.size() - pos_ < 4) error_at(escape_pos, "expected 4 hex digits after \\u", false);
        std::uint32_t v = 0;
        for (int k = 0; k < 4; ++k) {
            const char c = s_[pos_];
            std::uint32_t d = 0;
            if (c >= '0' && c <= '9') d = static_cast<std::uint32_t>(c - '0');
            else if (c >= 'a' && c <= 'f') d = static_cast<std::uint32_t>(c - 'a' + 10);
            else if (c >= 'A' && c <= 'F') d = static_cast<std::uint32_t>(c - 'A' + 10);
            else error_at(pos_, "expected 4 hex digits after \\u");
            v = v * 16 + d;
            ++pos_;
        }
        return v;
    }

    std::string parse_string() {
        const std::size_t open = pos_;
        ++pos_;  // '"'
        std::string out;
        for (;;) {
            if (at_end()) {
                std::size_t line = 1, line_start = 0;
                for (std::size_t i = 0; i < open; ++i)
                    if (s_[i] == '\n') ++line, line_start = i + 1;
                error_at(pos_, "unterminated string (it starts at line " + std::to_string(line) + ", column " +
                                   std::to_string(open - line_start + 1) + ")",
                         false);
            }
            const auto c = static_cast<unsigned char>(s_[pos_]);
            if (c == '"') {
                ++pos_;
                return out;
            }
            if (c < 0x20) {
                error_at(pos_, "raw control character " + describe_byte(c) +
                                   " in a string; write it as an escape such as \\n, \\t or \\u001f",
                         false);
            }
            if (c >= 0x80) {
                std::uint32_t cp = 0;
                const std::size_t len = decode_utf8(s_, pos_, cp);
                if (len == 0) error_at(pos_, "invalid UTF-8 " + describe_byte(c) + " in a string", false);
                out.append(s_.substr(pos_, len));
                pos_ += len;
                continue;
            }
            if (c != '\\') {
                out += static_cast<char>(c);
                ++pos_;
                continue;
            }
            const std::size_t escape_pos = pos_;
            ++pos_;
            switch (peek()) {
                case '"': out += '"'; break;
                case '\\': out += '\\'; break;
                case '/': out += '/'; break;
                case 'b': out += '\b'; break;
                case 'f': out += '\f'; break;
                case 'n': out += '\n'; break;
                case 'r': out += '\r'; break;
                case 't': out += '\t'; break;
                case 'u': {
                    ++pos_;
                    std::uint32_t cp = parse_hex4(escape_pos);
                    if (cp >= 0xDC00 && cp <= 0xDFFF)
                        error_at(escape_pos, "unpaired UTF-16 low surrogate \\u" + hex4(cp) + " in a string", false);
                    if (cp >= 0xD800 && cp <= 0xDBFF) {
                        if (!(s_.substr(pos_, 2) == "\\u"))
                            error_at(escape_pos,
                                     "unpaired UTF-16 high surrogate \\u" + hex4(cp) +
                                         " in a string (it must be followed by a low surrogate \\uDC00-\\uDFFF)",
                                     false);
                        const std::size_t low_pos = pos_;
                        pos_ += 2;
                        const std::uint32_t low = parse_hex4(low_pos);
                        if (!(low >= 0xDC00 && low <= 0xDFFF))
                            error_at(low_pos,
                                     "UTF-16 high surrogate \\u" + hex4(cp) + " is followed by \\u" + hex4(low) +
                                         " instead of a low surrogate \\uDC00-\\uDFFF",
                                     false);
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
                    }
                    append_utf8(out, cp);
                    continue;  // pos_ is past the hex digits
                }
                default:
                    error_at(escape_pos, "invalid escape in a string; allowed are \\\" \\\\ \\/ \\b \\f \\n \\r \\t "
                                         "and \\uXXXX");
            }
            ++pos_;
        }
    }

    static std::string hex4(std::uint32_t v) {
        static const char hex[] = "0123456789ABCDEF";
        std::string s(4, '0');
        for (int k = 3; k >= 0; --k, v >>= 4) s[static_cast<std::size_t>(k)] = hex[v & 15];
        return s;
    }

    static bool is_digit(char c) { return c >= '0' && c <= '9'; }

    json_value parse_number() {
        const std::size_t start = pos_;
        const bool negative = peek() == '-';
        if (negative) ++pos_;
        if (!is_digit(peek())) error_at(pos_, "expected a digit after '-'");
        const std::size_t int_start = pos_;
        if (peek() == '0') {
            ++pos_;
            if (is_digit(peek())) error_at(int_start, "leading zeros are not allowed in numbers", false);
        } else {
            while (is_digit(peek())) ++pos_;
        }
        const std::size_t int_end = pos_;
        bool integral = true;
        std::size_t frac_start = pos_, frac_end = pos_;
        if (peek() == '.') {
            integral = false;
            ++pos_;
            if (!is_digit(peek())) error_at(pos_, "expected a digit after the decimal point");
            frac_start = pos_;
            while (is_digit(peek())) ++pos_;
            frac_end = pos_;
        }
        long long exp10 = 0;
        if (peek() == 'e' || peek() == 'E') {
            integral = false;
            ++pos_;
            bool exp_negative = false;
            if (peek() == '+' || peek() == '-') exp_negative = s_[pos_++] == '-';
            if (!is_digit(peek())) error_at(pos_, "expected a digit in the exponent");
            while (is_digit(peek())) {
                if (exp10 < 1000000000) exp10 = exp10 * 10 + (s_[pos_] - '0');  // saturates; only the sign matters
                ++pos_;
            }
            if (exp_negative) exp10 = -exp10;
        }
        const char* first = s_.data() + start;
        const char* last = s_.data() + pos_;
        if (integral) {
            std::int64_t i = 0;
            const auto r = std::from_chars(first, last, i);
            if (r.ec == std::errc() && r.ptr == last) return json_value(i);
            // out of the int64 range: a double, as the header comment says
        }
        double d = 0;
        const auto r = std::from_chars(first, last, d);
        if (r.ec == std::errc() && r.ptr == last) return json_value(d);
        if (r.ec != std::errc::result_out_of_range) error_at(start, "malformed number", false);
        // Out of range: overflow gives ±inf and underflow ±0 (as Python's float()). The decimal
        // exponent of the leading significant digit decides which.
        long long lead = 0;  // value ~ 10^lead
        std::size_t k = int_start;
        while (k < int_end && s_[k] == '0') ++k;
        if (k < int_end) {
            lead = static_cast<long long>(int_end - k);
        } else {
            std::size_t f = frac_start;
            while (f < frac_end && s_[f] == '0') ++f;
            if (f == frac_end) return json_value(negative ? -0.0 : 0.0);  // all digits zero
            lead = -static_cast<long long>(f - frac_start);
        }
        const bool overflow = lead + exp10 > 0;
        const double mag = overflow ? std::numeric_limits<double>::infinity() : 0.0;
        return json_value(negative ? -mag : mag);
    }

    std::string_view s_;
    std::string_view what_;
    std::size_t pos_ = 0;
    int depth_ = 0;
};

/// Python's repr of a finite double: the shortest round-trip digits, fixed notation for decimal
/// exponents -4..15 (with ".0" when integral), else d.ddde±XX.
inline void append_double_repr(std::string& out, double d) {
    char buf[64];
    const auto r = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
    std::string_view sci(buf, static_cast<std::size_t>(r.ptr - buf));  // "-1.2345e+02"
    std::string sign;
    if (!sci.empty() && sci[0] == '-') {
        sign = "-";
        sci.remove_prefix(1);
    }
    const std::size_t e = sci.find('e');
    std::string digits(sci.substr(0, e));
    if (digits.size() > 1) digits.erase(1, 1);  // drop the '.'
    int exp = 0;
    {
        std::string_view es = sci.substr(e + 1);
        if (!es.empty() && es[0] == '+') es.remove_prefix(1);
        std::from_chars(es.data(), es.data() + es.size(), exp);
    }
    out += sign;
    if (exp >= -4 && exp < 16) {
        if (exp >= 0) {
            const auto int_digits = static_cast<std::size_t>(exp) + 1;
            if (digits.size() <= int_digits) {
                out += digits;
                out.append(int_digits - digits.size(), '0');
                out += ".0";
            } else {
                out.append(digits, 0, int_digits);
                out += '.';
                out.append(digits, int_digits, std::string::npos);
            }
        } else {
            out += "0.";
            out.append(static_cast<std::size_t>(-exp - 1), '0');
            out += digits;
        }
    } else {
        out += digits[0];
        if (digits.size() > 1) {
            out += '.';
            out.append(digits, 1, std::string::npos);
        }
        out += exp < 0 ? "e-" : "e+";
        const std::string mag = std::to_string(exp < 0 ? -exp : exp);
        if (mag.size() < 2) out += '0';
        out += mag;
    }
}

inline void append_json_string(std::string& out, std::string_view s, bool ensure_ascii) {
    static const char hex[] = "0123456789abcdef";
    const auto u_escape = [&](std::uint32_t v) {
        out += "\\u";
        for (int shift = 12; shift >= 0; shift -= 4) out += hex[(v >> shift) & 15];
    };
    out += '"';
    for (std::size_t i = 0; i < s.size();) {
        const auto c = static_cast<unsigned char>(s[i]);
        if (c >= 0x80) {
            std::uint32_t cp = 0;
            const std::size_t len = decode_utf8(s, i, cp);
            if (len == 0)
                fail("to_json: string contains invalid UTF-8 (" + describe_byte(c) + " at byte " + std::to_string(i) +
                     "); JSON text must be UTF-8");
            if (!ensure_ascii) {
                out.append(s.substr(i, len));
            } else if (cp < 0x10000) {
                u_escape(cp);
            } else {
                u_escape(0xD800 + ((cp - 0x10000) >> 10));
                u_escape(0xDC00 + ((cp - 0x10000) & 0x3FF));
            }
            i += len;
            continue;
        }
        switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\b': out += "\\b"; break;
            case '\f': out += "\\f"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            case '\t': out += "\\t"; break;
            default:
                if (c < 0x20 || (c == 0x7F && ensure_ascii)) u_escape(c);
                else out += static_cast<char>(c);
        }
        ++i;
    }
    out += '"';
}

inline void write_json(std::string& out, const json_value& v, const json_format& f, int level) {
    switch (v.type()) {
        case json_type::null: out += "null"; return;
        case json_type::boolean: out += v.as_bool() ? "true" : "false"; return;
        case json_type::integer: {
            char buf[32];
            const auto r = std::to_chars(buf, buf + sizeof buf, v.as_int64());
            out.append(buf, r.ptr);
            return;
        }
        case json_type::real: {
            const double d = v.as_double();
            if (std::isnan(d)) out += "NaN";
            else if (std::isinf(d)) out += d > 0 ? "Infinity" : "-Infinity";
            else append_double_repr(out, d);
            return;
        }
        case json_type::string: append_json_string(out, v.as_string(), f.ensure_ascii); return;
        default: break;
    }
    const bool is_object = v.is_object();
    const std::size_t n = v.size();
    out += is_object ? '{' : '[';
    if (n == 0) {
        out += is_object ? '}' : ']';
        return;
    }
    const auto newline = [&](int lvl) {
        out += '\n';
        out.append(static_cast<std::size_t>(f.indent) * static_cast<std::size_t>(lvl), ' ');
    };
    for (std::size_t i = 0; i < n; ++i) {
        if (i) out += (f.indent >= 0 || !f.spaces) ? "," : ", ";
        if (f.indent >= 0) newline(level + 1);
        if (is_object) {
            const json_member& m = v.as_object()[i];
            append_json_string(out, m.first, f.ensure_ascii);
            out += f.spaces ? ": " : ":";
            write_json(out, m.second, f, level + 1);
        } else {
            write_json(out, v.as_array()[i], f, level + 1);
        }
    }
    if (f.indent >= 0) newline(level);
    out += is_object ? '}' : ']';
}

}  // namespace detail

/// Parses JSON text (RFC 8259 plus NaN / Infinity / -Infinity); `what` names the input in errors.
inline json_value parse_json(std::string_view text, std::string_view what = "JSON") {
    return detail::json_parser(text, what).parse_document();
}

/// Writes v as JSON text in the given format (see the header comment).
inline std::string to_json(const json_value& v, const json_format& format) {
    std::string out;
    detail::write_json(out, v, format, 0);
    return out;
}

/// Writes v like Python's json.dumps(v, indent=indent) (indent < 0: json.dumps(v), one line).
inline std::string to_json(const json_value& v, int indent = 2) {
    json_format f;
    f.indent = indent;
    return to_json(v, f);
}

/// Reads and parses a JSON file (a leading UTF-8 byte order mark is skipped). Errors name the file.
inline json_value read_json_file(const std::string& path) {
    const std::string bytes = detail::read_file_bytes(path, "JSON file");
    std::string_view text(bytes);
    if (text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);
    return parse_json(text, "JSON file '" + path + "'");
}

/// Writes to_json(value, indent) and a final newline to `path` (what diffusers' save_config writes).
inline void write_json_file(const std::string& path, const json_value& value, int indent = 2) {
    const std::string text = to_json(value, indent) + "\n";
    detail::write_file_bytes(path, text.data(), text.size(), "JSON file");
}

}  // namespace diffuse::io
