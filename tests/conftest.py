import fcntl
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

if "PYTEST_XDIST_WORKER" in os.environ:
    import torch

    # One thread for what a test computes in its own process: xdist runs one process per core,
    # and two processes' threads on one core wait on each other (tests/test_estimate.py: 2.3x
    # faster). The processes a test starts keep the default: a stage often has a core to spare.
    torch.set_num_threads(1)


def project_files() -> list[str]:
    """What a clone of the project holds: git's files (committed or about to be), none it ignores."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    return [f for f in out if f and (ROOT / f).is_file()]


def run(cmd, cwd, env=None, check=True):
    """Run a command; on failure show its output (the point of a pipeline test)."""
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, cmd))} exited {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
        )
    return proc


class Repo:
    """A temporary copy of the project: its own git repository, DVC and MLflow store."""

    def __init__(self, path: Path, remote: Path):
        self.path = path
        self.remote = remote
        # A user's shell, not the run that started the tests: under `make test`, MAKELEVEL would make
        # the copy's `make repro` a sub-make, which prints "Leaving directory" after the verdict.
        outer = ("MLFLOW_TRACKING_URI", "DVC_ROOT", "DVC_STAGE", "CIFAR10", "MAKELEVEL", "MAKEFLAGS", "MFLAGS")
        self.env = {k: v for k, v in os.environ.items() if k not in outer}
        self.env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{self.env.get('PATH', '')}"

    def dvc(self, *args, check=True):
        return run([sys.executable, "-m", "dvc", *args], self.path, self.env, check)

    def git(self, *args):
        return run(["git", *args], self.path, self.env)

    def params(self) -> dict:
        return yaml.safe_load((self.path / "params.yaml").read_text())

    def set_params(self, **sections) -> None:
        """Update params.yaml: set_params(synthetic={"n_train": 64})."""
        params = self.params()
        for section, values in sections.items():
            if isinstance(values, dict):
                params.setdefault(section, {}).update(values)
            else:  # a top-level value (device, executor...)
                params[section] = values
        (self.path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    def tracking_uri(self) -> str:
        return f"sqlite:///{self.path / 'mlflow.db'}"


TINY = {
    "synthetic": {"n_train": 200, "n_test": 100, "fourier_stride": 8},
    "nads": {"n_networks": 6},
    "sweep": {"epochs": 1},
    "nad_sweep": {"indices": [0, 1, 5, 1000], "seeds": 2},
    "poison": {"epochs": 1, "nad_indices": [0, 1000]},
    "flip": {"epochs": 1},
    "archs": {"compare": []},
}  # the published results are not part of the repository (tests/test_compare.py)
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def make_cifar_tree(root: Path, per_class: dict) -> Path:
    """A CIFAR-10-shaped image-folder tree of random PNGs: per_class = {"train": n, "test": m}."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in per_class.items():
        for c in CLASSES:
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / split / c / f"{i}.png")
    return root


def new_repo(tmp_path: Path) -> Repo:
    path, remote = tmp_path / "repo", tmp_path / "remote"
    path.mkdir()
    for name in project_files():
        dst = path / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, dst)
    r = Repo(path, remote)
    r.git("init", "-q")
    r.git("config", "user.email", "test@nads")
    r.git("config", "user.name", "test")
    r.dvc("remote", "modify", "--local", "local", "url", str(remote))
    # The fetch stage copies CIFAR-10 from the path in $CIFAR10 (make repro CIFAR10=...), once.
    r.env["CIFAR10"] = str(make_cifar_tree(tmp_path / "cifar-tree", {"train": 12, "test": 4}))
    r.set_params(**TINY)
    r.git("add", "-A")
    r.git("commit", "-qm", "project copy")
    return r


@pytest.fixture
def repo(tmp_path) -> Repo:
    """A fresh copy of the project, nothing run yet."""
    return new_repo(tmp_path)


def _build_shared(shared: Path) -> None:
    """Build the tiny pipeline in `shared` unless a worker has: one builder, under a file lock."""
    with open(shared.parent / "built.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (shared / "stdout").is_file():
            shutil.rmtree(shared, ignore_errors=True)
            shared.mkdir()
            r = new_repo(shared)
            (shared / "stdout").write_text(r.dvc("repro").stdout)


class _Background(threading.Thread):
    def __init__(self, shared: Path):
        super().__init__(name="built", daemon=True)
        self.shared, self.error = shared, None

    def run(self):
        try:
            _build_shared(self.shared)
        except BaseException as e:  # noqa: BLE001 - raised again by the fixture that needs it
            self.error = e


_BUILDS: dict = {}


def pytest_collection_finish(session):
    """Under pytest-xdist, start building the shared repository at once, in a thread, if a test
    that will run needs it: the worker runs its other tests meanwhile instead of waiting."""
    if "PYTEST_XDIST_WORKER" in os.environ and any("built" in getattr(i, "fixturenames", ()) for i in session.items):
        base = Path(session.config._tmp_path_factory.getbasetemp()).parent
        _BUILDS["thread"] = _Background(base / "built")
        _BUILDS["thread"].start()


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> tuple:
    """(repo, stdout of its first `dvc repro`): the whole tiny pipeline run once, shared
    read-only. Under pytest-xdist one worker builds it, from the start of the session (see
    pytest_collection_finish), and every worker shares it."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        r = new_repo(tmp_path_factory.mktemp("built"))
        return r, r.dvc("repro").stdout
    shared = tmp_path_factory.getbasetemp().parent / "built"  # the same folder for every worker
    thread = _BUILDS.get("thread")
    if thread is not None:
        thread.join()
        if thread.error is not None:
            raise thread.error
    _build_shared(shared)  # (built already: returns at once)
    r = Repo(shared / "repo", shared / "remote")
    r.env["CIFAR10"] = str(shared / "cifar-tree")
    return r, (shared / "stdout").read_text()


@pytest.fixture
def built_copy(built, tmp_path) -> Repo:
    """A private copy of the built repository (git, DVC cache, outputs), to change params in."""
    src = built[0]
    # Without .dvc/tmp: DVC's locks, which a command of another test may be writing in the shared
    # repository at this moment (a copy taken mid-write reads as a corrupt rwlock).
    dvc_tmp = str(src.path / ".dvc")
    shutil.copytree(src.path, tmp_path / "repo", symlinks=True, ignore=lambda d, names: ["tmp"] if d == dvc_tmp else [])
    return Repo(tmp_path / "repo", src.remote)


def pytest_collection_modifyitems(items):
    """Under pytest-xdist (make test: --dist loadgroup), the tests that run commands in the
    shared built repository itself (not a copy) run on one worker, one after another."""
    for item in items:
        names = getattr(item, "fixturenames", ())
        if "built" in names and "built_copy" not in names:
            item.add_marker(pytest.mark.xdist_group("built"))
