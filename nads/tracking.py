"""MLflow tracking: where the store lives, and one run per stage execution.

The default store is MLflow's embedded SQLite database at the repository root
(artifacts beside it, in mlartifacts/). The root comes from DVC_ROOT when DVC
sets it: `dvc exp run --queue` runs stages in a temporary copy but points
DVC_ROOT at the real repository, so queued experiments log to the same store.
MLFLOW_TRACKING_URI overrides all of this. The store is never a DVC dep or out.

Tracking is the log of the results, not the results: the store is checked
before any compute (one line naming the URI if it cannot take a run), and a
store lost mid-run only loses the log (a warning), never the stage's outputs.
A run ends FINISHED, FAILED, or KILLED (Ctrl-C, SIGTERM); a run whose process
was killed outright (kill -9) is marked KILLED by the next stage that starts.

Run as a DVC stage, a run also records the data it read (its deps that are not
code; nads.lineage) as MLflow dataset inputs, each with its DVC hash as digest, and samples
the machine's CPU, memory, disk, network (and GPU with nvidia-ml-py) as
`system/...` metrics.
"""

from __future__ import annotations

import base64
import getpass
import importlib.util
import json
import logging
import os
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

from . import environment, lineage, progress
from .errors import InputError
from .files import pid_alive
from .spool import Courier, Spool, deliver_pending, shown

# Before mlflow is imported anywhere: no telemetry leaves a researcher's machine,
# and a tracking server that stops answering costs seconds, not MLflow's default
# minutes of retries.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")

EXPERIMENT = "nads"
# MLflow 3's UI shows an experiment as a GenAI app (traces) or as model training (runs). This
# tag records that `nads` is model training; the UI 3.17 itself follows its own sidebar switch
# (kept in the browser) unless the URL says `workflowType=machine_learning`, as ui_url's does.
KIND_TAG, KIND = "mlflow.experimentKind", "custom_model_development"
SEARCH = "/api/2.0/mlflow/experiments/search?max_results=1"  # an API call any MLflow server answers
PENDING_S = 10.0  # at a stage start: time for delivering the logs that ended stages left
# System metrics: one sample every SAMPLE_S seconds, their mean logged every SAMPLES samples
# (a point a minute: hours-long stages stay light); a shorter stage logs one point at its end.
# MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL and _SAMPLES_BEFORE_LOGGING override both.
SAMPLE_S, SAMPLES = 10, 6


SYSTEM = "system/"  # MLflow's UI charts these apart from the model metrics
PROGRESS_TAG = "nads.progress"
# Each stage's headline metrics: `nads runs` shows them, and a run logs them before its others
# (the first metric two runs share is what MLflow's compare page plots).
HEADLINE = (
    "n_fourier_directions",
    "half_agreement_top10",
    "index_frequency_spearman",
    "mean_test_acc",
    "frac_test_acc_above_0.9",
    "auc_learned_first",
    "clean_baseline_test_acc",
    "max_drop_vs_clean",
    "original_test_acc",
    "flipped_test_acc",
    "nads_agreement_top10",
    "grid_mean_abs_diff",
    "curve_mean_abs_diff",
    "auc_nad",
    "auc_fourier",
    "spearman_nad",
    "claims_supported",
    "n_train",
)


def _progress_line(system: dict, done: dict) -> str:
    """`networks_fd 1024 done (50%), eta 12 s`: what the tag shows while a stage computes."""
    parts = []
    for key, n in done.items():
        base = key.removesuffix("/done")
        eta = system.get(f"{base}/eta_s", float("nan"))
        parts.append(
            f"{base.removeprefix(progress.PREFIX + '/')} {n:g} done ({system.get(f'{base}/fraction', 0):.0%})"
            + (f", eta {eta:.0f} s" if eta == eta else "")
        )
    return "; ".join(parts)


class _Held:
    """What SystemMetricsMonitor logs to: the run's held system points, not the store."""

    def __init__(self, held: list):
        self.held, self.total_training_time = held, 0.0
        self.data: list = []  # (read by SystemMetricsMonitor's debug lines)

    def record_metrics(self, metrics: dict, step: int | None = None) -> None:
        self.held.append((dict(metrics), step, int(time.time() * 1000)))

    def flush(self) -> None:
        pass


def repo_root() -> Path:
    env = os.environ.get("DVC_ROOT")
    if env:
        return Path(env).resolve()
    here = Path.cwd().resolve()
    for d in (here, *here.parents):
        if (d / ".dvc").is_dir():
            return d
    return here


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{repo_root() / 'mlflow.db'}"


