"""Stage `compare@<arch>`: this run's NADs, Fourier grid and NAD curve against the paper's published ones."""

import sys
from pathlib import Path

import numpy as np

from nads import compare, files, predict, published
from nads.directions import fourier_directions
from stages.common import load_nads, stage

SHAPE = (1, 32, 32)  # the published NADs' input shape


def main(arch: str) -> None:
    with stage("compare", f"compare@{arch}", arch=arch) as st:
        ref = published.load(Path("data/raw/published") / arch, arch)
        ours, vals = load_nads(arch)
        out = st.folder(Path("results/compare") / arch)
        metrics = {f"nads_agreement_top{k}": compare.subspace_agreement(ours, ref.nads, k) for k in compare.AGREEMENT_K}
        for who, nads in (("", ours), ("published_", ref.nads)):
            metrics.update({f"{who}radius_{g}": r for g, r in compare.radius_by_group(nads, SHAPE).items()})

        sweep = Path("results/sweep") / arch
        grid = files.read_csv(sweep / "fourier" / "accuracy.csv")
        freqs = np.array([grid["k1"], grid["k2"]], dtype=int).T
        acc = np.array(grid["test_acc"], dtype=float)
        theirs = published.grid_at(ref.grid, freqs, SHAPE)
        metrics.update({f"grid_{k}": v for k, v in compare.paired(acc, theirs).items()})
        tables = {
            name: {k: np.array(v, dtype=float) for k, v in files.read_csv(sweep / family / "accuracy.csv").items()}
            for family, name in (("nad", "this run"), ("published-nad", "this run's training, published NADs"))
        }
        if ref.curve is not None:  # (none for logistic regression)
            lookup = dict(zip(*ref.curve))
            for prefix, (name, t) in zip(("curve_", "control_curve_"), tables.items()):
                theirs = np.array([lookup.get(i, np.nan) for i in t["index"].astype(int)])
                metrics.update({f"{prefix}{k}": v for k, v in compare.paired(t["test_acc"], theirs).items()})
                if "test_acc_sd" in t:  # (one seed: no spread)
                    metrics.update(
                        {
                            f"{prefix}{k}": v
                            for k, v in compare.within_spread(t["test_acc"], t["test_acc_sd"], theirs).items()
                        }
                    )
        metrics.update(predicted(ref, ours, vals))
        st.finish(metrics, out / "metrics.json")


def predicted(ref, ours, vals) -> dict:
    """Spearman and AUC of the predicted score (the default rule, as the predict stage) against the
    published accuracies: from the published NADs and from ours, on their grid (stride 2) and,
    with theirs, their curve."""
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
