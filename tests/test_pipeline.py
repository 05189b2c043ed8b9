"""The pipeline for real: git + DVC + MLflow's SQLite store in a temporary copy of the project."""
import hashlib
import json
import shutil
import signal
import subprocess
import sys
import time

import mlflow
import numpy as np
import pytest

from conftest import run
from nads import io

pytestmark = pytest.mark.slow


SWEEPS = {f"sweep-{family}@{arch}" for family in ("fourier", "nad") for arch in ("logreg", "lenet")}


def digest(root, *dirs):
    out = {}
    for d in dirs:
        for p in sorted((root / d).rglob("*")):
            if p.is_file():
                out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def ran(proc) -> set:
    """Stages a `dvc repro` executed, from its output."""
    return {line.split("'")[1] for line in proc.stdout.splitlines() if line.startswith("Running stage")}


def test_synthetic_stage_caches_tracks_and_round_trips(repo):
    first = repo.dvc("repro", "synthetic")
    assert ran(first) == {"synthetic"}
    outs = digest(repo.path, "data/synthetic", "results/synthetic")
    assert "data/synthetic/noise_train.npy" in outs and "results/synthetic/directions.png" in outs

    # MLflow: one run named after the stage, with params, metrics and tags, in the default store.
    assert (repo.path / "mlflow.db").is_file()
    mlflow.set_tracking_uri(repo.tracking_uri())
    runs = mlflow.search_runs(experiment_names=["nads"])
    assert len(runs) == 1
    r = runs.iloc[0]
    assert r["tags.mlflow.runName"] == "synthetic" and r["status"] == "FINISHED"
    assert r["params.synthetic.n_train"] == "200" and r["params.synthetic.fourier_stride"] == "8"
    assert r["metrics.n_fourier_directions"] == 10  # 32x32 at stride 8
    assert r["metrics.noise_std_orthogonal"] == pytest.approx(3.0, rel=0.02)
    assert r["tags.profile"] == "quick"
    assert r["tags.git_commit"] == repo.git("rev-parse", "HEAD").stdout.strip()
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(r["run_id"])}
    assert {"metrics.json", "directions.png"} <= artifacts
    assert (repo.path / "mlartifacts").is_dir()

    # Nothing changed: nothing runs.
    again = repo.dvc("repro", "synthetic")
    assert ran(again) == set() and "didn't change" in again.stdout
    assert ran(repo.dvc("repro")) == {"nads@logreg", "nads@lenet"} | SWEEPS
    assert ran(repo.dvc("repro")) == set()

    # One synthetic param changed: that stage reruns (and no other), with new outputs.
    repo.set_params(synthetic={"seed": 1})
    assert "synthetic.seed" in repo.dvc("params", "diff").stdout
    assert ran(repo.dvc("repro")) == {"synthetic"} | SWEEPS  # the sweeps train on its data
    changed = digest(repo.path, "data/synthetic")
    assert changed["data/synthetic/noise_train.npy"] != outs["data/synthetic/noise_train.npy"]
    assert len(mlflow.search_runs(experiment_names=["nads"], filter_string="tags.stage = 'synthetic'")) == 2

    # Push, lose cache and outputs, pull: the same bytes come back.
    pinned = digest(repo.path, "data", "results")
    repo.dvc("push")
    shutil.rmtree(repo.path / ".dvc" / "cache")
    for p in list((repo.path / "data").rglob("*.npy")) + list((repo.path / "results").rglob("*.png")) + \
            list((repo.path / "results").rglob("*.npy")):
        p.unlink()
    repo.dvc("pull")
    assert digest(repo.path, "data", "results") == pinned
    assert ran(repo.dvc("repro")) == set()


def test_bad_params_fail_in_one_line_and_keep_outputs(repo):
    repo.dvc("repro", "synthetic")
    before = digest(repo.path, "data/synthetic", "results/synthetic")
    repo.set_params(synthetic={"epsilon": -1})

    direct = run([sys.executable, "-m", "stages.synthetic"], repo.path, repo.env, check=False)
    assert direct.returncode == 2
    assert direct.stderr.strip().splitlines() == [
        "error: synthetic.epsilon = -1.0: must be > 0 (the margin of the discriminative feature)"]

    failed = repo.dvc("repro", check=False)
    assert failed.returncode != 0
    assert "synthetic.epsilon = -1.0: must be > 0" in failed.stderr + failed.stdout
    assert digest(repo.path, "data/synthetic", "results/synthetic") == before
    mlflow.set_tracking_uri(repo.tracking_uri())
    assert len(mlflow.search_runs(experiment_names=["nads"])) == 1  # no run for a rejected config


