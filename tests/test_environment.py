"""The environment is part of the result: locked, checked at every stage, a DVC dependency."""

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from conftest import run
from packaging.requirements import Requirement

from nads import environment

ROOT = Path(__file__).resolve().parents[1]


def test_versions_yaml_is_derived_from_the_locks():
    assert environment.VERSIONS.read_text() == environment.versions_text()
    pins = yaml.safe_load(environment.VERSIONS.read_text())
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1"  # requirements/pins.txt
    assert "mlflow" not in pins and "dvc" not in pins  # they only log and run


def test_the_main_lock_pins_every_dependency_within_pyproject_ranges():
    pins = environment.locked([ROOT / "requirements/main.txt"])
    for spec in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]:
        req = Requirement(spec)
        name = environment._canonical(req.name)
        assert name in pins and pins[name] in req.specifier, (spec, pins.get(name))
    assert all(
        "--hash=sha256:" in block
        for block in (ROOT / "requirements/main.txt").read_text().split("\n\\")
        if "==" in block
    )


def test_this_environment_is_the_locked_one():
    assert environment.mismatches() == []


def test_a_locked_version_that_is_not_installed_stops_a_stage_before_compute(repo):
    pins = yaml.safe_load((repo.path / "requirements/versions.yaml").read_text())
    pins["torch"] = "9.9.9"
    (repo.path / "requirements/versions.yaml").write_text(yaml.safe_dump(pins))
    bad = run([sys.executable, "-m", "stages.synthetic"], repo.path, repo.env, check=False)
    assert bad.returncode == 2 and not (repo.path / "data/synthetic/meta.json").exists()
    from importlib.metadata import version

    assert bad.stderr.strip().splitlines() == [
        f"error: installed torch {version('torch')} (locked 9.9.9): results would not be those dvc.lock records. "
        "Run `make install` (installs requirements/*.txt), or set NADS_ALLOW_UNLOCKED=1 to run anyway"
    ]
    ok = run([sys.executable, "-m", "stages.synthetic"], repo.path, {**repo.env, "NADS_ALLOW_UNLOCKED": "1"})
    assert "running anyway (NADS_ALLOW_UNLOCKED=1)" in ok.stderr
    assert (repo.path / "data/synthetic/meta.json").exists()


def test_settings_that_did_not_take_effect_are_named():
    # numpy and torch loaded before nads, on two threads: this CPU's own arithmetic.
    code = "import numpy, torch; torch.set_num_threads(2); from nads import portable; portable.check()"
    env = {k: v for k, v in os.environ.items() if k not in environment_vars()}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode == 1
    assert "portable arithmetic (nads/portable.py) is not in effect: " in proc.stderr
    assert "torch computes on 2 threads" in proc.stderr


def environment_vars():
    from nads.portable import SETTINGS

    return set(SETTINGS) | {"NADS_PORTABLE"}


def _pin(repo, package: str, version: str) -> None:
    """Change one package's version in both locks, as `make lock` after a release would."""
    for lock in ("main.txt", "test.txt"):
        path = repo.path / "requirements" / lock
        lines = path.read_text().splitlines(keepends=True)
        lines = [f"{package}=={version} \\\n" if line.startswith(f"{package}==") else line for line in lines]
        path.write_text("".join(lines))
    run([sys.executable, "-m", "nads.environment", "versions"], repo.path, repo.env)


@pytest.mark.slow
def test_a_new_torch_reruns_the_computing_stages_a_new_mlflow_none(built_copy):
    repo = built_copy
    assert "up to date" in repo.dvc("status").stdout
    _pin(repo, "mlflow", "9.9.9")
    assert "up to date" in repo.dvc("status").stdout
    _pin(repo, "torch", "9.9.9")
    status = repo.dvc("status", "--json").stdout
    import json

    changed = {name.split("@")[0] for name in json.loads(status)}
    assert changed == {
        "fetch",
        "synthetic",
        "nads",
        "sweep-fourier",
        "sweep-nad",
        "cifar10",
        "poison",
        "flip",
        "predict",
        "figures",
        "report",
    }, changed
    assert "requirements/versions.yaml" in status
