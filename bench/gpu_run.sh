#!/usr/bin/env bash
# One prepared run on a CUDA machine, sized for the device tool's 10-minute command: builds nad
# against the machine's LibTorch, times the benchmark workloads (fp32 and bf16, and bf16 again
# without CUDA graphs for comparison), trains a BadNets WRN-16-1 and erases it with `nad erase`,
# runs the GPU tests (`*Cuda*`), and trains Refool with natural reflections (issue 4) over three
# seeds in the background for the time left. Runs that time stops keep their state:
# `PHASE=refool bench/gpu_run.sh` on the same (warm) machine continues them.
#
# Results go to $OUT (default out/gpu): steps.log, the build, benchmark and test logs, and
# results.tar.gz (benchmark JSON files, attacks.json, the runs' summaries and metrics). Run
# folders go to RUNS (default gpu-runs, which the next call on a warm machine still finds).
#
# Needs, beside the repository, what bench/gpu_prepare.sh makes: .gpu/cifar10.tar.gz (the
# CIFAR-10 image folders), .gpu/deps/usr (CLI11, nlohmann-json, stb, zlib and GoogleTest from
# Debian), as the GPU machine has neither them nor a network, and .gpu/natural-reflections.
#
# Environment: OUT, RUNS, BUDGET (seconds for the whole script, default 560), PHASE (all |
# refool | protocol), BADNETS_EPOCHS (protocol phase, default 6), DEVICE (default cuda),
# BUILD_DIR (default build-cuda), SKIP_BUILD (1: use BUILD_DIR as it is), REPEATS (default 3),
# DATA_DIR (default .gpu/cifar10), REFOOL_EPOCHS (default 40), GRAPHS (1, the default: CUDA graphs
# for all runs, and the workloads run once more without them for comparison; with GRAPHS=1 a
# failed first benchmark turns them off for the rest).
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
GRAPHS=${GRAPHS:-1}
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

