"""The cost of the same bits on any x86-64 CPU (nads/portable.py).

Each workload runs in a fresh process on one thread, once with nothing pinned
(NADS_PORTABLE=0: the kernels this CPU would pick) and once with each setting
of nads.portable.SETTINGS alone, then all of them (the pipeline's default).
Modes alternate within each repeat; the ratio is against 'native' of the same run.

    python benchmarks/bench_portable.py               # ~25 minutes on one core
    python benchmarks/bench_portable.py --repeats 1 --only nads_lenet
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

THREADS = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def modes() -> dict:
    from nads.portable import SETTINGS

    one = {
        "mkl": ["MKL_CBWR"],
        "onednn": ["ONEDNN_MAX_CPU_ISA"],
        "aten": ["ATEN_CPU_CAPABILITY"],
        "numpy": ["OPENBLAS_CORETYPE", "NPY_DISABLE_CPU_FEATURES"],
    }
    out = {"native": {"NADS_PORTABLE": "0", **THREADS}}
    for name, keys in one.items():
        out[f"+{name}"] = {"NADS_PORTABLE": "0", **THREADS, **{k: SETTINGS[k] for k in keys}}
    out["portable"] = {"NADS_PORTABLE": "1"}
    return out


def workload(name: str) -> float:
    """Seconds of one workload in this process (imports and set-up excluded)."""
    import numpy as np
    import torch

    from nads.estimate import Engine, Spec, eig_desc
    from nads.sweep import direction_batches
    from nads.synthetic import NoiseBank
    from nads.train import Schedule, init_model, train_batched

    if name.startswith("nads_"):
        arch, n = {"nads_lenet": ("lenet", 64), "nads_vgg11_bn": ("vgg11_bn", 1), "nads_resnet18": ("resnet18", 1)}[
            name
        ]
        engine, spec = Engine("cpu"), Spec(arch)
        t0 = time.perf_counter()  # set-up included (shared inputs, shortcut check): small beside n networks
        engine.moments(spec, range(n))
        return time.perf_counter() - t0
    if name == "eigh_1024":
        g = np.random.default_rng(0).standard_normal((1100, 1024))
        cov = torch.from_numpy(np.cov(g.T))
        t0 = time.perf_counter()
        eig_desc(cov)
        return time.perf_counter() - t0
    if name == "sweep_lenet":
        rng, n = np.random.default_rng(0), 1024
        labels = lambda: np.where(rng.random(n) < 0.5, -1, 1).astype(np.int8)  # noqa: E731
        bank = NoiseBank(
            rng.standard_normal((n, 1024), np.float32),
            labels(),
            rng.standard_normal((n, 1024), np.float32),
            labels(),
            1.0,
            3.0,
            (1, 32, 32),
        )
        dirs = torch.nn.functional.normalize(torch.randn(8, 1024, generator=torch.Generator().manual_seed(0)))
        sch = Schedule(epochs=1)
        models = [init_model("lenet", i, sch, 1, 2, 32) for i in range(len(dirs))]
        z, y = torch.from_numpy(bank.z_train), torch.from_numpy(bank.y_train.astype(np.float32))
        t0 = time.perf_counter()
        train_batched(models, direction_batches(z, y, dirs, bank), n, sch, torch.device("cpu"))
        return time.perf_counter() - t0
    raise ValueError(name)


WORKLOADS = ("nads_lenet", "nads_vgg11_bn", "nads_resnet18", "sweep_lenet", "eigh_1024")


def child(mode: str, name: str) -> float:
    from nads.portable import SETTINGS

    env = {k: v for k, v in os.environ.items() if k not in SETTINGS and k != "NADS_PORTABLE"}
    env.update(modes()[mode])
    env["PYTHONPATH"] = os.pathsep.join([os.getcwd(), env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, __file__, "--child", name], env=env, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])["seconds"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--only", nargs="*", default=list(WORKLOADS))
    ap.add_argument("--child")
    args = ap.parse_args()
    if args.child:
        import nads  # noqa: F401  (applies the settings this process was started with)

        print(json.dumps({"seconds": workload(args.child)}))
        return
    names = list(modes())
    print(
        f"{'workload':<16}" + "".join(f"{m:>12}" for m in names) + "   (best of "
        f"{args.repeats}, seconds; ratio to native)"
    )
    for w in args.only:
        runs = [{m: child(m, w) for m in names} for _ in range(args.repeats)]  # modes alternate
        best = {m: min(r[m] for r in runs) for m in names}
        print(f"{w:<16}" + "".join(f"{best[m]:>12.3f}" for m in names))
        print(f"{'':<16}" + "".join(f"{best[m] / best['native']:>11.2f}x" for m in names), flush=True)


if __name__ == "__main__":
    main()
