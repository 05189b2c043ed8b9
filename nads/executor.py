"""Where independent jobs run: this machine (`local`) or a Ray cluster (`ray`).

Every heavy computation in nads is a list of independent jobs (shards of
networks, groups of directions, groups of CIFAR models) plus data they all
share. An executor runs `fn(common, job)` for each job and returns the results
in job order; callers combine them in that order, so results do not depend on
the executor or the number of workers (on the same kind of device: every
worker computes on one thread). Outputs and MLflow logging stay with the
caller (the driver), whatever the executor.

local: in this process, or one process per CPU core. On a CPU, many small
tensor operations scale poorly across threads, while independent networks
scale perfectly across processes (measured: two 1-thread processes do 1.7x
the NAD work of one 2-thread process on 2 cores).

ray: one Ray task per job (1 CPU, and 1 GPU where the cluster has GPUs and the
device allows it). The shared data is put in Ray's object store once. A task
whose worker dies, or that raises a RuntimeError or OSError, is retried
(`max_retries`); each job's result is taken exactly once. Workers must run the
driver's nads code and torch version (checked by each task).
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import signal
import sys
import threading
import time
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path
from typing import Callable, Sequence

import torch

from .config import DEVICES, EXECUTORS, ParamError, is_device
from .runtime import resolve_device

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

    def map(self, fn: Callable, jobs: Sequence, common=None, device: torch.device | str = "cpu",
            on_done: Callable | None = None) -> list:
        """[fn(common, job) for job in jobs]; on_done(job) runs here as each job finishes.

        device: where the jobs compute, as returned by .device()."""
        workers = self.workers
        if workers is None:
            workers = cpu_workers() if torch.device(device).type == "cpu" else 1
        workers = min(workers, len(jobs))
        if workers <= 1:
            results = []
            for job in jobs:
                results.append(fn(common, job))
                if on_done:
                    on_done(job)
            return results
        return _pool_map(fn, jobs, common, workers, on_done)


_COMMON = None  # in a worker process: what its jobs share (inherited under fork, not copied)


def _pool_init(common, parent: int) -> None:
    global _COMMON
    _COMMON = common
    _die_with(parent)
    # Ctrl-C is the parent's to handle (it stops the pool); terminating sends
    # SIGTERM: die quietly, whatever handler the parent had (Ray's prints a trace).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    torch.set_num_threads(1)


_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def _die_with(parent: int) -> None:
    """End this worker when `parent` (the driver) dies, however it dies."""
    # A driver killed by SIGKILL (or the out-of-memory killer) cannot stop its
    # pool: its workers would live on under init, each holding a core until
    # its jobs end. The kernel signals us at once, but when the *thread* that
    # forked us exits, not the process. That is safe: under fork,
    # ProcessPoolExecutor forks every worker in the first submit(), i.e. in the
    # thread blocked in _pool_map until the pool is done (it refuses
    # max_tasks_per_child, whose replacement workers its manager thread would fork).
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0:
            if os.getppid() != parent:  # died between fork and prctl: no signal will come
                os._exit(1)
            return

    def watch():  # elsewhere, notice being re-parented
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(1)

    threading.Thread(target=watch, name="nads-parent-watch", daemon=True).start()


def _pool_call(fn, job):
    return fn(_COMMON, job)


def _pool_map(fn, jobs, common, workers, on_done):
    # fork, like torch's DataLoader workers (children set one thread): spawn
    # would re-run a caller's script without an `if __name__ == "__main__"` guard.
    context = get_context("fork" if "fork" in get_all_start_methods() else "spawn")
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_pool_init,
                               initargs=(common, os.getpid()))
    try:
        futures = {pool.submit(_pool_call, fn, job): i for i, job in enumerate(jobs)}
        results = [None] * len(jobs)
        for future in as_completed(futures):
            i = futures[future]
            results[i] = future.result()
            if on_done:
                on_done(jobs[i])
    except BrokenProcessPool:
        raise RuntimeError(f"a worker process died (killed by the system, out of memory?) while running "
                           f"{getattr(fn, '__name__', fn)}; nothing was written. Rerun with fewer workers "
                           "or a smaller batch") from None
    except BaseException:
        # Ctrl-C or a failed job: stop every worker now rather than wait for them.
        processes = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for p in processes:
            p.terminate()
        raise
    pool.shutdown()
    return results


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
            # Say what was joined: a mistyped RAY_ADDRESS silently gives a new local cluster.
            res = ray.cluster_resources()
            print(f"Ray: {len(ray.nodes())} node(s), {res.get('CPU', 0):g} CPUs, {res.get('GPU', 0):g} GPUs "
                  f"(ray.address = {self.address!r})", file=sys.stderr)
        return ray

    def device(self, device: str) -> torch.device:
        """Tasks run on the cluster's GPUs for device auto/cuda where it has any; Ray
        gives each task its own GPU, which the task sees as cuda:0."""
        if not is_device(device):
            raise ParamError(f"device = {device!r}: allowed: {DEVICES}")
        if device == "cpu":
            return torch.device("cpu")
        if self._ray().cluster_resources().get("GPU", 0) > 0:
            return torch.device("cuda")
        if device != "auto":
            raise ParamError(f"device = {device!r}: the Ray cluster at {self.address!r} has no GPUs; "
                             "use 'auto' or 'cpu'")
        return torch.device("cpu")

    def map(self, fn: Callable, jobs: Sequence, common=None, device: torch.device | str = "cpu",
            on_done: Callable | None = None) -> list:
        """As LocalExecutor.map, one Ray task per job."""
        ray = self._ray()
        gpu = torch.device(device).type == "cuda"
        # Retried: a lost worker, and errors that may pass (RuntimeError covers CUDA
        # out-of-memory); not bad input (ValueError, TypeError...), which fails again.
        # GPU tasks get a fresh worker each (Ray's default for GPU functions):
        # GPU memory and the CUDA context are released with it.
        task = ray.remote(num_cpus=1, num_gpus=1 if gpu else 0, max_calls=1 if gpu else 0,
                          max_retries=self.max_retries, retry_exceptions=[RuntimeError, OSError])(_ray_call)
        shared = ray.put(common)
        code = fingerprint()
        pending = {task.remote(fn, shared, job, code): i for i, job in enumerate(jobs)}
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
                try:
                    ray.cancel(ref, force=True)
                except Exception:  # noqa: BLE001 - never hide the error that got us here
                    pass
        return results


def _ray_call(fn, common, job, code: str):
    if code != fingerprint():
        raise ParamError(f"this Ray worker ({os.uname().nodename}) runs other nads code or another torch "
                         "version than the driver; install the same checkout and versions on every node")
    # Ray hands shared numpy arrays over zero-copy, read-only; jobs never write to them.
    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
    torch.set_num_threads(1)  # the task's one CPU, whatever OMP_NUM_THREADS says
    return fn(common, job)


@functools.cache
def fingerprint() -> str:
    """The nads source code and torch version this process runs: tasks must run what the driver runs."""
    h = hashlib.sha256(torch.__version__.encode())
    for path in sorted(Path(__file__).parent.glob("*.py")):
        h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()


def import_ray():
    try:
        import ray
    except ImportError:
        raise ParamError("executor = 'ray' needs Ray, which is not installed: pip install 'nads[ray]' "
                         "(or pip install 'ray>=2.9')") from None
    return ray


Executor = LocalExecutor | RayExecutor


def make_executor(executor: str | Executor = "local", ray_address: str = "auto", max_retries: int = 3) -> Executor:
    """An executor from its name ('local' or 'ray'), or the executor given."""
    if isinstance(executor, (LocalExecutor, RayExecutor)):
        return executor
    if executor == "local":
        return LocalExecutor()
    if executor == "ray":
        import_ray()  # fail now, before any compute
        return RayExecutor(ray_address, max_retries)
    raise ParamError(f"executor = {executor!r}: allowed: {', '.join(EXECUTORS)}")
