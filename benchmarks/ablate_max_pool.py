"""Training-step time with the registry's MaxPool2x2 against the two ways it was
done before: F.max_pool2d (the textbook) and F.max_pool2d on a channels-last copy
(this project's earlier code). Same model, weights and batch; one thread;
alternated; best of the repeats.

    python benchmarks/ablate_max_pool.py
"""

from __future__ import annotations

import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from nads.models import get_model
from nads.models.layers import MaxPool2x2


class PlainPool(nn.Module):
    def forward(self, x):
        return F.max_pool2d(x, 2)


class ChannelsLastPool(nn.Module):
    def forward(self, x):
        return F.max_pool2d(x.contiguous(memory_format=torch.channels_last), 2)


def with_pool(arch: str, channels: int, pool: type | None) -> nn.Module:
    torch.manual_seed(0)
    model = get_model(arch, channels, 2, 32)
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if pool is not None and isinstance(child, MaxPool2x2):
                setattr(module, name, pool())
    return model


def step_seconds(model: nn.Module, x, y, steps: int) -> float:
    opt = torch.optim.SGD(model.parameters(), lr=0.01)

    def step():
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t) / steps


def main() -> None:
    torch.set_num_threads(1)
    pools = {"max_pool2d": PlainPool, "max_pool2d, channels-last copy": ChannelsLastPool, "MaxPool2x2": None}
    print("| arch | batch | pool | ms per training step | speed-up vs max_pool2d |")
    print("|---|---|---|---|---|")
    for arch, channels, batch, steps in (("lenet", 1, 128, 40), ("vgg11_bn", 3, 32, 4)):
        x, y = torch.randn(batch, channels, 32, 32), torch.randint(0, 2, (batch,))
        models = {name: with_pool(arch, channels, pool) for name, pool in pools.items()}
        best = {name: float("inf") for name in pools}
        for _ in range(5):
            for name, model in models.items():
                best[name] = min(best[name], step_seconds(model, x, y, steps))
        for name in pools:
            print(f"| {arch} | {batch} | {name} | {1e3 * best[name]:.2f} | {best['max_pool2d'] / best[name]:.2f}x |")


if __name__ == "__main__":
    main()
