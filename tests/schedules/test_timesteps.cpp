// Tests for include/diffuse/schedules/timesteps.hpp (docs/schedules.md §6, §7).
// Sequences marked "numpy" were produced by running the peers' one-line rules in numpy 1.24
// (e.g. np.linspace(0, 999, 50).round()[::-1]); during development every rule was also
// compared with numpy for all N in 1..T and T in {7, 50, 999, 1000, 1100} (40643 sequences,
// all identical), and space_timesteps with guided-diffusion's function for 51 specs.
#include <diffuse/schedules/timesteps.hpp>

#include <diffuse/schedules/discrete_schedule.hpp>
#include <support/check.hpp>

#include <vector>

namespace ds = diffuse::schedules;
using ds::spacing;

namespace {

std::vector<int> arith(int first, int step, int n) {
    std::vector<int> v;
    for (int k = 0; k < n; ++k) v.push_back(first + k * step);
    return v;
}

}  // namespace

TEST_CASE("ddim_timesteps: the worked examples of peers.md b.3 (T = 1000)") {
    // leading with steps_offset = 1 (SD config): 901, 801, ..., 1 and 981, 961, ..., 1.
    CHECK(ds::ddim_timesteps(1000, 10, spacing::leading, 1) == arith(901, -100, 10));
    CHECK(ds::ddim_timesteps(1000, 50, spacing::leading, 1) == arith(981, -20, 50));
    CHECK(ds::ddim_timesteps(1000, 10, spacing::leading) == arith(900, -100, 10));
    // trailing: 999, 899, ..., 99 and 999, 979, ..., 19.
    CHECK(ds::ddim_timesteps(1000, 10, spacing::trailing) == arith(999, -100, 10));
    CHECK(ds::ddim_timesteps(1000, 50, spacing::trailing) == arith(999, -20, 50));
    // linspace: 999, 888, ..., 111, 0 and (numpy) the N = 50 row.
    CHECK(ds::ddim_timesteps(1000, 10, spacing::linspace) == arith(999, -111, 10));
    const std::vector<int> lin50{999, 979, 958, 938, 917, 897, 877, 856, 836, 816, 795, 775, 754, 734, 714, 693, 673,
                                 652, 632, 612, 591, 571, 550, 530, 510, 489, 469, 449, 428, 408, 387, 367, 347, 326,
                                 306, 285, 265, 245, 224, 204, 183, 163, 143, 122, 102, 82,  61,  41,  20,  0};
    CHECK(ds::ddim_timesteps(1000, 50, spacing::linspace) == lin50);
    // N = T: every timestep once.
    CHECK(ds::ddim_timesteps(1000, 1000, spacing::trailing) == arith(999, -1, 1000));
    CHECK(ds::ddim_timesteps(1000, 1000, spacing::linspace) == arith(999, -1, 1000));
    CHECK(ds::ddim_timesteps(1000, 1, spacing::linspace) == std::vector<int>{0});
    CHECK(ds::ddim_timesteps(1000, 1, spacing::trailing) == std::vector<int>{999});
}

TEST_CASE("trailing reproduces numpy's float arange, ties included, and drops its spurious -1") {
    // T = 1000, N = 48: the exact value 1000 − 3·(1000/48) = 937.5 would round (half even) to 938,
    // but numpy's arange computes 937.4999999999999 -> 937, so diffusers' timestep is 936 (numpy).
    const std::vector<int> t48{999, 978, 957, 936, 916, 895, 874, 853, 832, 811, 791, 770, 749, 728, 707, 686,
                               666, 645, 624, 603, 582, 561, 541, 520, 499, 478, 457, 436, 416, 395, 374, 353,
                               332, 311, 291, 270, 249, 228, 207, 186, 166, 145, 124, 103, 82,  61,  41,  20};
    CHECK(ds::ddim_timesteps(1000, 48, spacing::trailing) == t48);
    // T = 1000, N = 61: np.arange(1000, 0, −1000/61) has 62 elements, the last −5.7e-13, which
    // diffusers turns into timestep −1. Here: exactly 61 timesteps ending with 15 (numpy: ..., 32, 15, −1).
    const auto t61 = ds::ddim_timesteps(1000, 61, spacing::trailing);
    CHECK(t61.size() == 61);
    CHECK(t61.back() == 15);
    CHECK(t61[59] == 32);
    // N = 7 (numpy): 999, 856, 713, 570, 428, 285, 142.
    CHECK(ds::ddim_timesteps(1000, 7, spacing::trailing) == std::vector<int>{999, 856, 713, 570, 428, 285, 142});
}

