"""Stage `flip@<arch>`: train on CIFAR-10 and on CIFAR-10 in the reversed NAD basis."""
import sys
from pathlib import Path

from nads import config, plots
from nads.cifar import flipped
from nads.datasets import Cifar10
from stages.common import finish, load_nads, stage


def main(arch: str) -> None:
    with stage("flip", {"arch": arch}) as (cfg, run):
        nads, _ = load_nads(cfg, arch, (1, 32, 32))
        result = flipped(arch, Cifar10.load("data/cifar10"), nads, cfg.schedule(), cfg.n_train, cfg.device,
                         config.executor())
        result["drop"] = result["original_test_acc"] - result["flipped_test_acc"]
        out = Path("results/flip") / arch
        plots.bars({"original": result["original_test_acc"], "flipped NAD basis": result["flipped_test_acc"]},
                   out / "bars.png", ylabel="CIFAR-10 test accuracy", title=f"{arch}: original vs flipped basis")
        finish(run, result, out / "metrics.json", out / "bars.png")


if __name__ == "__main__":
    main(sys.argv[1])
