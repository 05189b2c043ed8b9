"""Run independent shards of work: in this process, or one process per CPU core.

On a CPU, many small tensor operations scale poorly across threads, while
independent networks scale perfectly across processes (measured: two 1-thread
processes do 1.7x the NAD work of one 2-thread process on 2 cores). Results
are always combined in shard order, so they do not depend on the worker count.
"""
from __future__ import annotations

import os
from multiprocessing import get_all_start_methods, get_context
from typing import Callable, Sequence


def cpu_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


def run_shards(fn: Callable, shards: Sequence, workers: int = 1, on_done: Callable | None = None) -> list:
    """[fn(s) for s in shards], on `workers` processes when workers > 1.

    `fn` must be a module-level function (it is pickled); on_done(shard) is
    called in this process as each shard finishes (for progress bars).
    """
    if workers <= 1 or len(shards) <= 1:
        results = []
        for s in shards:
            results.append(fn(s))
            if on_done:
                on_done(s)
        return results
    # fork, like torch's DataLoader workers (children set one thread): spawn
    # would re-run a caller's script without an `if __name__ == "__main__"` guard.
    context = get_context("fork" if "fork" in get_all_start_methods() else "spawn")
    pool = context.Pool(min(workers, len(shards)), initializer=_one_thread)
    try:
        pending = [pool.apply_async(fn, (s,), callback=(lambda _r, s=s: on_done(s)) if on_done else None)
                   for s in shards]
        results = [p.get() for p in pending]
        pool.close()
        return results
    finally:
        # On Ctrl-C or a failed shard, stop every worker now rather than wait for them.
        pool.terminate()
        pool.join()
