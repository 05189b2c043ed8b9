"""Where independent jobs run: this machine (`local`) or a Ray cluster (`ray`).

Every heavy computation in nads is a list of independent jobs (shards of
networks, groups of directions, groups of CIFAR models) plus data they all
share. An executor runs `fn(common, job)` for each job and returns the results
in job order; callers combine them in that order, so results do not depend on
the executor or the number of workers. Outputs and MLflow logging stay with
the caller (the driver), whatever the executor.

local: in this process, or one process per CPU core. On a CPU, many small
tensor operations scale poorly across threads, while independent networks
scale perfectly across processes (measured: two 1-thread processes do 1.7x
the NAD work of one 2-thread process on 2 cores).

ray: one Ray task per job (1 CPU, and 1 GPU where the cluster has GPUs and the
device allows it). The shared data is put in Ray's object store once. A task
whose worker dies, or that raises, is retried (`max_retries`); each job's
result is taken exactly once.
"""
from __future__ import annotations

import os
import signal
import warnings
from dataclasses import dataclass
from multiprocessing import get_all_start_methods, get_context
from typing import Callable, Sequence

import torch

from .config import ParamError
from .runtime import resolve_device

KINDS = ("local", "ray")


def cpu_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class LocalExecutor:
    """This machine. workers: processes (default: one per core on a CPU, 1 on a GPU)."""

    workers: int | None = None
    name = "local"

    def device(self, device: str) -> torch.device:
        """The device jobs run on, for a `device` parameter (auto | cpu | cuda[:N])."""
        return resolve_device(device)

    def map(self, fn: Callable, jobs: Sequence, common=None, device: str = "auto",
            on_done: Callable | None = None) -> list:
        """[fn(common, job) for job in jobs]; on_done(job) runs here as each job finishes."""
        workers = self.workers
        if workers is None:
            workers = cpu_workers() if self.device(device).type == "cpu" else 1
        workers = min(workers, len(jobs))
        if workers <= 1:
            results = []
            for job in jobs:
                results.append(fn(common, job))
                if on_done:
                    on_done(job)
            return results
        return _pool_map(fn, jobs, common, workers, on_done)


_COMMON = None  # what the jobs of the running pool share; forked children inherit it, no copy


def _pool_init(common) -> None:
    global _COMMON
    # Terminating the pool sends SIGTERM: die quietly, whatever handler the parent
    # had installed (Ray's prints a stack trace).
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if common is not None:  # spawn: sent once per worker rather than once per job
        _COMMON = common
    torch.set_num_threads(1)


def _pool_call(fn, job):
    return fn(_COMMON, job)


def _pool_map(fn, jobs, common, workers, on_done):
    global _COMMON
    # fork, like torch's DataLoader workers (children set one thread): spawn
    # would re-run a caller's script without an `if __name__ == "__main__"` guard.
    fork = "fork" in get_all_start_methods()
    context = get_context("fork" if fork else "spawn")
    _COMMON = common
    pool = context.Pool(workers, initializer=_pool_init, initargs=(None if fork else common,))
    try:
        pending = [pool.apply_async(_pool_call, (fn, job),
                                    callback=(lambda _r, job=job: on_done(job)) if on_done else None)
                   for job in jobs]
        results = [p.get() for p in pending]
        pool.close()
        return results
    finally:
        # On Ctrl-C or a failed job, stop every worker now rather than wait for them.
        pool.terminate()
        pool.join()
        _COMMON = None


@dataclass(frozen=True)
class RayExecutor:
    """A Ray cluster. address: 'auto' (RAY_ADDRESS, else the cluster `ray start`
    began on this machine, else a new local one), or e.g. 'ray://head:10001'.
    If this process already called ray.init (a notebook, a test), that runtime is used."""

    address: str = "auto"
    max_retries: int = 3
    name = "ray"

    def _ray(self):
        ray = import_ray()
        if not ray.is_initialized():
            ray.init(address=None if self.address == "auto" else self.address,
                     include_dashboard=False, log_to_driver=True)
        return ray

    def gpus(self) -> float:
        return float(self._ray().cluster_resources().get("GPU", 0))

    def device(self, device: str) -> torch.device:
        """Tasks run on the cluster's GPUs for device auto/cuda where it has any; Ray
        gives each task its own GPU, which the task sees as cuda:0."""
        resolve = device in ("auto", "cpu", "cuda") or (device.startswith("cuda:") and device[5:].isdigit())
        if not resolve:
            raise ParamError(f"device = {device!r}: allowed: auto, cpu, cuda, cuda:N")
        if device == "cpu":
            return torch.device("cpu")
        if self.gpus() > 0:
            return torch.device("cuda")
        if device != "auto":
            raise ParamError(f"device = {device!r}: the Ray cluster at {self.address!r} has no GPUs; "
                             "use 'auto' or 'cpu'")
        return torch.device("cpu")

    def map(self, fn: Callable, jobs: Sequence, common=None, device: str = "auto",
            on_done: Callable | None = None) -> list:
        ray = self._ray()
        gpu = self.device(device).type == "cuda"
        task = ray.remote(_ray_call).options(num_cpus=1, num_gpus=1 if gpu else 0,
                                             max_retries=self.max_retries, retry_exceptions=True)
        shared = ray.put(common)
        pending = {task.remote(fn, shared, job): i for i, job in enumerate(jobs)}
        results = [None] * len(jobs)
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    i = pending.pop(ref)
                    results[i] = ray.get(ref)  # raises once a job has failed max_retries + 1 times
                    if on_done:
                        on_done(jobs[i])
        finally:
            for ref in pending:  # Ctrl-C or a failed job: do not leave the cluster busy
                ray.cancel(ref, force=True)
        return results


def _ray_call(fn, common, job):
    # Ray hands shared numpy arrays over zero-copy, read-only; jobs never write to them.
    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
    return fn(common, job)


def import_ray():
    try:
        import ray
    except ImportError:
        raise ParamError("executor = 'ray' needs Ray, which is not installed: pip install 'nads[ray]' "
                         "(or pip install 'ray>=2.9')") from None
    return ray


Executor = LocalExecutor | RayExecutor


def make_executor(executor: str | Executor = "local", ray_address: str = "auto", max_retries: int = 3,
                  workers: int | None = None) -> Executor:
    """An executor from its name ('local' or 'ray'), or the executor given."""
    if isinstance(executor, (LocalExecutor, RayExecutor)):
        return executor
    if executor == "local":
        return LocalExecutor(workers)
    if executor == "ray":
        import_ray()  # fail now, before any compute
        return RayExecutor(ray_address, max_retries)
    raise ParamError(f"executor = {executor!r}: allowed: {', '.join(KINDS)}")
