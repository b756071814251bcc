#pragma once
// PNG images without dependencies: a writer (8-bit gray, RGB, RGBA) and a reader sufficient to
// read back what the writer makes — and most other 8-bit PNGs — for tests.
//
// Tensors and pixels
//   save_png(path, image)      image [H, W] (gray) or [C, H, W] with C = 1 (gray), 3 (RGB) or
//                              4 (RGBA), element type float, double or uint8_t, host memory.
//   save_png_grid(path, batch) batch [B, C, H, W] tiled into a grid (make_grid) and saved.
//   load_png(path)             -> tensor<uint8_t, host_space> [C, H, W], C = 1, 2, 3 or 4.
//   png_image                  width, height, channels and the pixels interleaved as [H, W, C].
//
// Value mapping (float and double; uint8_t is written unchanged):
//   byte = round(255 · clamp((v − lo) / (hi − lo), 0, 1))
// with value_range{lo, hi}; the default {−1, 1} is the diffusion convention (−1 → 0, 0 → 128,
// 1 → 255); value_range::unit() is {0, 1}; value_range::of(view) spans the data's min and max.
// Values outside [lo, hi] are clamped. A NaN or ±inf anywhere is an error naming its index,
// never a silently black pixel:
//   "save_png: pixel value NaN at index [0, 2, 3] of an image of shape [3, 4, 5]; ..."
//
// File format written: signature, IHDR (bit depth 8, colour type 0/2/6, no interlace), IDAT
// chunks holding one zlib stream, IEND. Each row gets the PNG filter (None/Sub/Up/Average/Paeth)
// with the smallest sum of |residual|; png_compression::fast deflates with fixed Huffman codes
// and LZ77, png_compression::none writes stored (uncompressed) deflate blocks.
// The reader checks the signature and every chunk CRC, inflates stored, fixed and dynamic
// Huffman blocks, and undoes all five filters. It supports bit depth 8 with colour types 0, 2, 4
// and 6 without interlacing; palette, 16-bit, sub-byte and Adam7 images are refused with an error.

#include <diffuse/core/error.hpp>
#include <diffuse/core/memory_space.hpp>
#include <diffuse/core/shape.hpp>
#include <diffuse/core/tensor.hpp>
#include <diffuse/io/detail/file.hpp>
#include <diffuse/io/detail/zlib.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <sstream>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace diffuse::io {

/// How PNG pixel data is deflated.
enum class png_compression {
    none,  ///< stored deflate blocks: fastest, largest (3·W·H bytes for RGB)
    fast,  ///< fixed-Huffman deflate with greedy LZ77 (falls back to stored if that is smaller)
};

/// An 8-bit image with interleaved pixels.
struct png_image {
    std::int64_t width = 0;
    std::int64_t height = 0;
    int channels = 0;                  ///< 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA
    std::vector<std::uint8_t> pixels;  ///< [H, W, C], row-major
};

/// The interval [lo, hi] mapped linearly onto bytes [0, 255] (values outside are clamped).
struct value_range {
    double lo = -1.0;
    double hi = 1.0;

    /// [0, 1] (images stored as probabilities / intensities).
    static value_range unit() { return {0.0, 1.0}; }
    /// [-1, 1] (the diffusion data convention; the default).
    static value_range symmetric() { return {-1.0, 1.0}; }
    /// [min, max] of the finite values of a host tensor (a constant image maps to mid gray).
    template <class T>
    static value_range of(tensor_view<T, host_space> v) {
        double lo = std::numeric_limits<double>::infinity(), hi = -lo;
        for (std::int64_t i = 0; i < v.numel(); ++i) {
            const double x = static_cast<double>(v[i]);
            if (std::isfinite(x)) lo = std::min(lo, x), hi = std::max(hi, x);
        }
        if (!(lo < hi)) {
            const double c = lo <= hi ? lo : 0.0;
            return {c - 0.5, c + 0.5};
        }
        return {lo, hi};
    }
};

