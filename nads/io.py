"""Atomic writes: a reader (or DVC) never sees a half-written output.

Everything is written to a temporary sibling and renamed into place, so an
interrupted stage leaves the previous output intact, not a truncated file.
"""
from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import numpy as np


@contextmanager
def atomic_path(path):
    """Yield a temporary sibling of `path`; rename it onto `path` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    _remove(tmp)
    try:
        yield tmp
    except BaseException:
        _remove(tmp)
        raise
    if tmp.is_dir() and path.exists():
        # Directories cannot be renamed over each other: park the old one
        # first, so that at every instant one complete version exists on disk.
        old = path.with_name(f".{path.name}.old")
        _remove(old)
        os.replace(path, old)
        os.replace(tmp, path)
        _remove(old)
    else:
        os.replace(tmp, path)


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p)
    elif p.exists() or p.is_symlink():
        p.unlink()


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