def test_nads_stage_per_architecture(repo):
    proc = repo.dvc("repro", "nads")
    assert ran(proc) == {"nads@logreg", "nads@lenet"}
    for arch in ("logreg", "lenet"):
        out = repo.path / "results" / "nads" / arch
        nads = np.load(out / "nads.npy")
        vals = np.load(out / "eigenvalues.npy")
        assert nads.shape == (1024, 1024) and nads.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(nads, axis=1), 1, atol=1e-4)
        assert np.all(np.diff(vals) <= 1e-12)
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["n_networks"] == 6 and metrics["rank"] == 5
        assert {"half_agreement_top1", "autograd_vs_fd_top10", "index_frequency_spearman"} <= set(metrics)
        assert (out / "nads.png").stat().st_size > 10_000 and (out / "spectrum.png").is_file()
    # logistic regression is linear: FD and autograd give the same directions.
    logreg = json.loads((repo.path / "results/nads/logreg/metrics.json").read_text())
    assert logreg["autograd_vs_fd_top1"] == pytest.approx(1, abs=1e-4)  # (top-10 exceeds the rank of 6 networks)

    mlflow.set_tracking_uri(repo.tracking_uri())
    runs = mlflow.search_runs(experiment_names=["nads"], filter_string="tags.mlflow.runName = 'nads@lenet'")
    assert len(runs) == 1
    r = runs.iloc[0]
    assert r["params.arch"] == "lenet" and r["params.nads.n_networks"] == "6"
    assert r["metrics.timing.networks_per_second"] > 0
    assert {"nads.png", "spectrum.png", "metrics.json"} <= {
        a.path for a in mlflow.MlflowClient().list_artifacts(r["run_id"])}

    # n_networks changes both NAD stages, not the synthetic data; device changes nothing.
    repo.set_params(nads={"device": "cpu"})
    assert ran(repo.dvc("repro", "nads")) == set()
    repo.dvc("repro")
    # New NADs retrain the NAD sweeps, not the Fourier ones.
    repo.set_params(nads={"n_networks": 8})
    assert ran(repo.dvc("repro")) == {"nads@logreg", "nads@lenet", "sweep-nad@logreg", "sweep-nad@lenet"}
    # An unknown architecture is refused before anything runs.
    repo.set_params(nads={"archs": ["logreg", "lenett"]})
    bad = repo.dvc("repro", check=False)
    assert bad.returncode != 0 and "lenett" in bad.stderr + bad.stdout


def test_sweep_stages_write_tables_figures_metrics(repo):
    repo.dvc("repro")
    for arch in ("logreg", "lenet"):
        four = io.read_csv(repo.path / f"results/sweep/{arch}/fourier/accuracy.csv")
        assert list(four) == ["k1", "k2", "test_acc", "train_acc"] and len(four["k1"]) == 10
        nad = io.read_csv(repo.path / f"results/sweep/{arch}/nad/accuracy.csv")
        assert list(nad) == ["index", "eigenvalue", "test_acc", "train_acc"]
        assert nad["index"] == ["0", "1", "5", "1000"]
        for table in (four, nad):
            acc = np.array(table["test_acc"] + table["train_acc"], dtype=float)
            assert np.all((acc >= 0) & (acc <= 1))
        assert (repo.path / f"results/sweep/{arch}/fourier/heatmap.png").stat().st_size > 5000
        assert (repo.path / f"results/sweep/{arch}/nad/curve.png").stat().st_size > 5000
        m = json.loads((repo.path / f"results/sweep/{arch}/nad/metrics.json").read_text())
        assert {"mean_test_acc", "frac_test_acc_above_0.9", "spearman_index_vs_test_acc", "n_diverged"} <= set(m)
    shown = repo.dvc("metrics", "show").stdout
    assert "results/sweep/lenet/nad/metrics.json" in shown and "results/nads/lenet/metrics.json" in shown

    # A NAD index beyond the basis is refused with the allowed range.
    repo.set_params(sweep={"nad_indices": [0, 5000]})
    bad = run([sys.executable, "-m", "stages.sweep", "lenet", "nad"], repo.path, repo.env, check=False)
    assert bad.returncode == 2
    assert bad.stderr.strip() == ("error: sweep.nad_indices = [0, 5000]: lenet has 1024 NADs (indices 0..1023)")


def test_interrupted_sweep_leaves_no_partial_csv(repo):
    repo.dvc("repro", "nads@lenet")
    repo.set_params(synthetic={"n_train": 2000}, sweep={"epochs": 50})
    repo.dvc("repro", "synthetic")
    proc = subprocess.Popen([sys.executable, "-m", "stages.sweep", "lenet", "fourier"], cwd=repo.path,
                            env=repo.env, stderr=subprocess.PIPE, text=True)
    seen, deadline = "", time.time() + 120
    while "step" not in seen and time.time() < deadline:  # progress bars end lines with \r
        seen += proc.stderr.read(1)
    assert "sweep lenet fourier" in seen  # interrupted while training
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    assert proc.returncode != 0
    out = repo.path / "results/sweep/lenet/fourier"
    assert not out.exists() or sorted(p.name for p in out.iterdir()) == []
