"""A stage's outputs as one set: staged, journaled, moved; recovered after a kill."""

import json
import os

import pytest

from nads import files
from nads.files import OutputSet, recover


def write_set(root, version: str):
    with OutputSet("s", root) as outs:
        data, results = outs.folder("data"), outs.folder("results/s")
        (data / "bank").mkdir()
        (data / "bank" / f"only_in_{version}.npy").write_text(version)
        (results / "metrics.json").write_text(version)
        assert (
            not (root / "results/s/metrics.json").exists() or (root / "results/s/metrics.json").read_text() != version
        )  # nothing visible before the commit
        assert outs.final(results / "metrics.json") == root / "results/s/metrics.json"


def state(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if ".nads" not in p.parts)


def test_a_set_replaces_files_and_whole_directories_together(tmp_path):
    write_set(tmp_path, "v1")
    write_set(tmp_path, "v2")  # the directory is replaced as a unit: no file of v1 lingers in it
    assert state(tmp_path) == [
        "data",
        "data/bank",
        "data/bank/only_in_v2.npy",
        "results",
        "results/s",
        "results/s/metrics.json",
    ]
    assert (tmp_path / "results/s/metrics.json").read_text() == "v2"
    assert not any((tmp_path / ".nads/staging").iterdir())


def test_a_failure_before_the_commit_changes_nothing(tmp_path):
    write_set(tmp_path, "v1")
    with pytest.raises(RuntimeError):
        with OutputSet("s", tmp_path) as outs:
            (outs.folder("results/s") / "metrics.json").write_text("v2")
            raise RuntimeError("the stage failed")
    assert (tmp_path / "results/s/metrics.json").read_text() == "v1"
    assert not any((tmp_path / ".nads/staging").iterdir())


def test_recovery_finishes_a_journaled_set_and_drops_an_unfinished_one(tmp_path):
    write_set(tmp_path, "v1")
    # A journaled set whose process died after moving the directory, before the file.
    txn = tmp_path / ".nads/staging/s"
    (txn / "out/1").mkdir(parents=True)
    (txn / "out/1/metrics.json").write_text("v2")
    (txn / "owner").write_text("999999999")  # no such process
    files.write_json(
        txn / "journal.json",
        [
            [".nads/staging/s/out/0/bank", "data/bank"],  # moved already
            [".nads/staging/s/out/1/metrics.json", "results/s/metrics.json"],
        ],
    )
    # An unfinished set (no journal) of another dead stage, and one whose process is alive.
    for name, pid in (("dead", 999999999), ("running", os.getpid() + 0)):
        (tmp_path / ".nads/staging" / name / "out/0").mkdir(parents=True)
        (tmp_path / ".nads/staging" / name / "owner").write_text(str(pid if name == "dead" else os.getppid()))
    assert recover(tmp_path) == ["dead", "s"]
    assert (tmp_path / "results/s/metrics.json").read_text() == "v2"
    assert sorted(p.name for p in (tmp_path / ".nads/staging").iterdir()) == ["running"]


def test_corrupt_arrays_are_named_with_their_restore_command(tmp_path):
    p = tmp_path / "x.npy"
    p.write_bytes(b"\x93NUMPY" + b"garbage" * 20)
    with pytest.raises(
        files.CorruptInput,
        match=r"x.npy is corrupt \(not a readable .npy array.*; restore it: "
        r"dvc checkout x$",
    ):
        files.load_npy(p, "dvc checkout x")
    files.save_npy(p, [1, 2])
    assert files.load_npy(p, "").tolist() == [1, 2]
    assert json.loads(json.dumps(1)) == 1
