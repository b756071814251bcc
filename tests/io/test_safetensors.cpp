// .safetensors read/write: bitwise round trips per dtype, exact F16/BF16 rounding (exhaustive and
// against independent oracles), byte-level determinism and identity with a file assembled in Python,
// and every kind of corrupt file giving a diffuse::error that names the file — never a crash (the
// truncation and corruption sweeps are meant to run under ASan + UBSan too).
#include <diffuse/io/safetensors.hpp>

#include "support/tmp.hpp"

#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <string_view>
#include <vector>

using namespace diffuse;
using namespace diffuse::io;

namespace {

std::string tmp_path(const std::string& name) { return diffuse::test::temp().file(name); }

/// doctest::Contains for a std::string fragment.
doctest::Contains contains(const std::string& fragment) { return doctest::Contains(fragment.c_str()); }

template <std::size_t N>
std::string lit(const char (&s)[N]) {
    return std::string(s, N - 1);
}

/// A .safetensors byte string from header text (padded with spaces to a multiple of 8) and data.
std::string make_file(std::string header, std::string_view data) {
    header.append((8 - header.size() % 8) % 8, ' ');
    std::string out;
    const std::uint64_t n = header.size();
    for (int k = 0; k < 8; ++k) out += static_cast<char>((n >> (8 * k)) & 0xFF);
    return out + header + std::string(data);
}

safetensors_file parse_bad(const std::string& header, std::string_view data) {
    return safetensors_file::parse(make_file(header, data), "bad.safetensors");
}

template <class T>
tensor<T, host_space> random_tensor(shape s, std::uint64_t seed) {
    std::mt19937_64 gen(seed);
    std::normal_distribution<double> normal(0.0, 1.0);
    tensor<T, host_space> t(s);
    for (std::int64_t i = 0; i < t.numel(); ++i) t[i] = static_cast<T>(normal(gen));
    return t;
}

template <class T>
bool same_bits(const tensor<T, host_space>& a, const tensor<T, host_space>& b) {
    return a.shape() == b.shape() && (a.bytes() == 0 || std::memcmp(a.data(), b.data(), a.bytes()) == 0);
}

std::uint16_t u16_at(const std::string& bytes, std::size_t i) {
    return static_cast<std::uint16_t>(static_cast<unsigned char>(bytes[2 * i]) |
                                      (static_cast<unsigned char>(bytes[2 * i + 1]) << 8));
}

/// F16 / BF16 bits of x as add(..., dtype) stores them.
std::uint16_t encode16(double x, safetensors_dtype d) {
    safetensors_file f;
    f.add("x", tensor<double, host_space>::from_values(shape{}, {x}), d);
    return u16_at(f.at("x").data, 0);
}

/// Written by /usr/bin/python3 with struct + json only (no safetensors package), laying the tensors
/// out in the Python library's order (dtype rank descending, then name) with compact JSON:
///   tensors = {"conv.weight": F32 [2, 1, 2] [0.5, -1.25, 3e-3, 1e30], "conv.bias": F16 [2] [1.5, -0.1],
///              "step": I64 [] -9007199254740993, "mask": BOOL [3] [1, 0, 1],
///              "norm.scale": BF16 [2] [0.15625, -3.0], "empty": F32 [0, 3], "ids": U8 [2] [7, 255]}
///   header = {"__metadata__": {"format": "pt"}, name: {"dtype", "shape", "data_offsets"}, ...}
///   text = json.dumps(header, separators=(",", ":")).encode(); text += b" " * ((8 - len(text) % 8) % 8)
///   bytes = struct.pack("<Q", len(text)) + text + data   (F16 via numpy '<f2', BF16 via torch.bfloat16)
const char python_canonical[] =
    "\xd0""\x01""\x00""\x00""\x00""\x00""\x00""\x00""{\"__metadata__\":{\"format\":\"pt\"},\"ste"
    "p\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[0,8]},\"conv.weight\":{\"dtype\":\"F3"
    "2\",\"shape\":[2,1,2],\"data_offsets\":[8,24]},\"empty\":{\"dtype\":\"F32\",\"shape\":[0,3]"
    ",\"data_offsets\":[24,24]},\"norm.scale\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\""
    ":[24,28]},\"conv.bias\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[28,32]},\"ids\":"
    "{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[32,34]},\"mask\":{\"dtype\":\"BOOL\",\"sh"
    "ape\":[3],\"data_offsets\":[34,37]}}     \xff""\xff""\xff""\xff""\xff""\xff""\xdf""\xff""\x00"""
    "\x00""\x00""\x3f""\x00""\x00""\xa0""\xbf""\xa6""\x9b""D;\xca""\xf2""Iq >@\xc0""\x00"">f\xae"""
    "\x07""\xff""\x01""\x00""\x01""";

/// The same tensors, no metadata, laid out in name order with json.dumps's default ", " / ": "
/// separators — a valid file that is not in the canonical layout.
const char python_name_order[] =
    "\xe8""\x01""\x00""\x00""\x00""\x00""\x00""\x00""{\"conv.bias\": {\"dtype\": \"F16\", \"shap"
    "e\": [2], \"data_offsets\": [0, 4]}, \"conv.weight\": {\"dtype\": \"F32\", \"shape\": [2, 1"
    ", 2], \"data_offsets\": [4, 20]}, \"empty\": {\"dtype\": \"F32\", \"shape\": [0, 3], \"data"
    "_offsets\": [20, 20]}, \"ids\": {\"dtype\": \"U8\", \"shape\": [2], \"data_offsets\": [20, "
    "22]}, \"mask\": {\"dtype\": \"BOOL\", \"shape\": [3], \"data_offsets\": [22, 25]}, \"norm.s"
    "cale\": {\"dtype\": \"BF16\", \"shape\": [2], \"data_offsets\": [25, 29]}, \"step\": {\"dty"
    "pe\": \"I64\", \"shape\": [], \"data_offsets\": [29, 37]}}  \x00"">f\xae""\x00""\x00""\x00"""
    "\x3f""\x00""\x00""\xa0""\xbf""\xa6""\x9b""D;\xca""\xf2""Iq\x07""\xff""\x01""\x00""\x01"" >@"
    "\xc0""\xff""\xff""\xff""\xff""\xff""\xff""\xdf""\xff""";

const std::vector<std::string> canonical_order = {"step", "conv.weight", "empty", "norm.scale",
                                                  "conv.bias", "ids", "mask"};

}  // namespace

