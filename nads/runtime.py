"""Where and with which seeds work runs: devices, per-item seeds."""
from __future__ import annotations

import numpy as np
import torch

from .config import ParamError


def resolve_device(device: str = "auto") -> torch.device:
    """'auto' (a GPU when there is one), 'cpu', 'cuda' or 'cuda:N'."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit()):
        if not torch.cuda.is_available():
            raise ParamError(f"device = {device!r}: no CUDA GPU is visible here; use 'auto' or 'cpu'")
        if device != "cuda" and int(device[5:]) >= torch.cuda.device_count():
            raise ParamError(f"device = {device!r}: only {torch.cuda.device_count()} GPU(s) visible")
        return torch.device(device)
    raise ParamError(f"device = {device!r}: allowed: auto, cpu, cuda, cuda:N")


def item_seed(seed: int, *index: int) -> int:
    """A well-mixed 63-bit seed for item `index` of a run seeded `seed`.

    Every network, direction or shard draws from its own stream, so results do
    not depend on how work is batched or split between workers.
    """
    return int(np.random.SeedSequence([seed, *index]).generate_state(1, np.uint64)[0] >> 1)
