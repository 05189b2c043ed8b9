"""NAD estimation: eigenvectors of the centred covariance of input gradients of
randomly initialised networks, largest eigenvalue first.

The published estimator ("fd") is a central finite difference with a large
step s at one fixed Gaussian point x0:
    g_i = (f(x0 + s e_i) - f(x0 - s e_i)) / 2s,   s = 100.
"autograd" (exact gradients at x0, or at a fresh Gaussian point per network)
gives different directions; it is kept as an option for comparison.

Speed: the 2D perturbed inputs are fed in cache-sized chunks (feeding all 2D
at once is ~3x slower on a CPU, mostly page faults on huge activations). Each
perturbed input differs from x0 in one coordinate, so each of its activations
differs from x0's only in a window that grows layer by layer: only those
windows are computed (`nads.shortcut`; forward "local", the CPU's default). Groups of
networks run as one vmapped computation where that pays (GPUs), eager by default, or with
channels-last tensors, or compiled (`Engine.forward`: benchmarks/gpu_check.py measures which
is fastest on a GPU). The covariance is accumulated in float64 as Σg and
Σggᵀ, so memory does not grow with the number of networks.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import cast

import numpy as np
import torch
from torch.func import functional_call, stack_module_state, vmap

from .config import FORWARDS, Nads
from .errors import ParamError
from .executor import Executor, make_executor
from .models import check_arch, get_model, probe_model
from .progress import Log, Monitor, advance
from .runtime import check_precision, item_seed, precision, resolve_device
from .shortcut import LocalForward

POINTS = ("fixed", "random")
AGREEMENT_K = (1, 10, 100)


@dataclass(frozen=True)
class Spec:
    """Everything that determines the gradient samples (not how they are computed)."""

    arch: str
    input_shape: tuple = Nads.input_shape
    estimator: str = Nads.estimator
    step: float = Nads.step
    seed: int = Nads.seed
    point: str = "fixed"
    precision: str = Nads.precision

    def __post_init__(self):
        object.__setattr__(self, "input_shape", tuple(int(d) for d in self.input_shape))
        Nads.parse(
            {
                "input_shape": list(self.input_shape),
                "estimator": self.estimator,
                "step": self.step,
                "seed": self.seed,
                "precision": self.precision,
            }
        )  # the params file's rules
        if self.point not in POINTS:
            raise ParamError(f"point = {self.point!r}: allowed: {', '.join(POINTS)}")
        try:
            check_arch(self.arch)
        except ValueError as e:
            raise ParamError(str(e)) from None

    @property
    def dim(self) -> int:
        return int(np.prod(self.input_shape))

    def network(self, i: int) -> torch.nn.Module:
        """Network i: default initialisation from its own seed, eval mode, one output."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(item_seed(self.seed, i))
            model = get_model(self.arch, self.input_shape[0], 1, self.input_shape[1])
        return model.eval().requires_grad_(False)

    def x0(self) -> torch.Tensor:
        return torch.randn(self.input_shape, generator=torch.Generator().manual_seed(self.seed))

    def point_for(self, i: int) -> torch.Tensor:
        if self.point == "fixed":
            return self.x0()
        return torch.randn(self.input_shape, generator=torch.Generator().manual_seed(item_seed(self.seed, i, 1)))


class GradientMoments:
    """Running count, Σg and Σggᵀ in float64."""

    def __init__(self, dim: int, device="cpu"):
        self.n = 0
        self.sum = torch.zeros(dim, dtype=torch.float64, device=device)
        self.outer = torch.zeros(dim, dim, dtype=torch.float64, device=device)

    def add(self, grads: torch.Tensor) -> None:
        g = grads.to(torch.float64)
        self.n += g.shape[0]
        self.sum += g.sum(0)
        self.outer.addmm_(g.T, g)

    def __add__(self, other: "GradientMoments") -> "GradientMoments":
        out = GradientMoments(0)
        out.n = self.n + other.n
        out.sum = self.sum + other.sum.to(self.sum.device)
        out.outer = self.outer + other.outer.to(self.outer.device)
        return out

    def to(self, device) -> "GradientMoments":
        out = GradientMoments(0)
        out.n, out.sum, out.outer = self.n, self.sum.to(device), self.outer.to(device)
        return out

    def covariance(self) -> torch.Tensor:
        if self.n < 2:
            raise ValueError(f"covariance needs at least 2 gradient samples, got {self.n}")
        mean = self.sum / self.n
        return (self.outer - self.n * torch.outer(mean, mean)) / (self.n - 1)


