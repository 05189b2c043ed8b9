"""A team's setup, with real servers on localhost (tests/servers.py): an MLflow tracking server
on PostgreSQL with proxied artifacts, DVC remotes over S3 (moto's server) and SSH (sshd, key
login, host key checked), experiments shared through a git remote, and `nads runs` telling a
teammate's runs from one's own."""

from __future__ import annotations

import getpass
import hashlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
from conftest import run
from servers import mlflow_server, postgres, s3_server, sshd
from test_faults import ran, stage
from test_pipeline import digest

from nads import cli, tracking


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def nads_cli(*args, cwd, env, check=True):
    return run([sys.executable, "-m", "nads.cli", *args], cwd, env, check)


@pytest.mark.long
@pytest.mark.slow
def test_a_server_on_postgresql_keeps_the_whole_log_through_a_database_outage(built_copy, tmp_path):
    """mlflow server on PostgreSQL, artifacts proxied to a folder: its database down at a stage
    start is one line naming the cause, before any compute; down for 5 s while a sweep trains,
    it costs nothing: the run ends FINISHED with its whole log, its artifacts byte-identical
    through the server; `make ui` points at the server's own UI."""
    repo = built_copy
    out = "results/sweep/lenet/fourier"
    with postgres() as db, mlflow_server(db.uri, artifacts=tmp_path / "artifacts") as uri:
        env = {"MLFLOW_TRACKING_URI": uri}
        before = digest(repo.path, out)
        # A server in use: it has opened its store (its first request runs the schema migrations,
        # with MLflow's own retries: minutes against a database that is down).
        mlflow.MlflowClient(uri).search_experiments()
        db.stop()
        t0 = time.monotonic()
        proc = stage(repo, "stages.sweep", "lenet", "fourier", env=env)
        assert time.monotonic() - t0 < 30 and proc.returncode == 2, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert proc.stderr.startswith(f"error: MLflow tracking store {uri}: the server answers, but not its backend")
        assert "Connection refused" in proc.stderr and "sqlalche.me" not in proc.stderr
        assert digest(repo.path, out) == before
        db.start()

        repo.set_params(sweep={"epochs": 6})
        proc = subprocess.Popen(
            [sys.executable, "-m", "stages.sweep", "lenet", "fourier"],
            cwd=repo.path,
            env={**repo.env, **env},
            stderr=subprocess.PIPE,
            text=True,
        )
        while not list(repo.path.glob(".nads/partial/sweep-fourier@lenet/*/job*.pkl")) and proc.poll() is None:
            time.sleep(0.05)
        assert proc.poll() is None  # training: the database goes away for 5 s
        db.stop()
        time.sleep(5)
        db.start()
        rest = proc.communicate(timeout=300)[1]
        assert proc.returncode == 0, rest
        left = (repo.path / ".nads/runs").is_dir() and any((repo.path / ".nads/runs").iterdir())
        if left:  # the stage ended before the courier's next attempt: the log waits on disk
            nads_cli("runs", "--sync", cwd=repo.path, env={**repo.env, **env})
        print(f"\ndatabase down 5 s mid-stage; whole log {'after --sync' if left else 'at the stage end'}")
        client = mlflow.MlflowClient(uri)
        exp = client.get_experiment_by_name("nads")
        (run_,) = client.search_runs([exp.experiment_id], "tags.`mlflow.runName` = 'sweep-fourier@lenet'")
        assert run_.info.status == "FINISHED" and run_.data.tags["nads.log"] == "complete"
        assert run_.data.params["sweep.epochs"] == "6" and run_.data.metrics["mean_test_acc"] >= 0
        got = Path(client.download_artifacts(run_.info.run_id, "accuracy.csv", str(tmp_path / "dl")))
        assert sha(got) == sha(repo.path / out / "accuracy.csv")  # through the server; the client has no artifact store
        assert exp.artifact_location.startswith("mlflow-artifacts:")

        ui = run([sys.executable, "-m", "nads.ui"], repo.path, {**repo.env, **env})
        assert (
            ui.stdout.splitlines()[-1] == f"{uri}/#/experiments/{exp.experiment_id}/runs?workflowType=machine_learning"
        )


def refused(uri: str, monkeypatch) -> str:
    """What a stage starting against the store `uri` says when the store refuses it."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # (again: a stage start exports the URI it used)
    with pytest.raises(tracking.StoreError) as e:
        with tracking.stage_run("synthetic", {}, "quick"):
            raise AssertionError("no stage runs")
    return str(e.value)


def started(uri: str, monkeypatch, seed: int):
    """The run of a stage started (and ended) against the store `uri`, as the store has it."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    with tracking.stage_run("synthetic", {"synthetic": {"seed": seed}}, "quick") as r:
        run_id = r.run.info.run_id
    return mlflow.MlflowClient(uri).get_run(run_id)


