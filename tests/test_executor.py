"""The local executor: job order, shared data, failures."""
import os
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
    out = LocalExecutor(workers).map(scaled, list(range(7)), common, "cpu", on_done=done.append)
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
