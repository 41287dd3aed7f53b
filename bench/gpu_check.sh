#!/usr/bin/env bash
# Issue 6's GPU check in one device call of at most 10 minutes: builds nad, nad_bench and the
# tests against the machine's CUDA LibTorch, then, in order of what matters most while time
# lasts (BUDGET seconds for the whole script): the workloads with CUDA graphs on and off (bf16,
# then fp32), the GPU tests (`*Cuda*`), evaluation with the inference path on and off, and a
# step-timing diagnosis of the graphed NAD protocol. The NAD protocol uses the CPU-trained
# BadNets model and teacher that bench/gpu_prepare.sh copies to .gpu/badnets.
#
# Run through the device tool with carry [".gpu"]: `OUT=$OUT BUDGET=540 bash bench/gpu_check.sh`.
# STEPS picks parts (default: all, in this order): bf16 (graphs), bf16-eager, tests, fp32
# (graphs), fp32-eager, eval, timing.
# Output in $OUT: steps.log (what ran, medians, test summary), build.log, bench.log, tests.log,
# results.tar.gz (benchmark JSON files and machine.txt).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/gpu}
BUDGET=${BUDGET:-540}
BUILD_DIR=${BUILD_DIR:-build-cuda}
DATA_DIR=${DATA_DIR:-.gpu/cifar10}
DEVICE=${DEVICE:-cuda}
STEPS=${STEPS:-bf16 bf16-eager tests fp32 fp32-eager eval timing}
want() { [[ " $STEPS " == *" $1 "* ]]; }
RES=$OUT/json  # packed into results.tar.gz at the end (the tool returns at most 8 files)
mkdir -p "$OUT" "$RES"
log() { echo "[$(date +%T) +${SECONDS}s] $*" | tee -a "$OUT/steps.log"; }
left() { echo $((BUDGET - SECONDS)); }
pack() {
  tar czf "$OUT/results.tar.gz" -C "$OUT" json && rm -rf "$RES"
  log "packed results.tar.gz"
}
trap pack EXIT

TORCH_DIR=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))' 2>/dev/null)
export LD_LIBRARY_PATH=$TORCH_DIR/lib:$PWD/.gpu/deps/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
{ nvidia-smi 2>&1 | head -15; g++ --version | head -1; cmake --version | head -1
  python3 -c 'import torch;print("torch", torch.__version__, "cuda", torch.version.cuda)' 2>&1
  echo "cores: $(nproc)"; } >"$RES/machine.txt" 2>&1
log "start: budget ${BUDGET}s, $(grep -m1 -o 'NVIDIA [A-Z0-9]*' "$RES/machine.txt")"
if [ ! -d "$DATA_DIR" ]; then
  tar xzf .gpu/cifar10.tar.gz -C .gpu &
  untar=$!
