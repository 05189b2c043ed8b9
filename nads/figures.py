"""Every stage's figures, drawn from the data the stages wrote (never computed here).

The compute stages write arrays, tables and metrics; stage `figures` draws from them
into results/figures/, mirroring results/ (results/figures/nads/lenet/nads.png shows
results/nads/lenet/nads.npy). So a change of style (nads/plots.py, this module) redraws
in seconds and reruns no NAD estimate and no training. `Figures` records the sha256 of
every file it read: the run that logs the figures says which data they show.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import files, plots, published
from .compare import sign_aligned

NAD_INDICES = (0, 1, 2, 3, 4, 5, 10, 20, 50, 100, 200, 500, 1000)  # the NADs a nads.png shows
COMPARED = (0, 1, 2, 3, 5, 10, 20, 50, 100, 300)  # and a compare/nads.png
PUBLISHED_SHAPE = (1, 32, 32)


class Figures:
    """Draws into `out` from the stage outputs under `root`, noting what it read."""

    def __init__(self, root: Path, out: Path, params):
        self.root, self.out, self.params = Path(root), Path(out), params
        self.read: dict[str, str] = {}  # input file (relative to root) -> sha256
        self.drawn: list[Path] = []

    def _path(self, rel) -> Path:
        path = self.root / rel
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: run its stage first (dvc repro)")
        for f in sorted(path.rglob("*")) if path.is_dir() else [path]:
            if f.is_file():
                self.read[f.relative_to(self.root).as_posix()] = files.file_digest(f, "sha256")
        return path

    def npy(self, rel) -> np.ndarray:
        return files.load_npy(self._path(rel), f"dvc checkout {rel} (or dvc repro)")

    def json(self, rel) -> dict:
        return files.read_json(self._path(rel))

    def csv(self, rel) -> dict:
        return {k: np.array(v, dtype=float) for k, v in files.read_csv(self._path(rel)).items()}

    def target(self, rel) -> Path:
        path = self.out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        self.drawn.append(path)
        return path

    # ---------------------------------------------------------------- one method per stage
    def synthetic(self) -> None:
        freqs, directions = (
            self.npy("data/synthetic/fourier_freqs.npy"),
            self.npy("data/synthetic/fourier_directions.npy"),
        )
        shape = tuple(self.json("data/synthetic/meta.json")["input_shape"])
        show = np.linspace(0, len(freqs) - 1, min(8, len(freqs))).round().astype(int)
        plots.patterns_with_spectra(
            directions[show],
            shape,
            [f"k=({k1},{k2})" for k1, k2 in freqs[show]],
            self.target("synthetic/directions.png"),
            suptitle="Fourier directions (pixels above centred |FFT|^2)",
        )

    def nads(self, arch: str) -> None:
        d = f"results/nads/{arch}"
        nads, vals, m = self.npy(f"{d}/nads.npy"), self.npy(f"{d}/eigenvalues.npy"), self.json(f"{d}/metrics.json")
        shape = tuple(self.params["nads"].input_shape)
        shown = [i for i in NAD_INDICES if i < len(nads)]
        plots.patterns_with_spectra(
            nads[shown],
            shape,
            [f"u{i}" for i in shown],
            self.target(f"nads/{arch}/nads.png"),
            suptitle=f"NADs of {arch} ({m['estimator']}, {m['n_networks']} networks): pixels above centred |FFT|^2",
        )
        plots.spectrum(
            vals,
            self.target(f"nads/{arch}/spectrum.png"),
            rank=m["rank"],
            title=f"{arch}: gradient covariance spectrum ({m['n_networks']} networks)",
        )

    def sweep(self, arch: str, family: str) -> None:
        d = f"results/sweep/{arch}/{family}"
        t, m = self.csv(f"{d}/accuracy.csv"), self.json(f"{d}/metrics.json")
        meta = self.json("data/synthetic/meta.json")
        _, h, w = meta["input_shape"]
        seeds = m.get("seeds", 1)
        title = (
            f"{arch} on D({'v' if family == 'fourier' else 'u_i'}), {h}x{w}, {self.params['sweep'].epochs} "
            f"epochs, n={self.params['synthetic'].n_train}" + (f", mean of {seeds} seeds" if seeds > 1 else "")
        )
        if family == "fourier":
            freqs = np.array([t["k1"], t["k2"]], dtype=int).T
            plots.fourier_heatmap(
                freqs,
                t["test_acc"],
                tuple(meta["input_shape"]),
                meta["fourier_stride"],
                self.target(f"sweep/{arch}/fourier/heatmap.png"),
                title=title,
            )
        else:
            plots.nad_curve(
                t["index"].astype(int),
                t["test_acc"],
                t["eigenvalue"],
                self.target(f"sweep/{arch}/{family}/curve.png"),
                title=title,
                spread=plots.spread_of(t),
            )

    def predict(self, arch: str) -> None:
        d = f"results/predict/{arch}"
        grid, curve, m = self.csv(f"{d}/fourier.csv"), self.csv(f"{d}/nad.csv"), self.json(f"{d}/metrics.json")
        meta = self.json("data/synthetic/meta.json")
        freqs = np.array([grid["k1"], grid["k2"]], dtype=int).T
        plots.predicted_grid(
            freqs,
            grid["score"],
            grid["test_acc"],
            tuple(meta["input_shape"]),
            meta["fourier_stride"],
            self.target(f"predict/{arch}/grid.png"),
            title=f"{arch}: predicted ({m['rule']} rule) and measured, AUC {m['auc_fourier']:.2f}",
        )
        plots.predicted_curve(
            curve["index"].astype(int),
            curve["score"],
            curve["test_acc"],
            self.target(f"predict/{arch}/curve.png"),
            title=f"{arch} on D(u_i): AUC {m['auc_nad']:.2f}",
        )

    def cifar10(self) -> None:
        d = "data/cifar10"
        x, y = self.npy(f"{d}/x_train.npy"), self.npy(f"{d}/y_train.npy")
        plots.image_grid(x, y, tuple(self.json(f"{d}/classes.json")), self.target("cifar10/samples.png"))

    def poison(self, arch: str) -> None:
        t = files.read_csv(self._path(f"results/poison/{arch}/results.csv"))
        clean, rows = float(t["clean_test_acc"][0]), range(1, len(t["nad_index"]))
        plots.poison_curve(
            [int(t["nad_index"][i]) for i in rows],
            [float(t["clean_test_acc"][i]) for i in rows],
            clean,
            self.target(f"poison/{arch}/curve.png"),
            title=f"{arch}: CIFAR-10 with a carrier on NAD k (eps={self.params['poison'].epsilon})",
        )

    def flip(self, arch: str) -> None:
        m = self.json(f"results/flip/{arch}/metrics.json")
        plots.bars(
            {"original": m["original_test_acc"], "flipped NAD basis": m["flipped_test_acc"]},
            self.target(f"flip/{arch}/bars.png"),
            ylabel="CIFAR-10 test accuracy",
            title=f"{arch}: original vs flipped basis",
        )

    def compare(self, arch: str) -> None:
        ref = published.load(self._path(f"data/raw/published/{arch}"), arch)
        ours, vals = self.npy(f"results/nads/{arch}/nads.npy"), self.npy(f"results/nads/{arch}/eigenvalues.npy")
        out = f"compare/{arch}"
        plots.nad_rows(
            {"this run": sign_aligned(ours[: len(ref.nads)], ref.nads), "published": ref.nads},
            PUBLISHED_SHAPE,
            COMPARED,
            self.target(f"{out}/nads.png"),
            title=f"{arch}: NADs of this run above the published ones",
        )
        plots.spectra(
            {"this run": vals[: len(ref.eigenvalues)], "published": ref.eigenvalues},
            self.target(f"{out}/spectra.png"),
            title=f"{arch}: gradient covariance spectra, normalised",
        )
        sweep = f"results/sweep/{arch}"
        grid = self.csv(f"{sweep}/fourier/accuracy.csv")
        freqs = np.array([grid["k1"], grid["k2"]], dtype=int).T
        stride = self.json("data/synthetic/meta.json")["fourier_stride"]
        plots.grid_comparison(
            freqs,
            grid["test_acc"],
            published.grid_at(ref.grid, freqs, PUBLISHED_SHAPE),
            PUBLISHED_SHAPE,
            stride,
            self.target(f"{out}/grid.png"),
            title=f"{arch} on D(v), Fourier directions: this run and the paper",
        )
        curves = {}
        for family, name in (("nad", "this run"), ("published-nad", "this run's training, published NADs")):
            t = self.csv(f"{sweep}/{family}/accuracy.csv")
            curves[name] = (t["index"].astype(int), t["test_acc"], plots.spread_of(t))
        if ref.curve is not None:  # (none for logistic regression)
            curves["published"] = ref.curve
        plots.curve_comparison(
            curves, self.target(f"{out}/curve.png"), title=f"{arch} on D(u_i): this run, the control, and the paper"
        )


def draw_all(root: Path, out: Path, params) -> Figures:
    """Every figure of the stages params.yaml runs (its `archs`)."""
    f = Figures(root, out, params)
    archs = params["archs"]
    f.synthetic()
    f.cifar10()
    for arch in archs.nads:
        f.nads(arch)
    for arch in archs.sweep:
        for family in ("fourier", "nad"):
            f.sweep(arch, family)
        f.predict(arch)
    for arch in archs.poison:
        f.poison(arch)
    for arch in archs.flip:
        f.flip(arch)
    for arch in archs.compare:
        f.sweep(arch, "published-nad")
        f.compare(arch)
    return f
