"""Resume: finished jobs and training states kept while a stage runs, reused by its rerun,
never reused when what determines them changed; a stage killed with SIGKILL and rerun
gives the bytes of an uninterrupted run."""

import hashlib
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from nads import resume
from nads.config import Schedule
from nads.executor import LocalExecutor
from nads.train import init_model, train_batched

CALLS = None  # a file each job appends its number to: which jobs really ran
FAIL_AT = None  # the job that is interrupted (not in the jobs' shared data: not in the key)


def square(common, job):
    with open(CALLS, "a") as f:
        f.write(f"{job}\n")
    if job == FAIL_AT:
        raise KeyboardInterrupt  # as Ctrl-C would, mid-map
    return job * job * common["scale"]


def calls() -> list:
    ran = sorted(int(x) for x in CALLS.read_text().split()) if CALLS.exists() else []
    CALLS.unlink(missing_ok=True)
    return ran


@pytest.mark.parametrize("fold", [None, lambda a, b: a + b], ids=["map", "fold"])
def test_an_interrupted_map_reruns_only_the_jobs_it_had_not_finished(tmp_path, monkeypatch, fold):
    monkeypatch.setenv("NADS_CHECKPOINT_S", "0")  # a fold is kept after every job
    monkeypatch.setattr(sys.modules[__name__], "CALLS", tmp_path / "calls")
    keep = tmp_path / "partial"

    def run(scale, fail_at=None):
        monkeypatch.setattr(sys.modules[__name__], "FAIL_AT", fail_at)
        return LocalExecutor(1, keep=keep).map(square, list(range(6)), {"scale": scale}, "cpu", fold=fold)

    def expected(scale):
        return [j * j * scale for j in range(6)] if fold is None else sum(j * j * scale for j in range(6))

    with pytest.raises(KeyboardInterrupt):
        run(2, fail_at=4)
    assert calls() == [0, 1, 2, 3, 4] and keep.is_dir()
    stored = sorted(p.name for p in next(keep.iterdir()).iterdir())
    # a folded map keeps the fold of jobs 0-3, not one file per job
    assert stored == (["prefix.pkl"] if fold else [f"job{i}.pkl" for i in range(4)])
    assert run(2) == expected(2)
    assert calls() == [4, 5]  # only what was missing
    shutil.rmtree(keep)  # as the stage does once its outputs are in place

    with pytest.raises(KeyboardInterrupt):
        run(2, fail_at=3)
    calls()
    assert run(3) == expected(3)  # other shared data, another key: nothing reused
    assert calls() == list(range(6))


STOP_AFTER = -1  # the epoch whose end interrupts training (-1: none)
EPOCHS_RUN = []


def _train(common, job):
    """One training of two LeNets on random data."""
    x, y, schedule = common
    models = [init_model("lenet", i, schedule, 1, 2, 32) for i in range(2)]

    def on_epoch(epoch, trained, stats):
        EPOCHS_RUN.append(epoch)
        if epoch == STOP_AFTER:
            raise KeyboardInterrupt

    trained = train_batched(
        models,
        lambda idx: (x[idx].expand(2, *x[idx].shape), y[idx].expand(2, -1)),
        len(y),
        schedule,
        "cpu",
        on_epoch=on_epoch,
    )
    return {n: p.detach().clone() for n, p in trained.params.items()}


def test_training_resumes_from_its_last_saved_epoch_with_identical_parameters(tmp_path, monkeypatch):
    monkeypatch.setenv("NADS_CHECKPOINT_S", "0")  # save after every epoch
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(96, 1, 32, 32, generator=g), torch.randint(0, 2, (96,), generator=g)
    schedule = Schedule(epochs=4, batch_size=32, lr=0.05, momentum=0.9, weight_decay=5e-4, clip=0.5, seed=3)
    common = (x, y, schedule)
    whole = LocalExecutor(1).map(_train, [0], common, "cpu")[0]
    keep = tmp_path / "partial"

    # Interrupted in epoch 2's callback, before epoch 2's state is saved: the state on
    # disk is the one after epoch 1, so the rerun trains epochs 2 and 3.
    def run(stop_after=-1):
        monkeypatch.setattr(sys.modules[__name__], "STOP_AFTER", stop_after)
        EPOCHS_RUN.clear()
        return LocalExecutor(1, keep=keep).map(_train, [0], common, "cpu")[0]

    with pytest.raises(KeyboardInterrupt):
        run(stop_after=2)
    states = list(keep.rglob("*.pt"))
    assert len(states) == 1 and resume.load_training_state(states[0], "cpu")["epoch"] == 2
    resumed = run()
    assert EPOCHS_RUN == [2, 3]
    assert resumed.keys() == whole.keys()
    assert all(torch.equal(resumed[n], whole[n]) for n in whole)  # bit for bit

    # A state that fails its checksum (one bit of one weight flipped) is not resumed from.
    shutil.rmtree(keep)
    with pytest.raises(KeyboardInterrupt):
        run(stop_after=2)
    flip_bit(states[0], -5)
    again = run()
    assert EPOCHS_RUN == [0, 1, 2, 3]
    assert all(torch.equal(again[n], whole[n]) for n in whole)


