"""What every stage program does around its recipe: params first, one-line errors."""
from __future__ import annotations

import sys
from contextlib import contextmanager

from nads import config, io, tracking


@contextmanager
def stage(name: str, section: str | None = None, params_path: str = "params.yaml"):
    """Parse and check the stage's params before any compute, then open its MLflow run.

    Yields (params, run). A ParamError ends the program with one line on stderr
    and exit status 2, before anything is written.
    """
    try:
        params = config.load(section or name, params_path)
        profile = config.profile(params_path)
    except config.ParamError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    with tracking.stage_run(name, {section or name: params.to_dict()}, profile) as run:
        yield params, run


def finish(run, metrics: dict, metrics_path, *artifacts) -> None:
    """Write the stage's metrics JSON for DVC and log the same, plus artifacts, to MLflow."""
    io.write_json(metrics_path, metrics)
    run.log_metrics(metrics)
    run.log_artifacts(metrics_path, *artifacts)
