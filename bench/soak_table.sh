#!/usr/bin/env bash
# Soak test of resumable runs: `nad table` on the smoke grid (experiments/smoke.json), killed
# with SIGKILL at random moments KILLS times and resumed each time with `nad table --resume`,
# must end with the same table as an uninterrupted run.
#
#   bench/soak_table.sh [KILLS]         (default 20)
#
# Environment: NAD (binary, default build/nad), OUT (work folder, default bench/runs/soak),
# SEED (of the kill times, default 1), THREADS (default 1), RESULTS (default
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

# Kill times drawn uniformly in (0.3 s, 1.5 x the run's length / KILLS), seeded: each resumed
# process gets on by a random part of the grid, so the kills land all along it (in a cell's
# training, between cells, while one writes its files) and the grid is still unfinished at
# the last kill.
mapfile -t delays < <(python3 -c "
import random; random.seed($SEED)
print('\n'.join(f'{random.uniform(0.3, 1.5 * $straight_seconds / $KILLS):.2f}' for _ in range($KILLS)))")
killed=0
attempts=0
log="$OUT/soak.log"
: >"$log"
start=$(date +%s.%N)
first=1
while [ $killed -lt "$KILLS" ]; do
  attempts=$((attempts + 1))
  if [ $first = 1 ]; then
    "$NAD" "${ARGS[@]}" --out "$OUT/soaked" >>"$log" 2>&1 &
    first=0
  else
    "$NAD" table --resume "$OUT/soaked" --quiet >>"$log" 2>&1 &
  fi
  pid=$!
  sleep "${delays[$killed]}"
  if kill -KILL "$pid" 2>/dev/null; then
    wait "$pid" 2>/dev/null || true
    killed=$((killed + 1))
    echo "kill $killed after ${delays[$((killed - 1))]} s" | tee -a "$log"
  else
    wait "$pid" || true
    echo "the run finished before kill $((killed + 1)); starting over would not test anything" | tee -a "$log"
    break
  fi
done
"$NAD" table --resume "$OUT/soaked" --quiet >>"$log" 2>&1
soak_seconds=$(python3 -c "import time; print(round(time.time() - $start, 1))")

same=true
for f in table.md table.csv; do
  if ! cmp -s "$OUT/straight/$f" "$OUT/soaked/$f"; then
    same=false
    diff "$OUT/straight/$f" "$OUT/soaked/$f" | head -20 || true
  fi
done
models_same=true
while IFS= read -r model; do
  rel=${model#"$OUT/straight/"}
  cmp -s "$model" "$OUT/soaked/$rel" || { models_same=false; echo "differs: $rel"; }
done < <(find "$OUT/straight" -name '*.pt' | sort)
echo "kills: $killed, same table: $same, same models: $models_same"

python3 - "$RESULTS" "$KILLS" "$killed" "$same" "$models_same" "$straight_seconds" "$soak_seconds" <<'PY'
import json, os, platform, subprocess, sys
results, wanted, killed, same, models_same, straight, soak = sys.argv[1:]
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
           "uninterrupted_seconds": float(straight), "soaked_seconds": float(soak)},
          open(results, "w"), indent=2)
PY
[ "$same" = true ] && [ "$models_same" = true ] && [ "$killed" -eq "$KILLS" ]
