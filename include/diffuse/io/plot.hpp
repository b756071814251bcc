#pragma once
// A small line-plot rasteriser so that examples can write a figure as a PNG without Python.
//
//   line_plot(series, options) -> tensor<uint8_t, host_space> [3, H, W] (RGB bytes; save with save_png)
//   save_line_plot(path, series, options)
//
// A plot has several series (x, y, colour, label, line thickness, optional square markers),
// linear or logarithmic (base 10) x and y axes with tick marks, numeric tick labels and light
// grid lines, axis labels, a title and a legend (top right, for series with a label). Axis limits
// are the data range plus 5 % (of the span, or of the decades on a log axis) unless given.
// Text uses a built-in 5×7 bitmap font (detail/font5x7.hpp, ASCII 32–126; other characters
// print as '?'); there is no antialiasing. Everything is clipped to the image, so nothing is
// ever written out of bounds.
//
// Errors (diffuse::error): no series, x and y of different lengths or empty, NaN/inf data, a
// value <= 0 on a log axis ("line_plot: series 0 ('ddim') has y[3] = -0.5; a logarithmic y
// axis needs values > 0"), limits with lo >= hi, or an image too small for its margins.
//
// The pieces are public for tests and custom figures: `canvas` (pixels, lines, text),
// `plot_axis` (data -> pixel mapping and ticks) and `layout_plot` (the axes line_plot will use).

#include <diffuse/core/error.hpp>
#include <diffuse/core/memory_space.hpp>
#include <diffuse/core/shape.hpp>
#include <diffuse/core/tensor.hpp>
#include <diffuse/io/detail/font5x7.hpp>
#include <diffuse/io/png.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

namespace diffuse::io {

/// An 8-bit RGB colour.
struct rgb {
    std::uint8_t r = 0;
    std::uint8_t g = 0;
    std::uint8_t b = 0;
    friend bool operator==(const rgb&, const rgb&) = default;
};

namespace colors {
inline constexpr rgb black{0, 0, 0};
inline constexpr rgb white{255, 255, 255};
inline constexpr rgb gray{127, 127, 127};
inline constexpr rgb light_gray{228, 228, 228};
inline constexpr rgb blue{31, 119, 180};
inline constexpr rgb orange{255, 127, 14};
inline constexpr rgb green{44, 160, 44};
inline constexpr rgb red{214, 39, 40};
inline constexpr rgb purple{148, 103, 189};
inline constexpr rgb brown{140, 86, 75};
inline constexpr rgb pink{227, 119, 194};
inline constexpr rgb olive{188, 189, 34};
inline constexpr rgb cyan{23, 190, 207};
}  // namespace colors

/// The i-th colour of the default cycle (matplotlib's "tab10" order).
inline rgb cycle_color(std::size_t i) {
    static constexpr rgb cycle[10] = {colors::blue,  colors::orange, colors::green, colors::red,   colors::purple,
                                      colors::brown, colors::pink,   colors::gray,  colors::olive, colors::cyan};
    return cycle[i % 10];
}

/// An RGB raster [3, H, W] with clipped drawing primitives. Coordinates: x right, y down, (0, 0)
/// the top-left pixel; anything outside the image is silently clipped.
class canvas {
public:
    static constexpr int char_advance = detail::glyph_width + 1;  ///< pixels per character at scale 1

    canvas(int width, int height, rgb background = colors::white) : w_(width), h_(height) {
        require(width >= 1, "canvas width", width, "an integer >= 1");
        require(height >= 1, "canvas height", height, "an integer >= 1");
        px_ = tensor<std::uint8_t, host_space>(diffuse::shape{3, height, width});
        fill_rect(0, 0, width - 1, height - 1, background);
    }

    int width() const { return w_; }
    int height() const { return h_; }
    bool contains(int x, int y) const { return x >= 0 && y >= 0 && x < w_ && y < h_; }

    void set(int x, int y, rgb c) {
        if (!contains(x, y)) return;
        const std::int64_t plane = std::int64_t(w_) * h_, i = std::int64_t(y) * w_ + x;
        px_[i] = c.r;
        px_[plane + i] = c.g;
        px_[2 * plane + i] = c.b;
    }

