// .npy read/write: bitwise round trips per dtype, numpy byte-exactness, header layout, and every
// kind of bad input giving a diffuse::error that names the file and the problem.
#include <diffuse/io/npy.hpp>

#include "support/check.hpp"
#include "support/tmp.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

using namespace diffuse;
using namespace diffuse::io;

namespace {

std::string tmp_path(const std::string& name) { return diffuse::test::temp().file(name); }

void write_bytes(const std::string& path, std::string_view bytes) {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

using diffuse::test::read_bytes;

/// An .npy byte string with an arbitrary header dict (padded as numpy does) and raw data.
std::string make_npy(const std::string& dict, std::string_view data, int major = 1) {
    const std::size_t prefix = major == 1 ? 10 : 12;
    std::string header = dict;
    const std::size_t hlen = header.size() + 1;
    header += std::string(64 - ((prefix + hlen) % 64), ' ');
    header += '\n';
    std::string out = "\x93NUMPY";
    out += char(major);
    out += char(0);
    const std::size_t n = header.size();
    out += char(n & 0xFF);
    out += char((n >> 8) & 0xFF);
    if (major != 1) {
        out += char((n >> 16) & 0xFF);
        out += char((n >> 24) & 0xFF);
    }
    return out + header + std::string(data);
}

std::string float_bytes(std::vector<float> v) {
    return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
}

// Written once by numpy 1.24.2:  np.save(f, a)  for the arrays named in each comment.
// a = np.array([[0, 1.5, -2], [3.25, 4e-3, 1e30]], dtype='<f4')
const char numpy_f4_2x3[] =
    "\x93""NUMPY\x01""\x00""v\x00""{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }                                                          \x0a""\x00""\x00""\x00""\x00""\x00""\x00""\xc0""?\x00""\x00""\x00""\xc0""\x00""\x00""P@o\x12""\x83"";\xca""\xf2""Iq";
// a = np.array(-0.1)
const char numpy_f8_scalar[] =
    "\x93""NUMPY\x01""\x00""v\x00""{'descr': '<f8', 'fortran_order': False, 'shape': (), }                                                              \x0a""\x9a""\x99""\x99""\x99""\x99""\x99""\xb9""\xbf""";
// a = np.array([0, 7, 255], dtype=np.uint8)
const char numpy_u1_3[] =
    "\x93""NUMPY\x01""\x00""v\x00""{'descr': '|u1', 'fortran_order': False, 'shape': (3,), }                                                            \x0a""\x00""\x07""\xff""";
// a = np.array([[[-1, 2]], [[2147483647, -2147483648]]], dtype='<i4')
const char numpy_i4_2x1x2[] =
    "\x93""NUMPY\x01""\x00""v\x00""{'descr': '<i4', 'fortran_order': False, 'shape': (2, 1, 2), }                                                       \x0a""\xff""\xff""\xff""\xff""\x02""\x00""\x00""\x00""\xff""\xff""\xff""\x7f""\x00""\x00""\x00""\x80""";

template <std::size_t N>
std::string_view lit(const char (&s)[N]) {
    return std::string_view(s, N - 1);
}

const std::vector<shape> all_rank_shapes = {shape{}, shape{5}, shape{2, 3}, shape{2, 1, 3},
                                            shape{1, 2, 2, 3}, shape{2, 1, 2, 1, 3}, shape{0, 4}};

template <class T>
tensor<T, host_space> pattern(shape s) {
    tensor<T, host_space> t(s);
    for (std::int64_t i = 0; i < t.numel(); ++i) {
        if constexpr (std::is_same_v<T, bool>) {
            t[i] = (i % 3) == 1;
        } else if constexpr (std::is_floating_point_v<T>) {
            t[i] = static_cast<T>(std::sin(1.0 + double(i)) * std::pow(10.0, double(i % 7) - 3.0));
        } else {
            // wrap around the type's range, including its extremes
            const std::uint64_t x = 0x9E3779B97F4A7C15ull * std::uint64_t(i + 1);
            std::memcpy(&t[i], &x, sizeof(T));
        }
    }
    if constexpr (std::is_floating_point_v<T>) {
        if (t.numel() >= 4) {
            t[0] = std::numeric_limits<T>::quiet_NaN();
            t[1] = -std::numeric_limits<T>::infinity();
            t[2] = -T(0);
            t[3] = std::numeric_limits<T>::denorm_min();
        }
    } else if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
        if (t.numel() >= 2) {
            t[0] = std::numeric_limits<T>::min();
            t[1] = std::numeric_limits<T>::max();
        }
    }
    return t;
}

template <class T>
void check_round_trip(const char* name) {
    for (const shape& s : all_rank_shapes) {
        CAPTURE(s.str());
        const auto t = pattern<T>(s);
        const std::string path = tmp_path(std::string("roundtrip_") + name + ".npy");
        save_npy(path, t);
        const auto back = load_npy<T>(path);
        CHECK(back.shape() == s);
        const auto same_bits = [&](const tensor<T, host_space>& u) {
            return t.bytes() == 0 || std::memcmp(u.data(), t.data(), t.bytes()) == 0;
        };
        CHECK(same_bits(back));  // bitwise, NaN payloads included
        const auto mem = from_npy_bytes<T>(to_npy_bytes(t));
        CHECK(same_bits(mem));
        CHECK(read_bytes(path) == to_npy_bytes(t));
        const npy_header h = read_npy_header(path);
        CHECK(h.descr == npy_descr<T>());
        CHECK(h.shape == s);
    }
}

}  // namespace

