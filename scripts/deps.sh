#!/usr/bin/env bash
# Installs, from Debian's packages, whatever the build, tests and demo need and the machine
# lacks. Sourced by scripts/demo.sh and scripts/test.sh; safe to run again (installs nothing
# when everything is present). Needs root (or sudo) only when something is missing.
set -euo pipefail

DIFFUSE_PACKAGES=(
  g++ cmake make
  libeigen3-dev xtensor-dev xtl-dev libxsimd-dev
  doctest-dev libbenchmark-dev
  python3 python3-numpy python3-matplotlib jupyter-nbconvert python3-ipykernel
  python3-torch
)

diffuse_install_deps() {
  local missing=()
  for p in "${DIFFUSE_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    return 0
  fi
  echo "diffuse: installing missing Debian packages: ${missing[*]}"
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# The Python that has Debian's numpy/matplotlib (a pyenv or venv python3 first on PATH may not).
diffuse_python() {
  if [ -x /usr/bin/python3 ]; then echo /usr/bin/python3; else command -v python3; fi
}

diffuse_jobs() {
  local n
  n=$(nproc 2>/dev/null || echo 2)
  echo "$n"
}