TEST_CASE("safetensors dtype names, sizes and defaults") {
    CHECK(std::string(safetensors_dtype_name(safetensors_dtype::bf16)) == "BF16");
    CHECK(std::string(safetensors_dtype_name(safetensors_dtype::boolean)) == "BOOL");
    for (safetensors_dtype d : safetensors_dtypes) CHECK(safetensors_dtype_from_name(safetensors_dtype_name(d)) == d);
    CHECK_FALSE(safetensors_dtype_from_name("F8_E4M3").has_value());
    CHECK_FALSE(safetensors_dtype_from_name("f32").has_value());
    CHECK(safetensors_dtype_size(safetensors_dtype::f64) == 8);
    CHECK(safetensors_dtype_size(safetensors_dtype::u32) == 4);
    CHECK(safetensors_dtype_size(safetensors_dtype::bf16) == 2);
    CHECK(safetensors_dtype_size(safetensors_dtype::boolean) == 1);
    static_assert(safetensors_dtype_of<float>() == safetensors_dtype::f32);
    static_assert(safetensors_dtype_of<const double>() == safetensors_dtype::f64);
    static_assert(safetensors_dtype_of<std::int64_t>() == safetensors_dtype::i64);
    static_assert(safetensors_dtype_of<std::uint16_t>() == safetensors_dtype::u16);
    static_assert(safetensors_dtype_of<std::int8_t>() == safetensors_dtype::i8);
    static_assert(safetensors_dtype_of<bool>() == safetensors_dtype::boolean);
}

TEST_CASE("safetensors float and double tensors round trip bitwise through a file") {
    const auto w = random_tensor<float>(shape{2, 3, 4, 5}, 1);
    const auto b = random_tensor<double>(shape{3}, 2);
    const auto s = tensor<float, host_space>::from_values(shape{}, {-0.0f});
    const auto e = tensor<double, host_space>(shape{0, 3});
    const auto r5 = random_tensor<float>(shape{1, 2, 1, 3, 2}, 3);
    safetensors_file f;
    f.add("down.0.weight", w);
    f.add("down.0.bias", b);
    f.add("scalar", s);
    f.add("empty", e);
    f.add("rank5", r5.view());
    f.set_metadata("format", "pt");
    const std::string path = tmp_path("roundtrip.safetensors");
    f.write(path);
    const safetensors_file g = safetensors_file::read(path);
    CHECK(g.source() == path);
    CHECK(g.size() == 5);
    CHECK(g.at("down.0.weight").dtype == safetensors_dtype::f32);
    CHECK(g.at("down.0.bias").dtype == safetensors_dtype::f64);
    CHECK(same_bits(g.get<float>("down.0.weight"), w));
    CHECK(same_bits(g.get<double>("down.0.bias"), b));
    CHECK(same_bits(g.get<float>("scalar"), s));
    CHECK(std::signbit(g.get<float>("scalar")[0]));
    CHECK(g.get<float>("scalar").rank() == 0);
    CHECK(g.get<double>("empty").shape() == shape{0, 3});
    CHECK(g.at("empty").data.empty());
    CHECK(same_bits(g.get<float>("rank5"), r5));
    CHECK(g.metadata_value("format") == std::optional<std::string>("pt"));
    CHECK_FALSE(g.metadata_value("other").has_value());
    for (const std::string& name : f.names()) {
        CAPTURE(name);
        CHECK(g.at(name).data == f.at(name).data);
        CHECK(g.at(name).shape == f.at(name).shape);
    }
    // converting on read: F32 -> double is exact, F64 -> float rounds to nearest
    const auto wd = g.get<double>("down.0.weight");
    for (std::int64_t i = 0; i < w.numel(); ++i) CHECK(wd[i] == static_cast<double>(w[i]));
    const auto bf = g.get<float>("down.0.bias");
    for (std::int64_t i = 0; i < b.numel(); ++i) CHECK(bf[i] == static_cast<float>(b[i]));
    // get_into fills a view of the same shape
    tensor<double, host_space> into(shape{2, 3, 4, 5});
    g.get_into("down.0.weight", into.view());
    CHECK(same_bits(into, wd));
}

