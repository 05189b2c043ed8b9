"""The local executor: job order, shared data, failures."""

import os
import re
import select
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from nads.executor import LocalExecutor


def scaled(common, job):
    time.sleep(0.2)  # long enough that every worker gets jobs, however fast one starts
    return common["scale"] * job, os.getpid()


def dies_on_3(common, job):
    if job == 3:
        os._exit(1)  # as the kernel's out-of-memory killer would
    return job


def raises_on_2(common, job):
    if job == 2:
        raise ValueError("job 2 is bad")
    return job


@pytest.mark.parametrize("workers", [1, 2])
def test_results_come_back_in_job_order_with_the_shared_data(workers):
    done = []
    common = {"scale": 3, "big": np.zeros(10**6)}
    out = LocalExecutor(workers).map(
        scaled, list(range(7)), common, "cpu", on_done=lambda job, result: done.append(job)
    )
    assert [r for r, _ in out] == [3 * j for j in range(7)]
    assert sorted(done) == list(range(7))
    pids = {pid for _, pid in out}
    assert (os.getpid() in pids) == (workers == 1) and len(pids) == workers


def test_a_worker_process_that_dies_is_an_error_not_a_hang():
    with pytest.raises(RuntimeError, match="a worker process died .* while running dies_on_3"):
        LocalExecutor(2).map(dies_on_3, list(range(6)), None, "cpu")


def test_a_failing_job_raises_its_own_error():
    with pytest.raises(ValueError, match="job 2 is bad"):
        LocalExecutor(2).map(raises_on_2, list(range(6)), None, "cpu")


SHM_DRIVER = textwrap.dedent("""
    import sys, torch
    from nads.executor import LocalExecutor

    def ones(common, n):
        return torch.ones(n)

    try:
        LocalExecutor(2).map(ones, [int(sys.argv[1])] * 2)
    except Exception as e:
        sys.exit(f"{type(e).__name__}: {e}")
    print("ok")
""")


@pytest.mark.parametrize(
    "size, floats, said",
    [
        ("64m", 10, "/dev/shm holds 64 MiB.*--shm-size=2g.*at least 256 MiB"),  # before any job
        ("300m", 10**8, "/dev/shm holds 300 MiB.*--shm-size=2g.*nothing was written"),  # 400 MB of results
        ("300m", 10**6, "ok"),
    ],
)
def test_a_small_dev_shm_is_named_with_the_container_option(size, floats, said):
    # A real tmpfs of a container's size on /dev/shm, in a private mount namespace.
    script = f"mount -t tmpfs -o size={size} tmpfs /dev/shm && exec {sys.executable} -c '{SHM_DRIVER}' {floats}"
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs tmpfs /dev/shm"], capture_output=True)
    if probe.returncode:
        pytest.skip(f"no private mount namespace here: {probe.stderr.decode().strip()}")
    p = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=120)
    assert re.search(said, p.stdout + p.stderr), p.stderr
    assert (p.returncode == 0) == (said == "ok")


# The driver is a separate process so that the test can SIGKILL it: no handler,
# no atexit, no pool shutdown runs; only the kernel can tell its workers.
SLEEPING_DRIVER = textwrap.dedent("""
    import os, sys, time
    from nads.executor import LocalExecutor

    def sleeps(common, job):
        os.write(1, f"{os.getpid()}\\n".encode())  # one write: print's two would interleave between workers
        time.sleep(60)

    LocalExecutor(2).map(sleeps, [0, 1], None, "cpu")
""")


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # an orphan zombie waits for init to reap it, and ours may never do so: it is dead
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return sys.platform != "linux"


@pytest.mark.skipif(sys.platform == "win32", reason="no fork, no SIGKILL")
def test_workers_die_with_a_driver_killed_by_sigkill():
    driver = subprocess.Popen(
        [sys.executable, "-c", SLEEPING_DRIVER],
        stdout=subprocess.PIPE,
        start_new_session=True,
        cwd=os.path.dirname(os.path.dirname(__file__)),
    )
    try:
        out, deadline = b"", time.monotonic() + 30
        while out.count(b"\n") < 2:  # each worker prints its pid once it runs its job
            assert time.monotonic() < deadline, f"the workers did not start; printed: {out!r}"
            if select.select([driver.stdout], [], [], 1)[0]:  # raw reads: a buffered readline hides lines from select
                chunk = os.read(driver.stdout.fileno(), 1024)
                assert chunk, f"the driver exited ({driver.poll()}) before its workers started"
                out += chunk
        workers = [int(pid) for pid in out.split()]
        assert len(workers) == 2 and all(map(_alive, workers)), out
        os.kill(driver.pid, signal.SIGKILL)  # the driver only: its workers must notice by themselves
        driver.wait()
        killed, deadline = time.monotonic(), time.monotonic() + 5
        while any(map(_alive, workers)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(map(_alive, workers)), "workers outlived their driver by 5 s"
        print(f"workers gone {time.monotonic() - killed:.2f} s after the driver")
    finally:
        try:
            os.killpg(driver.pid, signal.SIGKILL)  # whatever survived: the driver's whole session
        except ProcessLookupError:
            pass
        driver.stdout.close()


@pytest.mark.parametrize("workers", [1, 2])
def test_the_jobs_progress_and_records_reach_the_drivers_monitor(workers):
    from toy_models import reporting_job

    from nads.progress import Monitor

    logged = []
    monitor = Monitor(5, None, "job", log=lambda metrics, step: logged.append((metrics, step)), name="toy")
    assert LocalExecutor(workers).map(reporting_job, list(range(5)), 10, "cpu", monitor=monitor) == list(range(5))
    monitor.close()
    assert monitor.done == 5
    records = sorted(
        [(m, s) for m, s in logged if not any(k.startswith("system/progress/") for k in m)], key=lambda r: r[1]
    )
    assert records == [({f"job{j}/value": 10 * j}, j) for j in range(5)]
    assert logged[-1] == (
        {"system/progress/toy/done": 5, "system/progress/toy/fraction": 1.0, "system/progress/toy/eta_s": 0.0},
        5,
    )


def test_progress_is_a_system_metric_and_counts_are_whole_numbers():
    from nads.progress import Monitor

    logged = []
    monitor = Monitor(1, None, "model", log=lambda metrics, step: logged.append((metrics, step)), name="models")
    for _ in range(10):  # a model per training step: ten steps of 0.1 sum to 0.9999999999999999
        monitor.handle(("advance", 0.1))
    monitor.close()
    metrics, step = logged[-1]
    assert set(metrics) == {f"system/progress/models/{k}" for k in ("done", "fraction", "eta_s")}
    assert metrics["system/progress/models/done"] == 1 and type(metrics["system/progress/models/done"]) is int
    assert metrics["system/progress/models/fraction"] == 1.0 and metrics["system/progress/models/eta_s"] == 0.0
    assert step == 1
    first, _ = logged[0]  # after the first tenth: no model finished yet, and no fraction of one shown
    assert first["system/progress/models/done"] == 0 and type(first["system/progress/models/done"]) is int
    assert first["system/progress/models/fraction"] == 0.1
    bar = Monitor(14, "sweep", "dir")  # the console bar: whole directions, `3/14 dir`, never `3.188/14`
    for _ in range(35):
        bar.handle(("advance", 0.1))
    assert bar.bar.n == 3 and "| 3/14 dir" in str(bar.bar)
    bar.close()
