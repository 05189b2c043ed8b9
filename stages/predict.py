"""Stage `predict@<arch>`: learnability predicted from the NADs alone, against the measured sweeps.

The score of a direction (nads.predict, its rule RULE) for every Fourier direction and
NAD the sweeps measured; the Spearman correlation of score and test accuracy per
family says how well the NADs alone rank what the network learns. The headline is the AUC
of learned over chance directions, mean and spread over the sweep's seeds: the Spearman
correlation also ranks the noise among directions at chance."""

import sys
import time
from pathlib import Path

import numpy as np

from nads import files, predict
from nads.directions import fourier_directions
from nads.predict import RULE
from stages.common import load_nads, stage


def main(arch: str) -> None:
    with stage("predict", f"predict@{arch}", archs="sweep", arch=arch) as st:
        nads, vals = load_nads(arch)
        meta = files.read_json("data/synthetic/meta.json")
        shape, stride = tuple(meta["input_shape"]), meta["fourier_stride"]
        out = st.folder(Path("results/predict") / arch)
        sweep = Path("results/sweep") / arch
        grid = files.read_csv(sweep / "fourier" / "accuracy.csv")
        freqs, directions = fourier_directions(shape, stride)
        assert np.array_equal(freqs, np.array([grid["k1"], grid["k2"]], dtype=int).T), "the sweep's grid"
        t0 = time.perf_counter()
        fourier = predict.scores(nads, vals, directions, shape, RULE)
        seconds = time.perf_counter() - t0
        measured = np.array(grid["test_acc"], dtype=float)
        curve = files.read_csv(sweep / "nad" / "accuracy.csv")
        indices = np.array(curve["index"], dtype=int)
        along = predict.scores(nads, vals, nads[indices], shape, RULE)
        on_nads = np.array(curve["test_acc"], dtype=float)
        metrics = {"rule": RULE, "n_fourier": len(fourier), "n_nad": len(along)}
        for family, score, table in (("fourier", fourier, grid), ("nad", along, curve)):
            agree = predict.agreement_over_seeds(score, predict.replicates(table))
            for key in ("spearman", "auc"):  # auc_nad, and with several seeds auc_nad_sd
                metrics[f"{key}_{family}"] = agree[key]
                if f"{key}_sd" in agree:
                    metrics[f"{key}_{family}_sd"] = agree[f"{key}_sd"]
        files.write_csv(
            out / "fourier.csv", {"k1": freqs[:, 0], "k2": freqs[:, 1], "score": fourier, "test_acc": measured}
        )
        files.write_csv(out / "nad.csv", {"index": indices, "score": along, "test_acc": on_nads})
        st.finish(metrics, out / "metrics.json", out / "fourier.csv", out / "nad.csv")
        st.log({"timing.fourier_seconds": seconds})  # MLflow only: not reproducible


if __name__ == "__main__":
    main(sys.argv[1])
