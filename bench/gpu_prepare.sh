#!/usr/bin/env bash
# Prepares what bench/gpu_run.sh needs on a GPU machine that has LibTorch, CMake and a compiler
# but neither nad's other dependencies nor a network: copies Debian's CLI11, nlohmann-json, stb,
# zlib and GoogleTest (headers, CMake files, libraries) under .gpu/deps/usr, and packs the
# CIFAR-10 image folders into .gpu/cifar10.tar.gz (about 55 MB). .gpu/ is for git to ignore
# (add it to .git/info/exclude); the device tool carries it.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA_DIR=${DATA_DIR:-../shared/data/cifar10}
scripts/setup.sh
deps=.gpu/deps/usr
lib=$deps/lib/x86_64-linux-gnu
rm -rf .gpu/deps
mkdir -p "$deps/include" "$deps/share/cmake" "$lib/cmake"
cp -r /usr/include/{stb,nlohmann,CLI,gtest,gmock,zlib.h,zconf.h} "$deps/include/"
cp -r /usr/share/cmake/{CLI11,nlohmann_json} "$deps/share/cmake/"
cp -r /usr/lib/x86_64-linux-gnu/cmake/GTest "$lib/cmake/"
cp /usr/lib/x86_64-linux-gnu/{libgtest.a,libgtest_main.a,libgmock.a,libgmock_main.a,libz.a} "$lib/"
cp -L /usr/lib/x86_64-linux-gnu/libstb.so.0 "$lib/"
ln -sf libstb.so.0 "$lib/libstb.so"
if [ ! -f .gpu/cifar10.tar.gz ]; then
  tar czf .gpu/cifar10.tar.gz.tmp -C "$(dirname "$DATA_DIR")" --transform "s|^$(basename "$DATA_DIR")|cifar10|" \
    "$(basename "$DATA_DIR")"
  mv .gpu/cifar10.tar.gz.tmp .gpu/cifar10.tar.gz
fi
# Refool's natural reflections (bench/natural_reflections.sh), where they were made.
if [ -d bench/runs/natural-reflections ]; then
  rm -rf .gpu/natural-reflections
  cp -r bench/runs/natural-reflections .gpu/natural-reflections
fi
# The BadNets model and its NAD teacher from bench/attacks.sh, for bench/gpu_step_timing.sh.
if [ -f bench/runs/attacks/badnets/erase/teacher.pt ]; then
  mkdir -p .gpu/badnets
  cp bench/runs/attacks/badnets/train/model.pt .gpu/badnets/model.pt
  cp bench/runs/attacks/badnets/erase/teacher.pt .gpu/badnets/teacher.pt
fi
du -sh .gpu/*
