#!/usr/bin/env bash
# One prepared run on a CUDA machine, sized for the device tool's 10-minute command: builds nad
# against the machine's LibTorch, times the benchmark workloads in fp32 and bf16, trains a
# BadNets WRN-16-1 and erases it with `nad erase`, runs the GPU tests (`*Cuda*`), and trains
# three Refool variants (issue 4) in the background for the time left. Runs that time stops
# keep their state: `PHASE=refool bench/gpu_run.sh` on the same (warm) machine continues them.
#
# Results go to $OUT (default out/gpu): steps.log, the build, benchmark and test logs, and
# results.tar.gz (benchmark JSON files, attacks.json, the runs' summaries and metrics). Run
# folders go to RUNS (default gpu-runs, which the next call on a warm machine still finds).
#
# Needs, beside the repository, what bench/gpu_prepare.sh makes: .gpu/cifar10.tar.gz (the
# CIFAR-10 image folders) and .gpu/deps/usr (CLI11, nlohmann-json, stb, zlib and GoogleTest from
# Debian), as the GPU machine has neither them nor a network.
#
# Environment: OUT, RUNS, BUDGET (seconds for the whole script, default 560), PHASE (all |
# refool | protocol), BADNETS_EPOCHS (protocol phase, default 6), DEVICE (default cuda), BUILD_DIR (default build-cuda), SKIP_BUILD (1: use BUILD_DIR
# as it is), REPEATS (default 3), DATA_DIR (default .gpu/cifar10), REFOOL_EPOCHS (default 40).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/gpu}
RUNS=${RUNS:-gpu-runs}
BUDGET=${BUDGET:-560}
PHASE=${PHASE:-all}
DEVICE=${DEVICE:-cuda}
BUILD_DIR=${BUILD_DIR:-build-cuda}
SKIP_BUILD=${SKIP_BUILD:-0}
REPEATS=${REPEATS:-3}
DATA_DIR=${DATA_DIR:-.gpu/cifar10}
REFOOL_EPOCHS=${REFOOL_EPOCHS:-40}
RES=$RUNS/results  # packed into $OUT/results.tar.gz at the end (the tool returns 8 files)
mkdir -p "$OUT" "$RES/bench" "$RUNS/attacks"
log() { echo "[$(date +%T) +${SECONDS}s] $*" | tee -a "$OUT/steps.log"; }
left() { echo $((BUDGET - SECONDS)); }
collect() {  # every finished run folder into attacks.json (nothing trains: ERASE=0, no attack)
  python3 - "$RES/attacks-progress.json" "$RUNS/attacks" <<'PY'
import csv, glob, json, os, sys
rows = {}
for metrics in sorted(glob.glob(os.path.join(sys.argv[2], "*", "*", "metrics.csv"))):
    with open(metrics) as f:
        rows[metrics] = list(csv.DictReader(f))[-3:]
json.dump(rows, open(sys.argv[1], "w"), indent=1)
PY
  if [ -f "$RUNS/attacks/badnets/train/model.pt" ]; then
    NAD=$NAD OUT=$RUNS/attacks RUNS=$RUNS/attacks RESULTS=$RES/attacks.json ERASE=0 bench/attacks.sh badnets \
      >>"$OUT/attacks.log" 2>&1
  fi
}
pack() {
  collect
  tar czf "$OUT/results.tar.gz" -C "$RUNS" $(cd "$RUNS" && find . -name '*.json' -o -name '*.csv' \
    -o -name '*.log' -o -name '*.seconds' -o -name '*.md' -o -name '*.txt' -o -name 'samples.png' \
    -o -name '00[0-9].png' | grep -v /state/) 2>/dev/null
  log "packed results.tar.gz"
}
trap pack EXIT

TORCH_LIB=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))' 2>/dev/null)/lib
export LD_LIBRARY_PATH=$TORCH_LIB:$PWD/.gpu/deps/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
NAD=$BUILD_DIR/nad
BENCH=$BUILD_DIR/bench/nad_bench
log "start: phase $PHASE, device $DEVICE, budget ${BUDGET}s"
if [ ! -d "$DATA_DIR" ] && [ -f .gpu/cifar10.tar.gz ]; then
  tar xzf .gpu/cifar10.tar.gz -C .gpu &
  untar=$!
fi

