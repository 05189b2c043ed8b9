"""Direction families v in R^D (D = C*H*W): Fourier grid, random, NAD rows."""

from __future__ import annotations

import numpy as np


def fourier_grid(height: int, width: int, stride: int = 1) -> np.ndarray:
    """Frequencies (k1, k2) of the rfft half-plane, each real frequency once.

    k1 in [0, H), k2 in [0, W/2]. On the k2 = 0 and k2 = W/2 columns, k1 and
    H - k1 are the same frequency (their sines are v and -v), so only
    k1 <= H/2 is kept there: 514 directions on 32x32 at stride 1.
    """
    freqs = [
        (k1, k2)
        for k1 in range(0, height, stride)
        for k2 in range(0, width // 2 + 1, stride)
        if not (k2 in (0, width // 2) and k1 > height // 2)
    ]
    return np.array(freqs, dtype=np.int64).reshape(-1, 2)


def fourier_direction(k1: int, k2: int, height: int, width: int) -> np.ndarray:
    """Unit-norm H x W image of frequency (k1, k2): a sine, or a cosine where the sine vanishes."""
    spectrum = np.zeros((height, width // 2 + 1), dtype=np.complex128)
    sine_vanishes = k1 in (0, height // 2) and k2 in (0, width // 2)
    spectrum[k1, k2] = 1.0 if sine_vanishes else 1j
    v = np.fft.irfft2(spectrum, s=(height, width))
    return v / np.linalg.norm(v)


def fourier_directions(shape, stride: int = 1):
    """(freqs (n, 2), directions (n, C*H*W) float32) for an input of shape (C, H, W).

    With C > 1 channels the same pattern is placed in every channel (then
    renormalised), so a direction is a grey-level pattern.
    """
    c, h, w = shape
    freqs = fourier_grid(h, w, stride)
    bank = np.stack([fourier_direction(k1, k2, h, w) for k1, k2 in freqs])
    bank = np.repeat(bank[:, None], c, axis=1) / np.sqrt(c)
    return freqs, bank.reshape(len(freqs), -1).astype(np.float32)


def random_directions(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """n directions drawn uniformly on the unit sphere of R^dim, float32."""
    g = np.random.default_rng(seed).standard_normal((n, dim))
    return (g / np.linalg.norm(g, axis=1, keepdims=True)).astype(np.float32)


def centred_cells(k1: int, k2: int, height: int, width: int):
    """The two cells (row, col) of a real frequency in the fftshift-ed H x W spectrum.

    A real direction has energy at (k1, k2) and at its mirror (-k1, -k2); with
    DC moved to the centre (row H/2, col W/2) both are drawn.
    """
    here = ((k1 + height // 2) % height, (k2 + width // 2) % width)
    mirror = ((-k1 + height // 2) % height, (-k2 + width // 2) % width)
    return [here] if here == mirror else [here, mirror]
