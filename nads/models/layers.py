"""Layers the CNN families share: a faster exact 2x2 max pooling, and the input-size check."""

from __future__ import annotations

import torch
import torch.autograd.forward_ad as fwAD
import torch.nn as nn
import torch.nn.functional as F


class MaxPool2x2(nn.Module):
    """Exactly F.max_pool2d(x, 2), gradient included (NaN windows aside); faster on a CPU.

    Four strided maxima instead of max_pool2d, whose CPU forward is ~5-10x
    slower (it computes int64 argmax indices even under no_grad, and runs one
    window at a time on contiguous maps). Plain autograd on a CPU uses
    `_Max2x2`: a LeNet training step 1.3x faster, VGG-11's no slower
    (benchmarks/ablate_max_pool.py). torch.func transforms and forward-mode AD
    get max_pool2d.
    """

    def forward(self, x):
        if not (torch.is_grad_enabled() and x.requires_grad):
            return _max4(x)
        if x.device.type == "cpu" and not _transformed(x):
            return _Max2x2.apply(x)
        return F.max_pool2d(x, 2)


def _transformed(x) -> bool:
    """Under torch.func (vmap, grad, ...) or forward-mode AD, which _Max2x2 does not implement."""
    return torch._C._are_functorch_transforms_active() or fwAD.unpack_dual(x).tangent is not None


def _max4(x, winners: bool = False):
    """The 2x2 maxima of x (floor mode) [and which of each window's four won].

    Winners follow max_pool2d's scan (00, 01, 10, 11): the first maximum wins.
    max_pool2d also lets a NaN win; testing for NaN costs ~10 % of a LeNet
    training step here, and only diverged training (recorded as such) has any."""
    h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    x00, x01, x10, x11 = (x[..., i:h:2, j:w:2] for i in (0, 1) for j in (0, 1))
    top, bottom = torch.maximum(x00, x01), torch.maximum(x10, x11)
    out = torch.maximum(top, bottom)
    if not winners:
        return out
    return out, tuple(b > a for a, b in ((x00, x01), (x10, x11), (top, bottom)))


class _Max2x2(torch.autograd.Function):
    """max_pool2d's gradient routing: the first maximum of a window in scan
    order (00, 01, 10, 11) takes the gradient; three bool maps remember it."""

    @staticmethod
    def forward(ctx, x):
        out, wins = _max4(x, winners=True)
        ctx.shape = x.shape
        ctx.save_for_backward(*wins)
        return out

    @staticmethod
    def backward(ctx, g):
        right_top, right_bottom, bottom = ctx.saved_tensors
        top = ~bottom
        h, w = g.shape[-2] * 2, g.shape[-1] * 2
        gx = g.new_zeros(ctx.shape) if ctx.shape[-2:] != (h, w) else g.new_empty(ctx.shape)
        # Multiplying by a bool mask: ~5x faster than torch.where on CPUs (not
        # vectorised there); differs from max_pool2d only for inf/NaN gradients.
        for (i, j), won in zip(
            ((0, 0), (0, 1), (1, 0), (1, 1)),
            (top & ~right_top, top & right_top, bottom & ~right_bottom, bottom & right_bottom),
        ):
            gx[..., i:h:2, j:w:2] = g * won
        return gx


def need(ok: bool, arch: str, input_size: int, minimum: int) -> None:
    if not ok:
        raise ValueError(f"input_size = {input_size}: {arch} needs inputs of at least {minimum}x{minimum}")
