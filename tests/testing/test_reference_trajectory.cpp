// testing/reference_trajectory.hpp: recording through the sample() driver and by hand, the
// .npy + index.csv round trip (bitwise, float and double, NaN timesteps), step-by-step comparison
// (first mismatching record, element and reason; lengths, step indices, timesteps, shapes, NaN),
// record_every, and the load errors.
#include <diffuse/testing/reference_trajectory.hpp>

#include <diffuse/io/npy.hpp>
#include <diffuse/models/exact.hpp>
#include <diffuse/samplers/ddim.hpp>
#include <diffuse/schedules/discrete_schedule.hpp>

#include "samplers/fixtures.hpp"
#include "support/check.hpp"
#include "support/tmp.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>

using namespace diffuse;
using namespace diffuse::testing;
using diffuse::test::temp;

namespace {

bool contains(const std::string& s, const std::string& frag) { return s.find(frag) != std::string::npos; }

/// A DDIM run (η = 1: stochastic) of 10 steps on 16 points of the exact Gaussian, recorded.
template <class T>
reference_trajectory<T> ddim_run(std::uint64_t seed, std::size_t every = 1, tensor<T, host_space>* final_x = nullptr) {
    const auto g = diffuse::test::gaussian3();
    const models::exact_gaussian_denoiser model(g);
    const auto sched = schedules::discrete_schedule::named("linear", 1000);
    samplers::ddim_sampler s(sched, samplers::ddim_config{.eta = 1.0});
    s.set_timesteps(10);
    const Eigen::MatrixXd x0 = diffuse::test::marginal_points(g, sched.alpha(900), sched.sigma(900), 3);
    tensor<T, host_space> x(shape{x0.rows(), x0.cols()});
    for (Eigen::Index i = 0; i < x0.rows(); ++i)
        for (Eigen::Index j = 0; j < x0.cols(); ++j) x(i, j) = static_cast<T>(x0(i, j));
    reference_trajectory<T> rec(every);
    rec.record_initial(x, 900.0);
    philox_rng rng(seed);
    samplers::sample(model, s, x, rng, rec);
    if (final_x) *final_x = x;
    return rec;
}

template <class T>
bool bitwise_equal(const tensor<T, host_space>& a, const tensor<T, host_space>& b) {
    return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), a.bytes()) == 0;
}

}  // namespace

TEST_CASE("reference trajectory records every step of the sample driver") {
    tensor<double, host_space> final_x;
    const auto rec = ddim_run<double>(7, 1, &final_x);
    REQUIRE(rec.size() == 11);  // x_T plus 10 steps
    CHECK(rec[0].step == -1);
    CHECK(rec[0].timestep == 900.0);
    for (std::size_t k = 1; k < rec.size(); ++k) {
        CHECK(rec[k].step == static_cast<std::int64_t>(k - 1));
        CHECK(rec[k].timestep == 900.0 - 100.0 * static_cast<double>(k - 1));  // leading spacing 900, 800, ..., 0
        CHECK(rec[k].x.shape() == shape{16, 3});
    }
    CHECK(bitwise_equal(rec.back().x, final_x));
    DIFFUSE_CHECK_ERROR(rec[11], "k", "[0, 11)");
    // record_every = 4 keeps steps 0, 4, 8 and the last one, 9.
    const auto sparse = ddim_run<double>(7, 4);
    REQUIRE(sparse.size() == 5);
    CHECK(sparse[1].step == 0);
    CHECK(sparse[2].step == 4);
    CHECK(sparse[3].step == 8);
    CHECK(sparse[4].step == 9);
    CHECK(bitwise_equal(sparse[4].x, final_x));
    DIFFUSE_CHECK_ERROR(reference_trajectory<double>(0), "record_every", ">= 1");
}

