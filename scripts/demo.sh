#!/usr/bin/env bash
# The README's first command: builds and runs the demo, writing pictures and a report to
# demo-output/ (or the folder given as the first argument).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
diffuse_install_deps

out="${1:-demo-output}"
build="build/demo"
cmake -S . -B "$build" -DDIFFUSE_BACKEND=openmp -DCMAKE_BUILD_TYPE=Release \
      -DDIFFUSE_BUILD_TESTS=OFF -DDIFFUSE_BUILD_BENCHMARKS=OFF >/dev/null
cmake --build "$build" -j "$(diffuse_jobs)" --target example_schedules
mkdir -p "$out"
"$build/examples/example_schedules" "$out"
echo
echo "demo: wrote $(ls "$out" | wc -l) files to $out/ (see $out/report.md)"
