"""ResNet-18, CIFAR-style (and without its downsampling)."""

from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet18(nn.Module):
    def __init__(self, in_channels=1, num_classes=1, input_size=32, pool=True):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        blocks, c = [], 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            stride = stride if pool else 1
            blocks += [BasicBlock(c, cout, stride), BasicBlock(cout, cout, 1)]
            c = cout
        self.layers = nn.Sequential(*blocks)
        self.pool = pool
        self.linear = nn.Linear(c if pool else c * input_size * input_size, num_classes)

    def forward(self, x):
        out = self.layers(F.relu(self.bn1(self.conv1(x))))
        out = F.adaptive_avg_pool2d(out, 1) if self.pool else out
        return self.linear(out.flatten(1))
