"""The Ray executor, on a real local Ray runtime started here (2 CPUs)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import ray

from nads import config
from nads.config import Synthetic
from nads.directions import fourier_directions
from nads.errors import InputError, ParamError
from nads.estimate import estimate_nads
from nads.executor import LocalExecutor, RayExecutor, make_executor
from nads.sweep import sweep
from nads.synthetic import draw_noise_bank
from nads.train import Schedule

TESTS = Path(__file__).parent
pytestmark = pytest.mark.xdist_group("ray")  # one Ray runtime at a time (ray.init may join another's)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A Ray runtime whose workers can import toy_models; yields the fault-injection folder."""
    faults = tmp_path_factory.mktemp("faults")
    ray.init(
        num_cpus=2,
        num_gpus=0,
        include_dashboard=False,
        runtime_env={"env_vars": {"PYTHONPATH": str(TESTS), "NADS_TEST_FAULTS": str(faults)}},
    )
    yield faults
    ray.shutdown()


@pytest.fixture(scope="module")
def small_sweep():
    bank = draw_noise_bank(Synthetic(n_train=512, n_test=256, seed=3))
    freqs, v = fourier_directions((1, 32, 32), 4)
    return bank, v[[0, 1, 9, 33]], Schedule(epochs=2, batch_size=64)


def test_nad_estimation_on_ray_equals_local(cluster):
    kwargs = dict(arch="lenet", n_networks=192, seed=4, device="cpu")  # 3 shards of networks
    local = estimate_nads(**kwargs, executor=LocalExecutor())
    remote = estimate_nads(**kwargs, executor="ray")
    assert remote.timing["executor"] == "ray" and local.timing["executor"] == "local"
    rank = local.diagnostics["rank"]
    np.testing.assert_allclose(remote.eigenvalues[:rank], local.eigenvalues[:rank], rtol=1e-6)
    # Same directions: |<u_i, u_i'>| = 1 for the well-separated leading NADs.
    np.testing.assert_allclose(np.abs(np.sum(remote.nads[:10] * local.nads[:10], 1)), 1, atol=1e-4)
    assert remote.diagnostics == local.diagnostics


def test_sweep_on_ray_equals_local(cluster, small_sweep):
    bank, v, schedule = small_sweep
    for arch in ("logreg", "lenet"):
        local = sweep(arch, bank, v, schedule, "cpu", executor="local")
        remote = sweep(arch, bank, v, schedule, "cpu", executor="ray")
        for key in ("test_acc", "train_acc"):
            np.testing.assert_allclose(remote[key], local[key], atol=1e-12)
    assert local["train_acc"].min() > 0.5  # real training happened: not a trivial equality


@pytest.mark.parametrize("failure", ["exit", "raise"])
def test_a_lost_task_is_retried_and_each_direction_appears_once(cluster, small_sweep, failure):
    bank, v, schedule = small_sweep
    faults = cluster
    (faults / "fired").unlink(missing_ok=True)
    (faults / "mode").write_text(failure)
    try:
        # One task per direction; the first model built on the cluster kills its
        # worker process ('exit') or raises ('raise').
        r = sweep(
            "toy_models:dies_once", bank, v, schedule, "cpu", models_per_batch=1, executor=RayExecutor(max_retries=2)
        )
    finally:
        (faults / "mode").unlink()
    assert (faults / "fired").exists()  # a task really failed
    # The reference on the cluster too: its workers compute on one thread, and a different
    # thread count rounds differently (a training accuracy can move by a sample).
    reference = sweep("lenet", bank, v, schedule, "cpu", models_per_batch=1, executor=RayExecutor())
    assert len(r["test_acc"]) == len(v) and not np.isnan(r["test_acc"]).any()
    np.testing.assert_allclose(r["test_acc"], reference["test_acc"], atol=1e-12)
    np.testing.assert_allclose(r["train_acc"], reference["train_acc"], atol=1e-12)


def test_a_task_failing_every_attempt_stops_the_sweep_with_its_error(cluster, small_sweep):
    bank, v, schedule = small_sweep
    with pytest.raises(ValueError, match="lenet needs inputs of at least 16x16"):
        # LeNet cannot take 8x8 inputs: every attempt fails, the error reaches the driver.
        sweep(
            "lenet",
            draw_noise_bank(Synthetic(input_shape=(1, 8, 8), n_train=8, n_test=8)),
            np.eye(64, dtype=np.float32)[:2],
            schedule,
            "cpu",
            executor=RayExecutor(max_retries=0),
        )


