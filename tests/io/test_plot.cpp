// Line plots: axis mapping, ticks, pixels of known lines, log-axis errors, and the bitmap font.
#include <diffuse/io/plot.hpp>

#include "support/check.hpp"
#include "support/tmp.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

using namespace diffuse;
using namespace diffuse::io;

namespace {

rgb pixel(const tensor<std::uint8_t, host_space>& img, int x, int y) {
    return {img(0, y, x), img(1, y, x), img(2, y, x)};
}

/// Whether column x has `c` within one row of y (the rasteriser rounds the exact line).
bool near(const tensor<std::uint8_t, host_space>& img, int x, double y, rgb c) {
    const int r = static_cast<int>(std::lround(y));
    for (int yy = r - 1; yy <= r + 1; ++yy)
        if (pixel(img, x, yy) == c) return true;
    return false;
}

std::string printable_ascii() {
    std::string s;
    for (int c = 32; c <= 126; ++c) s += static_cast<char>(c);
    return s;
}

}  // namespace

TEST_CASE("plot: axis mapping is linear in v or log10 v") {
    plot_axis a{0.0, 10.0, axis_scale::linear, 100.0, 300.0};
    DIFFUSE_CHECK_CLOSE(a.to_pixel(0.0), 100.0, 1e-12, 0);
    DIFFUSE_CHECK_CLOSE(a.to_pixel(10.0), 300.0, 1e-12, 0);
    DIFFUSE_CHECK_CLOSE(a.to_pixel(2.5), 150.0, 1e-12, 0);
    plot_axis y{-1.0, 1.0, axis_scale::linear, 400.0, 0.0};  // y: bottom row is pixel_lo
    DIFFUSE_CHECK_CLOSE(y.to_pixel(0.5), 100.0, 1e-12, 0);
    plot_axis l{1e-3, 1e1, axis_scale::log, 0.0, 400.0};
    DIFFUSE_CHECK_CLOSE(l.to_pixel(1e-2), 100.0, 1e-9, 0);
    DIFFUSE_CHECK_CLOSE(l.to_pixel(1.0), 300.0, 1e-9, 0);
    DIFFUSE_CHECK_CLOSE(l.to_pixel(std::sqrt(10.0)), 350.0, 1e-9, 0);
}

TEST_CASE("plot: ticks are 1-2-5 multiples on linear axes and powers of ten on log axes") {
    CHECK(plot_axis{0.0, 10.0}.ticks() == std::vector<double>{0, 2, 4, 6, 8, 10});
    CHECK(plot_axis{-1.05, 1.05}.ticks() == std::vector<double>{-1.0, -0.5, 0.0, 0.5, 1.0});
    const auto t = plot_axis{0.013, 0.047}.ticks();
    REQUIRE(t.size() == 7);
    DIFFUSE_CHECK_CLOSE(t[0], 0.015, 1e-15, 0);
    DIFFUSE_CHECK_CLOSE(t[6], 0.045, 1e-15, 0);
    CHECK(plot_axis{0.013, 0.047}.label(0.015) == "0.015");
    CHECK(plot_axis{-1.05, 1.05}.label(0.0) == "0.0");
    CHECK(plot_axis{0.0, 1e7}.label(4e6) == "4e+06");

    plot_axis lg{2e-6, 3e2, axis_scale::log};
    const auto lt = lg.ticks();
    REQUIRE(lt.size() == 8);
    for (std::size_t k = 0; k < 8; ++k) DIFFUSE_CHECK_CLOSE(lt[k], std::pow(10.0, double(k) - 5.0), 0, 4 * test::eps<double>);
    CHECK(lg.label(1e-5) == "1e-5");
    CHECK(lg.label(1e-3) == "0.001");
    CHECK(lg.label(100) == "100");
    CHECK(lg.label(1e6) == "1e6");
    plot_axis narrow{3.0, 40.0, axis_scale::log};  // under two decades: 1-2-5 ticks
    const auto nt = narrow.ticks();
    REQUIRE(nt.size() == 3);
    DIFFUSE_CHECK_CLOSE(nt[0], 5.0, 0, 4 * test::eps<double>);
    DIFFUSE_CHECK_CLOSE(nt[1], 10.0, 0, 4 * test::eps<double>);
    DIFFUSE_CHECK_CLOSE(nt[2], 20.0, 0, 4 * test::eps<double>);
    plot_axis tiny{3.0, 4.0, axis_scale::log};  // no 1-2-5 value inside: linear ticks
    CHECK(tiny.ticks().size() >= 2);
}

