"""Resuming interrupted work: finished jobs and training states, kept on disk until the stage finishes.

A stage runs inside `keep(folder)`. Every executor map in it then stores each
finished job's result (for a folded map, every CHECKPOINT_S seconds, the in-order
fold of the jobs done so far) under folder/<key>, where the key hashes everything that determines
the results: the job function, its jobs, the data they share (params, inputs,
device) and the nads source code and torch version. A rerun after Ctrl-C,
kill -9 or a lost node finds the same key and computes only what is missing; a
change in any of those gives another key, so stale work is never reused.
Training jobs also keep their models, optimiser state and epoch
(`training_state`) every CHECKPOINT_S seconds (NADS_CHECKPOINT_S). The stage removes the folder
once its outputs are in place. Results are bit-identical to an uninterrupted
run: job results are stored exactly, training resumes exactly where it was.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
from contextlib import contextmanager
from pathlib import Path

from .runtime import fingerprint

_root: Path | None = None  # the stage's folder, in the driver
_state: Path | None = None  # the current job's training-state prefix, in the process running it
_trainings = 0  # training runs started by the current job


def checkpoint_seconds() -> float:
    """How often a training job saves its state, and a folded map its fold
    (NADS_CHECKPOINT_S, default 60 s; 0: every epoch, every job)."""
    return float(os.environ.get("NADS_CHECKPOINT_S", "60"))


@contextmanager
def keep(folder: Path):
    """Store resumable work under `folder` while the body runs; remove it if the body succeeds."""
    global _root
    previous, _root = _root, Path(folder).resolve()
    try:
        yield
    finally:
        _root = previous
    shutil.rmtree(folder, ignore_errors=True)


class JobStore:
    """Finished jobs of one map, under root/<key>: job<i>.pkl = (result, units);
    prefix.pkl = (n, fold of jobs 0..n-1, their units) for a folded map."""

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def jobs(self) -> dict:
        done = {}
        for f in self.folder.glob("job*.pkl"):
            loaded = _load(f)
            if loaded is not None:
                done[int(f.stem[3:])] = loaded
        return done

    def prefix(self) -> tuple:
        return _load(self.folder / "prefix.pkl") or (0, None, 0.0)

    def save_job(self, i: int, result, units: float) -> None:
        _save(self.folder / f"job{i}.pkl", (result, units))

    def save_prefix(self, n: int, acc, units: float) -> None:
        _save(self.folder / "prefix.pkl", (n, acc, units))
        for f in self.folder.glob("job*"):  # folded in, or their training states
            if int(f.name[3:].split(".")[0]) < n:
                f.unlink(missing_ok=True)

    def training_state(self, i: int) -> Path:
        return self.folder / f"job{i}.train"


def store_for(fn, jobs, common) -> JobStore | None:
    """The store of this map inside `keep`, else None (nothing kept)."""
    if _root is None:
        return None
    h = hashlib.sha256(fingerprint().encode())
    h.update(f"{fn.__module__}.{fn.__qualname__}".encode())
    h.update(pickle.dumps((jobs, common), protocol=4))
    return JobStore(_root / h.hexdigest()[:24])


def start_job(state: Path | None) -> None:
    """In the process running a job: where its training runs keep their state (None: nowhere)."""
    global _state, _trainings
    _state, _trainings = state, 0


def training_state() -> Path | None:
    """The file the next training run of the current job saves its state to and resumes from."""
    global _trainings
    if _state is None:
        return None
    _trainings += 1
    return _state.with_name(f"{_state.name}{_trainings}.pt")


def _save(path: Path, obj) -> None:
    # Not files.atomic_path: these are not outputs (and not the fault tests' write points).
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        pickle.dump(obj, f, protocol=4)
    os.replace(tmp, path)


def _load(path: Path):
    """What `path` holds, or None if it is missing or unreadable (a kill cannot leave it
    half-written, but a full disk or a foreign file could): recomputed, never trusted."""
    try:
        with open(path, "rb") as f:
            return pickle.load(f)
    except FileNotFoundError:
        return None
    except Exception:  # noqa: BLE001 - anything unreadable is simply work to redo
        path.unlink(missing_ok=True)
        return None
