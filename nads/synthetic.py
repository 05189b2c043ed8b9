"""The linearly separable distribution D(v) and its shared noise bank.

x = eps * y * v + w,   y in {-1, +1} balanced,   w ~ N(0, sigma^2 (I - v v^T)).

The noise is drawn once as z ~ N(0, I) and shared by every direction (common
random numbers). With w = sigma * (z - (z.v) v), each direction's data set is
a rank-one change of the same bank:  x = sigma * z + (eps * y - sigma * z.v) v.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import files
from .config import Synthetic
from .directions import fourier_directions
from .errors import ParamError


@dataclass(frozen=True)
class NoiseBank:
    """Standard-normal noise z (n, D) float32 and labels y (n,) in {-1, +1}, per split."""

    z_train: np.ndarray
    y_train: np.ndarray
    z_test: np.ndarray
    y_test: np.ndarray
    epsilon: float
    sigma: float
    shape: tuple
    seed: int = 0

    def replicate(self, r: int) -> "NoiseBank":
        """The bank of replicate r: this one for r = 0, else the bank of seed + r (same
        distribution and sizes, independent noise)."""
        if r == 0:
            return self
        return draw_noise_bank(
            Synthetic(
                input_shape=self.shape,
                epsilon=self.epsilon,
                sigma=self.sigma,
                n_train=len(self.y_train),
                n_test=len(self.y_test),
                seed=self.seed + r,
            )
        )

    def split(self, name: str):
        if name not in ("train", "test"):
            raise ValueError(f"split = {name!r}: allowed: train, test")
        return (self.z_train, self.y_train) if name == "train" else (self.z_test, self.y_test)

    def samples(self, v, split: str = "train"):
        """(x (n, C, H, W), y (n,)) of D(v) for a unit vector v."""
        z, y = self.split(split)
        x = directional_samples(z, y.astype(z.dtype), v, self.epsilon, self.sigma)
        return x.reshape(-1, *self.shape), y


def directional_samples(z, y, v, epsilon: float, sigma: float):
    """x = sigma*z + (eps*y - sigma*(z.v)) v, for numpy arrays or torch tensors alike.

    z (n, D), y (n,) in {-1, +1} (same float dtype as z), v (D,) unit norm:
    returns (n, D). With K directions v (K, D): returns (K, n, D), every
    direction's data set built from the same noise. The projection on v is
    exactly eps*y; the orthogonal part is sigma times the orthogonal part of z.
    """
    many = v[None] if v.ndim == 1 else v
    coef = epsilon * y[None, :] - sigma * (many @ z.T)  # (K, n)
    x = sigma * z[None] + coef[..., None] * many[:, None, :]  # (K, n, D)
    return x[0] if v.ndim == 1 else x


def _labels(rng: np.random.Generator, n: int) -> np.ndarray:
    y = np.where(np.arange(n) < n // 2, 1, -1).astype(np.int8)
    return rng.permutation(y)


def draw_noise_bank(cfg: Synthetic) -> NoiseBank:
    """The seeded bank of cfg. Train and test use separate streams, so changing
    n_test does not change the training noise (and vice versa)."""
    dim = int(np.prod(cfg.input_shape))
    arrays = {}
    for stream, (split, n) in enumerate((("train", cfg.n_train), ("test", cfg.n_test))):
        rng = np.random.default_rng([cfg.seed, stream])
        arrays[f"z_{split}"] = rng.standard_normal((n, dim), dtype=np.float32)
        arrays[f"y_{split}"] = _labels(rng, n)
    return NoiseBank(**arrays, epsilon=cfg.epsilon, sigma=cfg.sigma, shape=tuple(cfg.input_shape), seed=cfg.seed)


def write_bank(out_dir, cfg: Synthetic):
    """Write the Fourier directions and the noise bank of cfg to out_dir, atomically.

    Returns (metrics: counts and empirical checks, freqs, directions).
    """
    _check_fits(cfg)
    freqs, directions = fourier_directions(cfg.input_shape, cfg.fourier_stride)
    bank = draw_noise_bank(cfg)
    with files.atomic_path(out_dir) as tmp:
        tmp.mkdir()
        files.save_npy(tmp / "fourier_freqs.npy", freqs)
        files.save_npy(tmp / "fourier_directions.npy", directions)
        for split in ("train", "test"):
            z, y = bank.split(split)
            files.save_npy(tmp / f"noise_{split}.npy", z)
            files.save_npy(tmp / f"labels_{split}.npy", y)
        files.write_json(
            tmp / "meta.json",
            {
                "input_shape": list(cfg.input_shape),
                "epsilon": cfg.epsilon,
                "sigma": cfg.sigma,
                "n_train": cfg.n_train,
                "n_test": cfg.n_test,
                "seed": cfg.seed,
                "fourier_stride": cfg.fourier_stride,
                "n_fourier": len(freqs),
            },
        )
    # Check the construction on the first Fourier direction: projection is
    # exactly +-eps, orthogonal noise has standard deviation sigma.
    x, y = bank.samples(directions[0], "train")
    x = x.reshape(len(y), -1)
    proj = x @ directions[0]
    resid = x - proj[:, None] * directions[0][None, :]
    dim = x.shape[1]
    return (
        {
            "n_fourier_directions": int(len(freqs)),
            "n_train": cfg.n_train,
            "n_test": cfg.n_test,
            "max_projection_error": float(np.abs(proj - cfg.epsilon * y).max()),
            "noise_std_orthogonal": float(np.sqrt((resid.astype(np.float64) ** 2).sum() / (len(y) * (dim - 1)))),
            "label_balance_train": float((y > 0).mean()),
        },
        freqs,
        directions,
    )


def _check_fits(cfg: Synthetic) -> None:
    """Refuse, before allocating, a bank this machine's memory cannot hold while it is checked."""
    dim = int(np.prod(cfg.input_shape))
    need = (cfg.n_train + cfg.n_test) * dim * 4 + cfg.n_train * dim * 16  # the bank; the check's x and residuals
    try:
        meminfo = Path("/proc/meminfo").read_text()
        available = int(meminfo.split("MemAvailable:")[1].split()[0]) * 1024
    except (OSError, IndexError, ValueError):
        return  # not Linux: numpy's own error will say it
    if need > available:
        raise ParamError(
            f"synthetic.n_train + synthetic.n_test = {cfg.n_train + cfg.n_test} samples of {dim} floats need "
            f"{need / 2**30:.1f} GiB of memory; {available / 2**30:.1f} GiB is available here: lower them"
        )


def load_bank(data_dir) -> tuple[NoiseBank, np.ndarray, np.ndarray]:
    """(noise bank, Fourier freqs, Fourier directions) written by `write_bank`."""
    data_dir = Path(data_dir)
    meta_path = data_dir / "meta.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{data_dir}: no synthetic data bank here; run `dvc repro synthetic` first")
    meta = files.read_json(meta_path)

    def load(name):
        return files.load_npy(data_dir / f"{name}.npy", f"dvc checkout {data_dir} (or dvc repro -f synthetic)")

    arrays = {f"{k}_{s}": load(f"{n}_{s}") for k, n in (("z", "noise"), ("y", "labels")) for s in ("train", "test")}
    bank = NoiseBank(
        **arrays, epsilon=meta["epsilon"], sigma=meta["sigma"], shape=tuple(meta["input_shape"]), seed=meta["seed"]
    )
    return bank, load("fourier_freqs"), load("fourier_directions")
