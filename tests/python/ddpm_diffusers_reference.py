#!/usr/bin/env python3
"""Reference values for the diffusers DDPM oracles in tests/samplers/test_ddpm.cpp.

Re-implements diffusers' DDPMScheduler.step (fixed_small, clip_sample=True, the default
timesteps 999..0, prediction_type epsilon or v_prediction) with the dummy model and sample of
diffusers' tests/schedulers/test_schedulers.py, and runs the three loops of
tests/schedulers/test_scheduler_ddpm.py:

  test_full_loop_no_noise            expected sum 258.9606, mean 0.3372
  test_full_loop_with_v_prediction   expected sum 202.0296, mean 0.2631
  test_full_loop_with_noise          expected sum 387.9466, mean 0.5051

once in float32 (what diffusers computes: reproduces the expected values) and once with the same
steps in float64 (schedule and arithmetic; the noise is still torch's float32 randn, as diffusers
draws it), which is what diffuse's double-precision coefficients compute.

    ATEN_CPU_CAPABILITY=default python3 tests/python/ddpm_diffusers_reference.py
"""
import torch

T = 1000


def schedule(dtype):
    betas = torch.linspace(0.0001, 0.02, T, dtype=dtype)
    return torch.cumprod(1.0 - betas, dim=0)


def sample_deter(dtype):
    n = 4 * 3 * 8 * 8
    s = torch.arange(n, dtype=dtype).reshape(3, 8, 8, 4) / n
    return s.permute(3, 0, 1, 2)


def noise_deter(dtype):
    n = 4 * 3 * 8 * 8
    s = torch.arange(n, dtype=dtype).flip(-1).reshape(3, 8, 8, 4) / n
    return s.permute(3, 0, 1, 2)


def step(ac, model_output, t, x, generator, prediction):
    one = torch.tensor(1.0, dtype=ac.dtype)
    a_t = ac[t]
    a_p = ac[t - 1] if t > 0 else one
    b_t, b_p = 1 - a_t, 1 - a_p
    cur_a = a_t / a_p
    cur_b = 1 - cur_a
    if prediction == "epsilon":
        x0 = (x - b_t ** 0.5 * model_output) / a_t ** 0.5
    else:
        x0 = (a_t ** 0.5) * x - (b_t ** 0.5) * model_output
    x0 = x0.clamp(-1, 1)
    mean = (a_p ** 0.5 * cur_b) / b_t * x0 + cur_a ** 0.5 * b_p / b_t * x
    if t > 0:
        z = torch.randn(model_output.shape, generator=generator, dtype=torch.float32).to(x.dtype)
        var = torch.clamp((1 - a_p) / (1 - a_t) * cur_b, min=1e-20)
        mean = mean + var ** 0.5 * z
    return mean


def model(x, t):
    return x * t / (t + 1)


def main():
    for dtype in (torch.float32, torch.float64):
        ac = schedule(dtype)
        for prediction in ("epsilon", "v_prediction"):
            generator = torch.manual_seed(0)
            x = sample_deter(dtype)
            for t in reversed(range(T)):
                x = step(ac, model(x, t), t, x, generator, prediction)
            s = float(x.abs().sum(dtype=torch.float64))
            print(f"{dtype} full loop {prediction}: sum {s!r} mean {s / 768!r}")
        generator = torch.manual_seed(0)
        x = ac[1] ** 0.5 * sample_deter(dtype) + (1 - ac[1]) ** 0.5 * noise_deter(dtype)
        for t in (1, 0):
            x = step(ac, model(x, torch.tensor(t).to(dtype)), t, x, generator, "epsilon")
        s = float(x.abs().sum(dtype=torch.float64))
        print(f"{dtype} with noise (t_start 998): sum {s!r} mean {s / 768!r}")


if __name__ == "__main__":
    main()