TEST_CASE("plot: layout uses the data range plus 5 percent, or the given limits") {
    series s;
    s.x = {0.0, 10.0};
    s.y = {-2.0, 2.0};
    plot_options o;
    const plot_frame f = layout_plot({s}, o);
    DIFFUSE_CHECK_CLOSE(f.x.lo, -0.5, 1e-12, 0);
    DIFFUSE_CHECK_CLOSE(f.x.hi, 10.5, 1e-12, 0);
    DIFFUSE_CHECK_CLOSE(f.y.lo, -2.2, 1e-12, 0);
    CHECK(f.x.pixel_lo == f.left);
    CHECK(f.y.pixel_lo == f.bottom);
    CHECK(f.left > 0);
    CHECK(f.right < o.width - 1);
    CHECK(f.top > 0);
    CHECK(f.bottom < o.height - 1);
    o.x_min = 0.0;
    o.x_max = 20.0;
    const plot_frame g = layout_plot({s}, o);
    CHECK(g.x.lo == 0.0);
    CHECK(g.x.hi == 20.0);
    o.y_scale = axis_scale::log;
    s.y = {1e-3, 1e-1};
    const plot_frame h = layout_plot({s}, o);
    DIFFUSE_CHECK_CLOSE(std::log10(h.y.lo), -3.1, 1e-12, 0);
    DIFFUSE_CHECK_CLOSE(std::log10(h.y.hi), -0.9, 1e-12, 0);
}

TEST_CASE("plot: the pixels of a known line are set") {
    series diag;
    diag.x = {0.0, 10.0};
    diag.y = {0.0, 10.0};
    diag.color = colors::red;
    diag.thickness = 1;
    series flat;
    flat.x = {0.0, 10.0};
    flat.y = {7.5, 7.5};
    flat.color = colors::blue;
    flat.thickness = 1;
    plot_options o;
    o.width = 320;
    o.height = 240;
    o.x_min = 0.0;
    o.x_max = 10.0;
    o.y_min = 0.0;
    o.y_max = 10.0;
    o.grid = false;
    const auto img = line_plot({diag, flat}, o);
    CHECK(img.shape() == shape{3, 240, 320});
    const plot_frame f = layout_plot({diag, flat}, o);
    // the diagonal passes through every data point we map
    for (double v : {0.5, 2.0, 3.3, 5.0, 7.0, 9.5}) {
        CAPTURE(v);
        const int px = static_cast<int>(std::lround(f.x.to_pixel(v)));
        CHECK(near(img, px, f.y.to_pixel(v), colors::red));
    }
    // the horizontal line fills its row across the plot area
    const int row = static_cast<int>(std::lround(f.y.to_pixel(7.5)));
    int blue = 0;
    for (int x = f.left; x <= f.right; ++x) blue += pixel(img, x, row) == colors::blue;
    CHECK(blue >= f.right - f.left);  // all but (at most) the crossing with the diagonal
    // the frame is black, the background white, and nothing red outside the plot area
    CHECK(pixel(img, f.left - 1, (f.top + f.bottom) / 2) == colors::black);
    CHECK(pixel(img, f.right + 1, f.top + 5) == colors::black);
    CHECK(pixel(img, (f.left + f.right) / 2, f.bottom + 1) == colors::black);
    CHECK(pixel(img, f.left + 3, f.top + 3) == colors::white);
    int red_outside = 0;
    for (int y = 0; y < 240; ++y)
        for (int x = 0; x < 320; ++x)
            if (x < f.left || x > f.right || y < f.top || y > f.bottom) red_outside += pixel(img, x, y) == colors::red;
    CHECK(red_outside == 0);
    // default colours cycle through tab10
    series d1 = diag, d2 = flat;
    d1.color.reset();
    d2.color.reset();
    const auto img2 = line_plot({d1, d2}, o);
    CHECK(near(img2, static_cast<int>(std::lround(f.x.to_pixel(2.0))), f.y.to_pixel(2.0), cycle_color(0)));
    CHECK(pixel(img2, (f.left + f.right) / 3, row) == cycle_color(1));
}

