"""TorchScript fixtures for nad's tests, made with Debian's python3-torch.
`archives DIR`: scripted.ts and traced.ts (a small CIFAR-sized model with a custom head), and
archives nad must refuse: calls_save.ts (aten::save), calls_from_file.ts (aten::from_file),
custom_op.ts (an operator of a custom namespace, nad_test_ops).
`parity DIR`: scripted.ts and traced.ts with randomised BatchNorm statistics, inputs.bin
(2 x 3 x 32 x 32 float32) and what PyTorch computes on them: logits.bin and, taken with
forward hooks, layer1.bin, layer2.bin, layer3.bin (float32, C order).
`backdoored DIR STEPS`: BadNets (a 3x3 white square, bottom right, target 0) planted by
PyTorch training in the same model on generated PNG data (DIR/data/{train,test}/<class>/),
saved scripted as DIR/bd.ts (`backdoored DIR STEPS traced`: traced); DIR/expected.json holds
PyTorch's ACC and ASR.
`torchvision DIR`: torchvision's resnet18 (10 classes, BatchNorm statistics from a few random
batches) as nad's model.pt (DIR/tv.pt, arch tv-resnet18) and scripted (DIR/tv.ts), same weights.
`compare-logits MODEL IMAGES PREDICT_DIR`: the largest difference between PyTorch's logits of
MODEL on the PNG files of IMAGES and those `nad predict --images IMAGES --logits` wrote.
`measure MODEL DATA [LAYER]`: a TorchScript model's ACC and ASR on DATA/test, as JSON on stdout
(with LAYER: also `zero_rows`, that layer's output channels whose weights are all zero).
Used by nad's tests only; run with /usr/bin/python3."""
import json
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
from make_backdoorbench_record import make_images, trigger, write_splits  # noqa: E402


class Head(nn.Module):
    """Not a torchvision class: 2x2-pooled features through two linear layers."""

    def __init__(self, channels, classes):
        super().__init__()
        self.hidden = nn.Linear(channels * 4, 32)
        self.out = nn.Linear(32, classes)

    def forward(self, x):
        x = torch.flatten(F.adaptive_max_pool2d(x, 2), 1)
        return self.out(F.relu(self.hidden(x)))


def block(cin, cout, stride):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU())


class Net(nn.Module):
    def __init__(self, channels=3, classes=10):
        super().__init__()
        self.stem = block(channels, 16, 1)
        self.layer1 = block(16, 16, 1)
        self.layer2 = block(16, 32, 2)
        self.layer3 = block(32, 64, 2)
        self.head = Head(64, classes)

    def forward(self, x):
        x = self.stem(x)
        x = self.layer1(x)
        x = self.layer2(x)
        return self.head(self.layer3(x))


class CallsSave(nn.Module):
    def forward(self, x):
        torch.save(x, "/tmp/nad-leak.pt")
        return x


class CallsFromFile(nn.Module):
    def forward(self, x):
        return x + torch.from_file("/etc/hostname", size=1).sum()


def archives(folder):
    os.makedirs(folder, exist_ok=True)
    torch.manual_seed(0)
    model = Net().eval()
    torch.jit.script(model).save(os.path.join(folder, "scripted.ts"))
    torch.jit.trace(model, torch.rand(2, 3, 32, 32)).save(os.path.join(folder, "traced.ts"))
    torch.jit.script(CallsSave()).save(os.path.join(folder, "calls_save.ts"))
    torch.jit.script(CallsFromFile()).save(os.path.join(folder, "calls_from_file.ts"))

    library = torch.library.Library("nad_test_ops", "DEF")
    library.define("leak(Tensor x) -> Tensor")
    library.impl("leak", lambda x: x, "CPU")

    class CustomOp(nn.Module):
        def forward(self, x):
            return torch.ops.nad_test_ops.leak(x)

    torch.jit.script(CustomOp()).save(os.path.join(folder, "custom_op.ts"))


