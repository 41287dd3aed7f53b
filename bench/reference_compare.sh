#!/usr/bin/env bash
# `nad erase --schedule reference` beside the NAD authors' loop (bench/reference_nad.py, Debian's
# PyTorch) on the same backdoored model, the same teacher (nad's, finetuned by the reference
# schedule) and the same clean subset, fp32: whether the method or nad's recipe leaves a
# backdoor. Writes bench/results/reference-compare-<attack>.json.
#
#   bench/reference_compare.sh ATTACK MODEL_DIR [extra attack options]
#
# MODEL_DIR holds the backdoored model.pt (a `nad train` folder, e.g. bench/runs/attacks-xeon/sig/
# train). Environment: NAD (default build/nad), DATA_DIR (default ../shared/data/cifar10), OUT
# (default bench/runs/reference-compare/ATTACK), THREADS (default 0: all cores), SEED (default 0),
# TARGET (default 5).
set -euo pipefail
cd "$(dirname "$0")/.."
attack=$1
model_dir=$2
shift 2
NAD=${NAD:-build/nad}
DATA_DIR=${DATA_DIR:-../shared/data/cifar10}
OUT=${OUT:-bench/runs/reference-compare/$attack}
THREADS=${THREADS:-0}
SEED=${SEED:-0}
TARGET=${TARGET:-5}
threads=$THREADS
[ "$threads" != 0 ] || threads=$(nproc)
args=(--dataset cifar10 --data-dir "$DATA_DIR" --attack "$attack" --target "$TARGET" "$@"
      --seed "$SEED" --threads "$THREADS" --precision fp32)
if [ -f "$model_dir/trigger.png" ]; then args+=(--trigger-file "$model_dir/trigger.png"); fi
mkdir -p "$OUT"
if [ ! -f "$OUT/nad/summary.json" ]; then
  start=$(date +%s)
  "$NAD" erase "${args[@]}" --model "$model_dir/model.pt" --schedule reference \
    --out "$OUT/nad" 2>"$OUT/nad.log"
  echo $(( $(date +%s) - start )) >"$OUT/nad.seconds"
fi
if [ ! -f "$OUT/data/test_images.npy" ]; then
  "$NAD" poison "${args[@]}" --format npy --out "$OUT/data" 2>"$OUT/poison.log"
fi
if [ ! -f "$OUT/reference.json" ]; then
  start=$(date +%s)
  /usr/bin/python3 bench/reference_nad.py --data "$OUT/data" --model "$model_dir/model.pt" \
    --teacher "$OUT/nad/teacher.pt" --clean-indices "$OUT/nad/clean_indices.txt" \
    --threads "$threads" --seed "$SEED" --out "$OUT/reference.json" >"$OUT/reference.log" 2>&1
  echo $(( $(date +%s) - start )) >"$OUT/reference.seconds"
fi
python3 - "$attack" "$OUT" <<'PY'
import json, os, sys
attack, out = sys.argv[1:]
nad = json.load(open(os.path.join(out, "nad", "summary.json")))
ref = json.load(open(os.path.join(out, "reference.json")))
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
result = {"attack": attack, "machine": cpu, "folder": out,
          "nad_reference_schedule": {"before": nad["before"], "teacher": nad.get("teacher"),
                                     "after": nad["after"],
                                     "seconds": int(open(os.path.join(out, "nad.seconds")).read())},
          "reference_loop": ref,
          "reference_seconds": int(open(os.path.join(out, "reference.seconds")).read())}
path = f"bench/results/reference-compare-{attack}.json"
json.dump(result, open(path, "w"), indent=1)
print(path)
PY
