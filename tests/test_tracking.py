import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading
import time

import mlflow
import pytest
import yaml

from nads import tracking, ui


def test_store_location_follows_dvc_root_and_env(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.chdir(tmp_path.parent)
    assert tracking.tracking_uri() == f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////elsewhere/x.db")
    assert tracking.tracking_uri() == "sqlite:////elsewhere/x.db"


def test_repo_root_is_found_from_a_subdirectory(tmp_path, monkeypatch):
    monkeypatch.delenv("DVC_ROOT", raising=False)
    (tmp_path / ".dvc").mkdir()
    (tmp_path / "a" / "b").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "a" / "b")
    assert tracking.repo_root() == tmp_path


def test_stage_run_logs_params_metrics_artifacts_and_fails_cleanly(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.setenv("DVC_STAGE", "nads@lenet")
    art = tmp_path / "m.json"
    art.write_text("{}")
    with tracking.stage_run("nads", {"nads": {"n_networks": 8, "shape": [1, 2]}}, "quick") as run:
        run.log_metrics({"acc": 0.5, "nested": {"k": 2}, "label": "text is skipped"})
        run.log_artifacts(art)
    with pytest.raises(RuntimeError):
        with tracking.stage_run("nads", {}, "quick"):
            raise RuntimeError("stage crashed")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # set_tracking_uri exports it
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    runs = mlflow.search_runs(experiment_names=["nads"], order_by=["start_time ASC"])
    assert list(runs["status"]) == ["FINISHED", "FAILED"]
    first = runs.iloc[0]
    assert first["tags.mlflow.runName"] == "nads@lenet"
    assert first["params.nads.n_networks"] == "8" and first["params.nads.shape"] == "[1, 2]"
    assert first["metrics.acc"] == 0.5 and first["metrics.nested.k"] == 2
    assert (tmp_path / "mlartifacts" / first["run_id"] / "artifacts" / "m.json").is_file()
    # What it computed with: the installed versions, this CPU, the arithmetic settings.
    import platform
    from importlib.metadata import version

    assert first["tags.env.torch"] == version("torch") and first["tags.env.numpy"] == version("numpy")
    assert first["tags.env.matplotlib"] == version("matplotlib")
    assert first["tags.env.python"] == platform.python_version()
    assert first["tags.env.cpu"] and first["tags.env.cuda"]
    assert first["tags.env.unlocked"] == "no"


def test_experiment_opens_as_model_training_and_make_ui_points_at_its_runs(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    db = tmp_path / "mlflow.db"
    assert ui.ui_url(db, port=5001) == "http://127.0.0.1:5001/#/experiments?workflowType=machine_learning"
    assert not db.exists()  # (looking did not create a store)
    # An experiment made by an earlier version of the code, without the tag, gets it.
    client = mlflow.MlflowClient(f"sqlite:///{db}")
    client.create_experiment("other")
    old = client.create_experiment("nads")
    assert tracking.KIND_TAG not in client.get_experiment(old).tags
    with tracking.stage_run("synthetic", {}, "quick"):
        pass
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert client.get_experiment(old).tags[tracking.KIND_TAG] == "custom_model_development"
    assert ui.ui_url(db) == f"http://127.0.0.1:5000/#/experiments/{old}/runs?workflowType=machine_learning"
    # A new store: the experiment is created with it.
    monkeypatch.setenv("DVC_ROOT", str(tmp_path / "new"))
    (tmp_path / "new").mkdir()
    with tracking.stage_run("synthetic", {}, "quick"):
        pass
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    new = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'new' / 'mlflow.db'}").get_experiment_by_name("nads")
    assert new.tags == {tracking.KIND_TAG: "custom_model_development"}


def test_system_metrics_every_interval_and_one_point_for_a_short_stage(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.setattr(tracking, "SAMPLE_S", 0.2)
    monkeypatch.setattr(tracking, "SAMPLES", 2)  # a point every 0.4 s
    with tracking.stage_run("sweep", {}, "quick") as long:
        time.sleep(2)
    monkeypatch.setattr(tracking, "SAMPLE_S", 60)
    with tracking.stage_run("sweep", {}, "quick") as short:
        t0 = time.time()
    ended = time.time() - t0
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    key = "system/cpu_utilization_percentage"
    steps = [m.step for m in client.get_metric_history(long.run.info.run_id, key)]
    assert 2 <= len(steps) <= 8 and steps == list(range(len(steps)))  # 2 s / 0.4 s, plus the last samples
    assert [m.step for m in client.get_metric_history(short.run.info.run_id, key)] == [0]
    assert {"system/system_memory_usage_megabytes", "system/disk_usage_percentage"} <= set(
        client.get_run(short.run.info.run_id).data.metrics
    )
    assert ended < 1.5  # stopping the sampler costs no sampling interval


def _write_yaml(path, data):
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def test_results_reach_the_store_before_progress_which_shows_live_in_a_tag(tmp_path, monkeypatch):
    from nads.progress import Monitor

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    with tracking.stage_run("sweep", {}, "quick") as run:
        monitor = Monitor(4, None, "dir", log=run.log_metrics, name="directions")
        monitor.handle(("advance", 1))  # the first progress point is logged at once
        monitor.handle(("record", {"system/progress/directions/acc": 0.75}, 1))
        deadline = time.time() + 30  # the courier delivers the tag while the stage computes
        while client.get_run(run.run.info.run_id).data.tags.get(tracking.PROGRESS_TAG) is None:
            assert time.time() < deadline, "no live progress tag in 30 s"
            time.sleep(0.1)
        live, live_ms = client.get_run(run.run.info.run_id).data, int(time.time() * 1000)
        time.sleep(0.01)
        monitor.handle(("advance", 3))
        monitor.close()
        run.log_metrics({"n_directions": 4, "mean_test_acc": 0.875, "timing": {"seconds": 2.5}})
    assert live.tags[tracking.PROGRESS_TAG].startswith("directions 1 done (25%)")
    assert not live.metrics  # nothing under system/ reached the store before the results
    data = client.get_run(run.run.info.run_id).data
    assert data.tags[tracking.PROGRESS_TAG] == "directions 4 done (100%), eta 0 s"
    # The store holds the results first, the headline first of all: MLflow's compare page plots
    # the first metric its runs share.
    keys = list(data.metrics)
    assert keys[:3] == ["mean_test_acc", "n_directions", "timing.seconds"], keys
    assert data.metrics["system/progress/directions/done"] == 4
    history = client.get_metric_history(run.run.info.run_id, "system/progress/directions/done")
    assert [(m.step, m.value) for m in history] == [(1, 1.0), (4, 4.0)]
    acc = client.get_metric_history(run.run.info.run_id, "system/progress/directions/acc")
    assert [(m.step, m.value) for m in acc] == [(1, 0.75)]
    # Each point keeps the time it was taken, not the time it was delivered.
    assert history[0].timestamp <= live_ms < history[1].timestamp


def test_data_inputs_are_the_deps_that_are_not_code_with_their_dvc_hashes(tmp_path, monkeypatch):
    from dvc.repo import Repo

    from nads import lineage

    Repo.init(str(tmp_path), no_scm=True)
    monkeypatch.chdir(tmp_path)  # (DVC runs a stage there)
    (tmp_path / "data" / "bank").mkdir(parents=True)
    (tmp_path / "data" / "bank" / "x.npy").write_bytes(b"bank")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.npy").write_bytes(b"nads of a")
    (tmp_path / "out" / "b.npy").write_bytes(b"nads of b")
    (tmp_path / "stage.py").write_text("")
    _write_yaml(
        tmp_path / "dvc.yaml",
        {
            "stages": {
                "bank": {"cmd": "x", "outs": ["data/bank"]},
                "nads": {"matrix": {"arch": ["a", "b"]}, "cmd": "x", "outs": ["out/${item.arch}.npy"]},
                "sweep": {
                    "matrix": {"arch": ["a", "b"]},
                    "cmd": "x",
                    "deps": ["stage.py", "data/bank", "out/${item.arch}.npy", "missing.npy"],
                },
                "report": {"cmd": "x", "deps": ["stage.py", "out"]},
            }
        },
    )
    _write_yaml(
        tmp_path / "dvc.lock",
        {
            "schema": "2.0",
            "stages": {
                "bank": {
                    "cmd": "x",
                    "outs": [{"path": "data/bank", "hash": "md5", "md5": "0123abcd.dir", "size": 4, "nfiles": 1}],
                },
                "nads@a": {"cmd": "x", "outs": [{"path": "out/a.npy", "hash": "md5", "md5": "aaaa", "size": 9}]},
                "nads@b": {"cmd": "x", "outs": [{"path": "out/b.npy", "hash": "md5", "md5": "bbbb", "size": 3}]},
            },
        },
    )
    # As dvc.lock records the upstream outs (the sizes agree)...
    assert lineage.data_inputs(tmp_path, "sweep@a") == [
        ("data/bank", "0123abcd.dir", "bank"),
        ("out/a.npy", "aaaa", "nads@a"),
    ]
    # ...hashed here, as DVC hashes a file, where the bytes are not the recorded ones...
    assert lineage.data_inputs(tmp_path, "sweep@b")[1] == (
        "out/b.npy",
        hashlib.md5(b"nads of b").hexdigest(),
        "nads@b",
    )
    # ...and a folder that is no stage's out, as DVC hashes a folder (the .dir object's md5).
    listing = json.dumps(
        sorted(
            [
                {"md5": hashlib.md5(b"nads of a").hexdigest(), "relpath": "a.npy"},
                {"md5": hashlib.md5(b"nads of b").hexdigest(), "relpath": "b.npy"},
            ],
            key=lambda e: e["relpath"],
        ),
        sort_keys=True,
    )
    assert lineage.data_inputs(tmp_path, "report") == [
        ("out", hashlib.md5(listing.encode()).hexdigest() + ".dir", None)
    ]


def test_each_stage_run_of_the_pipeline_logs_its_data_with_the_hashes_dvc_recorded(built):
    repo = built[0]
    lock = yaml.safe_load((repo.path / "dvc.lock").read_text())["stages"]
    client = mlflow.MlflowClient(repo.tracking_uri())
    runs = {}
    for run in client.search_runs(
        [client.get_experiment_by_name("nads").experiment_id], order_by=["attributes.start_time ASC"]
    ):
        runs[run.info.run_name] = run  # the latest of each stage
    assert {"sweep-fourier@lenet", "sweep-nad@lenet", "poison@lenet", "report"} <= set(runs)
    for name, run in runs.items():
        logged = {(i.dataset.name, i.dataset.digest) for i in run.inputs.dataset_inputs}
        recorded = {(d["path"], d["md5"]) for d in lock[name].get("deps", []) if not d["path"].endswith(".py")}
        assert logged == recorded, name
    bank = next(o["md5"] for o in lock["synthetic"]["outs"] if o["path"] == "data/synthetic")
    inputs = {i.dataset.name: i for i in runs["sweep-fourier@lenet"].inputs.dataset_inputs}
    assert set(inputs) == {"data/synthetic", "results/models/lenet.json"}  # the data, and the model's code
    assert {t.key: t.value for t in inputs["results/models/lenet.json"].tags} == {"dvc_stage": "model@lenet"}
    fourier = inputs["data/synthetic"]
    assert fourier.dataset.digest == bank
    assert {t.key: t.value for t in fourier.tags} == {"dvc_stage": "synthetic"}
    assert json.loads(fourier.dataset.source) == {"uri": (repo.path / "data/synthetic").as_uri()}
    # data/synthetic/meta.json (the atlas reads the grid's shape), results/nads, sweep, predict, poison, flip, compare,
    # figures
    assert len(runs["report"].inputs.dataset_inputs) == 8
    # The params upstream of a run are on it too: runs on different data differ in Compare.
    params = repo.params()
    sweep, poison = runs["sweep-nad@lenet"].data.params, runs["poison@lenet"].data.params
    assert sweep["synthetic.n_train"] == str(params["synthetic"]["n_train"]) and "nad_sweep.seeds" in sweep
    assert sweep["nads.n_networks"] == poison["nads.n_networks"] == str(params["nads"]["n_networks"])
    assert "synthetic.n_train" not in poison  # (CIFAR-10's carriers come from the NADs, not from D(v))


class _NotMlflow(http.server.BaseHTTPRequestHandler):
    """/health answers at once; anything else answers 404, or (slow) nothing for 60 s."""

    slow = False

    def do_GET(self):
        if self.path == "/health":
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"OK")
            return
        if self.slow:
            time.sleep(60)
        self.send_error(404)

    def log_message(self, *args):
        pass


@pytest.mark.parametrize(
    "slow, said",
    [
        (
            False,
            "answered HTTP 404 to an MLflow API call (/api/2.0/mlflow/experiments/search?max_results=1): "
            "is it an MLflow tracking server?",
        ),
        (True, "no answer to an MLflow API call within 5 s (timed out)"),
    ],
    ids=["not MLflow", "slow on API calls"],
)
def test_a_server_that_is_not_mlflow_or_hangs_on_api_calls_fails_in_five_seconds(slow, said):
    handler = type("Handler", (_NotMlflow,), {"slow": slow})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    uri = f"http://127.0.0.1:{server.server_address[1]}"
    t0 = time.monotonic()
    try:
        r = subprocess.run(
            [sys.executable, "-m", "nads.cli", "runs", "--tracking-uri", uri],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        server.shutdown()
    assert time.monotonic() - t0 < 15
    assert (
        r.returncode == 2
        and r.stderr
        == f"error: MLflow tracking store {uri}: {said}; fix it, or set MLFLOW_TRACKING_URI to another store\n"
    ), r.stderr


def test_nads_runs_reads_and_creates_nothing(tmp_path):
    def runs(uri):
        return subprocess.run(
            [sys.executable, "-m", "nads.cli", "runs", "--tracking-uri", uri],
            capture_output=True,
            text=True,
            cwd=tmp_path,
        )

    missing = f"sqlite:///{tmp_path}/nonexistent/dir/mlflow.db"
    r = runs(missing)
    assert r.returncode == 0 and r.stdout == f"no runs yet: no store at {missing} (run the pipeline: make repro)\n"
    assert not any(tmp_path.iterdir())
    (tmp_path / "bad.db").write_bytes(b"garbage" * 100)
    r = runs(f"sqlite:///{tmp_path}/bad.db")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "bad.db is not a readable SQLite database" in r.stderr
    # A store whose experiment was deleted (in the UI, say): one line saying how to restore it.
    import mlflow

    store = f"sqlite:///{tmp_path}/mlflow.db"
    mlflow.set_tracking_uri(store)
    mlflow.delete_experiment(mlflow.create_experiment("nads"))
    r = runs(store)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "its experiment 'nads' is deleted; restore it (mlflow experiments restore --experiment-id 1)" in r.stderr


STARTER = """
import sys, time
from nads import tracking
time.sleep(max(0.0, float(sys.argv[1]) - time.time()))  # all start at the same instant
with tracking.stage_run("synthetic", {"synthetic": {"seed": int(sys.argv[2])}}, "quick", f"synthetic@{sys.argv[2]}"):
    pass
"""


@pytest.mark.long
def test_stages_starting_together_on_a_fresh_server_all_get_runs(tmp_path):
    """Six stage starts at one instant against a fresh mlflow server on PostgreSQL (where the
    race showed as UniqueViolation): the first creates the experiment, and those that lose
    the race use it (creation is idempotent)."""
    from servers import mlflow_server, postgres

    with postgres() as db, mlflow_server(db.uri) as uri:
        at = time.time() + 3
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", STARTER, str(at), str(i)],
                cwd=tmp_path,
                env={**os.environ, "MLFLOW_TRACKING_URI": uri},
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(6)
        ]
        errors = [p.communicate(timeout=120)[1] for p in procs]
        assert [p.returncode for p in procs] == [0] * 6, errors
        client = mlflow.MlflowClient(uri)
        runs = client.search_runs([client.get_experiment_by_name("nads").experiment_id])
        assert sorted(r.info.run_name for r in runs) == [f"synthetic@{i}" for i in range(6)]
        assert {r.info.status for r in runs} == {"FINISHED"}


def test_a_run_is_dirty_when_code_or_params_differ_from_the_commit_not_its_outputs(tmp_path):
    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    for name in ("params.yaml", "dvc.lock", "results/nads/lenet/metrics.json", "nads/x.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("0\n")
    git("init", "-q", "-b", "team")
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
    assert tracking.git_state(tmp_path) == {"git_branch": "team", "git_dirty": "false"}
    for name in ("dvc.lock", "results/nads/lenet/metrics.json"):  # what stages write as they run
        (tmp_path / name).write_text("1\n")
    assert tracking.git_state(tmp_path)["git_dirty"] == "false"
    for name in ("params.yaml", "nads/x.py"):
        (tmp_path / name).write_text("1\n")
        assert tracking.git_state(tmp_path)["git_dirty"] == "true"
        (tmp_path / name).write_text("0\n")