# Refool (issue 4: ASR short of 80% on the CPU) as the defaults, with every target-class image
# poisoned, and with Refool's adversarial selection (200 of 1,000 candidates); `timeout` stops
# nad with SIGTERM, which keeps its state, and a later call resumes it.
refool() {  # NAME [options]
  local name=$1 start=$SECONDS
  shift
  local run=$RUNS/attacks/$name
  local common=(--dataset cifar10 --data-dir "$DATA_DIR" --seed 0 --threads 4 --device "$DEVICE"
                --precision bf16 --attack refool --target 5)
  mkdir -p "$run"
  if [ -f "$run/train/state/args.json" ]; then
    timeout $(($(left) - 25)) "$NAD" train --resume "$run/train" --threads 4 2>>"$run/train.log"
  elif [ ! -f "$run/train/model.pt" ]; then
    timeout $(($(left) - 25)) "$NAD" train "${common[@]}" "$@" --arch wrn-16-1 \
      --epochs "$REFOOL_EPOCHS" --out "$run/train" 2>>"$run/train.log"
  fi
  log "$name train rc $?: $(tail -1 "$run/train/metrics.csv" 2>/dev/null)"
  echo $((SECONDS - start)) >>"$run/train.seconds"
  [ -f "$run/train/model.pt" ] && [ ! -d "$run/train/state" ] || return
  local reflections=()
  if [ -d "$run/train/reflections" ]; then reflections=(--reflections "$run/train/reflections"); fi
  start=$SECONDS
  if [ -f "$run/erase/state/args.json" ]; then
    timeout $(($(left) - 15)) "$NAD" erase --resume "$run/erase" --threads 4 2>>"$run/erase.log"
  else
    timeout $(($(left) - 15)) "$NAD" erase "${common[@]}" "${reflections[@]}" \
      --model "$run/train/model.pt" --out "$run/erase" 2>>"$run/erase.log"
  fi
  log "$name erase rc $?"
  echo $((SECONDS - start)) >>"$run/erase.seconds"
}
start_refool() {
  refool refool & refool_pids+=($!)
  refool refool-rate1 --poison-rate 1 & refool_pids+=($!)
  refool refool-select --reflection-select 200 --prep-epochs 5 & refool_pids+=($!)
}
wait_refool() {
  log "waiting for refool"
  wait "${refool_pids[@]}"
}
refool_pids=()

build_tools() {  # configures and builds nad and nad_bench (with NCCL if it compiles)
  TORCH_PREFIX=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')
  generator=()
  if command -v ninja >/dev/null; then generator=(-G Ninja); fi
  # NCCL's header comes with PyTorch's nvidia-nccl package, not inside LibTorch.
  nccl_include=$(python3 -c 'import nvidia.nccl,os;print(os.path.join(list(nvidia.nccl.__path__)[0],"include"))' 2>/dev/null)
  flags=()
  if [ -f "$nccl_include/nccl.h" ]; then flags=(-DCMAKE_CXX_FLAGS="-I$nccl_include"); fi
  configure() {
    cmake -S . -B "$BUILD_DIR" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_PREFIX_PATH="$TORCH_PREFIX;$PWD/.gpu/deps/usr" -DCMAKE_DISABLE_FIND_PACKAGE_PkgConfig=ON \
      -DNAD_HAVE_GLOO_HEADERS=0 "${flags[@]}" "$@" >>"$OUT/build.log" 2>&1
  }
  log "configure"
  configure || { log "configure failed"; tail -30 "$OUT/build.log"; exit 1; }
  log "build nad, nad_bench"
  if ! cmake --build "$BUILD_DIR" -j "$(nproc)" --target nad nad_bench >>"$OUT/build.log" 2>&1; then
    log "build failed; again without NCCL"
    grep -m3 -A3 "error" "$OUT/build.log"
    configure -DNAD_WITH_NCCL=OFF
    cmake --build "$BUILD_DIR" -j "$(nproc)" --target nad nad_bench >>"$OUT/build.log" 2>&1 ||
      { log "build failed"; grep -B2 -A6 "error" "$OUT/build.log" | head -60; exit 1; }
  fi
  log "built"
}

# PHASE=protocol: the exit check, the BadNets model and its teacher, and the NAD protocol,
# on a fresh machine (a shorter second call).
if [ "$PHASE" = protocol ]; then
  [ "$SKIP_BUILD" != 1 ] && build_tools
  [ -n "${untar:-}" ] && wait "$untar"
  small=(train --dataset cifar10 --data-dir "$DATA_DIR" --arch wrn-16-1 --epochs 1 --device "$DEVICE"
         --attack badnets --target 5 --quiet)
  "$NAD" "${small[@]}" --out "$RUNS/exit-check" >"$OUT/exit-check.log" 2>&1
  rc=$?
  log "exit check: nad train rc $rc"
  if [ $rc != 0 ] && command -v cuda-gdb >/dev/null; then
    cuda-gdb -q -batch -ex run -ex bt --args "$NAD" "${small[@]}" --out "$RUNS/exit-check-gdb" \
      >"$OUT/backtrace.log" 2>&1
    log "backtrace: $(grep -m8 '^#' "$OUT/backtrace.log" | tr '\n' ' ')"
  fi
  log "attacks.sh badnets, ${BADNETS_EPOCHS:-6} epochs"
  NAD=$NAD DATA_DIR=$DATA_DIR OUT=$RUNS/attacks RUNS=$RUNS/attacks RESULTS=$RES/attacks.json \
    DEVICE=$DEVICE PRECISION=bf16 EPOCHS=${BADNETS_EPOCHS:-6} bench/attacks.sh badnets \
    >>"$OUT/attacks.log" 2>&1 || log "attacks.sh failed"
  log "badnets: $(cat "$RUNS"/attacks/badnets/*.seconds 2>/dev/null | tr '\n' ' ')s"
  for precision in bf16 fp32; do
    [ "$(left)" -gt 40 ] || break
    log "bench eval,nad-protocol $precision"
    "$BENCH" --workload nad-protocol,eval --device "$DEVICE" --precision "$precision" \
      --repeats "$REPEATS" --data-dir "$DATA_DIR" --model "$RUNS/attacks/badnets/train/model.pt" \
      --teacher "$RUNS/attacks/badnets/erase/teacher.pt" --out "$RES/bench" >>"$OUT/bench.log" 2>&1 ||
      log "bench failed"
  done
  grep -E "median" "$OUT/bench.log" | tee -a "$OUT/steps.log"
  log "done"
  exit 0
