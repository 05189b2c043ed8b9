"""The pipeline for real: git + DVC + MLflow's SQLite store in temporary copies of the project.

`built` runs the whole tiny pipeline once; tests that change params work on private copies.
"""

import hashlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time

import mlflow
import numpy as np
import pytest
from conftest import run

from nads import files, predict

pytestmark = pytest.mark.slow

NADS = {"nads@logreg", "nads@lenet"}
SWEEPS = {f"sweep-{family}@{arch}" for family in ("fourier", "nad") for arch in ("logreg", "lenet")}
CIFAR = {"fetch@cifar10", "cifar10", "poison@lenet", "flip@lenet"}
PREDICT = {"predict@logreg", "predict@lenet"}
MODELS = {"model@logreg", "model@lenet"}
TRACKED = {"synthetic"} | NADS | SWEEPS | PREDICT | CIFAR | {"figures", "report"}  # stages with an MLflow run
ALL = TRACKED | MODELS | {"check-params"}


def digest(root, *dirs):
    out = {}
    for d in dirs:
        for p in sorted((root / d).rglob("*")):
            if p.is_file():
                out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def ran(proc) -> set:
    """Stages a `dvc repro` executed, from its output (or the output itself)."""
    out = proc if isinstance(proc, str) else proc.stdout
    return {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")}


def locked(repo, stages) -> dict:
    """The dvc.lock entries of `stages` (deps, params and outs with their hashes)."""
    import yaml

    lock = yaml.safe_load((repo.path / "dvc.lock").read_text())["stages"]
    return {s: lock[s] for s in stages}


def runs(repo, **filters):
    mlflow.set_tracking_uri(repo.tracking_uri())
    query = " and ".join(f"tags.{k} = '{v}'" for k, v in filters.items())
    return mlflow.search_runs(experiment_names=["nads"], filter_string=query)


def test_first_repro_runs_everything_and_tracks_each_stage(built):
    repo, first = built
    assert ran(first) == ALL - MODELS  # (the committed model fingerprints are current: model@* have nothing to do)
    assert ran(repo.dvc("repro")) == set()
    all_runs = runs(repo)
    assert sorted(all_runs["tags.mlflow.runName"]) == sorted(TRACKED)
    assert set(all_runs["status"]) == {"FINISHED"}
    assert set(all_runs["tags.profile"]) == {"quick"}
    assert set(all_runs["tags.git_commit"]) == {repo.git("rev-parse", "HEAD").stdout.strip()}
    (r,) = [r for _, r in all_runs.iterrows() if r["tags.mlflow.runName"] == "synthetic"]
    assert r["params.synthetic.n_train"] == "200" and r["params.synthetic.fourier_stride"] == "8"
    assert r["metrics.n_fourier_directions"] == 10  # 32x32 at stride 8
    assert r["metrics.noise_std_orthogonal"] == pytest.approx(3.0, rel=0.02)
    (r,) = [r for _, r in all_runs.iterrows() if r["tags.mlflow.runName"] == "nads@lenet"]
    assert r["params.arch"] == "lenet" and r["params.nads.n_networks"] == "6"
    assert r["metrics.timing.networks_per_second"] > 0
    assert {"eigenvalues.npy", "metrics.json"} <= {a.path for a in mlflow.MlflowClient().list_artifacts(r["run_id"])}
    (r,) = [r for _, r in all_runs.iterrows() if r["tags.mlflow.runName"] == "figures"]
    drawn = {a.path for a in mlflow.MlflowClient().list_artifacts(r["run_id"], "nads/lenet")}
    assert drawn == {"nads/lenet/nads.png", "nads/lenet/spectrum.png"}  # the figures, in a run of their own
    read = json.loads((repo.path / "results/figures/inputs.json").read_text())
    assert (
        read["results/nads/lenet/nads.npy"]
        == hashlib.sha256((repo.path / "results/nads/lenet/nads.npy").read_bytes()).hexdigest()
    )  # which data they show
    assert (repo.path / "mlflow.db").is_file() and (repo.path / "mlartifacts").is_dir()
    shown = repo.dvc("metrics", "show").stdout
    for path in (
        "results/synthetic/metrics.json",
        "results/nads/lenet/metrics.json",
        "results/sweep/lenet/nad/metrics.json",
        "results/poison/lenet/metrics.json",
        "results/flip/lenet/metrics.json",
    ):
        assert path in shown


def test_nads_outputs(built):
    repo, _ = built
    for arch in ("logreg", "lenet"):
        out = repo.path / "results" / "nads" / arch
        nads, vals = np.load(out / "nads.npy"), np.load(out / "eigenvalues.npy")
        assert nads.shape == (1024, 1024) and nads.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(nads, axis=1), 1, atol=1e-4)
        assert np.all(np.diff(vals) <= 1e-12)
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["n_networks"] == 6 and metrics["rank"] == 5
        assert {"half_agreement_top1", "autograd_vs_fd_top10", "index_frequency_spearman"} <= set(metrics)
        drawn = repo.path / "results/figures/nads" / arch
        assert (drawn / "nads.png").stat().st_size > 10_000 and (drawn / "spectrum.png").is_file()
    # Logistic regression is linear: FD and autograd give the same directions (top-1: within the rank of 6 networks).
    logreg = json.loads((repo.path / "results/nads/logreg/metrics.json").read_text())
    assert logreg["autograd_vs_fd_top1"] == pytest.approx(1, abs=1e-4)


