// JSON: the full RFC 8259 grammar, escapes and surrogate pairs, exact integers and shortest-repr
// doubles, Python's NaN / Infinity, byte-identical output to Python's json.dumps, round trips, and
// errors that name the input, the line, the column and what was expected.
#include <diffuse/io/json.hpp>

#include "support/tmp.hpp"

#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

using namespace diffuse;
using namespace diffuse::io;

namespace {

std::string tmp_path(const std::string& name) { return diffuse::test::temp().file(name); }

using diffuse::test::read_bytes;

void write_bytes(const std::string& path, std::string_view bytes) {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// A diffusers UNet2DModel config as diffusers' save_config writes it, produced by
//   json.dumps(cfg, indent=2, sort_keys=True) + "\n"   (Python 3, json module)
const char diffusers_config[] = R"({
  "_class_name": "UNet2DModel",
  "_diffusers_version": "0.21.4",
  "act_fn": "silu",
  "add_attention": true,
  "attention_head_dim": 8,
  "attn_norm_num_groups": null,
  "block_out_channels": [
    32,
    64
  ],
  "center_input_sample": false,
  "class_embed_type": null,
  "down_block_types": [
    "DownBlock2D",
    "AttnDownBlock2D"
  ],
  "downsample_padding": 1,
  "downsample_type": "conv",
  "dropout": 0.0,
  "flip_sin_to_cos": true,
  "freq_shift": 0,
  "in_channels": 3,
  "layers_per_block": 2,
  "mid_block_scale_factor": 1,
  "norm_eps": 1e-05,
  "norm_num_groups": 32,
  "num_class_embeds": null,
  "num_train_timesteps": null,
  "out_channels": 3,
  "resnet_time_scale_shift": "default",
  "sample_size": 32,
  "time_embedding_type": "positional",
  "up_block_types": [
    "AttnUpBlock2D",
    "UpBlock2D"
  ],
  "upsample_type": "conv"
}
)";

std::uint64_t bits_of(double d) { return std::bit_cast<std::uint64_t>(d); }

/// doctest::Contains for a std::string fragment.
doctest::Contains contains(const std::string& fragment) { return doctest::Contains(fragment.c_str()); }

}  // namespace

TEST_CASE("json parses every value type with any JSON whitespace") {
    const json_value v = parse_json(" \t\r\n{ \"n\" :null,\"t\":true ,\"f\":false,\n\"i\": -12 ,\"d\":2.5e3,"
                                    "\"s\":\"x\",\"a\":[ 1 , [ ] , { } ],\"o\":{\"k\":[\"v\"]}}\r\n ");
    REQUIRE(v.is_object());
    CHECK(v.size() == 8);
    CHECK(v.at("n").is_null());
    CHECK(v.at("t").as_bool() == true);
    CHECK(v.at("f").as_bool() == false);
    CHECK(v.at("i").is_integer());
    CHECK(v.at("i").as_int64() == -12);
    CHECK(v.at("d").is_double());
    CHECK(v.at("d").as_double() == 2500.0);
    CHECK(v.at("s").as_string() == "x");
    const json_array& a = v.at("a").as_array();
    REQUIRE(a.size() == 3);
    CHECK(a[0].as_int64() == 1);
    CHECK((a[1].is_array() && a[1].size() == 0));
    CHECK((a[2].is_object() && a[2].size() == 0));
    CHECK(v.at("o").at("k").at(0).as_string() == "v");
    // members keep the order of the text
    const json_object& o = v.as_object();
    const std::vector<std::string> keys = {"n", "t", "f", "i", "d", "s", "a", "o"};
    for (std::size_t i = 0; i < keys.size(); ++i) CHECK(o[i].first == keys[i]);
    // scalars at the top level
    CHECK(parse_json("null").is_null());
    CHECK(parse_json(" 7 ").as_int64() == 7);
    CHECK(parse_json("\"s\"").as_string() == "s");
    CHECK(parse_json("false").as_bool() == false);
}

