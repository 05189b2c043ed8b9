"""Reduced precision (bf16 autocast; TF32 on GPUs) stays within stated tolerances of float32.

Tolerances (docs/scaling.md, "Reduced precision"): NADs: top-10 subspace agreement
>= 0.99 and the leading eigenvalues within 1 %; accuracies: within 0.01 for
logistic regression and within 0.06 for LeNet, whose seed-to-seed spread at
this scale is 0.05-0.1 (measured: seeds 0, 1, 2 on the directions below).
"""

import numpy as np
import pytest

from nads.config import Synthetic
from nads.directions import fourier_directions
from nads.errors import ParamError
from nads.estimate import estimate_nads, subspace_agreement
from nads.sweep import sweep
from nads.synthetic import draw_noise_bank
from nads.train import Schedule


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
