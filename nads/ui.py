"""Where to point the browser for MLflow's UI on the repository's store (make ui)."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from .tracking import EXPERIMENT, repo_root


def ui_url(db: Path, host: str = "127.0.0.1", port: int = 5000) -> str:
    """The address of experiment `nads`'s runs table in `mlflow ui` on the SQLite store `db`
    (the experiment list until a stage has created the experiment)."""
    import sqlite3

    base, ml = f"http://{host}:{port}/#/experiments", "?workflowType=machine_learning"
    try:
        with contextlib.closing(sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)) as con:
            row = con.execute("SELECT experiment_id FROM experiments WHERE name = ?", (EXPERIMENT,)).fetchone()
    except sqlite3.Error:  # no store yet
        row = None
    return f"{base}/{row[0]}/runs{ml}" if row else base + ml


if __name__ == "__main__":  # make ui: python -m nads.ui [PORT]
    print(ui_url(repo_root() / "mlflow.db", port=int(sys.argv[1]) if len(sys.argv) > 1 else 5000))
