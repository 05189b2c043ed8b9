"""Training: K small models trained as one batched computation.

`train_batched` trains K same-architecture models, each on its own data, with
torch.func (stacked parameters, vmap over models): one forward, one backward,
one update per step for all K. Per-model semantics are exactly those of K
separate torch.optim.SGD runs with gradient-norm clipping; `train_sequential`
is that plain loop, the reference the tests and the benchmark compare against.

Data comes from a `batches(step_indices) -> (x (K, B, ...), y (K, B))`
callable, so the same engine serves the synthetic sweeps (K directions) and
CIFAR-10 poisoning (K poisoned training sets).
"""

from __future__ import annotations

import copy
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state, vmap
from tqdm.auto import tqdm

from . import resume
from .config import Schedule
from .models import get_model
from .progress import advance
from .runtime import item_seed, precision


def batch_order(schedule: Schedule, epoch: int, n: int) -> torch.Tensor:
    """The order of the n training samples in `epoch` (shared by all models of a run)."""
    g = torch.Generator().manual_seed(item_seed(schedule.seed, 1_000_000 + epoch))
    return torch.randperm(n, generator=g)


def init_model(
    arch: str, model_id: int, schedule: Schedule, in_channels: int, num_classes: int, input_size: int
) -> torch.nn.Module:
    """Model `model_id` of a run: its own seeded default initialisation."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(item_seed(schedule.seed, model_id))
        return get_model(arch, in_channels, num_classes, input_size)


Batches = Callable[[torch.Tensor], tuple]  # indices (B,) -> (x (K, B, ...), y (K, B))


@dataclass
class Trained:
    """K trained models as stacked parameters and buffers, plus the functional forward."""

    params: dict
    buffers: dict
    skeleton: torch.nn.Module
    diverged: torch.Tensor  # (K,) bool: non-finite loss or parameters
    precision: str = "float32"

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Eval-mode logits (K, B, classes) for per-model inputs x (K, B, ...)."""
        self.skeleton.eval()
        with precision(self.precision, x.device):
            return stacked_forward(self.skeleton, self.params, self.buffers, x).float()

    def accuracy(self, batches: Batches, n: int, chunk: int | None = None) -> torch.Tensor:
        """(K,) eval-mode accuracy over samples 0..n-1 of `batches`; NaN for diverged models."""
        # Measured on a CPU (LeNet, one thread): 1000-sample batches cost 1.8-2.2x more
        # per sample than 256-sample ones (oneDNN's convolutions fall out of cache).
        chunk = chunk or (256 if self.diverged.device.type == "cpu" else 4096)
        correct = torch.zeros((), dtype=torch.long)
        for start in range(0, n, chunk):
            x, y = batches(torch.arange(start, min(start + chunk, n)))
            correct = correct + (self.predict(x).argmax(-1) == y).sum(1)
        acc = correct.double() / n
        return torch.where(self.diverged.to(acc.device), torch.nan, acc)


def train_batched(
    models: list,
    batches: Batches,
    n_train: int,
    schedule: Schedule,
    device,
    progress: str | None = None,
    on_epoch: Callable[[int, Trained, dict], None] | None = None,
) -> Trained:
    """Train `models` (same architecture) as one computation; model k sees batches(idx)[.][k].

    Returns the trained models; `diverged` flags any whose loss became
    non-finite (their parameters are garbage: report NaN, not a number).
    on_epoch(epoch, trained, stats) is called after each epoch with the models as they are
    then (for per-epoch metrics; it must not modify them) and stats {"train_loss",
    "train_acc"}: (K,) tensors, the mean loss and accuracy over the epoch's batches.

    Progress: K models per full run, reported to nads.progress step by step. Inside
    a resumable job (nads.resume) the training state is saved every
    resume.checkpoint_seconds() and a rerun continues from it, with the same result."""
    models = [m.to(device).train() for m in models]
    params, buffers = stack_module_state(models)
    skeleton = copy.deepcopy(models[0]).to("meta").train()

    def losses_fn(p, b, x, y):
        logits = stacked_forward(skeleton, p, b, x)
        losses = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(y.shape).mean(1)
        return losses, logits

    k = len(models)
    total = schedule.epochs * schedule.steps_per_epoch(n_train)
    state: dict = {
        "epoch": 0,
        "step": 0,
        "params": params,
        "buffers": buffers,
        "momentum": {} if schedule.momentum else None,
        "diverged": torch.zeros(k, dtype=torch.bool, device=device),
    }
    state_file = resume.training_state()
    if state_file is not None and state_file.exists():
        state = _load_state(state_file, state, device)
        advance(k * state["step"] / total)
    params, buffers, momentum, diverged = (state[n] for n in ("params", "buffers", "momentum", "diverged"))
    bar = tqdm(
        total=total, initial=state["step"], desc=progress, unit="step", disable=progress is None, mininterval=2.0
    )
    step, saved_at = state["step"], time.monotonic()
    for epoch in range(state["epoch"], schedule.epochs):
        loss_sum = torch.zeros(k, device=device)
        correct = torch.zeros(k, device=device)
        seen = batches_seen = 0
        for idx in batch_order(schedule, epoch, n_train).split(schedule.batch_size):
            x, y = batches(idx)
            with precision(schedule.precision, device), _step_rng(schedule, step, device):
                losses, logits = losses_fn(params, buffers, x, y)
                grads = torch.autograd.grad(losses.sum(), list(params.values()))
            with torch.no_grad():
                diverged |= ~torch.isfinite(losses)
                loss_sum += losses.float()
                correct += (logits.argmax(-1) == y).sum(1)
                _sgd_step(params, grads, momentum, schedule, schedule.lr_at(step, total), k)
            step += 1
            seen += len(idx)
            batches_seen += 1
            bar.update()
            advance(k / total)
        if on_epoch is not None:
            on_epoch(
                epoch,
                _trained(params, buffers, skeleton, diverged, schedule.precision),
                {"train_loss": loss_sum / batches_seen, "train_acc": correct / seen},
            )
        if (
            state_file is not None
            and epoch + 1 < schedule.epochs
            and time.monotonic() - saved_at >= resume.checkpoint_seconds()
        ):
            resume.save_training_state(state_file, {**state, "epoch": epoch + 1, "step": step})
            saved_at = time.monotonic()
    bar.close()
    return _trained(params, buffers, skeleton, diverged, schedule.precision)


