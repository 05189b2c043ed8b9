"""A small real poisoning run on a CIFAR-shaped data set."""

import numpy as np
import pytest

from nads.cifar10 import CLASSES, Cifar10
from nads.estimate import estimate_nads
from nads.poisoning import poisoning
from nads.train import Schedule


def cifar_shaped(n_train: int, n_test: int, seed: int = 0) -> Cifar10:
    """10 classes, each a fixed random colour pattern under heavy noise: learnable, not trivially."""
    rng = np.random.default_rng(seed)
    patterns = rng.normal(0, 1, (10, 32, 32, 3))

    def split(n):
        y = np.arange(n) % 10
        x = 0.5 + 0.08 * patterns[y] + rng.normal(0, 0.2, (n, 32, 32, 3))
        return (np.clip(x, 0, 1) * 255).astype(np.uint8), y.astype(np.int64)

    return Cifar10(*split(n_train), *split(n_test), CLASSES)


@pytest.mark.slow
def test_carrier_on_a_top_nad_hurts_more_than_on_a_late_nad():
    nads = estimate_nads("lenet", n_networks=64, seed=0).nads
    data = cifar_shaped(3000, 1000)
    rows = poisoning(
        "lenet", data, nads, [0, 1000], 0.05, Schedule(epochs=6, lr=0.05, momentum=0.9, weight_decay=5e-4), device="cpu"
    )
    clean, top, late = (r["clean_test_acc"] for r in rows)
    assert clean > 0.6, rows  # the data are learnable (measured: 0.81)
    assert clean - top > 0.4, rows  # the top-NAD shortcut is taken (0.10) ...
    assert (clean - top) > (clean - late) + 0.3, rows  # ... the late-NAD one mostly not (0.68)
    assert rows[1]["carrier_success"] > 0.4 > rows[2]["carrier_success"], rows
