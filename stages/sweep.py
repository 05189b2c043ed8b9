"""Stage `sweep-<family>@<arch>`: accuracy of `arch` on D(v) for each direction of a family.

Families: fourier (the Fourier grid), nad (this run's NADs u_i) and published-nad
(the paper's published NADs: the control that tells a gap in the NAD curve due to
the estimate from one due to the training)."""
import sys
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from nads import config, files, plots, published
from nads.synthetic import load_bank
from nads.sweep import sweep_seeds
from stages.common import check_model, load_nads, stage


def main(arch: str, family: str) -> None:
    with stage("sweep", f"sweep-{family}@{arch}", arch=arch, family=family) as st:
        cfg = st.cfg
        bank, freqs, fourier = load_bank("data/synthetic")
        c, h, _ = bank.shape
        check_model(arch, c, 2, h, "sweep")
        out = st.folder(Path("results/sweep") / arch / family)
        seeds = 1
        if family == "fourier":
            directions, columns = fourier, {"k1": freqs[:, 0], "k2": freqs[:, 1]}
        else:
            seeds = st.params["nad_sweep"].seeds
            nads, vals = nad_source(arch, family)
            indices = np.array(st.params["nad_sweep"].indices)
            if indices.max() >= len(nads):
                raise config.ParamError(f"nad_sweep.indices = {indices.tolist()}: {arch} has {len(nads)} NADs "
                                        f"(indices 0..{len(nads) - 1})")
            directions, columns = nads[indices], {"index": indices, "eigenvalue": vals[indices]}
        acc = sweep_seeds(arch, bank, directions, cfg.schedule(), seeds, st.params.device,
                          st.params.models_per_batch or None, st.executor, progress=f"sweep {arch} {family}",
                          log=st.log_step)
        files.write_csv(out / "accuracy.csv", {**columns, **acc})

        test = acc["test_acc"]
        metrics = {"n_directions": len(test), "mean_test_acc": float(np.nanmean(test)),
                   "frac_test_acc_above_0.9": float(np.mean(test > 0.9)), "n_diverged": int(np.isnan(test).sum()),
                   "seeds": seeds}
        if seeds > 1:
            metrics["mean_seed_sd"] = float(np.nanmean(acc["test_acc_sd"]))
        title = (f"{arch} on D({'v' if family == 'fourier' else 'u_i'}), {bank.shape[1]}x{bank.shape[2]}, "
                 f"{cfg.epochs} epochs, n={len(bank.y_train)}" + (f", mean of {seeds} seeds" if seeds > 1 else ""))
        if family == "fourier":
            figure = out / "heatmap.png"
            stride = files.read_json("data/synthetic/meta.json")["fourier_stride"]
            plots.fourier_heatmap(freqs, test, bank.shape, stride, figure, title=title)
        else:
            figure = out / "curve.png"
            metrics["spearman_index_vs_test_acc"] = float(spearmanr(indices, test, nan_policy="omit").statistic)
            plots.nad_curve(indices, test, vals[indices], figure, title=title, spread=plots.spread_of(acc))
        st.finish(metrics, out / "metrics.json", figure, out / "accuracy.csv")


def nad_source(arch: str, family: str) -> tuple:
    """(NADs, eigenvalues) a NAD-family sweep trains on."""
    if family == "nad":
        return load_nads(arch)
    ref = published.load(Path("data/raw/published") / arch, arch)
    return ref.nads, ref.eigenvalues


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
