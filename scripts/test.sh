#!/usr/bin/env bash
# Builds and runs every test: the README's second command, and what CI runs.
#   bash scripts/test.sh            # OpenMP backend (its serial twins run the same bodies serially)
#   DIFFUSE_BACKEND=serial bash scripts/test.sh
# Output: CTest's summary ("100% tests passed, 0 tests failed out of N").
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
diffuse_install_deps

backend="${DIFFUSE_BACKEND:-openmp}"
build="build/${backend}"
cmake -S . -B "$build" -DDIFFUSE_BACKEND="$backend" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j "$(diffuse_jobs)"
ctest --test-dir "$build" -j "$(diffuse_jobs)" --output-on-failure --timeout 900
