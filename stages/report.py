"""Stage `report`: self-contained HTML pages and their Markdown twins of every result: the report
(index.html, summary.md) and the atlas of the architectures side by side (atlas.html, atlas.md)."""
from pathlib import Path

from nads import report
from nads.tracking import git_commit
from stages.common import stage


def main() -> None:
    with stage("report", all_params=True) as st:
        out = st.folder("results/report")
        metrics = report.write(Path("."), out, st.params, git_commit(Path(".")))
        st.finish(metrics, out / "metrics.json", out / "index.html", out / "summary.md", out / "atlas.html",
                  out / "atlas.md", out / "atlas")


if __name__ == "__main__":
    main()