def test_sweep_outputs(built):
    repo, _ = built
    for arch in ("logreg", "lenet"):
        four = files.read_csv(repo.path / f"results/sweep/{arch}/fourier/accuracy.csv")
        assert list(four) == ["k1", "k2", "test_acc", "train_acc"] and len(four["k1"]) == 10
        nad = files.read_csv(repo.path / f"results/sweep/{arch}/nad/accuracy.csv")
        assert list(nad) == [
            "index",
            "eigenvalue",
            "test_acc",
            "train_acc",
            "test_acc_sd",
            "test_acc_min",
            "test_acc_max",
            "test_acc_seed0",
            "test_acc_seed1",
        ]  # TINY: nad_sweep.seeds 2
        assert nad["index"] == ["0", "1", "5", "1000"]
        per_seed = np.array([nad["test_acc_seed0"], nad["test_acc_seed1"]], dtype=float)
        np.testing.assert_allclose(np.array(nad["test_acc"], dtype=float), per_seed.mean(0))
        for table in (four, nad):
            acc = np.array(table["test_acc"] + table["train_acc"], dtype=float)
            assert np.all((acc >= 0) & (acc <= 1))
        assert (repo.path / f"results/figures/sweep/{arch}/fourier/heatmap.png").stat().st_size > 5000
        assert (repo.path / f"results/figures/sweep/{arch}/nad/curve.png").stat().st_size > 5000
        m = json.loads((repo.path / f"results/sweep/{arch}/nad/metrics.json").read_text())
        assert {"mean_test_acc", "frac_test_acc_above_0.9", "n_diverged"} <= set(m)
        assert m["seeds"] == 2 and m["mean_seed_sd"] >= 0
        seeds = [np.array(nad[f"test_acc_seed{r}"], dtype=float) for r in range(2)]
        aucs = [predict.separation(-np.array([0, 1, 5, 1000.0]), a) for a in seeds]
        np.testing.assert_allclose(
            [m["auc_learned_first"], m["auc_learned_first_sd"]], [np.mean(aucs), np.std(aucs, ddof=1)], equal_nan=True
        )


def test_cifar_outputs(built):
    repo, _ = built
    assert json.loads((repo.path / "results/cifar10/metrics.json").read_text())["n_train"] == 120
    table = files.read_csv(repo.path / "results/poison/lenet/results.csv")
    assert list(table) == ["nad_index", "clean_test_acc", "poisoned_train_acc", "carrier_success"]
    assert table["nad_index"] == ["clean", "0", "1000"] and table["carrier_success"][0] == "nan"
    assert all(0 <= float(v) <= 1 for v in table["clean_test_acc"] + table["poisoned_train_acc"])
    flip = json.loads((repo.path / "results/flip/lenet/metrics.json").read_text())
    assert {"original_test_acc", "flipped_test_acc", "drop"} <= set(flip)
    assert (repo.path / "results/figures/poison/lenet/curve.png").is_file()
    assert (repo.path / "results/figures/flip/lenet/bars.png").is_file()