TEST_CASE("npy: dtype strings follow numpy") {
    CHECK(npy_descr<float>() == "<f4");
    CHECK(npy_descr<double>() == "<f8");
    CHECK(npy_descr<std::int8_t>() == "|i1");
    CHECK(npy_descr<std::int16_t>() == "<i2");
    CHECK(npy_descr<std::int32_t>() == "<i4");
    CHECK(npy_descr<std::int64_t>() == "<i8");
    CHECK(npy_descr<std::uint8_t>() == "|u1");
    CHECK(npy_descr<std::uint16_t>() == "<u2");
    CHECK(npy_descr<std::uint32_t>() == "<u4");
    CHECK(npy_descr<std::uint64_t>() == "<u8");
    CHECK(npy_descr<bool>() == "|b1");
}

TEST_CASE("npy: bitwise round trips for every dtype and rank 0-5") {
    check_round_trip<float>("f4");
    check_round_trip<double>("f8");
    check_round_trip<std::int8_t>("i1");
    check_round_trip<std::int16_t>("i2");
    check_round_trip<std::int32_t>("i4");
    check_round_trip<std::int64_t>("i8");
    check_round_trip<std::uint8_t>("u1");
    check_round_trip<std::uint16_t>("u2");
    check_round_trip<std::uint32_t>("u4");
    check_round_trip<std::uint64_t>("u8");
    check_round_trip<bool>("b1");
}

TEST_CASE("npy: header is version 1.0, a dict ended by newline, data 64-byte aligned") {
    for (const shape& s : {shape{}, shape{1}, shape{123456789}, shape{3, 4}, shape{1, 2, 3, 4, 5},
                           shape{100000, 100000, 1, 1, 100000}}) {
        CAPTURE(s.str());
        const std::string hdr = io::detail::make_header(io::detail::dtype_of<double>(), s);
        CHECK(hdr.size() % 64 == 0);
        CHECK(hdr.substr(0, 8) == std::string("\x93NUMPY\x01\x00", 8));
        const std::size_t len = std::size_t(std::uint8_t(hdr[8])) | (std::size_t(std::uint8_t(hdr[9])) << 8);
        CHECK(len + 10 == hdr.size());
        CHECK(hdr.back() == '\n');
        CHECK(hdr[10] == '{');
    }
    const auto t = tensor<float, host_space>(shape{2, 3}, 1.0f);
    const std::string bytes = to_npy_bytes(t);
    const npy_header h = parse_npy_header(bytes);
    CHECK(h.data_offset == 128);
    CHECK(h.version_major == 1);
    CHECK(h.version_minor == 0);
    CHECK(bytes.size() == 128 + 6 * 4);
}

TEST_CASE("npy: byte-exact with files written by numpy.save") {
    const auto f4 = tensor<float, host_space>::from_values({2, 3}, {0.f, 1.5f, -2.f, 3.25f, 4e-3f, 1e30f});
    CHECK(to_npy_bytes(f4) == lit(numpy_f4_2x3));
    CHECK(from_npy_bytes<float>(lit(numpy_f4_2x3)).to_vector() == f4.to_vector());

    const auto f8 = tensor<double, host_space>::from_values(shape{}, {-0.1});
    CHECK(to_npy_bytes(f8) == lit(numpy_f8_scalar));
    const auto f8_back = from_npy_bytes<double>(lit(numpy_f8_scalar));
    CHECK(f8_back.shape() == shape{});
    CHECK(f8_back[0] == -0.1);

    const auto u1 = tensor<std::uint8_t, host_space>::from_values({3}, {0, 7, 255});
    CHECK(to_npy_bytes(u1) == lit(numpy_u1_3));
    CHECK(from_npy_bytes<std::uint8_t>(lit(numpy_u1_3)).to_vector() == u1.to_vector());

    const auto i4 = tensor<std::int32_t, host_space>::from_values(
        {2, 1, 2}, {-1, 2, 2147483647, std::numeric_limits<std::int32_t>::min()});
    CHECK(to_npy_bytes(i4) == lit(numpy_i4_2x1x2));
    const auto i4_back = from_npy_bytes<std::int32_t>(lit(numpy_i4_2x1x2));
    CHECK(i4_back.shape() == shape{2, 1, 2});
    CHECK(i4_back.to_vector() == i4.to_vector());

    // and from disk
    const std::string path = tmp_path("numpy_written_f4.npy");
    write_bytes(path, lit(numpy_f4_2x3));
    CHECK(load_npy<float>(path).to_vector() == f4.to_vector());
}

