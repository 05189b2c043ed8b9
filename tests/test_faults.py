"""Faults, with real processes and real signals: kills at every write, Ctrl-C and SIGTERM,
a lost tracking store, stale code deps, bad params and inputs, moved input files.

Each test works on a private copy of the tiny pipeline built once (conftest.built).
"""

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
from conftest import ROOT, run
from servers import free_port, start_mlflow_server
from test_dvc_yaml import NOT_DEPS, expected_code_deps, stages

pytestmark = pytest.mark.slow


def digest(folder: Path) -> dict:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != ".gitignore"
    }


def stage(repo, *args, env=None, check=False):
    return run([sys.executable, "-m", *args], repo.path, {**repo.env, **(env or {})}, check=check)


def ran(proc) -> set:
    return {line.split("'")[1] for line in proc.stdout.splitlines() if line.startswith("Running stage")}


def mlflow_runs(repo, name):
    mlflow.set_tracking_uri(repo.tracking_uri())
    return mlflow.search_runs(experiment_names=["nads"], filter_string=f"tags.mlflow.runName = '{name}'")


def test_editing_any_module_a_stage_imports_makes_dvc_status_list_that_stage(built_copy):
    repo = built_copy
    code = [p for p in (repo.path / "nads").rglob("*.py")] + [p for p in (repo.path / "stages").glob("*.py")]
    for p in code:
        p.write_text(p.read_text() + "# an edit\n")
    status = json.loads(repo.dvc("status", "--json").stdout)
    defined = stages()
    for name in status:
        changed = {path for entry in status[name] for path in entry.get("changed deps", {}) if path.endswith(".py")}
        assert changed == expected_code_deps(defined[name.split("@")[0]]["cmd"]), name
    listed = set(status)
    every = {line.strip() for line in repo.dvc("stage", "list", "--name-only").stdout.splitlines() if line.strip()}
    assert listed == every  # every stage imports some edited module
    # The modules left out really are: editing only them changes no stage.
    repo.git("checkout", "--", "nads", "stages")
    for name in NOT_DEPS:
        p = repo.path / name
        p.write_text(p.read_text() + "# an edit\n")
    # (model@* rehash all of nads/models/, the registry core included, in a fraction of a
    # second: their hashes hold, so nothing that reads them reruns.)
    assert set(json.loads(repo.dvc("status", "--json").stdout)) <= {s for s in every if s.startswith("model@")}
    repo.dvc("repro", "model")
    assert "Data and pipelines are up to date" in repo.dvc("status").stdout


