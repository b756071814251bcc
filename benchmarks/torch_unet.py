#!/usr/bin/env python3
"""The PyTorch twin of benchmarks/bench_unet.cpp: the same U-Net configs, weights and inputs, timed on the
CPU with the same thread count (docs/performance.md §3).

bench_unet --save_dir=DIR writes DIR/<config>/{config.json, diffusion_pytorch_model.safetensors,
inputs.safetensors} (weights, batch-16 inputs, our forward output and the training target). This script
builds the model with tests/python/unet_mirror.py (torch.nn modules with diffusers' structure and names,
checked against diffusers' own modules), loads the weights, checks that its forward equals ours, then times

  forward      model(x, t, ...) under torch.no_grad()                     (inference)
  train step   forward, MSE against the target, backward, Adam step       (torch.optim.Adam, lr 1e-4)

at batch 1, 16 and 64 (inputs for other batch sizes repeat the batch-16 ones), best of `--repeats`, and
prints one JSON object.

    /usr/bin/python3 benchmarks/torch_unet.py DIR --threads 2
"""
import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "python"))
import safetensors_lite  # noqa: E402
import unet_mirror  # noqa: E402


def batch_of(tensor, batch):
    reps = (batch + tensor.shape[0] - 1) // tensor.shape[0]
    return tensor.repeat(reps, *([1] * (tensor.dim() - 1)))[:batch].contiguous()


def inputs_for(inputs, batch):
    out = {"sample": batch_of(inputs["sample"], batch), "timestep": batch_of(inputs["timestep"].float(), batch),
           "target": batch_of(inputs["target"], batch)}
    if "class_labels" in inputs:
        out["class_labels"] = batch_of(inputs["class_labels"], batch)
    if "encoder_hidden_states" in inputs:
        out["encoder_hidden_states"] = batch_of(inputs["encoder_hidden_states"], batch)
    return out


def call(model, x):
    args = [x["sample"], x["timestep"]]
    if isinstance(model, unet_mirror.UNet2DConditionModel):
        args.append(x["encoder_hidden_states"])
    return model(*args, class_labels=x.get("class_labels"))


def best_time(fn, repeats, min_seconds=1.0):
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        n, start = 0, time.perf_counter()
        while True:
            fn()
            n += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds:
                break
        best = min(best, elapsed / n)
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batches", default="1,16,64")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    result = {"torch_version": torch.__version__, "threads": torch.get_num_threads(), "configs": {}}
    for name in sorted(os.listdir(args.dir)):
        folder = os.path.join(args.dir, name)
        if not os.path.exists(os.path.join(folder, "config.json")):
            continue
        config = json.load(open(os.path.join(folder, "config.json")))
        model = unet_mirror.from_config(config)
        weights = safetensors_lite.load_file(os.path.join(folder, "diffusion_pytorch_model.safetensors"))
        model.load_state_dict(weights, strict=True)
        model.eval()
        inputs = safetensors_lite.load_file(os.path.join(folder, "inputs.safetensors"))
        entry = {"parameters": sum(p.numel() for p in model.parameters()), "batches": {}}
        with torch.no_grad():
            y = call(model, inputs_for(inputs, inputs["sample"].shape[0]))
        entry["max_abs_diff_vs_diffuse"] = float((y - inputs["output"]).abs().max())
        entry["max_abs_output"] = float(inputs["output"].abs().max())
        for batch in [int(b) for b in args.batches.split(",")]:
            x = inputs_for(inputs, batch)

            def forward():
                with torch.no_grad():
                    call(model, x)

            model.train()  # dropout is 0 in these configs; train mode only matters for autograd bookkeeping
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

            def train_step():
                optimizer.zero_grad(set_to_none=False)
                loss = torch.mean((call(model, x) - x["target"]) ** 2)
                loss.backward()
                optimizer.step()

            model.eval()
            t_fwd = best_time(forward, args.repeats)
            model.train()
            t_train = best_time(train_step, args.repeats)
            model.eval()
            entry["batches"][str(batch)] = {"forward_seconds": t_fwd, "forward_images_per_second": batch / t_fwd,
                                            "train_seconds": t_train, "train_images_per_second": batch / t_train}
        result["configs"][name] = entry
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
