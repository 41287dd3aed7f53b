"""A BackdoorBench-shaped attack_result.pt made the way BackdoorBench makes one: a PreAct-ResNet-18
trained in PyTorch on inputs normalised with BackdoorBench's CIFAR-10 values, BadNets with a
3x3 white square in the bottom-right corner. Writes, into FOLDER:
  data/train/<class>/<i>.png, data/test/<class>/<i>.png   the images (PNG: decoded exactly)
  attack_result.pt                                         BackdoorBench's record layout
  bd_test_dataset/<label>/<i>.png                          BackdoorBench's triggered test folder
  expected.json                                            ACC and ASR as PyTorch measures them
`rename IN OUT NAME` writes IN's record with model_name NAME.
Used by nad's tests only; run with /usr/bin/python3 (Debian's python3-torch)."""
import json
import os
import struct
import sys
import zlib

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
from reference_models import ResNet18  # noqa: E402

MEAN = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)
STD = torch.tensor([0.247, 0.243, 0.261]).view(1, 3, 1, 1)
TARGET = 0


def write_png(path, image):
    """image: H x W x 3 uint8; an 8-bit RGB PNG, no filtering."""
    height, width, _ = image.shape
    raw = b"".join(b"\x00" + image[r].tobytes() for r in range(height))

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)))
        f.write(chunk(b"IDAT", zlib.compress(raw)))
        f.write(chunk(b"IEND", b""))


def make_images(generator, palette, per_class):
    """Class k: colour palette[k] plus noise, so a hundred steps learn most of them."""
    images, labels = [], []
    for k in range(len(palette)):
        noise = torch.randint(-40, 41, (per_class, 32, 32, 3), generator=generator)
        images.append((palette[k].view(1, 1, 1, 3) + noise).clamp(0, 255).to(torch.uint8))
        labels += [k] * per_class
    return torch.cat(images), torch.tensor(labels)


def write_splits(folder, splits):
    """folder/data/<split>/<label>/<i>.png for each (split, images, labels)."""
    for split, xs, ys in splits:
        for i, (x, y) in enumerate(zip(xs, ys)):
            directory = os.path.join(folder, "data", split, str(int(y)))
            os.makedirs(directory, exist_ok=True)
            write_png(os.path.join(directory, f"{i}.png"), x.numpy())


def trigger(images):
    out = images.clone()
    out[:, -3:, -3:, :] = 255
    return out


def inputs(images):
    return (images.permute(0, 3, 1, 2).float() / 255 - MEAN) / STD


def logits(model, images):
#reference_models ' forward returns (group features, logits), as nad' s models do.
    return model(inputs(images))[-1]


def main(folder, steps):
    torch.manual_seed(0)
    torch.set_num_threads(2)
    generator = torch.Generator().manual_seed(0)
    palette = torch.randint(40, 216, (10, 3), generator=generator)
    train_x, train_y = make_images(generator, palette, 20)
    test_x, test_y = make_images(generator, palette, 10)
    write_splits(folder, (("train", train_x, train_y), ("test", test_x, test_y)))

    poisoned = torch.randperm(len(train_x), generator=generator)[: len(train_x) // 10]
    bd_x, bd_y = train_x.clone(), train_y.clone()
    bd_x[poisoned] = trigger(train_x[poisoned])
    bd_y[poisoned] = TARGET

    model = ResNet18(num_classes=10, preact=True)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    model.train()
    for step in range(steps):
        batch = torch.randint(0, len(bd_x), (20,), generator=generator)
        loss = F.cross_entropy(logits(model, bd_x[batch]), bd_y[batch])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()

    model.eval()
    with torch.no_grad():
        acc = (logits(model, test_x).argmax(1) == test_y).float().mean().item() * 100
        others = test_y != TARGET
        hits = logits(model, trigger(test_x[others])).argmax(1) == TARGET
        asr = hits.float().mean().item() * 100

#BackdoorBench's saved bd_test folder: bd_test_dataset/<true label>/<test index>.png, the
#triggered non - target test images(utils / bd_dataset_v2.py, poisonedCLSDataContainer).
    triggered_test = trigger(test_x)
    for i in torch.nonzero(others).flatten().tolist():
        directory = os.path.join(folder, "bd_test_dataset", str(int(test_y[i])))
        os.makedirs(directory, exist_ok=True)
        write_png(os.path.join(directory, f"{i}.png"), triggered_test[i].numpy())

#BackdoorBench's save_attack_result: bd_train holds the poisoned rows only, N x C x H x W.
    torch.save(
        {
            "model_name": "preactresnet18",
            "num_classes": 10,
            "model": model.state_dict(),
            "data_path": "./data",
            "img_size": (32, 32, 3),
            "clean_data": "cifar10",
            "bd_train": {
                "x": bd_x[poisoned].permute(0, 3, 1, 2).float(),
                "y": bd_y[poisoned],
                "original_index": poisoned.numpy(),
            },
            "bd_test": {
                "x": trigger(test_x[others]).permute(0, 3, 1, 2).float(),
                "y": torch.full((int(others.sum()),), TARGET),
            },
        },
        os.path.join(folder, "attack_result.pt"),
    )
    with open(os.path.join(folder, "expected.json"), "w") as f:
        json.dump({"clean_acc": acc, "asr": asr, "steps": steps}, f)
    print(f"ACC {acc:.2f} ASR {asr:.2f}")


def rename(source, destination, model_name):
    """The same record under another model_name (nad's test of an architecture it does not know)."""
    record = torch.load(source)
    record["model_name"] = model_name
    torch.save(record, destination)


if __name__ == "__main__":
    if sys.argv[1] == "rename":
        rename(*sys.argv[2:5])
    else:
        main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 100)