TEST_CASE_TEMPLATE("reference trajectory saves and loads bitwise", T, float, double) {
    auto rec = ddim_run<T>(8);
    // A hand-recorded state with an unknown timestep (NaN) and a rank-3 shape.
    tensor<T, host_space> extra(shape{2, 1, 3}, T(0.25));
    extra[4] = std::numeric_limits<T>::denorm_min();
    rec.record(42, extra);
    const std::string folder = temp().file(std::string("traj_") + (sizeof(T) == 4 ? "f" : "d"));
    rec.save(folder);
    const auto back = reference_trajectory<T>::load(folder);
    REQUIRE(back.size() == rec.size());
    for (std::size_t k = 0; k < rec.size(); ++k) {
        CHECK(back[k].step == rec[k].step);
        CHECK(testing::detail::same_timestep(back[k].timestep, rec[k].timestep));
        CHECK(bitwise_equal(back[k].x, rec[k].x));
    }
    CHECK(std::isnan(back.back().timestep));
    // The files are plain .npy of dtype T, and the index is readable CSV.
    CHECK(io::read_npy_header(folder + "/x_00003.npy").descr == io::npy_descr<T>());
    std::ifstream idx(folder + "/index.csv");
    std::string header, first;
    std::getline(idx, header);
    std::getline(idx, first);
    CHECK(header == "step,timestep,file");
    CHECK(first == "-1,900,x_00000.npy");
    const auto cmp = compare_trajectories(back, rec, 0.0, 0.0);
    CHECK(cmp.passed);
    CHECK(cmp.max_abs_error == 0.0);
    CHECK(compare_trajectories(rec, folder, 0.0, 0.0).passed);
}

TEST_CASE("compare trajectories finds the first mismatching step and the largest error") {
    const auto a = ddim_run<double>(9);
    auto b = ddim_run<double>(9);
    REQUIRE(compare_trajectories(a, b, 0.0, 0.0).passed);  // same seed: bitwise reproducible
    // Perturb record 4, element 7 by 1e-9, and record 6, element 0 by 3e-9.
    auto steps = b;
    {
        reference_trajectory<double> p;
        for (std::size_t k = 0; k < steps.size(); ++k) {
            tensor<double, host_space> x = steps[k].x;
            if (k == 4) x[7] += 1e-9;
            if (k == 6) x[0] += 3e-9;
            p.record(steps[k].step, x, steps[k].timestep);
        }
        b = std::move(p);
    }
    const auto c = compare_trajectories(b, a, 1e-12, 0.0);
    MESSAGE(c.report());
    CHECK_FALSE(c.passed);
    REQUIRE(c.first_mismatch.has_value());
    CHECK(*c.first_mismatch == 4);
    CHECK(c.first_mismatch_step == 3);
    CHECK(contains(c.problem, "element 7"));
    CHECK(c.max_error_position == 6);
    DIFFUSE_CHECK_CLOSE(c.max_abs_error, 3e-9, 1e-15, 1e-6);  // the sum rounds at ~|x|·1e-16
    CHECK(c.step_max_abs_error.size() == a.size());
    CHECK(c.step_max_abs_error[3] == 0.0);
    CHECK(contains(c.report(), "first mismatch at record 4 (step 3)"));
    // Within atol = 1e-8 the runs agree.
    CHECK(compare_trajectories(b, a, 1e-8, 0.0).passed);
    // A different seed draws different noise from the first step on.
    const auto other = compare_trajectories(ddim_run<double>(10), a, 1e-6, 1e-6);
    CHECK_FALSE(other.passed);
    CHECK(*other.first_mismatch == 1);  // record 0 is x_T, identical
    CHECK(other.first_mismatch_step == 0);
}

