"""How close NAD estimation and sweep training come to this machine's limit, measured in one run.

The limit is the best rate of the densest float32 kernels (a 2048 x 2048 matrix product and a
256-channel 3x3 convolution), measured as the pipeline computes: with nads' portable arithmetic
(nads/portable.py: AVX2 kernels, one thread per process) in one process per core, all at once,
their rates summed. It is measured before and after the work and the best is kept, so a slower
result is the work's fault, not the machine's mood. For context the same kernels also run
unpinned (NADS_PORTABLE=0, every thread, AVX-512 where the CPU has it): the CPU's own limit,
which the pipeline gives up to compute the same bits on every x86-64 CPU.

The work is counted in the FLOPs of its nominal algorithm (torch's FLOP counter on one forward
pass): finite-difference NADs are 2 * D forward passes per network (D = input dimension), a
training step is 3 forward passes' worth. Work the estimator skips (the local forward,
nads/shortcut.py) still counts, so a rate above the limit is possible: it means the skipped work
saved more than the kernels lose. Each architecture runs with the local forward and with the
plain forward (every layer on every perturbed input), alternated in the same run.

    python benchmarks/bench_roofline.py                  # LeNet, VGG-11, ResNet-18, DenseNet-121
    python benchmarks/bench_roofline.py --archs lenet resnet18 --no-sweep
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

# isort: off
import nads  # noqa: F401  (first: the portable settings precede torch, as in the stages)
import torch

# isort: on
from torch.utils.flop_counter import FlopCounterMode

from nads.executor import LocalExecutor, cpu_workers

# Networks per worker (the first of each pays the setup) and rounds: about 10 minutes in all on 2 cores.
NETWORKS = {"lenet": (128, 2), "vgg11_bn": (3, 2), "resnet18": (3, 1), "densenet121": (2, 1)}


def best_rate(fn, flops: float, seconds: float = 3.0) -> float:
    """Best GFLOP/s of fn() over `seconds` (after one untimed call: allocation, kernel choice)."""
    fn()
    best, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        fn()
        best = max(best, flops / (time.perf_counter() - t0) / 1e9)
    return best


def kernel_rate(_common, kernel: str) -> float:
    """GFLOP/s of one limit kernel in this process (a worker job)."""
    with torch.no_grad():
        if kernel == "matmul":
            n = 2048
            a, b = torch.randn(n, n), torch.randn(n, n)
            return best_rate(lambda: a @ b, 2 * n**3)
        x = torch.randn(64, 256, 16, 16).to(memory_format=torch.channels_last)
        w = torch.randn(256, 256, 3, 3).to(memory_format=torch.channels_last)
        return best_rate(lambda: torch.nn.functional.conv2d(x, w, padding=1), 2 * 64 * 256 * 256 * 9 * 16 * 16)


def pipeline_limits(workers: int) -> dict:
    """Each kernel in `workers` processes at once (the pipeline's executor), rates summed."""
    run = LocalExecutor(workers)
    return {k: sum(run.map(kernel_rate, [k] * workers, None, "cpu")) for k in ("matmul", "conv")}


def native_limits() -> dict:
    """The CPU's own limit: the same kernels unpinned, all threads, in a fresh process."""
    code = (
        "import json, torch; torch.set_num_threads(__import__('os').cpu_count());"
        "from benchmarks.bench_roofline import kernel_rate;"
        "print(json.dumps({k: kernel_rate(None, k) for k in ('matmul', 'conv')}))"
    )
    env = {**os.environ, "NADS_PORTABLE": "0", "PYTHONPATH": os.getcwd()}
    for k in ("MKL_CBWR", "ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "NPY_DISABLE_CPU_FEATURES"):
        env.pop(k, None)
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env.pop(k, None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def forward_flops(model: torch.nn.Module, x: torch.Tensor) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return counter.get_total_flops()


def timed_shard(common, networks) -> tuple:
    """A worker's job: (moments of `networks`, seconds of all but the first). The first pays the
    worker's one-time setup (the local forward's trace, plans and check against the plain forward)."""
    from nads.estimate import shard_moments

    first = shard_moments(common, networks[:1])
    t0 = time.perf_counter()
    rest = shard_moments(common, networks[1:])
    return (first[0] + rest[0], first[1] + rest[1]), time.perf_counter() - t0


def nads_rows(arch: str, n: int, workers: int, rounds: int) -> list[dict]:
    """Seconds per network of the stage's engine on every core (n networks per worker process, as
    the pipeline's shards run), local and plain forward alternated, best of `rounds` each: the
    steady rate (each worker's first network left out) and the wall time with the first networks
    in; with the top-10 agreement of the two forwards' NADs."""
    from nads.estimate import Engine, Spec, _engine_cache, nads_from_moments, subspace_agreement

    spec = Spec(arch)
    flops = 2 * spec.dim * forward_flops(spec.network(0), spec.x0()[None])
    shards = [range(i * n, (i + 1) * n) for i in range(workers)]
    steady: dict = {"local": [], "plain": []}
    wall: dict = {"local": [], "plain": []}
    vecs = {}
    for _ in range(rounds):
        for mode in steady:
            _engine_cache.clear()
            t0 = time.perf_counter()
            done = LocalExecutor(workers).map(
                timed_shard, shards, (spec, Engine("cpu", forward="local" if mode == "local" else "eager")), "cpu"
            )
            wall[mode].append((time.perf_counter() - t0) / (n * workers))
            steady[mode].append(sum(s for _, s in done) / len(done) / ((n - 1) * workers))
            halves = done[0][0]
            for m, _ in done[1:]:
                halves = (halves[0] + m[0], halves[1] + m[1])
            vecs[mode] = nads_from_moments(halves, spec)[0]
    k = min(10, n * workers - 1)
    agree = subspace_agreement(vecs["local"], vecs["plain"], k)
    return [
        {
            "work": f"NADs {arch} ({n * workers} networks), {mode} forward"
            + (f" (top-{k} agreement with plain {agree:.6f})" if mode == "local" else ""),
            "gflop": flops / 1e9,
            "s": min(steady[mode]),
            "first": min(wall[mode]),
            "unit": "s/network",
        }
        for mode in steady
    ]


def sweep_row(arch: str = "lenet", k: int = 8, n_train: int = 2000, epochs: int = 2) -> dict:
    """A direction sweep's training: k classifiers trained together (the stage's batching)."""
    from nads.config import Synthetic
    from nads.directions import fourier_directions
    from nads.models import get_model
    from nads.sweep import sweep
    from nads.synthetic import draw_noise_bank
    from nads.train import Schedule

    bank = draw_noise_bank(Synthetic(n_train=n_train, n_test=n_train, seed=0))
    _, v = fourier_directions((1, 32, 32), 4)
    f = forward_flops(get_model(arch, in_channels=1, num_classes=2, input_size=32), torch.zeros(1, 1, 32, 32))
    flops = k * (3 * f * n_train * epochs + f * n_train)  # training steps, then the test split
    t0 = time.perf_counter()
    sweep(arch, bank, v[:k], Schedule(epochs=epochs), "cpu")
    return {
        "work": f"sweep {arch} ({k} classifiers, {epochs} epochs)",
        "gflop": flops / 1e9,
        "s": time.perf_counter() - t0,
        "unit": "s",
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archs", nargs="+", default=list(NETWORKS), choices=list(NETWORKS))
    p.add_argument("--no-sweep", action="store_true")
    args = p.parse_args()
    workers = cpu_workers()
    print(f"torch {torch.__version__}, {workers} worker processes, portable arithmetic (AVX2, 1 thread each)")
    native = native_limits()
    before = pipeline_limits(workers)
    rows = []
    for a in args.archs:
        n, rounds = NETWORKS[a]
        rows += nads_rows(a, n, workers, rounds)
        print("  ".join(f"{r['work']}: {r['s']:.3f} {r['unit']}" for r in rows[-2:]), flush=True)
    if not args.no_sweep:
        rows.append(sweep_row())
    after = pipeline_limits(workers)
    limit = {k: max(before[k], after[k]) for k in before}
    peak = max(limit.values())
    print(
        f"\nthe pipeline's float32 limit ({workers} processes, portable): matmul {limit['matmul']:.1f} GFLOP/s "
        f"(before the work {before['matmul']:.1f}), 3x3 convolution {limit['conv']:.1f} ({before['conv']:.1f}); "
        f"the CPU unpinned: matmul {native['matmul']:.1f}, convolution {native['conv']:.1f}\n"
    )
    print(
        "| work | GFLOP | time | GFLOP/s | % of the pipeline's limit | % of the unpinned CPU's "
        "| with each worker's first network |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        rate = r["gflop"] / r["s"]
        first = f"{r['first']:.3f} s/network, {100 * r['gflop'] / r['first'] / peak:.0f} %" if "first" in r else ""
        print(
            f"| {r['work']} | {r['gflop']:.1f} | {r['s']:.3f} {r['unit']} | {rate:.1f} | "
            f"{100 * rate / peak:.0f} % | {100 * rate / max(native.values()):.0f} % | {first} |"
        )


if __name__ == "__main__":
    main()
