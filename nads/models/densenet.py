"""DenseNet-121, CIFAR-style (and without its poolings)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class Bottleneck(nn.Module):
    def __init__(self, cin, growth):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, 4 * growth, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(4 * growth)
        self.conv2 = nn.Conv2d(4 * growth, growth, 3, padding=1, bias=False)

    def forward(self, x):
        out = self.conv2(F.relu(self.bn2(self.conv1(F.relu(self.bn1(x))))))
        return torch.cat([out, x], 1)


class Transition(nn.Module):
    def __init__(self, cin, cout, pool):
        super().__init__()
        self.bn = nn.BatchNorm2d(cin)
        self.conv = nn.Conv2d(cin, cout, 1, bias=False)
        self.pool = nn.AvgPool2d(2) if pool else nn.Identity()

    def forward(self, x):
        return self.pool(self.conv(F.relu(self.bn(x))))


class DenseNet121(nn.Module):
    def __init__(self, in_channels=1, num_classes=1, input_size=32, pool=True, growth=32, blocks=(6, 12, 24, 16)):
        super().__init__()
        c = 2 * growth
        self.conv1 = nn.Conv2d(in_channels, c, 3, padding=1, bias=False)
        layers = []
        for i, n in enumerate(blocks):
            for _ in range(n):
                layers.append(Bottleneck(c, growth))
                c += growth
            if i < len(blocks) - 1:
                layers.append(Transition(c, c // 2, pool))
                c //= 2
        self.dense = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(c)
        self.pool = pool
        self.linear = nn.Linear(c if pool else c * input_size * input_size, num_classes)

    def forward(self, x):
        out = F.relu(self.bn(self.dense(self.conv1(x))))
        out = F.adaptive_avg_pool2d(out, 1) if self.pool else out
        return self.linear(out.flatten(1))