    /// The colour at (x, y), which must lie inside the image.
    rgb get(int x, int y) const {
        require(contains(x, y), "pixel", "(" + std::to_string(x) + ", " + std::to_string(y) + ")",
                "inside the " + std::to_string(w_) + "x" + std::to_string(h_) + " canvas");
        const std::int64_t plane = std::int64_t(w_) * h_, i = std::int64_t(y) * w_ + x;
        return {px_[i], px_[plane + i], px_[2 * plane + i]};
    }

    /// Copies an RGB image [3, H, W] (line_plot's output, say) with its top-left corner at (x0, y0),
    /// clipped to the canvas: panels of a figure.
    void draw_image(const tensor<std::uint8_t, host_space>& img, int x0, int y0) {
        require(img.rank() == 3 && img.size(0) == 3, "draw_image: img.shape()", img.shape().str(), "[3, H, W]");
        const std::int64_t h = img.size(1), w = img.size(2), plane = h * w;
        for (std::int64_t y = 0; y < h; ++y)
            for (std::int64_t x = 0; x < w; ++x)
                set(x0 + static_cast<int>(x), y0 + static_cast<int>(y),
                    rgb{img[y * w + x], img[plane + y * w + x], img[2 * plane + y * w + x]});
    }

    /// Fills the rectangle with corners (x0, y0) and (x1, y1), both inclusive.
    void fill_rect(int x0, int y0, int x1, int y1, rgb c) {
        if (x0 > x1) std::swap(x0, x1);
        if (y0 > y1) std::swap(y0, y1);
        x0 = std::max(x0, 0), y0 = std::max(y0, 0), x1 = std::min(x1, w_ - 1), y1 = std::min(y1, h_ - 1);
        for (int y = y0; y <= y1; ++y)
            for (int x = x0; x <= x1; ++x) set(x, y, c);
    }

    /// The outline of the rectangle with inclusive corners (x0, y0), (x1, y1).
    void rect(int x0, int y0, int x1, int y1, rgb c) {
        fill_rect(x0, y0, x1, y0, c);
        fill_rect(x0, y1, x1, y1, c);
        fill_rect(x0, y0, x0, y1, c);
        fill_rect(x1, y0, x1, y1, c);
    }

    /// A straight line between pixel-centre coordinates, `thickness` pixels wide (a square pen),
    /// drawn only inside the inclusive box [bx0, bx1] × [by0, by1] (the whole canvas by default).
    void line(double x0, double y0, double x1, double y1, rgb c, int thickness = 1) {
        line_in(x0, y0, x1, y1, c, thickness, 0, 0, w_ - 1, h_ - 1);
    }
    void line_in(double x0, double y0, double x1, double y1, rgb c, int thickness, int bx0, int by0, int bx1,
                 int by1) {
        if (!(std::isfinite(x0) && std::isfinite(y0) && std::isfinite(x1) && std::isfinite(y1))) return;
        // Liang–Barsky clipping against the box (grown by half a pixel), so huge coordinates cost nothing.
        double t0 = 0.0, t1 = 1.0;
        const double dx = x1 - x0, dy = y1 - y0;
        const double p[4] = {-dx, dx, -dy, dy};
        const double q[4] = {x0 - (bx0 - 0.5), (bx1 + 0.5) - x0, y0 - (by0 - 0.5), (by1 + 0.5) - y0};
        for (int k = 0; k < 4; ++k) {
            if (p[k] == 0.0) {
                if (q[k] < 0.0) return;
            } else {
                const double r = q[k] / p[k];
                if (p[k] < 0.0) t0 = std::max(t0, r);
                else t1 = std::min(t1, r);
            }
        }
        if (t0 > t1) return;
        const double ax = x0 + t0 * dx, ay = y0 + t0 * dy, cx = x0 + t1 * dx, cy = y0 + t1 * dy;
        const int steps = static_cast<int>(std::ceil(std::max(std::abs(cx - ax), std::abs(cy - ay))));
        const int lo = -(thickness - 1) / 2, hi = thickness / 2;
        for (int s = 0; s <= steps; ++s) {
            const double t = steps ? double(s) / steps : 0.0;
            const int px = static_cast<int>(std::lround(ax + t * (cx - ax)));
            const int py = static_cast<int>(std::lround(ay + t * (cy - ay)));
            for (int oy = lo; oy <= hi; ++oy)
                for (int ox = lo; ox <= hi; ++ox) {
                    const int qx = px + ox, qy = py + oy;
                    if (qx >= bx0 && qx <= bx1 && qy >= by0 && qy <= by1) set(qx, qy, c);
                }
        }
    }

