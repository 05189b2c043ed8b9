"""Stage `report`: self-contained HTML pages and their Markdown twins of every result: the report
(index.html, summary.md) and the atlas of the architectures side by side (atlas.html, atlas.md)."""

import platform
from pathlib import Path

from nads import environment, portable, report
from nads.tracking import git_commit
from stages.common import stage


def main() -> None:
    with stage("report", all_params=True) as st:
        final = Path("results/report")
        out = st.folder(final)
        # What a machine of any CPU vendor computes alike (the CPU of each stage is in its MLflow run).
        env = {
            "python": ".".join(platform.python_version_tuple()[:2]),
            **environment.installed(),
            "arithmetic": "portable" if portable.enabled() else "this CPU's own (NADS_PORTABLE=0)",
        }
        metrics = report.write(Path("."), out, st.params, git_commit(Path(".")), env, final)
        st.finish(
            metrics,
            out / "metrics.json",
            out / "index.html",
            out / "summary.md",
            out / "atlas.html",
            out / "atlas.md",
            out / "atlas",
        )


if __name__ == "__main__":
    main()