/// Layout of make_grid / save_png_grid (torchvision.utils.make_grid's conventions).
struct grid_options {
    int columns = 8;                ///< images per grid row (fewer when the batch is smaller)
    int padding = 2;                ///< pixels between images and around the border
    std::uint8_t pad_value = 255;   ///< byte value of the padding, in every channel (white)
};

namespace detail {

inline constexpr std::uint8_t png_signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};

inline void put_u32(std::string& out, std::uint32_t v) {
    for (int s = 24; s >= 0; s -= 8) out += static_cast<char>((v >> s) & 0xFFu);
}

inline std::uint32_t get_u32(const std::uint8_t* p) {
    return (std::uint32_t(p[0]) << 24) | (std::uint32_t(p[1]) << 16) | (std::uint32_t(p[2]) << 8) | p[3];
}

inline void put_chunk(std::string& out, const char type[4], std::string_view data) {
    put_u32(out, static_cast<std::uint32_t>(data.size()));
    const std::size_t start = out.size();
    out.append(type, 4);
    out.append(data);
    put_u32(out, crc32(std::string_view(out).substr(start)));
}

inline int paeth(int a, int b, int c) {
    const int p = a + b - c, pa = std::abs(p - a), pb = std::abs(p - b), pc = std::abs(p - c);
    if (pa <= pb && pa <= pc) return a;
    return pb <= pc ? b : c;
}

/// Filters one row: out = filtered bytes of `row` for filter `type`, `prev` the row above (or zeros).
inline void filter_row(int type, const std::uint8_t* row, const std::uint8_t* prev, std::size_t n, int bpp,
                       std::uint8_t* out) {
    for (std::size_t i = 0; i < n; ++i) {
        const int a = i >= static_cast<std::size_t>(bpp) ? row[i - static_cast<std::size_t>(bpp)] : 0;
        const int b = prev[i];
        const int c = i >= static_cast<std::size_t>(bpp) ? prev[i - static_cast<std::size_t>(bpp)] : 0;
        int pred = 0;
        switch (type) {
            case 1: pred = a; break;
            case 2: pred = b; break;
            case 3: pred = (a + b) / 2; break;
            case 4: pred = paeth(a, b, c); break;
            default: pred = 0; break;
        }
        out[i] = static_cast<std::uint8_t>(row[i] - pred);
    }
}

inline void check_image(const png_image& img, const char* who) {
    require(img.channels >= 1 && img.channels <= 4, "png_image.channels", img.channels,
            "1 (gray), 2 (gray+alpha), 3 (RGB) or 4 (RGBA)");
    require(img.width >= 1 && img.width <= 0x7FFFFFFF, "png_image.width", img.width, "in [1, 2^31 - 1]");
    require(img.height >= 1 && img.height <= 0x7FFFFFFF, "png_image.height", img.height, "in [1, 2^31 - 1]");
    const auto need = static_cast<std::size_t>(img.width * img.height * img.channels);
    if (img.pixels.size() != need)
        fail(std::string(who) + ": png_image has " + std::to_string(img.pixels.size()) + " pixel bytes; expected " +
             "height·width·channels = " + std::to_string(need));
}

template <class T>
std::uint8_t to_byte(T v, double lo, double inv_span) {
    if constexpr (std::is_same_v<T, std::uint8_t>) {
        (void)lo, (void)inv_span;
        return v;
    } else {
        double t = (static_cast<double>(v) - lo) * inv_span;
        t = t < 0.0 ? 0.0 : (t > 1.0 ? 1.0 : t);
        return static_cast<std::uint8_t>(std::lround(t * 255.0));
    }
}

inline std::string index_string(const diffuse::shape& s, std::int64_t flat) {
    std::string idx;
    for (int k = s.rank() - 1; k >= 0; --k) {
        const std::int64_t i = s[k] ? flat % s[k] : 0;
        flat = s[k] ? flat / s[k] : 0;
        idx = std::to_string(i) + (idx.empty() ? "" : ", ") + idx;
    }
    return "[" + idx + "]";
}

