"""Speed only: the first layer's outputs on the 2D finite-difference inputs, without running it.

Each perturbed input x0 ± s e_i differs from x0 in one coordinate and the first
layer is linear, so its output is L(x0) ± s·L0(e_i): a few weights scattered
into L(x0), not a convolution over 2D inputs. `nads.estimate.Engine` checks
the shortcut against the plain forward before it uses it.
"""

from __future__ import annotations

import torch
from torch.func import functional_call


class FirstLayerShortcut:
    """The first layer's outputs on x0 ± s e_i, without running it on 2D inputs.

    Applies when exactly one nn.Conv2d / nn.Linear receives the raw input,
    once per forward. Which weight lands at which output position for each e_i
    is found once per architecture by running the layer on the basis with
    weights replaced by their (1-based) ids; per network it is then a scatter.

    When the layer's output goes straight into a 2x2 max-pool (LeNet), the
    pool's output is produced instead: it equals the pool of x0's layer output
    except in the few pooled cells whose windows e_i reaches, so only those
    cells are recomputed (4x less data to copy and pool).
    `Engine` checks the shortcut against the plain forward before using it.
    """

    def __init__(self, model: torch.nn.Module, x0: torch.Tensor, chunks):
        self.name, self.in_shape, self.pool = self._first_layer(model, x0)
        layer: torch.nn.Module = model.get_submodule(self.name)
        assert isinstance(layer.weight, torch.Tensor)
        with torch.no_grad():
            ids = torch.arange(1, layer.weight.numel() + 1, dtype=torch.float64).reshape(layer.weight.shape)
            probe = {"weight": ids}
            bias = getattr(layer, "bias", None)
            if isinstance(bias, torch.Tensor):
                probe["bias"] = torch.zeros(bias.shape, dtype=torch.float64)
            self.index: list = []
            for start, stop, _ in chunks:
                basis = torch.zeros(stop - start, x0.numel(), dtype=torch.float64)
                basis[torch.arange(stop - start), torch.arange(start, stop)] = 1.0
                resp = functional_call(layer, probe, (basis.reshape(-1, *self.in_shape[1:]),))
                self.out_shape = resp.shape[1:]
                resp = resp.reshape(stop - start, -1)
                rows, pos = resp.nonzero(as_tuple=True)
                self.index.append((rows, pos, resp[rows, pos].long() - 1))
        if self.pool is not None:
            if len(self.out_shape) != 3 or min(self.out_shape[1:]) < 2:
                raise LookupError("the pooled first layer needs (C, H, W) outputs of at least 2x2")
            self.index = [
                self._pooled_index(rows, pos, wid, stop - start)
                for (rows, pos, wid), (start, stop, _) in zip(self.index, chunks)
            ]

    @staticmethod
    def _first_layer(model, x0):
        """(name, input shape, name of the 2x2 max-pool its output goes to, or None)."""
        from .models.layers import MaxPool2x2

        seen, outputs, pools = [], {}, []
        hooks = [
            m.register_forward_pre_hook(lambda mod, args, name=name: seen.append((name, args)))
            for name, m in model.named_modules()
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))
        ]
        hooks += [
            m.register_forward_hook(lambda mod, args, out, name=name: outputs.setdefault(name, out))
            for name, m in model.named_modules()
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))
        ]
        hooks += [
            m.register_forward_pre_hook(lambda mod, args, name=name: pools.append((name, args[0])))
            for name, m in model.named_modules()
            if isinstance(m, MaxPool2x2)
        ]
        x = x0[None].clone()
        try:
            with torch.no_grad():
                model(x)
        finally:
            for h in hooks:
                h.remove()
        raw = [
            (name, args[0].shape)
            for name, args in seen
            if args and torch.is_tensor(args[0]) and args[0].data_ptr() == x.data_ptr()
        ]
        if len(raw) != 1 or sum(name == raw[0][0] for name, _ in seen) != 1:
            raise LookupError("no single linear first layer")
        name = raw[0][0]
        out = outputs[name]
        # The pool is shadowed for its first call only: that call must be the one on this output.
        fed = [p for p, inp in pools if inp is out]
        first_calls = {p: inp for p, inp in reversed(pools)}
        pool = fed[0] if len(fed) == 1 and first_calls[fed[0]] is out else None
        return name, raw[0][1], pool

    def _pooled_index(self, rows, pos, wid, n: int):
        """Where each e_i's changes land, in windows around the pooled cells they reach."""
        c, h, w = self.out_shape
        hp, wp = h // 2, w // 2
        y, x = (pos // w) % h, pos % w
        keep = (y < 2 * hp) & (x < 2 * wp)  # rows/columns a 2x2 pool drops
        rows, y, x, o, wid = rows[keep], y[keep], x[keep], pos[keep] // (h * w), wid[keep]
        lo_y = torch.full((n,), 2 * hp, dtype=torch.long).scatter_reduce(0, rows, y, "amin")
        hi_y = torch.full((n,), -1, dtype=torch.long).scatter_reduce(0, rows, y, "amax")
        lo_x = torch.full((n,), 2 * wp, dtype=torch.long).scatter_reduce(0, rows, x, "amin")
        hi_x = torch.full((n,), -1, dtype=torch.long).scatter_reduce(0, rows, x, "amax")
        ph = int((hi_y // 2 - lo_y // 2).max().clamp(min=0)) + 1
        pw = int((hi_x // 2 - lo_x // 2).max().clamp(min=0)) + 1
        if ph > hp or pw > wp:
            raise LookupError("the first layer's response is not local")
        y0 = (lo_y // 2).clamp(0, hp - ph)  # pooled window origin per e_i
        x0 = (lo_x // 2).clamp(0, wp - pw)
        a, b = torch.arange(2 * ph), torch.arange(2 * pw)
        window = (
            torch.arange(c)[None, :, None, None] * h * w
            + (2 * y0[:, None, None, None] + a[:, None]) * w
            + 2 * x0[:, None, None, None]
            + b
        )  # (n, c, 2ph, 2pw) into (c, h, w)
        local = o * (4 * ph * pw) + (y - 2 * y0[rows]) * (2 * pw) + (x - 2 * x0[rows])
        a, b = torch.arange(ph), torch.arange(pw)
        cells = (
            torch.arange(c)[None, :, None, None] * hp * wp
            + (y0[:, None, None, None] + a[:, None]) * wp
            + x0[:, None, None, None]
            + b
        )  # (n, c, ph, pw) into (c, hp, wp)
        return rows, local, wid, window, cells.reshape(n, -1)

    def layer_outputs(self, layer, x0, step: float, chunk: int) -> torch.Tensor:
        """(2n, *out) outputs of `layer` on x0 + s e_i (first n rows) and x0 - s e_i."""
        rows, pos, wid = self.index[chunk]
        n = int(rows.max()) + 1 if len(rows) else 0
        base = layer(x0.reshape(1, *self.in_shape[1:])).reshape(1, -1)
        out = base.expand(2 * n, base.shape[1]).clone()
        delta = (step * layer.weight.reshape(-1)[wid]).to(out.dtype)  # bf16 under autocast
        out.index_put_((rows, pos), delta, accumulate=True)
        out.index_put_((rows + n, pos), -delta, accumulate=True)
        return out.reshape(2 * n, *self.out_shape)

    def pooled_outputs(self, layer, pool, x0, step: float, chunk: int) -> torch.Tensor:
        """(2n, c, h/2, w/2): pool(layer(x0 ± s e_i)), recomputing only the cells e_i reaches."""
        rows, local, wid, window, cells = self.index[chunk]
        n, c = len(window), self.out_shape[0]
        base = layer(x0.reshape(1, *self.in_shape[1:]))
        pooled = pool(base).reshape(1, -1)
        win = base.reshape(-1)[window.repeat(2, 1, 1, 1)]  # (2n, c, 2ph, 2pw)
        delta = (step * layer.weight.reshape(-1)[wid]).to(win.dtype)
        win.view(2 * n, -1).index_put_((rows, local), delta, accumulate=True)
        win.view(2 * n, -1).index_put_((rows + n, local), -delta, accumulate=True)
        patch = pool(win).reshape(2 * n, -1)
        out = pooled.expand(2 * n, -1).clone().scatter_(1, cells.repeat(2, 1), patch)
        return out.reshape(2 * n, c, self.out_shape[1] // 2, self.out_shape[2] // 2)

    def forward(self, model, x0, step: float, chunk: int, batch: torch.Tensor) -> torch.Tensor:
        """model(batch) for the FD batch of `chunk`, with the first layer replaced by the scatter."""
        layer = model.get_submodule(self.name)
        # Instance attributes shadow the classes' forwards for this call only.
        if self.pool is None:
            first = self.layer_outputs(layer, x0, step, chunk)
            shadows = {layer: lambda *_: first}
        else:
            pool = model.get_submodule(self.pool)
            pooled = self.pooled_outputs(layer, pool, x0, step, chunk)
            calls = []

            def pool_once(x):  # the pool's first call is the one on the first layer's output
                calls.append(None)
                return pooled if len(calls) == 1 else type(pool).forward(pool, x)

            shadows = {layer: lambda *_: pooled, pool: pool_once}  # the pool ignores the layer's output
        for module, fn in shadows.items():
            module.forward = fn
        try:
            return model(x0[None].expand_as(batch))
        finally:
            for module in shadows:
                del module.forward
