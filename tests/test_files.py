"""A stage's outputs as one set: staged, journaled, moved; recovered after a kill."""

import hashlib
import json
import os
import subprocess
import sys

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


def journal(txn, moves):
    digest = hashlib.sha256(json.dumps(moves).encode()).hexdigest()
    files.write_json(txn / "journal.json", {"moves": moves, "sha256": digest})


DEAD = "999999999 1"  # no such process


def test_recovery_finishes_a_journaled_set_and_drops_an_unfinished_one(tmp_path):
    write_set(tmp_path, "v1")
    # A journaled set whose process died after moving the directory, before the file.
    txn = tmp_path / ".nads/staging/s"
    (txn / "out/1").mkdir(parents=True)
    (txn / "out/1/metrics.json").write_text("v2")
    (txn / "owner").write_text(DEAD)
    journal(
        txn,
        [
            [".nads/staging/s/out/0/bank", "data/bank"],  # moved already
            [".nads/staging/s/out/1/metrics.json", "results/s/metrics.json"],
        ],
    )
    # An unfinished set (no journal) of another dead stage, and one whose process is alive.
    for name, owner in (("dead", DEAD), ("running", files._identity(os.getppid()))):
        (tmp_path / ".nads/staging" / name / "out/0").mkdir(parents=True)
        (tmp_path / ".nads/staging" / name / "owner").write_text(owner)
    assert recover(tmp_path) == ["dead", "s"]
    assert (tmp_path / "results/s/metrics.json").read_text() == "v2"
    assert sorted(p.name for p in (tmp_path / ".nads/staging").iterdir()) == ["running"]


def test_an_owner_pid_reused_by_another_process_does_not_keep_a_set_alive(tmp_path):
    """A journal whose owner's PID now belongs to an unrelated live process (here: our
    parent, with another start time) is a dead owner's: recovered, not skipped."""
    write_set(tmp_path, "v1")
    txn = tmp_path / ".nads/staging/s"
    (txn / "out/0").mkdir(parents=True)
    (txn / "out/0/metrics.json").write_text("v2")
    (txn / "owner").write_text(f"{os.getppid()} 1")  # alive, but started at another time
    journal(txn, [[".nads/staging/s/out/0/metrics.json", "results/s/metrics.json"]])
    assert recover(tmp_path) == ["s"]
    assert (tmp_path / "results/s/metrics.json").read_text() == "v2"


@pytest.mark.parametrize(
    "content, why",
    [
        ('[["out/0/eigen', "unreadable (JSONDecodeError)"),
        ("", "unreadable (JSONDecodeError)"),
        ('{"a": 1}', "unreadable (KeyError)"),
        ('{"moves": [], "sha256": "0"}', "checksum mismatch"),
        ([["../../outside/a", "results/s/a"]], "outside the repository"),
        ([["/tmp/b", "results/s/b"]], "outside the repository"),
        ([[".nads/staging/s/out/0/metrics.json", "../outside/metrics.json"]], "outside the repository"),
        ([["results/s/metrics.json", "results/s/x.json"]], "is not in the staging"),
    ],
)
def test_a_journal_that_does_not_verify_is_set_aside_in_one_line_never_followed(tmp_path, capfd, content, why):
    write_set(tmp_path, "v1")
    repo = tmp_path / "repo"
    repo.mkdir()
    os.rename(tmp_path / "data", repo / "data")
    os.rename(tmp_path / "results", repo / "results")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "a").write_text("not the repository's")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    txn = repo / ".nads/staging/s"
    (txn / "out/0").mkdir(parents=True)
    (txn / "out/0/metrics.json").write_text("v2")
    (txn / "owner").write_text(DEAD)
    if isinstance(content, str):
        (txn / "journal.json").write_text(content)
    else:
        journal(txn, content)
    capfd.readouterr()
    assert recover(repo) == ["s"]
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and why in err and "dvc repro -f s" in err, err
    assert {p: p.read_bytes() for p in before} == before  # nothing moved, in or out of the repository
    assert not (repo / ".nads/staging/s").exists() and len(list((repo / ".nads/damaged").iterdir())) == 1
    assert recover(repo) == []  # and the next start is quiet


def test_an_output_folder_that_leads_outside_the_repository_is_refused(tmp_path):
    repo, outside = tmp_path / "repo", tmp_path / "outside"
    (repo / "results/nads").mkdir(parents=True)
    outside.mkdir()
    (repo / "results/nads/logreg").symlink_to(outside)
    with pytest.raises(files.InputError, match=r"output folder results/nads/logreg resolves to .*/outside, outside"):
        with OutputSet("nads@logreg", repo) as outs:
            outs.folder("results/nads/logreg")
    with pytest.raises(files.InputError, match="outside the repository"):
        with OutputSet("x", repo) as outs:
            outs.folder("../elsewhere")
    assert not any(outside.iterdir()) and not any((repo / ".nads/staging").iterdir())


ACROSS = """
import os, sys
from pathlib import Path
from nads import files
from nads.files import OutputSet, recover
root = Path(sys.argv[1])
assert os.stat(root / "results/s").st_dev != os.stat(root).st_dev  # really another filesystem
for version in ("v1", "v2"):
    with OutputSet("s", root) as outs:
        results = outs.folder("results/s")
        (results / "metrics.json").write_text(version)
        (results / "table").mkdir()
        (results / "table" / version).write_text(version)
        (outs.folder("data") / "bank.npy").write_text(version)
print(sorted(p.name for p in (root / "results/s").iterdir()), (root / "results/s/metrics.json").read_text(),
      sorted(p.name for p in (root / "results/s/table").iterdir()))
# Killed after copying beside the destination, before the journal: the copy goes, v2 stands.
txn = root / ".nads/staging/s"
(txn / "out/0").mkdir(parents=True)
(root / "results/s/.nads-incoming-s").mkdir()
(root / "results/s/.nads-incoming-s/metrics.json").write_text("v3")
(txn / "incoming").write_text("results/s/.nads-incoming-s\\n")
(txn / "owner").write_text("999999999 1")
print(recover(root), sorted(p.name for p in (root / "results/s").iterdir()))
"""


def test_outputs_on_another_filesystem_are_copied_beside_then_renamed(tmp_path):
    """results/s on its own tmpfs (as `-v $PWD/out:/nads/results` gives a container): the
    set commits (v1 then v2), and a copy left by a kill before the journal is removed."""
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs tmpfs /mnt"], capture_output=True)
    if probe.returncode:
        pytest.skip(f"no private mount namespace here: {probe.stderr.decode().strip()}")
    (tmp_path / "results/s").mkdir(parents=True)
    script = f"mount -t tmpfs tmpfs {tmp_path}/results/s && exec {sys.executable} -c '{ACROSS}' {tmp_path}"
    p = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == ["['metrics.json', 'table'] v2 ['v2']", "['s'] ['metrics.json', 'table']"]
    assert (tmp_path / "data/bank.npy").read_text() == "v2"  # the same-filesystem folder, as before
