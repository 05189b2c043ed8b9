"""Frequency content of patterns: how a NAD's energy spreads in the Fourier plane."""

from __future__ import annotations

import numpy as np

from .ranks import spearman


def radial_frequency(patterns: np.ndarray, shape) -> np.ndarray:
    """Energy-weighted mean radial frequency |k| (in cycles per image) of each (C*H*W) pattern."""
    c, h, w = shape
    imgs = patterns.reshape(-1, c, h, w).astype(np.float64)
    energy = (np.abs(np.fft.fft2(imgs, axes=(-2, -1))) ** 2).sum(axis=1)
    k1 = np.fft.fftfreq(h) * h
    k2 = np.fft.fftfreq(w) * w
    radius = np.hypot(k1[:, None], k2[None, :])
    return (energy * radius).sum(axis=(1, 2)) / energy.sum(axis=(1, 2))


def index_frequency_correlation(nads: np.ndarray, shape, count: int) -> float:
    """Spearman correlation of NAD index with radial frequency over the first `count` NADs.

    Near +1: energy moves outward with the index, as the paper shows for CNNs.
    """
    count = min(count, len(nads))
    return spearman(np.arange(count), radial_frequency(nads[:count], shape))
