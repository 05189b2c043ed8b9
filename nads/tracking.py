"""MLflow tracking: where the store lives, and one run per stage execution.

The default store is MLflow's embedded SQLite database at the repository root
(artifacts beside it, in mlartifacts/). The root comes from DVC_ROOT when DVC
sets it: `dvc exp run --queue` runs stages in a temporary copy but points
DVC_ROOT at the real repository, so queued experiments log to the same store.
MLFLOW_TRACKING_URI overrides all of this. The store is never a DVC dep or out.
"""
from __future__ import annotations

import os
import subprocess
from contextlib import contextmanager
from pathlib import Path

# Before mlflow is imported anywhere: no telemetry leaves a researcher's machine.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")

EXPERIMENT = "nads"


def repo_root() -> Path:
    env = os.environ.get("DVC_ROOT")
    if env:
        return Path(env).resolve()
    here = Path.cwd().resolve()
    for d in (here, *here.parents):
        if (d / ".dvc").is_dir():
            return d
    return here


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{repo_root() / 'mlflow.db'}"


def git_commit(root: Path) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _experiment_id(mlflow, artifact_location: str | None) -> str:
    exp = mlflow.get_experiment_by_name(EXPERIMENT)
    if exp is not None:
        return exp.experiment_id
    return mlflow.create_experiment(EXPERIMENT, artifact_location=artifact_location)


class StageRun:
    """The MLflow run of one stage execution."""

    def __init__(self, mlflow, run):
        self._mlflow = mlflow
        self.run = run

    def log_metrics(self, metrics: dict) -> None:
        numeric = {k: float(v) for k, v in flatten(metrics).items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)}
        self._mlflow.log_metrics(numeric)

    def log_artifacts(self, *paths, subdir: str | None = None) -> None:
        for p in map(Path, paths):
            if p.is_dir():
                self._mlflow.log_artifacts(str(p), artifact_path=subdir)
            elif p.is_file():
                self._mlflow.log_artifact(str(p), artifact_path=subdir)


@contextmanager
def stage_run(stage: str, params: dict, profile: str):
    """One MLflow run in experiment `nads`, named after the DVC stage.

    Tagged with the git commit and the profile; the stage's params are logged
    flat (`synthetic.epsilon`, ...). A stage that raises leaves a FAILED run.
    """
    import mlflow

    root = repo_root()
    # Artifacts beside the default store; a user-chosen store keeps its own
    # default. (Decided before set_tracking_uri, which exports the variable.)
    artifacts = None if os.environ.get("MLFLOW_TRACKING_URI") else (root / "mlartifacts").as_uri()
    mlflow.set_tracking_uri(tracking_uri())
    name = os.environ.get("DVC_STAGE", stage)
    tags = {"git_commit": git_commit(root), "profile": profile, "stage": stage, "dvc_stage": name}
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc_exp_name"] = os.environ["DVC_EXP_NAME"]
    with mlflow.start_run(experiment_id=_experiment_id(mlflow, artifacts), run_name=name, tags=tags) as run:
        mlflow.log_params({k: str(v) for k, v in flatten(params).items()})
        yield StageRun(mlflow, run)
