"""Direction sweeps: train one classifier per direction v on D(v), K at a time."""
from __future__ import annotations

import numpy as np
import torch

from tqdm.auto import tqdm

from .executor import cpu_workers, run_shards
from .runtime import resolve_device
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


def sweep(arch: str, bank: NoiseBank, directions: np.ndarray, schedule: Schedule, device: str = "auto",
          models_per_batch: int | None = None, workers: int | None = None, progress: str | None = None) -> dict:
    """Train `arch` on D(v) for every row v of `directions`.

    Returns {"test_acc", "train_acc"} arrays (K,) with NaN for a diverged
    classifier. Classifier k is initialised from seed item (schedule.seed, k),
    so results do not depend on how directions are grouped or spread over
    worker processes (default: one per core on a CPU, one on a GPU).
    """
    dev = resolve_device(device)
    groups = chunks(len(directions), auto_models_per_batch(dev, models_per_batch))
    if workers is None:
        workers = cpu_workers() if dev.type == "cpu" and len(groups) > 1 else 1
    directions = np.asarray(directions, dtype=np.float32)
    jobs = [(arch, bank, directions[ids], ids, schedule, str(dev)) for ids in groups]
    bar = tqdm(total=len(directions), desc=progress, unit="dir", disable=progress is None, mininterval=2.0)
    parts = run_shards(train_group, jobs, workers, on_done=lambda job: bar.update(len(job[3])))
    bar.close()
    out = {"test_acc": np.full(len(directions), np.nan), "train_acc": np.full(len(directions), np.nan)}
    for (_, _, _, ids, _, _), part in zip(jobs, parts):
        for key in out:
            out[key][ids] = part[key]
    return out


def train_group(job) -> dict:
    """One group of directions trained as one batched computation (a worker's unit of work)."""
    arch, bank, directions, ids, schedule, device = job
    dev = torch.device(device)
    z_train, z_test = (torch.from_numpy(bank.split(s)[0]).to(dev) for s in ("train", "test"))
    y_train, y_test = (torch.from_numpy(bank.split(s)[1].astype(np.float32)).to(dev) for s in ("train", "test"))
    v = torch.from_numpy(directions).to(dev)
    c, h, _ = bank.shape
    models = [init_model(arch, i, schedule, c, 2, h) for i in ids]
    trained = train_batched(models, direction_batches(z_train, y_train, v, bank), len(z_train), schedule, dev)
    return {"test_acc": trained.accuracy(direction_batches(z_test, y_test, v, bank), len(z_test)).cpu().numpy(),
            "train_acc": trained.accuracy(direction_batches(z_train, y_train, v, bank), len(z_train)).cpu().numpy()}
