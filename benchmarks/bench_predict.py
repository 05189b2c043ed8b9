"""Predicted learnability against measured learnability: time per direction.

Baseline: the sweep (`nads.sweep.sweep`, its defaults) trains the architecture on D(v) for a
few Fourier directions at the quick profile's data and schedule (4 000 + 2 000 samples,
10 epochs). Predicted: `nads.predict.scores` (both rules) on the whole 32x32 grid, 514
directions, from NADs estimated in the same run. Same machine, one run; each figure the best
of the repeats. The NAD estimate's own time is reported too: a prediction needs one, once.

    python benchmarks/bench_predict.py                 # LeNet, 4 swept directions
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from nads import predict
from nads.config import Schedule, Synthetic
from nads.directions import fourier_directions
from nads.estimate import estimate_nads
from nads.sweep import sweep
from nads.synthetic import draw_noise_bank


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", default="lenet")
    ap.add_argument("--swept", type=int, default=4, help="directions trained for the baseline")
    ap.add_argument("--networks", type=int, default=2048, help="networks of the NAD estimate")
    args = ap.parse_args()
    shape = (1, 32, 32)
    t0 = time.perf_counter()
    est = estimate_nads(args.arch, shape, args.networks)
    estimate_s = time.perf_counter() - t0
    freqs, grid = fourier_directions(shape, 1)
    rows = {
        rule: best(lambda: predict.scores(est.nads, est.eigenvalues, grid, shape, rule), 5) / len(grid)
        for rule in predict.RULES
    }
    bank = draw_noise_bank(Synthetic(input_shape=shape, n_train=4000, n_test=2000, fourier_stride=4))
    pick = np.linspace(0, len(grid) - 1, args.swept).astype(int)
    trained = best(lambda: sweep(args.arch, bank, grid[pick], Schedule(epochs=10)), 1) / len(pick)
    print(f"{args.arch}: NAD estimate ({args.networks} networks) {estimate_s:.1f} s, once")
    print(f"  measured (sweep, quick schedule): {trained:.2f} s per direction ({len(pick)} directions)")
    for rule, s in rows.items():
        print(
            f"  predicted ({rule}): {1e6 * s:.0f} us per direction ({len(grid)} directions: "
            f"{s * len(grid):.3f} s), {trained / s:,.0f}x faster than training"
        )
    print(
        f"  the whole grid: predicted in {rows['shift'] * len(grid):.2f} s, trained in about "
        f"{trained * len(grid) / 60:.0f} min"
    )


if __name__ == "__main__":
    main()