TEST_CASE("safetensors F16 and BF16 decode exactly and re-encode every bit pattern") {
    for (safetensors_dtype d : {safetensors_dtype::f16, safetensors_dtype::bf16}) {
        CAPTURE(safetensors_dtype_name(d));
        std::string all(2 * 65536, '\0');
        for (std::uint32_t b = 0; b < 65536; ++b) {
            all[2 * b] = static_cast<char>(b & 0xFF);
            all[2 * b + 1] = static_cast<char>(b >> 8);
        }
        safetensors_file f;
        f.add_raw("all", d, {65536}, all);
        const auto values = f.get<double>("all");
        f.add("again", values, d);
        const std::string& back = f.at("again").data;
        const int exp_bits = d == safetensors_dtype::f16 ? 5 : 8;
        const int man_bits = 15 - exp_bits;
        int mismatches = 0, nans = 0;
        for (std::uint32_t b = 0; b < 65536; ++b) {
            const bool is_nan = ((b >> man_bits) & ((1u << exp_bits) - 1)) == (1u << exp_bits) - 1 &&
                                (b & ((1u << man_bits) - 1)) != 0;
            if (is_nan) {
                ++nans;
                mismatches += !std::isnan(values[b]);
                // NaN is stored as the quiet NaN with the same sign
                mismatches += u16_at(back, b) != ((b & 0x8000u) | (((1u << exp_bits) - 1) << man_bits) |
                                                  (1u << (man_bits - 1)));
            } else {
                mismatches += u16_at(back, b) != b;
            }
        }
        CHECK(mismatches == 0);
        CHECK(nans == 2 * ((1 << man_bits) - 1));
    }
    // known values (IEEE 754 binary16 and bfloat16 tables)
    safetensors_file f;
    f.add_raw("h", safetensors_dtype::f16, {6}, std::string("\x00\x3c\xff\x7b\x01\x00\x00\xfc\x00\x80\xff\x03", 12));
    const auto h = f.get<double>("h");
    CHECK(h[0] == 1.0);
    CHECK(h[1] == 65504.0);
    CHECK(h[2] == std::ldexp(1.0, -24));
    CHECK(h[3] == -std::numeric_limits<double>::infinity());
    CHECK((h[4] == 0.0 && std::signbit(h[4])));
    CHECK(h[5] == std::ldexp(1023.0, -24));  // largest subnormal
    f.add_raw("b", safetensors_dtype::bf16, {3}, std::string("\x80\x3f\x7f\x7f\x01\x00", 6));
    const auto bf = f.get<float>("b");
    CHECK(bf[0] == 1.0f);
    CHECK(bf[1] == std::ldexp(255.0f, 127 - 7));  // largest finite bfloat16 = (2 - 2^-7) * 2^127
    CHECK(bf[2] == std::ldexp(1.0f, -133));       // smallest subnormal
}

TEST_CASE("safetensors F16 and BF16 round to nearest with ties to even") {
    using d = safetensors_dtype;
    const double u = std::ldexp(1.0, -10);  // F16 ulp at 1
    CHECK(encode16(1.0, d::f16) == 0x3C00);
    CHECK(encode16(1.0 + u / 2, d::f16) == 0x3C00);                        // tie -> even (down)
    CHECK(encode16(1.0 + 3 * u / 2, d::f16) == 0x3C02);                    // tie -> even (up)
    CHECK(encode16(1.0 + u / 2 + std::ldexp(1.0, -40), d::f16) == 0x3C01);  // just above the tie
    CHECK(encode16(65504.0, d::f16) == 0x7BFF);
    CHECK(encode16(65519.99, d::f16) == 0x7BFF);                           // below the overflow threshold
    CHECK(encode16(65520.0, d::f16) == 0x7C00);                            // tie with 2^16 -> inf
    CHECK(encode16(-1e10, d::f16) == 0xFC00);
    CHECK(encode16(std::ldexp(1.0, -24), d::f16) == 0x0001);               // smallest subnormal
    CHECK(encode16(std::ldexp(1.0, -25), d::f16) == 0x0000);               // tie -> even zero
    CHECK(encode16(std::ldexp(1.5, -25), d::f16) == 0x0001);
    CHECK(encode16(-std::ldexp(3.0, -25), d::f16) == 0x8002);              // tie -> even (2 ulps)
    CHECK(encode16(std::ldexp(1023.5, -24), d::f16) == 0x0400);            // rounds up into the normals
    CHECK(encode16(-0.0, d::f16) == 0x8000);
    CHECK(encode16(1e-300, d::f16) == 0x0000);
    CHECK(encode16(std::numeric_limits<double>::quiet_NaN(), d::f16) == 0x7E00);
    CHECK(encode16(std::numeric_limits<double>::infinity(), d::bf16) == 0x7F80);
    CHECK(encode16(1.0 + std::ldexp(1.0, -8), d::bf16) == 0x3F80);         // tie -> even
    CHECK(encode16(1.0 + std::ldexp(3.0, -8), d::bf16) == 0x3F82);
    // Rounded directly from the double, not through float: 1 + 2^-8 + 2^-40 rounds to float as the
    // tie 1 + 2^-8 (then to 1.0), but it is above the tie, so the correct bfloat16 is 1 + 2^-7.
    CHECK(encode16(1.0 + std::ldexp(1.0, -8) + std::ldexp(1.0, -40), d::bf16) == 0x3F81);
    CHECK(encode16(3.4e38, d::bf16) == 0x7F80);                            // above (2 - 2^-8)·2^127 -> inf
    CHECK(encode16(std::ldexp(1.0, -134), d::bf16) == 0x0000);             // tie -> even zero
}

TEST_CASE("safetensors F16 and BF16 encoders agree with independent conversions") {
    std::mt19937_64 gen(77);
    std::uniform_real_distribution<double> mant(1.0, 2.0);
    std::uniform_int_distribution<int> expo(-30, 17);
    std::uniform_int_distribution<int> sign(0, 1);
#if defined(__FLT16_MAX__)
    // The compiler's _Float16 conversion (libgcc __truncdfhf2) is an independent round-to-nearest-even.
    {
        int mismatches = 0;
        for (int i = 0; i < 200000; ++i) {
            const double x = (sign(gen) ? -1.0 : 1.0) * std::ldexp(mant(gen), expo(gen));
            const _Float16 h = static_cast<_Float16>(x);
            std::uint16_t want = 0;
            std::memcpy(&want, &h, 2);
            mismatches += encode16(x, safetensors_dtype::f16) != want;
        }
        CHECK(mismatches == 0);
    }
#endif
    // From float inputs, bfloat16 round-to-nearest-even is the classic bit trick on the float's bits.
    std::uniform_int_distribution<std::uint32_t> bits32;
    int mismatches = 0, tested = 0;
    std::vector<float> xs;
    for (int i = 0; i < 200000; ++i) {
        const auto b = bits32(gen);
        const float x = std::bit_cast<float>(b);
        if (std::isnan(x)) continue;
        xs.push_back(x);
    }
    safetensors_file f;
    f.add("x", tensor<float, host_space>::from_values(shape{static_cast<std::int64_t>(xs.size())}, xs),
          safetensors_dtype::bf16);
    const std::string& data = f.at("x").data;
    for (std::size_t i = 0; i < xs.size(); ++i, ++tested) {
        const auto b = std::bit_cast<std::uint32_t>(xs[i]);
        const auto want = static_cast<std::uint16_t>((b + 0x7FFFu + ((b >> 16) & 1u)) >> 16);
        mismatches += u16_at(data, i) != want;
    }
    CHECK(tested > 190000);
    CHECK(mismatches == 0);
}

