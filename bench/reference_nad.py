"""The NAD reference loop (the authors' main.py, github.com/bboylyg/NAD), in Debian's PyTorch,
on nad's data and models, to compare `nad erase --schedule reference` with the original recipe.

Data come from `nad poison --format npy` (the clean training images, the clean test images and
the triggered test set nad measures ASR on), the clean subset from a nad run's clean_indices.txt,
the models from nad's model.pt files. The recipe is the reference's: WRN features after each
block, attention = sum over channels of |F|^p normalised per sample (p = 2), betas 500, 1000,
1000; SGD with Nesterov momentum 0.9, weight decay 1e-4, batch 64, lr 0.1 for epochs 0-1 then
0.01; RandomCrop(32, padding 4), RandomHorizontalFlip, ToTensor, Cutout(1 hole, length 3) per
image in a DataLoader; ACC and ASR before training and after every epoch. Without --teacher the
teacher is the model finetuned the same way with cross-entropy alone (--teacher-epochs).

    /usr/bin/python3 bench/reference_nad.py --data D --model M [--teacher T] \
        --clean-indices RUN/clean_indices.txt --out result.json [--threads N] [--seed S]
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
from reference_models import build  # noqa: E402


class AT(nn.Module):
    """The reference's attention loss."""

    def __init__(self, p):
        super().__init__()
        self.p = p

    def forward(self, fm_s, fm_t):
        return F.mse_loss(self.attention_map(fm_s), self.attention_map(fm_t))

    def attention_map(self, fm, eps=1e-6):
        am = torch.pow(torch.abs(fm), self.p)
        am = torch.sum(am, dim=1, keepdim=True)
        norm = torch.norm(am, dim=(2, 3), keepdim=True)
        return torch.div(am, norm + eps)


class CleanSubset(torch.utils.data.Dataset):
    """Per-image augmentation as the reference's torchvision pipeline does it."""

    def __init__(self, images, labels, rng):
        self.images = images  # N x H x W x C uint8
        self.labels = labels
        self.rng = rng

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        img = self.images[i]
        h, w, _ = img.shape
        padded = np.pad(img, ((4, 4), (4, 4), (0, 0)))  # RandomCrop(32, padding=4)
        top, left = self.rng.integers(0, 9), self.rng.integers(0, 9)
        img = padded[top:top + h, left:left + w]
        if self.rng.random() < 0.5:  # RandomHorizontalFlip
            img = img[:, ::-1]
        x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float() / 255  # ToTensor
        # Cutout(n_holes=1, length=3): the centre anywhere, the hole clipped at the border.
        y0, x0 = self.rng.integers(h), self.rng.integers(w)
        mask = torch.ones(h, w)
        mask[max(0, y0 - 1):min(h, y0 + 2), max(0, x0 - 1):min(w, x0 + 2)] = 0
        return x * mask, int(self.labels[i])


def to_input(images):
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255


def test(model, clean, clean_labels, bad, bad_targets, batch=64):
    model.eval()
    correct = hits = 0
    with torch.no_grad():
        for i in range(0, len(clean), batch):
            correct += (model(to_input(clean[i:i + batch]))[-1].argmax(1) ==
                        torch.from_numpy(clean_labels[i:i + batch])).sum().item()
        for i in range(0, len(bad), batch):
            hits += (model(to_input(bad[i:i + batch]))[-1].argmax(1) ==
                     torch.from_numpy(bad_targets[i:i + batch])).sum().item()
    return 100.0 * correct / len(clean), 100.0 * hits / len(bad)


def adjust_learning_rate(optimizer, epoch, lr):
    lr = lr if epoch < 2 else 0.01 if epoch < 20 else 0.0001
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr


def load_nad_model(path):
    saved = torch.load(path, map_location="cpu")
    c, h, w = saved["input_shape"]
    model = build(saved["arch"], saved["num_classes"], (c, h, w))
    model.load_state_dict(saved["state_dict"])
    return model