@pytest.mark.long
def test_a_database_used_directly_is_refused_unless_every_clone_reaches_its_artifacts(tmp_path, monkeypatch):
    """MLFLOW_TRACKING_URI=postgresql://...: the experiment would keep this clone's folder as
    everyone's artifact location; refused in one line naming the server form, password hidden.
    An experiment whose artifacts are on S3 is every clone's: that store is used."""
    with postgres() as db:
        uri = db.uri.replace("nads@", "nads:s3cret@")  # (trust auth: the password is not checked)
        monkeypatch.setenv("DVC_ROOT", str(tmp_path))
        said = refused(uri, monkeypatch)
        assert "\n" not in said and "s3cret" not in said and "nads:***@" in said, said
        assert "mlflow server --backend-store-uri" in said and "--artifacts-destination" in said
        assert mlflow.MlflowClient(uri).get_experiment_by_name("nads") is None  # nothing was created
        mlflow.MlflowClient(uri).create_experiment("nads", artifact_location="s3://team-bucket/mlflow")
        got = started(uri, monkeypatch, seed=3)
        assert got.info.status == "FINISHED" and got.data.params["synthetic.seed"] == "3"


def test_a_server_with_mlflows_login_takes_the_runs_of_its_users_only(tmp_path, monkeypatch):
    """MLflow's basic-auth app: a stage without credentials, or with wrong ones, fails first in one
    line naming the variables to set; a user's run is tagged with the login (the UI's User)."""
    admin = {"MLFLOW_AUTH_ADMIN_PASSWORD": "admin-pw-2026", "MLFLOW_FLASK_SERVER_SECRET_KEY": "test"}
    with mlflow_server(tmp_path / "s.db", None, None, None, "--app-name", "basic-auth", env=admin) as uri:
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("DVC_ROOT", str(tmp_path))
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "admin-pw-2026")
        from mlflow.server.auth.client import AuthServiceClient

        AuthServiceClient(uri).create_user("alice", "alice-pw-2026")
        for user, password, said in ((None, None, "a request without"), ("alice", "wrong", "these")):
            for k, v in (("MLFLOW_TRACKING_USERNAME", user), ("MLFLOW_TRACKING_PASSWORD", password)):
                monkeypatch.delenv(k) if v is None else monkeypatch.setenv(k, v)
            assert re.search(f"refused {said} credentials \\(HTTP 401\\); set MLFLOW_", refused(uri, monkeypatch))
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "alice-pw-2026")
        got = started(uri, monkeypatch, seed=2)
        assert got.info.status == "FINISHED" and got.data.tags["mlflow.user"] == "alice"


