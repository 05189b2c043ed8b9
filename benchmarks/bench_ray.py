"""Strong scaling of the Ray executor on this machine: 1 vs 2 Ray workers, against the local executor.

Fixed work: a LeNet Fourier sweep (one task per direction) and a LeNet NAD
estimate (one task per 64 networks). Ray runtimes are started here with
num_cpus = 1 and then 2 (one 1-thread worker per CPU); each is warmed up first
(workers start and import torch once, ~5 s, not counted), then timed. The
local executor runs the same work in this process on one thread, then in 2
one-thread worker processes. Results are compared with the first local run.

    python benchmarks/bench_ray.py
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import ray
import torch

from nads.config import Synthetic
from nads.directions import fourier_directions
from nads.estimate import estimate_nads
from nads.executor import LocalExecutor, RayExecutor
from nads.sweep import sweep
from nads.synthetic import draw_noise_bank
from nads.train import Schedule


def timed(fn, repeats: int):
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--directions", type=int, default=8)
    p.add_argument("--n-train", type=int, default=4000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--networks", type=int, default=512)
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    bank = draw_noise_bank(Synthetic(n_train=args.n_train, n_test=1000, seed=0))
    v = fourier_directions((1, 32, 32), 2)[1][: args.directions]
    schedule = Schedule(epochs=args.epochs)
    work = {
        f"sweep: {len(v)} LeNet directions, {args.n_train} samples, {args.epochs} epochs": lambda ex: sweep(
            "lenet", bank, v, schedule, "cpu", executor=ex
        )["test_acc"],
        f"NADs: LeNet, {args.networks} networks": lambda ex: (
            estimate_nads("lenet", n_networks=args.networks, device="cpu", executor=ex).eigenvalues
        ),
    }
    rows = {name: {} for name in work}
    results = {name: {} for name in work}
    for workers in (1, 2):
        ray.init(num_cpus=workers, num_gpus=0, include_dashboard=False, log_to_driver=False)
        ex = RayExecutor()
        sweep("lenet", bank, v[:workers], Schedule(epochs=1), "cpu", executor=ex)  # warm-up: start workers
        for name, fn in work.items():
            rows[name][f"ray {workers}"], results[name][f"ray {workers}"] = timed(lambda: fn(ex), args.repeats)
        ray.shutdown()
        torch.set_num_threads(1)  # local, 1 worker = this process on one CPU, as a Ray worker is
        for name, fn in work.items():
            rows[name][f"local {workers}"], results[name][f"local {workers}"] = timed(
                lambda: fn(LocalExecutor(workers)), args.repeats
            )

    print(
        "| work | local, 1 worker | local, 2 | Ray, 1 worker | Ray, 2 | Ray speed-up 1→2 | "
        "Ray / local time (1, 2 workers) | max diff vs local 1 |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, t in rows.items():
        ref = results[name]["local 1"]
        diff = max(float(np.nanmax(np.abs(r - ref))) for r in results[name].values())
        print(
            f"| {name} | {t['local 1']:.1f} s | {t['local 2']:.1f} s | {t['ray 1']:.1f} s | {t['ray 2']:.1f} s | "
            f"{t['ray 1'] / t['ray 2']:.2f}x | {t['ray 1'] / t['local 1']:.2f}, {t['ray 2'] / t['local 2']:.2f} | "
            f"{diff:.1e} |"
        )


if __name__ == "__main__":
    main()
