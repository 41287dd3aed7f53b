#!/usr/bin/env bash
# Installs the Debian packages nad needs to build, test and run; does nothing when they are
# all present.
set -euo pipefail
packages=(g++ cmake make pkg-config ccache libtorch-dev libopenblas0-openmp libcli11-dev
          nlohmann-json3-dev libstb-dev libgloo-dev zlib1g-dev libcairo2-dev libgtest-dev dataset-fashion-mnist)
# `scripts/setup.sh fuzz`: also what the readers' libFuzzer targets (fuzz/) need.
if [ "${1:-}" = fuzz ]; then packages+=(clang libclang-rt-14-dev); fi
# `scripts/setup.sh test`: Debian's PyTorch and torchvision, so the tests that compare with
# PyTorch (checkpoint parity for the ResNet-18s, export round trip, torchvision's architectures)
# run instead of being skipped. Never a runtime dependency of nad.
if [ "${1:-}" = test ]; then packages+=(python3-torch python3-torchvision); fi
# `scripts/setup.sh bench`: what the benchmark scripts' helpers need (bench/natural_reflections.sh
# cuts Refool reflections from photographs with Pillow).
if [ "${1:-}" = bench ]; then packages+=(python3-pil python3-numpy); fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
echo "setup: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