def test_a_stage_killed_at_any_write_leaves_one_complete_set_of_outputs(built_copy):
    """nads@logreg, killed with SIGKILL at each of its writes: three files staged, the journal,
    three moves. Before the journal the old set stands; after it, the next start completes the new."""
    repo = built_copy
    out = repo.path / "results/nads/logreg"
    repo.set_params(nads={"seed": 5, "compare_autograd": False})
    old_files = {p.name: p.read_bytes() for p in out.iterdir() if p.name != ".gitignore"}

    def restore():
        shutil.rmtree(repo.path / ".nads", ignore_errors=True)
        for name, data in old_files.items():
            (out / name).write_bytes(data)

    old = digest(out)
    stage(repo, "stages.nads", "logreg", check=True)
    new = digest(out)
    assert set(new) == set(old) and all(new[f] != old[f] for f in new)
    states = []
    for k in range(1, 30):
        restore()
        proc = stage(repo, "stages.nads", "logreg", env={"NADS_KILL_AT_WRITE": str(k)})
        if proc.returncode == 0:
            break
        assert proc.returncode == -signal.SIGKILL, proc.stderr
        journal = list((repo.path / ".nads/staging").glob("*/journal.json"))
        now = digest(out)
        states.append((k, bool(journal)))
        if not journal:
            assert now == old, k  # nothing of the new set is visible
            if k == 2:  # eigenvalues.npy staged, metrics.json not: DVC still sees its last good version
                assert repo.dvc("checkout", "nads@logreg").returncode == 0
        else:
            assert all(now[f] in (old[f], new[f]) for f in old), k
            # The next start (here the recovery a stage runs first) completes the new set.
            run([sys.executable, "-c", "from nads.files import recover; print(recover())"], repo.path, repo.env)
            assert digest(out) == new, k
            assert not (repo.path / ".nads/staging").exists() or not any((repo.path / ".nads/staging").iterdir())
    assert k == 8 and [j for _, j in states] == [False] * 3 + [True] * 4, states
    assert digest(out) == new
    # Every killed run was marked KILLED by the run that started after it; none is left RUNNING.
    statuses = mlflow_runs(repo, "nads@logreg")["status"].value_counts().to_dict()
    assert statuses.get("RUNNING", 0) == 0 and statuses["KILLED"] == 7


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_keeps_the_outputs_ends_the_run_killed_and_every_worker(built_copy, sig):
    repo = built_copy
    out = repo.path / "results/sweep/lenet/fourier"
    before = digest(out)
    repo.set_params(sweep={"epochs": 200})
    # A session of its own: SIGINT goes to the whole group, as a terminal's Ctrl-C does; SIGTERM to the stage only.
    proc = subprocess.Popen(
        [sys.executable, "-m", "stages.sweep", "lenet", "fourier"],
        cwd=repo.path,
        env=repo.env,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        seen, deadline = "", time.time() + 90
        while "sweep lenet fourier" not in seen and time.time() < deadline:
            seen += proc.stderr.read(1)
        time.sleep(2)  # training under way, in worker processes
        workers = children(proc.pid)
        assert proc.poll() is None and workers
        if sig == signal.SIGINT:
            os.killpg(proc.pid, sig)
        else:
            os.kill(proc.pid, sig)
        proc.wait(timeout=30)
        assert proc.returncode == 130
        assert "sweep-fourier@lenet: interrupted; the previous outputs are unchanged" in proc.stderr.read()
        assert digest(out) == before
        deadline = time.time() + 10
        while any(alive(w) for w in workers) and time.time() < deadline:
            time.sleep(0.2)
        assert not any(alive(w) for w in workers)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    runs = mlflow_runs(repo, "sweep-fourier@lenet")
    assert list(runs.sort_values("start_time")["status"])[-1] == "KILLED"


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.exists() else []


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_store_that_cannot_take_a_run_fails_first_in_one_line(built_copy):
    repo = built_copy
    out = repo.path / "results/nads/logreg"
    before = digest(out)
    down = f"http://127.0.0.1:{free_port()}"
    t0 = time.time()
    proc = stage(repo, "stages.nads", "logreg", env={"MLFLOW_TRACKING_URI": down})
    assert time.time() - t0 < 20
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith(f"error: MLflow tracking store {down}: no answer to its health check within 5 s")
    nowhere = f"sqlite:///{repo.path / 'params.yaml' / 'mlflow.db'}"  # a file where its folder should be
    proc = stage(repo, "stages.nads", "logreg", env={"MLFLOW_TRACKING_URI": nowhere})
    assert proc.returncode == 2 and proc.stderr.startswith(f"error: MLflow tracking store {nowhere}: no folder")
    garbage = repo.path / "other.db"
    garbage.write_bytes(b"this is not a database" * 100)
    proc = stage(repo, "stages.nads", "logreg", env={"MLFLOW_TRACKING_URI": f"sqlite:///{garbage}"})
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith(
        f"error: MLflow tracking store sqlite:///{garbage}: {garbage} is not a readable SQLite"
    )
    assert digest(out) == before


@pytest.mark.long
@pytest.mark.parametrize("fault", ["SIGKILL", "SIGSTOP"], ids=["server killed", "server hung"])
def test_a_store_lost_mid_run_costs_neither_compute_nor_log(built_copy, tmp_path, fault):
    """A real mlflow server, killed (or stopped: hung) while sweep-fourier@lenet trains:
    the stage finishes with its outputs, at most a few seconds late, its run is not KILLED,
    and once the server is back `nads runs --sync` delivers the rest: FINISHED, whole log."""
    repo, port = built_copy, free_port()
    uri = f"http://127.0.0.1:{port}"
    server = start_mlflow_server(tmp_path / "server.db", port)
    try:
        repo.set_params(sweep={"epochs": 6})
        out = repo.path / "results/sweep/lenet/fourier"
        before = digest(out)
        t0 = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "stages.sweep", "lenet", "fourier"],
            cwd=repo.path,
            env={**repo.env, "MLFLOW_TRACKING_URI": uri},
            stderr=subprocess.PIPE,
            text=True,
        )
        # The first of its 16 directions is done (kept for resume): the sweep is training.
        while not list(repo.path.glob(".nads/partial/sweep-fourier@lenet/*/job*.pkl")) and proc.poll() is None:
            time.sleep(0.05)
        assert proc.poll() is None
        lost_at = time.monotonic() - t0
        os.killpg(server.pid, getattr(signal, fault))  # the store goes away while the sweep trains
        rest = proc.communicate(timeout=300)[1]
        took = time.monotonic() - t0
        assert proc.returncode == 0, rest
        assert "did not take the whole log of run" in rest and "nads runs --sync" in rest, rest
        after = digest(out)
        assert set(after) == set(before) and after["accuracy.csv"] != before["accuracy.csv"]
        (spool,) = (repo.path / ".nads/runs").iterdir()
        if fault == "SIGKILL":
            server.wait()
            server = start_mlflow_server(tmp_path / "server.db", port)  # back, on the same database
        else:
            os.killpg(server.pid, signal.SIGCONT)
        sync = subprocess.run(
            [sys.executable, "-m", "nads.cli", "runs", "--sync", "--tracking-uri", uri],
            cwd=repo.path,
            env=repo.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert sync.returncode == 0 and "delivered 1 run log(s)" in sync.stdout, sync.stderr
        assert not spool.exists()
        client = mlflow.MlflowClient(uri)
        run = client.get_run(spool.name)
        assert run.info.status == "FINISHED" and run.data.tags["nads.log"] == "complete"
        assert run.data.metrics["mean_test_acc"] >= 0 and run.data.params["sweep.epochs"] == "6"
        logged = {a.path for a in client.list_artifacts(spool.name)}
        assert {"metrics.json", "accuracy.csv"} <= logged, logged
        print(f"\n{fault}: store lost at {lost_at:.1f} s, stage done at {took:.1f} s")
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGCONT)
            os.killpg(server.pid, signal.SIGKILL)


