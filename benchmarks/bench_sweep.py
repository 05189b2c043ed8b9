"""Direction-sweep training speed: the batched engine against the straightforward loop.

Baseline: one model per direction, trained one after another with torch.optim.SGD,
clip_grad_norm_ and LambdaLR (`nads.train.train_sequential`), then evaluated on the test
and training sets, as the sweep does (its outputs are test and train accuracy).
Batched: `nads.sweep.sweep` - (a) all K directions as one vmapped computation in one
process, (b) its defaults (groups of directions spread over one process per core).
Same data, seeds, epochs; one run, alternated; each figure the best of the repeats.

    python benchmarks/bench_sweep.py              # K = 16 LeNet directions
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from nads.config import Synthetic
from nads.directions import fourier_directions
from nads.executor import LocalExecutor
from nads.sweep import direction_batches, sweep
from nads.synthetic import draw_noise_bank
from nads.train import Schedule, init_model, train_sequential

TRAIN_MFLOP, EVAL_MFLOP = 2.5, 0.83  # LeNet per sample: forward + backward, forward only


def loop(arch, bank, v, schedule):
    """Test accuracy per direction; train accuracy is computed too (the sweep's outputs),
    in the engine's 256-sample chunks, so only the training differs."""
    z, y = (torch.from_numpy(a) for a in (bank.z_train, bank.y_train.astype(np.float32)))
    zt, yt = (torch.from_numpy(a) for a in (bank.z_test, bank.y_test.astype(np.float32)))
    accs = []
    for k in range(len(v)):
        vk = torch.from_numpy(v[k : k + 1])
        model = train_sequential(
            init_model(arch, k, schedule, 1, 2, 32), direction_batches(z, y, vk, bank), len(z), schedule, "cpu"
        )
        accs.append(accuracy(model, direction_batches(zt, yt, vk, bank), len(zt)))
        accuracy(model, direction_batches(z, y, vk, bank), len(z))
    return np.array(accs)


@torch.no_grad()
def accuracy(model, batches, n: int, chunk: int = 256) -> float:
    correct = 0
    for idx in torch.arange(n).split(chunk):
        x, labels = batches(idx)
        correct += (model(x[0]).argmax(-1) == labels[0]).sum().item()
    return correct / n


def peak_gflops(n=2048, reps=10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e9


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--directions", type=int, default=16)
    p.add_argument("--n-train", type=int, default=4000)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    bank = draw_noise_bank(Synthetic(n_train=args.n_train, n_test=2000, fourier_stride=2, seed=0))
    _, v = fourier_directions((1, 32, 32), 2)
    v = v[: args.directions]
    schedule = Schedule(epochs=args.epochs)
    methods = {
        "loop (one model at a time)": lambda: loop("lenet", bank, v, schedule),
        "batched, 1 process, K=16": lambda: sweep(
            "lenet", bank, v, schedule, "cpu", models_per_batch=len(v), executor=LocalExecutor(1)
        )["test_acc"],
        "sweep defaults (K=1, 1 process per core)": lambda: sweep("lenet", bank, v, schedule, "cpu")["test_acc"],
    }
    sweep("lenet", bank, v[:2], Schedule(epochs=1), "cpu", executor=LocalExecutor(1))  # warm-up: first-call costs out
    loop("lenet", bank, v[:1], Schedule(epochs=1))
    times, accs = {m: [] for m in methods}, {}
    for _ in range(args.repeats):
        for name, fn in methods.items():
            t = time.perf_counter()
            accs[name] = fn()
            times[name].append(time.perf_counter() - t)
    peak = peak_gflops()
    mflop = len(v) * (args.epochs * args.n_train * TRAIN_MFLOP + (args.n_train + 2000) * EVAL_MFLOP)
    base = "loop (one model at a time)"
    print(
        f"K={len(v)} LeNet directions, {args.n_train} samples, {args.epochs} epochs; "
        f"matrix-multiply peak here: {peak:.0f} GFLOP/s (2048^2 float32 matmul)\n"
    )
    print("| method | seconds | speed-up vs loop | GFLOP/s | % of matmul peak | max |Δ test acc| vs loop |")
    print("|---|---|---|---|---|---|")
    for name in methods:
        s = min(times[name])
        print(
            f"| {name} | {s:.1f} | {min(times[base]) / s:.2f}x | {mflop / 1e3 / s:.1f} | "
            f"{100 * mflop / 1e3 / s / peak:.0f} % | {np.abs(accs[name] - accs[base]).max():.1e} |"
        )


if __name__ == "__main__":
    main()