TEST_CASE("safetensors integer and bool dtypes round trip and convert with range checks") {
    const auto i64 = tensor<std::int64_t, host_space>::from_values(
        shape{4}, {std::numeric_limits<std::int64_t>::min(), -1, 9007199254740993LL,
                   std::numeric_limits<std::int64_t>::max()});
    const auto i32 = tensor<std::int32_t, host_space>::from_values(shape{2, 2}, {-7, 300, 0, 2147483647});
    const auto u8 = tensor<std::uint8_t, host_space>::from_values(shape{3}, {0, 128, 255});
    const auto u64 = tensor<std::uint64_t, host_space>::from_values(shape{1}, {18446744073709551615ULL});
    const auto i16 = tensor<std::int16_t, host_space>::from_values(shape{2}, {-32768, 32767});
    const auto bl = tensor<bool, host_space>::from_values(shape{3}, {true, false, true});
    safetensors_file f("ints.safetensors");
    f.add("i64", i64);
    f.add("i32", i32);
    f.add("u8", u8);
    f.add("u64", u64);
    f.add("i16", i16);
    f.add("bool", bl);
    f.add("i32_as_i8", i32.cview().reshape(shape{4}).item(0), safetensors_dtype::i8);
    f.add("bool_as_u8", bl, safetensors_dtype::u8);
    f.add("ints_as_f32", i32, safetensors_dtype::f32);
    const safetensors_file g = safetensors_file::parse(f.serialize(), "ints.safetensors");
    CHECK(g.at("i64").dtype == safetensors_dtype::i64);
    CHECK(g.at("i32").dtype == safetensors_dtype::i32);
    CHECK(g.at("u8").dtype == safetensors_dtype::u8);
    CHECK(g.at("bool").dtype == safetensors_dtype::boolean);
    CHECK(same_bits(g.get<std::int64_t>("i64"), i64));
    CHECK(same_bits(g.get<std::int32_t>("i32"), i32));
    CHECK(same_bits(g.get<std::uint8_t>("u8"), u8));
    CHECK(same_bits(g.get<std::uint64_t>("u64"), u64));
    CHECK(same_bits(g.get<std::int16_t>("i16"), i16));
    CHECK(g.get<bool>("bool").to_vector() == std::vector<bool>{true, false, true});
    CHECK(g.get<std::int8_t>("i32_as_i8")[0] == -7);
    CHECK(g.get<int>("bool_as_u8").to_vector() == std::vector<int>{1, 0, 1});
    CHECK(g.get<double>("ints_as_f32").to_vector() == std::vector<double>{-7, 300, 0, 2147483648.0});
    // widening and integer -> float conversions
    CHECK(g.get<std::int64_t>("i32").to_vector() == std::vector<std::int64_t>{-7, 300, 0, 2147483647});
    CHECK(g.get<double>("i16").to_vector() == std::vector<double>{-32768, 32767});
    CHECK(g.get<float>("bool").to_vector() == std::vector<float>{1, 0, 1});
    CHECK(g.get<bool>("i32").to_vector() == std::vector<bool>{true, true, false, true});
    // range and kind errors name the tensor and the file
    CHECK_THROWS_WITH_AS(g.get<std::int8_t>("i32"),
                         doctest::Contains("tensor 'i32' in 'ints.safetensors': element 1 = 300 does not fit"),
                         diffuse::error);
    CHECK_THROWS_WITH_AS(g.get<std::uint32_t>("i64"), doctest::Contains("element 0 = -9223372036854775808"),
                         diffuse::error);
    CHECK_THROWS_WITH_AS(g.get<std::int64_t>("u64"), doctest::Contains("18446744073709551615 does not fit"),
                         diffuse::error);
    CHECK_THROWS_WITH_AS(g.get<int>("ints_as_f32"),
                         doctest::Contains("tensor 'ints_as_f32' in 'ints.safetensors' has floating-point dtype "
                                           "F32; refusing to convert it to an integer type"),
                         diffuse::error);
    safetensors_file h("out.safetensors");
    CHECK_THROWS_WITH_AS(h.add("w", i32, safetensors_dtype::i8),
                         doctest::Contains("tensor 'w' for 'out.safetensors': element 1 = 300 does not fit dtype I8"),
                         diffuse::error);
    CHECK_THROWS_WITH_AS(h.add("w", tensor<float, host_space>(shape{2}, 1.0f), safetensors_dtype::i32),
                         doctest::Contains("refusing to store floating-point data as the integer dtype I32"),
                         diffuse::error);
    CHECK_THROWS_WITH_AS(h.add("w", tensor<double, host_space>(shape{2}, 1.0), safetensors_dtype::boolean),
                         doctest::Contains("refusing to store floating-point data as dtype BOOL"), diffuse::error);
    CHECK(h.empty());  // failed adds leave nothing behind
    // a BOOL byte other than 0 or 1 is corrupt
    h.add_raw("b", safetensors_dtype::boolean, {2}, std::string("\x01\x02", 2));
    CHECK_THROWS_WITH_AS(h.get<bool>("b"),
                         doctest::Contains("tensor 'b' in 'out.safetensors': BOOL element 1 has byte value 2"),
                         diffuse::error);
}

