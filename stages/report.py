"""Stage `report`: one self-contained HTML report and a Markdown summary of every result."""
from pathlib import Path

from nads import config, report
from nads.tracking import git_commit
from stages.common import finish, stage

OUT = Path("results/report")


def main() -> None:
    params = config.read_params()
    with stage("report", {"params": params}, section=False) as (_, run):
        config.check_all()
        metrics = report.write(Path("."), OUT, params, git_commit(Path(".")))
        finish(run, metrics, OUT / "metrics.json", OUT / "index.html", OUT / "summary.md")


if __name__ == "__main__":
    main()
