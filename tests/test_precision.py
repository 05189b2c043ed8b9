"""Reduced precision (bf16 autocast; TF32 on GPUs) stays within stated tolerances of float32.

Tolerances (docs/scaling.md, "Reduced precision"): NADs: top-10 subspace agreement
>= 0.99 and the leading eigenvalues within 1 %; accuracies: within 0.01 for
logistic regression and within 0.06 for LeNet, whose seed-to-seed spread at
this scale is 0.05-0.1 (measured: seeds 0, 1, 2 on the directions below).
bf16 runs only where the CPU has it (AVX512-BF16 or AMX); elsewhere it is refused.
"""

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nads.config import Synthetic
from nads.directions import fourier_directions
from nads.errors import ParamError
from nads.estimate import estimate_nads, subspace_agreement
from nads.portable import SETTINGS
from nads.runtime import _cpu_bf16, native_bf16
from nads.sweep import sweep
from nads.synthetic import draw_noise_bank
from nads.train import Schedule

NATIVE = native_bf16("cpu")
native = pytest.mark.skipif(
    not NATIVE,
    reason="no native bf16 here (no bf16 hardware, or portable arithmetic holds it to AVX2): refused (tested below)",
)


@native
@pytest.mark.parametrize("arch", ["logreg", "lenet"])
def test_bf16_nads_are_the_float32_nads(arch):
    # 64 networks: top-10 agreement 0.9998 and eigenvalues within 0.3 % for LeNet, far inside the bounds
    ref = estimate_nads(arch, n_networks=64, device="cpu")
    low = estimate_nads(arch, n_networks=64, device="cpu", precision="bf16")
    assert low.diagnostics["precision"] == "bf16"
    assert subspace_agreement(ref.nads, low.nads, 10) >= 0.99
    rel = np.abs(low.eigenvalues[:10] / ref.eigenvalues[:10] - 1)
    assert rel.max() < 0.01
    assert rel.max() > 0  # bf16 really ran: it is not float32 under another name


@native
def test_bf16_sweep_accuracies_are_within_tolerance():
    bank = draw_noise_bank(Synthetic(n_train=3000, n_test=1000, seed=0))
    freqs, v = fourier_directions((1, 32, 32), 4)
    pick = [int(np.flatnonzero((freqs == f).all(1))[0]) for f in ([0, 0], [0, 4], [16, 0])]
    for arch, tol, epochs in (("logreg", 0.01, 4), ("lenet", 0.06, 4)):
        ref = sweep(arch, bank, v[pick], Schedule(epochs=epochs), "cpu")["test_acc"]
        low = sweep(arch, bank, v[pick], Schedule(epochs=epochs, precision="bf16"), "cpu")["test_acc"]
        assert np.abs(low - ref).max() <= tol, (arch, ref, low)
    assert ref[0] > 0.55  # LeNet learnt something on the DC direction


def test_tf32_changes_nothing_on_a_cpu():
    a = estimate_nads("lenet", n_networks=64, device="cpu")
    b = estimate_nads("lenet", n_networks=64, device="cpu", precision="tf32")
    np.testing.assert_array_equal(a.eigenvalues, b.eigenvalues)


def test_unknown_precision_fails_at_once():
    with pytest.raises(ParamError, match="precision = 'fp8': allowed: float32, tf32, bf16"):
        estimate_nads("lenet", n_networks=64, precision="fp8")


def test_precision_sets_and_restores_the_gpu_tf32_flags():
    import torch

    from nads.runtime import _tf32_flags, precision

    before = [getattr(o, n) for o, n, _ in _tf32_flags()]
    for mode, expected in (("float32", 0), ("bf16", 0), ("tf32", 1)):
        with precision(mode, "cuda"):  # the flags are process state: set even without a GPU
            assert [getattr(o, n) for o, n, _ in _tf32_flags()] == [v[expected] for _, _, v in _tf32_flags()]
        assert [getattr(o, n) for o, n, _ in _tf32_flags()] == before
    with precision("tf32", torch.device("cpu")):  # CPUs: nothing to set
        assert [getattr(o, n) for o, n, _ in _tf32_flags()] == before


def refused(tmp_path, *emulator: str) -> str:
    """`nads estimate --precision bf16` on a CPU without native bf16: its one line."""
    out = tmp_path / "nads.npz"
    cmd = [*emulator, sys.executable, "-m", "nads.cli", "estimate", "--arch", "lenet", "--networks", "64"]
    proc = subprocess.run(
        [*cmd, "--precision", "bf16", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=Path(__file__).resolve().parents[1],
    )
    errors = [line for line in proc.stderr.splitlines() if not line.startswith("qemu-x86_64: warning")]
    assert proc.returncode == 2 and len(errors) == 1, proc.stderr[-2000:]
    assert not out.exists()
    return errors[0]


@pytest.mark.skipif(NATIVE, reason="this CPU has native bf16 (the emulated-CPU test covers the refusal)")
def test_bf16_is_refused_in_one_line_on_this_cpu_without_it(tmp_path):
    line = refused(tmp_path)
    assert "use precision 'float32'" in line
    if _cpu_bf16():  # the hardware has it, but the portable arithmetic (AVX2) would emulate it
        assert line.startswith("error: precision = 'bf16': this CPU has bfloat16 arithmetic, but the portable"), line
        assert "NADS_PORTABLE=0 for this CPU's own bf16" in line
    else:
        assert line.startswith("error: precision = 'bf16': this CPU has no native bfloat16"), line


@pytest.mark.skipif(not _cpu_bf16(), reason="this CPU has no bfloat16 arithmetic")
def test_bf16_runs_where_the_cpu_has_it_and_the_arithmetic_is_not_pinned(tmp_path):
    """NADS_PORTABLE=0 (this CPU's own kernels): bf16 runs, and its NADs are float32's."""
    code = (
        "import nads; from nads.estimate import estimate_nads, subspace_agreement;"
        "a = estimate_nads('lenet', n_networks=64, device='cpu', precision='bf16', executor='local');"
        "b = estimate_nads('lenet', n_networks=64, device='cpu', executor='local');"
        "print(subspace_agreement(a.nads, b.nads, 10), a.diagnostics['precision'])"
    )
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS} | {"NADS_PORTABLE": "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    agreement, prec = out.stdout.split()
    assert prec == "bf16" and float(agreement) >= 0.999


@pytest.mark.slow
@pytest.mark.long
@pytest.mark.skipif(
    platform.machine() != "x86_64" or not shutil.which("qemu-x86_64"),
    reason="needs an x86-64 machine and qemu-user (apt-get install qemu-user)",
)
def test_bf16_is_refused_in_one_line_on_an_emulated_avx2_cpu(tmp_path):
    # QEMU's Haswell: AVX2, no AVX-512 and so no AVX512-BF16, whatever this machine has.
    line = refused(tmp_path, "qemu-x86_64", "-cpu", "Haswell-v4")
    assert line == (
        "error: precision = 'bf16': this CPU has no native bfloat16 (AVX512-BF16 or AMX; it has AVX2), so bf16 "
        "would be emulated, several times slower than float32 (11x for LeNet's NADs on an AVX2 CPU): "
        "use precision 'float32' here, bf16 on a GPU or a CPU that has it"
    )