TEST_CASE("safetensors parses a file assembled in Python and re-serializes it byte for byte") {
    const std::string bytes = lit(python_canonical);
    const safetensors_file f = safetensors_file::parse(bytes, "python.safetensors");
    CHECK(f.names() == canonical_order);
    CHECK(f.metadata() == std::vector<std::pair<std::string, std::string>>{{"format", "pt"}});
    CHECK(f.at("conv.weight").dtype == safetensors_dtype::f32);
    CHECK(f.at("conv.weight").shape == std::vector<std::int64_t>{2, 1, 2});
    CHECK(f.get<float>("conv.weight").to_vector() == std::vector<float>{0.5f, -1.25f, 3e-3f, 1e30f});
    CHECK(f.get<float>("conv.weight").shape() == shape{2, 1, 2});
    // -0.1 rounded to binary16 by numpy is -0.0999755859375 exactly
    CHECK(f.get<double>("conv.bias").to_vector() == std::vector<double>{1.5, -0.0999755859375});
    CHECK(f.get<float>("norm.scale").to_vector() == std::vector<float>{0.15625f, -3.0f});
    const auto step = f.get<std::int64_t>("step");
    CHECK(step.rank() == 0);
    CHECK(step[0] == -9007199254740993LL);
    CHECK(f.get<std::uint8_t>("ids").to_vector() == std::vector<std::uint8_t>{7, 255});
    CHECK(f.get<bool>("mask").to_vector() == std::vector<bool>{true, false, true});
    CHECK(f.get<float>("empty").shape() == shape{0, 3});
    // the layout and the header text are the Python library's: serialize reproduces the bytes
    CHECK(f.serialize() == bytes);

    // the same tensors in another order with spaced JSON parse to the same tensors ...
    const safetensors_file g = safetensors_file::parse(lit(python_name_order), "names.safetensors");
    CHECK(g.names() == std::vector<std::string>{"conv.bias", "conv.weight", "empty", "ids", "mask", "norm.scale",
                                                "step"});
    CHECK(g.metadata().empty());
    for (const std::string& name : canonical_order) {
        CAPTURE(name);
        CHECK(g.at(name).data == f.at(name).data);
        CHECK(g.at(name).dtype == f.at(name).dtype);
        CHECK(g.at(name).shape == f.at(name).shape);
    }
    // ... and serialize to the canonical bytes
    safetensors_file h = g;
    h.set_metadata("format", "pt");
    CHECK(h.serialize() == bytes);
}

TEST_CASE("safetensors serialization is deterministic and idempotent") {
    const auto a = random_tensor<float>(shape{3, 2}, 5);
    const auto b = random_tensor<double>(shape{4}, 6);
    const auto c = tensor<std::int32_t, host_space>::from_values(shape{2}, {1, 2});
    const auto d = random_tensor<float>(shape{5}, 7);
    safetensors_file f1, f2;
    f1.add("b.weight", a);
    f1.add("a.weight", d);
    f1.add("z", b);
    f1.add("ids", c);
    f1.add("h", a, safetensors_dtype::f16);
    f1.set_metadata("format", "pt");
    f1.set_metadata("author", "diffuse \xc3\xa9");
    f2.set_metadata("author", "old");
    f2.add("h", a, safetensors_dtype::f16);
    f2.add("ids", c);
    f2.add("z", b);
    f2.add("a.weight", d);
    f2.set_metadata("format", "pt");
    f2.add("b.weight", a);
    f2.set_metadata("author", "diffuse \xc3\xa9");  // replaces
    const std::string s1 = f1.serialize();
    CHECK(s1 == f2.serialize());  // independent of the order of add() and set_metadata()
    const safetensors_file p = safetensors_file::parse(s1);
    CHECK(p.serialize() == s1);
    // layout: F64 before F32 (sorted by name) before I32 before F16; metadata first with sorted keys
    CHECK(p.names() == std::vector<std::string>{"z", "a.weight", "b.weight", "ids", "h"});
    std::uint64_t n = 0;
    for (int k = 7; k >= 0; --k) n = (n << 8) | static_cast<unsigned char>(s1[static_cast<std::size_t>(k)]);
    CHECK(n % 8 == 0);
    const std::string header = s1.substr(8, static_cast<std::size_t>(n));
    CHECK(header.rfind("{\"__metadata__\":{\"author\":\"diffuse \xc3\xa9\",\"format\":\"pt\"},\"z\":{\"dtype\":\"F64\","
                       "\"shape\":[4],\"data_offsets\":[0,32]},",
                       0) == 0);
    CHECK(s1.size() == 8 + n + 32 + 20 + 24 + 8 + 12);
    // every tensor starts at a multiple of its element size within the data buffer (and the buffer
    // itself starts at 8 + n, a multiple of 8)
    std::size_t offset = 0;
    for (const safetensors_tensor& t : p.tensors()) {
        CHECK(offset % safetensors_dtype_size(t.dtype) == 0);
        offset += t.data.size();
    }
    CHECK(offset == 32 + 20 + 24 + 8 + 12);
    // an empty file is "{}" padded to 8 bytes, as the Python library writes it
    const std::string empty = safetensors_file().serialize();
    CHECK(empty == std::string("\x08\0\0\0\0\0\0\0{}      ", 16));
    CHECK(safetensors_file::parse(empty).empty());
    // non-ASCII names are written as UTF-8 and read back
    safetensors_file u;
    u.add("caf\xc3\xa9.w", a);
    CHECK(safetensors_file::parse(u.serialize()).contains("caf\xc3\xa9.w"));
}

