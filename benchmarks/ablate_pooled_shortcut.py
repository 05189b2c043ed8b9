"""What the pooled first-layer shortcut buys: LeNet NADs with it and without it
(the plain first-layer shortcut), alternated in one run, best of the repeats.

    python benchmarks/ablate_pooled_shortcut.py [--networks 512] [--repeats 3]
"""

import argparse
import time

from nads import estimate


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--networks", type=int, default=512)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    pooled = estimate.FirstLayerShortcut._first_layer

    def unpooled(model, x0):
        name, shape, _ = pooled(model, x0)
        return name, shape, None

    ms, top = {"pooled": [], "unpooled": []}, {}
    for _ in range(args.repeats):
        for mode, finder in (("pooled", pooled), ("unpooled", unpooled)):
            estimate.FirstLayerShortcut._first_layer = staticmethod(finder)
            estimate._engine_cache.clear()
            t = time.perf_counter()
            r = estimate.estimate_nads("lenet", n_networks=args.networks, device="cpu")
            ms[mode].append((time.perf_counter() - t) / args.networks * 1e3)
            top[mode] = r.eigenvalues
    best = {m: min(v) for m, v in ms.items()}
    same = bool((top["pooled"] == top["unpooled"]).all())
    print(
        f"LeNet, {args.networks} networks, default engine (one process per core): "
        f"pooled {best['pooled']:.1f} ms/network, unpooled {best['unpooled']:.1f} ms/network, "
        f"speed-up {best['unpooled'] / best['pooled']:.2f}x; eigenvalues identical: {same}"
    )


if __name__ == "__main__":
    main()