def test_nads_runs_tells_a_teammates_runs_from_ones_own_and_stops_quietly_at_a_closed_pipe(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    exp = client.create_experiment("nads")
    made = [
        ("alice", "gpu-1", "main", "a1b2c3d4e5"),
        ("bob", "gpu-2", "main", "a1b2c3d4e5"),
        ("alice", "laptop", "poison-k", "ffee001122"),
    ]
    for i, (user, host, branch, commit) in enumerate(made):
        r = client.create_run(
            exp,
            run_name=f"nads@arch{i}",
            tags={"mlflow.user": user, "host": host, "git_branch": branch, "git_commit": commit, "git_dirty": "false"},
        )
        client.set_terminated(r.info.run_id)
    # An experiment's run of a stage the workspace ran too, and the headline of a predict run.
    r = client.create_run(exp, run_name="nads@arch0", tags={"dvc_exp_name": "seed-1", "mlflow.user": "carl"})
    client.set_terminated(r.info.run_id)
    r = client.create_run(exp, run_name="predict@lenet", tags={"mlflow.user": "dora"})
    for k, v in {"auc_nad": 0.97913, "n_train": 50000.0, "auc_fourier": float("nan")}.items():
        client.log_metric(r.info.run_id, k, v)
    client.set_terminated(r.info.run_id)
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}

    def shown(*filters) -> str:  # (in this process: the command's imports cost seconds each time)
        capsys.readouterr()
        assert cli.main(["runs", "--tracking-uri", uri, *filters]) == 0
        return capsys.readouterr().out

    def listed(*filters) -> list[str]:  # (below the store's line and the header)
        return sorted(line.split()[0] for line in shown(*filters).splitlines()[2:])

    out = shown().splitlines()
    assert out[1].split()[:3] == ["stage", "experiment", "status"]
    by_exp = {tuple(line.split()[:2]) for line in out[2:]}
    assert ("nads@arch0", "-") in by_exp and ("nads@arch0", "seed-1") in by_exp
    predict = next(line for line in out if line.startswith("predict@lenet"))
    assert "auc_nad=0.9791" in predict and "n_train=50000" in predict and "nan" not in predict
    # Columns line up: every stage name fits its column, whatever its length.
    starts = {line.index(line.split()[1], len(line.split()[0])) for line in out[2:]}
    assert len(starts) == 1, out
    assert listed("--user", "alice", "--branch", "main") == ["nads@arch0"]
    assert listed("--user", "dora") == ["predict@lenet"]
    assert listed("--user", "alice") == ["nads@arch0", "nads@arch2"]  # (carl's experiment run is not hers)
    assert listed("--host", "gpu-2") == ["nads@arch1"]
    assert listed("--branch", "poison-k") == ["nads@arch2"]
    assert listed("--commit", "a1b2") == ["nads@arch0", "nads@arch1"]
    assert listed("--user", "alice", "--commit", "a1b2") == ["nads@arch0"]
    line = shown("--user", "bob").splitlines()[2]
    assert "bob@gpu-2" in line and "main:a1b2c3d4" in line
    assert "no runs match --user carol" in shown("--user", "carol")
    # `nads runs | head -1`: the reader is gone before the listing is written.
    proc = subprocess.Popen(
        [sys.executable, "-m", "nads.cli", "runs", "--tracking-uri", uri],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 0 and err == "", err


def team_remote(repo, url: str, **local) -> None:
    """The clone's default remote becomes `team` at `url` (committed); `local` options stay
    in .dvc/config.local (credentials, key files)."""
    repo.dvc("remote", "add", "-d", "team", url)
    for k, v in local.items():
        repo.dvc("remote", "modify", "--local", "team", k, str(v))


def arrays(root: Path) -> dict:
    return {p.name: sha(p) for p in sorted((root / "results/nads/logreg").glob("*.npy"))}


@pytest.mark.long
@pytest.mark.slow
def test_results_and_experiments_travel_through_an_s3_remote_and_a_git_remote(built_copy, tmp_path):
    """Push to S3 (moto's server: a real S3 API on localhost) and to a shared git remote; a
    fresh clone pulls byte-identical results, `dvc status` clean, nothing reruns; an
    experiment shared with `dvc exp push` arrives with `dvc exp pull` and applies byte for byte."""
    repo = built_copy
    creds = {"AWS_ACCESS_KEY_ID": "team", "AWS_SECRET_ACCESS_KEY": "team-secret", "AWS_DEFAULT_REGION": "us-east-1"}
    with s3_server("nads-team") as endpoint:
        repo.env.update(creds)
        team_remote(repo, "s3://nads-team/dvc")
        repo.dvc("remote", "modify", "team", "endpointurl", endpoint)
        origin = tmp_path / "origin.git"
        run(["git", "init", "-q", "--bare", str(origin)], tmp_path)
        repo.git("remote", "add", "origin", str(origin))
        repo.git("add", "-A")
        repo.git("commit", "-qm", "results, S3 remote")
        repo.git("push", "-q", "origin", "HEAD:refs/heads/main")
        t0 = time.monotonic()
        repo.dvc("push")
        pushed = time.monotonic() - t0
        run(["git", "clone", "-q", "-b", "main", str(origin), str(tmp_path / "colleague")], tmp_path, repo.env)
        clone = type(repo)(tmp_path / "colleague", repo.remote)
        clone.env.update(creds)
        clone.dvc("pull")
        assert digest(clone.path, "results") == digest(repo.path, "results")
        assert "Data and pipelines are up to date" in clone.dvc("status").stdout
        assert ran(clone.dvc("repro")) == set()

        repo.dvc("exp", "run", "-n", "seed-1", "-S", "nads.seed=1", "nads@logreg")
        produced = arrays(repo.path)
        repo.dvc("exp", "push", "origin", "seed-1")
        clone.dvc("exp", "pull", "origin", "seed-1")
        assert arrays(clone.path) != produced
        clone.dvc("exp", "apply", "seed-1")
        assert arrays(clone.path) == produced and produced
        print(f"\nS3 push {pushed:.1f} s")


@pytest.mark.long
@pytest.mark.slow
def test_results_travel_through_an_ssh_remote_whose_host_key_is_checked(built_copy, tmp_path):
    """sshd on localhost, key login: an unknown host key is refused (nothing pushed); once
    known, push, and a fresh clone's pull is byte-identical, clean, nothing reruns."""
    repo = built_copy
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    known = home / ".ssh/known_hosts"
    with sshd(tmp_path / "sshd") as (port, key, host_line):
        store = tmp_path / "ssh-store"
        team_remote(repo, f"ssh://{getpass.getuser()}@127.0.0.1:{port}{store}", keyfile=key)
        repo.git("add", "-A")
        repo.git("commit", "-qm", "results, SSH remote")
        repo.env["HOME"] = str(home)  # the user's known_hosts: ~/.ssh/known_hosts
        known.write_text(
            "[127.0.0.1]:1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n"
        )
        refused = repo.dvc("push", check=False)
        assert refused.returncode != 0 and "Host key is not trusted" in refused.stderr + refused.stdout
        assert not store.exists() or not any(store.rglob("*.*"))
        known.write_text(host_line)
        repo.dvc("push")
        clone_path = tmp_path / "colleague"
        run(["git", "clone", "-q", str(repo.path), str(clone_path)], tmp_path, repo.env)
        clone = type(repo)(clone_path, repo.remote)
        clone.env["HOME"] = str(home)
        clone.dvc("remote", "modify", "--local", "team", "keyfile", str(key))
        clone.dvc("pull")
        assert digest(clone.path, "results") == digest(repo.path, "results")
        assert "Data and pipelines are up to date" in clone.dvc("status").stdout
        assert ran(clone.dvc("repro")) == set()
