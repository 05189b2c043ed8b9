"""Logistic regression: the linear baseline, which learns every direction."""

from __future__ import annotations

import torch.nn as nn


class LogReg(nn.Module):
    def __init__(self, in_channels=1, num_classes=1, input_size=32):
        super().__init__()
        self.fc = nn.Linear(in_channels * input_size * input_size, num_classes)

    def forward(self, x):
        return self.fc(x.flatten(1))
