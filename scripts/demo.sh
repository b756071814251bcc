#!/usr/bin/env bash
# The README's first command: builds and runs the demo, writing pictures and reports to
# demo-output/ (or the folder given as the first argument): the noise schedules (report.md),
# every sampler on a 2-D class-labelled mixture with its exact denoiser (samplers.md), guidance's
# fidelity–diversity trade-off on an overlapping mixture (guidance.md), and the
# conditional U-Net's plumbing (unet.md: summary, diffusers folder round trip, a training step).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
diffuse_install_deps

out="${1:-demo-output}"
build="build/demo"
cmake -S . -B "$build" -DDIFFUSE_BACKEND=openmp -DCMAKE_BUILD_TYPE=Release \
      -DDIFFUSE_BUILD_TESTS=OFF -DDIFFUSE_BUILD_BENCHMARKS=OFF >/dev/null
cmake --build "$build" -j "$(diffuse_jobs)" --target example_schedules example_samplers example_guidance example_unet
mkdir -p "$out"
"$build/examples/example_schedules" "$out"
"$build/examples/example_samplers" "$out"
"$build/examples/example_guidance" "$out"
"$build/examples/example_unet" "$out"
echo
echo "demo: wrote $(ls "$out" | wc -l) files to $out/ (see $out/report.md, $out/samplers.md, $out/guidance.md and $out/unet.md)"
