"""What a user sees, in a real browser (headless Chromium): MLflow's UI on the store of the
tiny pipeline, opened at the address `make ui` prints, and the HTML report's figures."""

import html
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

import mlflow
import pytest
import yaml
from servers import free_port

from nads import ui

CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no headless Chromium on this machine (Debian: apt-get install chromium; .ci/run installs it)",
)


def browse(url: str, tmp_path, budget_ms: int, *flags) -> str:
    """The page's DOM once its scripts have run for `budget_ms` of (virtual) time, as text."""
    proc = subprocess.run(
        [
            CHROMIUM,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            f"--user-data-dir={tmp_path / 'chromium'}",
            f"--virtual-time-budget={budget_ms}",
            *flags,
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and proc.stdout, proc.stderr[-2000:]
    dom = re.sub(r"<(script|style)\b.*?</\1>", " ", proc.stdout, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", "\n", dom))


# As `make ui` runs it: no telemetry, no job runner (GenAI jobs; 8 processes).
UI_ENV = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


@pytest.fixture
def mlflow_ui(built, tmp_path):
    """`make ui`'s server on the built repository's store: its base address; killed afterwards."""
    repo = built[0]
    port = free_port()
    log = tmp_path / "server.log"
    # A copy of the store: the test reads it as it is, whatever other tests of the process do.
    shutil.copyfile(repo.path / "mlflow.db", tmp_path / "mlflow.db")
    with open(log, "w") as out:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mlflow",
                "ui",
                "--backend-store-uri",
                f"sqlite:///{tmp_path / 'mlflow.db'}",
                "--artifacts-destination",
                str(repo.path / "mlartifacts"),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
            ],
            cwd=tmp_path,
            env={**repo.env, **UI_ENV},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        # A local server: never through a proxy (urlopen's would be whatever its first caller set).
        local = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.time() + 90  # ~5 s alone; longer on a loaded 2-core machine
        while True:
            try:
                local.open(f"http://127.0.0.1:{port}/health", timeout=2).close()
                break
            except OSError:
                assert server.poll() is None, log.read_text()[-3000:]
                assert time.time() < deadline, f"the MLflow server did not answer in 90 s: {log.read_text()[-3000:]}"
                time.sleep(0.5)
        yield port
    finally:  # the server and any worker it started
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def test_make_ui_address_opens_the_runs_table_with_their_datasets(built, mlflow_ui, tmp_path):
    repo = built[0]
    client = mlflow.MlflowClient(repo.tracking_uri())
    experiment = client.get_experiment_by_name("nads")
    url = ui.ui_url(repo.path / "mlflow.db", port=mlflow_ui)
    assert url == (
        f"http://127.0.0.1:{mlflow_ui}/#/experiments/{experiment.experiment_id}/runs?workflowType=machine_learning"
    )
    names = {r.info.run_name for r in client.search_runs([experiment.experiment_id])}
    assert {"nads@lenet", "sweep-fourier@lenet", "sweep-nad@lenet", "poison@lenet", "report"} <= names

    lines = browse(url, tmp_path, 8000).splitlines()
    page = [line.strip() for line in lines if line.strip()]
    # The runs table (MLflow 3.17 shows a new user the GenAI overview of an experiment otherwise)...
    assert {"Run Name", "Created", "Dataset"} <= set(page) and "Overview" not in page, page[:60]
    # ...lists every stage run by name...
    assert names <= set(page), sorted(names - set(page))
    # ...and the data each read, as DVC versions it: sweep-fourier@lenet read the synthetic bank.
    lock = yaml.safe_load((repo.path / "dvc.lock").read_text())
    bank = next(o for o in lock["stages"]["synthetic"]["outs"] if o["path"] == "data/synthetic")["md5"]
    assert f"data/synthetic ({bank})" in page, [line for line in page if "data/" in line]


@pytest.mark.parametrize("name", ["index.html", "atlas.html"])
def test_the_report_figures_load_in_a_browser(built, tmp_path, name):
    report = built[0].path / "results/report" / name
    figures = re.findall(r"<img\b[^>]*\balt='([^']*)'", report.read_text())
    assert figures
    # A page of ours frames the report and writes, once everything has loaded, what the
    # browser made of each of its images: a figure that did not decode has naturalWidth 0.
    page = tmp_path / "frame.html"
    page.write_text(f"""<!doctype html><html><body><pre id="out">not loaded</pre>
<iframe id="report" src="{report.as_uri()}" width="1200" height="900"></iframe>
<script>
window.addEventListener('load', () => {{
  const out = document.getElementById('out');
  try {{
    const images = Array.from(document.getElementById('report').contentDocument.images);
    out.textContent = 'IMAGES' + JSON.stringify(images.map(i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight]));
  }} catch (e) {{ out.textContent = 'error: ' + e; }}
}});
</script></body></html>""")
    text = browse(page.as_uri(), tmp_path, 5000, "--allow-file-access-from-files")
    shown = re.search(r"IMAGES(\[.*\])", text)
    assert shown, text[:2000]
    images = json.loads(shown.group(1))
    assert [alt for alt, *_ in images] == figures
    assert all(complete and width > 0 and height > 0 for _, complete, width, height in images), images