def eig_desc(cov: torch.Tensor):
    """(eigenvalues descending, eigenvectors as rows) with a fixed sign: each
    vector's largest-magnitude entry is positive, so results are reproducible."""
    vals, vecs = torch.linalg.eigh(cov.detach().cpu().to(torch.float64))
    vals, vecs = vals.flip(0).numpy(), vecs.flip(1).T.numpy()
    peak = np.abs(vecs).argmax(axis=1)
    vecs = vecs * np.sign(vecs[np.arange(len(vecs)), peak])[:, None]
    return vals, vecs


def subspace_agreement(u: np.ndarray, v: np.ndarray, k: int) -> float:
    """||U_k V_kᵀ||_F² / k: 1 for the same top-k subspace, about k/D for unrelated ones."""
    k = min(k, len(u), len(v))
    return float(np.sum((u[:k] @ v[:k].T) ** 2) / k)


# ---------------------------------------------------------------- gradient sampling
def _group_forward(models, shared: bool):
    """x -> outputs (G, B) of G same-architecture networks.

    shared=True: one input batch (B, C, H, W) for all networks.
    shared=False: one batch per network (G, B, C, H, W).
    """
    if len(models) == 1:
        (m,) = models
        return lambda x: m(x if shared else x[0]).reshape(1, -1)
    params, buffers = stack_module_state(models)
    call = _functional(models[0], len(models), compiled=False, x_dim=None if shared else 0)
    return lambda x: call(params, buffers, x).reshape(len(models), -1)


def _same(fast: torch.Tensor, plain: torch.Tensor, precision: str) -> bool:
    """Whether a faster forward gives the plain forward's outputs. The check catches wrong
    computations (errors of order 1), not rounding: reduced precision rounds two paths differently."""
    fast, plain = fast.reshape(-1).float(), plain.reshape(-1).float()
    tol = 1e-4 if precision == "float32" else 5e-2
    return torch.allclose(fast, plain, rtol=tol, atol=tol / 10 * (1 + plain.abs().max().item()))


def _channels_last(t: torch.Tensor, stacked: bool) -> torch.Tensor:
    """A convolution weight (a group's stacked ones: one more leading dim) with its input channels
    innermost, as channels-last wants; any other tensor as it is."""
    if t.dim() != 4 + stacked:
        return t
    c = 1 + stacked
    return t.movedim(c, -1).contiguous().movedim(-1, c)


# Graphs one process may compile for the NADs' forward. Dynamo counts them per code object, and
# every compiled forward of a process shares one (this lambda's, or vmap's): at its default of 8
# (a ninth architecture, shape, group size or precision) it would run the rest eager, silently,
# under the name 'compiled'. Past this limit it raises instead.
COMPILED_GRAPHS = 256  # (the default accumulated limit, over all code objects)


def _functional(model, g: int, compiled: bool, x_dim: int | None = None) -> Callable:
    """(params, buffers, x) -> the outputs of `model`'s architecture with those parameters; with
    g > 1, of g networks at once (stacked parameters, vmapped; x shared unless x_dim batches it),
    compiled if asked."""
    skeleton = copy.deepcopy(model).to("meta")
    call = lambda p, b, x: functional_call(skeleton, (p, b), (x,))  # noqa: E731
    call = call if g == 1 else vmap(call, in_dims=(0, 0, x_dim))
    if not compiled:
        return call
    # dynamic=False: one graph per shape (chunks have one size, groups nearly always).
    compiled_call = torch.compile(call, dynamic=False)

    def run(p, b, x):
        with torch._dynamo.config.patch(recompile_limit=COMPILED_GRAPHS, fail_on_recompile_limit_hit=True):
            return compiled_call(p, b, x)

    return run


def fd_inputs(x0: torch.Tensor, step: float, start: int, stop: int) -> torch.Tensor:
    """(2n, C, H, W): x0 + s e_i for i in [start, stop), then x0 - s e_i."""
    n, dim = stop - start, x0.numel()
    flat = x0.reshape(1, dim).repeat(2 * n, 1)
    rows, cols = torch.arange(n, device=x0.device), torch.arange(start, stop, device=x0.device)
    flat[rows, cols] += step
    flat[rows + n, cols] -= step
    return flat.reshape(2 * n, *x0.shape)


