#!/usr/bin/env bash
# Makes a folder of natural-scene reflection images for Refool (`--reflections DIR`): random
# square crops of the photographs in three Debian wallpaper packages (downloaded with
# `apt-get download`, never installed), resized to SIZE x SIZE PNGs. Refool's authors drew
# their reflections from another dataset (PascalVOC); nad's default, training images of the
# other classes, carries those classes' own features into the target class.
#
#   bench/natural_reflections.sh [OUT]     (default bench/runs/natural-reflections)
#
# Environment: COUNT (crops, default 1000), SIZE (side in pixels, default 32), SEED (default 0).
# Needs python3-pil and python3-numpy (`scripts/setup.sh bench`).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench/runs/natural-reflections}
COUNT=${COUNT:-1000}
SIZE=${SIZE:-32}
SEED=${SEED:-0}
PACKAGES=(ukui-wallpapers mate-backgrounds lomiri-wallpapers-16.04)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download "${PACKAGES[@]}" >/dev/null)
for deb in "$work"/*.deb; do dpkg-deb -x "$deb" "$work/root"; done

/usr/bin/python3 - "$work/root" "$OUT" "$COUNT" "$SIZE" "$SEED" <<'PY'
import os, random, sys
from PIL import Image, ImageStat
root, out, count, size, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
sources = sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs
                 if f.lower().endswith((".jpg", ".jpeg", ".png")))
photos = []
for path in sources:
    with Image.open(path) as image:
        # Icons and thumbnails are not scenes.
        if min(image.size) >= 480:
            photos.append(path)
if not photos:
    sys.exit("natural_reflections: no photographs found in " + " ".join(sys.argv[1:2]))
MIN_CONTRAST = 20  # grey-level standard deviation, of 255
rng = random.Random(seed)
tmp = out + ".tmp"
os.makedirs(tmp, exist_ok=True)
images = []
for path in photos:
    with Image.open(path) as image:
        images.append(image.convert("RGB"))
# One crop per photograph per round, so that every photograph is drawn on about equally.
made, rounds = 0, 0
while made < count and rounds < 50 * count:
    image = images[rounds % len(images)]
    rounds += 1
    w, h = image.size
    # Crops from a tenth to half of the short side: textures and objects, not whole scenes
    # shrunk to a blur.
    side = int(min(w, h) * rng.uniform(0.1, 0.5))
    x, y = rng.randrange(w - side + 1), rng.randrange(h - side + 1)
    crop = image.crop((x, y, x + side, y + side)).resize((size, size), Image.BICUBIC)
    # A flat crop (sky, a plain backdrop) blends in as a tint, not a reflection.
    if ImageStat.Stat(crop.convert("L")).stddev[0] < MIN_CONTRAST:
        continue
    crop.save(os.path.join(tmp, f"{made:04d}.png"))
    made += 1
if made < count:
    sys.exit(f"natural_reflections: only {made} of {count} crops had contrast")
if os.path.exists(out):
    import shutil
    shutil.rmtree(out)
os.rename(tmp, out)
print(f"natural_reflections: {made} crops of {len(photos)} photographs in {out}")
PY
