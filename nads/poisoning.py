"""The NAD experiments on CIFAR-10: NAD-carrier poisoning and the flipped NAD basis,
their maths (carriers, the completed and flipped basis) and their training runs.

Both train several models of one architecture as one batched computation
(`nads.train.train_batched`), each on its own version of the training set.
"""

from __future__ import annotations

import numpy as np
import torch

from .cifar10 import Cifar10
from .errors import ParamError
from .executor import Executor, make_executor
from .progress import Log, Monitor, record
from .runtime import check_precision
from .train import Schedule, auto_models_per_batch, chunks, init_model, train_batched

# Per-channel mean and standard deviation of CIFAR-10's training set: the
# normalisation of the paper's code.
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2023, 0.1994, 0.2010)


def carriers(nads: np.ndarray, k: int, channels: int = 3, n_classes: int = 10):
    """(carriers (n_classes, C*H*W), signs (n_classes,)) of the NAD-k poisoning.

    Class t: NAD k (t < 6) or k+1 (t >= 6) placed in channel t mod 3, sign +1
    for odd t and -1 for even t. nads: rows of a 1-channel NAD basis.
    """
    if k + 1 >= len(nads):
        raise ParamError(f"poison.nad_indices: index {k} needs NADs {k} and {k + 1}; only {len(nads)} exist")
    dim = nads.shape[1]
    out = np.zeros((n_classes, channels, dim), dtype=np.float32)
    for t in range(n_classes):
        out[t, t % 3] = nads[k if t < 6 else k + 1]
    signs = np.array([1.0 if t % 2 else -1.0 for t in range(n_classes)], dtype=np.float32)
    return out.reshape(n_classes, channels * dim), signs


def poison(x, y, carrier, signs, epsilon: float):
    """Replace each image's projection on its class carrier by sign * epsilon.

    x (N, D) float (pixels in [0, 1]), y (N,) int labels; numpy or torch alike.
    """
    u = carrier[y]
    proj = (x * u).sum(1)
    return x + (signs[y] * epsilon - proj)[:, None] * u


def complete_basis(u: np.ndarray, seed: int = 0) -> np.ndarray:
    """u (k, D) orthonormal rows -> (D, D): u followed by an orthonormal basis of its complement."""
    k, dim = u.shape
    if k == dim:
        return u
    rest = np.random.default_rng(seed).standard_normal((dim - k, dim))
    rest -= (rest @ u.T) @ u
    q, _ = np.linalg.qr(rest.T)
    return np.concatenate([u, q.T.astype(u.dtype)])


def flip_basis(x, basis):
    """x (N, C, H, W) -> each channel re-expressed in the reversed basis: U^T flip(U x).

    basis (D, D) orthonormal rows, D = H*W. An orthogonal map; applied twice it is the identity.
    """
    n, c = x.shape[:2]
    coeffs = x.reshape(n * c, -1) @ basis.T
    return (coeffs.flip(1) if hasattr(coeffs, "flip") else coeffs[:, ::-1]) @ basis


