"""torchvision's side of nad's parity tests for its copies of torchvision's architectures
(tests/models/torchvision_parity_test.cpp). Run with Debian's /usr/bin/python3 (python3-torch
1.13, python3-torchvision 0.14); nothing here is needed at nad's run time.

    torchvision_parity.py make DIR CASE...
        For each CASE (ARCH:CLASSES:SIZE): torchvision.models.ARCH(num_classes=CLASSES) with
        random BatchNorm statistics, BatchNorm affine parameters and biases, in eval mode. Saves
        its bare state_dict as DIR/ARCH_SIZE.pt and, in DIR/ARCH_SIZE_expected.pt, an input batch
        (2 x 3 x SIZE x SIZE in [0, 1]), the logits and the output of every stage module that can
        be an attention group (forward hooks), under "stage:<module name>".
    torchvision_parity.py check DIR CASE...
        For each CASE: loads the state_dict of nad's model.pt DIR/ARCH_SIZE_nad.pt strictly into
        torchvision.models.ARCH(num_classes=CLASSES), runs DIR/ARCH_SIZE_input.pt through it in
        eval mode and saves the logits and stage outputs to DIR/ARCH_SIZE_torch.pt.
    torchvision_parity.py names CLASSES ARCH...
        Prints each ARCH's torchvision state_dict, one "ARCH name shape" line per entry (shape as
        64x3x7x7).

ARCH is nad's name: tv-resnet18 is torchvision's resnet18, the others are torchvision's own.
"""
import collections
import os
import re
import sys

import torch
import torchvision

# Modules whose outputs nad may take as attention groups: ResNet's layers, the `features`
# entries of VGG, MobileNet and EfficientNet, DenseNet's dense blocks.
STAGE = re.compile(r"^(layer\d|features\.\d+|features\.denseblock\d)$")


def build(arch, num_classes):
    name = arch[3:] if arch.startswith("tv-") else arch
    return getattr(torchvision.models, name)(num_classes=num_classes)


def parse(case):
    arch, num_classes, size = case.split(":")
    return arch, int(num_classes), int(size)


def randomise(model, seed):
    """Random BatchNorm statistics and affine parameters, and random biases. Running variances
    in [1, 2] keep the activations of the deep models O(1): with variances down to 0.5 they grow
    to the hundreds in ResNet-50, where float32 rounding alone (torchvision in NCHW against
    channels-last) differs by 1e-4."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.1)
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(1, 2)
                module.num_batches_tracked.fill_(7)
            elif isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)) and module.bias is not None:
                module.bias.normal_(0, 0.1)
    return model.eval()


def run(model, x):
    outputs = collections.OrderedDict()
    hooks = []
    vgg = isinstance(model, torchvision.models.VGG)
    for name, module in model.named_modules():
        # VGG's stages end at its max-pools.
        if STAGE.match(name) and (not vgg or isinstance(module, torch.nn.MaxPool2d)):
            def hook(_module, _inputs, output, name=name):
                outputs["stage:" + name] = output.detach().clone()
            hooks.append(module.register_forward_hook(hook))
    with torch.no_grad():
        logits = model(x)
    for h in hooks:
        h.remove()
    result = collections.OrderedDict(logits=logits)
    result.update(outputs)
    return result


def make(folder, cases):
    for i, case in enumerate(cases):
        arch, num_classes, size = parse(case)
        model = randomise(build(arch, num_classes), 100 + i)
        torch.manual_seed(200 + i)
        x = torch.rand(2, 3, size, size)
        stem = os.path.join(folder, f"{arch}_{size}")
        torch.save(model.state_dict(), stem + ".pt")
        expected = collections.OrderedDict(input=x)
        expected.update(run(model, x))
        torch.save(expected, stem + "_expected.pt")
        del model


def check(folder, cases):
    for case in cases:
        arch, num_classes, size = parse(case)
        stem = os.path.join(folder, f"{arch}_{size}")
        checkpoint = torch.load(stem + "_nad.pt")
        assert isinstance(checkpoint, dict) and checkpoint["arch"] == arch, checkpoint.get("arch")
        model = build(arch, num_classes)
        model.load_state_dict(checkpoint["state_dict"], strict=True)
        model.eval()
        x = torch.load(stem + "_input.pt")["input"]
        torch.save(run(model, x), stem + "_torch.pt")
        del model, checkpoint


def names(num_classes, archs):
    for arch in archs:
        for name, tensor in build(arch, num_classes).state_dict().items():
            print(arch, name, "x".join(str(s) for s in tensor.shape) or "-")


def main():
    command = sys.argv[1]
    if command == "make":
        make(sys.argv[2], sys.argv[3:])
    elif command == "check":
        check(sys.argv[2], sys.argv[3:])
    elif command == "names":
        names(int(sys.argv[2]), sys.argv[3:])
    else:
        raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    main()
