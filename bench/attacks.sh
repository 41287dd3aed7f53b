#!/usr/bin/env bash
# Trains a backdoored WRN-16-1 on CIFAR-10 for each attack, erases it with `nad erase` at its
# defaults, and collects ACC / ASR before and after into bench/results/attacks.json.
#
#   bench/attacks.sh [ATTACK ...]        (default: the paper's six attacks)
#
# Environment: NAD (binary, default build/nad), DATA_DIR (default ../shared/data/cifar10),
# OUT (run folders, default bench/runs/attacks), EPOCHS (training epochs, default 25),
# TARGET (default 5), SEED (default 0), THREADS (default 0: all cores), DEVICE (default cpu),
# PRECISION (default auto), ATTACK_ARGS (more options for `nad train`, e.g. "--poison-rate 1"),
# COMMON_ARGS (more options for every nad command, e.g. "--cuda-graphs 0"),
# PREP_EPOCHS (epochs of
# the clean model Trojan and CL are made with, default 5), ERASE (0: train only, default 1),
# RESULTS (default bench/results/attacks.json), RUNS (run folders collected into RESULTS, default
# OUT; with several, an attack in a later folder supersedes the same attack in an earlier one
# and the earlier run is kept under "superseded").
# Finished runs (a complete summary.json in their folder) are not run again, and interrupted
# ones continue from their saved state, so the script resumes.
set -euo pipefail
cd "$(dirname "$0")/.."
NAD=${NAD:-build/nad}
DATA_DIR=${DATA_DIR:-../shared/data/cifar10}
OUT=${OUT:-bench/runs/attacks}
EPOCHS=${EPOCHS:-25}
TARGET=${TARGET:-5}
SEED=${SEED:-0}
THREADS=${THREADS:-0}
DEVICE=${DEVICE:-cpu}
PRECISION=${PRECISION:-auto}
ATTACK_ARGS=${ATTACK_ARGS:-}
COMMON_ARGS=${COMMON_ARGS:-}
PREP_EPOCHS=${PREP_EPOCHS:-5}
ERASE=${ERASE:-1}
RESULTS=${RESULTS:-bench/results/attacks.json}
ATTACKS=("$@")
[ ${#ATTACKS[@]} -gt 0 ] || ATTACKS=(badnets trojan blend cl sig refool)

# A run is finished when its summary.json does not say "complete": false; an interrupted one
# (Ctrl-C, kill) continues from its saved state.
finished() { [ -f "$1/summary.json" ] && ! grep -q '"complete": *false' "$1/summary.json"; }
resume_of() { if [ -f "$1/state/args.json" ]; then echo "--resume $1"; fi; }

DATA=(--dataset cifar10 --data-dir "$DATA_DIR" --seed "$SEED" --threads "$THREADS" --device "$DEVICE"
      --precision "$PRECISION" $COMMON_ARGS)
mkdir -p "$OUT"
for attack in "${ATTACKS[@]}"; do
  args=(--attack "$attack" --target "$TARGET")
  run="$OUT/$attack"
  if ! finished "$run/train"; then
    echo "== $attack: train ($EPOCHS epochs)"
    mkdir -p "$run"
    start=$(date +%s)
    "$NAD" train "${DATA[@]}" "${args[@]}" $ATTACK_ARGS --arch wrn-16-1 --epochs "$EPOCHS" \
      --prep-epochs "$PREP_EPOCHS" --out "$run/train" $(resume_of "$run/train") 2>>"$run/train.log"
    echo $(( $(date +%s) - start )) >"$run/train.seconds"
  fi
  # Attacks whose trigger is made while training (trojan) are replayed from the saved file.
  if [ -f "$run/train/trigger.png" ]; then args+=(--trigger-file "$run/train/trigger.png"); fi
  # So are Refool's selected reflections (--reflection-select).
  if [ -d "$run/train/reflections" ]; then args+=(--reflections "$run/train/reflections"); fi
  if [ "$ERASE" != 0 ] && ! finished "$run/erase"; then
    echo "== $attack: erase"
    start=$(date +%s)
    "$NAD" erase "${DATA[@]}" "${args[@]}" --model "$run/train/model.pt" \
      --out "$run/erase" $(resume_of "$run/erase") 2>>"$run/erase.log"
    echo $(( $(date +%s) - start )) >"$run/erase.seconds"
  fi
done

python3 - "$RESULTS" ${RUNS:-$OUT} <<'PY'
import json, os, platform, subprocess, sys
results, outs = sys.argv[1], sys.argv[2:]
def read(path):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None
def seconds(path):
    try:
        return int(open(path).read())
    except (FileNotFoundError, ValueError):
        return None
cpu = "unknown"
try:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
except OSError:
    pass
gpu = None
try:
    gpu = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                         capture_output=True, text=True, timeout=30).stdout.strip() or None
except (OSError, subprocess.SubprocessError):
    pass
rows, superseded = {}, []
for out in outs:
    for attack in sorted(os.listdir(out)):
        run = os.path.join(out, attack)
        if not os.path.isdir(run):
            continue
        train = read(os.path.join(run, "train", "summary.json"))
        if train is None:
            continue
        config = read(os.path.join(run, "train", "config.json")) or {}
        erase = read(os.path.join(run, "erase", "summary.json"))
        row = {
            "attack": attack,
            "run": run,
            "attack_options": config.get("common", {}).get("attack"),
            "epochs": config.get("train", {}).get("epochs"),
            "device": config.get("common", {}).get("device"),
            "precision": config.get("common", {}).get("precision"),
            "backdoored": {k: train.get(k) for k in ("clean_acc", "asr", "robust_acc")},
            "train_seconds": seconds(os.path.join(run, "train.seconds")),
        }
        if erase is not None:
            row["nad_before"] = erase.get("before")
            row["nad_after"] = erase.get("after")
            row["nad_lr"] = erase.get("lr")
            row["erase_seconds"] = seconds(os.path.join(run, "erase.seconds"))
        if attack in rows:
            superseded.append(rows[attack])
        rows[attack] = row
doc = {"machine": {"cpu": cpu, "cores": os.cpu_count(), "gpu": gpu, "platform": platform.platform()},
       "dataset": "cifar10", "arch": "wrn-16-1", "runs": list(rows.values()),
       "superseded": superseded}
os.makedirs(os.path.dirname(results) or ".", exist_ok=True)
tmp = results + ".tmp"
with open(tmp, "w") as f:
    json.dump(doc, f, indent=2)
    f.write("\n")
os.replace(tmp, results)
print(f"wrote {results} ({len(rows)} attacks, {len(superseded)} superseded runs)")
PY
