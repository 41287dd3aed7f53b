#!/usr/bin/env bash
# NAD on models whose inputs are normalised (issue 24): for each architecture, `nad train`
# plants BadNets with `--input-norm cifar10` (BackdoorBench's CIFAR-10 mean and std, kept in
# model.pt), then `nad erase` cleans it at its defaults, reading the normalisation from the file.
#
#   bench/normalised.sh [ARCH ...]        (default: preact-resnet18 tv-resnet18)
#
# On a CPU the full CIFAR-10 makes PreAct-ResNet-18 hours per epoch, so the runs use the first
# PER_CLASS training images of each class (default 1000: 10,000 images) and the whole test set,
# as symbolic links in OUT/data. Environment: NAD (default build/nad), DATA_DIR (CIFAR-10 image
# folders, default ../shared/data/cifar10), OUT (default bench/runs/normalised), PER_CLASS,
# EPOCHS (training, default 15), TARGET (default 0), SEED (default 0), THREADS (default 0: all
# cores), DEVICE (default cpu), RESULTS (default bench/results/normalised.json).
# Finished runs are kept and interrupted ones resumed, so the script can be run again.
set -euo pipefail
cd "$(dirname "$0")/.."
NAD=${NAD:-build/nad}
DATA_DIR=${DATA_DIR:-../shared/data/cifar10}
OUT=${OUT:-bench/runs/normalised}
PER_CLASS=${PER_CLASS:-1000}
EPOCHS=${EPOCHS:-15}
TARGET=${TARGET:-0}
SEED=${SEED:-0}
THREADS=${THREADS:-0}
DEVICE=${DEVICE:-cpu}
RESULTS=${RESULTS:-bench/results/normalised.json}
ARCHS=("$@")
[ ${#ARCHS[@]} -gt 0 ] || ARCHS=(preact-resnet18 tv-resnet18)

finished() { [ -f "$1/summary.json" ] && ! grep -q '"complete": *false' "$1/summary.json"; }
resume_of() { if [ -f "$1/state/args.json" ]; then echo "--resume $1"; fi; }

data="$OUT/data"
if [ ! -d "$data/test" ]; then
  mkdir -p "$data/train"
  for class_dir in "$DATA_DIR"/train/*/; do
    class=$(basename "$class_dir")
    mkdir -p "$data/train/$class"
    ls "$class_dir" | sort | head -n "$PER_CLASS" |
      while read -r file; do ln -s "$(realpath "$class_dir/$file")" "$data/train/$class/$file"; done
  done
  ln -s "$(realpath "$DATA_DIR/test")" "$data/test"
fi

common=(--dataset folder --data-dir "$data" --seed "$SEED" --threads "$THREADS" --device "$DEVICE")
attack=(--attack badnets --target "$TARGET")
for arch in "${ARCHS[@]}"; do
  run="$OUT/$arch"
  mkdir -p "$run"
  if ! finished "$run/train"; then
    echo "== $arch: train ($EPOCHS epochs, --input-norm cifar10)"
    start=$(date +%s)
    "$NAD" train "${common[@]}" "${attack[@]}" --arch "$arch" --input-norm cifar10 \
      --epochs "$EPOCHS" --out "$run/train" $(resume_of "$run/train") 2>>"$run/train.log"
    echo $(( $(date +%s) - start )) >"$run/train.seconds"
  fi
  if ! finished "$run/erase"; then
    echo "== $arch: erase (defaults)"
    start=$(date +%s)
    "$NAD" erase "${common[@]}" "${attack[@]}" --model "$run/train/model.pt" \
      --out "$run/erase" $(resume_of "$run/erase") 2>>"$run/erase.log"
    echo $(( $(date +%s) - start )) >"$run/erase.seconds"
  fi
done

python3 - "$OUT" "$RESULTS" "${ARCHS[@]}" <<'PY'
import json, os, subprocess, sys, time
out, results_file, archs = sys.argv[1], sys.argv[2], sys.argv[3:]
def load(path):
    with open(path) as f:
        return json.load(f)
def seconds(path):
    return int(open(path).read()) if os.path.exists(path) else None
rows = []
for arch in archs:
    train, erase = load(f"{out}/{arch}/train/summary.json"), load(f"{out}/{arch}/erase/summary.json")
    rows.append({"arch": arch,
                 "input_norm": erase["models_loaded"][0]["input_norm"]["name"],
                 "input_norm_source": erase["models_loaded"][0]["input_norm_source"],
                 "before": erase["before"], "after": erase["after"], "lr": erase.get("lr"),
                 "train_seconds": seconds(f"{out}/{arch}/train.seconds"),
                 "erase_seconds": seconds(f"{out}/{arch}/erase.seconds"),
                 "train_acc_final": train.get("clean_acc")})
cpu = subprocess.run(["sh", "-c", "lscpu | grep 'Model name' | sed 's/.*: *//'"],
                     capture_output=True, text=True).stdout.strip()
json.dump({"date": time.strftime("%Y-%m-%d"), "cpu": cpu, "rows": rows}, open(results_file, "w"),
          indent=2)
for r in rows:
    print(f"{r['arch']}: ACC {r['before']['clean_acc']:.2f} ASR {r['before']['asr']:.2f} -> "
          f"ACC {r['after']['clean_acc']:.2f} ASR {r['after']['asr']:.2f}")
PY
