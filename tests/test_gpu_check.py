"""benchmarks/gpu_check.py runs end to end on a CPU, and needs neither dvc, mlflow nor ray
(the GPU machine it is written for has none of them)."""

import json
import os
import subprocess
import sys
from pathlib import Path

from nads.runtime import native_bf16

ROOT = Path(__file__).resolve().parents[1]
FORWARDS = ("eager", "channels_last", "compiled")  # the tiny run's
COMPUTE_MODULES = ("estimate", "sweep", "train", "poisoning", "models", "synthetic", "directions", "runtime", "config")

# A meta-path finder that makes dvc, mlflow and ray (and their submodules) unimportable.
BLOCKER = """
import importlib.abc, sys
class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("dvc", "mlflow", "ray"):
            raise ImportError(f"{name} is blocked: the GPU machine does not have it")
        return None
sys.meta_path.insert(0, Blocker())
"""


def env() -> dict:
    # One thread: on a busy machine, OpenMP threads waiting on each other make the
    # small operations of a tiny run 10-20x slower (measured: 16 s against 68 s).
    path = [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path), "OMP_NUM_THREADS": "1"}


def test_tiny_cpu_run_passes_its_checks_and_projects_the_paper_profile(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "benchmarks/gpu_check.py", "--device", "cpu", "--tiny", "--out", str(out)],
        cwd=ROOT,
        env=env(),
        capture_output=True,
        text=True,
        timeout=300,  # a first compilation of LeNet takes about 20 s on 2 busy cores
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((out / "gpu_check.json").read_text())
    checks = {c["name"].split(",")[0]: c for c in report["correctness"]}
    assert {"NADs lenet", "sweep lenet", "sweep vgg11_bn", "poisoning step resnet18"} <= set(checks)
    # bf16 is checked where the CPU computes it natively; elsewhere nads refuses it, and so does the check.
    native = native_bf16("cpu")
    bf16 = next(c for c in report["correctness"] if "bf16" in c["name"])
    assert bf16["status"] == "pass" if native else bf16["status"].startswith("skipped: no native bf16"), bf16
    others = [c for c in report["correctness"] if c is not bf16]
    assert all(c["status"] == "pass" for c in others), report["correctness"]
    assert report["meta"]["complete"] and report["meta"]["device"] == "cpu"
    measured = [r for r in report["throughput"] if r["status"] == "ok"]
    assert {r["precision"] for r in measured} == {"float32", "tf32", "bf16"}  # (speed alone: bf16 runs here too)
    assert all(r["rate"] > 0 for r in measured)
    # NADs with each forward of the tiny run, compared with eager float32 on the same networks.
    nads = {(r["arch"], r["precision"], r["forward"]): r for r in measured if r["kind"] == "nads"}
    assert {f for _, _, f in nads} == {"eager", "channels_last", "compiled"}
    assert {(a, f) for a, p, f in nads if p == "float32"} == {(a, f) for a in ("logreg", "lenet") for f in FORWARDS}
    for (arch, prec, forward), r in nads.items():
        assert r["networks"] >= 16 and r["within_tolerance"], r
        assert r["agreement_top10"] >= (0.9999 if prec == "float32" else 0.99), r
    assert nads["lenet", "float32", "compiled"]["first_group_s"] > 0
    assert report["projection"]["total_hours"]["float32"] > 0
    for row in report["projection"]["rows"]:  # the best column: the fastest precision measured
        measured_hours = [h for p, h in row["hours"].items() if p != "best" and h is not None]
        assert row["hours"]["best"] == (min(measured_hours) if measured_hours else None), row
    lenet = next(r for r in report["projection"]["rows"] if r["stage"] == "nads" and r["arch"] == "lenet")
    assert lenet["forward"]["float32"] in FORWARDS
    md = (out / "gpu_check.md").read_text()
    assert "## 3. Projection" in md and "| **total** |" in md and "| lenet compiled |" in md


def test_compute_modules_and_the_gpu_check_import_without_dvc_mlflow_ray():
    code = (
        BLOCKER
        + f"""
try:
    import mlflow
except ImportError:
    pass
else:
    sys.exit("the blocker does not block")
import importlib, runpy
for name in {COMPUTE_MODULES!r}:
    importlib.import_module("nads." + name)
runpy.run_path("benchmarks/gpu_check.py", run_name="gpu_check")  # its imports, not main()
"""
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env(), capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