    /// Width in pixels of `s` at `scale` (characters are 5 wide with 1 pixel between them).
    static int text_width(std::string_view s, int scale = 1) {
        return s.empty() ? 0 : (char_advance * static_cast<int>(s.size()) - 1) * scale;
    }
    static int text_height(int scale = 1) { return detail::glyph_height * scale; }

    /// Draws `s` left to right with its top-left corner at (x, y); each font pixel is scale×scale.
    void text(int x, int y, std::string_view s, rgb c, int scale = 1) {
        for (std::size_t i = 0; i < s.size(); ++i) {
            const auto& g = detail::glyph(s[i]);
            const int gx0 = x + static_cast<int>(i) * char_advance * scale;
            for (int col = 0; col < detail::glyph_width; ++col)
                for (int row = 0; row < detail::glyph_height; ++row)
                    if ((g[static_cast<std::size_t>(col)] >> row) & 1u)
                        fill_rect(gx0 + col * scale, y + row * scale, gx0 + col * scale + scale - 1,
                                  y + row * scale + scale - 1, c);
        }
    }

    /// Draws `s` rotated 90° counter-clockwise (reading bottom to top): the text starts at row y,
    /// runs up to row y − text_width(s, scale) + 1 and occupies columns x .. x + 7·scale − 1.
    void text_up(int x, int y, std::string_view s, rgb c, int scale = 1) {
        for (std::size_t i = 0; i < s.size(); ++i) {
            const auto& g = detail::glyph(s[i]);
            const int u0 = static_cast<int>(i) * char_advance * scale;
            for (int col = 0; col < detail::glyph_width; ++col)
                for (int row = 0; row < detail::glyph_height; ++row)
                    if ((g[static_cast<std::size_t>(col)] >> row) & 1u) {
                        const int u = u0 + col * scale, v = row * scale;
                        fill_rect(x + v, y - u - scale + 1, x + v + scale - 1, y - u, c);
                    }
        }
    }

    const tensor<std::uint8_t, host_space>& image() const { return px_; }
    tensor<std::uint8_t, host_space> release() { return std::move(px_); }

private:
    int w_;
    int h_;
    tensor<std::uint8_t, host_space> px_;  // [3, H, W]
};

enum class axis_scale { linear, log };

/// One axis: data limits [lo, hi], a linear or log10 scale, and the pixel coordinates of lo and
/// hi (for a y axis pixel_lo is the bottom row, so pixel_lo > pixel_hi).
struct plot_axis {
    double lo = 0.0;
    double hi = 1.0;
    axis_scale scale = axis_scale::linear;
    double pixel_lo = 0.0;
    double pixel_hi = 1.0;

    /// The pixel coordinate of data value v: linear interpolation in v (or log10 v).
    double to_pixel(double v) const {
        const double u = transform(v), ulo = transform(lo), uhi = transform(hi);
        return pixel_lo + (u - ulo) / (uhi - ulo) * (pixel_hi - pixel_lo);
    }
    double transform(double v) const { return scale == axis_scale::log ? std::log10(v) : v; }

    /// Tick positions in [lo, hi]: multiples of 1, 2 or 5 × 10^k (about 4 to 10 of them) on a
    /// linear axis; powers of 10 (with 2× and 5× when under two decades) on a log axis.
    std::vector<double> ticks() const {
        std::vector<double> t;
        if (scale == axis_scale::log) {
            const double d0 = std::ceil(std::log10(lo) - 1e-9), d1 = std::floor(std::log10(hi) + 1e-9);
            const int n = static_cast<int>(d1 - d0) + 1;
            if (n >= 2) {
                const int every = (n + 7) / 8;  // at most 8 labelled decades
                for (double d = d0; d <= d1; d += every) t.push_back(std::pow(10.0, d));
                return t;
            }
            for (double d = std::floor(std::log10(lo)) ; d <= std::ceil(std::log10(hi)); d += 1)
                for (double m : {1.0, 2.0, 5.0}) {
                    const double v = m * std::pow(10.0, d);
                    if (v >= lo * (1 - 1e-12) && v <= hi * (1 + 1e-12)) t.push_back(v);
                }
            if (t.size() >= 2) return t;
            t.clear();
        }
        const double step = tick_step();
        const double first = std::ceil(lo / step - 1e-9);
        for (double k = first; k * step <= hi + 1e-9 * step; k += 1) {
            const double v = k * step;
            t.push_back(std::abs(v) < 1e-9 * step ? 0.0 : v);
        }
        return t;
    }

