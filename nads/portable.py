"""The same bits on any x86-64 CPU with AVX2: Intel or AMD, old or new.

The math libraries under torch and numpy choose their kernels per CPU, and a
different kernel sums in a different order: MKL takes a vendor-specific code
path (on AMD it ignores MKL_CBWR=AVX2 and runs its own; only COMPATIBLE is
honoured by both vendors), oneDNN's convolutions, ATen's vectorised loops and
numpy's transcendental functions use AVX-512 where the CPU has it, and
reductions split by thread count. A last-bit difference in the gradient
covariance then rotates the NADs of nearly equal eigenvalues and moves every
result downstream (seen: NAD-curve Spearman 0.996 on an Intel Xeon, 0.933 on an
AMD EPYC).

`apply()` pins each of them to one code path that every x86-64-v3 CPU (AVX2
and FMA: Intel since 2013, AMD since 2015) runs identically, and computes on
one thread per process (nads parallelises over processes). It sets
environment variables, so it must run before numpy and torch are imported:
`import nads` does it, and worker processes inherit it. Checked: LeNet and
ResNet-18 forward passes, NAD estimation, batched training, eigh and numpy
kernels give identical bytes on an AMD Zen 5 (AVX-512) and under QEMU's
emulated Intel Haswell and AMD EPYC-Rome (tests/test_portable.py).
The cost is in BENCHMARKS.md (benchmarks/bench_portable.py).

NADS_PORTABLE=0 turns it off: faster, and the results are then those of this
CPU only (they will not match a dvc.lock written elsewhere).
"""

from __future__ import annotations

import os
import sys

# numpy's AVX-512 dispatch targets, by their names in numpy >= 2.4 and before
# (a name a version does not know is ignored with an ImportWarning).
_NUMPY_AVX512 = "X86_V4 AVX512F AVX512CD AVX512_KNL AVX512_KNM AVX512_SKX AVX512_CLX AVX512_CNL AVX512_ICL AVX512_SPR"

SETTINGS = {
    "MKL_CBWR": "COMPATIBLE",  # MKL: the one code path both vendors honour
    "ONEDNN_MAX_CPU_ISA": "AVX2",  # oneDNN (convolutions)
    "ATEN_CPU_CAPABILITY": "avx2",  # torch's own vectorised kernels
    "OPENBLAS_CORETYPE": "Haswell",  # numpy's and scipy's OpenBLAS
    "NPY_DISABLE_CPU_FEATURES": _NUMPY_AVX512,
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
}


def enabled() -> bool:
    return os.environ.get("NADS_PORTABLE", "1") != "0"


def apply() -> None:
    """Set SETTINGS in this process's environment (a no-op with NADS_PORTABLE=0)."""
    if enabled():
        os.environ.update(SETTINGS)


def environment() -> dict:
    """The variables a process started elsewhere (a Ray worker) needs to compute as this one."""
    return {"NADS_PORTABLE": "1", **SETTINGS} if enabled() else {"NADS_PORTABLE": "0"}


def status() -> dict:
    """What is in effect in this process: for the record of every run, and for `check`."""
    out: dict = {"portable": enabled()}
    if "torch" in sys.modules:
        import torch

        out["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        out["torch_threads"] = torch.get_num_threads()
    if "numpy" in sys.modules:
        from numpy._core import _multiarray_umath as m  # type: ignore[attr-defined]  # numpy >= 2 (the lock's)

        out["numpy_avx512"] = bool(m.__cpu_features__.get("AVX512F")) and not _numpy_avx512_disabled(m)
    return out


def _numpy_avx512_disabled(m) -> bool:
    return not any(m.__cpu_features__.get(name) for name in ("X86_V4", "AVX512_SKX"))


def check() -> None:
    """Fail when the settings were asked for but did not take effect (numpy or torch
    imported before nads): results would silently be this CPU's own."""
    if not enabled():
        return
    s = status()
    wrong = []
    if s.get("torch_cpu_capability") not in (None, "AVX2", "DEFAULT"):
        wrong.append(f"torch uses {s['torch_cpu_capability']} kernels")
    if s.get("numpy_avx512"):
        wrong.append("numpy dispatches to AVX-512")
    if s.get("torch_threads", 1) != 1:
        wrong.append(f"torch computes on {s['torch_threads']} threads")
    if wrong:
        raise RuntimeError(
            "portable arithmetic (nads/portable.py) is not in effect: "
            + "; ".join(wrong)
            + ". Import nads before numpy and torch, or set NADS_PORTABLE=0 to accept "
            "results specific to this CPU"
        )
