// Tests for the folder's interface header include/diffuse/schedules/schedule.hpp: it brings in
// every schedules/ header, and the pieces compose the way samplers use them (docs/schedules.md §9).
#include <diffuse/schedules/schedule.hpp>

#include <support/check.hpp>

#include <vector>

namespace ds = diffuse::schedules;

TEST_CASE("schedule.hpp: a diffusers Euler set_timesteps, composed from the folder's pieces") {
    // SD: scaled_linear, Euler, linspace spacing, 10 steps, σ linear in t, final 0.
    const auto sched = ds::discrete_schedule::named("scaled_linear", 1000, 0.00085, 0.012);
    const auto ts = ds::euler_timesteps(sched.num_train_timesteps(), 10, ds::parse_spacing("linspace"));
    auto sigmas = ds::sigmas_at(sched.sigmas_ve(), ts, ds::sigma_interpolation::linear);
    sigmas.push_back(0.0);
    REQUIRE(sigmas.size() == 11);
    // linspace(0, 999, 10) is integral (multiples of 111), so σ is exactly the table entry.
    for (std::size_t i = 0; i < 10; ++i) CHECK(sigmas[i] == sched.sigma_ve(static_cast<int>(ts[i])));
    // init_noise_sigma = σ_max = 14.614641 (closed_forms A4; numpy 14.614641229333639).
    DIFFUSE_CHECK_CLOSE(sigmas.front(), 14.614641229333639, 0.0, 1e-12);
    // Karras from the same ends, then back to model time with sigma_to_t: the ends map to 999 and 0.
    const auto k = ds::karras_sigmas(10, sigmas[9], sigmas[0]);
    const auto table = sched.sigmas_ve();
    DIFFUSE_CHECK_CLOSE(ds::sigma_to_t(table, k.front()), 999.0, 1e-9, 0.0);
    DIFFUSE_CHECK_CLOSE(ds::sigma_to_t(table, k[9]), 0.0, 1e-9, 0.0);
    // The continuous VP-linear schedule and the discrete one agree on the λ convention: λ = ½ log SNR.
    const ds::vp_linear vp;
    DIFFUSE_CHECK_CLOSE(vp.lambda(0.5), 0.5 * vp.log_snr(0.5), 0.0, 1e-15);
    DIFFUSE_CHECK_CLOSE(sched.lambda(500), 0.5 * sched.log_snr(500), 0.0, 1e-15);
}
