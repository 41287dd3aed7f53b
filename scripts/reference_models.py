"""PyTorch originals of nad's architectures (NAD reference WRN, BackdoorBench PreAct-ResNet-18,
the common CIFAR ResNet-18), used only to check checkpoint parity. Run with /usr/bin/python3."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class BasicBlock(nn.Module):
    def __init__(self, in_planes, out_planes, stride, dropRate=0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, 1, 1, bias=False)
        self.equalInOut = in_planes == out_planes
        self.convShortcut = (not self.equalInOut) and nn.Conv2d(in_planes, out_planes, 1, stride, 0, bias=False) or None

    def forward(self, x):
        if not self.equalInOut:
            x = self.relu1(self.bn1(x))
        else:
            out = self.relu1(self.bn1(x))
        out = self.relu2(self.bn2(self.conv1(out if self.equalInOut else x)))
        out = self.conv2(out)
        return torch.add(x if self.equalInOut else self.convShortcut(x), out)


class NetworkBlock(nn.Module):
    def __init__(self, nb_layers, in_planes, out_planes, block, stride):
        super().__init__()
        self.layer = nn.Sequential(*[block(i == 0 and in_planes or out_planes, out_planes, i == 0 and stride or 1) for i in range(int(nb_layers))])

    def forward(self, x):
        return self.layer(x)


class WideResNet(nn.Module):
    def __init__(self, depth=16, num_classes=10, widen_factor=1, in_channels=3):
        super().__init__()
        n_channels = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        n = (depth - 4) / 6
        self.conv1 = nn.Conv2d(in_channels, n_channels[0], 3, 1, 1, bias=False)
        self.block1 = NetworkBlock(n, n_channels[0], n_channels[1], BasicBlock, 1)
        self.block2 = NetworkBlock(n, n_channels[1], n_channels[2], BasicBlock, 2)
        self.block3 = NetworkBlock(n, n_channels[2], n_channels[3], BasicBlock, 2)
        self.bn1 = nn.BatchNorm2d(n_channels[3])
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(n_channels[3], num_classes)
        self.nChannels = n_channels[3]

    def forward(self, x):
        out = self.conv1(x)
        a1 = self.block1(out)
        a2 = self.block2(a1)
        a3 = self.block3(a2)
        out = self.relu(self.bn1(a3))
        out = F.adaptive_avg_pool2d(out, 1).view(-1, self.nChannels)
        return a1, a2, a3, self.fc(out)


class MnistCnn(nn.Module):
    """nad's mnist-cnn in PyTorch."""

    def __init__(self, in_channels=1, num_classes=10, height=28, width=28):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.fc1 = nn.Linear(64 * (height // 4) * (width // 4), 128)
        self.fc2 = nn.Linear(128, num_classes)

    def forward(self, x):
        a1 = F.relu(self.conv1(x))
        a2 = F.relu(self.conv2(F.max_pool2d(a1, 2)))
        x = F.max_pool2d(a2, 2).flatten(1)
        return a1, a2, self.fc2(F.relu(self.fc1(x)))


class PreActBlock(nn.Module):
    """BackdoorBench's PreActBlock."""

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False))

    def forward(self, x):
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if hasattr(self, "shortcut") else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class ResNetBlock(nn.Module):
    """The widely copied post-activation CIFAR BasicBlock (kuangliu/pytorch-cifar)."""

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False),
                                          nn.BatchNorm2d(planes))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """BackdoorBench's PreActResNet18 (preact=True) or the CIFAR ResNet-18; `head` names the
    classifier (`linear` in both originals, `fc` in many copies)."""

    def __init__(self, num_classes=10, in_channels=3, preact=False, head="linear"):
        super().__init__()
        self.preact = preact
        self.head = head
        self.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        if not preact:
            self.bn1 = nn.BatchNorm2d(64)
        block = PreActBlock if preact else ResNetBlock
        in_planes = 64
        for i, planes in enumerate([64, 128, 256, 512]):
            layers = []
            for stride in [1 if i == 0 else 2, 1]:
                layers.append(block(in_planes, planes, stride))
                in_planes = planes
            setattr(self, f"layer{i + 1}", nn.Sequential(*layers))
        setattr(self, head, nn.Linear(512, num_classes))

    def forward(self, x):
        out = self.conv1(x)
        if not self.preact:
            out = F.relu(self.bn1(out))
        out = self.layer1(out)
        a2 = self.layer2(out)
        a3 = self.layer3(a2)
        a4 = self.layer4(a3)
        out = F.adaptive_avg_pool2d(a4, 1).flatten(1)
        return a2, a3, a4, getattr(self, self.head)(out)


def build(arch, num_classes, input_shape):
    c, h, w = input_shape
    if arch.startswith("wrn-"):
        _, depth, width = arch.split("-")
        return WideResNet(int(depth), num_classes, int(width), c)
    if arch == "mnist-cnn":
        return MnistCnn(c, num_classes, h, w)
    if arch in ("preact-resnet18", "resnet18"):
        return ResNet18(num_classes, c, preact=arch == "preact-resnet18")
    raise ValueError(f"no reference for {arch}")
