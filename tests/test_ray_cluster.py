"""A Ray cluster that loses a whole node mid-map: Ray's own multi-node harness
(ray.cluster_utils.Cluster: a head and two worker nodes, each a real raylet with its
own processes, on this machine)."""

import numpy as np
import pytest
import ray
import torch
from ray.cluster_utils import Cluster

from nads.estimate import Engine, Shards, Spec, shard_moments
from nads.executor import LocalExecutor, RayExecutor

pytestmark = [
    pytest.mark.long,
    pytest.mark.xdist_group("ray"),
]  # one Ray runtime at a time (ray.init may join another's)


def test_a_node_removed_mid_map_costs_time_not_the_result():
    """NAD moments of 8 shards of LeNets: the node running the first tasks is removed as
    soon as two results are in; its tasks are retried on the other node and the moments
    are bit-identical to the local executor's."""
    spec, engine = Spec("lenet"), Engine(torch.device("cpu"))
    jobs = Shards(64 * 8)
    fold = lambda a, b: (a[0] + b[0], a[1] + b[1])  # noqa: E731
    local = LocalExecutor(1).map(shard_moments, jobs, (spec, engine), "cpu", fold=fold)

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})  # the head runs no tasks
    doomed = cluster.add_node(num_cpus=1)
    cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address)
    removed = []

    def lose_a_node(job, result):
        if len(removed) == 0 and job.start >= 64:  # two shards done, more running on both nodes
            cluster.remove_node(doomed)  # its raylet and workers are killed: a lost machine
            removed.append(job)

    try:
        remote = RayExecutor(address=cluster.address, max_retries=3).map(
            shard_moments, jobs, (spec, engine), "cpu", on_done=lose_a_node, fold=fold
        )
        alive = [n for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU", 0) > 0]
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert removed and len(alive) == 1  # the node really went, mid-map
    assert local[0].n + local[1].n == 64 * 8  # (two halves of the networks, for the split-half check)
    for a, b in zip(local, remote):
        assert a.n == b.n
        assert torch.equal(a.sum, b.sum) and torch.equal(a.outer, b.outer)  # bit for bit
    assert np.isfinite(local[0].outer.numpy()).all() and local[0].outer.abs().sum() > 0