TEST_CASE("safetensors lookups list close names and shape mismatches name both shapes") {
    safetensors_file f("x.safetensors");
    f.add("conv_in.weight", tensor<float, host_space>(shape{32, 3, 3, 3}, 0.5f));
    f.add("conv_in.bias", tensor<float, host_space>(shape{32}, 0.0f));
    tensor<float, host_space> model(shape{32, 4, 3, 3});
    CHECK_THROWS_WITH_AS(f.get_into("conv_in.weight", model.view()),
                         doctest::Contains("tensor 'conv_in.weight' in 'x.safetensors' has shape [32, 3, 3, 3] but "
                                           "the model expects [32, 4, 3, 3]"),
                         diffuse::error);
    tensor<float, host_space> flat(shape{32 * 27});
    CHECK_THROWS_WITH_AS(f.get_into("conv_in.weight", flat.view()),
                         doctest::Contains("has shape [32, 3, 3, 3] but the model expects [864]"), diffuse::error);
    CHECK_THROWS_WITH_AS(f.at("conv_out.weight"),
                         doctest::Contains("tensor 'conv_out.weight' not found in 'x.safetensors' (2 tensors); "
                                           "available: conv_in.weight, conv_in.bias"),
                         diffuse::error);
    CHECK(f.find("conv_out.weight") == nullptr);
    CHECK_FALSE(f.contains("conv_out.weight"));
    // with many tensors: the ten closest names, closest first
    safetensors_file many("unet.safetensors");
    for (int i = 0; i < 30; ++i)
        many.add("down_blocks." + std::to_string(i) + ".resnets.0.conv1.weight",
                 tensor<float, host_space>(shape{1}, 0.f));
    many.add("time_embedding.linear_1.weight", tensor<float, host_space>(shape{1}, 0.f));
    CHECK_THROWS_WITH_AS(many.at("down_blocks.12.resnets.0.conv2.weight"),
                         doctest::Contains("tensor 'down_blocks.12.resnets.0.conv2.weight' not found in "
                                           "'unet.safetensors' (31 tensors); closest names: "
                                           "down_blocks.12.resnets.0.conv1.weight, "),
                         diffuse::error);
    try {
        (void)many.at("time_embedding.linear1.weight");
        FAIL("expected an error");
    } catch (const diffuse::error& e) {
        const std::string msg = e.what();
        CHECK(msg.find("closest names: time_embedding.linear_1.weight, ") != std::string::npos);
        // ten names listed: nine ", " separators after "closest names: "
        const std::string list = msg.substr(msg.find("closest names: "));
        std::size_t commas = 0;
        for (std::size_t p = list.find(", "); p != std::string::npos; p = list.find(", ", p + 1)) ++commas;
        CHECK(commas == 9);
    }
    CHECK_THROWS_WITH_AS(safetensors_file("e.safetensors").at("w"),
                         doctest::Contains("not found in 'e.safetensors' (0 tensors); the file holds no tensors"),
                         diffuse::error);
    // rank above 5 can be stored but not converted
    f.add_raw("r6", safetensors_dtype::u8, {1, 1, 1, 1, 1, 2}, std::string("\x01\x02", 2));
    CHECK_THROWS_WITH_AS(f.get<float>("r6"),
                         doctest::Contains("tensor 'r6' in 'x.safetensors' has rank 6 (shape [1, 1, 1, 1, 1, 2]); "
                                           "diffuse tensors have rank 0 to 5"),
                         diffuse::error);
    // building errors
    CHECK_THROWS_WITH_AS(f.add("conv_in.bias", tensor<float, host_space>(shape{1}, 0.f)),
                         doctest::Contains("'x.safetensors': duplicate tensor name 'conv_in.bias'"), diffuse::error);
    CHECK_THROWS_WITH_AS(f.add("__metadata__", tensor<float, host_space>(shape{1}, 0.f)),
                         doctest::Contains("'__metadata__' is reserved"), diffuse::error);
    CHECK_THROWS_WITH_AS(f.add_raw("raw", safetensors_dtype::f32, {2, 3}, std::string(20, '\0')),
                         doctest::Contains("tensor 'raw' for 'x.safetensors' of dtype F32 and shape [2, 3] needs 24 "
                                           "bytes but 20 were given"),
                         diffuse::error);
    CHECK_THROWS_WITH_AS(f.add_raw("bad \xff name", safetensors_dtype::u8, {0}, ""),
                         doctest::Contains("tensor name 'bad \xff name' is not valid UTF-8"), diffuse::error);
    CHECK_THROWS_WITH_AS(f.set_metadata("k", "\xc3"), doctest::Contains("must be valid UTF-8"), diffuse::error);
    CHECK_THROWS_WITH_AS(f.add_raw("raw", safetensors_dtype::f32, {-2}, ""),
                         doctest::Contains("negative dimension -2"), diffuse::error);
    CHECK_THROWS_WITH_AS(f.add_raw("raw", safetensors_dtype::f64, {1LL << 62, 4}, ""),
                         doctest::Contains("shape is too large"), diffuse::error);
}