@contextmanager
def _step_rng(schedule: Schedule, step: int, device):
    """Random layers (dropout, drop-path: torchvision and timm models have them) draw from
    a stream seeded by the run's seed and the step: the result does not depend on what ran
    before in the process, and a resumed run draws what the uninterrupted one would have."""
    device = torch.device(device)
    # The device's generator alone: torch.manual_seed (every device) costs ~0.1 ms a step.
    gen = (
        torch.default_generator
        if device.type == "cpu"
        else torch.cuda.default_generators[device.index if device.index is not None else torch.cuda.current_device()]
    )
    state = gen.get_state()
    gen.manual_seed(item_seed(schedule.seed, 2_000_000, step))
    try:
        yield
    finally:
        gen.set_state(state)


def _load_state(path, fresh: dict, device) -> dict:
    """The state saved at `path` if there is one and it fits this run (same tensors), else the fresh one."""
    saved = resume.load_training_state(path, device)
    same = lambda a, b: a.keys() == b.keys() and all(a[n].shape == b[n].shape for n in a)  # noqa: E731
    try:
        if saved is None or not (same(saved["params"], fresh["params"]) and same(saved["buffers"], fresh["buffers"])):
            return fresh
    except (KeyError, AttributeError, TypeError):  # verified, yet not a state of this run: start over
        return fresh
    for p in saved["params"].values():
        p.requires_grad_(True)
    return saved


@torch.no_grad()
def _trained(params: dict, buffers: dict, skeleton, diverged: torch.Tensor, precision_: str) -> Trained:
    k = len(diverged)
    for p in params.values():
        diverged = diverged | ~torch.isfinite(p.reshape(k, -1)).all(1)
    return Trained(params, buffers, skeleton, diverged, precision_)


def stacked_forward(skeleton, params: dict, buffers: dict, x: torch.Tensor) -> torch.Tensor:
    """Outputs (K, B, ...) of K stacked models on their inputs x (K, B, ...).

    K > 1: one vmapped computation. K = 1: the model called directly on views
    of the stacked tensors (measured on a CPU: vmap's grouped convolutions
    train LeNet 2x slower than K separate models; there, parallelism comes
    from worker processes instead).
    """
    if x.shape[0] == 1:
        one = lambda d: {n: t[0] for n, t in d.items()}  # noqa: E731 - views: updates reach the stack
        return functional_call(skeleton, (one(params), one(buffers)), (x[0],))[None]
    # randomness="different": each model draws its own dropout masks, as K separate models would.
    return vmap(lambda p, b, xx: functional_call(skeleton, (p, b), (xx,)), randomness="different")(params, buffers, x)


def _sgd_step(params: dict, grads, momentum, schedule: Schedule, lr: float, k: int) -> None:
    """torch.optim.SGD (dampening 0, not Nesterov) after clip_grad_norm_, per model,
    with the same operations in the same order, so the float results agree too."""
    if schedule.clip > 0:
        per_tensor = torch.stack([torch.linalg.vector_norm(g.reshape(k, -1), dim=1) for g in grads], dim=1)
        coef = (schedule.clip / (torch.linalg.vector_norm(per_tensor, dim=1) + 1e-6)).clamp(max=1.0)
        grads = [g * coef.view(k, *([1] * (g.dim() - 1))) for g in grads]
    for (name, p), g in zip(params.items(), grads):
        if schedule.weight_decay:
            g = g.add(p, alpha=schedule.weight_decay)
        if momentum is not None:
            if name in momentum:
                g = momentum[name].mul_(schedule.momentum).add_(g)
            else:  # torch.optim.SGD: the first step's buffer is the gradient itself
                g = momentum[name] = g.clone()
        p.add_(g, alpha=-lr)


def train_sequential(model: torch.nn.Module, batches: Batches, n_train: int, schedule: Schedule, device):
    """The plain loop for one model (batches return K = 1): torch.optim.SGD,
    clip_grad_norm_, LambdaLR. The reference for `train_batched`."""
    model = model.to(device).train()
    opt = torch.optim.SGD(
        model.parameters(), lr=schedule.lr, momentum=schedule.momentum, weight_decay=schedule.weight_decay
    )
    total = schedule.epochs * schedule.steps_per_epoch(n_train)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 - s / total)
    for epoch in range(schedule.epochs):
        for idx in batch_order(schedule, epoch, n_train).split(schedule.batch_size):
            x, y = batches(idx)
            loss = F.cross_entropy(model(x[0]), y[0])
            opt.zero_grad()
            loss.backward()
            if schedule.clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), schedule.clip)
            opt.step()
            sched.step()
    return model.eval()


def auto_models_per_batch(device: torch.device, requested: int | None) -> int:
    if requested:
        return requested
    # CPU: one model per step (see stacked_forward), one worker process per
    # core. GPUs need many models per step to be busy.
    return 1 if device.type == "cpu" else 128


def chunks(n: int, size: int):
    return [list(range(a, min(a + size, n))) for a in range(0, n, size)]
