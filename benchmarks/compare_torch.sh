#!/usr/bin/env bash
# The end-to-end sampling benchmark against PyTorch, in one run (issue 3, "Speed"):
#   1,000,000 2-D points from an 8-component Gaussian mixture with its exact denoiser and
#   DPM-Solver++(2M), 20 steps, float64 — diffuse (bench_samplers, BM_mixture_sampling) and the same
#   computation in PyTorch on the CPU (benchmarks/torch_mixture_sampling.py), from the same x_T.
#
#   bash benchmarks/compare_torch.sh [threads]      (default 2)
#
# scripts/deps.sh installs python3-torch (Debian) when missing. Prints both times, the ratio, and the largest
# difference between the two results (both are float64; expect ~1e-12).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
diffuse_install_deps
threads="${1:-2}"
build="build/openmp"
cmake -S . -B "$build" -DDIFFUSE_BACKEND=openmp -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j "$(diffuse_jobs)" --target bench_samplers
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
"$build/benchmarks/bench_samplers" --dump_dir="$dir" \
  --benchmark_filter="BM_mixture_sampling/1000000/${threads}/" \
  --benchmark_repetitions=3 --benchmark_report_aggregates_only=true \
  --benchmark_format=json --benchmark_out="$dir/diffuse.json" >/dev/null
/usr/bin/python3 benchmarks/torch_mixture_sampling.py "$dir" --threads "$threads" --repeats 3 > "$dir/torch.json"
/usr/bin/python3 - "$dir" <<'PY'
import json, sys
d = sys.argv[1]
ours = [b for b in json.load(open(f"{d}/diffuse.json"))["benchmarks"] if b["name"].endswith("_median")][0]
torch = json.load(open(f"{d}/torch.json"))
t_ours = ours["real_time"] / 1e3 if ours["time_unit"] == "ms" else ours["real_time"]
print(f"diffuse: {t_ours:.3f} s (median of 3), {torch['points'] / t_ours:,.0f} points/s")
print(f"PyTorch {torch['torch_version']}: {torch['seconds']:.3f} s (best of 3), {torch['points_per_second']:,.0f} points/s, "
      f"{torch['threads']} threads")
print(f"ratio PyTorch / diffuse time: {torch['seconds'] / t_ours:.2f}x")
print(f"max |diffuse - PyTorch| = {torch['max_abs_diff_vs_diffuse']:.2e}")
PY
