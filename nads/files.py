"""Files: atomic writes, checked reads, and a stage's outputs replaced as one set.

Every file is written to a temporary sibling and renamed into place, so a
reader (or DVC) never sees a half-written file. A stage writes all of its
outputs into a staging folder first (`OutputSet`); only when every one is
complete are they moved into place, under a journal that the next start
(`recover`) completes if a kill lands between the moves. So a stage killed at
any point leaves either the whole previous set of outputs or the whole new one.
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import json
import os
import shutil
import signal
import sys
import time
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
    array = np.ascontiguousarray(array)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            try:
                np.save(f, array)
            except OSError as e:  # numpy's short write carries no errno: say what it was
                if e.errno is None and shutil.disk_usage(tmp.parent).free < array.nbytes:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp)) from None
                raise


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

    The commit writes a journal (the moves, with their sha256) and then moves.
    A destination on another filesystem than .nads (a bind mount) first gets a
    copy of its entries beside them, so that every move is a rename on one
    filesystem; until the journal exists, those copies are listed in
    `incoming` and a recovery removes them.
    """

    def __init__(self, name: str, root: Path = Path(".")):
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"output set name {name!r}: must be a plain file name")
        self.name = name
        self.root = Path(root)
        self.dir = self.root / STAGING / name
        self.folders: dict[Path, Path] = {}  # staging folder -> real folder

    def __enter__(self) -> "OutputSet":
        _remove(self.dir)  # (a killed run's staging was recovered or discarded when the stage started)
        self.dir.mkdir(parents=True)
        (self.dir / "owner").write_text(_identity(os.getpid()))
        return self

    def __exit__(self, kind, *_) -> None:
        if kind is None:
            self.commit()
        else:
            _discard(self.root, self.dir)

    def folder(self, final) -> Path:
        final = Path(final)
        inside(self.root, final, "output folder")
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
        moves = []
        for staged, final in self.folders.items():
            dest = self.root / final
            dest.mkdir(parents=True, exist_ok=True)
            source = staged
            if os.stat(staged).st_dev != os.stat(dest).st_dev:  # rename cannot cross filesystems
                source = dest / f".nads-incoming-{self.name}"
                with open(self.dir / "incoming", "a") as f:
                    f.write(f"{source.relative_to(self.root)}\n")
                _remove(source)
                shutil.copytree(staged, source, symlinks=True)
            for entry in sorted(source.iterdir()):
                moves.append([str(p.relative_to(self.root)) for p in (entry, dest / entry.name)])
        digest = hashlib.sha256(json.dumps(moves).encode()).hexdigest()
        write_json(self.dir / "journal.json", {"moves": moves, "sha256": digest})  # from here on, the new set
        _finish(self.root, self.dir, moves)


def inside(root: Path, path, what: str) -> Path:
    """`path` (relative to `root`) if it stays inside `root` once links are followed."""
    path = Path(path)
    resolved = (Path(root) / path).resolve()
    if path.is_absolute() or ".." in path.parts or not resolved.is_relative_to(Path(root).resolve()):
        raise InputError(
            f"{what} {path} resolves to {resolved}, outside the repository: outputs stay inside it "
            "(replace the link by a folder)"
        )
    return path


def _finish(root: Path, txn: Path, moves: list) -> None:
    """Move every journaled entry into place (those not moved yet), then drop the staging."""
    for src, dst in moves:
        src, dst = root / src, root / dst
        park = dst.with_name(f".nads-old-{dst.name}")  # beside dst: on its filesystem
        if src.exists() or src.is_symlink():
            _replace(src, dst, park)
            _write_point()
        _remove(park)  # (left by a kill between parking the old directory and moving the new in)
    _discard(root, txn)


class _Untrusted(Exception):
    """A journal that is not to be followed."""


def _journal(root: Path, txn: Path) -> list:
    """The moves of `txn`'s journal, verified (its checksum, every path inside the
    repository, every source in the staging); _Untrusted saying why not."""
    try:
        record = read_json(txn / "journal.json")
        moves = record["moves"]
        ok = hashlib.sha256(json.dumps(moves).encode()).hexdigest() == record["sha256"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise _Untrusted(f"unreadable ({type(e).__name__})") from None
    if not ok:
        raise _Untrusted("checksum mismatch")
    incoming = _incoming(root, txn)
    for src, dst in moves:
        try:
            inside(root, src, "journaled source")
            inside(root, dst, "journaled destination")
        except InputError as e:
            raise _Untrusted(str(e)) from None
        if not ((root / src).is_relative_to(txn) or (root / src).parent in incoming):
            raise _Untrusted(f"source {src} is not in the staging")
    return moves


def _incoming(root: Path, txn: Path) -> list[Path]:
    """The copies a commit made beside destinations on other filesystems (inside the repository)."""
    try:
        lines = (txn / "incoming").read_text().split()
    except OSError:
        return []
    return [root / p for p in lines if not Path(p).is_absolute() and ".." not in Path(p).parts]


def _discard(root: Path, txn: Path) -> None:
    for copy in _incoming(root, txn):
        _remove(copy)
    _remove(txn)


def recover(root: Path = Path(".")) -> list[str]:
    """Complete or discard the output sets that killed stages left; returns their names.

    A set with a journal was complete: it is moved into place. One without was
    not: it is discarded, and the previous outputs stand. Sets whose owner
    process is alive (a stage running now) are left alone. A journal that does
    not verify is not followed: its set is set aside in .nads/damaged, with one
    line saying so; the outputs may then mix two runs, which DVC sees (they
    differ from dvc.lock) and reruns."""
    done = []
    root = Path(root)
    staging = root / STAGING
    for txn in sorted(staging.iterdir()) if staging.is_dir() else []:
        if _alive(txn / "owner"):
            continue
        if (txn / "journal.json").exists():
            try:
                moves = _journal(root, txn)
            except _Untrusted as e:
                _set_aside(root, txn, str(e))
            else:
                _finish(root, txn, moves)
        else:
            _discard(root, txn)
        done.append(txn.name)
    return done


def _set_aside(root: Path, txn: Path, why: str) -> None:
    damaged = root / ".nads/damaged" / f"{txn.name}-{int(time.time())}"
    damaged.parent.mkdir(parents=True, exist_ok=True)
    for copy in _incoming(root, txn):
        _remove(copy)
    os.replace(txn, damaged)
    print(
        f"warning: {txn.name}: the journal of its last, interrupted commit is damaged ({why}), so its outputs "
        f"may mix two runs; rerun it: dvc repro -f {txn.name} (set aside in {damaged.relative_to(root)})",
        file=sys.stderr,
    )


def _identity(pid: int) -> str:
    """A process's PID and start time: a PID reused by a later process does not match."""
    return f"{pid} {_start_time(pid)}"


def _start_time(pid: int) -> str:
    try:  # field 22 of /proc/<pid>/stat, in clock ticks since boot
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return "?"  # no /proc (not Linux), or no such process


def _alive(owner: Path) -> bool:
    try:
        pid_text, started = owner.read_text().split()
        pid = int(pid_text)
    except (OSError, ValueError):
        return False
    return pid != os.getpid() and pid_alive(pid) and _start_time(pid) == started


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