def test_bad_params_models_and_files_fail_in_one_line_before_any_compute(built_copy):
    repo = built_copy
    before = digest(repo.path / "results")

    def one_line(proc, start):
        assert proc.returncode != 0
        lines = [line for line in (proc.stderr + proc.stdout).splitlines() if start in line]
        assert lines, proc.stderr + proc.stdout
        return lines[0]

    # A typo'd key: `dvc repro` stops at its first stage; `dvc repro -s` of the stage whose section
    # holds it runs that stage (it depends on its whole section), which names it; every stage refuses.
    params = repo.params()
    params["nads"]["n_netwrks"] = 4096
    (repo.path / "params.yaml").write_text(__import__("yaml").safe_dump(params))
    proc = repo.dvc("repro", check=False)
    assert ran(proc) == {"check-params"} and "nads.n_netwrks = 4096: unknown key" in one_line(proc, "n_netwrks")
    proc = repo.dvc("repro", "-s", "nads@lenet", check=False)
    assert ran(proc) == {"nads@lenet"} and "nads.n_netwrks = 4096: unknown key" in one_line(proc, "n_netwrks")
    for program in (["stages.nads", "lenet"], ["stages.synthetic"], ["stages.report"]):
        proc = stage(repo, *program)
        assert proc.returncode == 2 and proc.stderr.startswith("error: nads.n_netwrks = 4096: unknown key")
    del params["nads"]["n_netwrks"]
    # A swept architecture without NADs: the first stage DVC runs names the parameter.
    params["archs"]["sweep"] = ["logreg", "lenet", "vgg11_bn"]
    (repo.path / "params.yaml").write_text(__import__("yaml").safe_dump(params))
    proc = repo.dvc("repro", check=False)
    assert ran(proc) == {"check-params"}
    assert "archs.sweep = ['logreg', 'lenet', 'vgg11_bn']: vgg11_bn not in archs.nads" in proc.stderr + proc.stdout
    params["archs"]["sweep"] = ["logreg", "lenet"]
    # A user model that takes one channel, given to a stage that feeds it three.
    user = "toy_models:one_channel_only"
    params["archs"]["nads"] = ["logreg", "lenet", user]
    params["archs"]["poison"] = [user]
    (repo.path / "params.yaml").write_text(__import__("yaml").safe_dump(params))
    env = {"PYTHONPATH": str(ROOT / "tests")}
    proc = stage(repo, "stages.poison", user, env=env)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith(
        f"error: archs.poison: arch = '{user}': it cannot take inputs of shape (C, H, W) = (3, 32, 32)"
    )
    proc = stage(repo, "stages.nads", "toy_models:x/../../../y", env=env)
    assert proc.returncode == 2 and "is not one of them" in proc.stderr and not (repo.path.parent / "y").exists()
    params["archs"]["nads"] = ["logreg", "lenet"]
    params["archs"]["poison"] = ["lenet"]
    (repo.path / "params.yaml").write_text(__import__("yaml").safe_dump(params))
    # A damaged input file: named, with the command that restores it.
    noise = repo.path / "data/synthetic/noise_train.npy"
    noise.chmod(0o644)
    noise.write_bytes(b"garbage" * 100)
    proc = stage(repo, "stages.sweep", "lenet", "fourier")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith("error: data/synthetic/noise_train.npy is corrupt (not a readable .npy array")
    assert proc.stderr.strip().endswith("restore it: dvc checkout data/synthetic (or dvc repro -f synthetic)")
    repo.dvc("checkout", "--force", "data/synthetic")
    assert stage(repo, "nads.cli", "check-params").returncode == 0
    assert digest(repo.path / "results") == before


