"""Files: atomic writes, checked reads, and a stage's outputs replaced as one set.

Every file is written to a temporary sibling and renamed into place, so a
reader (or DVC) never sees a half-written file. A stage writes all of its
outputs into a staging folder first (`OutputSet`); only when every one is
complete are they moved into place, under a journal that the next start
(`recover`) completes if a kill lands between the moves. So a stage killed at
any point leaves either the whole previous set of outputs or the whole new one.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import signal
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .errors import InputError

STAGING = Path(".nads/staging")  # under the repository root: same filesystem as the outputs
_writes = itertools.count(1)


class CorruptInput(InputError):
    """An input file that exists but cannot be read."""


def _write_point() -> None:
    """Where the fault tests kill a stage: NADS_KILL_AT_WRITE=n sends SIGKILL to this
    process at its n-th write (each finished file, each step of a commit)."""
    at = os.environ.get("NADS_KILL_AT_WRITE")
    if at and next(_writes) == int(at):
        os.kill(os.getpid(), signal.SIGKILL)


@contextmanager
def atomic_path(path):
    """Yield a temporary sibling of `path`; rename it onto `path` on success.

    Nothing is left behind on failure, the rename's included (a directory in
    the way, a read-only folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    _remove(tmp)
    try:
        yield tmp
        _replace(tmp, path, park=path.with_name(f".{path.name}.old"))
    except BaseException:
        _remove(tmp)
        raise
    _write_point()


def _replace(src: Path, dst: Path, park: Path) -> None:
    """Move src onto dst. Directories cannot be renamed over each other: the old
    one is parked first, so that at every instant one complete version exists."""
    if src.is_dir() and dst.exists():
        _remove(park)
        park.parent.mkdir(parents=True, exist_ok=True)
        os.replace(dst, park)
        os.replace(src, dst)
        _remove(park)
    else:
        os.replace(src, dst)


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p)
    elif p.exists() or p.is_symlink():
        p.unlink()


def check_writable(path) -> Path:
    """Fail now, not after the compute, if `path` cannot be written: try a
    temporary file beside it (removed again)."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path}: is a directory; give a file name")
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(b"")
    except OSError as e:  # a file where a folder should be, no permission, read-only disk...
        raise ValueError(f"{path}: cannot be written ({e.strerror or type(e).__name__}: {e.filename})") from None
    finally:
        _remove(tmp)
    return path


def file_digest(path, algorithm: str) -> str:
    """Hex digest of a file's bytes, read in blocks (an archive can be large)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_json(path, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path):
    return json.loads(Path(path).read_text())


def save_npy(path, array) -> None:
    # np.save (not savez): .npz is a zip whose entries carry the write time,
    # which would make identical results differ byte for byte.
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, np.ascontiguousarray(array))


def load_npy(path, restore: str) -> np.ndarray:
    """An array written by save_npy. A damaged file is a one-line error naming it and
    `restore`, the command that brings it back (never numpy's pickle advice: no pickles here)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: {restore}")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise CorruptInput(
            f"{path} is corrupt (not a readable .npy array: {str(e).splitlines()[0]}); restore it: {restore}"
        ) from None


def write_csv(path, columns: dict) -> None:
    """Columns of equal length as CSV; floats with 7 significant digits (stable bytes)."""
    names = list(columns)
    rows = zip(*(columns[n] for n in names))

    def fmt(v):
        if isinstance(v, (float, np.floating)):
            return "nan" if np.isnan(v) else f"{v:.7g}"
        return str(v)

    with atomic_path(path) as tmp:
        tmp.write_text(",".join(names) + "\n" + "".join(",".join(fmt(v) for v in r) + "\n" for r in rows))


def read_csv(path) -> dict:
    """{column: list of str} of a CSV written by write_csv."""
    lines = Path(path).read_text().splitlines()
    names = lines[0].split(",")
    cols = list(zip(*(line.split(",") for line in lines[1:]))) or [()] * len(names)
    return {n: list(c) for n, c in zip(names, cols)}


# ---------------------------------------------------------------- a stage's outputs as one set
class OutputSet:
    """A stage's outputs, written into staging folders and moved into place together.

    `folder(final)` gives the staging counterpart of a real folder: every entry
    (file or whole directory) written into it replaces the entry of the same
    name in `final` when the set commits. Nothing outside staging changes
    before `commit`; a failure or a kill before it leaves the old outputs.
    """

    def __init__(self, name: str, root: Path = Path(".")):
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"output set name {name!r}: must be a plain file name")
        self.root = Path(root)
        self.dir = self.root / STAGING / name
        self.folders: dict[Path, Path] = {}  # staging folder -> real folder

    def __enter__(self) -> "OutputSet":
        _remove(self.dir)  # (a killed run's staging was recovered or discarded when the stage started)
        self.dir.mkdir(parents=True)
        (self.dir / "owner").write_text(str(os.getpid()))
        return self

    def __exit__(self, kind, *_) -> None:
        if kind is None:
            self.commit()
        else:
            _remove(self.dir)

    def folder(self, final) -> Path:
        final = Path(final)
        if final.is_absolute() or ".." in final.parts:
            raise ValueError(f"{final}: outputs stay inside the repository")
        staged = self.dir / "out" / str(len(self.folders))
        staged.mkdir(parents=True)
        self.folders[staged] = final
        return staged

    def final(self, path) -> Path:
        """Where a staged path ends up."""
        path = Path(path)
        for staged, final in self.folders.items():
            if path == staged or staged in path.parents:
                return self.root / final / path.relative_to(staged)
        return path

    def commit(self) -> None:
        moves = [
            (str(entry.relative_to(self.root)), str(final / entry.name))
            for staged, final in self.folders.items()
            for entry in sorted(staged.iterdir())
        ]
        write_json(self.dir / "journal.json", moves)  # from here on, the new set is the one to finish
        _finish(self.root, self.dir)


def _finish(root: Path, txn: Path) -> None:
    """Move every journaled entry into place (those not moved yet), then drop the staging."""
    for i, (src, dst) in enumerate(read_json(txn / "journal.json")):
        src, dst = root / src, root / dst
        if src.exists() or src.is_symlink():
            dst.parent.mkdir(parents=True, exist_ok=True)
            _replace(src, dst, park=txn / "old" / str(i))
            _write_point()
    _remove(txn)


def recover(root: Path = Path(".")) -> list[str]:
    """Complete or discard the output sets that killed stages left; returns their names.

    A set with a journal was complete: it is moved into place. One without was
    not: it is discarded, and the previous outputs stand. Sets whose owner
    process is alive (a stage running now) are left alone."""
    done = []
    staging = Path(root) / STAGING
    for txn in sorted(staging.iterdir()) if staging.is_dir() else []:
        if _alive(txn / "owner"):
            continue
        if (txn / "journal.json").is_file():
            _finish(Path(root), txn)
        else:
            _remove(txn)
        done.append(txn.name)
    return done


def _alive(owner: Path) -> bool:
    try:
        pid = int(owner.read_text())
    except (OSError, ValueError):
        return False
    return pid != os.getpid() and pid_alive(pid)


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie (which will never write again)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True  # no /proc (not Linux): it exists
