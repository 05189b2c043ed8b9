"""The `nads` command line, as a user runs it: a real process."""

import re
import subprocess
import sys
import time

import pytest

from nads import cli


def nads(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "nads.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


@pytest.mark.parametrize("where", ["a directory", "under a regular file", "where nothing can be written"])
def test_estimate_checks_its_destination_before_computing(tmp_path, where):
    out = {
        "a directory": tmp_path / "x.npz",
        "under a regular file": tmp_path / "file" / "x.npz",
        "where nothing can be written": "/proc/nads-x.npz",
    }[where]
    if where == "a directory":
        out.mkdir()
    (tmp_path / "file").write_text("a file")
    t0 = time.time()
    # 10^6 networks would take hours: the error must come first.
    proc = nads("estimate", "--arch", "lenet", "--networks", "1000000", "--device", "cpu", "--out", str(out))
    assert time.time() - t0 < 60
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith(f"error: {out}: ")
    assert "is a directory" in proc.stderr if where == "a directory" else "cannot be written" in proc.stderr
    assert sorted(p.name for p in tmp_path.rglob("*")) == sorted(
        ["file"] + (["x.npz"] if where == "a directory" else [])
    )


def test_estimate_writes_its_result_and_leaves_nothing_else(tmp_path):
    proc = nads(
        "estimate",
        "--arch",
        "logreg",
        "--input-shape",
        "1,8,8",
        "--networks",
        "8",
        "--device",
        "cpu",
        "--out",
        str(tmp_path / "sub" / "n.npz"),
    )
    assert proc.returncode == 0, proc.stderr
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["n.npz"]
    import numpy as np

    with np.load(tmp_path / "sub" / "n.npz") as f:
        assert f["nads"].shape == (64, 64) and f["eigenvalues"].shape == (64,)


def test_check_params_reports_yaml_errors_with_line_and_column(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("profile: quick\nnads:\n  archs: [lenet\n  seed: 0\n")
    proc = nads("check-params", "--params", str(p))
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"error: {p}: not valid YAML (line ") and "column" in proc.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--step", "inf"], "error: --step = inf: must be a finite number"),
        (["--seed", "-1"], "error: --seed = -1: must be an integer, 0 <= seed < 2**32"),
        (["--seed", str(2**70)], "error: --seed = 1180591620717411303424: must be an integer that fits in 64 bits"),
        (["--networks", "1"], "error: --networks = 1: must be an integer >= 2"),
    ],
)
def test_estimate_names_the_option_that_is_wrong(tmp_path, args, message):
    r = nads("estimate", "--arch", "logreg", "--out", str(tmp_path / "x.npz"), *args)
    assert r.returncode == 2 and r.stderr.strip() == message
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "address, message",
    [
        ("127.0.0.1:1", "no Ray cluster answers there (Connection refused)"),
        ("http://head", "must be 'auto' or 'host:port' / 'ray://host:port'"),
    ],
)
def test_a_ray_address_that_cannot_be_a_cluster_fails_in_seconds_not_never(tmp_path, address, message):
    pytest.importorskip("ray")
    r = nads(
        "estimate", "--arch", "logreg", "--executor", "ray", "--ray-address", address, "--out", str(tmp_path / "x.npz")
    )  # (ray.init itself waits forever on 127.0.0.1:1; nads() gives up after 120 s)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and message in r.stderr, r.stderr


def test_estimate_help_gives_every_default(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["estimate", "--help"])
    assert e.value.code == 0
    lines = capsys.readouterr().out.split("options:")[1].splitlines()
    blocks, name = {}, None
    for line in lines:  # an option's block: its line and the indented help lines under it
        found = re.match(r"\s{2}(?:-\w, )?(--[a-z-]+)", line)
        name = found.group(1) if found else name
        if name:
            blocks[name] = blocks.get(name, "") + " " + line.strip()
    for opt in (
        "--input-shape",
        "--networks",
        "--seed",
        "--estimator",
        "--step",
        "--device",
        "--precision",
        "--executor",
        "--ray-address",
    ):
        assert "(default " in blocks[opt], (opt, blocks[opt])
    assert "(default 1,32,32)" in blocks["--input-shape"] and "(default 10000)" in blocks["--networks"]
