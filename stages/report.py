"""Stage `report`: one self-contained HTML report and a Markdown summary of every result."""
from pathlib import Path

from nads import report
from nads.tracking import git_commit
from stages.common import stage


def main() -> None:
    with stage("report", all_params=True) as st:
        out = st.folder("results/report")
        metrics = report.write(Path("."), out, st.params, git_commit(Path(".")))
        st.finish(metrics, out / "metrics.json", out / "index.html", out / "summary.md")


if __name__ == "__main__":
    main()
