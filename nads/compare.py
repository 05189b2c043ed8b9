"""This run against the published results: agreement numbers with known meanings."""

from __future__ import annotations

import numpy as np

from .estimate import AGREEMENT_K, subspace_agreement  # noqa: F401 - the comparison's measure of NAD agreement
from .spectral import radial_frequency

INDEX_GROUPS = ((0, 10), (10, 100), (100, 300), (300, 1023))  # NAD index ranges [a, b)


def sign_aligned(ours: np.ndarray, theirs: np.ndarray) -> np.ndarray:
    """`ours` with each row's sign flipped to point like the same row of `theirs` (a NAD's sign is arbitrary)."""
    signs = np.sign(np.sum(ours * theirs, axis=1))
    return ours * np.where(signs == 0, 1, signs)[:, None]


def radius_by_group(nads: np.ndarray, shape, groups=INDEX_GROUPS) -> dict:
    """Mean radial frequency (cycles per image) of the NADs in each index group."""
    radius = radial_frequency(nads[: max(b for _, b in groups)], shape)
    return {f"{a}-{b - 1}": float(radius[a:b].mean()) for a, b in groups if a < len(radius)}


def _finite(*arrays) -> list:
    """The arrays as float64, restricted to the entries where all of them are finite (NaN marks a missing one)."""
    floats = [np.asarray(a, dtype=np.float64) for a in arrays]
    keep = np.logical_and.reduce([np.isfinite(a) for a in floats])
    return [a[keep] for a in floats]


def paired(ours, theirs) -> dict:
    """Pearson r and mean |difference| over the entries both have (NaN marks a missing one)."""
    a, b = _finite(ours, theirs)
    r = float(np.corrcoef(a, b)[0, 1]) if len(a) > 1 and a.std() > 0 and b.std() > 0 else float("nan")
    return {"n": len(a), "pearson_r": r, "mean_abs_diff": float(np.abs(a - b).mean()) if len(a) else float("nan")}


def within_spread(mean, sd, theirs, k: float = 2.0) -> dict:
    """How a published value sits in this run's spread over seeds: the mean seed
    standard deviation, and the fraction of entries (both finite) where
    |theirs - mean| <= k * sd."""
    mean, sd, theirs = _finite(mean, sd, theirs)
    if not len(mean):
        return {"seed_sd": float("nan"), f"frac_within_{k:g}sd": float("nan")}
    return {"seed_sd": float(sd.mean()), f"frac_within_{k:g}sd": float((np.abs(theirs - mean) <= k * sd).mean())}