TEST_CASE("npy: save_npy of a std::vector writes a 1-D array") {
    const std::vector<double> table = {0.0, 0.5, 1e-300, -7.25};
    const std::string path = tmp_path("vector_table.npy");
    save_npy(path, table);
    const auto t = load_npy<double>(path);
    CHECK(t.shape() == shape{4});
    CHECK(t.to_vector() == table);
    const std::vector<std::int64_t> empty;
    save_npy(tmp_path("vector_empty.npy"), empty);
    CHECK(load_npy<std::int64_t>(tmp_path("vector_empty.npy")).shape() == shape{0});
    // views, including views of const
    auto big = tensor<float, host_space>::from_values({2, 2}, {1, 2, 3, 4});
    save_npy(tmp_path("view_item.npy"), big.view().item(1));
    CHECK(load_npy<float>(tmp_path("view_item.npy")).to_vector() == std::vector<float>{3, 4});
}

TEST_CASE("npy: readers accept what numpy accepts") {
    // keys in any order, double quotes, no trailing comma, Python 2 long suffix, version 2.0 and 3.0
    const std::string data = float_bytes({1.f, 2.f, 3.f});
    for (const std::string& dict :
         {std::string("{'shape': (3,), 'fortran_order': False, 'descr': '<f4'}"),
          std::string("{\"descr\": \"<f4\", \"fortran_order\": False, \"shape\": (3L,)}"),
          std::string("{'descr':'<f4','fortran_order':False,'shape':(3,),}")}) {
        CAPTURE(dict);
        CHECK(from_npy_bytes<float>(make_npy(dict, data)).to_vector() == std::vector<float>{1, 2, 3});
    }
    for (int major : {2, 3}) {
        const auto t = from_npy_bytes<float>(
            make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 3), }", data, major));
        CHECK(t.shape() == shape{1, 3});
        CHECK(parse_npy_header(make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (3,)}", data, major))
                  .version_major == major);
    }
    // '=' (native) and '<' for one-byte types
    CHECK(from_npy_bytes<std::uint8_t>(make_npy("{'descr': '<u1', 'fortran_order': False, 'shape': (1,)}", "\x05"))[0] == 5);
    CHECK(from_npy_bytes<float>(make_npy("{'descr': '=f4', 'fortran_order': False, 'shape': (3,)}", data))[2] == 3.f);
}

TEST_CASE("npy: load_npy_as converts between dtypes") {
    const std::string f4_path = tmp_path("as_f4.npy");
    save_npy(f4_path, tensor<float, host_space>::from_values({2}, {0.25f, -3.f}));
    CHECK(load_npy_as<double>(f4_path).to_vector() == std::vector<double>{0.25, -3.0});
    const std::string i4_path = tmp_path("as_i4.npy");
    save_npy(i4_path, tensor<std::int32_t, host_space>::from_values({3}, {-5, 0, 100}));
    CHECK(load_npy_as<std::int64_t>(i4_path).to_vector() == std::vector<std::int64_t>{-5, 0, 100});
    CHECK(load_npy_as<float>(i4_path).to_vector() == std::vector<float>{-5.f, 0.f, 100.f});
    CHECK(load_npy_as<std::int32_t>(i4_path).to_vector() == std::vector<std::int32_t>{-5, 0, 100});
    DIFFUSE_CHECK_ERROR(load_npy_as<std::uint8_t>(i4_path), i4_path.c_str(), "element 0 = -5", "does not fit");
    DIFFUSE_CHECK_ERROR(load_npy_as<std::int32_t>(f4_path), f4_path.c_str(), "float32",
                        "refuses to convert floating-point data to an integer type");
    const std::string b1_path = tmp_path("as_b1.npy");
    tensor<bool, host_space> b(shape{2});  // (tensor<bool>::from_values cannot take a std::vector<bool>)
    b[0] = true;
    b[1] = false;
    save_npy(b1_path, b);
    CHECK(load_npy_as<int>(b1_path).to_vector() == std::vector<int>{1, 0});
    CHECK(load_npy_as<double>(b1_path).to_vector() == std::vector<double>{1.0, 0.0});
}

