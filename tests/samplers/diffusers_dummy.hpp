#pragma once
// diffusers' scheduler-test fixtures (tests/schedulers/test_schedulers.py; peers.md c.1), for
// the full-loop oracle tests of the samplers (test_ddim, test_ddpm, test_inversion, test_unipc,
// test_pndm, the DPM-Solver and Euler-family tests):
//   dummy_sample_deter [4, 3, 8, 8]: element (b, c, h, w) = (256c + 32h + 4w + b)/768
//   dummy_noise_deter: 1 − sample − 1/768 element-wise (the flipped arange)
//   dummy_model(x, t) = x·t/(t + 1), declared as any prediction type (dummy_model_at: the same
//   on whole tensors at an explicit t, for loops that pass diffusers' integer t themselves)
//   abs_sum / abs_mean: Σ|x| and mean |x|, accumulated in double (the oracles' result_sum/mean).

#include <diffuse/core/tensor.hpp>
#include <diffuse/models/denoiser.hpp>
#include <diffuse/process/parametrization.hpp>

#include <cmath>
#include <cstdint>
#include <type_traits>

namespace diffuse::test::diffusers {

template <class T = double>
tensor<T, host_space> dummy_sample_deter() {
    tensor<T, host_space> x(shape{4, 3, 8, 8});
    for (int b = 0; b < 4; ++b)
        for (int c = 0; c < 3; ++c)
            for (int h = 0; h < 8; ++h)
                for (int w = 0; w < 8; ++w) x(b, c, h, w) = static_cast<T>((256 * c + 32 * h + 4 * w + b) / 768.0);
    return x;
}

template <class T = double>
tensor<T, host_space> dummy_noise_deter() {
    tensor<T, host_space> x = dummy_sample_deter<T>();
    for (std::int64_t i = 0; i < x.numel(); ++i) x[i] = static_cast<T>(1.0 - static_cast<double>(x[i]) - 1.0 / 768.0);
    return x;
}

/// x·t/(t + 1) with t the level's timestep (cast to T, as diffusers casts t to the sample dtype).
struct dummy_model {
    process::prediction_type type = process::prediction_type::epsilon;
    process::prediction_type prediction() const { return type; }
    template <class T, class S>
    void operator()(tensor_view<T, S> out, std::type_identity_t<tensor_view<const T, S>> x,
                    const models::noise_condition& level, models::no_condition = {}) const {
        const T t = static_cast<T>(level.timestep.value());
        for (std::int64_t i = 0; i < x.numel(); ++i) out[i] = x[i] * t / (t + T(1));
    }
};

/// dummy_model at an explicit t (diffusers passes a Python int t; it is cast to T).
template <class T>
void dummy_model_at(tensor<T, host_space>& out, const tensor<T, host_space>& x, int t) {
    const T tt = static_cast<T>(t);
    for (std::int64_t i = 0; i < x.numel(); ++i) out[i] = x.cview()[i] * tt / (tt + T(1));
}

template <class T>
double abs_sum(const tensor<T, host_space>& x) {
    double s = 0;
    for (std::int64_t i = 0; i < x.numel(); ++i) s += std::abs(static_cast<double>(x.cview()[i]));
    return s;
}

template <class T>
double abs_mean(const tensor<T, host_space>& x) {
    return abs_sum(x) / static_cast<double>(x.numel());
}

}  // namespace diffuse::test::diffusers
