"""VGG-11 with batch norm (and without its poolings)."""

from __future__ import annotations

import torch.nn as nn

from .layers import MaxPool2x2, need


class VGG11BN(nn.Module):
    CFG = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")

    def __init__(self, in_channels=1, num_classes=1, input_size=32, pool=True):
        super().__init__()
        layers, c, side = [], in_channels, input_size
        for v in self.CFG:
            if v == "M":
                if pool:
                    layers.append(MaxPool2x2())
                    side //= 2
            else:
                layers += [nn.Conv2d(c, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
                c = v
        need(side >= 1, "vgg11_bn", input_size, 32)
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(c * side * side, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))
