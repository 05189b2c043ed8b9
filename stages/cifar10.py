"""Stage `cifar10`: whichever CIFAR-10 source is configured -> one cached format."""
from pathlib import Path

import numpy as np

from nads import plots
from nads.datasets import load_source
from stages.common import finish, stage

DATA = Path("data/cifar10")
RESULTS = Path("results/cifar10")


def main() -> None:
    with stage("cifar10") as (cfg, run):
        data = load_source(cfg.source)
        data.save(DATA)
        metrics = {"n_train": len(data.y_train), "n_test": len(data.y_test),
                   "train_per_class_min": int(np.bincount(data.y_train, minlength=10).min()),
                   "test_per_class_min": int(np.bincount(data.y_test, minlength=10).min()),
                   "train_mean_pixel": float(data.x_train.mean() / 255)}
        plots.image_grid(data.x_train, data.y_train, data.classes, RESULTS / "samples.png")
        finish(run, metrics, RESULTS / "metrics.json", RESULTS / "samples.png")


if __name__ == "__main__":
    main()
