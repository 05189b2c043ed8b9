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
import itertools
import os
import queue
import shutil
import signal
import socket
import sys
import threading
import time
import warnings
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch

from . import portable, progress, resume
from .config import DEVICES, EXECUTORS, is_device, ray_endpoint
from .errors import InputError, ParamError
from .progress import Monitor
from .runtime import fingerprint, resolve_device

IN_FLIGHT = 4  # jobs submitted ahead per worker (or per Ray CPU)


def cpu_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class LocalExecutor:
    """This machine. workers: processes (default: one per core on a CPU, 1 on a GPU)."""

    workers: int | None = None
    keep: Path | None = None  # where finished work is kept for a rerun (nads.resume); None: nowhere
    name = "local"

    def device(self, device: str) -> torch.device:
        """The device jobs run on, for a `device` parameter (auto | cpu | cuda[:N])."""
        return resolve_device(device)

    def map(
        self,
        fn: Callable,
        jobs: Sequence,
        common=None,
        device: torch.device | str = "cpu",
        on_done: Callable | None = None,
        monitor: Monitor | None = None,
        fold: Callable | None = None,
    ):
        """[fn(common, job) for job in jobs], or with `fold` its in-order fold
        fold(...fold(r0, r1)..., r_n-1) (holding only the results not yet folded).

        device: where the jobs compute, as returned by .device(). on_done(job, result)
        runs here as each job finishes; `monitor` shows the jobs' progress and
        records (nads.progress). With `keep`, finished work is kept there and reused."""
        workers = self.workers
        if workers is None:
            workers = cpu_workers() if torch.device(device).type == "cpu" else 1
        results = _Results(resume.job_store(self.keep, fn, jobs, common), jobs, on_done, monitor, fold)
        todo, left = results.todo(), results.left()
        if min(workers, left) <= 1:
            for i in todo:
                results.add(
                    i, *_run_job(fn, common, jobs[i], monitor.handle if monitor else None, results.training_state(i))
                )
        else:
            _pool_map(fn, jobs, todo, common, min(workers, left), results, monitor)
        return results.value()


class _Results:
    """Job results as they finish: kept in job order or folded in order, stored for resume."""

    def __init__(self, store: resume.JobStore | None, jobs, on_done, monitor, fold):
        self.jobs, self.on_done, self.monitor, self.fold = jobs, on_done, monitor, fold
        self.store = store
        self.done: dict = {}  # index -> (result, units), not yet folded
        self.next, self.acc, self.units = 0, None, 0.0  # the fold of jobs 0..next-1, and their units
        self.saved_at = time.monotonic()
        if self.store is not None:
            if fold is not None:
                self.next, self.acc, self.units = self.store.prefix()
            self.done = {i: r for i, r in self.store.jobs().items() if i >= self.next}
            resumed = self.units + sum(u for _, u in self.done.values())
            if monitor is not None and resumed:
                monitor.resumed(resumed)
            self._fold()

    def todo(self) -> Iterator[int]:
        """The jobs still to run, in order (lazily: a map may have millions)."""
        return (i for i in range(self.next, len(self.jobs)) if i not in self.done)

    def left(self) -> int:
        return len(self.jobs) - self.next - len(self.done)

    def training_state(self, i: int):
        return None if self.store is None else self.store.training_state(i)

    def add(self, i: int, result, units: float, events=()) -> None:
        for event in events if self.monitor else ():  # a Ray task's, replayed
            self.monitor.handle(event)
        if self.store is not None and self.fold is None:  # (a fold is kept as its prefix)
            self.store.save_job(i, result, units)
        self.done[i] = (result, units)
        if self.on_done:
            self.on_done(self.jobs[i], result)
        self._fold()

    def _fold(self) -> None:
        if self.fold is None or self.next not in self.done:
            return
        while self.next in self.done:
            result, units = self.done.pop(self.next)
            self.acc = result if self.next == 0 else self.fold(self.acc, result)
            self.units += units
            self.next += 1
        # Every resume.checkpoint_seconds(): a fold's results can be large (NAD moments,
        # 16 MB a shard for 32x32 inputs) and come many times a second.
        if self.store is not None and time.monotonic() - self.saved_at >= resume.checkpoint_seconds():
            self.store.save_prefix(self.next, self.acc, self.units)
            self.saved_at = time.monotonic()

    def value(self):
        if self.fold is not None:
            return self.acc
        return [self.done[i][0] for i in range(len(self.jobs))]


def _run_job(fn, common, job, sink, state):
    """(fn(common, job), the progress units it advanced), with its progress and records sent to `sink`."""
    progress.start_job(sink)
    resume.start_job(state)
    try:
        result = fn(common, job)
    finally:
        units = progress.end_job()
        progress.start_job(None)
        resume.start_job(None)
    return result, units


