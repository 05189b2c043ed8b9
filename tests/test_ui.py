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
from conftest import run
from servers import free_port

from nads import ui

CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no headless Chromium on this machine (Debian: apt-get install chromium; .ci/run installs it)",
)


def dom(url: str, tmp_path, budget_ms: int, *flags) -> str:
    """The page's DOM once its scripts have run for `budget_ms` of (virtual) time."""
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
    return proc.stdout


def browse(url: str, tmp_path, budget_ms: int, *flags) -> str:
    """The page's DOM once its scripts have run for `budget_ms` of (virtual) time, as text."""
    page = re.sub(r"<(script|style)\b.*?</\1>", " ", dom(url, tmp_path, budget_ms, *flags), flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", "\n", page))


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
    # What a reader sees of the page: no number shown as NaN (it is named in a line instead).
    text = [x.strip() for x in browse(report.as_uri(), tmp_path, 3000).splitlines() if x.strip()]
    shown_nan = [x for x in text if re.search(r"(?<![a-z])-?nan(?![a-z])", x.lower())]
    assert not shown_nan, shown_nan[:10]
    assert all(complete and width > 0 and height > 0 for _, complete, width, height in images), images


def test_dvc_plots_show_draws_every_plot_with_the_network_off(built, tmp_path):
    repo = built[0]
    out = tmp_path / "dvc_plots"
    repo.dvc("plots", "show", "-o", str(out))
    page = out / "index.html"
    # .dvc/config's page carries Vega itself: nothing to fetch from a CDN.
    assert "<script src=" not in page.read_text()
    plots = re.findall(r"vegaEmbed\('#([^']+)'", page.read_text())
    assert plots, page.read_text()[-2000:]
    # Every name resolves to nothing: the browser has no network at all.
    shown = dom(page.as_uri(), tmp_path, 5000, "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9")
    # vega-embed draws each plot as a canvas inside the plot's div (an empty div when Vega is missing).
    canvas = '<div id="{}" class="vega-embed[^"]*">(<div [^>]*>)?<canvas [^>]*class="marks"'
    drawn = [p for p in plots if re.search(canvas.format(p), shown)]
    assert drawn == plots, shown[-3000:]
    # The grid of plots fits a 1000-pixel window: nothing wider than the page's frame.
    frame = tmp_path / "frame.html"
    frame.write_text(f"""<!doctype html><html><body><pre id="out">not measured</pre>
<iframe id="plots" src="{page.as_uri()}" width="1000" height="800"></iframe>
<script>
window.addEventListener('load', () => setTimeout(() => {{
  const doc = document.getElementById('plots').contentDocument, d = doc.documentElement;
  const images = Array.from(doc.images), broken = images.filter(i => !i.complete || i.naturalWidth == 0);
  document.getElementById('out').textContent = 'WIDTH ' + d.scrollWidth + ' ' + d.clientWidth
    + ' IMAGES ' + images.length + ' BROKEN ' + broken.length;
}}, 3000));
</script></body></html>""")
    text = browse(frame.as_uri(), tmp_path, 8000, "--allow-file-access-from-files")
    measured = re.search(r"WIDTH (\d+) (\d+) IMAGES (\d+) BROKEN (\d+)", text)
    assert measured, text[:2000]
    width, frame_width, images, broken = map(int, measured.groups())
    assert width <= frame_width, measured.group(0)
    # ...and every figure of the figures stage is on it (dvc.yaml's plots: results/figures), decoded.
    figures = list((repo.path / "results/figures").rglob("*.png"))
    assert images >= len(figures) > 0 and broken == 0, measured.group(0)


def test_the_run_and_compare_addresses_nads_runs_prints_open_the_model_training_view(built, mlflow_ui, tmp_path):
    repo = built[0]
    client = mlflow.MlflowClient(repo.tracking_uri())
    experiment = client.get_experiment_by_name("nads").experiment_id
    latest = {}
    for r in client.search_runs([experiment], order_by=["start_time DESC"]):
        latest.setdefault(r.info.run_name, r.info.run_id)
    fourier, nad = latest["sweep-fourier@lenet"], latest["sweep-nad@lenet"]

    def printed(*ids: str) -> str:
        cmd = [sys.executable, "-m", "nads.cli", "runs", "--url", *ids, "--ui-port", str(mlflow_ui)]
        return run(cmd, repo.path, repo.env).stdout.strip()

    def model_training(page: list[str]) -> bool:  # MLflow 3's sidebars: model training vs GenAI
        return "Model registry" in page and not {"Observability", "Prompts"} & set(page)

    base = f"http://127.0.0.1:{mlflow_ui}/#/"
    url = printed(nad[:8])  # the prefix `nads runs` prints
    assert url == f"{base}experiments/{experiment}/runs/{nad}?workflowType=machine_learning"
    page = [x.strip() for x in browse(url, tmp_path, 8000).splitlines() if x.strip()]
    assert model_training(page) and "sweep-nad@lenet" in page and "mean_test_acc" in page, page[:80]

    url = printed(fourier[:8], nad[:8])
    assert url.startswith(f"{base}compare-runs?") and url.endswith("workflowType=machine_learning")
    page = [x.strip() for x in browse(url, tmp_path, 10000, "--window-size=1400,1000").splitlines() if x.strip()]
    assert model_training(page) and "Comparing 2 Runs from 1 Experiment" in page, page[:80]
    # The plot MLflow draws first shows the first metric the runs share: a result, not progress.
    at = page.index("Metrics:")
    assert page[at + 1] == "mean_test_acc", page[at : at + 4]