@dataclass
class Engine:
    """How gradients are computed: device and batching. Does not change results
    beyond float rounding."""

    device: str | torch.device = "auto"  # a torch.device is taken as given (a Ray worker's GPU)
    networks_per_batch: int | None = None
    inputs_per_chunk: int | None = None
    forward: str = Nads.forward  # one of config.FORWARDS (finite differences only)
    _dev: torch.device = field(init=False, repr=False)

    def __post_init__(self):
        self._dev = self.device if isinstance(self.device, torch.device) else resolve_device(self.device)
        gpu = self._dev.type == "cuda"
        # Measured on a 2-core CPU: one network at a time with 256-input chunks, each computing
        # only what its pixel changes, is fastest (vmapped groups add overhead there); GPUs
        # need big groups, which the local forward does not batch.
        self.networks_per_batch = self.networks_per_batch or (32 if gpu else 1)
        self.inputs_per_chunk = self.inputs_per_chunk or (2048 if gpu else 256)
        if self.networks_per_batch < 1 or self.inputs_per_chunk < 1:
            raise ParamError("networks_per_batch and inputs_per_chunk must be >= 1")
        if self.forward not in FORWARDS:
            raise ParamError(f"forward = {self.forward!r}: allowed: {', '.join(FORWARDS)}")
        if self.forward == "auto":
            self.forward = "eager" if gpu else "local"

    def __getstate__(self) -> dict:
        # What a worker needs; its caches (shared inputs, traced and compiled code) are rebuilt
        # in each process, and compiled code does not pickle.
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_") or k == "_dev"}

    def gradients(self, spec: Spec, networks: list[int]) -> torch.Tensor:
        """(len(networks), D) input gradients of the given networks, on the engine's device."""
        models = [spec.network(i).to(self._dev) for i in networks]
        with precision(spec.precision, self._dev):
            if spec.estimator == "fd":
                return self._fd(spec, models)
            x = torch.stack([spec.point_for(i) for i in networks]).to(self._dev)
            x.requires_grad_(True)
            _group_forward(models, shared=False)(x[:, None]).float().sum().backward()
            assert x.grad is not None
            return x.grad.reshape(len(networks), -1)

    @torch.no_grad()
    def _fd(self, spec: Spec, models) -> torch.Tensor:
        x0 = spec.x0().to(self._dev)
        chunks = self._chunks(spec, x0)
        local = self._local(spec, models[0], x0, chunks) if self.forward == "local" and len(models) == 1 else None
        plain = self._plain(spec, models, chunks)  # (with the local forward: eager, for one network)
        grads = torch.empty(len(models), spec.dim, device=self._dev)
        for c, (start, stop, batch) in enumerate(chunks):
            out = plain(batch) if local is None else local.forward(models[0], x0, spec.step, c).reshape(1, -1)
            out, n = out.float(), stop - start
            grads[:, start:stop] = (out[:, :n] - out[:, n:]) / (2 * spec.step)
        return grads

    def _local(self, spec: Spec, model, x0, chunks):
        """The checked LocalForward for this spec, or None where it does not apply."""
        key = (spec.arch, spec.input_shape, spec.step, spec.seed, spec.precision, str(self._dev))
        if getattr(self, "_local_key", None) != key:
            self._local_key, self._local_obj = key, None
            try:
                local = LocalForward(model, chunks)
            except LookupError:
                return None
            # Trust, but verify on this network, at both edges of the input.
            for c in sorted({0, len(chunks) - 1}):
                plain = model(chunks[c][2])
                if not _same(local.forward(model, x0, spec.step, c), plain, spec.precision):
                    return None
            self._local_obj = local
        return self._local_obj

    def _plain(self, spec: Spec, models, chunks) -> Callable[[torch.Tensor], torch.Tensor]:
        """x -> outputs (G, B) of the G networks, as `forward` says; a compiled or channels-last
        forward is checked against the eager one on the first and last chunks (two shapes, two
        compiled graphs), the first time it runs, and kept only once it has passed."""
        if self.forward in ("local", "eager"):
            return _group_forward(models, shared=True)
        g, channels_last = len(models), self.forward.endswith("channels_last")
        key = (spec.arch, spec.input_shape, spec.precision, g, str(self._dev))
        calls = self.__dict__.setdefault("_calls", {})
        new = key not in calls
        call = calls[key] if not new else _functional(models[0], g, self.forward.startswith("compiled"))
        if g == 1:
            params, buffers = dict(models[0].named_parameters()), dict(models[0].named_buffers())
        else:
            params, buffers = stack_module_state(models)
        if channels_last:
            params = {k: _channels_last(v, g > 1) for k, v in params.items()}

        def forward(x):
            x = x.contiguous(memory_format=torch.channels_last) if channels_last else x
            return call(params, buffers, x).reshape(g, -1)

        if new:
            eager = _group_forward(models, shared=True)
            for c in sorted({0, len(chunks) - 1}):
                batch = chunks[c][2]
                out, ref = forward(batch), eager(batch)
                if not _same(out, ref, spec.precision):
                    raise RuntimeError(
                        f"forward = {self.forward!r} computes other outputs than the eager forward for "
                        f"{spec.arch} (max |difference| {(out - ref).abs().max().item():.3g}): "
                        "use forward 'eager' or 'local'"
                    )
            calls[key] = call
        return forward

    def _chunks(self, spec: Spec, x0):
        # Built once per (spec, device) and shared by every network.
        key = (spec.input_shape, spec.step, spec.seed, str(self._dev))
        if getattr(self, "_chunk_key", None) != key:
            per = max(1, cast(int, self.inputs_per_chunk) // 2)  # (an int since __post_init__)
            self._chunk_cache = [
                (a, min(a + per, spec.dim), fd_inputs(x0, spec.step, a, min(a + per, spec.dim)))
                for a in range(0, spec.dim, per)
            ]
            self._chunk_key = key
        return self._chunk_cache

    def moments(self, spec: Spec, networks) -> tuple:
        """(moments of even-indexed networks, of odd-indexed ones) for `networks`,
        accumulated in order. The halves are the two independent estimates
        behind the convergence diagnostic; splitting by index parity keeps them
        independent of batching and sharding."""
        halves = (GradientMoments(spec.dim, self._dev), GradientMoments(spec.dim, self._dev))
        networks = list(networks)
        batch = cast(int, self.networks_per_batch)  # (an int since __post_init__)
        for b in range(0, len(networks), batch):
            ids = networks[b : b + batch]
            g = self.gradients(spec, ids)
            parity = torch.tensor([i % 2 for i in ids], device=g.device)
            for h in (0, 1):
                if (parity == h).any():
                    halves[h].add(g[parity == h])
        return tuple(h.to("cpu") for h in halves)


SHARD = 64  # networks per shard: the unit of work of a worker process or Ray task


@dataclass(frozen=True)
class Shards(Sequence):
    """Networks 0..n-1 in shards of SHARD: range(0, 64), range(64, 128)... made on demand,
    so that the job list (and the resume key, which pickles it) does not grow with n."""

    n_networks: int

    def __len__(self) -> int:
        return -(-self.n_networks // SHARD)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        a = (i % len(self)) * SHARD
        return range(a, min(a + SHARD, self.n_networks))


_engine_cache: dict = {}


def shard_moments(common, networks) -> tuple:
    """Moments of one shard of networks; module-level so workers can run it.

    A worker keeps one Engine per configuration, so its shared inputs and
    local forward are built once per process, not once per shard."""
    spec, engine = common
    key = (engine.device, engine.networks_per_batch, engine.inputs_per_chunk, engine.forward)
    engine = _engine_cache.setdefault(key, engine)
    moments = engine.moments(spec, networks)
    advance(len(networks))
    return moments


def total_moments(
    spec: Spec, engine: "Engine", n_networks: int, executor: Executor, progress: bool = False, log: Log | None = None
) -> tuple:
    """Moments of networks 0..n-1, summed shard by shard in order (the same
    result whatever the executor and its number of workers)."""
    monitor = Monitor(
        n_networks,
        f"NADs {spec.arch} ({spec.estimator})" if progress else None,
        "net",
        log,
        f"networks_{spec.estimator}",
    )
    halves = executor.map(
        shard_moments,
        Shards(n_networks),
        (spec, engine),
        engine._dev,
        monitor=monitor,
        fold=lambda a, b: (a[0] + b[0], a[1] + b[1]),
    )
    monitor.close()
    return halves


# ---------------------------------------------------------------- the estimate
@dataclass
class NADResult:
    nads: np.ndarray  # (D, D) float32, row i is NAD i (unit norm)
    eigenvalues: np.ndarray  # (D,) float64, descending
    diagnostics: dict  # deterministic: counts, convergence
    timing: dict  # seconds, networks per second (not reproducible)


def probe(spec: Spec) -> None:
    """Fail at once, before any long compute, if the model cannot give one finite output per input."""
    try:
        probe_model(spec.arch, spec.input_shape[0], 1, spec.input_shape[1])
    except ValueError as e:
        raise ParamError(str(e)) from None


def nads_from_moments(halves, spec: Spec) -> tuple[np.ndarray, np.ndarray, dict]:
    total = halves[0] + halves[1]
    vals, vecs = eig_desc(total.covariance())
    diagnostics = {
        "n_networks": total.n,
        "dim": spec.dim,
        "rank": min(total.n - 1, spec.dim),
        "estimator": spec.estimator,
        "step": spec.step,
        "point": spec.point,
        "seed": spec.seed,
        "precision": spec.precision,
        "top_eigenvalue": float(vals[0]),
        "eigenvalue_ratio_first_last_in_rank": float(vals[0] / max(vals[min(total.n - 1, spec.dim) - 1], 1e-300)),
    }
    if min(h.n for h in halves) >= 2:
        _, a = eig_desc(halves[0].covariance())
        _, b = eig_desc(halves[1].covariance())
        for k in AGREEMENT_K:
            if k <= spec.dim:
                diagnostics[f"half_agreement_top{k}"] = subspace_agreement(a, b, k)
    return vecs.astype(np.float32), vals, diagnostics


def estimate_nads(
    arch: str,
    input_shape=Nads.input_shape,
    n_networks: int = Nads.n_networks,
    estimator: str = Nads.estimator,
    step: float = Nads.step,
    seed: int = Nads.seed,
    device: str = "auto",
    point: str = "fixed",
    precision: str = Nads.precision,
    executor: str | Executor = "local",
    networks_per_batch: int | None = None,
    inputs_per_chunk: int | None = None,
    forward: str = Nads.forward,
    progress: bool = False,
    log: Log | None = None,
) -> NADResult:
    """The NADs of `arch` (a registered name or 'package.module:callable').

    Returns every eigenvector of the D x D gradient covariance (a complete
    orthonormal basis; beyond index n_networks - 1 the covariance has no rank
    left and the vectors only complete the basis). Diagnostics include
    `half_agreement_top{k}`: how well two independent halves of the networks
    agree on the top-k subspace (1 = fully converged).

    executor: 'local' (one process per core on a CPU), 'ray' (tasks on the
    Ray cluster; see nads.executor.RayExecutor for its address), or an
    executor object. Results do not depend on it, beyond float rounding.
    precision: float32 (default), tf32 or bf16 (see nads.runtime.precision).
    forward: how the finite-difference forward passes run (config.FORWARDS; auto: local
    on a CPU, eager on a GPU). Results do not depend on it beyond float rounding.
    progress: show a progress bar; log(metrics, step): MLflow metrics while it runs
    (system/progress/networks_<estimator>/{done,fraction,eta_s}).
    """
    Nads.parse({"n_networks": n_networks, "forward": forward})
    spec = Spec(arch, tuple(input_shape), estimator, float(step), int(seed), point, precision)
    executor = make_executor(executor)
    engine = Engine(executor.device(device), networks_per_batch, inputs_per_chunk, forward)
    check_precision(precision, engine._dev)
    probe(spec)
    t0 = time.perf_counter()
    halves = total_moments(spec, engine, n_networks, executor, progress, log)
    seconds = time.perf_counter() - t0
    nads, vals, diagnostics = nads_from_moments(halves, spec)
    timing = {
        "seconds": seconds,
        "networks_per_second": n_networks / seconds,
        "device": str(engine._dev),
        "executor": executor.name,
        "forward": engine.forward,
    }
    return NADResult(nads, vals, diagnostics, timing)
