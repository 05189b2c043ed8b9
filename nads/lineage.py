"""Which data a stage read, as DVC versions it: each MLflow run's dataset inputs.

A stage's deps that are not code (the synthetic bank, CIFAR-10, an architecture's NADs)
each with the hash DVC gives them: the upstream stage's out as dvc.lock records it, or,
for a dep that is no stage's out (a folder of several stages' outs) or whose size no
longer matches the record, the hash DVC computes for it. Read through DVC's Repo (its
stage collection resolves matrix and foreach items, `${item.*}` included, and its outs
carry the locked hashes): dvc.api offers no view of a stage's deps.
"""

from __future__ import annotations

import os
from pathlib import Path


def data_inputs(root: Path, stage: str) -> list[tuple[str, str, str | None]]:
    """(path, DVC hash, stage that wrote it) of each data dep of `stage` (e.g. `nads@lenet`)
    in the DVC repository `root`, which must be the working directory (as DVC runs a stage)."""
    return stage_inputs(root, stage, params=False)[0]


def stage_inputs(root: Path, stage: str, params: bool = True) -> tuple[list[tuple[str, str, str | None]], dict]:
    """What determined a run of `stage`, from one reading of the DVC repository `root`: its data
    deps (as data_inputs gives them) and, with `params`, {key: value} of every params.yaml key
    that it or a stage upstream of it depends on (a sweep's `synthetic` and `nads` too)."""
    import networkx as nx
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    root = Path(root).resolve()
    if not (root / "dvc.yaml").exists():
        return [], {}
    with Repo(str(root)) as repo:
        (found,) = repo.stage.collect(stage)
        _check_git_outputs(found, root)
        produced = {_rel(o.fs_path, root): o for o in repo.index.outs}
        inputs = []
        for dep in found.deps:
            path = _rel(dep.fs_path, root)
            if isinstance(dep, ParamsDependency) or path.endswith(".py") or not (root / path).exists():
                continue
            out = produced.get(path)
            writer = out.stage.addressing if out is not None else None
            if out is not None and out.hash_info.value and _same_size(root / path, out.meta):
                inputs.append((path, out.hash_info.value, writer))
            else:
                inputs.append((path, dep.get_hash().value, writer))
        values: dict = {}
        for s in (found, *nx.descendants(repo.index.graph, found)) if params else ():  # (edges point upstream)
            for dep in s.deps:
                if isinstance(dep, ParamsDependency) and _rel(dep.fs_path, root) == "params.yaml":
                    values.update(dep.read_params())
    return inputs, values


def outputs(root: Path, stage: str) -> tuple[dict[str, str], dict[str, str]]:
    """({path: DVC hash} of each cached out of `stage` as it is in the workspace now, what
    dvc.lock will record when the stage exits (a folder's hash ends in .dir); the same as
    dvc.lock holds them still, from the stage's previous run). Metrics files (cache: false)
    are left out: they are in git, and their values in the run itself."""
    from dvc.repo import Repo

    root = Path(root).resolve()
    with Repo(str(root)) as repo:
        (found,) = repo.stage.collect(stage)
        cached = [o for o in found.outs if o.use_cache and Path(o.fs_path).exists()]
        now = {_rel(o.fs_path, root): o.get_hash().value for o in cached}
        locked = {_rel(o.fs_path, root): o.hash_info.value for o in cached if o.hash_info}
        return now, locked


def _check_git_outputs(found, root: Path) -> None:
    """Refuse to recompute a stage whose outputs are all the ones dvc.lock pins but for those that
    travel in git, not in the DVC remote (its metrics.json, cache: false): a dvc.lock copied
    without its commit, then `dvc pull`. Rerunning would only remake what git holds."""
    kept = [
        o
        for o in found.outs
        if not o.use_cache
        and (not Path(o.fs_path).exists() or (o.hash_info and o.get_hash().value != o.hash_info.value))
    ]
    cached = [o for o in found.outs if o.use_cache]
    if not kept or not cached or not all(o.hash_info and Path(o.fs_path).exists() for o in cached):
        return
    if any(o.get_hash().value != o.hash_info.value for o in cached):
        return
    from .errors import InputError

    missing = ", ".join(_rel(o.fs_path, root) for o in kept)
    raise InputError(
        f"{found.addressing}: {missing} missing or not the one dvc.lock pins, while every other output is: "
        "metrics travel in git, not in the DVC remote. Share and take results as a commit (git push "
        "and dvc push; the colleague: git pull and dvc pull), or get the file from the commit that "
        f"wrote this dvc.lock (git checkout COMMIT -- {missing}). To recompute the stage anyway, "
        f"delete one of its outputs first ({_rel(cached[0].fs_path, root)})"
    )


def _rel(path: str, root: Path) -> str:
    return Path(os.path.relpath(path, root)).as_posix()


def _same_size(path: Path, meta) -> bool:
    """Whether `path` still has the size (and file count) dvc.lock recorded for it."""
    if path.is_file():
        return meta.size in (None, path.stat().st_size)
    found = [f.stat().st_size for f in path.rglob("*") if f.is_file()]
    return meta.size in (None, sum(found)) and meta.nfiles in (None, len(found))
