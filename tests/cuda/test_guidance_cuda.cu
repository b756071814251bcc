// guidance/combine.hpp and guidance/cfg.hpp on device tensors: the CFG combination, guidance rescale,
// CFG-Zero* and APG (for_each passes and backend sums per item) must give the host's results (serial
// oracle) up to the rounding of the device's per-item sums (products in T, tree order).
#include <diffuse/guidance/cfg.hpp>
#include <diffuse/guidance/combine.hpp>

#include "backend/backend_cases.hpp"
#include "cuda/device_check.hpp"

#include <doctest/doctest.h>

using namespace diffuse;
using namespace diffuse::guidance;

TEST_CASE_TEMPLATE("device CFG, rescale, CFG-Zero* and APG equal the host", T, float, double) {
    const shape s{3, 4, 16, 16};
    const auto hc = test::pattern<T>(s, 0.3), hu = test::pattern<T>(s, 0.8);
    const auto dc = hc.template to<device_space>(), du = hu.template to<device_space>();
    // Per-item sums of 1024 products: relative rounding ~ n·ε(T) at worst; 1e3·ε covers it.
    const double tol = 1e3 * test::eps<T>;
    for (cfg_formula f : {cfg_formula::diffusers, cfg_formula::original}) {
        tensor<T, host_space> h(s);
        tensor<T, device_space> d(s);
        cfg_combine(h.view(), hc.cview(), hu.cview(), 3.5, f);
        cfg_combine(d.view(), dc.cview(), du.cview(), 3.5, f);
        // w·c + (1 − w)·u with |w|, |1 − w| <= 4.5: a fused multiply-add on the device rounds once where the
        // host rounds twice, so they differ by ulps of the terms (<= 9× the values): 32·ε relative and absolute
        test::check_same_on_device(d, h, 32 * test::eps<T>);
        rescale_guidance(h.view(), hc.cview(), 0.7);
        rescale_guidance(d.view(), dc.cview(), 0.7);
        test::check_same_on_device(d, h, tol);
        cfg_zero_star_combine(h.view(), hc.cview(), hu.cview(), 2.0, f);
        cfg_zero_star_combine(d.view(), dc.cview(), du.cview(), 2.0, f);
        test::check_same_on_device(d, h, tol);
        const apg_options o{.eta = 0.25, .norm_threshold = 5.0, .momentum = -0.5};
        apg_state<T, host_space> hs;
        apg_state<T, device_space> ds;
        for (int step = 0; step < 2; ++step) {
            apg_combine(h.view(), hc.cview(), hu.cview(), 4.0, f, o, &hs);
            apg_combine(d.view(), dc.cview(), du.cview(), 4.0, f, o, &ds);
            test::check_same_on_device(d, h, tol);
        }
    }
}