TEST_CASE("plot: a scatter series draws only its markers, each marker_size pixels wide") {
    series pts;
    pts.x = {2.0, 8.0};
    pts.y = {2.0, 8.0};
    pts.color = colors::green;
    pts.lines = false;
    pts.markers = true;
    pts.marker_size = 3;
    plot_options o;
    o.width = 320;
    o.height = 240;
    o.x_min = 0.0;
    o.x_max = 10.0;
    o.y_min = 0.0;
    o.y_max = 10.0;
    o.grid = false;
    const auto img = line_plot({pts}, o);
    const plot_frame f = layout_plot({pts}, o);
    const int px = static_cast<int>(std::lround(f.x.to_pixel(2.0))), py = static_cast<int>(std::lround(f.y.to_pixel(2.0)));
    CHECK(pixel(img, px, py) == colors::green);
    // no line between the two points: the midpoint stays white
    const int mx = static_cast<int>(std::lround(f.x.to_pixel(5.0))), my = static_cast<int>(std::lround(f.y.to_pixel(5.0)));
    CHECK(pixel(img, mx, my) == colors::white);
    // 3×3 markers: exactly 9 green pixels per point
    int green = 0;
    for (int y = 0; y < 240; ++y)
        for (int x = 0; x < 320; ++x) green += pixel(img, x, y) == colors::green;
    CHECK(green == 18);
    pts.marker_size = 0;
    DIFFUSE_CHECK_ERROR(line_plot({pts}, o), "marker_size", "[1, 32]");
}

TEST_CASE("plot: title, labels, legend and log axes render, save_line_plot writes a PNG") {
    series a, b;
    for (int n : {4, 8, 16, 32, 64, 128}) {
        a.x.push_back(n);
        a.y.push_back(1.0 / n);
        b.x.push_back(n);
        b.y.push_back(1.0 / (double(n) * n));
    }
    a.label = "first order";
    b.label = "second order";
    b.markers = true;
    plot_options o;
    o.title = "Error vs steps";
    o.x_label = "steps";
    o.y_label = "error";
    o.x_scale = axis_scale::log;
    o.y_scale = axis_scale::log;
    const auto img = line_plot({a, b}, o);
    CHECK(img.shape() == shape{3, 480, 640});
    int dark = 0;
    for (std::int64_t i = 0; i < 480 * 640; ++i) dark += img[i] == 0 && img[480 * 640 + i] == 0;
    CHECK(dark > 500);  // frame, ticks and text
    const std::string path = diffuse::test::temp().file("plot_loglog.png");
    save_line_plot(path, {a, b}, o);
    CHECK(load_png(path).to_vector() == img.to_vector());
    // one point and a constant series are fine
    series one;
    one.x = {3.0};
    one.y = {3.0};
    CHECK(line_plot({one}).shape() == shape{3, 480, 640});
}

TEST_CASE("plot: bad data and log axes with non-positive values are errors") {
    series s;
    s.x = {1.0, 2.0, 3.0, 4.0};
    s.y = {1.0, 0.5, -0.5, 0.1};
    s.label = "ddim";
    plot_options o;
    o.y_scale = axis_scale::log;
    DIFFUSE_CHECK_ERROR(line_plot({s}, o), "line_plot", "series 0 ('ddim')", "y[2] = -0.5",
                        "logarithmic y axis needs values > 0");
    s.y[2] = 0.0;
    DIFFUSE_CHECK_ERROR(line_plot({s}, o), "y[2] = 0");
    s.y[2] = 0.2;
    o.x_scale = axis_scale::log;
    s.x[0] = 0.0;
    DIFFUSE_CHECK_ERROR(line_plot({s}, o), "x[0] = 0", "logarithmic x axis");
    s.x[0] = 1.0;
    o.y_min = -1.0;
    DIFFUSE_CHECK_ERROR(line_plot({s}, o), "y axis limits", "lo > 0");
    o = plot_options{};
    o.x_min = 5.0;
    o.x_max = 1.0;
    DIFFUSE_CHECK_ERROR(line_plot({s}, o), "x axis limits [5, 1]", "lo < hi");

    DIFFUSE_CHECK_ERROR(line_plot({}), "no series");
    series bad;
    bad.x = {1.0, 2.0};
    bad.y = {1.0};
    DIFFUSE_CHECK_ERROR(line_plot({s, bad}), "series 1", "2 x values and 1 y values");
    bad.y = {1.0, std::nan("")};
    DIFFUSE_CHECK_ERROR(line_plot({bad}), "y[1] = nan", "finite");
    series empty;
    DIFFUSE_CHECK_ERROR(line_plot({empty}), "is empty");
    plot_options small;
    small.width = 40;
    small.height = 30;
    DIFFUSE_CHECK_ERROR(line_plot({s}, small), "40x30", "no room");
}

