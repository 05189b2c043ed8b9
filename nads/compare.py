"""This run against the published results: agreement numbers with known meanings."""
from __future__ import annotations

import numpy as np

from .estimate import AGREEMENT_K, subspace_agreement  # noqa: F401 - the comparison's measure of NAD agreement
from .spectral import radial_frequency

INDEX_GROUPS = ((0, 10), (10, 100), (100, 300), (300, 1023))   # NAD index ranges [a, b)


def sign_aligned(ours: np.ndarray, theirs: np.ndarray) -> np.ndarray:
    """`ours` with each row's sign flipped to point like the same row of `theirs` (a NAD's sign is arbitrary)."""
    signs = np.sign(np.sum(ours * theirs, axis=1))
    return ours * np.where(signs == 0, 1, signs)[:, None]


def radius_by_group(nads: np.ndarray, shape, groups=INDEX_GROUPS) -> dict:
    """Mean radial frequency (cycles per image) of the NADs in each index group."""
    radius = radial_frequency(nads[:max(b for _, b in groups)], shape)
    return {f"{a}-{b - 1}": float(radius[a:b].mean()) for a, b in groups if a < len(radius)}


def paired(ours, theirs) -> dict:
    """Pearson r and mean |difference| over the entries both have (NaN marks a missing one)."""
    ours, theirs = np.asarray(ours, dtype=np.float64), np.asarray(theirs, dtype=np.float64)
    both = np.isfinite(ours) & np.isfinite(theirs)
    a, b = ours[both], theirs[both]
    r = float(np.corrcoef(a, b)[0, 1]) if both.sum() > 1 and a.std() > 0 and b.std() > 0 else float("nan")
    return {"n": int(both.sum()), "pearson_r": r, "mean_abs_diff": float(np.abs(a - b).mean()) if both.any() else
            float("nan")}


def within_spread(mean, sd, theirs, k: float = 2.0) -> dict:
    """How a published value sits in this run's spread over seeds: the mean seed
    standard deviation, and the fraction of entries (both finite) where
    |theirs - mean| <= k * sd."""
    mean, sd, theirs = (np.asarray(a, dtype=np.float64) for a in (mean, sd, theirs))
    both = np.isfinite(mean) & np.isfinite(sd) & np.isfinite(theirs)
    inside = np.abs(theirs[both] - mean[both]) <= k * sd[both]
    return {"seed_sd": float(sd[both].mean()) if both.any() else float("nan"),
            f"frac_within_{k:g}sd": float(inside.mean()) if both.any() else float("nan")}
