import mlflow
import pytest

from nads import tracking


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


def test_experiment_opens_as_model_training_and_make_ui_points_at_its_runs(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    db = tmp_path / "mlflow.db"
    assert tracking.ui_url(db, port=5001) == "http://127.0.0.1:5001/#/experiments?workflowType=machine_learning"
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
    assert tracking.ui_url(db) == f"http://127.0.0.1:5000/#/experiments/{old}/runs?workflowType=machine_learning"
    # A new store: the experiment is created with it.
    monkeypatch.setenv("DVC_ROOT", str(tmp_path / "new"))
    (tmp_path / "new").mkdir()
    with tracking.stage_run("synthetic", {}, "quick"):
        pass
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    new = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'new' / 'mlflow.db'}").get_experiment_by_name("nads")
    assert new.tags == {tracking.KIND_TAG: "custom_model_development"}

