"""How close NAD estimation and sweep training come to this machine's limit, measured in one run.

The limit is the best rate of the densest float32 kernels (a 2048 x 2048 matrix product and a
256-channel 3x3 convolution, all threads), measured first and last, the best of the two kept;
a slower result is then the work's fault, not the machine's mood. The work is counted in the FLOPs of its nominal
algorithm (torch's FLOP counter on one forward pass): finite-difference NADs are 2 * D forward
passes per network (D = input dimension), a training step is 3 forward passes' worth. Work the
estimator skips (the first-layer shortcut) still counts, so a rate above the peak is possible
and means the shortcut saved more than kernels lose.

    python benchmarks/bench_roofline.py                 # LeNet, VGG-11, ResNet-18, DenseNet-121
    python benchmarks/bench_roofline.py --archs lenet --layouts   # + ResNet-18 forward layouts
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

NETWORKS = {"lenet": 256, "vgg11_bn": 2, "resnet18": 2, "densenet121": 2}  # small: a few minutes in all


def best_rate(fn, flops: float, seconds: float = 3.0) -> float:
    """Best GFLOP/s of fn() over `seconds` (after one untimed call: allocation, kernel choice)."""
    fn()
    best, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        fn()
        best = max(best, flops / (time.perf_counter() - t0) / 1e9)
    return best


def peaks() -> dict:
    """The machine's float32 limit, two ways: MKL's matrix product (2048^2) and oneDNN's 3x3
    convolution (256 channels, 16 x 16, batch 64, channels-last). On AMD CPUs MKL takes its AVX2
    path, so the convolution can be the higher of the two (Zen 5: 515 against 200 GFLOP/s)."""
    n = 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    x = torch.randn(64, 256, 16, 16).to(memory_format=torch.channels_last)
    w = torch.randn(256, 256, 3, 3).to(memory_format=torch.channels_last)
    with torch.no_grad():
        return {
            "matmul": best_rate(lambda: a @ b, 2 * n**3),
            "conv": best_rate(lambda: torch.nn.functional.conv2d(x, w, padding=1), 2 * 64 * 256 * 256 * 9 * 16 * 16),
        }


def forward_flops(model: torch.nn.Module, x: torch.Tensor) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return counter.get_total_flops()


def nads_row(arch: str, n: int) -> dict:
    """Seconds per network of `nads estimate` (the stage's engine, all cores) and its FD FLOPs."""
    from nads.estimate import Spec, estimate_nads

    spec = Spec(arch)
    flops = 2 * spec.dim * forward_flops(spec.network(0), spec.x0()[None])
    t0 = time.perf_counter()
    estimate_nads(arch, n_networks=n, device="cpu")
    per_net = (time.perf_counter() - t0) / n
    return {"work": f"NADs {arch} ({n} networks)", "gflop": flops / 1e9, "s": per_net, "unit": "s/network"}


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


def layouts_rows(batch: int = 256) -> list[dict]:
    """ResNet-18's plain forward: eager NCHW, channels-last, torch.compile (compile time apart)."""
    from nads.models import get_model

    model = get_model("resnet18", in_channels=1, num_classes=1, input_size=32).eval()
    x = torch.randn(batch, 1, 32, 32)
    flops = forward_flops(model, x)
    rows, ref = [], None
    variants = {
        "eager NCHW": (model, x),
        "channels-last": (model.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)),
    }
    for name, (m, inp) in variants.items():
        with torch.no_grad():
            out = m(inp)
            times = []
            for _ in range(5):
                t0 = time.perf_counter()
                m(inp)
                times.append(time.perf_counter() - t0)
        ref = out if ref is None else ref
        rows.append(
            {
                "work": f"ResNet-18 forward, batch {batch}, {name}",
                "gflop": flops / 1e9,
                "s": min(times),
                "unit": "s",
                "max |diff| vs eager": float((out - ref).abs().max()),
            }
        )
    try:
        t0 = time.perf_counter()
        compiled = torch.compile(model.to(memory_format=torch.contiguous_format))
        with torch.no_grad():
            out = compiled(x)
            compile_s = time.perf_counter() - t0
            times = []
            for _ in range(5):
                t0 = time.perf_counter()
                compiled(x)
                times.append(time.perf_counter() - t0)
        rows.append(
            {
                "work": f"ResNet-18 forward, batch {batch}, torch.compile ({compile_s:.0f} s to compile)",
                "gflop": flops / 1e9,
                "s": min(times),
                "unit": "s",
                "max |diff| vs eager": float((out - ref).abs().max()),
            }
        )
    except Exception as e:  # noqa: BLE001 - no compiler here: say so, keep the rest
        print(f"torch.compile unavailable: {type(e).__name__}: {e}")
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archs", nargs="+", default=list(NETWORKS), choices=list(NETWORKS))
    p.add_argument("--no-sweep", action="store_true")
    p.add_argument("--layouts", action="store_true", help="also ResNet-18's forward: NCHW, channels-last, compile")
    args = p.parse_args()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
        f"{torch.backends.cpu.get_cpu_capability()}"
    )
    before = peaks()
    rows = [nads_row(a, NETWORKS[a]) for a in args.archs]
    if not args.no_sweep:
        rows.append(sweep_row())
    if args.layouts:
        rows += layouts_rows()
    after = peaks()
    limit = {k: max(before[k], after[k]) for k in before}
    print(
        f"\nfloat32 limits (best of before and after the work): matmul {limit['matmul']:.1f} GFLOP/s "
        f"(before {before['matmul']:.1f}), 3x3 convolution {limit['conv']:.1f} (before {before['conv']:.1f})\n"
    )
    print("| work | GFLOP | time | GFLOP/s | % of matmul peak | % of conv peak |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        rate = r["gflop"] / r["s"]
        extra = f" (max abs diff vs eager {r['max |diff| vs eager']:.1e})" if "max |diff| vs eager" in r else ""
        print(
            f"| {r['work']}{extra} | {r['gflop']:.1f} | {r['s']:.2f} {r['unit']} | {rate:.1f} | "
            f"{100 * rate / limit['matmul']:.0f} % | {100 * rate / limit['conv']:.0f} % |"
        )
    if any(np.isnan(r["s"]) for r in rows):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