TEST_CASE("multistep_timesteps: DPM-Solver++ / UniPC N+1 rule (peers.md b.3)") {
    // linspace: 999, 899, ..., 599, 500, 400, ..., 100 — the 500 is 499.5 rounded half to even.
    CHECK(ds::multistep_timesteps(1000, 10, spacing::linspace) ==
          std::vector<int>{999, 899, 799, 699, 599, 500, 400, 300, 200, 100});
    // numpy: np.linspace(0, 999, 51).round()[::-1][:-1].
    const std::vector<int> lin50{999, 979, 959, 939, 919, 899, 879, 859, 839, 819, 799, 779, 759, 739, 719, 699, 679,
                                 659, 639, 619, 599, 579, 559, 539, 519, 500, 480, 460, 440, 420, 400, 380, 360, 340,
                                 320, 300, 280, 260, 240, 220, 200, 180, 160, 140, 120, 100, 80,  60,  40,  20};
    CHECK(ds::multistep_timesteps(1000, 50, spacing::linspace) == lin50);
    // leading, steps_offset = 1: r = 1000 // 11 = 90 -> 901, 811, ..., 91; r = 1000 // 51 = 19 -> 951, ..., 20.
    CHECK(ds::multistep_timesteps(1000, 10, spacing::leading, 1) == arith(901, -90, 10));
    CHECK(ds::multistep_timesteps(1000, 50, spacing::leading, 1) == arith(951, -19, 50));
    // trailing is the DDIM trailing rule when nothing is clipped.
    CHECK(ds::multistep_timesteps(1000, 10, spacing::trailing) == arith(999, -100, 10));
    // Round half to even, downwards: linspace(0, 997, 3) = {0, 498.5, 997} -> 498, not 499.
    CHECK(ds::multistep_timesteps(1000, 2, spacing::linspace, 0, 998) == std::vector<int>{997, 498});
    // With DPM-Solver's λ clip at −5.1, the cosine schedule keeps 996 timesteps; trailing then
    // starts at 995 (numpy: np.arange(996, 0, −100).round() − 1).
    const auto cosine = ds::discrete_schedule::named("squaredcos_cap_v2", 1000);
    const int last = cosine.num_timesteps_lambda_at_least(-5.1);
    CHECK(last == 996);
    CHECK(ds::multistep_timesteps(1000, 10, spacing::trailing, 0, last) == arith(995, -100, 10));
    CHECK(ds::multistep_timesteps(1000, 10, spacing::linspace, 0, last).front() == 995);
}

TEST_CASE("euler_timesteps: float timesteps, linspace not rounded") {
    // T = 1100 (diffusers' Euler tests), N = 10: k·1099/9 reversed; numpy's i·step form: 1 ulp.
    const auto e = ds::euler_timesteps(1100, 10, spacing::linspace);
    REQUIRE(e.size() == 10);
    CHECK(e.front() == 1099.0);
    CHECK(e.back() == 0.0);
    for (int k = 0; k < 10; ++k) DIFFUSE_CHECK_CLOSE(e[static_cast<std::size_t>(9 - k)], k * 1099.0 / 9.0, 0.0, 3e-16);
    // float32 storage as diffusers: each value rounded to float.
    const auto f = ds::euler_timesteps(1100, 10, spacing::linspace, 0, ds::precision::float32);
    for (std::size_t i = 0; i < 10; ++i) CHECK(f[i] == static_cast<double>(static_cast<float>(e[i])));
    // leading / trailing: the DDIM integers as doubles.
    const auto l = ds::euler_timesteps(1000, 10, spacing::leading, 1);
    const auto li = ds::ddim_timesteps(1000, 10, spacing::leading, 1);
    CHECK(l == std::vector<double>(li.begin(), li.end()));
    const auto t = ds::euler_timesteps(1000, 10, spacing::trailing);
    CHECK(t.front() == 999.0);
    CHECK(t.back() == 99.0);
}

TEST_CASE("space_timesteps: guided-diffusion respacing") {
    // space_timesteps(1000, [10]) = {0, 111, ..., 999}; "ddim10" = {0, 100, ..., 900} (peers.md b.3).
    CHECK(ds::space_timesteps(1000, std::vector<int>{10}) == arith(0, 111, 10));
    CHECK(ds::space_timesteps(1000, "10") == arith(0, 111, 10));
    CHECK(ds::space_timesteps(1000, "ddim10") == arith(0, 100, 10));
    CHECK(ds::space_timesteps(1000, "ddim25") == arith(0, 40, 25));
    CHECK(ds::space_timesteps(1000, "ddim3") == std::vector<int>{0, 334, 668});  // first stride i with ceil(1000/i) = 3
    CHECK(ds::space_timesteps(1000, "ddim1000") == arith(0, 1, 1000));
    // Sections (guided-diffusion's own function, run in Python): "10,15,20".
    const std::vector<int> sec{0,   37,  74,  111, 148, 185, 222, 259, 296, 333, 334, 358, 381, 405, 429,
                               453, 476, 500, 524, 547, 571, 595, 619, 642, 666, 667, 684, 702, 719, 737,
                               754, 772, 789, 807, 824, 842, 859, 877, 894, 912, 929, 947, 964, 982, 999};
    CHECK(ds::space_timesteps(1000, "10,15,20") == sec);
    CHECK(ds::space_timesteps(1000, std::vector<int>{10, 15, 20}) == sec);
    // Sections of 34, 33, 33 steps: a count of 1 takes the section's first index, 0 takes none,
    // 2 takes both ends (guided-diffusion, run in Python: [0, 67, 99]).
    CHECK(ds::space_timesteps(100, "1,0,2") == std::vector<int>{0, 67, 99});
}

