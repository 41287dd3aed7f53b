#!/usr/bin/env bash
# Builds the reader fuzz targets in build-fuzz/ (clang, -fsanitize=fuzzer,address,undefined) and
# runs each one in turn for SECONDS (default 600) on a working copy of its seed corpus.
#
#   fuzz/run_all.sh [SECONDS] [TARGET...]      e.g. fuzz/run_all.sh 60 idx_fuzzer
#
# Environment: BUILD (default build-fuzz), JOBS (build parallelism, default 1).
# Per target it writes $BUILD/fuzz-logs/<target>.log (libFuzzer's output), grows
# $BUILD/fuzz-corpus/<target>/ (seeded from fuzz/corpus/<name>/; never committed), keeps any
# crashing input in $BUILD/fuzz-artifacts/<target>/, and prints one summary line: seconds run,
# inputs executed, corpus size and whether a crash, leak, sanitizer report, timeout or OOM
# happened. Exit status 1 when any target found something.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
shift || true
build=${BUILD:-build-fuzz}
all=(idx_fuzzer cifar10_fuzzer cifar100_fuzzer ppm_fuzzer image_fuzzer gtsrb_csv_fuzzer
  tiny_imagenet_val_fuzzer torch_file_fuzzer torchscript_archive_fuzzer)
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${all[@]}")

if [ ! -f "$build/CMakeCache.txt" ]; then
  CC=clang CXX=clang++ cmake -S . -B "$build" -DNAD_FUZZ=ON -DNAD_BUILD_TESTS=OFF \
    -DNAD_BUILD_BENCH=OFF >"$build.configure.log" 2>&1 || { cat "$build.configure.log"; exit 2; }
fi
cmake --build "$build" --target "${targets[@]}" -j"${JOBS:-1}" >"$build/fuzz-build.log" 2>&1 ||
  { tail -n 40 "$build/fuzz-build.log"; exit 2; }

# Longest input per target: room for two CIFAR-10 or CIFAR-100 records; the checkpoint
# corpus' files.
max_len() {
  case "$1" in
    cifar10_fuzzer | cifar100_fuzzer) echo 8192 ;;
    image_fuzzer | torch_file_fuzzer) echo 16384 ;;
    torchscript_archive_fuzzer) echo 8192 ;;
    *) echo 4096 ;;
  esac
}

mkdir -p "$build/fuzz-logs"
status=0
printf '%-18s %8s %12s %8s  %s\n' target seconds execs corpus result
for target in "${targets[@]}"; do
  name=${target%_fuzzer}
  corpus="$build/fuzz-corpus/$target"
  artifacts="$build/fuzz-artifacts/$target"
  log="$build/fuzz-logs/$target.log"
  mkdir -p "$corpus" "$artifacts"
  cp -n fuzz/corpus/"$name"/* "$corpus"/ 2>/dev/null || true
  start=$(date +%s)
  rc=0
  "$build/fuzz/$target" -max_total_time="$seconds" -max_len="$(max_len "$target")" \
    -rss_limit_mb=4096 -timeout=60 -print_final_stats=1 \
    -artifact_prefix="$artifacts/" "$corpus" >"$log" 2>&1 || rc=$?
  elapsed=$(($(date +%s) - start))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  files=$(find "$corpus" -type f | wc -l)
  findings=$(grep -E -c 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:|SUMMARY: |libFuzzer: (deadly signal|timeout|out-of-memory)' "$log" || true)
  if [ "$rc" -eq 0 ] && [ "$findings" -eq 0 ]; then
    result="clean"
  else
    result="FOUND (exit $rc; see $log, $artifacts/)"
    status=1
  fi
  printf '%-18s %8s %12s %8s  %s\n' "$target" "$elapsed" "${execs:-?}" "$files" "$result"
done
exit $status
