"""The atlas page: every architecture of the run side by side (profiles/atlas.yaml).

Its NADs and their spectra, where their Fourier energy lies by index, what each network
learns on the Fourier grid and what its NADs predict, and the one directional bias its
family's design suggests, tested on the measured grid. Built from the stage outputs only,
by the report stage; its figures live here, not in nads/plots.py, so that changing the page
reruns no stage but the report.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from . import files, plots
from .compare import radius_by_group
from .models import get_model
from .pages import Claim, Section, floats, need, read_json, sweep
from .predict import LEARNED, agreement

SHOWN = (0, 1, 2, 3, 5, 10, 50, 100, 500)  # NADs drawn per architecture
GROUP = 32  # radial frequency: mean over blocks of this many NADs
GROUPS = 16  # ... over the first GROUP * GROUPS NADs
GAP = 10.0  # a spectral gap worth a claim: λ_(k-1) / λ_k above this


def patch_stride(arch: str, shape) -> int | None:
    """p when the network's first convolution maps non-overlapping p x p patches (kernel =
    stride = p > 1, a "patchify" stem: vision transformers, MLP-Mixers, ConvNeXt); else None."""
    with torch.random.fork_rng(devices=[]):
        model = get_model(arch, shape[0], 1, shape[1])
    conv = next((m for m in model.modules() if isinstance(m, torch.nn.Conv2d)), None)
    if conv is None or conv.kernel_size != conv.stride or conv.padding not in (0, (0, 0), "valid"):
        return None
    p = conv.stride[0]
    return p if p > 1 and conv.stride == (p, p) else None


def aliased(freqs: np.ndarray, shape, p: int) -> np.ndarray:
    """Fourier directions (k1, k2) != (0, 0) that repeat with period p along both axes (both
    frequencies multiples of H/p, W/p): every p x p patch then sees the same pattern."""
    _, h, w = shape
    k1, k2 = freqs[:, 0], freqs[:, 1]
    return (k1 % (h // p) == 0) & (k2 % (w // p) == 0) & ((k1 != 0) | (k2 != 0))


def gap_claim(indices, acc, k: int):
    """(claim text, evidence, supported): D(u_i) learned above the spectral gap, at chance below it."""
    above, below = acc[indices < k], acc[indices >= k]
    text = f"The spectrum's cliff after {k} NADs splits them: D(u_i) learned for i < {k}, at chance beyond"
    evidence = (
        f"test accuracy {np.nanmin(above):.3f} to {np.nanmax(above):.3f} at the {len(above)} swept i < {k}, "
        f"{np.nanmin(below):.3f} to {np.nanmax(below):.3f} at the {len(below)} others"
    )
    return text, evidence, bool(len(above) and len(below) and np.nanmin(above) > 0.8 and np.nanmax(below) < 0.6)


def patch_claim(arch: str, freqs, acc, shape, p: int):
    """(claim text, evidence, supported) for a patch-p network, as pooling makes LeNet fail at ±8."""
    on = aliased(freqs, shape, p)
    a, b = np.nanmean(acc[on]), np.nanmean(acc[~on])
    text = (
        f"{arch} (patch-{p} stem) fails on the frequencies that are multiples of {shape[1] // p} "
        f"(every patch sees the same pattern), as pooling makes LeNet fail at ±8"
    )
    evidence = (
        f"mean test accuracy {a:.3f} at the {int(on.sum())} such directions of the grid, "
        f"{b:.3f} at the other {int((~on).sum())}"
    )
    return text, evidence, bool(a < 0.6 and b - a > 0.1)


def aliased_energy(patterns: np.ndarray, shape, p: int) -> float:
    """The fraction of the patterns' total Fourier energy on the frequencies `aliased` names
    (a random pattern puts (p*p - 1)/(H*W) there: 1.5 % for p = 4 on 32x32)."""
    c, h, w = shape
    energy = (np.abs(np.fft.fft2(patterns.reshape(-1, c, h, w).astype(np.float64))) ** 2).sum(axis=(0, 1))
    k1, k2 = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    on = aliased(np.stack([k1.ravel(), k2.ravel()], 1), shape, p).reshape(h, w)
    return float(energy[on].sum() / energy.sum())


def spectral_gap(eigenvalues: np.ndarray, rank: int) -> tuple[int, float]:
    """(k, λ_{k-1} / λ_k) at the largest drop between consecutive eigenvalues: k NADs above it.
    Searched over the first 90 % of the estimate's rank (its last eigenvalues are rounding noise)."""
    vals = np.asarray(eigenvalues, dtype=np.float64)[: max(2, int(0.9 * rank))]
    ratio = vals[:-1] / np.maximum(vals[1:], np.finfo(float).tiny)
    i = int(np.argmax(ratio))
    return i + 1, float(ratio[i])


def radial_profile(nads: np.ndarray, shape) -> np.ndarray:
    """Mean radial frequency |k| of the NADs in consecutive blocks of GROUP indices."""
    blocks = [(a, a + GROUP) for a in range(0, min(len(nads), GROUP * GROUPS) - GROUP + 1, GROUP)]
    return np.array(list(radius_by_group(nads, shape, blocks).values()))