TEST_CASE("npy: missing, unwritable, empty and truncated files are errors naming the file") {
    const std::string missing = tmp_path("does_not_exist.npy");
    std::filesystem::remove(missing);
    DIFFUSE_CHECK_ERROR(load_npy<float>(missing), "cannot open npy file", missing.c_str(), "for reading",
                        "No such file");
    DIFFUSE_CHECK_ERROR(read_npy_header(missing), missing.c_str());
    const std::string unwritable = tmp_path("no_such_dir/x.npy");
    DIFFUSE_CHECK_ERROR(save_npy(unwritable, std::vector<double>{1.0}), "cannot open npy file",
                        unwritable.c_str(), "for writing");

    const std::string empty = tmp_path("empty.npy");
    write_bytes(empty, "");
    DIFFUSE_CHECK_ERROR(load_npy<float>(empty), empty.c_str(), "truncated");

    const std::string good = to_npy_bytes(tensor<float, host_space>(shape{2, 3}, 1.f));
    const std::string cut_data = tmp_path("cut_data.npy");
    write_bytes(cut_data, std::string_view(good).substr(0, good.size() - 4));
    DIFFUSE_CHECK_ERROR(load_npy<float>(cut_data), cut_data.c_str(), "truncated", "shape [2, 3]",
                        "needs 24 data bytes but the file has 20");
    const std::string cut_header = tmp_path("cut_header.npy");
    write_bytes(cut_header, std::string_view(good).substr(0, 50));
    DIFFUSE_CHECK_ERROR(load_npy<float>(cut_header), cut_header.c_str(), "truncated inside the header");
    const std::string cut_prefix = tmp_path("cut_prefix.npy");
    write_bytes(cut_prefix, std::string_view(good).substr(0, 7));
    DIFFUSE_CHECK_ERROR(load_npy<float>(cut_prefix), cut_prefix.c_str(), "truncated");
    const std::string extra = tmp_path("extra.npy");
    write_bytes(extra, good + "xyz");
    DIFFUSE_CHECK_ERROR(load_npy<float>(extra), extra.c_str(), "size mismatch",
                        "needs 24 data bytes but the file has 27");
    // the in-memory reader says the same
    DIFFUSE_CHECK_ERROR(from_npy_bytes<float>(std::string_view(good).substr(0, 100)), "npy bytes", "truncated");
    DIFFUSE_CHECK_ERROR(from_npy_bytes<float>(std::string_view(good).substr(0, 3)), "truncated");
}

TEST_CASE("npy: malformed headers are errors naming the problem") {
    const std::string data = float_bytes({1.f, 2.f, 3.f});
    const auto err_file = [&](const std::string& name, const std::string& bytes) {
        const std::string path = tmp_path(name);
        write_bytes(path, bytes);
        return path;
    };

    std::string bad_magic = make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (3,)}", data);
    bad_magic[1] = 'X';
    auto p = err_file("bad_magic.npy", bad_magic);
    DIFFUSE_CHECK_ERROR(load_npy<float>(p), p.c_str(), "bad magic");
    DIFFUSE_CHECK_ERROR(load_npy<float>(err_file("png_instead.npy", "\x89PNG\r\n\x1a\n........")), "bad magic");

    std::string bad_version = make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (3,)}", data);
    bad_version[6] = 4;
    p = err_file("bad_version.npy", bad_version);
    DIFFUSE_CHECK_ERROR(load_npy<float>(p), p.c_str(), "unsupported .npy format version 4.0");

    p = err_file("not_dict.npy", make_npy("['descr', '<f4']", data));
    DIFFUSE_CHECK_ERROR(load_npy<float>(p), p.c_str(), "header is not a Python dict");
    p = err_file("bad_dict.npy", make_npy("{'descr': '<f4' 'fortran_order': False, 'shape': (3,)}", data));
    DIFFUSE_CHECK_ERROR(load_npy<float>(p), p.c_str(), "malformed header", "',' or '}'");
    p = err_file("bad_bool.npy", make_npy("{'descr': '<f4', 'fortran_order': 0, 'shape': (3,)}", data));
    DIFFUSE_CHECK_ERROR(load_npy<float>(p), "True or False");
    p = err_file("bad_shape.npy", make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': [3]}", data));
    DIFFUSE_CHECK_ERROR(load_npy<float>(p), "a tuple");
    p = err_file("neg_shape.npy", make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (-3,)}", data));
    DIFFUSE_CHECK_ERROR(load_npy<float>(p), "negative dimension");
    p = err_file("missing_key.npy", make_npy("{'descr': '<f4', 'shape': (3,)}", data));
    DIFFUSE_CHECK_ERROR(load_npy<float>(p), p.c_str(), "lacks key 'fortran_order'");
    p = err_file("extra_key.npy", make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), 'x': 1}", data));
    DIFFUSE_CHECK_ERROR(load_npy<float>(p), "unexpected key 'x'");
    p = err_file("dup_key.npy", make_npy("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (3,)}", data));
    DIFFUSE_CHECK_ERROR(load_npy<float>(p), "key 'descr' twice");
    p = err_file("trailing.npy", make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (3,)} x", data));
    DIFFUSE_CHECK_ERROR(load_npy<float>(p), "malformed header");

    p = err_file("fortran.npy", make_npy("{'descr': '<f4', 'fortran_order': True, 'shape': (3,)}", data));
    DIFFUSE_CHECK_ERROR(load_npy<float>(p), p.c_str(), "fortran_order is True");

    p = err_file("rank6.npy", make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 3, 1, 1, 1)}", data));
    DIFFUSE_CHECK_ERROR(load_npy<float>(p), p.c_str(), "rank 6", "maximum rank 5");
    p = err_file("huge.npy", make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999, 99999999999)}", data));
    DIFFUSE_CHECK_ERROR(load_npy<float>(p), p.c_str(), "too large");
}

