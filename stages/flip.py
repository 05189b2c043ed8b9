"""Stage `flip@<arch>`: train on CIFAR-10 and on CIFAR-10 in the reversed NAD basis."""

import sys
from pathlib import Path

from nads.cifar10 import Cifar10
from nads.executor import executor_for
from nads.poisoning import flipped
from stages.common import check_model, load_nads, stage


def main(arch: str) -> None:
    with stage("flip", f"flip@{arch}", arch=arch) as st:
        cfg = st.cfg
        check_model(arch, 3, 10, 32, "flip")
        nads, _ = load_nads(arch)
        result = flipped(
            arch,
            Cifar10.load("data/cifar10"),
            nads,
            cfg.schedule(),
            cfg.n_train,
            st.params.device,
            executor_for(st.params, keep=st.partial),
            progress=f"flip {arch}",
            log=st.log_step,
        )
        result["drop"] = result["original_test_acc"] - result["flipped_test_acc"]
        out = st.folder(Path("results/flip") / arch)
        st.finish(result, out / "metrics.json")


if __name__ == "__main__":
    main(sys.argv[1])