def randomised(model):
    """BatchNorm statistics and affine parameters away from their initial values."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    return model.eval()


def parity(folder):
    os.makedirs(folder, exist_ok=True)
    torch.manual_seed(1)
    model = randomised(Net())
    inputs = torch.rand(2, 3, 32, 32)
    features = {}
    hooks = [getattr(model, name).register_forward_hook(
        lambda module, args, output, name=name: features.__setitem__(name, output))
        for name in ("layer1", "layer2", "layer3")]
    with torch.no_grad():
        logits = model(inputs)
    for hook in hooks:
        hook.remove()  # not part of the scripted model
    torch.jit.script(model).save(os.path.join(folder, "scripted.ts"))
    torch.jit.trace(model, inputs).save(os.path.join(folder, "traced.ts"))
    for name, tensor in [("inputs", inputs), ("logits", logits)] + sorted(features.items()):
        tensor.contiguous().numpy().astype("<f4").tofile(os.path.join(folder, name + ".bin"))


def inputs_of(images):
    return images.permute(0, 3, 1, 2).float() / 255


def read_png(path):
    """An RGB PNG written by write_png (one IDAT, filter 0) as H x W x 3 uint8."""
    import zlib
    with open(path, "rb") as f:
        data = f.read()
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    idat = data[data.index(b"IDAT") + 4:]
    raw = zlib.decompress(idat[:int.from_bytes(data[data.index(b"IDAT") - 4:data.index(b"IDAT")], "big")])
    rows = [raw[r * (width * 3 + 1) + 1:(r + 1) * (width * 3 + 1)] for r in range(height)]
    return torch.frombuffer(bytearray(b"".join(rows)), dtype=torch.uint8).view(height, width, 3)


def read_folder(root):
    """DIR/<class>/*.png written by write_png: images N x H x W x 3 uint8 and labels."""
    images, labels = [], []
    for label in sorted(os.listdir(root), key=int):
        for name in sorted(os.listdir(os.path.join(root, label))):
            images.append(read_png(os.path.join(root, label, name)))
            labels.append(int(label))
    return torch.stack(images), torch.tensor(labels)


def compare_logits(model_file, images_dir, predict_dir):
    """Largest |PyTorch logit - nad's| over the images of `nad predict --images DIR --logits`."""
    import csv
    import numpy
    model = torch.jit.load(model_file).eval()
    with open(os.path.join(predict_dir, "predictions.csv")) as f:
        files = [row["file"] for row in csv.DictReader(f)]
    nad_logits = torch.from_numpy(numpy.load(os.path.join(predict_dir, "logits.npy")))
    images = torch.stack([read_png(os.path.join(images_dir, name)) for name in files])
    with torch.no_grad():
        logits = model(inputs_of(images))
    return {"images": len(files), "max_abs_diff": (logits - nad_logits).abs().max().item()}


def measure(model, images, labels, target=0):
    with torch.no_grad():
        acc = (model(inputs_of(images)).argmax(1) == labels).float().mean().item() * 100
        others = labels != target
        asr = (model(inputs_of(trigger(images[others]))).argmax(1) == target).float().mean().item() * 100
    return {"clean_acc": acc, "asr": asr}


def backdoored(folder, steps, traced=False):
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    palette = torch.randint(40, 216, (10, 3), generator=generator)
    # 200 images a class: with fewer (40), a quarter of the training set is too little clean data
    # for the finetuned teacher to lose the backdoor, and NAD then keeps it (ASR 24-66%).
    train_x, train_y = make_images(generator, palette, 200)
    test_x, test_y = make_images(generator, palette, 50)
    write_splits(folder, (("train", train_x, train_y), ("test", test_x, test_y)))
    poisoned = torch.randperm(len(train_x), generator=generator)[: len(train_x) // 5]
    bd_x, bd_y = train_x.clone(), train_y.clone()
    bd_x[poisoned] = trigger(train_x[poisoned])
    bd_y[poisoned] = 0
    model = Net()
    optimiser = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    model.train()
    for step in range(steps):
        batch = torch.randint(0, len(bd_x), (32,), generator=generator)
        loss = F.cross_entropy(model(inputs_of(bd_x[batch])), bd_y[batch])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()
    if traced:
        compiled = torch.jit.trace(model, inputs_of(test_x[:2]))
    else:
        compiled = torch.jit.script(model)
    compiled.save(os.path.join(folder, "bd.ts"))
    expected = measure(model, test_x, test_y)
    with open(os.path.join(folder, "expected.json"), "w") as f:
        json.dump(expected, f)
    print(json.dumps(expected))


if __name__ == "__main__":
    if sys.argv[1] == "archives":
        archives(sys.argv[2])
    elif sys.argv[1] == "parity":
        parity(sys.argv[2])
    elif sys.argv[1] == "backdoored":
        backdoored(sys.argv[2], int(sys.argv[3]), len(sys.argv) > 4 and sys.argv[4] == "traced")
    elif sys.argv[1] == "torchvision":
        import torchvision
        torch.manual_seed(0)
        model = torchvision.models.resnet18(num_classes=10)
        with torch.no_grad():
            for _ in range(3):
                model(torch.rand(16, 3, 32, 32))
        model.eval()
        os.makedirs(sys.argv[2], exist_ok=True)
        torch.save({"arch": "tv-resnet18", "num_classes": 10, "input_shape": [3, 32, 32],
                    "state_dict": model.state_dict()}, os.path.join(sys.argv[2], "tv.pt"))
        torch.jit.script(model).save(os.path.join(sys.argv[2], "tv.ts"))
    elif sys.argv[1] == "compare-logits":
        print(json.dumps(compare_logits(sys.argv[2], sys.argv[3], sys.argv[4])))
    elif sys.argv[1] == "measure":
        model = torch.jit.load(sys.argv[2]).eval()
        images, labels = read_folder(os.path.join(sys.argv[3], "test"))
        result = measure(model, images, labels)
        if len(sys.argv) > 4:  # a layer: which of its output channels are all-zero rows
            weights = dict(model.named_parameters())[sys.argv[4] + ".weight"]
            rows = weights.detach().flatten(1).abs().sum(1)
            result["zero_rows"] = [i for i, v in enumerate(rows.tolist()) if v == 0]
        print(json.dumps(result))
    else:
        sys.exit("usage: make_torchscript_models.py archives|parity|backdoored|measure ...")
