#!/usr/bin/env bash
# Soak test of resumable runs: `nad table` on the smoke grid (experiments/smoke.json), killed
# with SIGKILL at random moments KILLS times and resumed each time with --resume, must end
# with the same table and the same models as an uninterrupted run.
#
#   bench/soak_table.sh [KILLS]         (default 20)
#
# Environment: NAD (binary, default build/nad), OUT (work folder, default bench/runs/soak),
# SEED (of the kill times, default 1), MAX_EXTRA (see below), THREADS (default 1), RESULTS (default
# bench/results/soak-table.json). Data: a generated IDX dataset written here with plain python3
# (3000 train / 600 test 16x16 images of 4 noisy shapes, like the table test's).
set -euo pipefail
cd "$(dirname "$0")/.."
KILLS=${1:-20}
NAD=${NAD:-build/nad}
OUT=${OUT:-bench/runs/soak}
SEED=${SEED:-1}
THREADS=${THREADS:-1}
RESULTS=${RESULTS:-bench/results/soak-table.json}
rm -rf "$OUT"
mkdir -p "$OUT"

python3 - "$OUT/data" <<'PY'
import os, random, struct, sys
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
rng = random.Random(11)
def split(prefix, count, size=16, classes=4):
    labels = [i % classes for i in range(count)]
    pixels = bytearray()
    for y in labels:
        img = [[rng.randrange(60) for _ in range(size)] for _ in range(size)]
        mark = []
        s = y % 4
        if s == 0: mark = [(r, c) for r in (size // 2 - 1, size // 2) for c in range(2, size - 2)]
        elif s == 1: mark = [(r, c) for r in range(2, size - 2) for c in (size // 2 - 1, size // 2)]
        elif s == 2: mark = [(k, k) for k in range(2, size - 2)]
        else:
            edge = range(3, size - 3)
            mark = [(r, c) for r in edge for c in (3, size - 4)] + [(r, c) for r in (3, size - 4) for c in edge]
        for r, c in set(mark): img[r][c] = min(255, img[r][c] + 150)
        for row in img: pixels.extend(row)
    with open(f"{out}/{prefix}-images-idx3-ubyte", "wb") as f:
        f.write(struct.pack(">IIII", 0x803, count, size, size)); f.write(bytes(pixels))
    with open(f"{out}/{prefix}-labels-idx1-ubyte", "wb") as f:
        f.write(struct.pack(">II", 0x801, count)); f.write(bytes(labels))
split("train", 3000)
split("t10k", 600)
PY

ARGS=(table --config experiments/smoke.json --data-dir "$OUT/data" --threads "$THREADS" --quiet)
start=$(date +%s.%N)
"$NAD" "${ARGS[@]}" --out "$OUT/straight" >"$OUT/straight.log" 2>&1
straight_seconds=$(python3 -c "import time; print(round(time.time() - $start, 1))")
echo "uninterrupted: ${straight_seconds} s"

# Kill moments: each process runs until it has made progress (a loop state or a cell's
# summary.json written after it started: a process spends its first ~1.2 s starting the table
# and the cell, loading data and evaluating the model it resumes), then for a seeded random
# extra time in (0, MAX_EXTRA) seconds (default 0.7; an epoch here takes ~0.65 s), then gets
# SIGKILL. So the kills land all along the grid (mid-epoch, while a state or a model is
# written, between cells) and every resumed process gets on. When a grid finishes before
# KILLS kills, it is checked and a fresh one starts: several rounds share the KILLS kills.
MAX_EXTRA=${MAX_EXTRA:-0.7}
mapfile -t extras < <(python3 -c "
import random; random.seed($SEED)
print('\n'.join(f'{random.uniform(0, $MAX_EXTRA):.2f}' for _ in range(10 * $KILLS)))")

same=true
models_same=true
# Compares a finished grid with the uninterrupted one.
check_round() {
  local dir=$1
  for f in table.md table.csv; do
    if ! cmp -s "$OUT/straight/$f" "$dir/$f"; then
      same=false
      diff "$OUT/straight/$f" "$dir/$f" | head -20 || true
    fi
  done
  while IFS= read -r model; do
    rel=${model#"$OUT/straight/"}
    cmp -s "$model" "$dir/$rel" || { models_same=false; echo "differs: $dir/$rel"; }
  done < <(find "$OUT/straight" -name '*.pt' | sort)
}
progress_since() {  # files a process wrote since the marker
  find "$1" \( -name '*.state' -o -name summary.json \) -newer "$2" 2>/dev/null | head -1
}

killed=0
attempt=0
round=1
progress=()
log="$OUT/soak.log"
: >"$log"
start=$(date +%s.%N)
fresh=1
while [ $killed -lt "$KILLS" ]; do
  dir="$OUT/soaked-$round"
  marker="$OUT/.attempt"
  touch "$marker"
  sleep 0.01
  if [ $fresh = 1 ]; then
    "$NAD" "${ARGS[@]}" --out "$dir" >>"$log" 2>&1 &
    fresh=0
  else
    # The full command line with --resume: a kill may land before the table saved its own
    # (state/args.json), which `nad table --resume DIR` alone would need.
    "$NAD" "${ARGS[@]}" --resume "$dir" >>"$log" 2>&1 &
  fi
  pid=$!
  while kill -0 "$pid" 2>/dev/null && [ -z "$(progress_since "$dir" "$marker")" ]; do sleep 0.02; done
  extra=${extras[$attempt]}
  attempt=$((attempt + 1))
  sleep "$extra"
  if kill -KILL "$pid" 2>/dev/null; then
    wait "$pid" 2>/dev/null || true
    killed=$((killed + 1))
    cells=$( (find "$dir" -mindepth 4 -name summary.json 2>/dev/null | xargs -r grep -L '"complete": *false' || true) | wc -l)
    states=$(find "$dir" -name '*.state' 2>/dev/null | wc -l)
    echo "kill $killed (round $round, ${extra} s after its first progress): $cells cells finished, $states loop states saved" | tee -a "$log"
    progress+=("$round/$cells/$states")
  else
    wait "$pid" || { echo "round $round failed" | tee -a "$log"; same=false; break; }
    echo "round $round finished; checked; a fresh grid starts" | tee -a "$log"
    check_round "$dir"
    round=$((round + 1))
    fresh=1
  fi
done
if [ $fresh = 0 ]; then
  "$NAD" "${ARGS[@]}" --resume "$OUT/soaked-$round" >>"$log" 2>&1
  check_round "$OUT/soaked-$round"
else
  round=$((round - 1))
fi
soak_seconds=$(python3 -c "import time; print(round(time.time() - $start, 1))")
echo "kills: $killed over $round round(s), same tables: $same, same models: $models_same"

python3 - "$RESULTS" "$KILLS" "$killed" "$same" "$models_same" "$straight_seconds" "$soak_seconds" "$round" "${progress[*]}" <<'PY'
import json, os, platform, subprocess, sys
results, wanted, killed, same, models_same, straight, soak, rounds, progress = sys.argv[1:]
cpu = "unknown"
try:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip(); break
except OSError:
    pass
json.dump({"machine": {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform()},
           "grid": "experiments/smoke.json", "kills_wanted": int(wanted), "kills": int(killed),
           "same_table": same == "true", "same_models": models_same == "true",
           "uninterrupted_seconds": float(straight), "soaked_seconds": float(soak),
           "rounds": int(rounds),
           "at_each_kill": [{"round": int(p.split("/")[0]), "cells_finished": int(p.split("/")[1]),
                             "loop_states": int(p.split("/")[2])} for p in progress.split()]},
          open(results, "w"), indent=2)
PY
[ "$same" = true ] && [ "$models_same" = true ] && [ "$killed" -eq "$KILLS" ]