/// Throws unless every element is finite, naming the first bad one by its multi-index.
template <class T>
void require_finite_pixels(tensor_view<T, host_space> v, const std::string& who) {
    if constexpr (std::is_floating_point_v<std::remove_const_t<T>>) {
        for (std::int64_t i = 0; i < v.numel(); ++i) {
            const auto x = v[i];
            if (!std::isfinite(x)) {
                const std::string what = std::isnan(x) ? "NaN" : (x > 0 ? "+inf" : "-inf");
                fail(who + ": pixel value " + what + " at index " + index_string(v.shape(), i) + " of an image of shape " +
                     v.shape().str() + "; expected finite values (check the sampler output)");
            }
        }
    } else {
        (void)v, (void)who;
    }
}

template <class T>
void check_pixel_type() {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double> || std::is_same_v<T, std::uint8_t>,
                  "PNG images are float, double or uint8_t tensors");
}

inline void check_range(const value_range& r) {
    if (!(std::isfinite(r.lo) && std::isfinite(r.hi) && r.lo < r.hi)) {
        std::ostringstream os;
        os.precision(17);
        os << "value_range = [" << r.lo << ", " << r.hi << "]; expected finite lo < hi";
        fail(os.str());
    }
}

/// Number of channels of an image tensor [H, W] or [C, H, W] (C in {1, 3, 4}), or throws.
inline int image_channels(const diffuse::shape& s, const std::string& who) {
    const std::string expected =
        "; expected [H, W] or [C, H, W] with C = 1 (gray), 3 (RGB) or 4 (RGBA), H and W >= 1";
    if (s.rank() == 2 && s[0] >= 1 && s[1] >= 1) return 1;
    if (s.rank() == 3 && (s[0] == 1 || s[0] == 3 || s[0] == 4) && s[1] >= 1 && s[2] >= 1)
        return static_cast<int>(s[0]);
    if (s.rank() == 3 && !(s[0] == 1 || s[0] == 3 || s[0] == 4))
        fail(who + ": image of shape " + s.str() + " has " + std::to_string(s[0]) + " channels" + expected);
    fail(who + ": image of shape " + s.str() + expected);
}

}  // namespace detail

/// Encodes an image as PNG bytes.
inline std::string encode_png(const png_image& img, png_compression compression = png_compression::fast) {
    detail::check_image(img, "encode_png");
    static constexpr std::uint8_t color_type[5] = {0, 0, 4, 2, 6};
    const auto w = static_cast<std::size_t>(img.width), h = static_cast<std::size_t>(img.height);
    const int bpp = img.channels;
    const std::size_t stride = w * static_cast<std::size_t>(bpp);

    // Raw scanlines: one filter byte, then the filtered row.
    std::vector<std::uint8_t> raw(h * (stride + 1));
    std::vector<std::uint8_t> zeros(stride, 0), trial(stride);
    for (std::size_t y = 0; y < h; ++y) {
        const std::uint8_t* row = img.pixels.data() + y * stride;
        const std::uint8_t* prev = y ? row - stride : zeros.data();
        std::uint8_t* out = raw.data() + y * (stride + 1);
        int best = 0;
        if (compression != png_compression::none) {
            std::uint64_t best_cost = std::numeric_limits<std::uint64_t>::max();
            for (int type = 0; type < 5; ++type) {
                detail::filter_row(type, row, prev, stride, bpp, trial.data());
                std::uint64_t cost = 0;
                for (std::uint8_t b : trial) cost += static_cast<std::uint64_t>(std::abs(static_cast<std::int8_t>(b)));
                if (cost < best_cost) best_cost = cost, best = type;
            }
        }
        out[0] = static_cast<std::uint8_t>(best);
        detail::filter_row(best, row, prev, stride, bpp, out + 1);
    }
    const std::string z = detail::zlib_compress(raw.data(), raw.size(),
                                                compression == png_compression::none ? detail::deflate_mode::stored
                                                                                     : detail::deflate_mode::fast);
    std::string out(reinterpret_cast<const char*>(detail::png_signature), 8);
    std::string ihdr;
    detail::put_u32(ihdr, static_cast<std::uint32_t>(img.width));
    detail::put_u32(ihdr, static_cast<std::uint32_t>(img.height));
    ihdr += static_cast<char>(8);                      // bit depth
    ihdr += static_cast<char>(color_type[img.channels]);
    ihdr += '\0';                                      // compression: deflate
    ihdr += '\0';                                      // filter method 0
    ihdr += '\0';                                      // no interlace
    detail::put_chunk(out, "IHDR", ihdr);
    constexpr std::size_t idat_max = std::size_t(1) << 20;
    for (std::size_t pos = 0; pos < z.size(); pos += idat_max)
        detail::put_chunk(out, "IDAT", std::string_view(z).substr(pos, idat_max));
    detail::put_chunk(out, "IEND", {});
    return out;
}

