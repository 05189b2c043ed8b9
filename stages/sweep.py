"""Stage `sweep-<family>@<arch>`: accuracy of `arch` on D(v) for each direction of a family.

Families: fourier (the Fourier grid), nad (this run's NADs u_i) and published-nad
(the paper's published NADs: the control that tells a gap in the NAD curve due to
the estimate from one due to the training)."""

import sys
from pathlib import Path

import numpy as np

from nads import errors, files, predict, published
from nads.executor import executor_for
from nads.sweep import sweep_seeds
from nads.synthetic import load_bank
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
                raise errors.ParamError(
                    f"nad_sweep.indices = {indices.tolist()}: {arch} has {len(nads)} NADs (indices 0..{len(nads) - 1})"
                )
            directions, columns = nads[indices], {"index": indices, "eigenvalue": vals[indices]}
        acc = sweep_seeds(
            arch,
            bank,
            directions,
            cfg.schedule(),
            seeds,
            st.params.device,
            st.params.models_per_batch or None,
            executor_for(st.params, keep=st.partial),
            progress=f"sweep {arch} {family}",
            log=st.log_step,
        )
        files.write_csv(out / "accuracy.csv", {**columns, **acc})

        test = acc["test_acc"]
        metrics = {
            "n_directions": len(test),
            "mean_test_acc": float(np.nanmean(test)),
            "frac_test_acc_above_0.9": float(np.mean(test > 0.9)),
            "n_diverged": int(np.isnan(test).sum()),
            "seeds": seeds,
        }
        if seeds > 1:
            metrics["mean_seed_sd"] = float(np.nanmean(acc["test_acc_sd"]))
        if family != "fourier":
            metrics.update(nad_curve_metrics(indices, acc))
        st.finish(metrics, out / "metrics.json", out / "accuracy.csv")


def nad_curve_metrics(indices: np.ndarray, acc: dict) -> dict:
    """Does accuracy fall with the NAD index? Headline: the AUC that a learned NAD (test
    accuracy >= predict.LEARNED) has a lower index than one at chance, mean and spread over
    the seeds. The Spearman rank correlation is kept beside it, but over a curve that is
    mostly at chance it ranks coin flips: its spread shows how little it says."""
    a = predict.agreement_over_seeds(-indices.astype(float), predict.replicates(acc))
    learned = indices[np.asarray(acc["test_acc"]) >= predict.LEARNED]
    out = {
        "auc_learned_first": a["auc"],
        "spearman_index_vs_test_acc": -a["spearman"],
        "last_learned_index": int(learned.max()) if len(learned) else -1,
    }
    if "auc_sd" in a:
        out |= {"auc_learned_first_sd": a["auc_sd"], "spearman_index_vs_test_acc_sd": a["spearman_sd"]}
    return out


def nad_source(arch: str, family: str) -> tuple:
    """(NADs, eigenvalues) a NAD-family sweep trains on."""
    if family == "nad":
        return load_nads(arch)
    ref = published.load(Path("data/raw/published") / arch, arch)
    return ref.nads, ref.eigenvalues


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
