"""Stage `synthetic`: the Fourier direction bank and the shared noise bank of D(v)."""

from nads import synthetic
from stages.common import stage


def main() -> None:
    with stage("synthetic") as st:
        cfg = st.cfg
        data, results = st.folder("data") / "synthetic", st.folder("results/synthetic")
        metrics, _, _ = synthetic.write_bank(data, cfg)
        st.finish(metrics, results / "metrics.json", data / "meta.json")


if __name__ == "__main__":
    main()
