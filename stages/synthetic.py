"""Stage `synthetic`: the Fourier direction bank and the shared noise bank of D(v)."""
from pathlib import Path

import numpy as np

from nads import plots, synthetic
from stages.common import stage


def main() -> None:
    with stage("synthetic") as st:
        cfg = st.cfg
        data, results = st.folder("data") / "synthetic", st.folder("results/synthetic")
        metrics, freqs, directions = synthetic.write_bank(data, cfg)
        show = np.linspace(0, len(freqs) - 1, min(8, len(freqs))).round().astype(int)
        plots.patterns_with_spectra(
            directions[show], cfg.input_shape, [f"k=({k1},{k2})" for k1, k2 in freqs[show]],
            results / "directions.png", suptitle="Fourier directions (pixels above centred |FFT|^2)")
        st.finish(metrics, results / "metrics.json", results / "directions.png", data / "meta.json")


if __name__ == "__main__":
    main()
