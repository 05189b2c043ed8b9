"""A run's log on disk until the tracking store has all of it.

Every logging call of a stage (params, tags, metrics, artifacts, inputs, the final
status) is appended to .nads/runs/<run id>/log.jsonl, with a copy of each artifact
(a hard link where it can), and returns at once: the computation never waits for
the store. A courier thread delivers the entries in order, retrying with backoff
(0.5 s doubling to 10 s) while the store is away; `sent` counts what it has
delivered. When the stage ends the courier gets a few seconds to finish; what it
could not deliver stays on disk and is delivered later, by the next stage that
starts against the same store or by `nads runs --sync`. A run whose log is not
all in the store is tagged nads.log=incomplete and stays RUNNING; its last entry
sets nads.log=complete and the status (a stage that exited 0 is FINISHED, never
KILLED). An entry may be delivered twice after a crash (at least once); logging
a value again changes nothing.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import sys
import threading
import time
from pathlib import Path

from . import files

SPOOLS = Path(".nads/runs")
BACKOFF = (0.5, 10.0)  # first and longest wait between attempts, s
FLUSH_S = 5.0  # what the end of a stage waits for the courier


def shown(uri: str) -> str:
    """A store's URI as messages print it: without the password of a database or server URI."""
    return re.sub(r"(://[^/:@]+):[^/@]*@", r"\1:***@", uri)