class StoreError(InputError):
    """The tracking store cannot take a run."""


def check_store(uri: str, timeout: float = 5.0, write: bool = True) -> None:
    """Fail in one line, in at most about `timeout` seconds, if the store at `uri` cannot take a
    run (write) or be read: a server must answer its health check and an MLflow API call; a
    SQLite file must be a readable database. Creates nothing."""

    def fail(why: str):
        raise StoreError(
            f"MLflow tracking store {shown(uri)}: {why}; fix it, or set MLFLOW_TRACKING_URI to another store"
        )

    if uri.startswith(("http://", "https://")):
        base = uri.rstrip("/")
        for path, what in (("/health", "its health check"), (SEARCH, "an MLflow API call")):
            try:
                with urllib.request.urlopen(urllib.request.Request(base + path, headers=_auth()), timeout=timeout) as r:
                    body = r.read()
                if path == SEARCH:
                    json.loads(body)
            except urllib.error.HTTPError as e:
                if e.code in (401, 403):  # MLflow's basic-auth app, or a proxy with a login
                    given = "MLFLOW_TRACKING_USERNAME" in os.environ or "MLFLOW_TRACKING_TOKEN" in os.environ
                    fail(
                        f"refused {'these' if given else 'a request without'} credentials (HTTP {e.code}); set "
                        "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN)"
                    )
                cause = _server_error(e)
                if cause:  # MLflow's own error: the server is there, what it stores in is not
                    fail(f"the server answers, but not its backend store (HTTP {e.code}: {cause})")
                fail(f"answered HTTP {e.code} to {what} ({path}): is it an MLflow tracking server?")
            except OSError as e:  # refused, timed out, DNS
                fail(f"no answer to {what} within {timeout:g} s ({getattr(e, 'reason', None) or e})")
            except ValueError:  # (json's error; the URL errors above are OSErrors)
                fail(f"answered {what} ({path}) with something that is not MLflow's JSON")
        return
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///") :])
        if not db.parent.is_dir():  # SQLite creates the file, never its folder
            fail(f"no folder {db.parent}")
        if write and (db.exists() and not os.access(db, os.W_OK) or not os.access(db.parent, os.W_OK | os.X_OK)):
            fail(f"{db} is read-only")  # (SQLite writes a journal beside the file, too)
        if db.exists():
            try:
                with closing(sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=timeout)) as con:
                    con.execute("SELECT count(*) FROM sqlite_master").fetchone()
            except sqlite3.Error as e:
                fail(f"{db} is not a readable SQLite database ({e})")
    elif write and ("://" not in uri or uri.startswith("file:")):  # a file store: MLflow creates its folders
        folder = Path(uri.removeprefix("file://").removeprefix("file:"))
        existing = next((d for d in (folder, *folder.parents) if d.exists()), folder)
        if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            fail(f"cannot write in {existing}")
    # Other backends (databricks, postgresql...): their clients report their own errors.


def _auth() -> dict:
    """The credentials MLflow's client sends, as HTTP headers."""
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if user and password:
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}
    if os.environ.get("MLFLOW_TRACKING_TOKEN"):
        return {"Authorization": f"Bearer {os.environ['MLFLOW_TRACKING_TOKEN']}"}
    return {}


