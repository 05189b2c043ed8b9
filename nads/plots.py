"""Every figure of the project. Headless (Agg), written atomically."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from . import files  # noqa: E402


def save(fig, path) -> None:
    with files.atomic_path(path) as tmp:
        # No "Software: matplotlib version ..." chunk: a figure's bytes are its pixels only.
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)


def centred_energy(pattern: np.ndarray) -> np.ndarray:
    """|FFT|^2 of a (C, H, W) pattern summed over channels, DC in the centre."""
    spectrum = np.abs(np.fft.fft2(pattern, axes=(-2, -1))) ** 2
    return np.fft.fftshift(spectrum.sum(axis=0))


def patterns_with_spectra(patterns, shape, titles, path, suptitle: str = "", per_row: int = 7) -> None:
    """Each pattern in pixel space above its centred Fourier energy, `per_row` patterns to a
    row pair: a strip of 13 would be shrunk to the page's width until its labels are ~6 px."""
    n = len(patterns)
    pairs = -(-n // per_row)
    cols = -(-n // pairs)  # rows as even as they can be: 13 as 7 + 6, 8 as 4 + 4
    fig, axes = plt.subplots(2 * pairs, cols, figsize=(1.45 * cols, 3.3 * pairs), squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    for j, (p, title) in enumerate(zip(patterns, titles)):
        top, bottom = axes[2 * (j // cols), j % cols], axes[2 * (j // cols) + 1, j % cols]
        img = np.asarray(p, dtype=np.float64).reshape(shape)
        pixels = img.mean(axis=0) if shape[0] > 1 else img[0]
        lim = np.abs(pixels).max() or 1.0
        top.imshow(pixels, cmap="RdBu_r", vmin=-lim, vmax=lim)
        top.set_title(title, fontsize=10)
        bottom.imshow(centred_energy(img), cmap="viridis")
    for c in range(n - (pairs - 1) * cols, cols):  # the last pair's empty places
        axes[-2, c].set_visible(False)
        axes[-1, c].set_visible(False)
    for r in range(pairs):
        axes[2 * r, 0].set_ylabel("pixels", fontsize=10)
        axes[2 * r + 1, 0].set_ylabel("|FFT|$^2$", fontsize=10)
    if suptitle:
        fig.suptitle(suptitle, fontsize=11)
    save(fig, path)


def spectrum(eigenvalues, path, title: str = "", rank: int | None = None) -> None:
    """Eigenvalues of the gradient covariance against NAD index, log scale."""
    vals = np.asarray(eigenvalues, dtype=np.float64)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    shown = vals[: rank or len(vals)]
    ax.semilogy(np.arange(len(shown)), np.clip(shown, 1e-300, None), lw=1.5)
    _label(ax, "NAD index i", "eigenvalue $\\lambda_i$", title, which="both")
    save(fig, path)


def _label(ax, xlabel: str, ylabel: str, title: str, which: str = "major") -> None:
    """The house style of a line plot: axis labels, a light grid, a small title."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, which=which)
    ax.set_title(title, fontsize=9)


def centred_grid(freqs, accuracy, shape, stride: int) -> np.ndarray:
    """Values of Fourier directions on the centred spectrum: each (k1, k2) at its cell and
    at its mirror (-k1, -k2), DC in the centre, one cell per direction of the stride-s grid;
    NaN where no direction was measured."""
    from .directions import centred_cells

    _, h, w = shape
    grid = np.full((h // stride, w // stride), np.nan)
    for (k1, k2), acc in zip(freqs, accuracy):
        for r, c in centred_cells(int(k1), int(k2), h, w):
            grid[r // stride, c // stride] = acc
    return grid


def _heatmap(ax, grid, shape, stride, **style):
    _, h, w = shape
    extent = (-w // 2 - stride / 2, w // 2 - stride / 2, h // 2 - stride / 2, -h // 2 - stride / 2)
    ax.set_xlabel("$k_2$ (cycles / image)")
    ax.set_ylabel("$k_1$ (cycles / image)")
    return ax.imshow(grid, extent=extent, interpolation="nearest", **style)


def fourier_heatmap(freqs, accuracy, shape, stride: int, path, title: str = "") -> np.ndarray:
    """Test accuracy of each Fourier direction on the full centred spectrum; returns the grid drawn."""
    grid = centred_grid(freqs, accuracy, shape, stride)
    fig, ax = plt.subplots(figsize=(4.2, 3.6))
    im = _heatmap(ax, grid, shape, stride, cmap="viridis", vmin=0.5, vmax=1.0)
    fig.colorbar(im, ax=ax, label="test accuracy")
    ax.set_title(title, fontsize=9)
    save(fig, path)
    return grid


def grid_comparison(freqs, ours, published, shape, stride: int, path, title: str = "") -> None:
    """This run's and the published accuracies on one colour scale, and their difference."""
    grids = [centred_grid(freqs, a, shape, stride) for a in (ours, published, np.subtract(ours, published))]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), constrained_layout=True)
    for ax, grid, name in zip(axes[:2], grids, ("this run", "published")):
        im = _heatmap(ax, grid, shape, stride, cmap="viridis", vmin=0.5, vmax=1.0)
        ax.set_title(name, fontsize=9)
    fig.colorbar(im, ax=list(axes[:2]), label="test accuracy", shrink=0.9)
    im = _heatmap(axes[2], grids[2], shape, stride, cmap="RdBu", vmin=-0.5, vmax=0.5)
    axes[2].set_title("this run − published", fontsize=9)
    fig.colorbar(im, ax=axes[2], label="difference", shrink=0.9)
    fig.suptitle(title, fontsize=10)
    save(fig, path)


def predicted_grid(freqs, predicted, measured, shape, stride: int, path, title: str = "") -> None:
    """Predicted scores (log scale) beside the measured accuracies of the Fourier directions."""
    from matplotlib.colors import LogNorm

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8), constrained_layout=True)
    score = centred_grid(freqs, np.clip(predicted, 1e-300, None), shape, stride)
    im = _heatmap(axes[0], score, shape, stride, cmap="magma", norm=LogNorm())
    fig.colorbar(im, ax=axes[0], label="predicted score")
    axes[0].set_title("predicted from the NADs", fontsize=9)
    im = _heatmap(
        axes[1], centred_grid(freqs, measured, shape, stride), shape, stride, cmap="viridis", vmin=0.5, vmax=1.0
    )
    fig.colorbar(im, ax=axes[1], label="test accuracy")
    axes[1].set_title("measured (sweep)", fontsize=9)
    fig.suptitle(title, fontsize=10)
    save(fig, path)


def predicted_curve(indices, predicted, measured, path, title: str = "") -> None:
    """Measured accuracy on D(u_i) against NAD index, with the predicted score on a second (log) axis."""
    fig, ax = plt.subplots(figsize=(5, 3.4))
    ax.plot(indices, measured, "o-", ms=4, label="measured")
    _accuracy_by_index(ax, title)
    right = ax.twinx()
    right.plot(indices, np.clip(predicted, 1e-300, None), "s--", color="tab:red", ms=3, lw=1, label="predicted")
    right.set_yscale("log")
    right.set_ylabel("predicted score", color="tab:red")
    fig.legend(loc="upper right", fontsize=8)
    save(fig, path)


def nad_rows(rows: dict, shape, indices, path, title: str = "") -> None:
    """NADs u_i (pixel space) of several estimates, one row each: {label: (D', D) array}."""
    fig, axes = plt.subplots(len(rows), len(indices), figsize=(1.3 * len(indices), 1.45 * len(rows)), squeeze=False)
    for r, (label, nads) in enumerate(rows.items()):
        for j, i in enumerate(indices):
            img = np.asarray(nads[i], dtype=np.float64).reshape(shape).mean(axis=0)
            lim = np.abs(img).max() or 1.0
            axes[r, j].imshow(img, cmap="RdBu_r", vmin=-lim, vmax=lim)
            axes[r, j].set_xticks([])
            axes[r, j].set_yticks([])
            if r == 0:
                axes[r, j].set_title(f"u{i}", fontsize=9)
        axes[r, 0].set_ylabel(label, fontsize=9)
    fig.suptitle(title, fontsize=9)
    save(fig, path)


def spectra(named: dict, path, title: str = "") -> None:
    """Eigenvalue spectra, each divided by its largest, on one log plot: {label: eigenvalues}."""
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for label, vals in named.items():
        vals = np.asarray(vals, dtype=np.float64)
        ax.plot(np.arange(len(vals)), vals / vals[0], label=label, lw=1.2)
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    _label(ax, "NAD index i", "$\\lambda_i / \\lambda_0$", title)
    save(fig, path)


def spread_of(columns: dict):
    """(min, max) over seeds of a sweep's columns (nads.sweep.sweep_seeds), None for one seed."""
    return (columns["test_acc_min"], columns["test_acc_max"]) if "test_acc_min" in columns else None


def curve_comparison(curves: dict, path, title: str = "") -> None:
    """Test accuracy on D(u_i) against NAD index: {label: (indices, accuracies[, (min, max) over seeds])};
    "published" as a line, a spread as a band."""
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for j, (label, curve) in enumerate(curves.items()):
        style: dict = dict(color="0.6", lw=1) if label == "published" else dict(marker="o", ms=5 - 2 * j, lw=1.2)
        (line,) = ax.plot(*curve[:2], label=label, **style)
        if len(curve) > 2 and curve[2] is not None:
            ax.fill_between(curve[0], *curve[2], color=line.get_color(), alpha=0.2, lw=0)
    ax.legend(fontsize=8)
    _accuracy_by_index(ax, title)
    save(fig, path)


def _index_axis(ax) -> None:
    """NAD indices (>= 0, already plotted) on a log x axis that starts just left of 0 and ends a
    factor 2 past the last index: no negative ticks, no marker cut at either end."""
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlim(-0.5, 2 * max(ax.dataLim.x1, 1.0))


def _accuracy_by_index(ax, title: str) -> None:
    """Axes of test accuracy on D(u_i) against NAD index i (log x, chance marked), after the data."""
    _index_axis(ax)
    ax.set_ylim(0.45, 1.02)
    ax.axhline(0.5, color="k", ls=":", lw=1)
    _label(ax, "NAD index i", "test accuracy on D($u_i$)", title)


def nad_curve(indices, accuracy, eigenvalues, path, title: str = "", spread=None) -> None:
    """Test accuracy on D(u_i) against NAD index i (log x), coloured by eigenvalue;
    spread: (min, max) over seeds, drawn as a band."""
    from matplotlib.colors import LogNorm

    fig, ax = plt.subplots(figsize=(5, 3.4))
    ax.plot(indices, accuracy, color="0.75", lw=1, zorder=1)
    if spread is not None:
        ax.fill_between(indices, *spread, color="0.85", lw=0, zorder=0, label="min-max over seeds")
        ax.legend(fontsize=8)
    vals = np.clip(np.asarray(eigenvalues, dtype=np.float64), 1e-300, None)
    sc = ax.scatter(indices, accuracy, c=vals, cmap="plasma", norm=LogNorm(), zorder=2, s=28)
    fig.colorbar(sc, ax=ax, label="eigenvalue $\\lambda_i$")
    _accuracy_by_index(ax, title)
    save(fig, path)


def image_grid(images, labels, classes, path, per_class: int = 8) -> None:
    """The first `per_class` images (N, H, W, 3) uint8 of every class, one row per class."""
    fig, axes = plt.subplots(len(classes), per_class, figsize=(per_class * 0.8, len(classes) * 0.85))
    for c, name in enumerate(classes):
        for j, i in enumerate(np.flatnonzero(labels == c)[:per_class]):
            axes[c, j].imshow(images[i])
        for ax in axes[c]:
            ax.axis("off")
        axes[c, 0].set_title(name, fontsize=7, loc="left")
    save(fig, path)


def poison_curve(indices, accuracy, baseline: float, path, title: str = "") -> None:
    """Clean test accuracy against the NAD index of the carrier (log x), baseline as a line."""
    fig, ax = plt.subplots(figsize=(5, 3.4))
    ax.plot(indices, accuracy, "o-", label="carrier on NAD k")
    ax.axhline(baseline, color="k", ls="--", lw=1, label="clean training set")
    _index_axis(ax)
    ax.legend(fontsize=8)
    _label(ax, "NAD index k of the carrier", "clean test accuracy", title)
    save(fig, path)


def bars(values: dict, path, ylabel: str = "", title: str = "") -> None:
    fig, ax = plt.subplots(figsize=(3.6, 3.2))
    names = list(values)
    ax.bar(names, [values[n] for n in names], color=["tab:blue", "tab:orange", "tab:green"][: len(names)])
    for i, n in enumerate(names):
        ax.text(i, values[n], f"{values[n]:.3f}", ha="center", va="bottom", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=9)
    save(fig, path)
