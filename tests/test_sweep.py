import numpy as np
import pytest

from nads import plots
from nads.config import Synthetic
from nads.directions import centred_cells, fourier_directions, fourier_grid
from nads.sweep import sweep
from nads.synthetic import draw_noise_bank
from nads.train import Schedule


def test_logistic_regression_learns_every_direction():
    bank = draw_noise_bank(Synthetic(input_shape=(1, 8, 8), n_train=400, n_test=400, seed=2))
    freqs, v = fourier_directions((1, 8, 8), 2)
    r = sweep("logreg", bank, v, Schedule(epochs=5, batch_size=64), "cpu")
    assert len(r["test_acc"]) == len(freqs) == 10
    assert r["test_acc"].min() > 0.9 and r["train_acc"].min() > 0.9


def test_lenet_separates_a_low_frequency_from_a_high_one():
    # The quick profile's scale (4000 samples, 10 epochs): low frequencies ~0.7, +-16 at chance.
    bank = draw_noise_bank(Synthetic(n_train=4000, n_test=1000, seed=0))
    freqs, v = fourier_directions((1, 32, 32), 4)
    pick = [int(np.flatnonzero((freqs == f).all(1))[0]) for f in ([0, 4], [16, 0], [0, 16])]
    r = sweep("lenet", bank, v[pick], Schedule(epochs=10), "cpu")
    easy, hard_a, hard_b = r["test_acc"]
    assert easy > 0.62, r
    assert max(hard_a, hard_b) < 0.57, r


def test_heatmap_places_each_frequency_and_its_mirror(tmp_path):
    h = w = 8
    freqs = fourier_grid(h, w, 1)
    acc = np.linspace(0.5, 1.0, len(freqs))
    grid = plots.fourier_heatmap(freqs, acc, (1, h, w), 1, tmp_path / "heatmap.png")
    assert (tmp_path / "heatmap.png").stat().st_size > 5000
    assert not np.isnan(grid).any()  # half-plane + mirror images cover the whole spectrum
    for (k1, k2), a in zip(freqs, acc):
        for r, c in centred_cells(k1, k2, h, w):
            assert grid[r, c] == a
    assert grid[h // 2, w // 2] == acc[0]  # DC in the centre
    # Stride 2: one cell per measured direction, on the subsampled grid.
    freqs2 = fourier_grid(h, w, 2)
    grid2 = plots.fourier_heatmap(freqs2, np.ones(len(freqs2)), (1, h, w), 2, tmp_path / "h2.png")
    assert grid2.shape == (4, 4) and not np.isnan(grid2).any()


@pytest.mark.parametrize("stride", [1, 2, 4])
def test_grid_and_heatmap_cells_agree_in_count(stride):
    freqs = fourier_grid(32, 32, stride)
    cells = {c for k1, k2 in freqs for c in centred_cells(k1, k2, 32, 32)}
    assert len(cells) == (32 // stride) ** 2