/// Decodes PNG bytes (8-bit, colour types 0, 2, 4, 6, not interlaced); `source` names them in errors.
inline png_image decode_png(std::string_view bytes, const std::string& source = "png bytes") {
    const auto* p = reinterpret_cast<const std::uint8_t*>(bytes.data());
    const std::size_t n = bytes.size();
    if (n < 8 || !std::equal(p, p + 8, detail::png_signature))
        fail(source + ": not a PNG file (bad signature)");
    png_image img;
    std::string idat;
    std::size_t pos = 8;
    bool seen_ihdr = false, seen_iend = false;
    while (pos < n && !seen_iend) {
        if (n - pos < 12) fail(source + ": truncated inside a chunk header");
        const std::uint32_t len = detail::get_u32(p + pos);
        const std::string type(bytes.substr(pos + 4, 4));
        if (len > 0x7FFFFFFFu || n - pos - 12 < len)
            fail(source + ": truncated: chunk '" + type + "' of " + std::to_string(len) + " bytes does not fit");
        const std::uint8_t* data = p + pos + 8;
        if (crc32(p + pos + 4, len + 4) != detail::get_u32(data + len))
            fail(source + ": CRC mismatch in chunk '" + type + "' (corrupt file)");
        if (!seen_ihdr && type != "IHDR") fail(source + ": first chunk is '" + type + "'; expected IHDR");
        if (type == "IHDR") {
            if (seen_ihdr || len != 13) fail(source + ": bad IHDR chunk");
            seen_ihdr = true;
            img.width = detail::get_u32(data);
            img.height = detail::get_u32(data + 4);
            const int depth = data[8], ctype = data[9];
            if (img.width < 1 || img.height < 1 || img.width > 0x7FFFFFFF || img.height > 0x7FFFFFFF)
                fail(source + ": bad image size " + std::to_string(img.width) + "x" + std::to_string(img.height));
            if (ctype == 3) fail(source + ": palette (colour type 3) PNGs are not supported");
            if (ctype != 0 && ctype != 2 && ctype != 4 && ctype != 6)
                fail(source + ": invalid colour type " + std::to_string(ctype));
            if (depth != 8)
                fail(source + ": bit depth " + std::to_string(depth) + " is not supported; expected 8");
            if (data[10] != 0 || data[11] != 0) fail(source + ": unknown compression or filter method");
            if (data[12] != 0) fail(source + ": interlaced (Adam7) PNGs are not supported");
            img.channels = ctype == 0 ? 1 : ctype == 4 ? 2 : ctype == 2 ? 3 : 4;
        } else if (type == "IDAT") {
            idat.append(reinterpret_cast<const char*>(data), len);
        } else if (type == "IEND") {
            seen_iend = true;
        } else if (type == "PLTE") {
            // allowed (a suggested palette) for truecolour images; ignored
        } else if (type[0] >= 'A' && type[0] <= 'Z') {
            fail(source + ": unknown critical chunk '" + type + "'");
        }  // ancillary chunks (tEXt, gAMA, pHYs, ...) are skipped
        pos += 12 + len;
    }
    if (!seen_iend) fail(source + ": truncated (no IEND chunk)");
    if (idat.empty()) fail(source + ": no IDAT chunk");

    const auto w = static_cast<std::size_t>(img.width), h = static_cast<std::size_t>(img.height);
    const auto bpp = static_cast<std::size_t>(img.channels);
    if (w * bpp + 1 > (std::size_t(1) << 40) / h)
        fail(source + ": image of " + std::to_string(w) + "x" + std::to_string(h) + " pixels is too large");
    const std::size_t stride = w * bpp;
    const std::size_t expected = h * (stride + 1);
    const std::vector<std::uint8_t> raw = detail::zlib_decompress(idat, expected, source);
    if (raw.size() != expected)
        fail(source + ": image data is " + std::to_string(raw.size()) + " bytes after decompression; expected " +
             std::to_string(expected) + " for " + std::to_string(w) + "x" + std::to_string(h) + "x" +
             std::to_string(bpp));
    img.pixels.resize(h * stride);
    for (std::size_t y = 0; y < h; ++y) {
        const std::uint8_t type = raw[y * (stride + 1)];
        const std::uint8_t* in = raw.data() + y * (stride + 1) + 1;
        std::uint8_t* row = img.pixels.data() + y * stride;
        const std::uint8_t* prev = y ? row - stride : nullptr;
        if (type > 4) fail(source + ": bad filter type " + std::to_string(type) + " on row " + std::to_string(y));
        for (std::size_t i = 0; i < stride; ++i) {
            const int a = i >= bpp ? row[i - bpp] : 0;
            const int b = prev ? prev[i] : 0;
            const int c = (prev && i >= bpp) ? prev[i - bpp] : 0;
            int pred = 0;
            switch (type) {
                case 1: pred = a; break;
                case 2: pred = b; break;
                case 3: pred = (a + b) / 2; break;
                case 4: pred = detail::paeth(a, b, c); break;
                default: pred = 0; break;
            }
            row[i] = static_cast<std::uint8_t>(in[i] + pred);
        }
    }
    return img;
}

