#!/usr/bin/env bash
# The README's walk-through: a defender with a model file and a folder of 500 labelled clean
# images, nothing else: scan it, then erase with --verify (which scans again before and after,
# and tries the reversed trigger on the cleaned model), with --clean-dir alone.
#   MODEL=demo-out/backdoored/model.pt OUT=runs/walkthrough bench/walkthrough.sh
# The folder: 50 images per class of Fashion-MNIST's test set, exported by `nad poison` (whose
# test/ folder is clean).
set -euo pipefail
cd "$(dirname "$0")/.."
NAD=${NAD:-build/nad}
MODEL=${MODEL:-demo-out/backdoored/model.pt}
OUT=${OUT:-runs/walkthrough}
PER_CLASS=${PER_CLASS:-50}
mkdir -p "$OUT"
if [ ! -d "$OUT/own" ]; then
  # Its test/ folder is clean whatever the attack; the poisoned train/ folder is not used.
  "$NAD" poison --dataset fashion-mnist --attack badnets --quiet --out "$OUT/export"
  for class in "$OUT"/export/test/*/; do
    k=$(basename "$class")
    mkdir -p "$OUT/own/$k"
    files=("$class"*.png)  # in name order
    cp "${files[@]:0:$PER_CLASS}" "$OUT/own/$k/"
  done
  rm -rf "$OUT/export"
fi
OWN=(--clean-dir "$OUT/own" --seed 0)
"$NAD" scan "${OWN[@]}" --model "$MODEL" --out "$OUT/scan"
"$NAD" erase "${OWN[@]}" --model "$MODEL" --verify --out "$OUT/erased"
