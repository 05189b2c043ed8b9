"""The page model the report and the atlas share: sections of figures, a table and
claims, and checked readers of the stage outputs they are drawn from."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import files


@dataclass
class Claim:
    text: str  # the paper's claim
    evidence: str  # what this run measured
    supported: bool  # (a plain bool, also when computed from numpy values)


@dataclass
class Section:
    title: str
    figures: list = field(default_factory=list)  # paths
    table: dict = field(default_factory=dict)  # name -> value
    claims: list = field(default_factory=list)
    note: str = ""  # one line under the title


def need(path: Path, stage: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `dvc repro {stage}` first")
    return path


def read_json(path: Path, stage: str) -> dict:
    return json.loads(need(path, stage).read_text())


def sweep(root: Path, arch: str, family: str) -> tuple[Path, dict, dict]:
    """(folder, accuracy table, metrics) of stage sweep-<family>@<arch>."""
    d, stage = root / "results/sweep" / arch / family, f"sweep-{family}@{arch}"
    return d, files.read_csv(need(d / "accuracy.csv", stage)), read_json(d / "metrics.json", stage)


def floats(table: dict, key: str) -> np.ndarray:
    return np.array(table[key], dtype=float)


def figure(root: Path, folder: Path, name: str) -> Path:
    """Where stage `figures` draws `name` for the outputs in `folder`
    (results/nads/lenet -> results/figures/nads/lenet/name)."""
    return root / "results/figures" / Path(folder).relative_to(root / "results") / name
