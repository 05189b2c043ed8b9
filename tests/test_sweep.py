import numpy as np
import pytest

from nads import plots
from nads.config import Synthetic
from nads.directions import centred_cells, fourier_directions, fourier_grid
from nads.sweep import sweep, sweep_seeds
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


def test_seeds_are_replicates_of_the_plain_sweep_with_shifted_seeds():
    bank = draw_noise_bank(Synthetic(input_shape=(1, 8, 8), n_train=96, n_test=96, seed=3))
    assert bank.replicate(0) is bank
    again = draw_noise_bank(Synthetic(input_shape=(1, 8, 8), n_train=96, n_test=96, seed=5))
    np.testing.assert_array_equal(bank.replicate(2).z_train, again.z_train)
    np.testing.assert_array_equal(bank.replicate(2).y_test, again.y_test)
    _, v = fourier_directions((1, 8, 8), 2)
    schedule = Schedule(epochs=2, batch_size=32, lr=0.05, seed=7)
    r = sweep_seeds("logreg", bank, v, schedule, seeds=2, device="cpu")
    first = sweep("logreg", bank, v, schedule, "cpu")
    second = sweep(
        "logreg",
        draw_noise_bank(Synthetic(input_shape=(1, 8, 8), n_train=96, n_test=96, seed=4)),
        v,
        Schedule(epochs=2, batch_size=32, lr=0.05, seed=8),
        "cpu",
    )
    np.testing.assert_array_equal(r["test_acc_seed0"], first["test_acc"])
    np.testing.assert_array_equal(r["test_acc_seed1"], second["test_acc"])
    assert not np.array_equal(first["test_acc"], second["test_acc"])  # the replicates differ
    pair = np.stack([first["test_acc"], second["test_acc"]])
    np.testing.assert_allclose(r["test_acc"], pair.mean(0))
    np.testing.assert_allclose(r["test_acc_sd"], np.abs(pair[0] - pair[1]) / np.sqrt(2))
    np.testing.assert_array_equal(r["test_acc_min"], pair.min(0))
    np.testing.assert_allclose(r["train_acc"], (first["train_acc"] + second["train_acc"]) / 2)
    one = sweep_seeds("logreg", bank, v, schedule, seeds=1, device="cpu")
    assert set(one) == {"test_acc", "train_acc"}
    np.testing.assert_array_equal(one["test_acc"], first["test_acc"])


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
