"""Stage `compare@<arch>`: this run's NADs, Fourier grid and NAD curve against the paper's published ones."""
import sys
from pathlib import Path

import numpy as np

from nads import compare, files, plots, predict, published
from nads.directions import fourier_directions
from stages.common import load_nads, stage

SHAPE = (1, 32, 32)  # the published NADs' input shape
SHOWN = (0, 1, 2, 3, 5, 10, 20, 50, 100, 300)


def main(arch: str) -> None:
    with stage("compare", f"compare@{arch}", arch=arch) as st:
        ref = published.load(Path("data/raw/published") / arch, arch)
        ours, vals = load_nads(arch)
        out = st.folder(Path("results/compare") / arch)
        metrics = {f"nads_agreement_top{k}": compare.subspace_agreement(ours, ref.nads, k)
                   for k in compare.AGREEMENT_K}
        for who, nads in (("", ours), ("published_", ref.nads)):
            metrics.update({f"{who}radius_{g}": r for g, r in compare.radius_by_group(nads, SHAPE).items()})
        plots.nad_rows({"this run": compare.sign_aligned(ours[:len(ref.nads)], ref.nads), "published": ref.nads},
                       SHAPE, SHOWN, out / "nads.png", title=f"{arch}: NADs of this run above the published ones")
        plots.spectra({"this run": vals[:len(ref.eigenvalues)], "published": ref.eigenvalues}, out / "spectra.png",
                      title=f"{arch}: gradient covariance spectra, normalised")
        figures = [out / "nads.png", out / "spectra.png"]

        sweep = Path("results/sweep") / arch
        grid = files.read_csv(sweep / "fourier" / "accuracy.csv")
        freqs = np.array([grid["k1"], grid["k2"]], dtype=int).T
        acc = np.array(grid["test_acc"], dtype=float)
        theirs = published.grid_at(ref.grid, freqs, SHAPE)
        metrics.update({f"grid_{k}": v for k, v in compare.paired(acc, theirs).items()})
        stride = files.read_json("data/synthetic/meta.json")["fourier_stride"]
        plots.grid_comparison(freqs, acc, theirs, SHAPE, stride, out / "grid.png",
                              title=f"{arch} on D(v), Fourier directions: this run and the paper")
        figures.append(out / "grid.png")
        tables = {name: {k: np.array(v, dtype=float) for k, v in files.read_csv(sweep / family / "accuracy.csv").items()}
                  for family, name in (("nad", "this run"), ("published-nad", "this run's training, published NADs"))}
        curves = {name: (t["index"].astype(int), t["test_acc"], plots.spread_of(t)) for name, t in tables.items()}
        if ref.curve is not None:  # (none for logistic regression)
            lookup = dict(zip(*ref.curve))
            for prefix, (name, t) in zip(("curve_", "control_curve_"), tables.items()):
                theirs = np.array([lookup.get(i, np.nan) for i in t["index"].astype(int)])
                metrics.update({f"{prefix}{k}": v for k, v in compare.paired(t["test_acc"], theirs).items()})
                if "test_acc_sd" in t:  # (one seed: no spread)
                    metrics.update({f"{prefix}{k}": v for k, v in
                                    compare.within_spread(t["test_acc"], t["test_acc_sd"], theirs).items()})
            curves["published"] = ref.curve
        metrics.update(predicted(ref, ours, vals))
        plots.curve_comparison(curves, out / "curve.png",
                               title=f"{arch} on D(u_i): this run, the control, and the paper")
        st.finish(metrics, out / "metrics.json", *figures, out / "curve.png")


def predicted(ref, ours, vals) -> dict:
    """Spearman and AUC of the predicted score (the default rule, as the predict stage) against the published accuracies:
    from the published NADs and from ours, on their grid (stride 2) and, with theirs, their curve."""
    freqs, v = fourier_directions(SHAPE, 2)
    acc = published.grid_at(ref.grid, freqs, SHAPE)
    ok = np.isfinite(acc)
    out = {}
    for who, (nads, lam) in (("published", (ref.nads, ref.eigenvalues)), ("ours", (ours, vals))):
        score = predict.scores(nads, lam, v[ok], SHAPE)
        out.update({f"predicted_{k}_grid_{who}_nads": x for k, x in predict.agreement(score, acc[ok]).items()})
    if ref.curve is not None:
        idx, acc = ref.curve
        score = predict.scores(ref.nads, ref.eigenvalues, ref.nads[idx], SHAPE)
        out.update({f"predicted_{k}_curve_published_nads": x for k, x in predict.agreement(score, acc).items()})
    return out


if __name__ == "__main__":
    main(sys.argv[1])
