#!/usr/bin/env bash
# The U-Net benchmark against PyTorch, in one run (issue 4, "Speed"; docs/performance.md §3):
#   bench_unet (SGEMM peak, forward and training step of the small and cross configs at batch 1, 16,
#   64) and benchmarks/torch_unet.py (the same configs, the same weights and inputs, the same thread
#   count, torch.nn modules mirroring diffusers), then one table with images/s, GFLOP/s, % of the SGEMM
#   peak and the speed-up over PyTorch.
#
#   bash benchmarks/compare_torch_unet.sh [threads]      (default 2)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
diffuse_install_deps
threads="${1:-2}"
build="build/openmp"
cmake -S . -B "$build" -DDIFFUSE_BACKEND=openmp -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j "$(diffuse_jobs)" --target bench_unet
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
"$build/benchmarks/bench_unet" --save_dir="$dir/models" \
  --benchmark_filter="sgemm/1024/1024/1024/${threads}|unet_(forward|train)/[01]/[0-9]+/${threads}/" \
  --benchmark_min_time=2 --benchmark_format=json --benchmark_out="$dir/diffuse.json" >/dev/null
/usr/bin/python3 benchmarks/torch_unet.py "$dir/models" --threads "$threads" > "$dir/torch.json"
/usr/bin/python3 - "$dir" <<'PY'
import json, sys
d = sys.argv[1]
ours = json.load(open(f"{d}/diffuse.json"))["benchmarks"]
torch = json.load(open(f"{d}/torch.json"))
peak = max(b["GFLOP/s"] for b in ours if b["name"].startswith("BM_sgemm")) / 1e9
print(f"Eigen SGEMM peak (1024^3, {torch['threads']} threads): {peak:.1f} GFLOP/s;  PyTorch {torch['torch_version']}")
names = {0: "small", 1: "cross"}
for cfg, entry in torch["configs"].items():
    print(f"\n{cfg}: {entry['parameters']:,} parameters; max |PyTorch - diffuse| forward = "
          f"{entry['max_abs_diff_vs_diffuse']:.2e} (max |y| {entry['max_abs_output']:.2f})")
    print(f"{'':14}{'batch':>6}{'diffuse img/s':>15}{'GFLOP/s':>9}{'% peak':>8}{'PyTorch img/s':>15}{'speed-up':>10}")
    for kind, key in (("forward", "forward"), ("train step", "train")):
        for b in ours:
            parts = b["name"].split("/")
            if not parts[0].endswith("unet_" + key) or names[int(parts[1])] != cfg:
                continue
            batch = parts[2]
            ips = b["items_per_second"]
            gf = b["GFLOP/s"] / 1e9
            t = entry["batches"][batch][f"{key}_images_per_second"]
            mem = f"  peak {b['peak_MB']:.0f} MB" if "peak_MB" in b else ""
            print(f"{kind:14}{batch:>6}{ips:>15.2f}{gf:>9.1f}{100 * gf / peak:>7.1f}%{t:>15.2f}{ips / t:>9.2f}x{mem}")
PY
