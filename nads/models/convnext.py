"""A ConvNeXt at CIFAR scale (the atlas)."""

from __future__ import annotations

import torch
import torch.nn as nn

from .layers import need
from .tokens import mlp


class ChannelsLastNorm(nn.LayerNorm):
    """LayerNorm over the channels of an (N, C, H, W) map (ConvNeXt's channels_first norm)."""

    def forward(self, x):
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.dw = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm, self.mlp = nn.LayerNorm(dim), mlp(dim, 4 * dim)
        self.scale = nn.Parameter(torch.full((dim,), 1e-6))

    def forward(self, x):
        y = self.mlp(self.norm(self.dw(x).permute(0, 2, 3, 1))) * self.scale
        return x + y.permute(0, 3, 1, 2)


class ConvNeXt(nn.Module):
    """A ConvNeXt at CIFAR scale: ConvNeXt's 4x4 patchify stem (stride 4: 8x8 maps), two stages
    of one block each, separated by a norm and a 2x2 stride-2 convolution; global mean, norm, head."""

    def __init__(self, in_channels=1, num_classes=1, input_size=32, dims=(48, 96)):
        super().__init__()
        need(input_size >= 8, "convnext_cifar", input_size, 8)
        layers = [nn.Conv2d(in_channels, dims[0], 4, stride=4), ChannelsLastNorm(dims[0])]
        for i, d in enumerate(dims):
            if i:
                layers += [ChannelsLastNorm(dims[i - 1]), nn.Conv2d(dims[i - 1], d, 2, stride=2)]
            layers.append(ConvNeXtBlock(d))
        self.features = nn.Sequential(*layers)
        self.norm, self.head = nn.LayerNorm(dims[-1]), nn.Linear(dims[-1], num_classes)

    def forward(self, x):
        return self.head(self.norm(self.features(x).mean((2, 3))))
