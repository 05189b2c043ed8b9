"""MLflow's UI on the runs of experiment `nads` (make ui), wherever the store is.

The repository's SQLite store (the default) or a database named by MLFLOW_TRACKING_URI is
served here by `mlflow ui`; a tracking server (MLFLOW_TRACKING_URI=http://...) serves its
own UI, so only its address is printed. Every address opens MLflow 3's model-training view
(`workflowType=machine_learning`), not its GenAI one.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import urllib.parse
from pathlib import Path

from .spool import shown
from .tracking import EXPERIMENT, StoreError, check_store, tracking_uri

VIEW = "?workflowType=machine_learning"


def runs_url(base: str, experiment_id: str | None) -> str:
    """The runs table of the experiment (the experiment list until a stage has created it)."""
    base = base.rstrip("/") + "/#/experiments"
    return f"{base}/{experiment_id}/runs{VIEW}" if experiment_id else base + VIEW


def run_url(base: str, experiment_id: str, run_ids: list[str]) -> str:
    """One run's page; for several runs, MLflow's compare page."""
    base = base.rstrip("/") + "/#/"
    if len(run_ids) == 1:
        return f"{base}experiments/{experiment_id}/runs/{run_ids[0]}{VIEW}"
    ids = {"runs": json.dumps(run_ids), "experiments": json.dumps([experiment_id])}
    # (the view last: the compare page reads no runs from an address whose query starts with it)
    return f"{base}compare-runs?{urllib.parse.urlencode(ids, quote_via=urllib.parse.quote)}&{VIEW[1:]}"


def ui_url(db: Path, host: str = "127.0.0.1", port: int = 5000) -> str:
    """The runs table in `mlflow ui` on the SQLite store `db`, read without creating it."""
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)) as con:
            row = con.execute("SELECT experiment_id FROM experiments WHERE name = ?", (EXPERIMENT,)).fetchone()
    except sqlite3.Error:  # no store yet
        row = None
    return runs_url(f"http://{host}:{port}", row[0] if row else None)


def _experiment_id(uri: str) -> str | None:
    import mlflow

    exp = mlflow.MlflowClient(uri).get_experiment_by_name(EXPERIMENT)
    return exp.experiment_id if exp else None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m nads.ui", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5000)
    args = p.parse_args(argv)
    uri = tracking_uri()
    try:
        if uri.startswith(("http://", "https://")):
            check_store(uri, write=False)
            print(f"MLflow UI of the tracking server {shown(uri)} (MLFLOW_TRACKING_URI), the runs of experiment nads:")
            print(runs_url(uri, _experiment_id(uri)))
            return 0
        if uri.startswith("sqlite:///"):
            url = ui_url(Path(uri[len("sqlite:///") :]), args.host, args.port)
        else:  # a database used directly, a file store
            check_store(uri, write=False)
            url = runs_url(f"http://{args.host}:{args.port}", _experiment_id(uri))
    except StoreError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"MLflow UI on {shown(uri)}, the runs of experiment nads: {url}", flush=True)
    # One local user: one worker, no telemetry, no GenAI job runner (it starts 8 more processes).
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    cmd = ["--backend-store-uri", uri, "--host", args.host, "--port", str(args.port), "--workers", "1"]
    os.execvpe(sys.executable, [sys.executable, "-m", "mlflow", "ui", *cmd], env)


if __name__ == "__main__":
    sys.exit(main())
