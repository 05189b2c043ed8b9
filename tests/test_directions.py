import numpy as np
import pytest

from nads.directions import centred_cells, fourier_direction, fourier_directions, fourier_grid


def test_grid_holds_each_real_frequency_once():
    freqs = fourier_grid(32, 32, 1)
    assert len(freqs) == 514
    assert len(fourier_grid(32, 32, 2)) == 130
    assert len(fourier_grid(32, 32, 4)) == 34
    # On the self-conjugate columns k1 and 32 - k1 are one frequency: keep k1 <= 16.
    edge = freqs[np.isin(freqs[:, 1], [0, 16])]
    assert edge[:, 0].max() == 16 and len(edge) == 34
    assert len({tuple(f) for f in freqs}) == len(freqs)


def test_directions_are_unit_never_zero_and_orthonormal():
    freqs, v = fourier_directions((1, 32, 32), stride=1)
    assert v.shape == (514, 1024) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-6)
    assert np.abs(v).max(axis=1).min() > 1e-3  # DC and Nyquist cells included
    gram = v.astype(np.float64) @ v.T.astype(np.float64)
    np.testing.assert_allclose(gram, np.eye(514), atol=1e-5)


@pytest.mark.parametrize("k1,k2", [(0, 0), (16, 0), (0, 16), (16, 16), (3, 0), (5, 7), (30, 16), (1, 15)])
def test_direction_matches_irfft2_construction_and_closed_form(k1, k2):
    h = w = 32
    v = fourier_direction(k1, k2, h, w)
    # numpy's construction, written out: F zero but F[k1, k2] = i (or 1 where the sine vanishes).
    F = np.zeros((h, w // 2 + 1), complex)
    F[k1, k2] = 1 if (k1 in (0, 16) and k2 in (0, 16)) else 1j
    ref = np.fft.irfft2(F, s=(h, w))
    np.testing.assert_allclose(v, ref / np.linalg.norm(ref), atol=1e-12)
    # ... which is the sine (or cosine) of that frequency, up to sign.
    m, n = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    phase = 2 * np.pi * (k1 * m / h + k2 * n / w)
    wave = np.cos(phase) if (k1 in (0, 16) and k2 in (0, 16)) else np.sin(phase)
    assert abs(np.dot(v.ravel(), wave.ravel() / np.linalg.norm(wave))) == pytest.approx(1.0, abs=1e-12)


def test_three_channel_directions_repeat_the_pattern():
    _, v1 = fourier_directions((1, 8, 8), 2)
    _, v3 = fourier_directions((3, 8, 8), 2)
    assert v3.shape == (v1.shape[0], 3 * 64)
    np.testing.assert_allclose(np.linalg.norm(v3, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(v3.reshape(-1, 3, 64)[:, 2] * np.sqrt(3), v1, atol=1e-6)


def test_centred_cells_are_a_frequency_and_its_mirror():
    assert centred_cells(0, 0, 32, 32) == [(16, 16)]
    assert centred_cells(1, 2, 32, 32) == [(17, 18), (15, 14)]
    assert centred_cells(16, 16, 32, 32) == [(0, 0)]
    # The cells are where the energy of the direction actually is.
    for k1, k2 in [(1, 2), (8, 0), (30, 5), (16, 3)]:
        energy = np.fft.fftshift(np.abs(np.fft.fft2(fourier_direction(k1, k2, 32, 32))) ** 2)
        hot = {tuple(c) for c in np.argwhere(energy > 1e-6 * energy.max())}
        assert hot == set(centred_cells(k1, k2, 32, 32))