TEST_CASE("safetensors corrupt files give errors that name the file") {
    const std::string f32x6(24, '\0');
    const auto entry = [](const std::string& name, const std::string& body) { return "\"" + name + "\":" + body; };
    struct bad_case {
        std::string header;
        std::string data;
        std::string fragment;
    };
    const std::vector<bad_case> cases = {
        {"[1, 2]", "", "the header is an array; expected a JSON object"},
        {"{\"a\":", "",  // padded with spaces to 8 bytes, so the input ends at column 9
         "header: line 1, column 9: expected a JSON value (object, array, string, number, true, false or null), "
         "found the end of the input"},
        {"{" + entry("a", "5") + "}", "", "header entry 'a' is an integer; expected an object with keys 'dtype'"},
        {"{" + entry("a", R"({"shape":[1],"data_offsets":[0,4]})") + "}", std::string(4, '\0'),
         "tensor 'a': header entry lacks 'dtype'"},
        {"{" + entry("a", R"({"dtype":"F32","data_offsets":[0,4]})") + "}", std::string(4, '\0'),
         "tensor 'a': header entry lacks 'shape'"},
        {"{" + entry("a", R"({"dtype":"F32","shape":[1]})") + "}", std::string(4, '\0'),
         "tensor 'a': header entry lacks 'data_offsets'"},
        {"{" + entry("a", R"({"dtype":32,"shape":[1],"data_offsets":[0,4]})") + "}", std::string(4, '\0'),
         "tensor 'a': 'dtype' is an integer; expected a string"},
        {"{" + entry("a", R"({"dtype":"Q4","shape":[1],"data_offsets":[0,4]})") + "}", std::string(4, '\0'),
         "tensor 'a': unknown or unsupported dtype 'Q4'; supported: U64, I64, F64, F32"},
        {"{" + entry("a", R"({"dtype":"F8_E4M3","shape":[1],"data_offsets":[0,1]})") + "}", std::string(1, '\0'),
         "unknown or unsupported dtype 'F8_E4M3'"},
        {"{" + entry("a", R"({"dtype":"F32","shape":"1","data_offsets":[0,4]})") + "}", std::string(4, '\0'),
         "tensor 'a': 'shape' is a string; expected an array of non-negative integers"},
        {"{" + entry("a", R"({"dtype":"F32","shape":[1.0],"data_offsets":[0,4]})") + "}", std::string(4, '\0'),
         "tensor 'a': 'shape' [1.0] holds a value that is not an integer"},
        {"{" + entry("a", R"({"dtype":"F32","shape":[2,-3],"data_offsets":[0,24]})") + "}", f32x6,
         "tensor 'a': negative dimension -3 in shape [2, -3]"},
        {"{" + entry("a", R"({"dtype":"F32","shape":[6],"data_offsets":[0]})") + "}", f32x6,
         "tensor 'a': 'data_offsets' must be two non-negative integers [begin, end], found [0]"},
        {"{" + entry("a", R"({"dtype":"F32","shape":[6],"data_offsets":{"b":0}})") + "}", f32x6,
         "'data_offsets' must be two non-negative integers"},
        {"{" + entry("a", R"({"dtype":"F32","shape":[6],"data_offsets":[-1,23]})") + "}", f32x6,
         "'data_offsets' must be two non-negative integers [begin, end], found -1"},
        {"{" + entry("a", R"({"dtype":"F32","shape":[6],"data_offsets":[0,"24"]})") + "}", f32x6,
         "'data_offsets' must be two non-negative integers [begin, end], found \"24\""},
        {"{" + entry("a", R"({"dtype":"F32","shape":[2,3],"data_offsets":[0,20]})") + "}", std::string(20, '\0'),
         "tensor 'a': shape [2, 3] of dtype F32 needs 24 bytes but data_offsets [0, 20] span 20"},
        {"{" + entry("a", R"({"dtype":"F64","shape":[4611686018427387904,4611686018427387904],"data_offsets":[0,8]})") +
             "}",
         std::string(8, '\0'), "of dtype F64 overflows 64-bit byte counts"},
        {"{" + entry("a", R"({"dtype":"F64","shape":[2305843009213693952],"data_offsets":[0,8]})") + "}",
         std::string(8, '\0'), "of dtype F64 overflows"},  // 2^61 · 8 = 2^64
        {"{" + entry("a", R"({"dtype":"F32","shape":[6],"data_offsets":[24,0]})") + "}", f32x6,
         "tensor 'a': data_offsets [24, 0] have begin > end"},
        {"{" + entry("a", R"({"dtype":"F32","shape":[6],"data_offsets":[8,32]})") + "}", f32x6,
         "tensor 'a': data_offsets [8, 32] run past the end of the data buffer (24 bytes"},
        {"{" + entry("a", R"({"dtype":"F32","shape":[4],"data_offsets":[0,16]})") + "," +
             entry("b", R"({"dtype":"F32","shape":[4],"data_offsets":[8,24]})") + "}",
         f32x6, "tensors 'a' (data_offsets [0, 16]) and 'b' (data_offsets [8, 24]) overlap"},
        {"{" + entry("a", R"({"dtype":"F32","shape":[2],"data_offsets":[0,8]})") + "," +
             entry("b", R"({"dtype":"F32","shape":[2],"data_offsets":[16,24]})") + "}",
         f32x6, "bytes [8, 16) of the data buffer belong to no tensor (a hole between 'a' and 'b')"},
        {"{" + entry("b", R"({"dtype":"F32","shape":[2],"data_offsets":[16,24]})") + "}", f32x6,
         "bytes [0, 16) of the data buffer belong to no tensor (a hole before 'b')"},
        {"{" + entry("a", R"({"dtype":"F32","shape":[4],"data_offsets":[0,16]})") + "}", f32x6,
         "the data buffer is 24 bytes but the tensors cover only 16"},
        {"{}", "x", "the data buffer is 1 bytes but the tensors cover only 0"},
        {"{" + entry("a", R"({"dtype":"F32","shape":[6],"data_offsets":[0,24]})") + "," +
             entry("a", R"({"dtype":"F32","shape":[6],"data_offsets":[0,24]})") + "}",
         f32x6, "duplicate key 'a' in an object"},
        {R"({"__metadata__":{"format":1}})", "",
         "'__metadata__' value for key 'format' is an integer; expected a string"},
        {R"({"__metadata__":["pt"]})", "", "'__metadata__' is an array; expected an object"},
    };
    for (const bad_case& c : cases) {
        CAPTURE(c.header);
        CHECK_THROWS_WITH_AS(parse_bad(c.header, c.data), contains(c.fragment), diffuse::error);
        CHECK_THROWS_WITH_AS(parse_bad(c.header, c.data), doctest::Contains("safetensors file 'bad.safetensors': "),
                             diffuse::error);
    }
    // the valid variants of the same shapes parse (so the cases above fail for the stated reason)
    CHECK(parse_bad("{" + entry("a", R"({"dtype":"F32","shape":[2,3],"data_offsets":[0,24]})") + "}", f32x6)
              .size() == 1);
    CHECK(parse_bad("{" + entry("a", R"({"dtype":"F32","shape":[2],"data_offsets":[0,8]})") + "," +
                        entry("b", R"({"dtype":"F32","shape":[4],"data_offsets":[8,24]})") + "}",
                    f32x6)
              .size() == 2);
    CHECK(parse_bad("{" + entry("a", R"({"dtype":"F32","shape":[6],"data_offsets":[0,24],"extra":1})") + "}", f32x6)
              .size() == 1);  // unknown keys in an entry are ignored, as the Python library does

    // the length field itself
    CHECK_THROWS_WITH_AS(safetensors_file::parse(std::string(5, '\0'), "short.safetensors"),
                         doctest::Contains("safetensors file 'short.safetensors': the file is 5 bytes long; a "
                                           ".safetensors file starts with an 8-byte header length"),
                         diffuse::error);
    CHECK_THROWS_WITH_AS(safetensors_file::parse(""), doctest::Contains("the file is 0 bytes long"), diffuse::error);
    std::string oversized = make_file("{}", "");
    oversized[0] = '\x00';
    oversized[1] = '\xe2';
    oversized[2] = '\xf5';
    oversized[3] = '\x05';  // 100,000,256
    CHECK_THROWS_WITH_AS(safetensors_file::parse(oversized, "big.safetensors"),
                         doctest::Contains("header length 100000256 is larger than the limit of 100000000 bytes"),
                         diffuse::error);
    std::string huge(16, '\xff');  // 2^64 - 1
    CHECK_THROWS_WITH_AS(safetensors_file::parse(huge),
                         doctest::Contains("header length 18446744073709551615 is larger"),
                         diffuse::error);
    std::string long_header = make_file("{}", "");
    long_header[0] = 100;
    CHECK_THROWS_WITH_AS(safetensors_file::parse(long_header, "t.safetensors"),
                         doctest::Contains("header length 100 is larger than the 8 bytes after the length field "
                                           "(truncated file)"),
                         diffuse::error);
    // invalid UTF-8 in the header
    CHECK_THROWS_WITH_AS(safetensors_file::parse(make_file("{\"\xff\":1}", "")),
                         doctest::Contains("invalid UTF-8 byte 0xff"), diffuse::error);
    // files: a missing file names the path
    const std::string missing = tmp_path("missing/none.safetensors");
    CHECK_THROWS_WITH_AS(safetensors_file::read(missing),
                         contains("cannot open safetensors file '" + missing + "' for reading"), diffuse::error);
    CHECK_THROWS_WITH_AS(safetensors_file().write(missing),
                         contains("cannot open safetensors file '" + missing + "' for writing"), diffuse::error);
    // a corrupt file on disk names its path
    const std::string path = tmp_path("truncated.safetensors");
    {
        const std::string bytes = lit(python_canonical);
        std::ofstream out(path, std::ios::binary | std::ios::trunc);
        out.write(bytes.data(), static_cast<std::streamsize>(bytes.size() - 1));
    }
    CHECK_THROWS_WITH_AS(safetensors_file::read(path),
                         contains("safetensors file '" + path + "': tensor 'mask': data_offsets [34, 37] run past the "
                                  "end of the data buffer (36 bytes; truncated file?)"),
                         diffuse::error);
}

