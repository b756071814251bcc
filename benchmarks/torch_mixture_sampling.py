#!/usr/bin/env python3
"""The PyTorch (CPU) twin of bench_samplers' end-to-end benchmark: sample n 2-D points from the
exact Gaussian-mixture denoiser with DPM-Solver++(2M) (k-diffusion's sample_dpmpp_2m form, VE
state, the last step to sigma = 0 first order) on the sigma levels bench_samplers wrote.

    torch_mixture_sampling.py DIR [--threads 2] [--repeats 3]

DIR holds what `bench_samplers --dump_dir=DIR` wrote: mixture_weights.npy [K],
mixture_means.npy [K, d], mixture_covs.npy [K, d, d], sigmas.npy [N + 1], x_T.npy [n, d] and
x_0.npy [n, d] (diffuse's result from x_T). Prints one JSON line: the best wall time of
`repeats` runs, points/s, and the max |difference| to diffuse's result (both compute in float64).
"""
import argparse
import json
import math
import time

import numpy as np
import torch


def mixture_x0(x, sigma, weights, means, covs):
    """E[x0 | x] for x = x0 + sigma*eps, x0 ~ sum_k w_k N(m_k, C_k): [n, d] -> [n, d].

    Per component k (V_k = C_k + sigma^2 I): log w_k + log N(x; m_k, V_k) and the component
    posterior mean m_k + C_k V_k^{-1} (x - m_k); then the softmax-weighted sum over k.
    """
    n, d = x.shape
    eye = torch.eye(d, dtype=x.dtype)
    logps, x0s = [], []
    for k in range(weights.shape[0]):
        v = covs[k] + sigma * sigma * eye
        v_inv = torch.linalg.inv(v)
        r = x - means[k]                                # [n, d]
        rv = r @ v_inv                                  # [n, d] (V_k symmetric)
        maha = (r * rv).sum(dim=1)
        logps.append(math.log(float(weights[k])) - 0.5 * (maha + float(torch.logdet(v)) + d * math.log(2 * math.pi)))
        x0s.append(means[k] + rv @ covs[k])             # m_k + (C_k V_k^{-1} r) as rows: r V_k^{-1} C_k
    post = torch.softmax(torch.stack(logps, dim=1), dim=1)   # [n, K] responsibilities
    return torch.einsum("nk,kni->ni", post, torch.stack(x0s, dim=0))


def dpmpp_2m(x, sigmas, weights, means, covs):
    old = None
    h_last = None
    for i in range(len(sigmas) - 1):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        denoised = mixture_x0(x, s, weights, means, covs)
        if s_next == 0.0:
            x = denoised
        else:
            h = math.log(s) - math.log(s_next)          # t = -log sigma
            if old is None:
                x = (s_next / s) * x - math.expm1(-h) * denoised
            else:
                r = h_last / h
                d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old
                x = (s_next / s) * x - math.expm1(-h) * d
            h_last = h
        old = denoised
    return x


def main():
    p = argparse.ArgumentParser()
    p.add_argument("dir")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    load = lambda name: torch.from_numpy(np.load(f"{a.dir}/{name}.npy")).to(torch.float64)
    weights, means, covs = load("mixture_weights"), load("mixture_means"), load("mixture_covs")
    sigmas = np.load(f"{a.dir}/sigmas.npy")
    x_t, ours = load("x_T"), load("x_0")
    best = float("inf")
    out = None
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        out = dpmpp_2m(x_t.clone(), sigmas, weights, means, covs)
        best = min(best, time.perf_counter() - t0)
    n = x_t.shape[0]
    print(json.dumps({"torch_version": torch.__version__, "threads": a.threads, "points": n,
                      "steps": len(sigmas) - 1, "seconds": best, "points_per_second": n / best,
                      "max_abs_diff_vs_diffuse": float((out - ours).abs().max())}))


if __name__ == "__main__":
    main()
