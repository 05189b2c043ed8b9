"""Resuming interrupted work: finished jobs and training states, kept on disk until the stage finishes.

An executor made with `keep=folder` (a stage's .nads/partial/<stage>) stores each
finished job's result of every map it runs (for a folded map, every
CHECKPOINT_S seconds, the in-order fold of the jobs done so far) under
folder/<key>, where the key hashes everything that determines the results: the
job function, its jobs, the data they share (params, inputs, device), the code
(nads, the user's models under archs/) and the torch, torchvision and timm
versions. A rerun after Ctrl-C, kill -9 or a lost node finds the same key and
computes only what is missing; a change in any of those gives another key, so
stale work is never reused. Training jobs also keep their models, optimiser
state and epoch every CHECKPOINT_S seconds (NADS_CHECKPOINT_S). The stage
removes the folder once its outputs are in place. Results are bit-identical to
an uninterrupted run: job results are stored exactly, training resumes exactly
where it was.

Every file carries the sha256 of its contents, checked before it is read: a
file that fails the check or does not hold what its name says is discarded
with one line on stderr and its work is done again. The files are pickles
(job results are arbitrary Python objects): the store is this machine's own
scratch space; never copy a .nads/ folder from someone else.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import re
import sys
from pathlib import Path

import torch

from .runtime import fingerprint

_MAGIC = b"nads-resume-1\n"
_JOB = re.compile(r"job(\d+)\.pkl")

# The job running in this process (set by the executor around each job, in the process
# that runs it): where its training runs keep their state, and how many have started.
_state: Path | None = None
_trainings = 0


def checkpoint_seconds() -> float:
    """How often a training job saves its state, and a folded map its fold
    (NADS_CHECKPOINT_S, default 60 s; 0: every epoch, every job)."""
    return float(os.environ.get("NADS_CHECKPOINT_S", "60"))


class JobStore:
    """Finished jobs of one map, under root/<key>: job<i>.pkl = (result, units);
    prefix.pkl = (n, fold of jobs 0..n-1, their units) for a folded map."""

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def jobs(self) -> dict:
        done = {}
        for f in self.folder.glob("job*.pkl"):
            match = _JOB.fullmatch(f.name)
            if match is None:
                _discard(f, "not a file this store writes")
                continue
            loaded = _load(f, lambda r: isinstance(r, tuple) and len(r) == 2 and isinstance(r[1], float))
            if loaded is not None:
                done[int(match[1])] = loaded
        return done

    def prefix(self) -> tuple:
        loaded = _load(
            self.folder / "prefix.pkl",
            lambda r: isinstance(r, tuple) and len(r) == 3 and isinstance(r[0], int) and r[0] >= 1,
        )
        return loaded or (0, None, 0.0)

    def save_job(self, i: int, result, units: float) -> None:
        _write(self.folder / f"job{i}.pkl", pickle.dumps((result, float(units)), protocol=4))

    def save_prefix(self, n: int, acc, units: float) -> None:
        _write(self.folder / "prefix.pkl", pickle.dumps((n, acc, float(units)), protocol=4))
        for f in self.folder.glob("job*"):  # folded in, or their training states
            index = re.match(r"job(\d+)", f.name)
            if index and int(index[1]) < n:
                f.unlink(missing_ok=True)

    def training_state(self, i: int) -> Path:
        return self.folder / f"job{i}.train"


def job_store(keep: Path | None, fn, jobs, common) -> JobStore | None:
    """The store under `keep` of the map fn(common, job) for job in jobs; None if `keep` is None."""
    if keep is None:
        return None
    h = hashlib.sha256(fingerprint().encode())
    h.update(f"{fn.__module__}.{fn.__qualname__}".encode())
    h.update(pickle.dumps((jobs, common), protocol=4))
    return JobStore(Path(keep) / h.hexdigest()[:24])


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


def save_training_state(path: Path, state: dict) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    _write(path, buffer.getvalue())


def load_training_state(path: Path, device) -> dict | None:
    """The state saved at `path` (tensors only: torch's weights_only loader), or None."""
    raw = _read(path)
    if raw is None:
        return None
    try:
        state = torch.load(io.BytesIO(raw), map_location=device, weights_only=True)
    except Exception as e:  # noqa: BLE001 - unreadable is work to redo
        return _discard(path, f"unreadable ({type(e).__name__})")
    return state if isinstance(state, dict) else _discard(path, "not a training state")


def _write(path: Path, payload: bytes) -> None:
    # Not files.atomic_path: these are not outputs (and not the fault tests' write points).
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(_MAGIC + hashlib.sha256(payload).digest() + payload)
    os.replace(tmp, path)


def _read(path: Path) -> bytes | None:
    """The payload `path` holds if its checksum verifies; None if it is missing (or discarded)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    head, digest, payload = raw[: len(_MAGIC)], raw[len(_MAGIC) : len(_MAGIC) + 32], raw[len(_MAGIC) + 32 :]
    if head != _MAGIC or hashlib.sha256(payload).digest() != digest:
        return _discard(path, "checksum mismatch")
    return payload


def _load(path: Path, valid):
    """The object pickled in `path` if it verifies and `valid(obj)`, else None."""
    raw = _read(path)
    if raw is None:
        return None
    try:
        obj = pickle.loads(raw)
    except Exception as e:  # noqa: BLE001 - unreadable is work to redo
        return _discard(path, f"unreadable ({type(e).__name__})")
    return obj if valid(obj) else _discard(path, "not the record its name says")


def _discard(path: Path, why: str):
    """None, having said why `path` is not used and removed it."""
    print(f"resume: {path}: {why}; discarded, its work is done again", file=sys.stderr)
    path.unlink(missing_ok=True)
    return None
