"""An MLP-Mixer at CIFAR scale (the atlas)."""

from __future__ import annotations

import torch.nn as nn

from .tokens import PatchTokens, mlp


class MixerBlock(nn.Module):
    def __init__(self, tokens: int, dim: int, token_hidden: int, channel_hidden: int):
        super().__init__()
        self.norm1, self.token_mlp = nn.LayerNorm(dim), mlp(tokens, token_hidden)
        self.norm2, self.channel_mlp = nn.LayerNorm(dim), mlp(dim, channel_hidden)

    def forward(self, x):
        x = x + self.token_mlp(self.norm1(x).transpose(1, 2)).transpose(1, 2)
        return x + self.channel_mlp(self.norm2(x))


class Mixer(nn.Module):
    """An MLP-Mixer: patch-p tokens, blocks that mix across tokens then across channels."""

    def __init__(self, in_channels=1, num_classes=1, input_size=32, patch=4, dim=48, depth=2):
        super().__init__()
        self.patches = PatchTokens(in_channels, dim, patch, input_size, f"mixer_p{patch}")
        t = self.patches.tokens
        self.blocks = nn.Sequential(*(MixerBlock(t, dim, t, 2 * dim) for _ in range(depth)))
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, num_classes)

    def forward(self, x):
        return self.head(self.norm(self.blocks(self.patches(x))).mean(1))
