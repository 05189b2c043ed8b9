"""A vision transformer at CIFAR scale (the atlas: a family the paper did not study)."""

from __future__ import annotations

import torch
import torch.nn as nn

from .tokens import PatchTokens, mlp


class Attention(nn.Module):
    # Written out (not scaled_dot_product_attention) so that it runs under torch.func.vmap
    # and forward-mode AD on every backend the project trains on.
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads, self.qkv, self.proj = heads, nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x):
        n, t, d = x.shape
        q, k, v = self.qkv(x).reshape(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attn = torch.softmax(q @ k.transpose(-2, -1) * (d // self.heads) ** -0.5, dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(n, t, d))


class TransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: int):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), Attention(dim, heads)
        self.norm2, self.mlp = nn.LayerNorm(dim), mlp(dim, mlp_ratio * dim)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    """A vision transformer: patch-p tokens with learned position embeddings (std 0.02, as
    timm), pre-norm blocks, the tokens' mean into a linear head (no class token)."""

    def __init__(self, in_channels=1, num_classes=1, input_size=32, patch=4, dim=48, depth=2, heads=3, mlp_ratio=2):
        super().__init__()
        self.patches = PatchTokens(in_channels, dim, patch, input_size, f"vit_p{patch}")
        self.pos = nn.Parameter(0.02 * torch.randn(1, self.patches.tokens, dim))
        self.blocks = nn.Sequential(*(TransformerBlock(dim, heads, mlp_ratio) for _ in range(depth)))
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, num_classes)

    def forward(self, x):
        x = self.blocks(self.patches(x) + self.pos)
        return self.head(self.norm(x).mean(1))