/// Writes a png_image to `path`.
inline void write_png(const std::string& path, const png_image& img,
                      png_compression compression = png_compression::fast) {
    const std::string bytes = encode_png(img, compression);
    detail::write_file_bytes(path, bytes.data(), bytes.size(), "png file");
}

/// Reads a PNG file (see decode_png for what is supported).
inline png_image read_png(const std::string& path) {
    return decode_png(detail::read_file_bytes(path, "png file"), "png file '" + path + "'");
}

/// Reads a PNG file as a tensor [C, H, W] of bytes (C = 1, 2, 3 or 4).
inline tensor<std::uint8_t, host_space> load_png(const std::string& path) {
    const png_image img = read_png(path);
    const std::int64_t c = img.channels;
    tensor<std::uint8_t, host_space> t(diffuse::shape{c, img.height, img.width});
    const std::int64_t hw = img.height * img.width;
    for (std::int64_t i = 0; i < hw; ++i)
        for (std::int64_t k = 0; k < c; ++k) t[k * hw + i] = img.pixels[static_cast<std::size_t>(i * c + k)];
    return t;
}

/// An image tensor [H, W] or [C, H, W] (C = 1, 3, 4) as interleaved bytes, mapping values with
/// `range` (ignored for uint8_t). Throws for a bad shape or any NaN/inf.
template <class T>
png_image to_png_image(tensor_view<T, host_space> image, value_range range = {}) {
    using V = std::remove_const_t<T>;
    detail::check_pixel_type<V>();
    const int c = detail::image_channels(image.shape(), "save_png");
    detail::check_range(range);
    detail::require_finite_pixels(image, "save_png");
    png_image img;
    img.channels = c;
    img.height = image.size(image.rank() - 2);
    img.width = image.size(image.rank() - 1);
    const std::int64_t hw = img.height * img.width;
    img.pixels.resize(static_cast<std::size_t>(hw * c));
    const double inv_span = 1.0 / (range.hi - range.lo);
    for (std::int64_t k = 0; k < c; ++k)
        for (std::int64_t i = 0; i < hw; ++i)
            img.pixels[static_cast<std::size_t>(i * c + k)] = detail::to_byte<V>(image[k * hw + i], range.lo, inv_span);
    return img;
}