_COMMON = None  # in a worker process: what its jobs share (inherited under fork, not copied)
_EVENTS = None  # in a worker process: the queue its progress events go to (None: no monitor)


def _pool_init(common, events, parent: int) -> None:
    global _COMMON, _EVENTS
    _COMMON, _EVENTS = common, events
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


def _pool_call(fn, job, state):
    return _run_job(fn, _COMMON, job, None if _EVENTS is None else _EVENTS.put, state)


SHM = Path("/dev/shm")
SHM_MIN = 256 * 2**20  # a container's default 64 MB fails the quick profile's NAD shards


def _shm_advice(total: int) -> str:
    return (
        f"{SHM} holds {total / 2**20:.0f} MiB, and worker processes hand their results back through it: "
        "in a container, give it more (docker/podman run --shm-size=2g)"
    )


def check_shared_memory(path: Path = SHM, minimum: int = SHM_MIN) -> None:
    """Refuse, before any compute, to start worker processes on a /dev/shm too small for
    them (torch passes tensors between processes as files there)."""
    if path.is_dir() and (total := shutil.disk_usage(path).total) < minimum:
        raise InputError(_shm_advice(total) + f"; at least {minimum / 2**20:.0f} MiB")


def _out_of_shm(exc: BaseException) -> bool:
    text = str(exc)
    return "shared memory" in text or ("/torch_" in text and "No space left" in text)


def _pool_map(fn, jobs, todo, common, workers, results: _Results, monitor):
    check_shared_memory()
    # fork, like torch's DataLoader workers (children set one thread): spawn
    # would re-run a caller's script without an `if __name__ == "__main__"` guard.
    context = get_context("fork" if "fork" in get_all_start_methods() else "spawn")
    events = context.Queue() if monitor is not None else None
    pool = ProcessPoolExecutor(
        workers, mp_context=context, initializer=_pool_init, initargs=(common, events, os.getpid())
    )

    def drain():  # here, in the driver's main thread
        while events is not None:
            try:
                monitor.handle(events.get_nowait())
            except queue.Empty:
                return

    pending: dict = {}

    def submit():  # a few jobs per worker in flight: memory does not grow with the number of jobs
        for i in itertools.islice(todo, IN_FLIGHT * workers - len(pending)):
            pending[pool.submit(_pool_call, fn, jobs[i], results.training_state(i))] = i

    try:
        submit()
        while pending:
            finished, _ = wait(pending, timeout=progress.FLUSH_S, return_when=FIRST_COMPLETED)
            drain()
            for future in finished:
                results.add(pending.pop(future), *future.result())
            submit()
    except BrokenProcessPool:
        raise RuntimeError(
            f"a worker process died (killed by the system, out of memory?) while running "
            f"{getattr(fn, '__name__', fn)}; nothing was written. Rerun with fewer workers "
            "or a smaller batch"
        ) from None
    except BaseException as exc:
        # Ctrl-C or a failed job: stop every worker now rather than wait for them.
        processes = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for p in processes:
            p.terminate()
        if _out_of_shm(exc):
            raise InputError(_shm_advice(shutil.disk_usage(SHM).total) + "; nothing was written") from None
        raise
    pool.shutdown()
    # The workers have exited, so all they sent is in the queue (a process flushes its queues on exit).
    if events is not None:
        while True:
            try:
                monitor.handle(events.get(timeout=0.05))
            except queue.Empty:
                break
        events.close()