TEST_CASE("plot: the font renders every printable ASCII character inside its cell") {
    std::vector<std::vector<std::uint8_t>> seen;
    for (int ch = 32; ch <= 126; ++ch) {
        CAPTURE(ch);
        canvas cv(9, 11);
        cv.text(2, 2, std::string(1, static_cast<char>(ch)), colors::black);
        int on = 0;
        bool inside = true;
        for (int y = 0; y < 11; ++y)
            for (int x = 0; x < 9; ++x)
                if (cv.get(x, y) == colors::black) {
                    ++on;
                    inside = inside && x >= 2 && x < 2 + 5 && y >= 2 && y < 2 + 7;
                }
        CHECK(inside);
        CHECK((ch == ' ' ? on == 0 : on > 0));
        seen.push_back(cv.image().to_vector());
    }
    int same = 0;
    for (std::size_t i = 0; i < seen.size(); ++i)
        for (std::size_t j = i + 1; j < seen.size(); ++j) same += seen[i] == seen[j];
    CHECK(same == 0);  // all 95 glyphs differ
    // scaled text, text running off every edge, rotated text and non-ASCII: clipped, never out of bounds
    const std::string all = printable_ascii();
    CHECK(canvas::text_width(all) == 95 * 6 - 1);
    CHECK(canvas::text_width(all, 3) == 3 * (95 * 6 - 1));
    canvas small(17, 9);
    for (int x : {-600, -7, -3, 0, 5, 16, 17, 100})
        for (int y : {-20, -6, -1, 0, 4, 8, 9, 30}) {
            small.text(x, y, all, colors::red);
            small.text(x, y, all, colors::blue, 2);
            small.text_up(x, y, all, colors::green);
            small.text(x, y, "\xc3\xa9\t\n\x7f", colors::black);  // printed as '?'
            small.line(x * 1e9, y, -x * 1e9, -y * 1e12, colors::black, 3);
        }
    CHECK(small.image().shape() == shape{3, 9, 17});
    canvas q(8, 9);
    q.text(1, 1, "\x01", colors::black);
    canvas ref(8, 9);
    ref.text(1, 1, "?", colors::black);
    CHECK(q.image().to_vector() == ref.image().to_vector());
    DIFFUSE_CHECK_ERROR(q.get(8, 0), "pixel", "(8, 0)", "8x9 canvas");
}

TEST_CASE("plot: draw_image copies a panel into a canvas at an offset, clipped at the edges") {
    io::canvas panel(3, 2, io::colors::red);
    panel.set(0, 0, io::colors::blue);
    io::canvas big(5, 4);
    big.draw_image(panel.image(), 3, 1);  // columns 3..5 (5 is outside), rows 1..2
    CHECK(big.get(3, 1) == io::colors::blue);
    CHECK(big.get(4, 2) == io::colors::red);
    CHECK(big.get(2, 1) == io::colors::white);
    CHECK(big.get(3, 3) == io::colors::white);
    const tensor<std::uint8_t, host_space> bad(shape{2, 2, 2}, std::uint8_t{0});
    CHECK_THROWS_WITH_AS(big.draw_image(bad, 0, 0), doctest::Contains("[3, H, W]"), diffuse::error);
}