def test_predict_scores_the_swept_directions_from_the_nads(built):
    from scipy.stats import spearmanr

    from nads import predict
    from nads.directions import fourier_directions

    repo = built[0]
    out = repo.path / "results/predict/lenet"
    table = files.read_csv(out / "fourier.csv")
    sweep = files.read_csv(repo.path / "results/sweep/lenet/fourier/accuracy.csv")
    for key in ("k1", "k2", "test_acc"):  # the sweep's directions and accuracies, in its order
        np.testing.assert_array_equal(np.array(table[key], dtype=float), np.array(sweep[key], dtype=float))
    nads = np.load(repo.path / "results/nads/lenet/nads.npy")
    vals = np.load(repo.path / "results/nads/lenet/eigenvalues.npy")
    _, v = fourier_directions((1, 32, 32), 8)
    score = predict.scores(nads, vals, v, (1, 32, 32), "shift")
    np.testing.assert_allclose(np.array(table["score"], dtype=float), score, rtol=1e-5)
    m = files.read_json(out / "metrics.json")
    acc = np.array(table["test_acc"], dtype=float)
    assert m["n_fourier"] == 10 and m["spearman_fourier"] == pytest.approx(spearmanr(score, acc).statistic, abs=1e-4)
    assert "auc_fourier_sd" not in m and "auc_nad_sd" in m  # the Fourier sweep runs one seed, the NAD sweep two
    nad = files.read_csv(out / "nad.csv")
    assert [int(i) for i in nad["index"]] == [0, 1, 5, 1000] and m["n_nad"] == 4
    assert {"grid.png", "curve.png"} <= {p.name for p in (repo.path / "results/figures/predict/lenet").iterdir()}


def changed(repo) -> set:
    """Stages `dvc status` reports changed: those a `dvc repro` would run next, given the
    outputs as they are (downstream stages show up once their upstream has run)."""
    return set(json.loads(repo.dvc("status", "--json").stdout))


def test_changed_params_rerun_exactly_the_stages_that_depend_on_them(built_copy):
    # Each upstream stage is run alone (--single-item); `dvc status` then names the stages its
    # new outputs change, without running them all (the same rule `dvc repro` applies).
    repo = built_copy
    before = digest(repo.path, "data/synthetic")
    kept = {
        p: p.read_bytes()
        for p in [repo.path / "params.yaml", repo.path / "dvc.lock", *(repo.path / "results/synthetic").iterdir()]
    }
    repo.set_params(synthetic={"seed": 1})
    assert "synthetic.seed" in repo.dvc("params", "diff").stdout
    assert changed(repo) == {"check-params", "synthetic", "figures", "report"}  # (the report quotes every param)
    assert ran(repo.dvc("repro", "--single-item", "synthetic")) == {"synthetic"}
    assert (
        digest(repo.path, "data/synthetic")["data/synthetic/noise_train.npy"]
        != before["data/synthetic/noise_train.npy"]
    )
    assert changed(repo) == {"check-params", "figures", "report"} | SWEEPS | PREDICT  # the sweeps train on its data
    # Where NADs are computed changes nothing; how many networks changes every user of NADs.
    for path, data in kept.items():  # back to the first bank (metrics.json is not in DVC's cache)
        path.write_bytes(data)
    repo.dvc("checkout", "data/synthetic")
    assert changed(repo) == set()
    repo.set_params(device="cpu")
    assert changed(repo) == {"check-params", "report"}
    repo.set_params(nads={"n_networks": 8})
    assert ran(repo.dvc("repro", "--single-item", *NADS)) == NADS
    assert (
        changed(repo)
        == {"sweep-nad@logreg", "sweep-nad@lenet", "poison@lenet", "flip@lenet", "check-params", "figures", "report"}
        | PREDICT
    )


def test_push_then_pull_restores_identical_outputs(built_copy):
    repo = built_copy
    pinned = digest(repo.path, "data", "results")
    repo.dvc("push")
    shutil.rmtree(repo.path / ".dvc" / "cache")
    for pattern in ("*.npy", "*.png", "*.csv"):
        for p in list((repo.path / "data").rglob(pattern)) + list((repo.path / "results").rglob(pattern)):
            p.unlink()
    repo.dvc("pull")
    assert digest(repo.path, "data", "results") == pinned
    assert ran(repo.dvc("repro")) == set()