class Spool:
    """The log of run `run_id` of the store `uri`, in `folder`."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self._lock = threading.Lock()
        self._files = 0

    @classmethod
    def create(cls, root: Path, uri: str, run_id: str) -> Spool:
        # Made aside and renamed into place: another process never sees one without its owner.
        final = Path(root) / SPOOLS / run_id
        tmp = final.with_name(f".{run_id}.tmp")
        tmp.mkdir(parents=True)
        (tmp / "meta.json").write_text(json.dumps({"uri": uri, "run_id": run_id}))
        (tmp / "owner").write_text(files._identity(os.getpid()))  # as an output set's owner
        os.replace(tmp, final)
        return cls(final)

    @property
    def meta(self) -> dict:
        return json.loads((self.folder / "meta.json").read_text())

    def add(self, op: str, **fields) -> None:
        """Append one entry (thread-safe); artifacts are copied into the spool first."""
        with self._lock:
            if op == "artifact":
                fields["local"] = self._keep(Path(fields.pop("path")))
            line = json.dumps({"op": op, "t": int(time.time() * 1000), **fields})  # (a "t" in fields wins)
            with open(self.folder / "log.jsonl", "a") as f:
                f.write(line + "\n")

    def _keep(self, path: Path) -> str:
        self._files += 1
        dest = self.folder / "files" / str(self._files) / path.name
        dest.parent.mkdir(parents=True)
        if path.is_dir():
            shutil.copytree(path, dest, copy_function=_link_or_copy)
        else:
            _link_or_copy(path, dest)
        return str(dest.relative_to(self.folder))

    def entries(self) -> list[dict]:
        try:
            lines = (self.folder / "log.jsonl").read_text().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except ValueError:  # a line cut by a kill: the last one, never sent
                break
        return out

    def sent(self) -> int:
        try:
            return int((self.folder / "sent").read_text())
        except (FileNotFoundError, ValueError):
            return 0

    def mark_sent(self, n: int) -> None:
        tmp = self.folder / f".sent.{os.getpid()}.tmp"
        tmp.write_text(str(n))
        os.replace(tmp, self.folder / "sent")

    def ended(self) -> bool:
        return any(e["op"] == "end" for e in self.entries())

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _link_or_copy(src, dst) -> None:
    # Outputs are replaced by renames, never written in place: a hard link keeps these bytes.
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def deliver(spool: Spool, client, stop: threading.Event | None = None, deadline: float | None = None) -> bool:
    """Send `spool`'s entries not sent yet, in order, retrying with backoff until they are
    all in, `stop` is set and nothing is left, or `deadline` (time.monotonic()) passes.
    True if the whole log (ended) is in the store."""
    wait = BACKOFF[0]
    while True:
        entries = spool.entries()
        n = spool.sent()
        while n < len(entries):
            if deadline is not None and time.monotonic() > deadline:
                return False
            try:
                _send(client, spool, entries[n])
            except Exception:  # noqa: BLE001 - the store is away (or slow): try again later
                if deadline is not None and time.monotonic() + wait > deadline:
                    return False
                time.sleep(wait)
                wait = min(wait * 2, BACKOFF[1])
                continue
            wait = BACKOFF[0]
            n += 1
            spool.mark_sent(n)
        if entries and entries[-1]["op"] == "end":
            return True
        if stop is None or stop.wait(0.2) and spool.sent() >= len(spool.entries()):
            return False


def _send(client, spool: Spool, e: dict) -> None:
    from mlflow.entities import Metric, Param, RunTag

    run_id = spool.meta["run_id"]
    op = e["op"]
    if op == "metrics":
        metrics = [Metric(k, v, e["t"], e.get("step") or 0) for k, v in e["metrics"].items()]
        for i in range(0, len(metrics), 1000):  # (MLflow's limit per batch)
            client.log_batch(run_id, metrics=metrics[i : i + 1000], synchronous=True)
    elif op == "params":
        client.log_batch(run_id, params=[Param(k, v) for k, v in e["params"].items()], synchronous=True)
    elif op == "tags":
        client.log_batch(run_id, tags=[RunTag(k, v) for k, v in e["tags"].items()], synchronous=True)
    elif op == "artifact":
        local = spool.folder / e["local"]
        if local.is_dir():
            client.log_artifacts(run_id, str(local), e.get("subdir"))
        else:
            client.log_artifact(run_id, str(local), e.get("subdir"))
    elif op == "inputs":
        client.log_inputs(run_id, datasets=[_dataset_input(*i) for i in e["inputs"]])
    elif op == "end":
        client.set_tag(run_id, "nads.log", "complete", synchronous=True)
        client.set_terminated(run_id, e["status"], end_time=e["t"])
    else:
        raise ValueError(f"unknown log entry {op!r}")


def _dataset_input(path: str, digest: str, producer: str | None):
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.data.sources import LocalArtifactDatasetSource  # type: ignore[attr-defined]  # (registered at import)
    from mlflow.entities import DatasetInput, InputTag

    dataset = MetaDataset(  # type: ignore[abstract]  # (MetaDataset is the concrete one for data by reference)
        LocalArtifactDatasetSource(Path(path).absolute().as_uri()), name=path, digest=digest
    )
    tags = [InputTag("dvc_stage", producer)] if producer else []
    return DatasetInput(dataset._to_mlflow_entity(), tags)


class Courier:
    """Delivers a spool from a daemon thread while the stage computes."""

    def __init__(self, spool: Spool, client):
        self.spool = spool
        self._stop = threading.Event()
        self._done = threading.Event()
        self.complete = False
        self._thread = threading.Thread(target=self._run, args=(client,), name="nads-courier", daemon=True)
        self._thread.start()

    def _run(self, client) -> None:
        try:
            self.complete = deliver(self.spool, client, self._stop)
        finally:
            self._done.set()

    def finish(self, timeout: float = FLUSH_S) -> bool:
        """Wait up to `timeout` s for the whole log to be in the store; True if it is."""
        self._stop.set()
        self._done.wait(timeout)
        return self.complete


def pending(root: Path, uri: str | None = None) -> list[Spool]:
    """Spools under `root` (of the store `uri`) whose stage has ended or died: theirs to deliver."""
    found = []
    for folder in sorted((Path(root) / SPOOLS).glob("[!.]*")) if (Path(root) / SPOOLS).is_dir() else []:
        spool = Spool(folder)
        try:
            meta = spool.meta
        except (OSError, ValueError):
            continue
        if (uri is None or meta["uri"] == uri) and not files._alive(folder / "owner"):
            found.append(spool)
    return found


def deliver_pending(root: Path, uri: str, timeout: float) -> tuple[int, int]:
    """Deliver what ended or killed stages left for the store `uri`, within `timeout` s in all.
    A log without its end (a stage killed outright) ends KILLED. Returns (delivered, left)."""
    import mlflow

    client = mlflow.MlflowClient(uri)
    deadline = time.monotonic() + timeout
    done = left = 0
    for spool in pending(root, uri):
        with open(spool.folder / "deliver.lock", "w") as lock:
            try:  # one deliverer at a time: stages starting together skip what another delivers
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue
            if not spool.ended():
                spool.add("end", status="KILLED")
            if deliver(spool, client, deadline=deadline):
                spool.remove()
                done += 1
            else:
                left += 1
    if left:
        print(
            f"warning: {left} run log(s) for {shown(uri)} are still in {Path(root) / SPOOLS}; "
            "delivered at the next stage start or with `nads runs --sync`",
            file=sys.stderr,
        )
    return done, left
