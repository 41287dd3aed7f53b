# Diagnostic, not part of nad: a Refool model's attack success rate as a function of how
# strong the test-time reflection is. nad's Refool (like the reference) draws the reflection's
# weight 1 - alpha_t from U(0.05, 0.45) for every image, so a weak draw may leave too little of
# the trigger; this measures ASR at fixed weights with the ghost model (offsets 1..4 px, ghost
# weight as the reference draws it) on the 9,000 non-target CIFAR-10 test images.
#
#   /usr/bin/python3 bench/refool_strength.py MODEL.pt REFLECTIONS_DIR [DATA_DIR] [TARGET]
#
# Needs python3-torch and python3-pil (scripts/setup.sh test, scripts/setup.sh bench).
import os, sys
import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "scripts"))
import reference_models  # noqa: E402

model_path, reflections_dir = sys.argv[1], sys.argv[2]
data_dir = sys.argv[3] if len(sys.argv) > 3 else "../shared/data/cifar10"
target = int(sys.argv[4]) if len(sys.argv) > 4 else 5
torch.set_num_threads(os.cpu_count())

checkpoint = torch.load(model_path, map_location="cpu")
model = reference_models.build(checkpoint["arch"], checkpoint["num_classes"], checkpoint["input_shape"])
model.load_state_dict(checkpoint["state_dict"])
model.eval()

classes = sorted(os.listdir(os.path.join(data_dir, "test")))
images = []
for label, name in enumerate(classes):
    if label == target:
        continue
    folder = os.path.join(data_dir, "test", name)
    for file in sorted(os.listdir(folder)):
        images.append(np.asarray(Image.open(os.path.join(folder, file)).convert("RGB")))
test = torch.from_numpy(np.stack(images)).float() / 255  # N x H x W x C
reflections = torch.from_numpy(np.stack([
    np.asarray(Image.open(os.path.join(reflections_dir, f)).convert("RGB").resize((32, 32)))
    for f in sorted(os.listdir(reflections_dir)) if f.lower().endswith((".png", ".jpg"))])).float() / 255

generator = torch.Generator().manual_seed(0)
n = test.shape[0]
picks = torch.randint(0, reflections.shape[0], (n,), generator=generator)
dy = torch.randint(1, 5, (n,), generator=generator)
dx = torch.randint(1, 5, (n,), generator=generator)
u = torch.rand(n, 2, generator=generator)
ghost_alpha = ((u[:, 0] > 0.5).float() - (0.15 + 0.35 * u[:, 1])).abs()

def ghost(weight):
    t = test.pow(2.2)
    r = reflections[picks].pow(2.2)
    shifted = torch.zeros_like(r)
    for i in range(n):
        a, b = int(dy[i]), int(dx[i])
        shifted[i, a:, b:] = r[i, :32 - a, :32 - b]
    g = r * ghost_alpha.view(-1, 1, 1, 1) + shifted * (1 - ghost_alpha.view(-1, 1, 1, 1))
    return (g * weight + t * (1 - weight)).pow(1 / 2.2).clamp(0, 1)

@torch.no_grad()
def asr(x):
    x = (x * 255).round() / 255
    hits = 0
    for start in range(0, x.shape[0], 500):
        logits = model(x[start:start + 500].permute(0, 3, 1, 2).contiguous())[-1]
        hits += (logits.argmax(1) == target).sum().item()
    return 100.0 * hits / x.shape[0]

print(f"model {model_path}, reflections {reflections_dir} ({reflections.shape[0]})")
print(f"no reflection: {asr(test):.2f}% predicted as the target")
for weight in (0.05, 0.10, 0.15, 0.20, 0.25, 0.30, 0.35, 0.45):
    print(f"ghost, reflection weight {weight:.2f}: ASR {asr(ghost(weight)):.2f}%", flush=True)