def sections(root: Path, archs, out: Path) -> list:
    """The atlas page's sections (nads.pages.Section), its figures written into `out`."""
    meta = files.read_json(need(root / "data/synthetic/meta.json", "synthetic"))
    shape, stride = tuple(meta["input_shape"]), meta["fourier_stride"]
    nads, vals, per_arch = {}, {}, []
    for arch in archs.nads:
        d = root / "results/nads" / arch
        nads[arch] = files.load_npy(need(d / "nads.npy", f"nads@{arch}"), f"dvc repro nads@{arch}")
        vals[arch] = files.load_npy(need(d / "eigenvalues.npy", f"nads@{arch}"), f"dvc repro nads@{arch}")
    grids, curves = {}, {}
    for arch in archs.nads:
        m = read_json(root / "results/nads" / arch / "metrics.json", f"nads@{arch}")
        p = patch_stride(arch, shape)
        s = Section(
            f"{arch}" + (f" (patch-{p} stem)" if p else ""),
            table={
                "networks": m["n_networks"],
                "top-10 agreement of two halves": m["half_agreement_top10"],
                "Spearman ρ(index, radial frequency), first NADs": m["index_frequency_spearman"],
                **{f"mean radial frequency |k|, NADs {g}": r for g, r in radius_by_group(nads[arch], shape).items()},
            },
        )
        k, drop = spectral_gap(vals[arch], m["rank"])
        s.table.update({"largest spectral gap λ_(k-1) / λ_k": drop, "NADs above it (k)": k})
        if arch in archs.sweep:
            _, grid, sm = sweep(root, arch, "fourier")
            _, curve, _ = sweep(root, arch, "nad")
            pm = read_json(root / "results/predict" / arch / "metrics.json", f"predict@{arch}")
            freqs = np.array([grid["k1"], grid["k2"]], dtype=int).T
            acc = floats(grid, "test_acc")
            score = floats(files.read_csv(root / "results/predict" / arch / "fourier.csv"), "score")
            grids[arch] = (freqs, acc, score)
            curves[arch] = (floats(curve, "index").astype(int), floats(curve, "test_acc"))
            rho = agreement(*curves[arch])["spearman"]  # of index and accuracy (NaN for a flat curve)
            s.table.update(
                {
                    "Fourier directions: mean test accuracy": sm["mean_test_acc"],
                    "Fourier directions: fraction above 0.9": sm["frac_test_acc_above_0.9"],
                    "NAD sweep: Spearman ρ(index, test accuracy)": float(rho),
                    "predicted vs measured, Spearman, Fourier": pm["spearman_fourier"],
                    "predicted vs measured, Spearman, NADs": pm["spearman_nad"],
                    f"predicted vs measured, AUC of learned (≥ {LEARNED}) over chance, Fourier": pm["auc_fourier"],
                    f"predicted vs measured, AUC of learned (≥ {LEARNED}) over chance, NADs": pm["auc_nad"],
                }
            )
            if drop > GAP:
                s.claims.append(Claim(*gap_claim(*curves[arch], k)))
            if p:
                s.claims.append(Claim(*patch_claim(arch, freqs, acc, shape, p)))
        if p:
            share, chance = aliased_energy(nads[arch][:10], shape, p), (p * p - 1) / (shape[1] * shape[2])
            s.claims.append(
                Claim(
                    f"Its top NADs are patch-periodic: the first 10 put more than half their "
                    f"Fourier energy on the multiples of {shape[1] // p}",
                    f"{share:.1%} of it (a random pattern: {chance:.1%})",
                    share > 0.5,
                )
            )
        per_arch.append(s)
    figs = _figures(nads, vals, grids, curves, shape, stride, out)
    side = Section(
        "The architectures side by side",
        figs,
        note="NAD images (rows: architectures); eigenvalue spectra; mean radial frequency of the NADs "
        f"per block of {GROUP} indices; measured test accuracy on the Fourier grid above the "
        "score its NADs predict (nads/predict.py); accuracy on D(u_i) against NAD index.",
    )
    return [side, *per_arch]


def _figures(nads, vals, grids, curves, shape, stride, out: Path) -> list:
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    paths = [out / f for f in ("nads.png", "spectra.png", "radial.png")]
    shown = [i for i in SHOWN if i < min(len(u) for u in nads.values())]
    plots.nad_rows(nads, shape, shown, paths[0], title="NADs u_i")
    plots.spectra(vals, paths[1], title="gradient covariance spectra")
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for arch, u in nads.items():
        prof = radial_profile(u, shape)
        ax.plot(GROUP * np.arange(len(prof)) + GROUP / 2, prof, "o-", ms=3, label=arch)
    ax.legend(fontsize=8)
    plots._label(ax, "NAD index i (block mean)", "mean radial frequency |k|", "where the NADs' energy lies")
    plots.save(fig, paths[2])
    if grids:
        path = out / "grids.png"
        fig, axes = plt.subplots(2, len(grids), figsize=(3.3 * len(grids), 6.2), squeeze=False, constrained_layout=True)
        for j, (arch, (freqs, acc, score)) in enumerate(grids.items()):
            im = plots._heatmap(
                axes[0, j],
                plots.centred_grid(freqs, acc, shape, stride),
                shape,
                stride,
                cmap="viridis",
                vmin=0.5,
                vmax=1.0,
            )
            axes[0, j].set_title(f"{arch}: measured", fontsize=9)
            plots._heatmap(
                axes[1, j],
                plots.centred_grid(freqs, np.clip(score, 1e-300, None), shape, stride),
                shape,
                stride,
                cmap="magma",
                norm=LogNorm(),
            )
            axes[1, j].set_title(f"{arch}: predicted", fontsize=9)
        fig.colorbar(im, ax=list(axes[0]), label="test accuracy", shrink=0.9)
        plots.save(fig, path)
        paths.append(path)
        path = out / "curves.png"
        fig, ax = plt.subplots(figsize=(5, 3.4))
        for arch, (indices, acc) in curves.items():
            ax.plot(indices, acc, "o-", ms=3, lw=1.2, label=arch)
        ax.legend(fontsize=8)
        plots._accuracy_by_index(ax, "accuracy on D(u_i), each on its own NADs")
        plots.save(fig, path)
        paths.append(path)
    return paths
