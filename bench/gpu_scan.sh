#!/usr/bin/env bash
# Issue 22's measurements in one device call: builds nad against the machine's CUDA LibTorch,
# trains CIFAR-10 WRN-16-1 models (BadNets, Blend, a clean one, SIG, WaNet: in that order of
# priority while BUDGET seconds last), and for each backdoored one runs `nad erase --verify`
# (Neural Cleanse before and after, no attack knowledge) and `nad strip`; the clean model gets
# `nad scan`. Works on the CPU too (DEVICE=cpu, small EPOCHS) to try the script itself.
#
# Through the device tool, with carry [".gpu"] (bench/gpu_prepare.sh fills it):
#   OUT=$OUT BUDGET=540 bash bench/gpu_scan.sh
# Output in $OUT: steps.log (what ran, with times and results), build.log, results.tar.gz (each
# run's summary.json, scan.json, strip.json, report.md and figures).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/gpu-scan}
BUDGET=${BUDGET:-540}
BUILD_DIR=${BUILD_DIR:-build-cuda}
DATA_DIR=${DATA_DIR:-.gpu/cifar10}
DEVICE=${DEVICE:-cuda}
EPOCHS=${EPOCHS:-20}
PRECISION=${PRECISION:-bf16}
ATTACKS=${ATTACKS:-badnets blend none sig wanet}
SCAN_EPOCHS=${SCAN_EPOCHS:-150}  # Neural Cleanse epochs at most (the default, 60, is also run once)
EXTRA=${EXTRA:-}  # more options for every command (e.g. "--scan-epochs 5" for a dry run)
NAD=${NAD:-$BUILD_DIR/nad}
RUNS=${RUNS:-$OUT/runs}  # elsewhere (RUNS=/tmp/...) when only results.tar.gz should come back
mkdir -p "$RUNS" "$OUT"
RESULTS=$(realpath "$OUT")/results.tar.gz
log() { echo "[$(date +%T) +${SECONDS}s] $*" | tee -a "$OUT/steps.log"; }
left() { echo $((BUDGET - SECONDS)); }
pack() {
  # The models too (about 0.7 MB each), so that the CPU can time a scan of the same ones.
  (cd "$RUNS" && find . \( -name '*.json' -o -name '*.md' -o -name '*.png' -o -name '*.csv' \
     -o -name '*.log' -o -name model.pt \) ! -path '*/state/*' -print0 |
     tar czf "$RESULTS" --null -T -)
  log "packed results.tar.gz"
}
trap pack EXIT

if [ "$DEVICE" != cpu ]; then
  TORCH_DIR=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))' 2>/dev/null)
  export LD_LIBRARY_PATH=$TORCH_DIR/lib:$PWD/.gpu/deps/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
  nvidia-smi 2>&1 | head -12 >"$OUT/machine.txt"
fi
log "start: budget ${BUDGET}s, device $DEVICE, $(nproc) cores"
if [ ! -d "$DATA_DIR" ]; then
  tar xzf .gpu/cifar10.tar.gz -C .gpu &
  untar=$!
fi
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  generator=()
  command -v ninja >/dev/null && generator=(-G Ninja)
  cmake -S . -B "$BUILD_DIR" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DNAD_BUILD_TESTS=OFF \
    -DNAD_BUILD_BENCH=OFF \
    -DCMAKE_PREFIX_PATH="$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)');$PWD/.gpu/deps/usr" \
    -DCMAKE_DISABLE_FIND_PACKAGE_PkgConfig=ON -DNAD_HAVE_GLOO_HEADERS=0 -DNAD_WITH_NCCL=OFF \
    >"$OUT/build.log" 2>&1 || { log "configure failed"; tail -30 "$OUT/build.log"; exit 1; }
  cmake --build "$BUILD_DIR" -j "$(nproc)" --target nad >>"$OUT/build.log" 2>&1 ||
    { log "build failed:"; grep -B2 -A8 "error" "$OUT/build.log" | head -60 | tee -a "$OUT/steps.log"; exit 1; }
  log "built"
fi
[ -n "${untar:-}" ] && wait "$untar"

COMMON=(--dataset cifar10 --data-dir "$DATA_DIR" --device "$DEVICE" --precision "$PRECISION"
        --seed 0 --quiet $EXTRA)
# run NAME NEEDED_SECONDS nad-arguments...: skipped when fewer seconds than NEEDED are left.
run() {
  local name=$1 need=$2
  shift 2
  if [ "$(left)" -lt "$need" ]; then
    log "skipped ($need s needed, $(left) s left): $name"
    return 1
  fi
  local start=$SECONDS
  timeout $(($(left) - 5)) "$NAD" "$@" >"$RUNS/$name.log" 2>&1
  local rc=$?
  log "$name: rc $rc in $((SECONDS - start)) s; $(grep -E 'final:|after:|scan:|verify:|FAR|error' "$RUNS/$name.log" | tr '\n' ' ' | cut -c1-400)"
  return $rc
}

for attack in $ATTACKS; do
  dir=$RUNS/$attack
  mkdir -p "$dir"
  if [ "$attack" = none ]; then args=(--attack none); else args=(--attack "$attack" --target 5); fi
  run "$attack-train" 40 train "${COMMON[@]}" "${args[@]}" --arch wrn-16-1 --epochs "$EPOCHS" \
    --out "$dir/train" || continue
  model=$dir/train/model.pt
  if [ "$attack" = none ]; then
    # Attack options would only add a report line; the clean model has none.
    run "$attack-scan" 30 scan "${COMMON[@]}" --model "$model" --clean-ratio 0.05 \
      --epochs "$SCAN_EPOCHS" --out "$dir/scan"
    continue
  fi
  # The first model also at nad scan's defaults, to see what the longer optimisation changes.
  if [ "$attack" = badnets ]; then
    run "$attack-scan60" 30 scan "${COMMON[@]}" "${args[@]}" --model "$model" --clean-ratio 0.05 \
      --out "$dir/scan60"
  fi
  run "$attack-erase" 60 erase "${COMMON[@]}" "${args[@]}" --model "$model" --clean-ratio 0.05 \
    --verify --scan-epochs "$SCAN_EPOCHS" --out "$dir/erase"
  if [ -x "$NAD" ] && "$NAD" strip --help >/dev/null 2>&1; then
    run "$attack-strip" 30 strip "${COMMON[@]}" "${args[@]}" --model "$model" --clean-ratio 0.05 \
      --out "$dir/strip"
  fi
done
log "done"
