"""Speed only: a network's outputs on the 2D finite-difference inputs x0 ± s e_i, computing
only what e_i changes.

A perturbed input differs from x0 in one pixel, so after a k x k convolution its activation
differs from x0's only in a k x k window, after the next one in a (2k - 1)-wide window, and so on
until the window covers the map. Each activation is held as x0's activation (computed once)
plus, for every perturbed input, its values inside its own window (`Local`); a convolution or a
pooling reads the window and the ring of x0's values around it and writes the next, larger
window. On ResNet-18 at 32 x 32 this skips 93 % of the first stage's work and 59 % of the
second's; on LeNet, most of both convolutions.

The model is traced once per architecture with torch.fx. Operations known to act locally
(convolutions, poolings, eval-mode batch norm, element-wise functions, sums and channel
concatenations) keep the windows; any other operation gets the whole activations, built from
x0's and the windows (`dense`), and runs as written, so every traceable model is computed
exactly. A model that cannot be traced runs its plain forward. `nads.estimate.Engine` checks
the result against the plain forward before it uses it: the two differ by float rounding only.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from .models.layers import MaxPool2x2


@dataclass(frozen=True, eq=False)
class Window:
    """Where each of B activations may differ from x0's: rows [y, y+h), columns [x, x+w) of an
    H x W map (y, x: one per activation). The same for every network: cached per chunk."""

    y: torch.Tensor
    x: torch.Tensor
    h: int
    w: int
    H: int
    W: int

    @property
    def full(self) -> bool:
        return self.h == self.H and self.w == self.W


@dataclass(eq=False)
class Local:
    """A batch of activations equal to `base` (x0's, (1, C, H, W)) outside their windows."""

    base: torch.Tensor
    win: torch.Tensor  # (B, C, h, w)
    where: Window
    _dense: torch.Tensor | None = field(default=None, repr=False)


def _span(lo: torch.Tensor, hi: torch.Tensor, n: int) -> tuple[torch.Tensor, int]:
    """One window size for all, and each one's start, holding [lo, hi] (clipped to [0, n))."""
    lo, hi = lo.clamp(min=0), hi.clamp(max=n - 1)
    size = min(n, max(1, int((hi - lo).max()) + 1))
    return lo.clamp(max=n - size), size


class Crop:
    """Each activation of window `src` over the region rows [y, y+h), columns [x, x+w) of the map
    zero-padded by `pad`: its window's values, x0's elsewhere.

    Built once per chunk as flat row indices, so that each call is two row copies of C values
    (index_select, index_copy_) on channels-last data: a (B, C, h, w) tensor in channels-last layout."""

    def __init__(self, src: Window, y: torch.Tensor, x: torch.Tensor, h: int, w: int, pad=(0, 0)):
        self.pad, self.h, self.w = pad, h, w
        dev = src.y.device
        wide = src.W + 2 * pad[1]
        self.plain = src.full and bool((y == 0).all() and (x == 0).all())
        rows = y[:, None] + torch.arange(h, device=dev)  # (B, h): rows of the padded map
        cols = x[:, None] + torch.arange(w, device=dev)
        self.take = (rows[:, :, None] * wide + cols[:, None, :]).reshape(-1)  # (B*h*w,) into the padded map
        rows = (src.y + pad[0] - y)[:, None] + torch.arange(src.h, device=dev)  # the window, in the region
        cols = (src.x + pad[1] - x)[:, None] + torch.arange(src.w, device=dev)
        inside = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]
        b = torch.arange(len(y), device=dev)[:, None, None]
        put = (b * h + rows[:, :, None]) * w + cols[:, None, :]  # (B, src.h, src.w) into the region
        # A strided layer reads only part of the window, or the region stops at the map's edge.
        self.src = None if bool(inside.all()) else inside.reshape(-1).nonzero().squeeze(1)
        self.put = put.reshape(-1) if self.src is None else put.reshape(-1)[self.src]

    def __call__(self, v: Local) -> torch.Tensor:
        py, px = self.pad
        if self.plain:
            return F.pad(v.win, (px, px, py, py))[..., : self.h, : self.w]
        c = v.base.shape[1]
        # (rows of the map, C), contiguous: a gather of rows from a strided view is several times slower
        base = F.pad(v.base[0], (px, px, py, py)).permute(1, 2, 0).contiguous().view(-1, c)
        out = base.index_select(0, self.take)
        win = v.win.permute(0, 2, 3, 1).reshape(-1, c)  # (a copy only where win is not channels-last)
        out.index_copy_(0, self.put, win if self.src is None else win.index_select(0, self.src))
        return out.view(-1, self.h, self.w, c).permute(0, 3, 1, 2)


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


