"""What every stage program does around its recipe: params first, one-line errors."""
from __future__ import annotations

import sys
from contextlib import contextmanager

from pathlib import Path

import numpy as np

from nads import config, io, tracking


@contextmanager
def stage(name: str, extra_params: dict | None = None, params_path: str = "params.yaml", section: bool = True):
    """Parse and check the stage's params section before any compute, then open its MLflow run.

    Yields (params, run). A ParamError (bad params, or bad input found by the
    library's own checks) or a missing input ends the program with one line on
    stderr and exit status 2; outputs are written atomically, so nothing
    half-written remains. section=False: a stage without a params section.
    """
    try:
        params = config.load(name, params_path) if section else None
        logged = {**({name: params.to_dict()} if section else {}), **(extra_params or {}),
                  "executor": config.executor_kind(params_path)}
        with tracking.stage_run(name, logged, config.profile(params_path)) as run:
            yield params, run
    except (config.ParamError, FileNotFoundError) as e:  # bad params, or an upstream output missing
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def finish(run, metrics: dict, metrics_path, *artifacts) -> None:
    """Write the stage's metrics JSON for DVC and log the same, plus artifacts, to MLflow."""
    io.write_json(metrics_path, metrics)
    run.log_metrics(metrics)
    run.log_artifacts(metrics_path, *artifacts)


def load_nads(section, arch: str, shape) -> tuple:
    """(NADs, eigenvalues) of `arch` from the nads stage, for a stage whose inputs have `shape`.

    Fails in one line if the architecture has no NADs configured or they are of
    another input size.
    """
    config.check_has_nads(section, config.load("nads"))
    path = Path("results/nads") / arch
    nads = np.load(path / "nads.npy")
    if nads.shape[1] != int(np.prod(shape)):
        raise config.ParamError(f"nads.input_shape: {section.name} needs NADs of {tuple(shape)} inputs "
                                f"(dimension {int(np.prod(shape))}); {arch}'s have dimension {nads.shape[1]}")
    return nads, np.load(path / "eigenvalues.npy")