def test_without_ray_the_error_says_what_to_install():
    # In a fresh process: once ray.init has run here (the cluster fixture), `import ray`
    # finds the loaded module whatever sys.modules says.
    code = (
        "import sys; sys.modules['ray'] = None\n"
        "from nads.executor import make_executor\n"
        "for args in (('ray',), ('ray', 'auto', 3)):\n"
        "    try:\n"
        "        make_executor(*args)\n"
        "    except Exception as e:\n"
        "        print(type(e).__name__, e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert (
        out.splitlines()
        == [
            "ParamError executor = 'ray' needs Ray, which is not installed: pip install 'nads[ray]' "
            "(or pip install 'ray>=2.9')"
        ]
        * 2
    )


def test_executor_params_are_checked(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("executor: cluster\n")
    with pytest.raises(ParamError, match="executor = 'cluster': allowed: local .*, ray"):
        config.load(p)
    p.write_text("executor: ray\nray: {max_retries: -1}\n")
    with pytest.raises(ParamError, match="ray.max_retries = -1: must be an integer >= 0"):
        config.load(p)
    p.write_text("executor: ray\nray: {address: 'ray://head:10001', max_retries: 5}\n")
    params = config.load(p)
    with pytest.raises(InputError, match=r"ray.address = 'ray://head:10001': no Ray cluster answers there"):
        make_executor(params.executor, params["ray"].address, params["ray"].max_retries)  # (probed: 5 s at most)
    p.write_text("profile: x\n")
    params = config.load(p)
    assert make_executor(params.executor, params["ray"].address) == LocalExecutor()


def test_ray_tasks_use_the_clusters_gpus_only_where_it_has_some(cluster):
    assert RayExecutor().device("auto").type == "cpu"  # this test cluster has no GPUs
    assert RayExecutor().device("cpu").type == "cpu"
    with pytest.raises(ParamError, match="device = 'cuda:0': the Ray cluster at 'auto' has no GPUs"):
        RayExecutor().device("cuda:0")


def test_cli_with_executor_ray_joins_the_cluster_and_gives_the_local_result(cluster, tmp_path):
    import subprocess
    import sys

    address = ray.get_runtime_context().gcs_address  # the test's cluster, as a user's `ray start` head
    out = tmp_path / "nads.npz"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "nads.cli",
            "estimate",
            "--arch",
            "lenet",
            "--networks",
            "128",
            "--seed",
            "2",
            "--device",
            "cpu",
            "--executor",
            "ray",
            "--ray-address",
            address,
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    local = estimate_nads("lenet", n_networks=128, seed=2, device="cpu")
    with np.load(out) as f:
        np.testing.assert_allclose(f["eigenvalues"][:127], local.eigenvalues[:127], rtol=1e-6)


def test_a_worker_running_other_code_refuses_the_task(monkeypatch):
    from nads.executor import _ray_call
    from nads.runtime import fingerprint

    # Called in this test process, which loaded numpy before nads: a worker whose arithmetic
    # is not the portable one refuses too, unless portable arithmetic is off.
    with pytest.raises(ParamError, match="portable arithmetic .* is not in effect"):
        _ray_call(lambda common, job: common + job, 1, 2, fingerprint())
    monkeypatch.setenv("NADS_PORTABLE", "0")

    assert _ray_call(lambda common, job: common + job, 1, 2, fingerprint()) == (3, 0.0, [])  # result, units, events
    with pytest.raises(ParamError, match="runs other nads code or another torch version than the driver"):
        _ray_call(lambda common, job: common + job, 1, 2, "0" * 64)


def test_a_tasks_progress_and_records_reach_the_drivers_monitor(cluster):
    from toy_models import reporting_job

    from nads.progress import Monitor

    logged = []
    monitor = Monitor(4, None, "job", log=lambda metrics, step: logged.append((metrics, step)), name="toy")
    assert RayExecutor().map(reporting_job, list(range(4)), 10, "cpu", monitor=monitor) == list(range(4))
    monitor.close()
    assert monitor.done == 4
    records = [(m, s) for m, s in logged if not any(k.startswith("system/progress/") for k in m)]
    assert sorted(records, key=lambda r: r[1]) == [({f"job{j}/value": 10 * j}, j) for j in range(4)]