TEST_CASE("ddim_prev_timestep: diffusers' t - T//N rule and where it is wrong") {
    CHECK(ds::ddim_prev_timestep(999, 1000, 10) == 899);
    // Right for leading: each step's predecessor is the next timestep of the sequence.
    const auto lead = ds::ddim_timesteps(1000, 10, spacing::leading, 1);
    for (std::size_t i = 0; i + 1 < lead.size(); ++i) CHECK(ds::ddim_prev_timestep(lead[i], 1000, 10) == lead[i + 1]);
    // Wrong for trailing when N does not divide T: 999 − 1000//7 = 857, but the sequence has 856.
    const auto tr = ds::ddim_timesteps(1000, 7, spacing::trailing);
    CHECK(ds::ddim_prev_timestep(tr[0], 1000, 7) == 857);
    CHECK(tr[1] == 856);
}

TEST_CASE("timestep errors name the argument, the value and the allowed range") {
    DIFFUSE_CHECK_ERROR(ds::parse_spacing("uniform"), "timestep_spacing = \"uniform\"", "\"leading\"", "\"trailing\"",
                        "\"linspace\"");
    CHECK(ds::parse_spacing("trailing") == spacing::trailing);
    CHECK(ds::to_string(spacing::linspace) == "linspace");
    DIFFUSE_CHECK_ERROR(ds::ddim_timesteps(1000, 0, spacing::leading), "num_inference_steps = 0", "[1, 1000]");
    DIFFUSE_CHECK_ERROR(ds::ddim_timesteps(1000, 1001, spacing::trailing), "num_inference_steps = 1001", "[1, 1000]");
    DIFFUSE_CHECK_ERROR(ds::ddim_timesteps(0, 10, spacing::trailing), "num_train_timesteps = 0", ">= 1");
    // diffusers issue #10003: 1000 steps, leading, steps_offset = 1 would index timestep 1000.
    DIFFUSE_CHECK_ERROR(ds::ddim_timesteps(1000, 1000, spacing::leading, 1), "steps_offset = 1", "at most 0",
                        "<= num_train_timesteps - 1 = 999");
    DIFFUSE_CHECK_ERROR(ds::ddim_timesteps(1000, 10, spacing::leading, -1), "steps_offset = -1", ">= 0");
    DIFFUSE_CHECK_ERROR(ds::multistep_timesteps(1000, 1000, spacing::linspace), "num_inference_steps = 1000", "[1, 999]",
                        "distinct");
    DIFFUSE_CHECK_ERROR(ds::multistep_timesteps(1000, 10, spacing::trailing, 0, 0), "last_timestep = 0",
                        "[1, num_train_timesteps]");
    DIFFUSE_CHECK_ERROR(ds::multistep_timesteps(1000, 10, spacing::trailing, 0, 1001), "last_timestep = 1001",
                        "[1, num_train_timesteps]");
    DIFFUSE_CHECK_ERROR(ds::euler_timesteps(1000, 0, spacing::linspace), "num_inference_steps = 0", "[1, 1000]");
    DIFFUSE_CHECK_ERROR(ds::space_timesteps(100, "250"), "section_counts[0] = 250", "at most 100");
    DIFFUSE_CHECK_ERROR(ds::space_timesteps(1000, "10,500,3"), "section_counts[1] = 500", "at most 333");
    DIFFUSE_CHECK_ERROR(ds::space_timesteps(1000, "ddim999"), "section_counts = \"ddim999\"", "no integer stride",
                        "999 steps");
    DIFFUSE_CHECK_ERROR(ds::space_timesteps(1000, "ten"), "section_counts = \"ten\"", "\"ddimN\"", "comma-separated");
    DIFFUSE_CHECK_ERROR(ds::space_timesteps(1000, "10,,5"), "section_counts = \"10,,5\"", "comma-separated");
    DIFFUSE_CHECK_ERROR(ds::space_timesteps(1000, std::vector<int>{5, -1}), "section_counts[1] = -1", ">= 0");
    DIFFUSE_CHECK_ERROR(ds::space_timesteps(1000, std::vector<int>{0, 0}), "section_counts", "at least one");
    DIFFUSE_CHECK_ERROR(ds::space_timesteps(1000, std::vector<int>{}), "section_counts.size() = 0", "at least 1");
    DIFFUSE_CHECK_ERROR(ds::ddim_prev_timestep(10, 1000, 0), "num_inference_steps = 0", "[1, 1000]");
}
