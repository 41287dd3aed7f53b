"""Checks that a nad model.pt is a plain torch.load-able dict whose state_dict loads (strict)
into the PyTorch original of its architecture, and measures its clean accuracy in PyTorch on
IDX (MNIST-style) or image-folder test data, for comparison with `nad eval`.

    /usr/bin/python3 scripts/check_pytorch_parity.py MODEL.pt DATA_DIR
"""
import gzip
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
from reference_models import build  # noqa: E402


def load_idx_test(folder):
    def read(name):
        for candidate in (name, name + ".gz"):
            path = os.path.join(folder, candidate)
            if os.path.exists(path):
                opener = gzip.open if path.endswith(".gz") else open
                with opener(path, "rb") as f:
                    return f.read()
        raise FileNotFoundError(name)

    images = read("t10k-images-idx3-ubyte")
    labels = read("t10k-labels-idx1-ubyte")
    n, rows, cols = (int.from_bytes(images[i:i + 4], "big") for i in (4, 8, 12))
    x = np.frombuffer(images, np.uint8, offset=16).reshape(n, rows, cols, 1)
    y = np.frombuffer(labels, np.uint8, offset=8).astype(np.int64)
    return x, y


def load_folder_test(folder):
    from PIL import Image

    root = os.path.join(folder, "test")
    xs, ys = [], []
    for label, name in enumerate(sorted(os.listdir(root))):
        for file in sorted(os.listdir(os.path.join(root, name))):
            xs.append(np.asarray(Image.open(os.path.join(root, name, file)).convert("RGB")))
            ys.append(label)
    return np.stack(xs), np.array(ys, dtype=np.int64)


def main():
    checkpoint = torch.load(sys.argv[1])
    assert isinstance(checkpoint, dict), type(checkpoint)
    model = build(checkpoint["arch"], checkpoint["num_classes"], checkpoint["input_shape"])
    model.load_state_dict(checkpoint["state_dict"], strict=True)
    model.eval()
    data = sys.argv[2]
    x, y = load_folder_test(data) if os.path.isdir(os.path.join(data, "test")) else load_idx_test(data)
    correct = 0
    with torch.no_grad():
        for start in range(0, len(x), 500):
            batch = torch.from_numpy(x[start:start + 500]).permute(0, 3, 1, 2).float() / 255
            correct += (model(batch)[-1].argmax(1) == torch.from_numpy(y[start:start + 500])).sum().item()
    print(f"{checkpoint['arch']}: state_dict loaded strictly; PyTorch clean accuracy {100 * correct / len(x):.2f}%")


if __name__ == "__main__":
    main()