def normalise(x):
    """(N, 3, H, W) pixels in [0, 1] -> CIFAR-10 mean/std normalisation (the paper's)."""
    import torch

    mean = torch.tensor(MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def _pixels(x_uint8: torch.Tensor) -> torch.Tensor:
    """(B, 32, 32, 3) uint8 -> (B, 3, 32, 32) float in [0, 1]."""
    return x_uint8.permute(0, 3, 1, 2).float() / 255.0


def carrier_batches(x, poison_as, labels, carrier_sets, signs, epsilon: float):
    """Batches for K models: model k sees x with carrier set k applied (images of
    class poison_as[i] get that class's carrier) and is scored against labels.

    carrier_sets (K, 10, 3072); an all-zero set leaves the images clean.
    """
    k = carrier_sets.shape[0]

    def batches(idx):
        idx = idx.to(x.device)
        clean = _pixels(x[idx]).reshape(len(idx), -1)
        cls = poison_as[idx]
        xs = torch.stack([poison(clean, cls, carrier_sets[j], signs, epsilon) for j in range(k)])
        xs = normalise(xs.reshape(k * len(idx), 3, 32, 32)).reshape(k, len(idx), 3, 32, 32)
        return xs, labels[idx].expand(k, -1)

    return batches


def poisoning(
    arch: str,
    data: Cifar10,
    nads: np.ndarray,
    nad_indices,
    epsilon: float,
    schedule: Schedule,
    n_train: int = 0,
    device: str = "auto",
    models_per_batch: int | None = None,
    executor: str | Executor = "local",
    progress: str | None = None,
    log: Log | None = None,
) -> list[dict]:
    """Train `arch` on CIFAR-10 poisoned along NAD k, for each k, plus a clean baseline.

    Returns one row per model: nad_index ("clean" first), clean_test_acc,
    poisoned_train_acc (on its own poisoned training set) and carrier_success
    (test images given the carrier of class (t + 1) mod 10: fraction predicted
    as that class; NaN for the clean model, which has no carrier).

    progress: a progress bar's label; log(metrics, step): per-epoch MLflow metrics of
    every model, epoch/<clean|nad<k>>/{train_loss,train_acc,test_acc} (test: clean images).
    """
    per_index = [carriers(nads, k) for k in nad_indices]
    signs = per_index[0][1]  # the same for every k
    sets = [np.zeros_like(per_index[0][0])] + [c for c, _ in per_index]
    names = ["clean"] + [int(k) for k in nad_indices]
    executor = make_executor(executor)
    dev = executor.device(device)
    check_precision(schedule.precision, dev)
    groups = chunks(len(sets), auto_models_per_batch(dev, models_per_batch))
    common = (
        arch,
        data,
        np.stack(sets),
        signs,
        epsilon,
        schedule,
        n_train,
        dev,
        ["clean"] + [f"nad{k}" for k in nad_indices],
    )
    monitor = Monitor(len(sets), progress, "model", log, "models")
    results: dict = {}
    for ids, part in zip(groups, executor.map(_poison_group, groups, common, dev, monitor=monitor)):
        results.update(zip(ids, part))
    monitor.close()
    rows = []
    for i, name in enumerate(names):
        r = results[i]
        rows.append(
            {
                "nad_index": name,
                "clean_test_acc": r[0],
                "poisoned_train_acc": r[1],
                "carrier_success": float("nan") if name == "clean" else r[2],
            }
        )
    return rows


def _poison_group(common, ids):
    arch, data, sets, signs, epsilon, schedule, n_train, dev, names = common
    n = n_train or len(data.y_train)
    x_tr = torch.from_numpy(data.x_train[:n]).to(dev)
    y_tr = torch.from_numpy(data.y_train[:n]).to(dev)
    x_te, y_te = torch.from_numpy(data.x_test).to(dev), torch.from_numpy(data.y_test).to(dev)
    c = torch.from_numpy(sets[ids]).to(dev)
    s = torch.from_numpy(signs).to(dev)
    models = [init_model(arch, i, schedule, 3, 10, 32) for i in ids]
    test = carrier_batches(x_te, y_te, y_te, torch.zeros_like(c), s, epsilon)
    tested: list = []
    trained = train_batched(
        models,
        carrier_batches(x_tr, y_tr, y_tr, c, s, epsilon),
        n,
        schedule,
        dev,
        on_epoch=_epoch_metrics([names[i] for i in ids], test, len(y_te), tested),
    )
    clean = tested[-1]  # after the last epoch
    fit = trained.accuracy(carrier_batches(x_tr, y_tr, y_tr, c, s, epsilon), n)
    other = (y_te + 1) % 10
    success = trained.accuracy(carrier_batches(x_te, other, other, c, s, epsilon), len(y_te))
    return [tuple(float(v[j]) for v in (clean, fit, success)) for j in range(len(ids))]


def _epoch_metrics(names: list, test, n_test: int, tested: list):
    """An on_epoch callback: test accuracy of each model (appended to `tested`) and
    the epoch's training loss and accuracy, recorded as MLflow step metrics."""

    def on_epoch(epoch, trained, stats):
        tested.append(trained.accuracy(test, n_test))
        values = {"test_acc": tested[-1], **stats}
        record(
            {f"epoch/{name}/{key}": float(v[j]) for j, name in enumerate(names) for key, v in values.items()}, epoch + 1
        )

    return on_epoch


def flipped(
    arch: str,
    data: Cifar10,
    nads: np.ndarray,
    schedule: Schedule,
    n_train: int = 0,
    device: str = "auto",
    executor: str | Executor = "local",
    progress: str | None = None,
    log: Log | None = None,
) -> dict:
    """Test accuracy of `arch` trained on CIFAR-10 and on its flipped-NAD-basis version.

    Every normalised image, train and test, each channel, becomes U^T flip(U x);
    both models train with identical settings and the same initialisation.
    progress, log: as for `poisoning` (models original and flipped).
    """
    executor = make_executor(executor)
    dev = executor.device(device)
    check_precision(schedule.precision, dev)
    common = (arch, data, nads, schedule, n_train, dev)
    monitor = Monitor(2, progress, "model", log, "models")
    original, flipped_acc = executor.map(_flip_job, [False, True], common, dev, monitor=monitor)
    monitor.close()
    return {"original_test_acc": original, "flipped_test_acc": flipped_acc}


def _flip_job(common, flip: bool) -> float:
    arch, data, nads, schedule, n_train, dev = common
    basis = torch.from_numpy(complete_basis(nads)).to(dev)
    n = n_train or len(data.y_train)

    def view(x):
        x = normalise(_pixels(torch.from_numpy(x).to(dev)))
        return flip_basis(x, basis).reshape(x.shape) if flip else x

    xs = {"train": view(data.x_train[:n]), "test": view(data.x_test)}
    ys = {"train": torch.from_numpy(data.y_train[:n]).to(dev), "test": torch.from_numpy(data.y_test).to(dev)}

    def batches(split):
        return lambda idx: (xs[split][idx.to(dev)][None], ys[split][idx.to(dev)][None])

    # Model 0 in both jobs: the same initialisation, so only the data differ.
    tested: list = []
    train_batched(
        [init_model(arch, 0, schedule, 3, 10, 32)],
        batches("train"),
        n,
        schedule,
        dev,
        on_epoch=_epoch_metrics(["flipped" if flip else "original"], batches("test"), len(ys["test"]), tested),
    )
    return float(tested[-1][0])