TEST_CASE("json string escapes and surrogate pairs decode to UTF-8") {
    CHECK(parse_json(R"("\" \\ \/ \b \f \n \r \t")").as_string() == "\" \\ / \b \f \n \r \t");
    CHECK(parse_json(R"("\u0041\u00e9\u20AC")").as_string() == "A\xc3\xa9\xe2\x82\xac");
    CHECK(parse_json(R"("\ud83d\ude00")").as_string() == "\xf0\x9f\x98\x80");  // U+1F600
    CHECK(parse_json(R"("\uDBFF\uDFFF")").as_string() == "\xf4\x8f\xbf\xbf");  // U+10FFFF
    CHECK(parse_json(R"("a\u0000b")").as_string() == std::string("a\0b", 3));
    // raw UTF-8 passes through unchanged (2-, 3- and 4-byte characters)
    CHECK(parse_json("\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"").as_string() == "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
    // written back like Python's json.dumps("\u00e9\x7f\x01\"\\/\b\f\n\r\t\U0001F600"):
    const json_value s(std::string("\xc3\xa9\x7f\x01\"\\/\b\f\n\r\t\xf0\x9f\x98\x80"));
    CHECK(to_json(s) == R"("\u00e9\u007f\u0001\"\\/\b\f\n\r\t\ud83d\ude00")");
    // and like json.dumps(..., ensure_ascii=False) (b'"\xc3\xa9\x7f\\u0001\xf0\x9f\x98\x80"')
    json_format raw;
    raw.ensure_ascii = false;
    CHECK(to_json(json_value(std::string("\xc3\xa9\x7f\x01\xf0\x9f\x98\x80")), raw) ==
          "\"\xc3\xa9\x7f\\u0001\xf0\x9f\x98\x80\"");
    CHECK(parse_json(to_json(s)) == s);
    CHECK(parse_json(to_json(s, raw)) == s);
}

TEST_CASE("json integers stay exact as int64 and other numbers become doubles") {
    CHECK(parse_json("9223372036854775807").as_int64() == std::numeric_limits<std::int64_t>::max());
    CHECK(parse_json("-9223372036854775808").as_int64() == std::numeric_limits<std::int64_t>::min());
    CHECK(parse_json("9007199254740993").as_int64() == 9007199254740993LL);  // 2^53 + 1: not a double
    CHECK(to_json(parse_json("9007199254740993")) == "9007199254740993");
    CHECK(to_json(parse_json("-0")) == "0");  // an integer, as in Python
    CHECK(parse_json("42").is_integer());
    CHECK(to_json(parse_json("42")) == "42");
    // beyond int64: a double (Python would keep a bigint; we keep the nearest double)
    const json_value big = parse_json("18446744073709551616");
    CHECK(big.is_double());
    CHECK(big.as_double() == 18446744073709551616.0);
    // fraction or exponent: a double even when integral
    CHECK(parse_json("1.0").is_double());
    CHECK(parse_json("1e2").is_double());
    CHECK(to_json(parse_json("1.0")) == "1.0");
    CHECK(to_json(parse_json("1E2")) == "100.0");
    CHECK(parse_json("1e-05").as_double() == 1e-05);
    CHECK(to_json(parse_json("1e-05")) == "1e-05");
    // -0.0 keeps its sign
    const json_value nz = parse_json("-0.0");
    CHECK(std::signbit(nz.as_double()));
    CHECK(to_json(nz) == "-0.0");
    // extremes: largest double, smallest normal, smallest denormal, a mid denormal
    CHECK(parse_json("1e308").as_double() == 1e308);
    CHECK(parse_json("1.7976931348623157e308").as_double() == std::numeric_limits<double>::max());
    CHECK(parse_json("2.2250738585072014e-308").as_double() == std::numeric_limits<double>::min());
    CHECK(parse_json("5e-324").as_double() == std::numeric_limits<double>::denorm_min());
    CHECK(parse_json("4.9406564584124654e-324").as_double() == std::numeric_limits<double>::denorm_min());
    CHECK(bits_of(parse_json("1e-310").as_double()) == bits_of(1e-310));
    // out of range: overflow to ±inf and underflow to ±0, as Python's float()
    CHECK(parse_json("1e400").as_double() == std::numeric_limits<double>::infinity());
    CHECK(parse_json("-123.4e999").as_double() == -std::numeric_limits<double>::infinity());
    CHECK(bits_of(parse_json("1e-400").as_double()) == bits_of(0.0));
    CHECK(bits_of(parse_json("-0.00001e-330").as_double()) == bits_of(-0.0));
    CHECK(parse_json("0.000e999").as_double() == 0.0);
}

TEST_CASE("json doubles print as Python's repr and read back bit for bit") {
    // Expected strings are Python 3's repr() of the same doubles.
    const std::vector<std::pair<double, const char*>> cases = {
        {1e15, "1000000000000000.0"},
        {1e16, "1e+16"},
        {123.0, "123.0"},
        {5e-324, "5e-324"},
        {2.2250738585072014e-308, "2.2250738585072014e-308"},
        {1.7976931348623157e308, "1.7976931348623157e+308"},
        {0.1, "0.1"},
        {1.0 / 3.0, "0.3333333333333333"},
        {1e22, "1e+22"},
        {1.5e-7, "1.5e-07"},
        {100000.0, "100000.0"},
        {-1e-300, "-1e-300"},
        {0.00012345, "0.00012345"},
        {0.0001, "0.0001"},
        {1e-05, "1e-05"},
        {0.0, "0.0"},
        {-2.5, "-2.5"},
    };
    for (const auto& c : cases) {  // (no structured bindings: clang 14 cannot capture them in CAPTURE)
        const double d = c.first;
        const std::string text = c.second;
        CAPTURE(text);
        CHECK(to_json(json_value(d)) == text);
        CHECK(bits_of(parse_json(text).as_double()) == bits_of(d));
    }
    // Random bit patterns over every exponent: shortest repr must read back to the same bits.
    std::mt19937_64 gen(20240607);
    int checked = 0;
    for (int i = 0; i < 20000; ++i) {
        const double d = std::bit_cast<double>(gen());
        if (!std::isfinite(d)) continue;
        ++checked;
        const std::string text = to_json(json_value(d));
        const double back = parse_json(text).as_double();
        if (bits_of(back) != bits_of(d)) {
            CAPTURE(text);
            CHECK(bits_of(back) == bits_of(d));
        }
    }
    CHECK(checked > 19000);
}

TEST_CASE("json reads and writes Python's NaN and Infinity") {
    const json_value v = parse_json("[NaN, Infinity, -Infinity]");
    CHECK(std::isnan(v.at(0).as_double()));
    CHECK(v.at(1).as_double() == std::numeric_limits<double>::infinity());
    CHECK(v.at(2).as_double() == -std::numeric_limits<double>::infinity());
    // json.dumps([float("nan"), float("inf"), -float("inf")]) == '[NaN, Infinity, -Infinity]'
    CHECK(to_json(v, -1) == "[NaN, Infinity, -Infinity]");
    CHECK(parse_json(to_json(v)) == v);
}

TEST_CASE("json to_json matches Python json.dumps layouts") {
    const json_value v = json_value::object(
        {{"a", json_value::array()}, {"b", json_value::object()},
         {"c", json_value::array({1, json_value::object({{"d", nullptr}})})}});
    // json.dumps(v, indent=0), json.dumps(v, indent=4), json.dumps(v)
    CHECK(to_json(v, 0) == "{\n\"a\": [],\n\"b\": {},\n\"c\": [\n1,\n{\n\"d\": null\n}\n]\n}");
    CHECK(to_json(v, 4) ==
          "{\n    \"a\": [],\n    \"b\": {},\n    \"c\": [\n        1,\n        {\n            \"d\": null\n"
          "        }\n    ]\n}");
    CHECK(to_json(v, -1) == R"({"a": [], "b": {}, "c": [1, {"d": null}]})");
    json_format compact;
    compact.indent = -1;
    compact.spaces = false;
    CHECK(to_json(v, compact) == R"({"a":[],"b":{},"c":[1,{"d":null}]})");
}

TEST_CASE("json diffusers config parses with its types and writes back byte for byte") {
    const json_value cfg = parse_json(diffusers_config, "config.json");
    CHECK(cfg.at("_class_name", "config.json").as_string() == "UNet2DModel");
    CHECK(cfg.at("add_attention").as_bool() == true);
    CHECK(cfg.at("center_input_sample").as_bool() == false);
    CHECK(cfg.at("attn_norm_num_groups").is_null());
    CHECK(cfg.at("num_class_embeds").is_null());
    const json_array& channels = cfg.at("block_out_channels").as_array();
    REQUIRE(channels.size() == 2);
    CHECK(channels[0].as_int64() == 32);
    CHECK(channels[1].as_int64() == 64);
    CHECK(cfg.at("down_block_types").at(1).as_string() == "AttnDownBlock2D");
    CHECK(cfg.at("norm_eps").is_double());
    CHECK(cfg.at("norm_eps").as_double() == 1e-05);
    CHECK(cfg.at("dropout").is_double());
    CHECK(cfg.at("dropout").as_double() == 0.0);
    CHECK(cfg.at("layers_per_block").is_integer());
    CHECK(cfg.at("layers_per_block").as_int64() == 2);
    CHECK(cfg.at("mid_block_scale_factor").as_double() == 1.0);
    CHECK(cfg.size() == 28);
    // diffusers' save_config writes json.dumps(indent=2, sort_keys=True) + "\n": identical bytes
    CHECK(to_json(cfg) + "\n" == std::string(diffusers_config));
    CHECK_THROWS_WITH_AS(cfg.at("cross_attention_dim", "config.json"),
                         doctest::Contains("config.json: key 'cross_attention_dim' not found in object; keys are: "
                                           "_class_name, _diffusers_version, act_fn, add_attention"),
                         diffuse::error);
    CHECK_THROWS_WITH_AS(cfg.at("act_fn").as_int64("config.json: key 'act_fn'"),
                         doctest::Contains("config.json: key 'act_fn' is a string (\"silu\"); expected an integer"),
                         diffuse::error);
}

TEST_CASE("json to_json then parse_json gives an equal value") {
    json_value v = json_value::object();
    v.set("null", nullptr);
    v.set("bools", json_value::array({true, false}));
    v.set("ints", std::vector<std::int64_t>{0, -1, std::numeric_limits<std::int64_t>::max(),
                                            std::numeric_limits<std::int64_t>::min()});
    v.set("doubles", std::vector<double>{0.1, -0.0, 1e-310, 1e300, 3.0, std::numeric_limits<double>::quiet_NaN(),
                                         -std::numeric_limits<double>::infinity()});
    v.set("text", "tab\there \"quoted\" \xc3\xa9 \xf0\x9f\x98\x80 \x01");
    v.set("nested", json_value::array({json_value::array({json_value::array()}), json_value::object({{"k", 1}})}));
    v.set("empty key", json_value::object({{"", "empty"}}));
    for (int indent : {-1, 0, 1, 2, 4}) {
        CAPTURE(indent);
        CHECK(parse_json(to_json(v, indent)) == v);
        json_format f;
        f.indent = indent;
        f.ensure_ascii = false;
        f.spaces = false;
        CHECK(parse_json(to_json(v, f)) == v);
    }
    // equality is strict about types, -0.0 and order, and treats NaN as equal to NaN
    CHECK(json_value(1) != json_value(1.0));
    CHECK(json_value(0.0) != json_value(-0.0));
    CHECK(json_value(std::numeric_limits<double>::quiet_NaN()) == json_value(std::numeric_limits<double>::quiet_NaN()));
    CHECK(json_value::object({{"a", 1}, {"b", 2}}) != json_value::object({{"b", 2}, {"a", 1}}));
    CHECK(json_value::array({1, 2}) != json_value::array({1, 2, 3}));
}

TEST_CASE("json accessors and builders") {
    json_value v = json_value::object({{"a", 1}, {"b", "two"}});
    CHECK(v.contains("a"));
    CHECK_FALSE(v.contains("c"));
    CHECK(v.find("c") == nullptr);
    REQUIRE(v.find("b") != nullptr);
    CHECK(v.find("b")->as_string() == "two");
    CHECK_FALSE(json_value(3).contains("a"));
    CHECK(json_value(3).find("a") == nullptr);
    // set replaces in place and appends new keys at the end
    v.set("a", 10);
    v.set("c", 2.5);
    REQUIRE(v.size() == 3);
    CHECK(v.as_object()[0].first == "a");
    CHECK(v.at("a").as_int64() == 10);
    CHECK(v.as_object()[2].first == "c");
    v.at("b") = json_value::array();
    v.at("b").push_back(7);
    CHECK(v.at("b").at(0).as_int64() == 7);
    // numbers convert where exact
    CHECK(json_value(2.0).as_int64() == 2);
    CHECK(json_value(7).as_double() == 7.0);
    CHECK(json_value(std::uint64_t{18446744073709551615ULL}).is_double());
    CHECK(json_value(std::uint32_t{7}).is_integer());
    CHECK(json_value(3.5f).as_double() == 3.5);
    CHECK(json_value("lit").is_string());
    CHECK(json_value(std::string_view("sv")).as_string() == "sv");
    CHECK(json_value(true).is_bool());
    static_assert(!std::is_constructible_v<json_value, char>, "a char is neither a number nor a string");
    // errors name the value, what it is and what was expected
    CHECK_THROWS_WITH_AS(json_value(1.5).as_int64("config.json: key 'sample_size'"),
                         doctest::Contains("config.json: key 'sample_size' = 1.5 is not an integer"), diffuse::error);
    CHECK_THROWS_WITH_AS(json_value(1e300).as_int64(), doctest::Contains("is not an integer"), diffuse::error);
    CHECK_THROWS_WITH_AS(json_value().as_double("x"), doctest::Contains("x is null; expected a number"),
                         diffuse::error);
    CHECK_THROWS_WITH_AS(json_value(1).as_bool(), doctest::Contains("JSON value is an integer (1); expected a boolean"),
                         diffuse::error);
    CHECK_THROWS_WITH_AS(json_value("s").as_array(), doctest::Contains("expected an array"), diffuse::error);
    CHECK_THROWS_WITH_AS(json_value::array().as_object(), doctest::Contains("is an array ([]); expected an object"),
                         diffuse::error);
    CHECK_THROWS_WITH_AS(json_value(true).as_string(), doctest::Contains("expected a string"), diffuse::error);
    CHECK_THROWS_WITH_AS(json_value(1).size(), doctest::Contains("expected an array or an object"), diffuse::error);
    CHECK_THROWS_WITH_AS(json_value::array({1}).at(std::size_t{3}, "block_out_channels"),
                         doctest::Contains("block_out_channels: index 3 is out of range for an array of 1 elements"),
                         diffuse::error);
    CHECK_THROWS_WITH_AS(json_value::object().at("k"),
                         doctest::Contains("key 'k' not found in object; keys are: (none, the object is empty)"),
                         diffuse::error);
    CHECK_THROWS_WITH_AS(json_value(1).at("k", "cfg"), doctest::Contains("cfg is an integer (1); expected an object"),
                         diffuse::error);
    CHECK_THROWS_WITH_AS(json_value(1).set("k", 2), doctest::Contains("expected an object"), diffuse::error);
    CHECK_THROWS_WITH_AS(json_value(1).push_back(2), doctest::Contains("expected an array"), diffuse::error);
    CHECK_THROWS_WITH_AS(to_json(json_value(std::string("bad \xff"))), doctest::Contains("invalid UTF-8"),
                         diffuse::error);
}

TEST_CASE("json syntax errors name the input, line, column and what was expected") {
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"{\n  \"a\": 1,\n  \"b\": 2 ]", "line 3, column 10: expected ',' or '}' after an object member, found ']'"},
        {"[1, 2", "line 1, column 6: expected ',' or ']' after an array element, found the end of the input"},
        {"[1,]",
         "line 1, column 4: expected a JSON value (object, array, string, number, true, false or null), found ']'"},
        {"{\"a\" 1}", "line 1, column 6: expected ':' after the object key 'a', found '1'"},
        {"{\"a\":1,}", "line 1, column 8: expected a string key after ',' in an object, found '}'"},
        {"{1:2}", "line 1, column 2: expected a string key or '}' in an object, found '1'"},
        {"\n  \"abc", "line 2, column 7: unterminated string (it starts at line 2, column 3)"},
        {"\"a\nb\"", "line 1, column 3: raw control character byte 0x0a in a string"},
        {"\"\\x\"", "line 1, column 2: invalid escape in a string"},
        {"\"\\u12\"", "line 1, column 2: expected 4 hex digits after \\u"},
        {"\"\\u12G4\"", "line 1, column 6: expected 4 hex digits after \\u, found 'G'"},
        {"\"\\ud800\"", "line 1, column 2: unpaired UTF-16 high surrogate \\uD800"},
        {"\"\\udc00\"", "line 1, column 2: unpaired UTF-16 low surrogate \\uDC00"},
        {"\"\\ud800\\u0041\"", "line 1, column 8: UTF-16 high surrogate \\uD800 is followed by \\u0041"},
        {"\"\xff\"", "line 1, column 2: invalid UTF-8 byte 0xff in a string"},
        {"\"\xc0\xaf\"", "invalid UTF-8 byte 0xc0"},      // overlong '/'
        {"\"\xed\xa0\x80\"", "invalid UTF-8 byte 0xed"},  // an encoded surrogate
        {"\"\xe2\x82\"", "invalid UTF-8 byte 0xe2"},      // truncated sequence
        {"\"\xf4\x90\x80\x80\"", "invalid UTF-8 byte 0xf4"},  // above U+10FFFF
        {"01", "line 1, column 1: leading zeros are not allowed in numbers"},
        {"-01", "leading zeros are not allowed"},
        {"1.", "line 1, column 3: expected a digit after the decimal point, found the end of the input"},
        {"1.e5", "expected a digit after the decimal point, found 'e'"},
        {"1e", "line 1, column 3: expected a digit in the exponent"},
        {"1e+", "expected a digit in the exponent"},
        {"-", "line 1, column 2: expected a digit after '-'"},
        {"-x", "expected a digit after '-', found 'x'"},
        {"+1", "line 1, column 1: expected a JSON value"},
        {".5", "expected a JSON value"},
        {"tru", "expected a JSON value"},
        {"nan", "expected a JSON value"},
        {"inf", "expected a JSON value"},
        {"{} x", "line 1, column 4: expected the end of the input after the JSON value, found 'x'"},
        {"1 2", "expected the end of the input after the JSON value, found '2'"},
        {"", "line 1, column 1: expected a JSON value (object, array, string, number, true, false or null), found the "
             "end of the input"},
        {"   ", "line 1, column 4: expected a JSON value"},
        {"{\"a\":1,\n\"a\":2}", "line 2, column 1: duplicate key 'a' in an object"},
        {"\x01", "found byte 0x01"},
        {"[1,\r\n\t2 3]", "line 2, column 4: expected ',' or ']' after an array element, found '3'"},
        {std::string("{\"a\":1}\0", 8), "expected the end of the input after the JSON value, found byte 0x00"},
    };
    for (const auto& c : cases) {
        const std::string& text = c.first;
        const std::string& fragment = c.second;
        CAPTURE(text);
        CHECK_THROWS_WITH_AS(parse_json(text, "config.json"), contains(fragment), diffuse::error);
        CHECK_THROWS_WITH_AS(parse_json(text, "config.json"), doctest::Contains("diffuse::error: config.json: line "),
                             diffuse::error);
    }
    // a NUL inside the text is a byte like any other (string_view input, not a C string)
    CHECK_THROWS_WITH_AS(parse_json(std::string_view("[1,\0]", 5)), doctest::Contains("JSON: line 1, column 4"),
                         diffuse::error);
    // duplicate keys in a large object (hash-set path) and as the first repeated key
    std::string many = "{";
    for (int i = 0; i < 40; ++i) many += "\"k" + std::to_string(i) + "\": " + std::to_string(i) + ", ";
    CHECK(parse_json(many + "\"last\": 0}").size() == 41);
    CHECK_THROWS_WITH_AS(parse_json(many + "\"k3\": 0}"), doctest::Contains("duplicate key 'k3' in an object"),
                         diffuse::error);
}

