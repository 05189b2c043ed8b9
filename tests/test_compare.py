"""The published results as a reference: checksums, the grid's indexing, the comparison's numbers."""

import csv
import io
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from nads import compare, published
from nads.directions import fourier_directions

SHARED = Path(__file__).resolve().parents[2] / "shared/data/nads-published-2020.tar.gz"
real = pytest.mark.skipif(not SHARED.is_file(), reason="the published archive is not on this machine")


def fake_published(root: Path, arch="lenet") -> Path:
    """Files with the published names and layout (not their bytes): acc of cell (x, y) = (100 x + y) / 10000."""
    prefix = published.ARCHS[arch][0]
    (root / "NADs").mkdir(parents=True)
    (root / "docs/data").mkdir(parents=True)
    (root / "LICENSE").write_text("Apache License 2.0\n")
    np.save(root / f"NADs/{prefix}_NADs.npy", np.eye(4, 1024, dtype=np.float32))
    np.save(root / f"NADs/{prefix}_eigenvals.npy", np.array([3.0, 2.0, 1.0, 0.5], dtype=np.float32) * 99.99)
    with open(root / "docs/data/dft_accuracies.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["x", "y", "acc_lr", "acc_ln", "acc_rn", "acc_dn", "acc_vgg"])
        for x in range(16):
            for y in range(16):
                w.writerow([x, y, 100, (100 * x + y) / 100, 50, 50, 50])
    with open(root / "docs/data/nads.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "acc_ln", "eig_ln", "acc_rn", "eig_rn", "acc_dn", "eig_dn", "acc_vgg", "eig_vgg"])
        for i in range(1023):
            w.writerow([i, 100 - i / 20, 0, 50, 0, 50, 0, 50, 0])
    return root


def test_every_file_is_checked_against_its_published_sha256(tmp_path):
    source = fake_published(tmp_path / "copy")
    with pytest.raises(
        published.ReferenceError,
        match=r"published results .*copy: LICENSE has sha256 [0-9a-f]{16}"
        r"\.\.\., not the published c71d239df91726fc\.\.\.",
    ):
        published.fetch(tmp_path / "out", str(source), "lenet")
    (source / "NADs/LeNet_NADs.npy").unlink()
    with pytest.raises(published.ReferenceError, match="NADs/LeNet_NADs.npy is missing"):
        published.fetch(tmp_path / "out2", str(source), "lenet")
    with pytest.raises(
        published.ReferenceError,
        match="'mlp': the paper published no results for it; published: logreg, lenet, vgg11_bn, resnet18, densenet121",
    ):
        published.files_of("mlp")


def test_only_the_needed_members_of_an_archive_are_read_and_written_where_their_names_say(tmp_path):
    source = fake_published(tmp_path / "copy")
    with tarfile.open(tmp_path / "good.tar.gz", "w:gz") as tar:
        tar.add(source, arcname="checkout")
        tar.addfile(tarfile.TarInfo("checkout/extra.bin"), io.BytesIO(b""))  # not needed: never extracted
    with pytest.raises(published.ReferenceError, match="LICENSE has sha256"):  # copied, then checked
        published.fetch(tmp_path / "out", str(tmp_path / "good.tar.gz"), "lenet")
    assert sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*") if p.is_file()) == sorted(
        published.files_of("lenet")
    )
    escape, link = tarfile.TarInfo("../escaped"), tarfile.TarInfo("LICENSE")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    for name, member, said in ((escape, escape, "LICENSE is missing"), (link, link, "LICENSE is not a regular file")):
        archive = tmp_path / f"{member.name.strip('./')}.tar"
        with tarfile.open(archive, "w") as tar:
            tar.addfile(member, None if member is link else io.BytesIO(b""))
        with pytest.raises(published.ReferenceError, match=said):
            published.fetch(tmp_path / f"out-{archive.stem}", str(archive), "lenet")
        assert not (tmp_path / "escaped").exists() and not (tmp_path / f"out-{archive.stem}/LICENSE").exists()
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes((tmp_path / "good.tar.gz").read_bytes()[:-200])
    with pytest.raises(published.ReferenceError, match="an unreadable archive .*; it may be truncated or corrupt"):
        published.fetch(tmp_path / "out-truncated", str(truncated), "lenet")


def test_the_fetch_stage_refuses_what_is_not_an_input_in_one_line(tmp_path):
    for args in (["published", "../../x"], ["published"], ["imagenet"], ["cifar10", "x"]):
        r = subprocess.run(
            [sys.executable, "-m", "stages.fetch", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        )
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and "allowed: cifar10, or published <arch>" in r.stderr
    assert not any(tmp_path.iterdir())


@real
def test_the_published_archive_passes_and_a_corrupted_copy_fails(tmp_path):
    published.fetch(tmp_path / "ok", str(SHARED), "lenet")
    assert sorted(str(p.relative_to(tmp_path / "ok")) for p in (tmp_path / "ok").rglob("*") if p.is_file()) == sorted(
        published.files_of("lenet")
    )
    with tarfile.open(SHARED) as tar:
        tar.extractall(tmp_path / "checkout", filter="data")
    corrupt = tmp_path / "checkout/NADs/LeNet_eigenvals.npy"
    data = bytearray(corrupt.read_bytes())
    data[-1] ^= 1  # one bit of one eigenvalue
    corrupt.write_bytes(bytes(data))
    with pytest.raises(published.ReferenceError, match="NADs/LeNet_eigenvals.npy has sha256"):
        published.fetch(tmp_path / "bad", str(tmp_path / "checkout"), "lenet")


def test_published_conventions_eigenvalues_and_grid_cells(tmp_path):
    ref = published.load(fake_published(tmp_path), "lenet")
    # Their eigenvals.npy holds singular values s = sqrt((n - 1) lambda), n = 10 000 networks.
    np.testing.assert_allclose(ref.eigenvalues, (np.array([3.0, 2.0, 1.0, 0.5]) * 99.99) ** 2 / 9999, rtol=1e-6)
    # Cell (x, y) is the centred frequency (2(x - 8), 2(y - 8)).
    assert ref.grid[(0, 0)] == pytest.approx(0.0808) and ref.grid[(-16, 14)] == pytest.approx(0.0015)
    cell = {(x, y): (100 * x + y) / 10000 for x in range(16) for y in range(16)}
    freqs = np.array([(2, 4), (30, 4), (16, 0), (0, 16), (1, 0), (16, 16)])
    got = published.grid_at(ref.grid, freqs, (1, 32, 32))
    expected = [
        np.mean([cell[(9, 10)], cell[(7, 6)]]),  # (2, 4) and its mirror (-2, -4)
        np.mean([cell[(7, 10)], cell[(9, 6)]]),  # k1 = 30 is -2: (-2, 4) and (2, -4)
        cell[(0, 8)],  # (16, 0) = (-16, 0), its own mirror
        cell[(8, 0)],  # (0, 16) = (0, -16)
        np.nan,  # odd frequencies are not in the published grid
        cell[(0, 0)],
    ]  # (16, 16) = (-16, -16)
    np.testing.assert_allclose(got, expected)
    index, acc = ref.curve
    assert index[0] == 0 and index[-1] == 1022 and acc[0] == 1.0 and acc[20] == pytest.approx(0.99)


@real
def test_the_real_grid_puts_dc_and_lenets_failures_where_they_belong(tmp_path):
    for arch in ("lenet", "logreg"):
        published.fetch(tmp_path / arch, str(SHARED), arch)
    lenet, logreg = published.load(tmp_path / "lenet", "lenet"), published.load(tmp_path / "logreg", "logreg")
    assert set(logreg.grid.values()) == {1.0}  # logistic regression learns every direction
    assert lenet.grid[(0, 2)] > 0.75 and lenet.grid[(2, 0)] > 0.75  # low frequencies: learned (0.81, 0.80)
    for cell in ((0, 8), (8, 0), (0, -16), (-16, 0)):  # along an axis at 8 and 16: chance
        assert lenet.grid[cell] < 0.6, cell
    assert lenet.eigenvalues[0] == pytest.approx(0.1894073**2 / 9999, rel=1e-6)


def test_comparison_numbers_on_inputs_with_known_answers():
    rng = np.random.default_rng(0)
    u = np.linalg.qr(rng.standard_normal((64, 64)))[0].T
    assert compare.subspace_agreement(u, u, 10) == pytest.approx(1.0)
    assert compare.subspace_agreement(u, u[::-1], 10) == pytest.approx(0.0, abs=1e-12)  # orthogonal subspaces
    mixed = np.concatenate([u[:5], u[10:15]])  # half of the top-10 subspace
    assert compare.subspace_agreement(u, mixed, 10) == pytest.approx(0.5)
    flipped = u * np.where(np.arange(64) % 2, -1, 1)[:, None]
    np.testing.assert_allclose(compare.sign_aligned(flipped, u), u)
    # Fourier directions of known radius: (0, 1) has |k| = 1, (3, 4) has |k| = 5.
    _, v = fourier_directions((1, 32, 32), 1)
    freqs, _ = fourier_directions((1, 32, 32), 1)
    pick = [int(np.flatnonzero((freqs == f).all(1))[0]) for f in ((0, 1), (3, 4))]
    r = compare.radius_by_group(v[pick], (1, 32, 32), groups=((0, 1), (1, 2)))
    assert r == pytest.approx({"0-0": 1.0, "1-1": 5.0})
    p = compare.paired([0.5, 0.7, 0.9, np.nan], [0.6, 0.8, 1.0, 0.3])
    assert p["n"] == 3 and p["pearson_r"] == pytest.approx(1.0) and p["mean_abs_diff"] == pytest.approx(0.1)
    # Published 0.8 against means 0.7, 0.7, 0.7 with seed sd 0.01, 0.06, 0.1: inside 2 sd for the last two only.
    w = compare.within_spread([0.7, 0.7, 0.7, np.nan], [0.01, 0.06, 0.1, 0.1], [0.8, 0.8, 0.8, 0.8])
    assert w["seed_sd"] == pytest.approx(0.17 / 3) and w["frac_within_2sd"] == pytest.approx(2 / 3)


@real
@pytest.mark.long
@pytest.mark.slow
def test_the_pipeline_compares_with_the_published_results(built_copy, tmp_path):
    from conftest import run

    repo = built_copy
    repo.set_params(archs={"compare": ["lenet"]})
    elsewhere = tmp_path / "copy" / "published.tar.gz"
    elsewhere.parent.mkdir()
    shutil.copyfile(SHARED, elsewhere)
    # The offline command of docs/pipeline.md, in the environment already there (NADS_VENV=0).
    proc = run(["make", "repro", "NADS_VENV=0", f"NADS_PUBLISHED={elsewhere}"], repo.path, repo.env)
    ran = {line.split("'")[1] for line in proc.stdout.splitlines() if line.startswith("Running stage")}
    assert {"reference@lenet", "sweep-published-nad@lenet", "compare@lenet", "report"} <= ran
    assert "Apache License" in (repo.path / "data/raw/published/lenet/LICENSE").read_text()  # travels with the data
    m = __import__("json").loads((repo.path / "results/compare/lenet/metrics.json").read_text())
    # (6 networks against their 10 000: the numbers are only checked to be there and in range.)
    assert m["grid_n"] == 10 and m["curve_n"] == 4 and m["control_curve_n"] == 4
    assert all(0 <= m[f"nads_agreement_top{k}"] <= 1 for k in (1, 10, 100))
    # Predicted learnability from the published NADs on their grid: the number in docs/results.md (shift rule).
    assert m["predicted_spearman_grid_published_nads"] == pytest.approx(0.710, abs=0.002)
    assert -1 <= m["predicted_spearman_grid_ours_nads"] <= 1 and m["predicted_spearman_curve_published_nads"] > 0.9
    for figure in ("nads.png", "spectra.png", "grid.png", "curve.png"):
        assert (repo.path / "results/figures/compare/lenet" / figure).stat().st_size > 5000
    assert "## Paper vs this run: lenet" in (repo.path / "results/report/summary.md").read_text()
    lock = (repo.path / "dvc.lock").read_text()
    assert str(elsewhere) not in lock and str(tmp_path) not in lock

    # Without NADS_PUBLISHED the fetched copy is kept, after the same check as a fetch: one
    # changed byte is one line and status 2, not a new hash in dvc.lock.
    cmd = [sys.executable, "-m", "stages.fetch", "published", "lenet"]
    kept = subprocess.run(cmd, cwd=repo.path, env=repo.env, capture_output=True, text=True)
    assert kept.returncode == 0 and "keeping data/raw/published/lenet" in kept.stderr
    spectrum = repo.path / "data/raw/published/lenet/NADs/LeNet_eigenvals.npy"
    spectrum.chmod(0o644)  # (DVC links outputs read-only from its cache)
    raw = bytearray(spectrum.read_bytes())
    raw[-1] ^= 1
    spectrum.unlink()
    spectrum.write_bytes(bytes(raw))
    tampered = subprocess.run(cmd, cwd=repo.path, env=repo.env, capture_output=True, text=True)
    assert tampered.returncode == 2
    assert tampered.stderr.count("\n") == 1 and tampered.stderr.startswith(
        "error: published results kept in data/raw/published/lenet (dvc checkout data/raw/published/lenet): "
        "NADs/LeNet_eigenvals.npy has sha256"
    ), tampered.stderr