TEST_CASE("compare trajectories reports structural mismatches and handles NaN") {
    const auto a = ddim_run<double>(9);
    reference_trajectory<double> shorter;
    for (std::size_t k = 0; k + 1 < a.size(); ++k) shorter.record(a[k].step, a[k].x, a[k].timestep);
    auto c = compare_trajectories(shorter, a, 0.0, 0.0);
    CHECK_FALSE(c.passed);
    CHECK(*c.first_mismatch == a.size() - 1);
    CHECK(contains(c.problem, "10 records but the reference has 11"));

    reference_trajectory<double> renumbered, retimed, reshaped;
    for (std::size_t k = 0; k < a.size(); ++k) {
        renumbered.record(k == 2 ? 99 : a[k].step, a[k].x, a[k].timestep);
        retimed.record(a[k].step, a[k].x, k == 5 ? 123.0 : a[k].timestep);
        tensor<double, host_space> x = a[k].x;
        if (k == 3) x.reshape(shape{48});
        reshaped.record(a[k].step, x, a[k].timestep);
    }
    c = compare_trajectories(renumbered, a, 0.0, 0.0);
    CHECK(*c.first_mismatch == 2);
    CHECK(contains(c.problem, "step index 99 but the reference has 1"));
    c = compare_trajectories(retimed, a, 0.0, 0.0);
    CHECK(*c.first_mismatch == 5);
    CHECK(contains(c.problem, "timestep 123"));
    c = compare_trajectories(reshaped, a, 1.0, 1.0);
    CHECK(*c.first_mismatch == 3);
    CHECK(contains(c.problem, "shape [48] but the reference has shape [16, 3]"));
    CHECK(std::isinf(c.max_abs_error));

    // NaN matches NaN only.
    tensor<double, host_space> n1(shape{3}, 1.0), n2(shape{3}, 1.0);
    n1[1] = n2[1] = std::numeric_limits<double>::quiet_NaN();
    reference_trajectory<double> p, q;
    p.record(0, n1);
    q.record(0, n2);
    CHECK(compare_trajectories(p, q, 0.0, 0.0).passed);
    n2[1] = 1.0;
    reference_trajectory<double> q2;
    q2.record(0, n2);
    c = compare_trajectories(p, q2, 1.0, 1.0);
    CHECK_FALSE(c.passed);
    CHECK(contains(c.problem, "element 1"));
    // A float run against a double reference: compared in double.
    const auto f = ddim_run<float>(9);
    // float rounding: 10 steps of |x| <= ~5, each adding a few ulps (6e-8 relative): 1e-5 absolute.
    const auto cf = compare_trajectories(f, a, 1e-5, 0.0);
    MESSAGE(cf.report());
    CHECK(cf.passed);
    DIFFUSE_CHECK_ERROR(compare_trajectories(p, q, -1.0, 0.0), "atol");
    DIFFUSE_CHECK_ERROR(compare_trajectories(p, q, 0.0, NAN), "rtol");
}

TEST_CASE("reference trajectory load rejects missing and malformed folders") {
    DIFFUSE_CHECK_ERROR(reference_trajectory<double>::load(temp().file("no_such_folder")), "no_such_folder",
                        "index.csv");
    const std::string folder = temp().file("traj_bad");
    std::filesystem::create_directories(folder);
    auto write_index = [&](const std::string& text) { std::ofstream(folder + "/index.csv") << text; };
    write_index("index,file\n");
    DIFFUSE_CHECK_ERROR(reference_trajectory<double>::load(folder), "header \"step,timestep,file\"");
    write_index("step,timestep,file\n0,1.5\n");
    DIFFUSE_CHECK_ERROR(reference_trajectory<double>::load(folder), "line 2", "three fields");
    write_index("step,timestep,file\nzero,1.5,x.npy\n");
    DIFFUSE_CHECK_ERROR(reference_trajectory<double>::load(folder), "step \"zero\"", "integer");
    write_index("step,timestep,file\n0,soon,x.npy\n");
    DIFFUSE_CHECK_ERROR(reference_trajectory<double>::load(folder), "timestep \"soon\"");
    write_index("step,timestep,file\n0,1,../x.npy\n");
    DIFFUSE_CHECK_ERROR(reference_trajectory<double>::load(folder), "plain file name");
    write_index("step,timestep,file\n0,1,missing.npy\n");
    DIFFUSE_CHECK_ERROR(reference_trajectory<double>::load(folder), "missing.npy");
    // A float file loaded as double names both dtypes.
    io::save_npy(folder + "/x_00000.npy", tensor<float, host_space>(shape{2}, 1.0f));
    write_index("step,timestep,file\n0,nan,x_00000.npy\n");
    DIFFUSE_CHECK_ERROR(reference_trajectory<double>::load(folder), "'<f4'", "float64");
    CHECK(reference_trajectory<float>::load(folder).size() == 1);
    // CRLF line ends (an index edited on Windows) are accepted.
    write_index("step,timestep,file\r\n0,nan,x_00000.npy\r\n");
    CHECK(reference_trajectory<float>::load(folder).size() == 1);
    DIFFUSE_CHECK_ERROR(reference_trajectory<double>().back(), "nothing recorded");
}