def run(student, teacher, loader, epochs, lr, betas, p, evaluate, label, log):
    optimizer = torch.optim.SGD(student.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4,
                                nesterov=True)
    criterion_at = AT(p)
    history = []
    for epoch in range(epochs):
        rate = adjust_learning_rate(optimizer, epoch, lr)
        start = time.time()
        student.train()
        for img, target in loader:
            *acts_s, out_s = student(img)
            loss = F.cross_entropy(out_s, target)
            if teacher is not None:
                with torch.no_grad():
                    acts_t = teacher(img)[:-1]
                for beta, a_s, a_t in zip(betas, acts_s, acts_t):
                    loss = loss + criterion_at(a_s, a_t.detach()) * beta
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        train_s = time.time() - start
        acc, asr = evaluate(student)
        history.append({"epoch": epoch + 1, "lr": rate, "acc": acc, "asr": asr,
                        "train_seconds": train_s, "seconds": time.time() - start})
        log(f"{label} epoch {epoch + 1}/{epochs} lr {rate}: ACC {acc:.2f} ASR {asr:.2f} "
            f"({time.time() - start:.1f} s)")
    return history


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="a `nad poison --format npy` folder")
    ap.add_argument("--model", required=True)
    ap.add_argument("--teacher", help="nad's teacher.pt; default: finetune one here")
    ap.add_argument("--clean-indices", required=True)
    ap.add_argument("--teacher-epochs", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--betas", type=float, nargs=3, default=[500, 1000, 1000])
    ap.add_argument("--p", type=float, default=2.0)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    start = time.time()
    log = lambda line: print(f"{time.time() - start:7.1f} {line}", flush=True)  # noqa: E731

    d = lambda name: np.load(os.path.join(args.data, name + ".npy"))  # noqa: E731
    indices = np.loadtxt(args.clean_indices, dtype=np.int64).reshape(-1)
    clean_images, clean_labels = d("clean_train_images")[indices], d("clean_train_labels")[indices]
    test_images, test_labels = d("test_images"), d("test_labels")
    bad_images, bad_targets = d("test_triggered_images"), d("test_triggered_targets")
    evaluate = lambda m: test(m, test_images, test_labels, bad_images, bad_targets)  # noqa: E731
    rng = np.random.default_rng(args.seed)
    loader = torch.utils.data.DataLoader(CleanSubset(clean_images, clean_labels, rng),
                                         batch_size=64, shuffle=True, num_workers=0)
    log(f"{len(indices)} clean images, {len(test_labels)} test, {len(bad_targets)} triggered")

    student = load_nad_model(args.model)
    before = evaluate(student)
    log(f"before: ACC {before[0]:.2f} ASR {before[1]:.2f}")
    result = {"before": {"acc": before[0], "asr": before[1]}, "args": vars(args)}
    if args.teacher:
        teacher = load_nad_model(args.teacher)
        result["teacher_source"] = args.teacher
    else:
        teacher = load_nad_model(args.model)
        t0 = time.time()
        result["teacher_history"] = run(teacher, None, loader, args.teacher_epochs, args.lr,
                                        args.betas, args.p, evaluate, "teacher", log)
        result["teacher_seconds"] = time.time() - t0
        result["teacher_source"] = "finetuned here"
    teacher.eval()
    for param in teacher.parameters():
        param.requires_grad_(False)
    acc, asr = evaluate(teacher)
    result["teacher"] = {"acc": acc, "asr": asr}
    t0 = time.time()
    result["history"] = run(student, teacher, loader, args.epochs, args.lr, args.betas, args.p,
                            evaluate, "student", log)
    result["student_seconds"] = time.time() - t0
    result["after"] = {"acc": result["history"][-1]["acc"], "asr": result["history"][-1]["asr"]}
    result["seconds"] = time.time() - start
    result["torch"] = torch.__version__
    result["threads"] = args.threads
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    log(f"after: ACC {result['after']['acc']:.2f} ASR {result['after']['asr']:.2f}; "
        f"{result['seconds']:.1f} s")


if __name__ == "__main__":
    main()