fi

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  generator=()
  command -v ninja >/dev/null && generator=(-G Ninja)
  cmake -S . -B "$BUILD_DIR" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)');$PWD/.gpu/deps/usr" \
    -DCMAKE_DISABLE_FIND_PACKAGE_PkgConfig=ON -DNAD_HAVE_GLOO_HEADERS=0 -DNAD_WITH_NCCL=OFF \
    >"$OUT/build.log" 2>&1 || { log "configure failed"; tail -30 "$OUT/build.log"; exit 1; }
  log "configured; building nad, nad_bench, nad_tests"
  # Keep going past a target that fails, so that the benchmarks run even if a test does not compile.
  keep_going=()
  [ ${#generator[@]} -gt 0 ] && keep_going=(-- -k 0)
  cmake --build "$BUILD_DIR" -j "$(nproc)" --target nad nad_bench nad_tests "${keep_going[@]}" \
    >>"$OUT/build.log" 2>&1 || { log "build had errors:"; grep -B2 -A8 "error" "$OUT/build.log" | head -60 | tee -a "$OUT/steps.log"; }
  [ -x "$BUILD_DIR/bench/nad_bench" ] || { log "no nad_bench: stopping"; exit 1; }
  log "built"
fi
[ -n "${untar:-}" ] && wait "$untar"

MODEL=.gpu/badnets/model.pt
TEACHER=.gpu/badnets/teacher.pt
# nad_bench TAG NEEDED_SECONDS [options]: skipped when fewer seconds than NEEDED are left.
bench() {
  local tag=$1 need=$2
  shift 2
  if [ "$(left)" -lt "$need" ]; then
    log "skipped (${need}s needed, $(left)s left): $tag $*"
    return
  fi
  log "bench $tag: $*"
  timeout $(($(left) - 10)) "$BUILD_DIR/bench/nad_bench" --device "$DEVICE" --data-dir "$DATA_DIR" \
    --tag "$tag" --out "$RES" "$@" >"$OUT/current.log" 2>&1
  local rc=$?
  cat "$OUT/current.log" >>"$OUT/bench.log"
  grep -E "warning|graph" "$OUT/current.log" | sort | uniq -c | head -3 | tee -a "$OUT/steps.log"
  grep -E "median|error|nad_bench:" "$OUT/current.log" | sed 's/ -> .*//' | tee -a "$OUT/steps.log"
  [ $rc = 0 ] || log "rc $rc"
}
PROTOCOL=(--workload nad-protocol --model "$MODEL" --teacher "$TEACHER")

# A training epoch and the NAD protocol (whose model comes from the CPU) in one precision, with
# CUDA graphs (step PRECISION) and without (step PRECISION-eager, EAGER_REPEATS runs).
workloads() {  # PRECISION EAGER_REPEATS
  local precision=$1 eager_repeats=$2
  if want "$precision"; then
    bench graphs 40 --workload train-epoch --precision "$precision" --cuda-graphs 1 --repeats 3
    bench graphs 50 "${PROTOCOL[@]}" --precision "$precision" --cuda-graphs 1 --repeats 3
  fi
  if want "$precision-eager"; then
    bench eager 40 --workload train-epoch --precision "$precision" --cuda-graphs 0 \
      --repeats "$eager_repeats"
    bench eager 60 "${PROTOCOL[@]}" --precision "$precision" --cuda-graphs 0 --repeats "$eager_repeats"
  fi
}

# 1. bf16; 2. the GPU tests; 3. fp32 (the eager runs once).
workloads bf16 3
if want tests && [ -x "$BUILD_DIR/tests/nad_tests" ] && [ "$(left)" -gt 100 ]; then
  log "GPU tests"
  timeout 150 "$BUILD_DIR/tests/nad_tests" --gtest_filter='*Cuda*' >"$OUT/tests.log" 2>&1
  log "GPU tests rc $?: $(grep -E '^\[  (PASSED|FAILED|SKIPPED) |^\[  FAILED  \]|^\[       OK \]' "$OUT/tests.log" | tr '\n' ' ')"
fi
workloads fp32 1

# 4. Evaluation with the inference path (BatchNorm folded into the convolutions) on and off.
want eval && for precision in bf16 fp32; do
  bench fused 20 --workload eval --model "$MODEL" --precision "$precision" --fused-eval 1 --repeats 5
  bench unfused 20 --workload eval --model "$MODEL" --precision "$precision" --fused-eval 0 --repeats 5
done

# 5. Where a graphed protocol step's time goes (NAD_STEP_TIMING waits for the GPU around the batch
# preparation and around the step, so this run is slower than the timed ones).
if want timing && [ "$(left)" -gt 30 ]; then
  log "step timing, graphed bf16 protocol, 3 epochs"
  NAD_STEP_TIMING=1 timeout $(($(left) - 10)) "$BUILD_DIR/bench/nad_bench" --device "$DEVICE" \
    --data-dir "$DATA_DIR" --out "$OUT/timing" "${PROTOCOL[@]}" --precision bf16 --cuda-graphs 1 \
    --repeats 1 --protocol-epochs 3 2>&1 | grep -E "step timing|median" | tee -a "$OUT/steps.log"
  rm -rf "$OUT/timing"
fi
rm -f "$OUT/current.log"
log "done"