def _server_error(e: urllib.error.HTTPError) -> str | None:
    """The cause in an MLflow server's JSON error (its backend's, e.g. a database that is down),
    in one line: the driver's message without SQLAlchemy's hints; None if it is not MLflow's."""
    try:
        body = json.loads(e.read())
        message = str(body["message"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return one_line(message) or body.get("error_code")


def one_line(message: str) -> str:
    """An error message (a driver's, MLflow's) in one line: SQLAlchemy's hint dropped, bounded."""
    lines = [x.strip() for x in str(message).splitlines() if x.strip() and not x.startswith("(Background on this")]
    return " ".join(lines)[:500]


DATABASES = ("postgresql", "mysql", "mssql", "oracle")  # SQLAlchemy's, with or without "+driver"


def is_database(uri: str) -> bool:
    """A database server used directly as the store (not through `mlflow server`)."""
    return uri.split("://", 1)[0].split("+", 1)[0] in DATABASES


def _shared_artifacts(uri: str, exp) -> None:
    """A database used directly stores the artifact location of the client that creates the
    experiment: a clone's local folder (./mlruns) would become every clone's. Refused unless
    the experiment already has one every client reaches (s3://, gs://, a server's...)."""
    where = exp.artifact_location if exp is not None else "./mlruns"
    if "://" not in where or where.startswith("file:"):
        raise StoreError(
            f"MLflow tracking store {shown(uri)}: a database used directly keeps {where} (one clone's folder) as "
            "the artifact location of every clone; serve it instead: mlflow server --backend-store-uri "
            f"{shown(uri)} --artifacts-destination s3://BUCKET/PATH (or a folder the server reaches), then set "
            "MLFLOW_TRACKING_URI=http://SERVER:5000 in each clone (docs/team.md)"
        )


def store_exists(uri: str) -> bool:
    """Whether a local store is there already (reading one that is not would create it)."""
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///") :]).is_file()
    if "://" not in uri or uri.startswith("file:"):
        return Path(uri.removeprefix("file://").removeprefix("file:")).is_dir()
    return True


def git_state(root: Path) -> dict:
    """The branch, and whether the workspace's code or params differ from the commit (tracked
    files only; not dvc.lock nor the pipeline's outputs under data/ and results/, which stages
    write as they run: their bytes are in the run's dvc.out.* tags)."""

    def git(*args) -> str | None:
        try:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return None

    outputs = (":(exclude)dvc.lock", ":(exclude)data", ":(exclude)results")
    status = git("status", "--porcelain", "--untracked-files=no", "--", ".", *outputs)
    return {
        "git_branch": git("rev-parse", "--abbrev-ref", "HEAD") or "unknown",
        "git_dirty": "unknown" if status is None else str(bool(status)).lower(),
    }


def git_commit(root: Path) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def experiment(mlflow):
    """The `nads` experiment of the store mlflow points at (None if there is none); a
    deleted one is a StoreError (MLflow would neither use nor recreate it)."""
    exp = mlflow.get_experiment_by_name(EXPERIMENT)
    if exp is not None and exp.lifecycle_stage == "deleted":
        raise StoreError(
            f"MLflow tracking store {shown(mlflow.get_tracking_uri())}: its experiment {EXPERIMENT!r} is deleted; "
            f"restore it (mlflow experiments restore --experiment-id {exp.experiment_id}) or use another store"
        )
    return exp


def _experiment_id(mlflow, artifact_location: str | None) -> str:
    exp = experiment(mlflow)
    if exp is None:
        try:
            return mlflow.create_experiment(EXPERIMENT, artifact_location=artifact_location, tags={KIND_TAG: KIND})
        except Exception:  # noqa: BLE001 - a stage starting at the same time may have created it first
            exp = experiment(mlflow)
            if exp is None:
                raise
    if KIND_TAG not in exp.tags:  # made by an earlier version of this module
        mlflow.MlflowClient().set_experiment_tag(exp.experiment_id, KIND_TAG, KIND)
    return exp.experiment_id


class StageRun:
    """The MLflow run of one stage execution. Every call appends to the run's spool and
    returns at once (nads.spool); a courier thread delivers the log while the stage
    computes. A store that goes away costs no compute and no log: what is not delivered
    when the stage ends is delivered later (the next stage start, or nads runs --sync)."""

    def __init__(self, mlflow, run, uri: str, spool: Spool):
        self._mlflow = mlflow
        self.run = run
        self.uri = uri
        self.spool = spool
        self._courier = Courier(spool, mlflow.MlflowClient(uri))
        self._monitor: Any = None  # mlflow's SystemMetricsMonitor while it samples
        # Points under system/ (progress, the jobs' running records, CPU and memory), held back
        # until the run's end: MLflow's compare page plots the first metric its runs share, in the
        # order the store received them, and that must be a result. Progress shows live in a tag.
        self._held: list[tuple[dict, int | None, int]] = []

    def log_params(self, params: dict) -> None:
        self.spool.add("params", params={k: str(v) for k, v in flatten(params).items()})

    def log_tags(self, tags: dict) -> None:
        self.spool.add("tags", tags={k: str(v) for k, v in tags.items()})

    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        numeric = {
            k: float(v) for k, v in flatten(metrics).items() if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        system = {k: v for k, v in numeric.items() if k.startswith(SYSTEM)}
        if system:
            self._held.append((system, step, int(time.time() * 1000)))
            done = {k: v for k, v in system.items() if k.startswith(progress.PREFIX) and k.endswith("/done")}
            if done:
                self.log_tags({PROGRESS_TAG: _progress_line(system, done)})
        first = [k for k in HEADLINE if k in numeric]
        results = {k: numeric[k] for k in first + [k for k in numeric if k not in system and k not in first]}
        if results:
            self.spool.add("metrics", metrics=results, step=step)

    def log_artifacts(self, *paths, subdir: str | None = None) -> None:
        for p in map(Path, paths):
            if p.exists():
                self.spool.add("artifact", path=str(p), subdir=subdir)

    def log_inputs(self, inputs) -> None:
        """Each (path, DVC hash, producing stage) as a dataset input: the runs table's Dataset column."""
        if inputs:
            self.spool.add("inputs", inputs=[list(i) for i in inputs])

    def watch_system(self) -> None:
        """Sample system metrics in a daemon thread until end() (none without psutil)."""
        if importlib.util.find_spec("psutil") is None:
            return
        try:
            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

            # Its info lines, and its warning when the store is gone (ours says so already).
            logging.getLogger("mlflow.system_metrics").setLevel(logging.ERROR)
            self._monitor = SystemMetricsMonitor(
                self.run.info.run_id, sampling_interval=SAMPLE_S, samples_before_logging=SAMPLES, tracking_uri=self.uri
            )
            self._monitor.mlflow_logger = _Held(self._held)
            self._monitor.start()
        except Exception:  # noqa: BLE001 - no system metrics; the run goes on
            self._monitor = None

    def _stop_system(self) -> None:
        # MLflow's own stop (end_run) joins the thread without a timeout, and the thread's
        # last act is a store query: a store that hangs would hang the stage. Here the thread
        # gets a few seconds; then the samples since the last point are logged as one more
        # point (for a stage shorter than one point, a single sample taken now: the CPU over
        # the whole run, memory at its end).
        monitor, self._monitor = self._monitor, None
        thread = getattr(monitor, "_process", None)
        if thread is None:
            return
        monitor._shutdown_event.set()
        thread.join(timeout=3)
        if thread.is_alive():
            return
        try:
            if monitor._logging_step == 0:
                for m in monitor.monitors:
                    m.clear_metrics()  # the sample taken at the start measures nothing
            monitor.collect_metrics()
            monitor.publish_metrics(monitor.aggregate_metrics())
        except Exception:  # noqa: BLE001 - the last system metrics only
            pass

    def end(self, status: str) -> None:
        """The last entry of the log; the courier gets FLUSH_S seconds to deliver what is left."""
        self._stop_system()
        for metrics, step, t in self._held:  # after the results (see __init__)
            self.spool.add("metrics", metrics=metrics, step=step, t=t)
        self._held.clear()
        self.spool.add("end", status=status)
        if self._courier.finish():
            self.spool.remove()
            return
        print(
            f"warning: MLflow tracking store {shown(self.uri)} did not take the whole log of run "
            f"{self.run.info.run_id} ({self.spool.sent()} of {len(self.spool.entries())} entries); the rest "
            f"is kept in {self.spool.folder} and delivered at the next stage start or with `nads runs --sync`; "
            "the stage's outputs are not affected",
            file=sys.stderr,
        )


def end_orphans(client, experiment_id: str) -> list[str]:
    """Mark KILLED the RUNNING runs started on this host by processes that no longer exist
    (a stage killed with kill -9 could not end its own run)."""
    host = socket.gethostname()
    orphans = []
    for run in client.search_runs([experiment_id], "attributes.status = 'RUNNING'", max_results=1000):
        tags = run.data.tags
        if tags.get("nads.spool") and Path(tags["nads.spool"]).is_dir():
            continue  # its log is still on this machine: delivered (with its status) from there
        if tags.get("host") == host and tags.get("pid", "").isdigit() and not pid_alive(int(tags["pid"])):
            client.set_terminated(run.info.run_id, "KILLED")
            orphans.append(run.info.run_id)
    return orphans


@contextmanager
def stage_run(stage: str, params: dict, profile: str, label: str | None = None):
    """One MLflow run in experiment `nads`, named after the DVC stage (`label`, e.g. nads@lenet).

    Tagged with the git commit, the profile, the host and process id, and what it
    computes with (env.python, env.torch, env.cpu, env.gpu...: nads.environment.record); the
    stage's params are logged flat (`synthetic.epsilon`, ...). It ends FAILED
    if the stage raises, KILLED on KeyboardInterrupt (Ctrl-C, and SIGTERM in a
    stage program). Runs that killed processes left RUNNING are ended first.
    """
    uri = tracking_uri()
    check_store(uri)
    import mlflow

    root = repo_root()
    # Artifacts beside the default store; a user-chosen store keeps its own
    # default. (Decided before set_tracking_uri, which exports the variable.)
    artifacts = None if os.environ.get("MLFLOW_TRACKING_URI") else (root / "mlartifacts").as_uri()
    mlflow.set_tracking_uri(uri)
    name = os.environ.get("DVC_STAGE", label or stage)
    tags = {
        "git_commit": git_commit(root),
        "profile": profile,
        "stage": stage,
        "dvc_stage": name,
        # The UI's User column (MlflowClient.create_run sets none): the server login if there is one.
        "mlflow.user": os.environ.get("MLFLOW_TRACKING_USERNAME") or getpass.getuser(),
        "host": socket.gethostname(),
        "pid": str(os.getpid()),
    }
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc_exp_name"] = os.environ["DVC_EXP_NAME"]
    tags.update(git_state(root))
    tags.update({f"env.{k}": v for k, v in environment.record().items()})
    lineage_read = None
    if os.environ.get("DVC_STAGE") and ":" not in os.environ["DVC_STAGE"]:  # a stage of ./dvc.yaml
        try:
            # (cwd: the stage's workspace.) The params of everything upstream too, prefixed by
            # section: two runs that trained on different data differ in Compare. Keys the stage
            # logs itself are its own; a stage that logs all of params.yaml has them all.
            lineage_read = lineage.stage_inputs(Path.cwd(), os.environ["DVC_STAGE"], "params" not in params)
        except InputError:  # (before any run or compute: a stage that need not run)
            raise
        except Exception as e:  # noqa: BLE001 - the log of the inputs, never the stage
            lineage_read = ([], {})
            print(
                f"warning: {name}: could not list its data inputs ({type(e).__name__}: {e}); its MLflow run shows none",
                file=sys.stderr,
            )
    try:
        deliver_pending(root, uri, timeout=PENDING_S)
    except Exception as e:  # noqa: BLE001 - earlier runs' logs wait for the next chance; this stage runs
        print(f"warning: could not deliver earlier run logs ({type(e).__name__}: {e})", file=sys.stderr)
    try:
        if is_database(uri):
            _shared_artifacts(uri, experiment(mlflow))
        experiment_id = _experiment_id(mlflow, artifacts)
        end_orphans(mlflow.MlflowClient(), experiment_id)
        client = mlflow.MlflowClient(uri)
        started = client.create_run(experiment_id, run_name=name, tags={**tags, "nads.log": "incomplete"})
        spool = Spool.create(root, uri, started.info.run_id)
        client.set_tag(started.info.run_id, "nads.spool", str(spool.folder.resolve()))
        run = StageRun(mlflow, started, uri, spool)
    except StoreError:
        raise
    except Exception as e:  # noqa: BLE001 - the store passed check_store but still refuses: say so in one line
        raise StoreError(
            f"MLflow tracking store {shown(uri)}: cannot start a run ({type(e).__name__}: {one_line(str(e))})"
        ) from None
    try:
        run.watch_system()
        run.log_params(params)
        if lineage_read is not None:
            inputs, upstream = lineage_read
            run.log_params({k: v for k, v in upstream.items() if k not in params})
            run.log_inputs(inputs)
        yield run
        if os.environ.get("DVC_STAGE") and ":" not in os.environ["DVC_STAGE"]:
            try:  # the bytes this run produced, as dvc.lock will pin them: `nads runs --checkout RUN`
                outs, before = lineage.outputs(Path.cwd(), os.environ["DVC_STAGE"])
                run.log_tags({f"dvc.out.{path}": digest for path, digest in outs.items()})
                if outs:  # whether it made anything new (a forced fetch of the same copy makes the same bytes)
                    run.log_tags({"nads.outputs": "unchanged" if outs == before else "changed" if before else "new"})
            except Exception as e:  # noqa: BLE001 - the log, never the stage
                print(f"warning: {name}: could not hash its outputs ({type(e).__name__}: {e})", file=sys.stderr)
    except KeyboardInterrupt:
        run.end("KILLED")
        raise
    except BaseException:
        run.end("FAILED")
        raise
    run.end("FINISHED")