def test_bad_input_fails_in_one_line_and_keeps_outputs(built_copy, tmp_path):
    repo = built_copy
    before = digest(repo.path, "data", "results")

    def stage(*args):
        return run([sys.executable, "-m", *args], repo.path, repo.env, check=False)

    repo.set_params(synthetic={"epsilon": -1})
    direct = stage("stages.synthetic")
    assert direct.returncode == 2
    assert direct.stderr.strip().splitlines() == [
        "error: synthetic.epsilon = -1.0: must be > 0 (the margin of the discriminative feature)"
    ]
    failed = repo.dvc("repro", "synthetic", check=False)
    assert failed.returncode != 0 and "synthetic.epsilon = -1.0: must be > 0" in failed.stderr + failed.stdout
    repo.set_params(synthetic={"epsilon": 1.0}, nad_sweep={"indices": [0, 5000]})
    bad = stage("stages.sweep", "lenet", "nad")
    assert bad.returncode == 2
    assert bad.stderr.strip() == "error: nad_sweep.indices = [0, 5000]: lenet has 1024 NADs (indices 0..1023)"
    repo.set_params(nad_sweep={"indices": [0, 1]}, archs={"nads": ["logreg", "lenet", "lenett"]})
    bad = stage("stages.nads", "lenett")
    assert bad.returncode == 2 and "archs.nads: arch = 'lenett': unknown architecture" in bad.stderr
    repo.set_params(archs={"nads": ["logreg", "lenet"]})
    nowhere = tmp_path / "cifar.tar.gz"
    bad = run(
        [sys.executable, "-m", "stages.fetch", "cifar10"], repo.path, {**repo.env, "CIFAR10": str(nowhere)}, check=False
    )
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert bad.stderr.startswith(f"error: CIFAR-10 source '{nowhere}': no such file or directory")
    assert digest(repo.path, "data", "results") == before
    assert len(runs(repo, stage="synthetic")) == 1  # rejected configs leave no MLflow run


