"""Stage `cifar10`: the fetched CIFAR-10 (any supported form) -> one cached format."""

import numpy as np

from nads.cifar10 import load_raw
from stages.common import stage


def main() -> None:
    with stage("cifar10") as st:
        data = load_raw("data/raw/cifar10")
        data.save(st.folder("data") / "cifar10")
        results = st.folder("results/cifar10")
        metrics = {
            "n_train": len(data.y_train),
            "n_test": len(data.y_test),
            "train_per_class_min": int(np.bincount(data.y_train, minlength=10).min()),
            "test_per_class_min": int(np.bincount(data.y_test, minlength=10).min()),
            "train_mean_pixel": float(data.x_train.mean() / 255),
        }
        st.finish(metrics, results / "metrics.json")


if __name__ == "__main__":
    main()