TEST_CASE("safetensors every truncation and every corrupted byte gives an error or a valid file") {
    const std::string bytes = lit(python_canonical);
    int errors = 0;
    for (std::size_t n = 0; n < bytes.size(); ++n) {
        bool threw = false;
        try {
            (void)safetensors_file::parse(bytes.substr(0, n), "cut.safetensors");
        } catch (const diffuse::error& e) {
            threw = std::string(e.what()).find("safetensors file 'cut.safetensors'") != std::string::npos;
        }
        errors += threw;
        if (!threw) CHECK_MESSAGE(false, "truncation to " << n << " bytes was accepted or gave a bad message");
    }
    CHECK(errors == static_cast<int>(bytes.size()));
    // single-byte corruption: either a diffuse::error or a file that re-serializes and parses again
    int accepted = 0, rejected = 0;
    for (std::size_t i = 0; i < bytes.size(); ++i) {
        for (unsigned char v : {0x00, 0x01, 0x20, 0x22, 0x2c, 0x30, 0x39, 0x5b, 0x7d, 0x80, 0xff}) {
            std::string b = bytes;
            b[i] = static_cast<char>(v);
            try {
                const safetensors_file f = safetensors_file::parse(b, "fuzz.safetensors");
                for (const std::string& name : f.names()) {
                    const safetensors_tensor& t = f.at(name);
                    if (t.shape.size() <= 5 && t.dtype != safetensors_dtype::boolean) (void)f.get<double>(name);
                }
                (void)safetensors_file::parse(f.serialize());
                ++accepted;
            } catch (const diffuse::error&) {
                ++rejected;
            }
        }
    }
    CHECK(accepted > 0);  // data bytes may change freely
    CHECK(rejected > 0);
}