TEST_CASE("npy: big-endian, unsupported and wrong dtypes are errors") {
    const std::string data = float_bytes({1.f, 2.f, 3.f});
    const auto file = [&](const std::string& name, const std::string& descr) {
        const std::string path = tmp_path(name);
        write_bytes(path, make_npy("{'descr': '" + descr + "', 'fortran_order': False, 'shape': (3,)}", data));
        return path;
    };
    auto p = file("big_endian.npy", ">f4");
    DIFFUSE_CHECK_ERROR(load_npy<float>(p), p.c_str(), "big-endian dtype '>f4'", "astype('<f4')");
    for (const char* descr : {"<f2", "<c8", "<U3", "|O", "|S4", "<f16", "<M8", "xyz", "<i3", "<f4x"}) {
        CAPTURE(descr);
        p = file("unsupported.npy", descr);
        DIFFUSE_CHECK_ERROR(load_npy<float>(p), p.c_str(), "unsupported dtype");
    }
    const std::string structured = tmp_path("structured.npy");
    write_bytes(structured, make_npy("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (3,)}", data));
    DIFFUSE_CHECK_ERROR(load_npy<float>(structured), "unsupported dtype", "structured");

    p = file("wrong_dtype.npy", "<f4");
    DIFFUSE_CHECK_ERROR(load_npy<double>(p), p.c_str(), "holds dtype '<f4' (float32)", "float64 ('<f8') was requested");
    DIFFUSE_CHECK_ERROR(load_npy<std::int32_t>(p), "int32 ('<i4') was requested");
    p = file("i4.npy", "<i4");
    DIFFUSE_CHECK_ERROR(load_npy<std::uint32_t>(p), "holds dtype '<i4' (int32)", "uint32");

    const std::string bad_bool = tmp_path("bad_bool_data.npy");
    write_bytes(bad_bool, make_npy("{'descr': '|b1', 'fortran_order': False, 'shape': (3,)}", std::string("\x01\x02\x00", 3)));
    DIFFUSE_CHECK_ERROR(load_npy<bool>(bad_bool), bad_bool.c_str(), "bool element 1 has byte value 2");
}

TEST_CASE("npy: every truncation and single-byte corruption gives a tensor or a diffuse::error") {
    const std::string good = to_npy_bytes(tensor<float, host_space>::from_values({2, 3}, {1, 2, 3, 4, 5, 6}));
    int ok = 0;
    for (std::size_t n = 0; n < good.size(); ++n) {
        try {
            (void)from_npy_bytes<float>(std::string_view(good).substr(0, n));
            ++ok;
        } catch (const diffuse::error&) {
        }
    }
    CHECK(ok == 0);
    for (std::size_t i = 0; i < good.size(); ++i)
        for (int bit : {0, 5, 7}) {
            std::string bad = good;
            bad[i] = static_cast<char>(bad[i] ^ (1 << bit));
            try {
                (void)from_npy_bytes<float>(bad);
            } catch (const diffuse::error&) {
            }
        }
}
