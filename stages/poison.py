"""Stage `poison@<arch>`: CIFAR-10 with a carrier along NAD k per class, for each k, and a clean baseline."""

import sys
from pathlib import Path

from nads import files
from nads.cifar10 import Cifar10
from nads.executor import executor_for
from nads.poisoning import poisoning
from stages.common import check_model, load_nads, stage


def main(arch: str) -> None:
    with stage("poison", f"poison@{arch}", arch=arch) as st:
        cfg = st.cfg
        check_model(arch, 3, 10, 32, "poison")
        nads, _ = load_nads(arch)  # carriers come from 1x32x32 NADs
        data = Cifar10.load("data/cifar10")
        out = st.folder(Path("results/poison") / arch)
        rows = poisoning(
            arch,
            data,
            nads,
            cfg.nad_indices,
            cfg.epsilon,
            cfg.schedule(),
            cfg.n_train,
            st.params.device,
            st.params.models_per_batch or None,
            executor_for(st.params, keep=st.partial),
            progress=f"poison {arch}",
            log=st.log_step,
        )
        files.write_csv(out / "results.csv", {k: [r[k] for r in rows] for k in rows[0]})
        clean, poisoned = rows[0], rows[1:]
        metrics = {
            "clean_baseline_test_acc": clean["clean_test_acc"],
            **{f"nad{r['nad_index']}_clean_test_acc": r["clean_test_acc"] for r in poisoned},
            **{f"nad{r['nad_index']}_carrier_success": r["carrier_success"] for r in poisoned},
            "max_drop_vs_clean": clean["clean_test_acc"] - min(r["clean_test_acc"] for r in poisoned),
        }
        st.finish(metrics, out / "metrics.json", out / "results.csv")


if __name__ == "__main__":
    main(sys.argv[1])