fi
if [ "$PHASE" = refool ]; then
  [ -n "${untar:-}" ] && wait "$untar"
  start_refool
  wait_refool
  log "done"
  exit 0
fi

{ nvidia-smi 2>&1 | head -15; g++ --version | head -1; cmake --version | head -1
  python3 -c 'import torch;print("torch", torch.__version__, torch.version.cuda)' 2>&1; nproc; } \
  >"$RES/machine.txt" 2>&1

[ "$SKIP_BUILD" != 1 ] && build_tools
[ -n "${untar:-}" ] && wait "$untar"
log "data: $(ls "$DATA_DIR/train" | wc -l) classes"

# 1. One epoch of backdoored training from scratch, both precisions.
for precision in fp32 bf16; do
  log "bench train-epoch $precision"
  "$BENCH" --workload train-epoch --device "$DEVICE" --precision "$precision" --repeats "$REPEATS" \
    --data-dir "$DATA_DIR" --out "$RES/bench" >>"$OUT/bench.log" 2>&1 || log "bench failed"
done
epoch=$(python3 - "$RES/bench" <<'PY'
import glob, json, os, sys
files = sorted(glob.glob(os.path.join(sys.argv[1], "train-epoch-*-bf16-*.json")))
print(json.load(open(files[-1]))["median_run"]["phases"]["train"] if files else 5)
PY
)
log "bf16 training epoch: ${epoch}s"

# 2. The backdoored model and its NAD teacher, through the CLI (bf16).
epochs=$(python3 -c "print(max(3, min(20, int(60 / max($epoch, 0.5)))))")
log "attacks.sh badnets, $epochs epochs"
NAD=$NAD DATA_DIR=$DATA_DIR OUT=$RUNS/attacks RUNS=$RUNS/attacks RESULTS=$RES/attacks.json DEVICE=$DEVICE \
  PRECISION=bf16 EPOCHS=$epochs bench/attacks.sh badnets >>"$OUT/attacks.log" 2>&1 || log "attacks.sh failed"
MODEL=$RUNS/attacks/badnets/train/model.pt
TEACHER=$RUNS/attacks/badnets/erase/teacher.pt
log "badnets: $(cat "$RUNS"/attacks/badnets/*.seconds 2>/dev/null | tr '\n' ' ')s"

# 3. Evaluation and the NAD protocol on that model, both precisions; evaluation also at other
# batch sizes, to check the CUDA default (1024).
if [ -f "$TEACHER" ]; then
  for precision in fp32 bf16; do
    log "bench eval,nad-protocol $precision"
    "$BENCH" --workload eval,nad-protocol --device "$DEVICE" --precision "$precision" \
      --repeats "$REPEATS" --data-dir "$DATA_DIR" --model "$MODEL" --teacher "$TEACHER" \
      --out "$RES/bench" >>"$OUT/bench.log" 2>&1 || log "bench failed"
  done
  for batch in 256 4096; do
    log "bench eval bf16, batch $batch"
    "$BENCH" --workload eval --device "$DEVICE" --precision bf16 --eval-batch-size "$batch" \
      --repeats "$REPEATS" --data-dir "$DATA_DIR" --model "$MODEL" --tag "batch$batch" \
      --out "$RES/bench" >>"$OUT/bench.log" 2>&1 || log "bench failed"
  done
fi
grep -E "median" "$OUT/bench.log" | tee -a "$OUT/steps.log"

# 4. Refool in the background; the GPU tests meanwhile.
log "refool variants, $REFOOL_EPOCHS epochs each, in the background"
start_refool
if [ "$SKIP_BUILD" != 1 ]; then
  log "build nad_tests"
  cmake --build "$BUILD_DIR" -j "$(($(nproc) - 6))" --target nad_tests >>"$OUT/build.log" 2>&1 ||
    log "tests' build failed"
fi
if [ -x "$BUILD_DIR/tests/nad_tests" ]; then
  log "GPU tests"
  timeout $(($(left) - 30)) "$BUILD_DIR/tests/nad_tests" --gtest_filter='*Cuda*' >"$OUT/tests.log" 2>&1
  log "GPU tests rc $?: $(grep -E '^\[  (PASSED|FAILED|SKIPPED) ' "$OUT/tests.log" | tr '\n' ' ')"
fi
wait_refool
log "done"