def flip_bit(path: Path, at: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[at] ^= 0x10
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("fold", [None, lambda a, b: a + b], ids=["map", "fold"])
def test_stored_work_that_fails_verification_is_discarded_in_one_line_and_recomputed(
    tmp_path, monkeypatch, capfd, fold
):
    monkeypatch.setenv("NADS_CHECKPOINT_S", "0")
    monkeypatch.setattr(sys.modules[__name__], "CALLS", tmp_path / "calls")
    keep = tmp_path / "partial"
    expected = [j * j for j in range(6)] if fold is None else sum(j * j for j in range(6))

    def run(fail_at=None):
        monkeypatch.setattr(sys.modules[__name__], "FAIL_AT", fail_at)
        return LocalExecutor(1, keep=keep).map(square, list(range(6)), {"scale": 1}, "cpu", fold=fold)

    tampered = {
        "one bit flipped": lambda f: flip_bit(f, -3),  # still unpickles: only the checksum tells
        "garbage with a valid checksum": lambda f: resume._write(f, pickle.dumps("garbage")),
        "truncated": lambda f: f.write_bytes(f.read_bytes()[:20]),
    }
    for what, tamper in tampered.items():
        shutil.rmtree(keep, ignore_errors=True)
        with pytest.raises(KeyboardInterrupt):
            run(fail_at=4)
        calls()
        store = next(keep.iterdir())
        tamper(store / ("prefix.pkl" if fold else "job2.pkl"))
        (store / "jobfoo.pkl").write_bytes(b"stray")
        capfd.readouterr()
        assert run() == expected, what
        err = capfd.readouterr().err
        assert calls() == ([0, 1, 2, 3, 4, 5] if fold else [2, 4, 5]), what
        lines = [line for line in err.splitlines() if line.startswith("resume: ")]
        assert len(lines) == 2 and "discarded" in lines[0] and "jobfoo.pkl" in err, (what, err)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_a_stage_killed_mid_run_resumes_and_writes_the_bytes_of_an_uninterrupted_run(built_copy):
    """nads@logreg with 40 shards of networks: run whole; rerun it, SIGKILL it (and its
    workers) once a third of its shards are stored; rerun: same bytes, less time."""
    repo = built_copy
    repo.set_params(nads={"n_networks": 64 * 40, "compare_autograd": False})
    repo.env["NADS_CHECKPOINT_S"] = "1"
    out = repo.path / "results/nads/logreg"
    cmd = [sys.executable, "-m", "stages.nads", "logreg"]

    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=repo.path, env=repo.env, check=True, capture_output=True)
    whole_s = time.perf_counter() - t0
    whole = {f: digest(out / f) for f in ("nads.npy", "eigenvalues.npy", "metrics.json")}

    partial = repo.path / ".nads/partial/nads@logreg"
    proc = subprocess.Popen(
        cmd, cwd=repo.path, env=repo.env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    stored = 0
    deadline = time.monotonic() + 600
    while stored < 40 // 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
        prefixes = list(partial.glob("*/prefix.pkl"))
        if prefixes:
            stored = resume.JobStore(prefixes[0].parent).prefix()[0] or stored
    assert proc.poll() is None, "the run ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    # (more may have been stored meanwhile)
    stored = resume.JobStore(next(partial.glob("*/prefix.pkl")).parent).prefix()[0]
    assert 40 // 3 <= stored < 40
    t0 = time.perf_counter()
    rerun = subprocess.run(cmd, cwd=repo.path, env=repo.env, check=True, capture_output=True, text=True)
    rerun_s = time.perf_counter() - t0
    assert {f: digest(out / f) for f in whole} == whole
    first = next(line for line in re.split("[\r\n]", rerun.stderr) if line.startswith("NADs logreg"))
    assert f" {64 * stored}/2560 " in first  # its progress bar starts at the stored work
    assert not partial.exists()  # cleaned up once the outputs were in place
    print(
        f"\nnads@logreg, 2560 networks: whole run {whole_s:.1f} s; killed after {stored}/40 shards, "
        f"rerun {rerun_s:.1f} s (saved {whole_s - rerun_s:.1f} s)"
    )


def test_the_key_changes_with_a_users_model_module_and_nothing_else_of_it(tmp_path):
    """Resumed work (and a Ray task) must come from the code that built the networks:
    a user's module under archs/ is part of the fingerprint, byte for byte."""
    from nads.runtime import fingerprint

    archs = tmp_path / "archs"
    (archs / "sub").mkdir(parents=True)
    (archs / "mymod.py").write_text("import torch\nACT = torch.nn.ReLU\n")
    before = fingerprint(archs)
    assert fingerprint(archs) == before  # a pure function of the files
    (archs / "mymod.py").write_text("import torch\nACT = torch.nn.Tanh\n")
    tanh = fingerprint(archs)
    assert tanh != before
    (archs / "sub/helper.py").write_text("X = 1\n")  # a module the user's imports
    with_helper = fingerprint(archs)
    assert with_helper not in (before, tanh)
    (archs / "notes.txt").write_text("not code")  # only Python modules count
    assert fingerprint(archs) == with_helper
