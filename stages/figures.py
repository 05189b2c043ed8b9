"""Stage `figures`: every stage's figures, drawn from the data they wrote (nads/figures.py).

Light on purpose: a change of style redraws here, in seconds, and reruns no
computation. Its MLflow run holds every figure, with the data files it drew from
(results/figures/inputs.json: path -> sha256; the run's dataset inputs: their DVC hashes).
"""

from pathlib import Path

from nads import figures, files
from stages.common import stage


def main() -> None:
    with stage("figures", all_params=True) as st:
        out = st.folder("results") / "figures"
        out.mkdir()
        drawn = figures.draw_all(Path("."), out, st.params)
        metrics = {"figures": len(drawn.drawn), "inputs": len(drawn.read)}
        files.write_json(out / "inputs.json", drawn.read)
        st.finish(metrics, out / "metrics.json", out)


if __name__ == "__main__":
    main()