TEST_CASE("json nesting is limited to 512 levels") {
    const auto nested = [](int depth, char open, char close) {
        return std::string(static_cast<std::size_t>(depth), open) + std::string(static_cast<std::size_t>(depth), close);
    };
    CHECK(parse_json(nested(512, '[', ']')).is_array());
    CHECK_THROWS_WITH_AS(parse_json(nested(513, '[', ']')),
                         doctest::Contains("line 1, column 513: arrays and objects are nested deeper than 512 levels"),
                         diffuse::error);
    CHECK_THROWS_WITH_AS(parse_json(std::string(100000, '[')), doctest::Contains("nested deeper than 512"),
                         diffuse::error);
    std::string objects;
    for (int i = 0; i < 513; ++i) objects += "{\"a\":";
    CHECK_THROWS_WITH_AS(parse_json(objects), doctest::Contains("nested deeper than 512"), diffuse::error);
}

TEST_CASE("json files are written with a final newline and read back, errors name the file") {
    const std::string path = tmp_path("config.json");
    const json_value cfg = parse_json(diffusers_config);
    write_json_file(path, cfg);
    CHECK(read_bytes(path) == std::string(diffusers_config));
    CHECK(read_json_file(path) == cfg);
    write_json_file(path, cfg, -1);
    CHECK(read_bytes(path) == to_json(cfg, -1) + "\n");
    CHECK(read_json_file(path) == cfg);
    // a UTF-8 byte order mark is skipped
    write_bytes(path, "\xEF\xBB\xBF{\"a\": 1}");
    CHECK(read_json_file(path).at("a").as_int64() == 1);
    // parse errors name the file, line and column
    write_bytes(path, "{\n  \"a\": 1\n  \"b\": 2\n}");
    CHECK_THROWS_WITH_AS(read_json_file(path),
                         contains("JSON file '" + path +
                                  "': line 3, column 3: expected ',' or '}' after an object member"),
                         diffuse::error);
    const std::string missing = tmp_path("no_such_dir/config.json");
    CHECK_THROWS_WITH_AS(read_json_file(missing),
                         contains("cannot open JSON file '" + missing + "' for reading"), diffuse::error);
    CHECK_THROWS_WITH_AS(write_json_file(missing, cfg),
                         contains("cannot open JSON file '" + missing + "' for writing"), diffuse::error);
}
