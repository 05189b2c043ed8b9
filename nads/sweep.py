"""Direction sweeps: train one classifier per direction v on D(v), K at a time."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import torch

from .executor import Executor, make_executor
from .progress import PREFIX, Log, Monitor
from .runtime import check_precision
from .synthetic import NoiseBank, directional_samples
from .train import Schedule, auto_models_per_batch, chunks, init_model, train_batched


def direction_batches(z: torch.Tensor, y: torch.Tensor, directions: torch.Tensor, bank: NoiseBank):
    """Batches of D(v_k) for K directions at once, from one noise bank split.

    z (n, D) and y (n,) float in {-1, +1} on the device; directions (K, D).
    Every direction sees the same noise samples in the same order.
    """
    k = directions.shape[0]

    def batches(idx: torch.Tensor):
        idx = idx.to(z.device)
        x = directional_samples(z[idx], y[idx], directions, bank.epsilon, bank.sigma)
        labels = ((y[idx] + 1) / 2).long().expand(k, -1)
        return x.reshape(k, len(idx), *bank.shape), labels

    return batches


def sweep(
    arch: str,
    bank: NoiseBank,
    directions: np.ndarray,
    schedule: Schedule,
    device: str = "auto",
    models_per_batch: int | None = None,
    executor: str | Executor = "local",
    progress: str | None = None,
    log: Log | None = None,
    name: str = "directions",
) -> dict:
    """Train `arch` on D(v) for every row v of `directions`.

    Returns {"test_acc", "train_acc"} arrays (K,) with NaN for a diverged
    classifier. Classifier k is initialised from seed item (schedule.seed, k),
    so results do not depend on how directions are grouped or where the
    groups run (executor 'local': one process per core on a CPU; 'ray': one
    task per group on a Ray cluster).

    progress: the label of a progress bar (None: no bar). log(metrics, step): MLflow
    metrics while it runs, system/progress/<name>/{done,fraction,eta_s,running_mean_test_acc}.
    """
    executor = make_executor(executor)
    dev = executor.device(device)
    check_precision(schedule.precision, dev)
    groups = chunks(len(directions), auto_models_per_batch(dev, models_per_batch))
    directions = np.asarray(directions, dtype=np.float32)
    monitor = Monitor(len(directions), progress, "dir", log, name)
    accuracies = []

    def done(ids, part):
        accuracies.extend(part["test_acc"])
        if log is not None:
            log({f"{PREFIX}/{name}/running_mean_test_acc": float(np.nanmean(accuracies))}, len(accuracies))

    with warnings.catch_warnings():  # all diverged so far: a NaN running mean
        warnings.simplefilter("ignore", RuntimeWarning)
        parts = executor.map(train_group, groups, (arch, bank, directions, schedule, dev), dev, done, monitor)
    monitor.close()
    out = {"test_acc": np.full(len(directions), np.nan), "train_acc": np.full(len(directions), np.nan)}
    for ids, part in zip(groups, parts):
        for key in out:
            out[key][ids] = part[key]
    return out


def sweep_seeds(
    arch: str,
    bank: NoiseBank,
    directions: np.ndarray,
    schedule: Schedule,
    seeds: int = 1,
    device: str = "auto",
    models_per_batch: int | None = None,
    executor: str | Executor = "local",
    progress: str | None = None,
    log: Log | None = None,
) -> dict:
    """`sweep` repeated on `seeds` replicates: replicate r draws its noise bank from
    bank.seed + r and its initialisations and batch order from schedule.seed + r
    (so replicate 0 is the plain sweep, and a run of seed s + r is replicate r of seed s).

    Returns columns: test_acc and train_acc, the mean over replicates; with more than
    one, also test_acc_sd (standard deviation, ddof 1), test_acc_min, test_acc_max and
    each replicate's test_acc_seed<r>.
    """
    executor = make_executor(executor)
    runs = []
    for r in range(seeds):
        label = progress if progress is None or seeds == 1 else f"{progress} seed {r + 1}/{seeds}"
        runs.append(
            sweep(
                arch,
                bank.replicate(r),
                directions,
                dataclasses.replace(schedule, seed=schedule.seed + r),
                device,
                models_per_batch,
                executor,
                label,
                log,
                "directions" if seeds == 1 else f"directions_seed{r}",
            )
        )
    if seeds == 1:
        return runs[0]
    test = np.stack([run["test_acc"] for run in runs])
    with warnings.catch_warnings():  # a direction every replicate diverged on: NaN, said by n_diverged
        warnings.simplefilter("ignore", RuntimeWarning)
        out = {
            "test_acc": np.nanmean(test, 0),
            "train_acc": np.nanmean([run["train_acc"] for run in runs], 0),
            "test_acc_sd": np.nanstd(test, 0, ddof=1),
            "test_acc_min": np.nanmin(test, 0),
            "test_acc_max": np.nanmax(test, 0),
        }
    return out | {f"test_acc_seed{r}": t for r, t in enumerate(test)}


def train_group(common, ids) -> dict:
    """Directions `ids` trained as one batched computation (the unit of work of a worker)."""
    arch, bank, directions, schedule, dev = common
    z_train, z_test = (torch.from_numpy(bank.split(s)[0]).to(dev) for s in ("train", "test"))
    y_train, y_test = (torch.from_numpy(bank.split(s)[1].astype(np.float32)).to(dev) for s in ("train", "test"))
    v = torch.from_numpy(directions[ids]).to(dev)
    c, h, _ = bank.shape
    models = [init_model(arch, i, schedule, c, 2, h) for i in ids]
    trained = train_batched(models, direction_batches(z_train, y_train, v, bank), len(z_train), schedule, dev)
    return {
        "test_acc": trained.accuracy(direction_batches(z_test, y_test, v, bank), len(z_test)).cpu().numpy(),
        "train_acc": trained.accuracy(direction_batches(z_train, y_train, v, bank), len(z_train)).cpu().numpy(),
    }