@dataclass(frozen=True)
class RayExecutor:
    """A Ray cluster. address: 'auto' (RAY_ADDRESS, else the cluster `ray start`
    began on this machine, else a new local one), or e.g. 'ray://head:10001'.
    If this process already called ray.init (a notebook, a test), that runtime is used."""

    address: str = "auto"
    max_retries: int = 3
    keep: Path | None = None  # as LocalExecutor.keep (in the driver: tasks' training states are not kept)
    name = "ray"

    def _ray(self):
        ray = import_ray()
        if not ray.is_initialized():
            _check_reachable(self.address)
            # Workers start outside this process: they get the arithmetic settings explicitly.
            ray.init(
                address=None if self.address == "auto" else self.address,
                include_dashboard=False,
                log_to_driver=True,
                runtime_env={"env_vars": portable.environment()},
            )
            # Say what was joined: a mistyped RAY_ADDRESS silently gives a new local cluster.
            res = ray.cluster_resources()
            print(
                f"Ray: {len(ray.nodes())} node(s), {res.get('CPU', 0):g} CPUs, {res.get('GPU', 0):g} GPUs "
                f"(ray.address = {self.address!r})",
                file=sys.stderr,
            )
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
            raise ParamError(
                f"device = {device!r}: the Ray cluster at {self.address!r} has no GPUs; use 'auto' or 'cpu'"
            )
        return torch.device("cpu")

    def map(
        self,
        fn: Callable,
        jobs: Sequence,
        common=None,
        device: torch.device | str = "cpu",
        on_done: Callable | None = None,
        monitor: Monitor | None = None,
        fold: Callable | None = None,
    ):
        """As LocalExecutor.map, one Ray task per job (a task's progress and records
        reach the monitor when its result does; training states are not kept on the nodes)."""
        ray = self._ray()
        gpu = torch.device(device).type == "cuda"
        # Retried: a lost worker, and errors that may pass (RuntimeError covers CUDA
        # out-of-memory); not bad input (ValueError, TypeError...), which fails again.
        # GPU tasks get a fresh worker each (Ray's default for GPU functions):
        # GPU memory and the CUDA context are released with it.
        task = ray.remote(
            num_cpus=1,
            num_gpus=1 if gpu else 0,
            max_calls=1 if gpu else 0,
            max_retries=self.max_retries,
            retry_exceptions=[RuntimeError, OSError],
        )(_ray_call)
        results = _Results(resume.job_store(self.keep, fn, jobs, common), jobs, on_done, monitor, fold)
        shared = ray.put(common)
        code = fingerprint()
        todo, pending = results.todo(), dict[object, int]()
        in_flight = IN_FLIGHT * max(1, int(ray.cluster_resources().get("CPU", 1)))

        def submit():
            for i in itertools.islice(todo, in_flight - len(pending)):
                pending[task.remote(fn, shared, jobs[i], code)] = i

        try:
            submit()
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    # ray.get raises once a job has failed max_retries + 1 times
                    results.add(pending.pop(ref), *ray.get(ref))
                submit()
        finally:
            for ref in pending:  # Ctrl-C or a failed job: do not leave the cluster busy
                try:
                    ray.cancel(ref, force=True)
                except Exception:  # noqa: BLE001 - never hide the error that got us here
                    pass
        return results.value()


def _ray_call(fn, common, job, code: str):
    if code != fingerprint():
        raise ParamError(
            f"this Ray worker ({os.uname().nodename}) runs other nads code or another torch "
            "version than the driver; install the same checkout and versions on every node"
        )
    try:
        portable.check()
    except RuntimeError as e:
        raise ParamError(f"Ray worker {os.uname().nodename}: {e}") from None
    # Ray hands shared numpy arrays over zero-copy, read-only; jobs never write to them.
    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
    torch.set_num_threads(1)  # the task's one CPU, whatever OMP_NUM_THREADS says
    events: list = []
    result, units = _run_job(fn, common, job, events.append, None)
    return result, units, events


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """An explicit cluster address answers within `timeout` s (ray.init would wait forever)."""
    if address == "auto":
        return
    endpoint = ray_endpoint(address)
    if endpoint is None:
        raise ParamError(f"ray.address = {address!r}: must be 'auto' or 'host:port' / 'ray://host:port'")
    try:
        socket.create_connection(endpoint, timeout=timeout).close()
    except OSError as e:
        raise InputError(
            f"ray.address = {address!r}: no Ray cluster answers there ({e.strerror or e}); "
            "start one (ray start --head) or fix the address"
        ) from None


@functools.cache
def import_ray():
    try:
        import ray
    except ImportError:
        raise ParamError(
            "executor = 'ray' needs Ray, which is not installed: pip install 'nads[ray]' (or pip install 'ray>=2.9')"
        ) from None
    return ray


Executor = LocalExecutor | RayExecutor


def executor_for(params, keep: Path | None = None) -> Executor:
    """The executor a params file names (executor, and the ray section for a cluster),
    keeping finished work under `keep` (nads.resume)."""
    return make_executor(params.executor, params["ray"].address, params["ray"].max_retries, keep)


def make_executor(
    executor: str | Executor = "local", ray_address: str = "auto", max_retries: int = 3, keep: Path | None = None
) -> Executor:
    """An executor from its name ('local' or 'ray'), or the executor given."""
    if isinstance(executor, (LocalExecutor, RayExecutor)):
        return executor
    if executor == "local":
        return LocalExecutor(keep=keep)
    if executor == "ray":
        import_ray()  # fail now, before any compute
        _check_reachable(ray_address)
        return RayExecutor(ray_address, max_retries, keep)
    raise ParamError(f"executor = {executor!r}: allowed: {', '.join(EXECUTORS)}")
