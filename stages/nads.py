"""Stage `nads@<arch>`: the NADs of one architecture and their spectrum (figures: stage figures)."""

import sys
from pathlib import Path

from nads import files
from nads.estimate import AGREEMENT_K, estimate_nads, subspace_agreement
from nads.executor import executor_for
from nads.spectral import index_frequency_correlation
from stages.common import check_model, stage


def main(arch: str) -> None:
    with stage("nads", f"nads@{arch}", arch=arch) as st:
        cfg = st.cfg
        c, h, _ = cfg.input_shape
        check_model(arch, c, 1, h, "nads")
        out = st.folder(Path("results/nads") / arch)
        common = dict(
            arch=arch,
            input_shape=cfg.input_shape,
            n_networks=cfg.n_networks,
            step=cfg.step,
            seed=cfg.seed,
            device=st.params.device,
            precision=cfg.precision,
            forward=cfg.forward,
            executor=executor_for(st.params, keep=st.partial),
            log=st.log_step,
        )
        result = estimate_nads(estimator=cfg.estimator, progress=True, **common)
        metrics = dict(result.diagnostics)
        rank = metrics["rank"]
        metrics["index_frequency_spearman"] = index_frequency_correlation(result.nads, cfg.input_shape, min(rank, 500))
        if cfg.compare_autograd and cfg.estimator == "fd":
            # Same networks, exact gradients at x0: how different are its directions?
            other = estimate_nads(estimator="autograd", progress=True, **common)
            for k in AGREEMENT_K:
                if k <= len(result.nads):
                    metrics[f"autograd_vs_fd_top{k}"] = subspace_agreement(result.nads, other.nads, k)
            metrics["autograd_index_frequency_spearman"] = index_frequency_correlation(
                other.nads, cfg.input_shape, min(rank, 500)
            )

        files.save_npy(out / "nads.npy", result.nads)
        files.save_npy(out / "eigenvalues.npy", result.eigenvalues)
        st.finish(metrics, out / "metrics.json", out / "eigenvalues.npy")
        st.log({f"timing.{k}": v for k, v in result.timing.items() if k != "device"})  # MLflow only: not reproducible


if __name__ == "__main__":
    main(sys.argv[1])