/// Saves an image tensor [H, W] or [C, H, W] (C = 1 gray, 3 RGB, 4 RGBA) of float, double or
/// uint8_t as an 8-bit PNG; float values map through `range` (default [-1, 1] -> [0, 255]).
template <class T>
void save_png(const std::string& path, tensor_view<T, host_space> image, value_range range = {},
              png_compression compression = png_compression::fast) {
    write_png(path, to_png_image(image, range), compression);
}
template <class T>
void save_png(const std::string& path, const tensor<T, host_space>& image, value_range range = {},
              png_compression compression = png_compression::fast) {
    save_png(path, image.cview(), range, compression);
}

/// Tiles a batch [B, C, H, W] (C = 1, 3, 4) into one image [C, rows·(H+p)+p, cols·(W+p)+p] of
/// bytes, with cols = min(B, columns), rows = ceil(B / cols), p = padding filled with pad_value;
/// image b sits at grid row b / cols, column b % cols. Values map through `range`.
template <class T>
tensor<std::uint8_t, host_space> make_grid(tensor_view<T, host_space> batch, value_range range = {},
                                           grid_options options = {}) {
    using V = std::remove_const_t<T>;
    detail::check_pixel_type<V>();
    const diffuse::shape& s = batch.shape();
    if (!(s.rank() == 4 && s[0] >= 1 && (s[1] == 1 || s[1] == 3 || s[1] == 4) && s[2] >= 1 && s[3] >= 1))
        fail("make_grid: batch of shape " + s.str() +
             "; expected [B, C, H, W] with B >= 1, C = 1 (gray), 3 (RGB) or 4 (RGBA), H and W >= 1");
    require(options.columns >= 1, "grid_options.columns", options.columns, "an integer >= 1");
    require(options.padding >= 0, "grid_options.padding", options.padding, "an integer >= 0");
    detail::check_range(range);
    detail::require_finite_pixels(batch, "make_grid");
    const std::int64_t B = s[0], C = s[1], H = s[2], W = s[3], p = options.padding;
    const std::int64_t cols = std::min<std::int64_t>(B, options.columns), rows = (B + cols - 1) / cols;
    const std::int64_t GH = rows * (H + p) + p, GW = cols * (W + p) + p;
    tensor<std::uint8_t, host_space> grid(diffuse::shape{C, GH, GW}, options.pad_value);
    const double inv_span = 1.0 / (range.hi - range.lo);
    for (std::int64_t b = 0; b < B; ++b) {
        const std::int64_t y0 = p + (b / cols) * (H + p), x0 = p + (b % cols) * (W + p);
        for (std::int64_t c = 0; c < C; ++c)
            for (std::int64_t y = 0; y < H; ++y)
                for (std::int64_t x = 0; x < W; ++x)
                    grid(c, y0 + y, x0 + x) = detail::to_byte<V>(batch(b, c, y, x), range.lo, inv_span);
    }
    return grid;
}
template <class T>
tensor<std::uint8_t, host_space> make_grid(const tensor<T, host_space>& batch, value_range range = {},
                                           grid_options options = {}) {
    return make_grid(batch.cview(), range, options);
}

/// Saves a batch [B, C, H, W] as one PNG grid (make_grid, then save_png).
template <class T>
void save_png_grid(const std::string& path, tensor_view<T, host_space> batch, value_range range = {},
                   grid_options options = {}, png_compression compression = png_compression::fast) {
    const auto grid = make_grid(batch, range, options);
    save_png(path, grid.cview(), value_range{}, compression);
}
template <class T>
void save_png_grid(const std::string& path, const tensor<T, host_space>& batch, value_range range = {},
                   grid_options options = {}, png_compression compression = png_compression::fast) {
    save_png_grid(path, batch.cview(), range, options, compression);
}

}  // namespace diffuse::io
