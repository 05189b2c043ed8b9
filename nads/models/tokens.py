"""Pieces the patch-token families (ViT, MLP-Mixer, ConvNeXt's blocks) share."""

from __future__ import annotations

import torch.nn as nn


def mlp(dim: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))


class PatchTokens(nn.Module):
    """Non-overlapping p x p patches, each mapped linearly to `dim` features: (N, tokens, dim)."""

    def __init__(self, in_channels: int, dim: int, patch: int, input_size: int, arch: str):
        super().__init__()
        if input_size % patch:
            raise ValueError(f"input_size = {input_size}: {arch} needs a multiple of its patch size {patch}")
        self.proj = nn.Conv2d(in_channels, dim, patch, stride=patch)
        self.tokens = (input_size // patch) ** 2

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)
