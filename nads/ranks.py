"""Spearman's rank correlation in numpy.

scipy.stats gives the same numbers but costs about a second to import, which every stage
process paid at its start (the NAD, sweep, prediction and report stages use it)."""

from __future__ import annotations

import numpy as np


def average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their mean rank (scipy.stats.rankdata's 'average')."""
    x = np.asarray(x).ravel()
    order = np.argsort(x, kind="mergesort")
    inverse = np.empty(len(x), dtype=np.intp)
    inverse[order] = np.arange(len(x))
    ordered = x[order]
    first = np.r_[True, ordered[1:] != ordered[:-1]]
    group = first.cumsum()[inverse]
    bounds = np.r_[np.nonzero(first)[0], len(x)]
    return 0.5 * (bounds[group] + bounds[group - 1] + 1)


def spearman(a, b) -> float:
    """Spearman's rho of two equal-length samples; NaN where either is constant or holds a NaN.

    Bit for bit scipy.stats.spearmanr(a, b).statistic: the ranks are exact halves, and the
    correlation is numpy's on the same (n, 2) array."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) != len(b):
        raise ValueError(f"spearman: samples of {len(a)} and {len(b)} values")
    if len(a) < 2 or np.isnan(a).any() or np.isnan(b).any():
        return float("nan")
    ranked = np.column_stack([average_ranks(a), average_ranks(b)])
    with np.errstate(divide="ignore", invalid="ignore"):  # a constant sample: NaN, as scipy gives
        return float(np.corrcoef(ranked, rowvar=False)[1, 0])
