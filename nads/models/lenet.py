"""LeNet-5, as in the paper (and without its poolings)."""

from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F

from .layers import MaxPool2x2, need


class LeNet(nn.Module):
    """LeNet-5 as in the paper. pool=False removes both poolings (convolutions
    padded to keep the resolution); the first fully connected layer widens."""

    def __init__(self, in_channels=1, num_classes=1, input_size=32, pool=True):
        super().__init__()
        pad = 0 if pool else 2
        self.conv1 = nn.Conv2d(in_channels, 6, 5, padding=pad)
        self.conv2 = nn.Conv2d(6, 16, 5, padding=pad)
        self.pool = MaxPool2x2() if pool else nn.Identity()
        side = ((input_size - 4) // 2 - 4) // 2 if pool else input_size
        need(side >= 1, "lenet", input_size, 16)
        self.fc1 = nn.Linear(16 * side * side, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x):
        # Pool, then ReLU: the same function (ReLU is monotone, so it commutes
        # with max), on 4x fewer values; NAD estimation runs this 2D times per network.
        x = F.relu(self.pool(self.conv1(x)))
        x = F.relu(self.pool(self.conv2(x)))
        x = F.relu(self.fc1(x.flatten(1)))
        return self.fc3(F.relu(self.fc2(x)))
