"""What a long computation shows while it runs: a progress bar with an ETA, and
step metrics for MLflow, fed by its jobs wherever they run.

A job (see nads.executor) calls `advance(units)` as it works and `record(metrics,
step)` for step metrics. The executor routes both to the driver's `Monitor`:
directly when the job runs in the driver's process, through a queue drained by
the driver from its worker processes, and replayed when a Ray task's result
arrives. With no Monitor listening, both cost next to nothing. Everything that
reaches a Monitor is handled in the driver's main thread (tqdm and MLflow's
fluent API are not thread-safe).
"""

from __future__ import annotations

import time
from typing import Callable

from tqdm.auto import tqdm

FLUSH_S = 0.5  # a worker sends its progress at most this often
LOG_EVERY_S = 15  # a Monitor logs its progress to MLflow at most this often

Log = Callable[[dict, int], None]  # (metrics, step): e.g. tracking.StageRun.log_metrics

_sink: Callable | None = None  # where this process's events go (set by the executor)
_units = 0.0  # advanced by the current job, in total and not yet sent
_unsent = 0.0
_sent_at = 0.0


def advance(units: float) -> None:
    """The current job did `units` more of its work (units are the Monitor's: networks, models...)."""
    global _units, _unsent
    _units += units
    _unsent += units
    if time.monotonic() - _sent_at >= FLUSH_S:
        _flush()


def record(metrics: dict, step: int) -> None:
    """Step metrics of the current job (per-epoch accuracies...), for the driver's MLflow run."""
    if _sink is not None:
        _sink(("record", metrics, step))


def _flush() -> None:
    global _unsent, _sent_at
    if _sink is not None and _unsent:
        _sink(("advance", _unsent))
    _unsent, _sent_at = 0.0, time.monotonic()


def start_job(sink: Callable | None) -> None:
    global _sink, _units, _unsent
    _sink, _units, _unsent = sink, 0.0, 0.0


def end_job() -> float:
    """Send what is left; the units the job advanced (kept with its result, for a resumed run's bar)."""
    _flush()
    return _units


# Progress is not a result: MLflow's UI shows metrics under system/ apart from the model metrics
# (its System metrics charts), so a researcher's compare view starts from results.
PREFIX = "system/progress"


def _whole(units: float) -> int:
    """Finished units: fractions of a unit (a model per training step) are not counted until
    they add up (1e-6: float sums of fractions fall just short of a whole, 4.999999999999999)."""
    return int(units + 1e-6)


class Monitor:
    """The driver's view of a computation: a tqdm bar (total units, ETA) and, with `log`,
    MLflow metrics system/progress/<name>/{done,fraction,eta_s} every LOG_EVERY_S, plus the jobs' records."""

    def __init__(self, total: float, desc: str | None, unit: str, log: Log | None = None, name: str = "work"):
        # Jobs advance by fractions (a model per training step); the bar counts finished units only.
        self.bar = tqdm(
            total=total,
            desc=desc,
            unit=unit,
            disable=desc is None,
            mininterval=2.0,
            delay=0.5,
            bar_format="{l_bar}{bar}| {n:.0f}/{total_fmt} {unit} [{elapsed}<{remaining}, {rate_fmt}]",
        )
        self.total, self.done, self.log, self.name = total, 0.0, log, name
        self.resumed_units = 0.0
        self.started = time.monotonic()
        self.logged_at: float = -LOG_EVERY_S

    def resumed(self, units: float) -> None:
        """Work done by an earlier, interrupted run: counted as done, not in the rate."""
        self.done += units
        self.resumed_units += units
        if not self.bar.disable:
            self.bar.initial = self.bar.n = _whole(self.done)
            self.bar.refresh()

    def handle(self, event: tuple) -> None:
        if event[0] == "advance":
            step = min(event[1], self.total - self.done)  # (float sums can overshoot the total)
            before = _whole(self.done)
            self.done += step
            self.bar.update(_whole(self.done) - before)
            self._log_progress()
        elif self.log is not None:
            self.log(event[1], event[2])

    def _log_progress(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.log is None or not (force or now - self.logged_at >= LOG_EVERY_S):
            return
        self.logged_at = now
        done = min(self.done, self.total)
        rate = (done - self.resumed_units) / max(now - self.started, 1e-9)
        eta = (self.total - done) / rate if rate > 0 else float("nan")
        self.log(
            {  # (rounded: float sums of fractional units read 4.999999999999999 otherwise)
                f"{PREFIX}/{self.name}/done": _whole(done),
                f"{PREFIX}/{self.name}/fraction": round(done / max(self.total, 1e-9), 4),
                f"{PREFIX}/{self.name}/eta_s": round(max(eta, 0.0), 1) if eta == eta else eta,
            },
            _whole(done),
        )

    def close(self) -> None:
        self._log_progress(force=True)
        self.bar.close()
