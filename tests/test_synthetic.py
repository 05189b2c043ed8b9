import hashlib

import numpy as np
import pytest
import torch

from nads.config import Synthetic
from nads.directions import fourier_directions, random_directions
from nads.synthetic import directional_samples, draw_noise_bank, load_bank, write_bank

CFG = Synthetic(input_shape=(1, 16, 16), epsilon=1.0, sigma=3.0, n_train=4000, n_test=1000, fourier_stride=4, seed=3)


@pytest.fixture(scope="module")
def bank():
    return draw_noise_bank(CFG)


@pytest.mark.parametrize("seed", [0, 1])
def test_projection_on_v_is_exactly_plus_minus_epsilon(bank, seed):
    v = random_directions(1, 256, seed)[0]
    x, y = bank.samples(v, "train")
    assert x.shape == (4000, 1, 16, 16)
    proj = x.reshape(4000, -1) @ v
    np.testing.assert_allclose(proj, CFG.epsilon * y, atol=2e-5)


def test_orthogonal_noise_has_variance_sigma_squared(bank):
    v = random_directions(1, 256, 7)[0]
    x, _ = bank.samples(v, "test")
    x = x.reshape(len(x), -1).astype(np.float64)
    resid = x - np.outer(x @ v, v)
    # Covariance of the orthogonal part: sigma^2 (I - v v^T); check its trace and a few entries.
    var = (resid**2).sum() / (len(x) * 255)
    assert var == pytest.approx(9.0, rel=0.01)
    cov = resid.T @ resid / len(x)
    np.testing.assert_allclose(np.diag(cov).mean(), 9.0 * (1 - (v.astype(np.float64) ** 2).mean()), rtol=0.01)
    assert np.abs(cov - np.diag(np.diag(cov))).max() < 1.5  # off-diagonals: sampling noise only


def test_labels_balanced_and_splits_independent(bank):
    assert (bank.y_train == 1).sum() == (bank.y_train == -1).sum() == 2000
    assert (bank.y_test == 1).sum() == 500
    assert not np.array_equal(bank.z_train[:1000], bank.z_test)
    # Changing the test size leaves the training noise as it was.
    other = draw_noise_bank(Synthetic(**{**CFG.to_dict(), "n_test": 10}))
    np.testing.assert_array_equal(other.z_train, bank.z_train)


def test_many_directions_at_once_equal_one_at_a_time(bank):
    v = random_directions(3, 256, 2)
    y = bank.y_test.astype(np.float32)
    many = directional_samples(bank.z_test, y, v, 1.0, 3.0)
    assert many.shape == (3, 1000, 256)
    for k in range(3):
        np.testing.assert_allclose(many[k], directional_samples(bank.z_test, y, v[k], 1.0, 3.0), atol=1e-5)


def test_numpy_and_torch_give_the_same_samples(bank):
    v = random_directions(1, 256, 1)[0]
    xn = directional_samples(bank.z_train, bank.y_train.astype(np.float32), v, 1.0, 3.0)
    xt = directional_samples(
        torch.from_numpy(bank.z_train), torch.from_numpy(bank.y_train.astype(np.float32)), torch.from_numpy(v), 1.0, 3.0
    )
    np.testing.assert_allclose(xn, xt.numpy(), atol=1e-5)


def _digest(d):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.iterdir())}


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    write_bank(tmp_path / "a", CFG)
    write_bank(tmp_path / "b", CFG)
    write_bank(tmp_path / "c", Synthetic(**{**CFG.to_dict(), "seed": 4}))
    a, b, c = (_digest(tmp_path / n) for n in "abc")
    assert a == b
    assert a["noise_train.npy"] != c["noise_train.npy"]
    assert a["fourier_directions.npy"] == c["fourier_directions.npy"]
    bank, freqs, dirs = load_bank(tmp_path / "a")
    np.testing.assert_array_equal(dirs, fourier_directions((1, 16, 16), 4)[1])
    assert bank.epsilon == 1.0 and bank.sigma == 3.0 and bank.shape == (1, 16, 16)


def test_interrupted_write_keeps_previous_bank(tmp_path, monkeypatch):
    write_bank(tmp_path / "a", CFG)
    before = _digest(tmp_path / "a")

    import nads.files

    real, calls = nads.files.save_npy, []

    def dies_on_third_file(path, array):  # a Ctrl-C in the middle of writing
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt
        real(path, array)

    monkeypatch.setattr(nads.files, "save_npy", dies_on_third_file)
    with pytest.raises(KeyboardInterrupt):
        write_bank(tmp_path / "a", Synthetic(**{**CFG.to_dict(), "seed": 9}))
    assert len(calls) == 3
    assert _digest(tmp_path / "a") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]  # no temporary left behind


def test_a_bank_that_cannot_fit_in_memory_is_refused_before_allocating(tmp_path):
    from nads.errors import ParamError
    from nads.synthetic import write_bank

    with pytest.raises(
        ParamError,
        match=r"^synthetic.n_train \+ synthetic.n_test = 1000010000 samples of 1024 "
        r"floats need 19073.5 GiB of memory; [\d.]+ GiB is available here: lower them$",
    ):
        write_bank(tmp_path / "bank", Synthetic.parse({"n_train": 10**9}))
    assert not (tmp_path / "bank").exists()