    /// The spacing of linear ticks: 1, 2 or 5 × 10^k, near (hi − lo) / 6.
    double tick_step() const {
        const double raw = (hi - lo) / 6.0;
        const double mag = std::pow(10.0, std::floor(std::log10(raw)));
        const double norm = raw / mag;
        return (norm < 1.5 ? 1.0 : norm < 3.5 ? 2.0 : norm < 7.5 ? 5.0 : 10.0) * mag;
    }

    /// The label of a tick value: fixed decimals matching the step on a linear axis (scientific
    /// for very large or small values); "1e-5", "0.01", "1", "100", "1e6" style on a log axis.
    std::string label(double v) const {
        char buf[64];
        if (scale == axis_scale::log) {
            const double e = std::round(std::log10(v));
            if (std::abs(v - std::pow(10.0, e)) <= 1e-9 * v && std::abs(e) >= 4)
                std::snprintf(buf, sizeof buf, "1e%d", static_cast<int>(e));
            else
                std::snprintf(buf, sizeof buf, "%g", v);
            return buf;
        }
        const double step = tick_step();
        const double big = std::max(std::abs(lo), std::abs(hi));
        if (big >= 1e6 || step < 1e-4) {
            std::snprintf(buf, sizeof buf, "%.3g", v);
        } else {
            const int decimals = std::max(0, -static_cast<int>(std::floor(std::log10(step) + 1e-9)));
            std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
        }
        return buf;
    }
};

/// One line of a plot.
struct series {
    std::vector<double> x{};
    std::vector<double> y{};
    std::string label{};          ///< legend text; empty = not in the legend
    std::optional<rgb> color{};   ///< default: cycle_color(index of the series)
    int thickness = 2;          ///< pen width in pixels
    bool markers = false;       ///< also draw a marker_size × marker_size square at each point
    bool lines = true;          ///< join the points (false + markers = a scatter plot)
    int marker_size = 5;        ///< odd sizes centre exactly on the point
};

struct plot_options {
    int width = 640;
    int height = 480;
    std::string title;
    std::string x_label;
    std::string y_label;
    axis_scale x_scale = axis_scale::linear;
    axis_scale y_scale = axis_scale::linear;
    std::optional<double> x_min, x_max, y_min, y_max;  ///< fixed limits (default: data range + 5 %)
    bool legend = true;
    bool grid = true;
};

/// The axes line_plot will draw: limits, pixel mapping and the plot area's inclusive pixel box.
struct plot_frame {
    plot_axis x;
    plot_axis y;
    int left = 0, top = 0, right = 0, bottom = 0;
};

namespace detail {

inline std::string series_name(const std::vector<series>& s, std::size_t i) {
    return "series " + std::to_string(i) + (s[i].label.empty() ? "" : " ('" + s[i].label + "')");
}

inline void check_series(const std::vector<series>& all, const plot_options& o) {
    if (all.empty()) fail("line_plot: no series to plot");
    for (std::size_t i = 0; i < all.size(); ++i) {
        const series& s = all[i];
        if (s.x.size() != s.y.size())
            fail("line_plot: " + series_name(all, i) + " has " + std::to_string(s.x.size()) + " x values and " +
                 std::to_string(s.y.size()) + " y values; expected equal lengths");
        if (s.x.empty()) fail("line_plot: " + series_name(all, i) + " is empty; expected at least one point");
        require(s.thickness >= 1 && s.thickness <= 32, "series thickness", s.thickness, "in [1, 32]");
        require(s.marker_size >= 1 && s.marker_size <= 32, "series marker_size", s.marker_size, "in [1, 32]");
        for (int axis = 0; axis < 2; ++axis) {
            const auto& v = axis ? s.y : s.x;
            const char* name = axis ? "y" : "x";
            const bool log = (axis ? o.y_scale : o.x_scale) == axis_scale::log;
            for (std::size_t k = 0; k < v.size(); ++k) {
                if (!std::isfinite(v[k]))
                    fail("line_plot: " + series_name(all, i) + " has " + name + "[" + std::to_string(k) +
                         "] = " + diffuse::detail::format_value(v[k]) + "; expected finite values");
                if (log && !(v[k] > 0))
                    fail("line_plot: " + series_name(all, i) + " has " + name + "[" + std::to_string(k) +
                         "] = " + diffuse::detail::format_value(v[k]) + "; a logarithmic " + name + " axis needs values > 0");
            }
        }
    }
}

/// Data limits of one axis with a 5 % margin, or the fixed limits given.
inline std::pair<double, double> axis_limits(const std::vector<series>& all, bool is_y, axis_scale sc,
                                             std::optional<double> fixed_lo, std::optional<double> fixed_hi,
                                             const char* name) {
    double lo = std::numeric_limits<double>::infinity(), hi = -lo;
    for (const series& s : all)
        for (double v : is_y ? s.y : s.x) lo = std::min(lo, v), hi = std::max(hi, v);
    const bool log = sc == axis_scale::log;
    const auto t = [&](double v) { return log ? std::log10(v) : v; };
    const auto inv = [&](double u) { return log ? std::pow(10.0, u) : u; };
    double ulo = t(lo), uhi = t(hi);
    if (uhi - ulo <= 0) {
        const double half = log ? 0.3 : 0.5 * std::max(1.0, std::abs(ulo));
        ulo -= half, uhi += half;
    } else {
        const double pad = 0.05 * (uhi - ulo);
        ulo -= pad, uhi += pad;
    }
    double out_lo = fixed_lo ? *fixed_lo : inv(ulo), out_hi = fixed_hi ? *fixed_hi : inv(uhi);
    const std::string axis = std::string(name) + " axis";
    if (!std::isfinite(out_lo) || !std::isfinite(out_hi) || !(out_lo < out_hi) || (log && !(out_lo > 0)))
        fail("line_plot: " + axis + " limits [" + diffuse::detail::format_value(out_lo) + ", " + diffuse::detail::format_value(out_hi) +
             "]; expected finite lo < hi" + (log ? " with lo > 0 (logarithmic axis)" : ""));
    return {out_lo, out_hi};
}

}  // namespace detail

/// Computes the axes and the plot area that line_plot uses for these series and options.
inline plot_frame layout_plot(const std::vector<series>& all, const plot_options& o) {
    require(o.width >= 1, "plot_options.width", o.width, "an integer >= 1");
    require(o.height >= 1, "plot_options.height", o.height, "an integer >= 1");
    detail::check_series(all, o);
    plot_frame f;
    std::tie(f.x.lo, f.x.hi) = detail::axis_limits(all, false, o.x_scale, o.x_min, o.x_max, "x");
    std::tie(f.y.lo, f.y.hi) = detail::axis_limits(all, true, o.y_scale, o.y_min, o.y_max, "y");
    f.x.scale = o.x_scale;
    f.y.scale = o.y_scale;
    int label_w = 0;
    for (double v : f.y.ticks()) label_w = std::max(label_w, canvas::text_width(f.y.label(v)));
    const int gh = canvas::text_height();
    f.left = 8 + (o.y_label.empty() ? 0 : gh + 8) + label_w + 4 + 4;
    f.top = 10 + (o.title.empty() ? 0 : 2 * gh + 10);
    f.right = o.width - 1 - 20;
    f.bottom = o.height - 1 - (4 + 4 + gh + 8 + (o.x_label.empty() ? 0 : gh + 6));
    if (f.right - f.left < 20 || f.bottom - f.top < 20)
        fail("line_plot: plot_options.width x height = " + std::to_string(o.width) + "x" + std::to_string(o.height) +
             " leaves no room for the plot area after margins; expected at least about " +
             std::to_string(f.left + 41) + "x" + std::to_string(o.height - (f.bottom - f.top) + 21));
    f.x.pixel_lo = f.left;
    f.x.pixel_hi = f.right;
    f.y.pixel_lo = f.bottom;
    f.y.pixel_hi = f.top;
    return f;
}

/// Rasterises a line plot into an RGB tensor [3, height, width] of bytes.
inline tensor<std::uint8_t, host_space> line_plot(const std::vector<series>& all, const plot_options& o = {}) {
    const plot_frame f = layout_plot(all, o);
    canvas cv(o.width, o.height);
    const std::vector<double> xt = f.x.ticks(), yt = f.y.ticks();

    if (o.grid) {
        for (double v : xt) {
            const int px = static_cast<int>(std::lround(f.x.to_pixel(v)));
            cv.fill_rect(px, f.top, px, f.bottom, colors::light_gray);
        }
        for (double v : yt) {
            const int py = static_cast<int>(std::lround(f.y.to_pixel(v)));
            cv.fill_rect(f.left, py, f.right, py, colors::light_gray);
        }
    }

    for (std::size_t i = 0; i < all.size(); ++i) {
        const series& s = all[i];
        const rgb c = s.color ? *s.color : cycle_color(i);
        for (std::size_t k = 0; s.lines && k + 1 < s.x.size(); ++k)
            cv.line_in(f.x.to_pixel(s.x[k]), f.y.to_pixel(s.y[k]), f.x.to_pixel(s.x[k + 1]), f.y.to_pixel(s.y[k + 1]),
                       c, s.thickness, f.left, f.top, f.right, f.bottom);
        if (s.markers || s.x.size() == 1)
            for (std::size_t k = 0; k < s.x.size(); ++k) {
                const double px = f.x.to_pixel(s.x[k]), py = f.y.to_pixel(s.y[k]);
                const int lo = -(s.marker_size - 1) / 2, hi = s.marker_size / 2;
                for (int d = lo; d <= hi; ++d)
                    cv.line_in(px + lo, py + d, px + hi, py + d, c, 1, f.left, f.top, f.right, f.bottom);
            }
    }

    // frame, ticks and tick labels
    cv.rect(f.left - 1, f.top - 1, f.right + 1, f.bottom + 1, colors::black);
    const int gh = canvas::text_height();
    for (double v : xt) {
        const int px = static_cast<int>(std::lround(f.x.to_pixel(v)));
        cv.fill_rect(px, f.bottom + 2, px, f.bottom + 5, colors::black);
        const std::string l = f.x.label(v);
        cv.text(px - canvas::text_width(l) / 2, f.bottom + 8, l, colors::black);
    }
    for (double v : yt) {
        const int py = static_cast<int>(std::lround(f.y.to_pixel(v)));
        cv.fill_rect(f.left - 5, py, f.left - 2, py, colors::black);
        const std::string l = f.y.label(v);
        cv.text(f.left - 8 - canvas::text_width(l), py - gh / 2, l, colors::black);
    }

    // title and axis labels
    if (!o.title.empty())
        cv.text((f.left + f.right) / 2 - canvas::text_width(o.title, 2) / 2, 10, o.title, colors::black, 2);
    if (!o.x_label.empty())
        cv.text((f.left + f.right) / 2 - canvas::text_width(o.x_label) / 2, f.bottom + 8 + gh + 6, o.x_label,
                colors::black);
    if (!o.y_label.empty())
        cv.text_up(8, (f.top + f.bottom) / 2 + canvas::text_width(o.y_label) / 2, o.y_label, colors::black);

    // legend, top right inside the plot area
    std::vector<std::size_t> entries;
    int text_w = 0;
    for (std::size_t i = 0; i < all.size(); ++i)
        if (!all[i].label.empty()) entries.push_back(i), text_w = std::max(text_w, canvas::text_width(all[i].label));
    if (o.legend && !entries.empty()) {
        const int row_h = 12, box_w = 8 + 20 + 6 + text_w + 8, box_h = 6 + row_h * static_cast<int>(entries.size());
        const int x0 = f.right - 8 - box_w, y0 = f.top + 8;
        cv.fill_rect(x0, y0, x0 + box_w, y0 + box_h, colors::white);
        cv.rect(x0, y0, x0 + box_w, y0 + box_h, colors::gray);
        for (std::size_t e = 0; e < entries.size(); ++e) {
            const series& s = all[entries[e]];
            const rgb c = s.color ? *s.color : cycle_color(entries[e]);
            const int cy = y0 + 6 + row_h * static_cast<int>(e) + gh / 2;
            cv.line(x0 + 8, cy, x0 + 28, cy, c, s.thickness);
            cv.text(x0 + 34, cy - gh / 2, s.label, colors::black);
        }
    }
    return cv.release();
}

/// line_plot, saved as an RGB PNG.
inline void save_line_plot(const std::string& path, const std::vector<series>& all, const plot_options& o = {}) {
    const auto img = line_plot(all, o);
    save_png(path, img.cview());
}

}  // namespace diffuse::io
