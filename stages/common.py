"""What every stage program does around its recipe.

Before any compute: finish or discard the outputs a killed stage left, check
the whole params file, check the MLflow store. Then the recipe writes every
output into staging folders; they replace the old outputs together when it
returns; then the metrics and figures are logged to MLflow. Bad input ends the
program with one line on stderr and exit status 2; Ctrl-C or SIGTERM ends it
with status 130, the previous outputs in place and the MLflow run KILLED.
A stage that runs jobs gives its executor `keep=st.partial`: finished jobs are
kept there until the outputs are in place, so a rerun after an interruption
continues where it stopped (nads/resume.py).
"""

from __future__ import annotations

import errno
import shutil
import signal
import sys
from contextlib import contextmanager
from pathlib import Path

from nads import config, environment, errors, files, portable, tracking
from nads.models import probe_model

PARTIAL = Path(".nads/partial")  # resumable work of interrupted stages (not a DVC output)


class Stage:
    """One stage execution: its params, where its outputs go, what it will log."""

    def __init__(self, name: str, label: str, params: config.Params, outputs: files.OutputSet, run: tracking.StageRun):
        self.params = params
        self.run = run
        self.cfg = params.sections.get(name)  # the stage's own section (None for the report)
        self.partial = PARTIAL / label  # where its executor keeps finished work (removed once outputs are in place)
        self._outputs = outputs
        self._log: list = []

    def folder(self, final) -> Path:
        """The staging counterpart of the real folder `final`: what is written into it
        replaces the entries of the same names in `final`, all outputs together."""
        return self._outputs.folder(final)

    def finish(self, metrics: dict, metrics_path, *artifacts) -> None:
        """Write the metrics JSON for DVC; the same metrics and the artifacts go to
        MLflow once the outputs are in place."""
        files.write_json(metrics_path, metrics)
        self._log.append((metrics, [metrics_path, *artifacts]))

    def log_step(self, metrics: dict, step: int) -> None:
        """Step metrics while the stage runs (progress, per-epoch accuracies): to MLflow at once."""
        self.run.log_metrics(metrics, step)

    def log(self, metrics: dict) -> None:
        """Metrics for MLflow only (timings: not a function of params and code)."""
        self._log.append((metrics, []))

    def log_to(self, run: tracking.StageRun) -> None:
        for metrics, paths in self._log:
            run.log_metrics(metrics)
            run.log_artifacts(*(self._outputs.final(p) for p in paths))


def _interrupt(signum, frame):
    raise KeyboardInterrupt  # SIGTERM takes Ctrl-C's way out: outputs kept, run marked KILLED


@contextmanager
def stage(name: str, label: str | None = None, all_params: bool = False, archs: str | None = None, **logged):
    """Run the body as stage `label` (e.g. nads@lenet) of section `name`; yields a Stage.

    The MLflow run logs the stage's section (all of params.yaml with
    all_params) and `logged` (the architecture, which must be listed in
    archs.<archs>, default archs.<name>)."""
    label = label or name
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        files.recover()
        params = config.load()
        _check_environment()
        section = params.sections.get(name)
        arch, listed = logged.get("arch"), archs or name
        if arch is not None and arch not in getattr(params["archs"], listed):  # run by hand with another one
            raise errors.ParamError(
                f"archs.{listed} = {list(getattr(params['archs'], listed))}: {arch!r} is not one of them"
            )
        own = {"params": params.raw} if all_params else {name: section.to_dict()} if section else {}
        logged = {**own, **logged, "executor": params.executor, "device": params.device}
        with tracking.stage_run(name, logged, params.profile, label) as run:
            with files.OutputSet(label) as outputs:
                st = Stage(name, label, params, outputs, run)
                yield st
            shutil.rmtree(st.partial, ignore_errors=True)  # the outputs are in place: nothing to resume
            st.log_to(run)  # after the outputs are in place: a lost store cannot cost them
    except (errors.InputError, FileNotFoundError) as e:  # bad input, or an upstream output missing
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"{label}: interrupted; the previous outputs are unchanged", file=sys.stderr)
        sys.exit(130)
    except OSError as e:
        if e.errno != errno.ENOSPC:
            raise
        print(f"error: {label}: {_no_space(e.filename)}", file=sys.stderr)
        sys.exit(2)


def _no_space(filename) -> str:
    where = Path(filename or ".nads").absolute()
    while not where.exists() and where != where.parent:
        where = where.parent
    free = shutil.disk_usage(where).free
    return (
        f"no space left on the device of {where} ({free / 2**20:.1f} MiB free); the previous outputs are "
        "unchanged and finished jobs are kept (.nads/partial): free some space and rerun"
    )


def _check_environment() -> None:
    """The locked packages, computing as on every other CPU (nads.environment, nads.portable)."""
    problem = environment.check()
    if problem:
        raise errors.InputError(problem)
    try:
        portable.check()
    except RuntimeError as e:
        raise errors.InputError(str(e)) from None


def check_model(arch: str, in_channels: int, num_classes: int, input_size: int, stage: str) -> None:
    """The architecture builds and takes the stage's inputs: one line naming it, before any compute."""
    try:
        probe_model(arch, in_channels, num_classes, input_size)
    except ValueError as e:
        raise errors.ParamError(f"archs.{stage}: {e}") from None


def load_nads(arch: str) -> tuple:
    """(NADs, eigenvalues) of `arch` from its nads stage (the params say they exist and fit)."""
    path = Path("results/nads") / arch
    restore = f"dvc checkout {path} (or dvc repro -f nads@{arch})"
    return files.load_npy(path / "nads.npy", restore), files.load_npy(path / "eigenvalues.npy", restore)