# Refool (issue 4: ASR 0.3 points short of 80% on the CPU) with natural reflections, every
# target-class image poisoned and Refool's adversarial selection (200 of 1,000 candidates), the
# CPU's best setting, over three seeds; `timeout` stops nad with SIGTERM, which keeps its state,
# and a later call resumes it.
refool() {  # NAME SEED [options]
  local name=$1 seed=$2 start=$SECONDS
  shift 2
  local run=$RUNS/attacks/$name
  local common=(--dataset cifar10 --data-dir "$DATA_DIR" --seed "$seed" --threads 4 --device "$DEVICE"
                --precision bf16 --attack refool --target 5 --cuda-graphs "$GRAPHS")
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
  local natural=(--poison-rate 1 --reflection-select 200 --reflections .gpu/natural-reflections)
  [ -d .gpu/natural-reflections ] || { log "no .gpu/natural-reflections: Refool skipped"; return; }
  for seed in 0 1 2; do
    refool "refool-natural-s$seed" "$seed" "${natural[@]}" & refool_pids+=($!)
  done
}
wait_refool() {
  log "waiting for refool"
  [ ${#refool_pids[@]} -eq 0 ] || wait "${refool_pids[@]}"
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
    if ! cmake --build "$BUILD_DIR" -j "$(nproc)" --target nad nad_bench >>"$OUT/build.log" 2>&1; then
      log "build failed; again without CUDA graphs"
      grep -B2 -A6 "error" "$OUT/build.log" | head -40 | tee -a "$OUT/steps.log"
      configure -DNAD_WITH_NCCL=OFF -DNAD_CUDA_GRAPHS=OFF
      cmake --build "$BUILD_DIR" -j "$(nproc)" --target nad nad_bench >>"$OUT/build.log" 2>&1 ||
        { log "build failed"; grep -B2 -A6 "error" "$OUT/build.log" | head -60; exit 1; }
    fi
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

# nad_bench with the run's graph setting; if the first run with graphs fails, they are turned
# off for everything after it (the log keeps why).
bench() {  # TAG [nad_bench options]
  local tag=$1
  shift
  local tags=()
  [ -n "$tag" ] && tags=(--tag "$tag")
  if ! "$BENCH" "$@" --device "$DEVICE" --repeats "$REPEATS" --data-dir "$DATA_DIR" \
      --cuda-graphs "$GRAPHS" "${tags[@]}" --out "$RES/bench" >>"$OUT/bench.log" 2>&1; then
    log "bench $* failed (graphs $GRAPHS)"
    if [ "$GRAPHS" = 1 ]; then
      GRAPHS=0
      log "CUDA graphs off from here; again"
      "$BENCH" "$@" --device "$DEVICE" --repeats "$REPEATS" --data-dir "$DATA_DIR" \
        --cuda-graphs 0 "${tags[@]}" --out "$RES/bench" >>"$OUT/bench.log" 2>&1 || log "failed again"
    fi
  fi
  grep "cuda graph\|capture" "$OUT/bench.log" | tail -2
}

# 1. One epoch of backdoored training from scratch: bf16 and fp32, and bf16 without CUDA graphs.
log "bench train-epoch bf16"
bench "" --workload train-epoch --precision bf16
log "bench train-epoch fp32"
bench "" --workload train-epoch --precision fp32
log "bench train-epoch bf16 without graphs"
"$BENCH" --workload train-epoch --device "$DEVICE" --precision bf16 --repeats "$REPEATS" \
  --data-dir "$DATA_DIR" --cuda-graphs 0 --tag eager --out "$RES/bench" >>"$OUT/bench.log" 2>&1 ||
  log "bench failed"
epoch=$(python3 - "$RES/bench" <<'PY'
import glob, json, os, sys
files = sorted(f for f in glob.glob(os.path.join(sys.argv[1], "train-epoch-*-bf16-*.json"))
               if "-eager-" not in f)
print(json.load(open(files[-1]))["median_run"]["phases"]["train"] if files else 5)
PY
)
log "bf16 training epoch: ${epoch}s"
grep -E "median" "$OUT/bench.log" | tee -a "$OUT/steps.log"

# 2. The backdoored model and its NAD teacher, through the CLI (bf16).
epochs=$(python3 -c "print(max(6, min(20, int(40 / max($epoch, 0.5)))))")
log "attacks.sh badnets, $epochs epochs"
NAD=$NAD DATA_DIR=$DATA_DIR OUT=$RUNS/attacks RUNS=$RUNS/attacks RESULTS=$RES/attacks.json DEVICE=$DEVICE \
  PRECISION=bf16 EPOCHS=$epochs COMMON_ARGS="--cuda-graphs $GRAPHS" bench/attacks.sh badnets \
  >>"$OUT/attacks.log" 2>&1 || log "attacks.sh failed"
MODEL=$RUNS/attacks/badnets/train/model.pt
TEACHER=$RUNS/attacks/badnets/erase/teacher.pt
log "badnets: $(cat "$RUNS"/attacks/badnets/*.seconds 2>/dev/null | tr '\n' ' ')s"

# 3. Evaluation and the NAD protocol on that model: bf16 and fp32, and bf16 without CUDA graphs;
# evaluation also at other batch sizes, to check the CUDA default (1024).
if [ -f "$TEACHER" ]; then
  for precision in bf16 fp32; do
    log "bench eval,nad-protocol $precision"
    bench "" --workload eval,nad-protocol --precision "$precision" --model "$MODEL" --teacher "$TEACHER"
  done
  log "bench nad-protocol bf16 without graphs"
  "$BENCH" --workload nad-protocol --device "$DEVICE" --precision bf16 --repeats "$REPEATS" \
    --data-dir "$DATA_DIR" --model "$MODEL" --teacher "$TEACHER" --cuda-graphs 0 --tag eager \
    --out "$RES/bench" >>"$OUT/bench.log" 2>&1 || log "bench failed"
  for batch in 256 4096; do
    log "bench eval bf16, batch $batch"
    bench "batch$batch" --workload eval --precision bf16 --eval-batch-size "$batch" --model "$MODEL"
  done
fi
grep -E "median" "$OUT/bench.log" | tee -a "$OUT/steps.log"

# 4. Refool in the background; the GPU tests meanwhile.
log "refool natural reflections, $REFOOL_EPOCHS epochs, seeds 0-2, in the background"
start_refool
if [ "$SKIP_BUILD" != 1 ]; then
  log "build nad_tests"
  cmake --build "$BUILD_DIR" -j "$(($(nproc) - 4))" --target nad_tests >>"$OUT/build.log" 2>&1 ||
    log "tests' build failed"
fi
if [ -x "$BUILD_DIR/tests/nad_tests" ]; then
  log "GPU tests"
  timeout $(($(left) - 30)) "$BUILD_DIR/tests/nad_tests" --gtest_filter='*Cuda*' >"$OUT/tests.log" 2>&1
  log "GPU tests rc $?: $(grep -E '^\[  (PASSED|FAILED|SKIPPED) |^\[  FAILED  \]' "$OUT/tests.log" | tr '\n' ' ')"
fi
wait_refool
log "done"
