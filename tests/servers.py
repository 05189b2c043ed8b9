"""Real servers on localhost for the tests: an MLflow tracking server, PostgreSQL, an S3
endpoint (moto's server mode) and sshd. Each is a context manager that starts the real
program, waits until it answers, and kills its whole process group on the way out; one
that is not installed skips the test with the reason (.ci/run installs them)."""

from __future__ import annotations

import contextlib
import getpass
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

# Servers on localhost are never reached through a proxy (urlopen's default would use one).
LOCAL = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(ready, proc: subprocess.Popen, what: str, log: Path | None = None, timeout: float = 90) -> None:
    deadline = time.time() + timeout  # (seconds alone; longer on a loaded 2-core machine)
    while not ready():
        if proc.poll() is not None or time.time() > deadline:
            tail = log.read_text()[-3000:] if log and log.exists() else ""
            _kill(proc)
            raise AssertionError(f"{what} did not start (exit {proc.poll()}): {tail}")
        time.sleep(0.3)


def _kill(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGCONT)  # (a stopped group dies only once continued)
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _answers(url: str) -> bool:
    try:
        LOCAL.open(url, timeout=2).close()
        return True
    except OSError:
        return False


def start_mlflow_server(backend, port: int, artifacts: Path | None = None, log: Path | None = None, *args, env=None):
    """`mlflow server` on `backend` (a URI, or a path: a SQLite file), artifacts proxied to a
    folder; `args` are more of its options (--app-name basic-auth), `env` more variables."""
    uri = backend if "://" in str(backend) else f"sqlite:///{backend}"
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri, "--port", str(port), "--workers", "1"]
    if artifacts:
        cmd += ["--artifacts-destination", str(artifacts)]
    cmd += args
    out = open(log, "w") if log else subprocess.DEVNULL
    env = {
        **os.environ,
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        **(env or {}),
    }
    # In a folder of its own: the basic-auth app keeps its users in ./basic_auth.db.
    cwd = Path(backend).parent if "://" not in str(backend) else Path(tempfile.mkdtemp(prefix="nads-mlflow-"))
    server = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env, cwd=cwd)
    _wait(lambda: _answers(f"http://127.0.0.1:{port}/health"), server, "mlflow server", log)
    return server


@contextlib.contextmanager
def mlflow_server(
    backend, port: int | None = None, artifacts: Path | None = None, log: Path | None = None, *args, env=None
):
    port = port or free_port()
    server = start_mlflow_server(backend, port, artifacts, log, *args, env=env)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        _kill(server)


def _pg_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    if not found:
        pytest.skip("PostgreSQL is not installed (Debian's postgresql; .ci/run installs it)")
    return Path(found[-1]).parent


class Postgres:
    """A throwaway PostgreSQL cluster (trust auth on 127.0.0.1), database `mlflow`. As root it
    runs as the `postgres` user (PostgreSQL refuses root), in a folder of its own under /tmp
    (pytest's are private to root)."""

    def __init__(self):
        self.bin, self.port = _pg_bin(), free_port()
        self.root = Path(tempfile.mkdtemp(prefix="nads-pg-"))
        self.uri = f"postgresql://nads@127.0.0.1:{self.port}/mlflow"
        self.proc: subprocess.Popen | None = None
        self._user = []
        if os.getuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
            self._user = ["setpriv", "--reuid=postgres", "--regid=postgres", "--clear-groups"]
        init = [str(self.bin / "initdb"), "-D", str(self.root / "data"), "-A", "trust", "-U", "nads", "--no-sync"]
        done = subprocess.run(self._user + init, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
        self.start()
        subprocess.run(
            [str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "nads", "mlflow"], check=True
        )

    def _ready(self) -> bool:
        cmd = [str(self.bin / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)]
        return subprocess.run(cmd).returncode == 0

    def start(self) -> None:
        cmd = [str(self.bin / "postgres"), "-D", str(self.root / "data"), "-p", str(self.port), "-k", str(self.root)]
        cmd += ["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"]
        log = self.root / "postgres.log"
        with open(log, "a") as out:
            self.proc = subprocess.Popen(self._user + cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        _wait(self._ready, self.proc, "postgres", log)

    def stop(self) -> None:
        """Down at once: a fast shutdown ends every connection (a smart one would wait for them)."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGINT)
        self.proc.wait(timeout=60)

    def remove(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            _kill(self.proc)
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def postgres():
    db = Postgres()
    try:
        yield db
    finally:
        db.remove()


@contextlib.contextmanager
def s3_server(bucket: str):
    """moto's S3 server on localhost with `bucket`; yields the endpoint URL. Its credentials are
    any (AWS_* in the environment: the clients' env must carry them, as with a real S3)."""
    if shutil.which("moto_server", path=os.path.dirname(sys.executable)) is None:
        pytest.skip("moto's server is not installed (pip install 'moto[server]': the test lock has it)")
    port = free_port()
    server = subprocess.Popen(
        [os.path.join(os.path.dirname(sys.executable), "moto_server"), "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: _answers(f"{url}/moto-api/"), server, "moto_server")
        LOCAL.open(urllib.request.Request(f"{url}/{bucket}", method="PUT"), timeout=10).close()
        yield url
    finally:
        _kill(server)


@contextlib.contextmanager
def sshd(root: Path):
    """sshd on localhost: key login for this user only, host key in root/. Yields
    (port, client key file, the known_hosts line of its host key)."""
    if not Path("/usr/sbin/sshd").exists():
        pytest.skip("sshd is not installed (Debian's openssh-server; .ci/run installs it)")
    root.mkdir(parents=True, exist_ok=True)
    for name in ("host", "client"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / name)], check=True)
    shutil.copyfile(root / "client.pub", root / "authorized_keys")
    port = free_port()
    try:
        Path("/run/sshd").mkdir(exist_ok=True)  # (its privilege separation folder)
    except PermissionError:
        pytest.skip("sshd needs /run/sshd, which only root can make here")
    opts = {
        "Port": port,
        "ListenAddress": "127.0.0.1",
        "HostKey": root / "host",
        "AuthorizedKeysFile": root / "authorized_keys",
        "PidFile": root / "sshd.pid",
        "PasswordAuthentication": "no",
        "KbdInteractiveAuthentication": "no",
        "PermitRootLogin": "prohibit-password",
        "UsePAM": "no",
        "StrictModes": "no",
        "AllowUsers": getpass.getuser(),
        "Subsystem": "sftp internal-sftp",
    }
    (root / "sshd_config").write_text("".join(f"{k} {v}\n" for k, v in opts.items()))
    log = root / "sshd.log"
    server = subprocess.Popen(
        ["/usr/sbin/sshd", "-D", "-e", "-f", str(root / "sshd_config")],
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )

    def listening() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    try:
        _wait(listening, server, "sshd", log)
        kind, key = (root / "host.pub").read_text().split()[:2]
        yield port, root / "client", f"[127.0.0.1]:{port} {kind} {key}\n"
    finally:
        _kill(server)