def test_interrupted_sweep_leaves_no_partial_csv(built_copy):
    repo = built_copy
    out = repo.path / "results/sweep/lenet/fourier"
    shutil.rmtree(out)
    repo.set_params(sweep={"epochs": 200})
    # A new session, so that SIGINT reaches the stage and its workers, as Ctrl-C would.
    proc = subprocess.Popen(
        [sys.executable, "-m", "stages.sweep", "lenet", "fourier"],
        cwd=repo.path,
        env=repo.env,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    seen, deadline = "", time.time() + 60
    while "sweep lenet fourier" not in seen and time.time() < deadline:
        seen += proc.stderr.read(1)
    time.sleep(2)  # training under way
    assert proc.poll() is None
    os.killpg(proc.pid, signal.SIGINT)
    proc.wait(timeout=30)
    assert proc.returncode != 0
    assert not out.exists() or list(out.iterdir()) == []


def test_report_holds_every_figure_and_claim(built):
    repo, _ = built
    page = (repo.path / "results/report/index.html").read_text()

    # per arch: NADs and spectrum; Fourier heatmap, NAD curve and their predictions (none where
    # every direction was learned alike: nothing to rank); then poison and flip
    def ranked(arch) -> bool:
        m = json.loads((repo.path / "results/predict" / arch / "metrics.json").read_text())
        return any(m[k] == m[k] for k in ("auc_fourier", "auc_nad", "spearman_fourier", "spearman_nad"))

    figures = ["nads.png", "spectrum.png"] * 2 + ["curve.png", "bars.png"]
    for arch in ("logreg", "lenet"):
        figures += ["heatmap.png", "curve.png"] + (["grid.png", "curve.png"] if ranked(arch) else [])
    assert page.count("<img ") == len(figures) and page.count("data:image/png;base64,") == len(figures)
    summary = (repo.path / "results/report/summary.md").read_text()
    assert "profile quick, git commit " + repo.git("rev-parse", "HEAD").stdout.strip() in summary
    from importlib.metadata import version

    python = ".".join(platform.python_version_tuple()[:2])
    assert (
        f"computed with python {python}, torch {version('torch')}, torchvision {version('torchvision')}, " in summary
        and f"matplotlib {version('matplotlib')}, arithmetic portable;" in summary
    )
    for title in (
        "NADs of lenet",
        "lenet on D(v), Fourier directions",
        "lenet on D(u_i), its own NADs",
        "lenet: learnability predicted from its NADs alone",
        "lenet on CIFAR-10 with NAD carriers",
        "lenet on CIFAR-10 in the flipped NAD basis",
    ):
        assert f"## {title}" in summary and re.search(rf"<h2 id='s\d+'>{re.escape(title)}</h2>", page)
    metrics = json.loads((repo.path / "results/report/metrics.json").read_text())
    sections = summary[summary.index("## Contents") :]  # (the claims are listed at the top too)
    assert metrics["claims"] == sections.count("supported** —") > 0  # (the atlas has none on this profile)
    flip = json.loads((repo.path / "results/flip/lenet/metrics.json").read_text())
    assert f"{flip['original_test_acc']:.3f} → {flip['flipped_test_acc']:.3f}" in summary
    # The atlas page: the architectures side by side, then each one's numbers, linked both ways.
    atlas = (repo.path / "results/report/atlas.md").read_text()
    assert "[nads atlas: the architectures side by side](atlas.md)" in summary and "(summary.md)" in atlas
    # Every figure the Markdown pages link is there, from where the pages are.
    linked = re.findall(r"!\[[^]]*\]\(([^)]+)\)", summary + atlas)
    assert len(linked) >= len(figures) + 5
    assert [f for f in linked if not (repo.path / "results/report" / f).is_file()] == []
    atlas_html = (repo.path / "results/report/atlas.html").read_text()
    assert atlas_html.count("data:image/png;base64,") == 5
    # A profile without the atlas families says so, and how to run them, instead of "0 of 0 claims".
    assert "0 of 0 claims" not in atlas_html and "make profile-atlas" in atlas_html
    for name in ("nads", "spectra", "radial", "grids", "curves"):
        assert f"![{name}.png](atlas/{name}.png)" in atlas
        assert (repo.path / f"results/report/atlas/{name}.png").stat().st_size > 10_000
    predicted = json.loads((repo.path / "results/predict/lenet/metrics.json").read_text())
    lenet = atlas[atlas.index("## lenet") :]
    rho = predicted["spearman_nad"]
    if rho == rho:
        assert f"| predicted vs measured, Spearman, NADs | {rho:.4g} |" in lenet
    else:  # (a NaN is named under the table, not shown)
        assert "predicted vs measured, Spearman, NADs" in lenet[lenet.index("Not defined on this run") :]


def test_report_names_the_stage_to_run_for_a_missing_output(built_copy):
    repo = built_copy
    (repo.path / "results/flip/lenet/metrics.json").unlink()
    bad = run([sys.executable, "-m", "stages.report"], repo.path, repo.env, check=False)
    assert bad.returncode == 2
    assert bad.stderr.strip() == "error: results/flip/lenet/metrics.json is missing: run `dvc repro flip@lenet` first"


def pulled_clone(repo, where):
    """A colleague's `git clone` of `repo` with the shared DVC remote, after `dvc pull`."""
    run(["git", "clone", "-q", str(repo.path), str(where)], where.parent, repo.env)
    clone = type(repo)(where, repo.remote)
    clone.dvc("remote", "modify", "--local", "local", "url", str(repo.remote))
    clone.dvc("pull")
    return clone


def test_clone_and_pull_gives_byte_identical_results(built_copy, tmp_path):
    """Share exact results: push to the remote, `git clone` elsewhere, `dvc pull`, nothing recomputed."""
    repo = built_copy
    repo.git("add", "-A")
    repo.git("commit", "-qm", "results")
    repo.dvc("push")
    clone = pulled_clone(repo, tmp_path / "colleague")
    assert digest(clone.path, "results") == digest(repo.path, "results")
    assert (clone.path / "results/report/index.html").read_bytes() == (
        repo.path / "results/report/index.html"
    ).read_bytes()
    assert "Data and pipelines are up to date" in clone.dvc("status").stdout  # metrics (git) and data (DVC)
    assert ran(clone.dvc("repro")) == set()
    # A dvc.lock taken without its commit: the bytes come from the remote, the metrics (git) do
    # not. The stage says what is missing and recomputes nothing.
    metrics = clone.path / "results/nads/logreg/metrics.json"
    metrics.write_text(metrics.read_text().replace('"n_networks"', '"n_networks_then"'))
    before = digest(clone.path, "results/nads/logreg")
    proc = clone.dvc("repro", "nads@logreg", check=False)
    assert proc.returncode != 0 and "metrics travel in git, not in the DVC remote" in proc.stderr, proc.stderr
    assert "results/nads/logreg/metrics.json" in proc.stderr and "git checkout COMMIT --" in proc.stderr
    assert digest(clone.path, "results/nads/logreg") == before


@pytest.mark.slow
def test_an_experiment_in_the_workspace_and_the_way_back(built_copy):
    """docs/sharing.md's round trip: --temp leaves the workspace alone; a workspace experiment
    is undone with git checkout + dvc checkout (nothing recomputed), and dvc exp apply redoes it."""
    repo = built_copy
    repo.git("add", "-A")
    repo.git("commit", "-qm", "results")
    base = digest(repo.path, "results/nads/logreg")
    repo.dvc("exp", "run", "--temp", "-n", "aside", "-S", "nads.seed=2", "nads@logreg")
    assert digest(repo.path, "results/nads/logreg") == base and repo.git("status", "--porcelain").stdout == ""
    repo.dvc("exp", "run", "-n", "seed-1", "-S", "nads.seed=1", "nads@logreg")
    changed = digest(repo.path, "results/nads/logreg")
    assert changed["results/nads/logreg/nads.npy"] != base["results/nads/logreg/nads.npy"]
    repo.git("checkout", "--", ".")
    assert ran(repo.dvc("checkout").stdout) == set()
    assert digest(repo.path, "results/nads/logreg") == base
    assert "Data and pipelines are up to date" in repo.dvc("status").stdout
    repo.dvc("exp", "apply", "seed-1")
    assert digest(repo.path, "results/nads/logreg") == changed
    assert {"aside", "seed-1"} <= set(repo.dvc("exp", "ls", "--name-only").stdout.split())


NPY = ("nads.npy", "eigenvalues.npy")


def test_a_run_id_leads_a_colleague_to_the_exact_bytes_it_produced(built_copy, tmp_path):
    """nads@logreg run with seed 1 (run R), then seed 0 again, committed and pushed; a fresh
    clone pulls the seed-0 bytes; `nads runs --checkout R` puts R's bytes in its workspace."""
    repo = built_copy

    def arrays(root):  # (metrics.json is in git and in the run's metrics, not in DVC's cache)
        return {f: hashlib.sha256((root / "results/nads/logreg" / f).read_bytes()).hexdigest() for f in NPY}

    repo.set_params(nads={"seed": 1})
    repo.dvc("repro", "nads@logreg")
    produced = arrays(repo.path)
    latest = runs(repo).sort_values("start_time")
    run_id = latest[latest["tags.mlflow.runName"] == "nads@logreg"]["run_id"].iloc[-1]
    assert latest[latest["run_id"] == run_id]["tags.git_dirty"].iloc[0] == "true"  # params.yaml was edited
    repo.dvc("push")
    repo.set_params(nads={"seed": 0})
    repo.dvc("repro", "nads@logreg")
    assert arrays(repo.path) != produced and produced
    repo.git("add", "-A")
    repo.git("commit", "-qm", "seed 0 again")
    repo.dvc("push")
    clone = pulled_clone(repo, tmp_path / "colleague")
    assert arrays(clone.path) == arrays(repo.path)  # the commit's bytes
    checkout = run(
        [sys.executable, "-m", "nads.cli", "runs", "--checkout", run_id[:8], "--tracking-uri", repo.tracking_uri()],
        clone.path,
        clone.env,
    )
    assert f"run {run_id} (nads@logreg): 2 output(s) checked out: results/nads/logreg/eigenvalues.npy, " in (
        checkout.stdout
    )
    assert arrays(clone.path) == produced  # the run's bytes, from the remote
    assert not (clone.path / ".nads-checkout").exists()
    # A run says whether it made new bytes: R did; a forced rerun of the committed params does not.
    assert latest[latest["run_id"] == run_id]["tags.nads.outputs"].iloc[0] == "changed"
    repo.dvc("repro", "-f", "-s", "nads@logreg")
    assert runs(repo).sort_values("start_time")["tags.nads.outputs"].iloc[-1] == "unchanged"


@pytest.mark.long
@pytest.mark.xdist_group("ray")  # one Ray runtime at a time (ray.init may join another test's)
def test_ray_executor_reproduces_the_local_outputs_with_logging_on_the_driver(built_copy):
    repo = built_copy
    # A folded map (NAD shards), in a stage that starts its own local Ray runtime; the training
    # maps (sweeps, CIFAR-10 models) on a cluster: tests/test_ray.py.
    targets = ["nads@lenet"]
    dirs = ["results/nads/lenet"]
    before, lock = digest(repo.path, *dirs), locked(repo, targets)
    params = repo.params()
    params["executor"] = "ray"  # each stage starts a local Ray runtime: RAY_ADDRESS is not set here
    (repo.path / "params.yaml").write_text(__import__("yaml").safe_dump(params, sort_keys=False))
    assert ran(repo.dvc("repro")) <= {"check-params", "report"}  # where work runs is not a dependency
    assert ran(repo.dvc("repro", "-f", "-s", *targets)) == set(targets)
    assert digest(repo.path, *dirs) == before  # the same bytes as the local executor's
    assert locked(repo, targets) == lock
    latest = runs(repo).sort_values("start_time").drop_duplicates("tags.mlflow.runName", keep="last")
    executors = dict(zip(latest["tags.mlflow.runName"], latest["params.executor"]))
    assert {t: executors[t] for t in targets} == {t: "ray" for t in targets}
    assert executors["synthetic"] == "local"


def test_make_repro_passes_paths_with_spaces_whole(tmp_path):
    """`make repro CIFAR10='/a b/c.tar.gz'`: the stage gets the one absolute path (make's
    abspath would split it at the space). The recipe lines are run with dvc replaced by a probe."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    given = {"CIFAR10": str(tmp_path / "my data" / "cifar 10.tar.gz"), "NADS_PUBLISHED": "rel dir/pub.tar.gz"}
    dry = subprocess.run(
        ["make", "-s", "-n", "repro", "NADS_VENV=0", *(f"{k}={v}" for k, v in given.items())],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    seen = {}
    for name in given:
        (line,) = [x for x in dry if x.startswith(f"{name}=")]
        probe = line.split(" dvc repro")[0] + f" {sys.executable} -c 'import os; print(os.environ[\"{name}\"])'"
        seen[name] = subprocess.run(["sh", "-c", probe], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    assert seen == {"CIFAR10": given["CIFAR10"], "NADS_PUBLISHED": str(tmp_path / "rel dir/pub.tar.gz")}


def test_the_report_opens_with_its_claims_and_make_repro_ends_with_its_verdict(built):
    repo = built[0]
    out = repo.path / "results/report"
    claims = json.loads((out / "claims.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    supported = sum(c["supported"] for c in claims)
    headline = {k: v for k, v in metrics.items() if k not in ("claims", "claims_supported")}
    assert (metrics["claims"], metrics["claims_supported"]) == (len(claims), supported) and claims
    # The terminal's view (dvc metrics show results/report/metrics.json): a few numbers per
    # architecture, each the one its stage wrote.
    fourier = json.loads((repo.path / "results/sweep/lenet/fourier/metrics.json").read_text())
    flip = json.loads((repo.path / "results/flip/lenet/metrics.json").read_text())
    assert headline["lenet"]["fourier_acc"] == round(fourier["mean_test_acc"], 4)
    assert headline["lenet"]["flip_drop"] == round(flip["drop"], 4)
    assert set(headline) <= {"logreg", "lenet"} and all(len(v) <= 4 for v in headline.values())
    page = (out / "index.html").read_text()
    top = page[page.index("<h2>Claims</h2>") : page.index("<h2>Contents</h2>")]
    mine = [c for c in claims if c["page"] == "index.html"]
    assert top.count("<li class=") == len(mine)
    for c in mine:  # each claim at the top links to its section, which is further down
        assert f"<a href='#{c['anchor']}'>" in top and page.index(f"<h2 id='{c['anchor']}'>") > len(top)
    # A no-op make repro (the README's command, in the environment already there) ends with the verdict.
    proc = run(["make", "repro", "NADS_VENV=0", "CIFAR10="], repo.path, repo.env)  # (the copy is there already)
    failed = [f"{c['section']}: {c['text']}" for c in claims if not c["supported"]]
    assert proc.stdout.splitlines()[-1] == (
        f"report: results/report/index.html — {supported} of {len(claims)} claims supported"
        + (f"; not supported: {'; '.join(failed)}" if failed else "")
    )