class LocalForward:
    """model(x0 ± s e_i) for the chunks of an FD estimate, computing only what e_i changes."""

    def __init__(self, model: nn.Module, chunks):
        """chunks: [(start, stop, ...)] coordinate ranges of the input; raises LookupError when
        the model cannot be traced, or nothing of it is local."""
        try:
            self.graph = _Tracer().trace(model)
        except Exception as e:  # noqa: BLE001 - tracing runs arbitrary model code; the plain forward remains
            raise LookupError(f"cannot trace the model ({type(e).__name__}: {e})") from None
        self.chunks = [(a, b) for a, b, *_ in chunks]
        inputs = [n for n in self.graph.nodes if n.op == "placeholder"]
        if len(inputs) != 1:
            raise LookupError("the model's forward takes more than one input")
        self._plans: dict = {}
        self._last_use: dict = {}
        seen: set = set()
        for node in reversed(self.graph.nodes):
            for arg in node.all_input_nodes:
                if arg not in seen:
                    seen.add(arg)
                    self._last_use.setdefault(node, []).append(arg)

    # ------------------------------------------------------------ the pass
    def forward(self, model: nn.Module, x0: torch.Tensor, step: float, chunk: int) -> torch.Tensor:
        """(2n, ...) model outputs on x0 + s e_i for the chunk's n coordinates, then x0 - s e_i."""
        env: dict = {}
        for node in self.graph.nodes:
            if node.op == "placeholder":
                env[node] = self._input(x0, step, chunk)
            elif node.op == "get_attr":
                env[node] = operator.attrgetter(node.target)(model)
            elif node.op == "output":
                return fx.node.map_aggregate(fx.node.map_arg(node.args[0], env.__getitem__), _dense)
            else:
                args = fx.node.map_arg(node.args, env.__getitem__)
                kwargs = fx.node.map_arg(node.kwargs, env.__getitem__)
                env[node] = self._call(model, node, (chunk, node.name), args, kwargs)
            for dead in self._last_use.get(node, ()):
                del env[dead]
        raise LookupError("the traced graph has no output")

    def _input(self, x0: torch.Tensor, step: float, chunk: int) -> Local:
        c, h, w = x0.shape
        start, stop = self.chunks[chunk]
        where = self._plan((chunk, "input"), lambda: _input_window(start, stop, h, w, x0.device))
        i = torch.arange(start, stop, device=x0.device)
        n = stop - start
        win = x0[:, (i // w) % h, i % w].T.repeat(2, 1)  # (2n, C): x0 at each perturbed pixel
        win[torch.arange(n), i // (h * w)] += step
        win[torch.arange(n, 2 * n), i // (h * w)] -= step
        return Local(x0[None], win.reshape(2 * n, c, 1, 1), where)

    def _plan(self, key, build):
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = build()
        return plan

    def _call(self, model, node, key, args, kwargs):
        if node.op == "call_module":
            module = model.get_submodule(node.target)
            fn = module
            out = self._module(module, key, args, kwargs)
        elif node.op == "call_method":
            fn = lambda self_, *a, **k: getattr(self_, node.target)(*a, **k)  # noqa: E731
            out = self._method(node.target, args, kwargs)
        else:
            fn = node.target
            out = self._function(fn, key, args, kwargs)
        if out is not NotImplemented:
            return out
        # Not known to be local: the whole activations, as the model has them.
        return fn(*fx.node.map_aggregate(args, _dense), **fx.node.map_aggregate(kwargs, _dense))

    # ------------------------------------------------------------ what stays local
    def _module(self, m: nn.Module, key, args, kwargs):
        if len(args) != 1 or kwargs or not isinstance(args[0], Local):
            return NotImplemented
        (v,) = args
        if isinstance(m, nn.Conv2d) and m.padding_mode == "zeros" and not isinstance(m.padding, str):
            return self._sliding(
                key,
                v,
                m.kernel_size,
                m.stride,
                m.padding,
                m.dilation,
                lambda x, padded: F.conv2d(
                    x, m.weight, m.bias, m.stride, m.padding if padded else 0, m.dilation, m.groups
                ),
            )
        if isinstance(m, POOLS) or (
            isinstance(m, (nn.MaxPool2d, nn.AvgPool2d))
            and _pair(m.padding) == (0, 0)
            and not m.ceil_mode
            and getattr(m, "dilation", 1) in (1, (1, 1))
            and not getattr(m, "return_indices", False)
        ):
            k = getattr(m, "kernel_size", 2)
            s = getattr(m, "stride", None) or k
            return self._sliding(key, v, k, s, 0, 1, lambda x, _: m(x))
        if isinstance(m, POINTWISE) and not (isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training):
            return _pointwise(m, v)
        return NotImplemented

    def _function(self, fn, key, args, kwargs):
        if any(isinstance(a, (Local, torch.Tensor)) for a in kwargs.values()):
            return NotImplemented
        if fn in POINTWISE_FUNCTIONS and isinstance(args[0], Local):
            if any(isinstance(a, (Local, torch.Tensor)) for a in args[1:]):
                return NotImplemented
            return _pointwise(lambda x: fn(x, *args[1:], **kwargs), args[0])
        if fn in SUMS and len(args) == 2 and not kwargs:
            a, b = args
            if isinstance(a, Local) and isinstance(b, Local):
                a, b = self._align(key, [a, b])
                return Local(fn(a.base, b.base), fn(a.win, b.win), a.where)
            if isinstance(a, Local) and isinstance(b, (int, float)):
                return _pointwise(lambda x: fn(x, b), a)
            if isinstance(b, Local) and isinstance(a, (int, float)):
                return _pointwise(lambda x: fn(a, x), b)
            return NotImplemented
        if fn in (torch.cat, torch.concat) and len(args) in (1, 2):
            parts, dim = args[0], args[1] if len(args) == 2 else kwargs.get("dim", 0)
            stacked = isinstance(parts, (list, tuple)) and parts and all(isinstance(p, Local) for p in parts)
            if stacked and dim in (1, -3):
                parts = self._align(key, list(parts))
                return Local(
                    torch.cat([p.base for p in parts], 1), torch.cat([p.win for p in parts], 1), parts[0].where
                )
        return NotImplemented

    def _method(self, name, args, kwargs):
        if name in POINTWISE_METHODS and isinstance(args[0], Local) and len(args) == 1 and not kwargs:
            return _pointwise(lambda x: getattr(x, name)(), args[0])
        return NotImplemented

    # ------------------------------------------------------------ geometry
    def _sliding(self, key, v: Local, kernel, stride, padding, dilation, op) -> Local:
        """A convolution or pooling: op(x, padded) on x0's whole map (padded) and on each
        window's region (already padded by the crop)."""

        def build():
            g = v.where
            spans = []
            for o, size, n, k, s, p, d in zip(
                (g.y, g.x), (g.h, g.w), (g.H, g.W), _pair(kernel), _pair(stride), _pair(padding), _pair(dilation)
            ):
                reach = d * (k - 1) + 1
                out_n = (n + 2 * p - reach) // s + 1
                lo = torch.div(o + p - reach + s, s, rounding_mode="floor")  # first output the window reaches
                hi = torch.div(o + size - 1 + p, s, rounding_mode="floor")
                start, out_size = _span(lo, hi, out_n)
                spans.append((start, out_size, out_n, (out_size - 1) * s + reach, s))
            (ys, hs, Hs, hin, sy), (xs, ws, Ws, win_, sx) = spans
            crop = Crop(g, ys * sy, xs * sx, hin, win_, _pair(padding))
            return crop, Window(ys, xs, hs, ws, Hs, Ws)

        crop, where = self._plan(key, build)
        return Local(op(v.base, True), op(crop(v), False), where)

    def _align(self, key, parts: list[Local]) -> list[Local]:
        """The same windows for all parts (their union), so that they add or concatenate."""
        first = parts[0].where
        if all(p.where is first for p in parts):
            return parts

        def build():
            ws = [p.where for p in parts]
            ys, hs = _span(
                torch.stack([w.y for w in ws]).min(0).values,
                torch.stack([w.y + w.h - 1 for w in ws]).max(0).values,
                first.H,
            )
            xs, wsz = _span(
                torch.stack([w.x for w in ws]).min(0).values,
                torch.stack([w.x + w.w - 1 for w in ws]).max(0).values,
                first.W,
            )
            return [Crop(w, ys, xs, hs, wsz) for w in ws], Window(ys, xs, hs, wsz, first.H, first.W)

        crops, where = self._plan((*key, "align"), build)
        return [Local(p.base, c(p), where) for p, c in zip(parts, crops)]


def _input_window(start: int, stop: int, h: int, w: int, device) -> Window:
    i = torch.arange(start, stop, device=device)
    y, x = (i // w) % h, i % w
    return Window(y.repeat(2), x.repeat(2), 1, 1, h, w)


def _pointwise(fn, v: Local) -> Local:
    return Local(fn(v.base), fn(v.win), v.where)


def _dense(v):
    """The whole activations (B, C, H, W) of a Local; anything else as it is."""
    if not isinstance(v, Local):
        return v
    if v._dense is None:
        g = v.where
        if g.full:
            v._dense = v.win
        else:
            zero = torch.zeros(len(g.y), dtype=torch.long, device=g.y.device)
            v._dense = Crop(g, zero, zero, g.H, g.W)(v)
    return v._dense


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, name: str) -> bool:
        return isinstance(m, POOLS) or super().is_leaf_module(m, name)


POOLS = (MaxPool2x2,)  # our own 2x2 max-pool (its forward branches on autograd state: a leaf for fx)
POINTWISE = (
    nn.modules.batchnorm._BatchNorm,
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Tanh,
    nn.Sigmoid,
    nn.Hardswish,
    nn.Identity,
    nn.Dropout,
)
POINTWISE_FUNCTIONS = {F.relu, torch.relu, F.relu6, F.leaky_relu, F.gelu, F.silu, F.elu, torch.tanh, torch.sigmoid}
POINTWISE_METHODS = {"relu", "tanh", "sigmoid"}
SUMS = {operator.add, operator.sub, operator.mul, torch.add, torch.sub, torch.mul}
