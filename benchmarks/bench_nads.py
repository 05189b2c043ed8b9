"""NAD estimation speed: this project's estimator against the original procedure.

Baseline = the original procedure written plainly: one network at a time, all
2D perturbed inputs in one batch, every gradient kept, then PCA (scikit-learn).
Both use the same networks (same seeds, same registry models) and run on the
same machine, each in a fresh process (so peak memory is its own), alternated.

    python benchmarks/bench_nads.py                     # LeNet 1000 nets, ResNet-18 3 nets
    python benchmarks/bench_nads.py --lenet 200 --resnet 2 --repeats 1   # quicker
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def run_method(method: str, arch: str, n: int, out: str) -> None:
    """In a child process: estimate with one method, save gradients-derived results."""
    import torch
    from sklearn.decomposition import PCA

    from nads.estimate import Spec, estimate_nads, fd_inputs

    rss_after_import = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    if method == "baseline":
        spec = Spec(arch)
        x = fd_inputs(spec.x0(), spec.step, 0, spec.dim)
        grads = []
        for i in range(n):
            with torch.no_grad():
                f = spec.network(i)(x).reshape(-1)
            grads.append(((f[: spec.dim] - f[spec.dim :]) / (2 * spec.step)).numpy())
        grads = np.stack(grads).astype(np.float64)
        pca = PCA().fit(grads)
        nads, vals = pca.components_, pca.explained_variance_
    else:
        r = estimate_nads(arch, n_networks=n, device="cpu")  # default engine: workers, chunks, shortcut
        nads, vals = r.nads[: min(n, r.nads.shape[0])], r.eigenvalues[: min(n, r.nads.shape[0])]
        grads = None
    seconds = time.perf_counter() - t0
    # Peak memory above what importing torch costs, in this process or any worker it forked.
    peak_mib = (
        max(resource.getrusage(who).ru_maxrss / 1024 for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
        - rss_after_import
    )
    np.savez(
        out, nads=np.asarray(nads, np.float64), vals=np.asarray(vals, np.float64), seconds=seconds, peak_mib=peak_mib
    )


def measure(method, arch, n):
    with tempfile.TemporaryDirectory() as d:
        out = str(Path(d) / "r.npz")
        subprocess.run([sys.executable, __file__, "--child", method, arch, str(n), out], check=True)
        r = np.load(out)
        return {k: r[k] for k in r.files}


def agreement(a, b, k):
    k = min(k, len(a), len(b))
    return float(np.sum((a[:k] @ b[:k].T) ** 2) / k)


def compare(arch: str, n: int, repeats: int) -> dict:
    runs = {"baseline": [], "nads": []}
    for _ in range(repeats):
        for method in runs:  # alternated, so drifts in machine speed hit both
            runs[method].append(measure(method, arch, n))
    best = {m: min(rs, key=lambda r: float(r["seconds"])) for m, rs in runs.items()}
    b, o = best["baseline"], best["nads"]
    rank = n - 1
    row = {
        "arch": arch,
        "networks": n,
        "baseline_s_per_net": float(b["seconds"]) / n,
        "nads_s_per_net": float(o["seconds"]) / n,
        "speedup": float(b["seconds"]) / float(o["seconds"]),
        "baseline_peak_mib": float(b["peak_mib"]),
        "nads_peak_mib": float(o["peak_mib"]),
        "eigenvalue_max_rel_diff": float(
            np.max(np.abs(o["vals"][:rank] - b["vals"][:rank]) / np.abs(b["vals"][:rank]))
        ),
    }
    for k in (1, 10, 100):
        if k <= rank:
            row[f"agreement_top{k}"] = agreement(b["nads"], o["nads"], k)
    return row


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        run_method(*sys.argv[2:4], int(sys.argv[4]), sys.argv[5])
        return
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lenet", type=int, default=1000)
    p.add_argument("--resnet", type=int, default=3)
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    rows = [compare("lenet", args.lenet, args.repeats)]
    if args.resnet:
        rows.append(compare("resnet18", args.resnet, 1))
    print(json.dumps(rows, indent=2))
    print(
        "\n| arch | networks | baseline s/net | nads s/net | speed-up | peak MiB above imports (baseline / nads) | "
        "eigenvalues max rel. diff | top-1 / top-10 / top-100 agreement |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        agree = " / ".join(f"{r[k]:.6f}" for k in ("agreement_top1", "agreement_top10", "agreement_top100") if k in r)
        print(
            f"| {r['arch']} | {r['networks']} | {r['baseline_s_per_net']:.4f} | {r['nads_s_per_net']:.4f} | "
            f"{r['speedup']:.1f}x | {r['baseline_peak_mib']:.0f} / {r['nads_peak_mib']:.0f} | "
            f"{r['eigenvalue_max_rel_diff']:.1e} | {agree} |"
        )


if __name__ == "__main__":
    main()