def test_the_cifar_copy_is_an_input_by_content_not_by_path(built_copy, tmp_path):
    repo = built_copy
    lock = (repo.path / "dvc.lock").read_text()
    assert str(tmp_path.parent) not in lock and "/tmp/" not in lock  # no path of this machine
    moved = tmp_path / "elsewhere" / "cifar"
    shutil.copytree(repo.path / "data/raw/cifar10/folder", moved)  # the same bytes as first fetched, elsewhere
    # The offline command of docs/pipeline.md in the environment already there (NADS_VENV=0): the copy is fetched again.
    proc = run(["make", "repro", "NADS_VENV=0", f"CIFAR10={moved}"], repo.path, repo.env)
    assert ran(proc) == {"fetch@cifar10"}  # same bytes: nothing downstream reruns
    assert "Data and pipelines are up to date" in repo.dvc("status").stdout
    assert (repo.path / "dvc.lock").read_text().count(str(moved)) == 0


def test_a_full_disk_is_one_line_naming_the_device_and_its_free_space(repo):
    """.nads on a real 64 KiB tmpfs (a private mount namespace): the synthetic bank
    does not fit in its staging; one line, status 2, no output written, no traceback."""
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs tmpfs /mnt"], capture_output=True)
    if probe.returncode:
        pytest.skip(f"no private mount namespace here: {probe.stderr.decode().strip()}")
    (repo.path / ".nads").mkdir()
    before = tree_digest(repo.path)
    script = f"mount -t tmpfs -o size=64k tmpfs .nads && exec {sys.executable} -m stages.synthetic"
    p = subprocess.run(
        ["unshare", "-m", "sh", "-c", script], cwd=repo.path, env=repo.env, capture_output=True, text=True
    )
    assert p.returncode == 2, p.stderr
    line = p.stderr.strip().splitlines()[-1]
    assert re.fullmatch(
        r"error: synthetic: no space left on the device of \S+/\.nads\S* \(\d+\.\d MiB free\); .*", line
    )
    assert "Traceback" not in p.stderr
    assert tree_digest(repo.path) == before


def tree_digest(root: Path) -> dict:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for d in ("data", "results")
        for p in (root / d).rglob("*")
        if p.is_file()
    }
