"""CIFAR-10 loaders on tiny archives of every supported format, poisoning and the flip."""

import os
import pickle
import sys
import tarfile
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nads import cifar10 as datasets
from nads import files
from nads.cifar10 import CLASSES, SourceError, load_source
from nads.errors import ParamError
from nads.poisoning import carriers, complete_basis, flip_basis, poison

RNG = np.random.default_rng(0)
# Two images per class per split, as PNG-safe uint8 arrays (PNG is lossless, so every format agrees).
X = {s: RNG.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8) for s in ("train", "test")}
Y = {s: np.repeat(np.arange(10), 2) for s in ("train", "test")}


def _batch(x, y):
    return pickle.dumps({b"data": x.transpose(0, 3, 1, 2).reshape(len(x), -1), b"labels": list(map(int, y))})


@pytest.fixture
def batch_md5(monkeypatch):
    """The md5s of this file's test batches, in place of the release's (which alone are unpickled)."""
    md5 = dict(datasets.BATCH_MD5)
    monkeypatch.setattr(datasets, "BATCH_MD5", md5)
    return md5


def make_batches_dir(root, md5=None):
    """The original release's layout with this file's arrays; their md5s go into `md5`."""
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    # The original release: five training batches and a test batch.
    for i, part in enumerate(np.array_split(np.arange(20), 5), start=1):
        (d / f"data_batch_{i}").write_bytes(_batch(X["train"][part], Y["train"][part]))
    (d / "test_batch").write_bytes(_batch(X["test"], Y["test"]))
    for f in d.iterdir() if md5 is not None else ():
        md5[f.name] = files.file_digest(f, "md5")
    return d


def make_tree(root, classes=CLASSES):
    for s in ("train", "test"):
        for i, (x, y) in enumerate(zip(X[s], Y[s])):
            p = root / s / classes[y] / f"{i:04d}.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(x).save(p)
    return root


def tar_of(folder, out, arcname):
    with tarfile.open(out, "w:gz") as tar:
        tar.add(folder, arcname=arcname)
    return out


def check(data):
    for s in ("train", "test"):
        x, y = (data.x_train, data.y_train) if s == "train" else (data.x_test, data.y_test)
        order = np.lexsort((np.arange(len(y)), y))  # image trees come back sorted by class
        np.testing.assert_array_equal(np.sort(y), Y[s])
        ref = X[s][np.argsort(Y[s], kind="stable")]
        np.testing.assert_array_equal(x[order], ref)
    assert data.classes == CLASSES


def test_every_format_loads_to_the_same_arrays(tmp_path, batch_md5):
    batches = make_batches_dir(tmp_path / "orig", batch_md5)
    check(load_source(str(batches)))
    check(load_source(str(tmp_path / "orig")))  # the folder holding cifar-10-batches-py/
    tree = make_tree(tmp_path / "tree")
    check(load_source(str(tree)))
    check(load_source(str(tar_of(tree, tmp_path / "tree.tar.gz", "cifar10"))))  # under a top-level folder
    check(load_source(str(tar_of(tree, tmp_path / "flat.tar.gz", "."))))  # train/ and test/ at the top


def test_original_archive_is_checksummed(tmp_path, batch_md5):
    archive = tar_of(
        make_batches_dir(tmp_path / "orig", batch_md5), tmp_path / "cifar-10-python.tar.gz", "cifar-10-batches-py"
    )
    with pytest.raises(SourceError, match="md5 is .*, not c58f30108f718f92721af3b95e74349a"):
        load_source(str(archive))
    # The reader itself is right: with the checksum of this test archive it loads.
    original = datasets.ORIGINAL_MD5
    try:
        datasets.ORIGINAL_MD5 = files.file_digest(archive, "md5")
        check(load_source(str(archive)))
    finally:
        datasets.ORIGINAL_MD5 = original


def test_truncated_corrupt_missing_and_misnamed_sources_fail_clearly(tmp_path, batch_md5):
    tree = make_tree(tmp_path / "tree")
    archive = tar_of(tree, tmp_path / "tree.tar.gz", "cifar10")
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(SourceError, match="truncated or corrupt"):
        load_source(str(truncated))
    garbage = tmp_path / "garbage.tar.gz"
    garbage.write_bytes(b"not an archive at all" * 100)
    with pytest.raises(SourceError, match="a file that is not a .* archive"):
        load_source(str(garbage))
    with pytest.raises(SourceError, match="no such file or directory"):
        load_source(str(tmp_path / "nowhere"))
    wrong = make_tree(tmp_path / "wrong", classes=tuple(c.upper() for c in CLASSES))
    with pytest.raises(SourceError, match="classes are .*AIRPLANE.*not CIFAR-10's"):
        load_source(str(wrong))
    batches = make_batches_dir(tmp_path / "b", batch_md5)
    (batches / "data_batch_3").write_bytes(b"\x80\x04garbage")
    with pytest.raises(SourceError, match="a data_batch_3 whose md5 is .*, not the release's"):
        load_source(str(batches))
    batch_md5["data_batch_3"] = files.file_digest(batches / "data_batch_3", "md5")  # garbage, yet "the release's"
    with pytest.raises(SourceError, match="a corrupt data_batch_3"):
        load_source(str(batches))
    batches = make_batches_dir(tmp_path / "c", batch_md5)
    (batches / "test_batch").unlink()
    with pytest.raises(SourceError, match="without its test_batch"):
        load_source(str(batches))


class _RunsCode:
    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


MARKER = None


def test_a_crafted_batch_file_is_refused_before_it_is_unpickled(tmp_path, monkeypatch):
    """A cifar-10-batches-py/ folder whose data_batch_1 runs a command when unpickled:
    refused by its md5, and the command never runs."""
    monkeypatch.setattr(sys.modules[__name__], "MARKER", tmp_path / "ran")
    batches = make_batches_dir(tmp_path / "orig")
    (batches / "data_batch_1").write_bytes(pickle.dumps(_RunsCode()))
    with pytest.raises(SourceError, match="a data_batch_1 whose md5 is .*they are pickles, which can run code"):
        load_source(str(batches))
    assert not (tmp_path / "ran").exists()
    pickle.loads((batches / "data_batch_1").read_bytes())  # the file really does run it
    assert (tmp_path / "ran").exists()


def test_poisoning_sets_each_projection_and_leaves_the_rest():
    nads = np.linalg.qr(RNG.standard_normal((1024, 1024)))[0].T.astype(np.float32)
    u, signs = carriers(nads, 3)
    x = RNG.random((200, 3072)).astype(np.float32)
    y = RNG.integers(0, 10, 200)
    px = poison(x, y, u, signs, 0.05)
    proj = (px * u[y]).sum(1)
    np.testing.assert_allclose(proj, signs[y] * 0.05, atol=1e-5)
    # Only the carrier's component changed.
    resid = (px - x) - ((px - x) * u[y]).sum(1)[:, None] * u[y]
    assert np.abs(resid).max() < 1e-5
    # Six distinct carriers (two NADs x three channels), pairwise orthogonal; each class its own (carrier, sign).
    distinct = np.unique(u, axis=0)
    assert len(distinct) == 6
    np.testing.assert_allclose(distinct @ distinct.T, np.eye(6), atol=1e-5)
    assert len({(tuple(u[t]), signs[t]) for t in range(10)}) == 10
    assert [t % 3 for t in range(10)] == [int(np.flatnonzero(u[t].reshape(3, -1).any(1))[0]) for t in range(10)]
    np.testing.assert_array_equal(u[0].reshape(3, -1)[0], nads[3])
    np.testing.assert_array_equal(u[7].reshape(3, -1)[1], nads[4])
    with pytest.raises(ParamError, match="index 1023 needs NADs 1023 and 1024"):
        carriers(nads, 1023)


def test_flip_is_an_orthogonal_involution():
    basis = torch.from_numpy(complete_basis(np.linalg.qr(RNG.standard_normal((64, 40)))[0].T))
    assert basis.shape == (64, 64)
    torch.testing.assert_close(basis @ basis.T, torch.eye(64, dtype=basis.dtype), atol=1e-10, rtol=0)
    x = torch.from_numpy(RNG.standard_normal((5, 3, 8, 8)))
    f = flip_basis(x, basis).reshape(x.shape)
    torch.testing.assert_close(f.flatten(2).norm(dim=2), x.flatten(2).norm(dim=2))
    torch.testing.assert_close(flip_basis(f, basis).reshape(x.shape), x)
    assert (f - x).abs().max() > 0.1
    # The first basis vector's coefficient moves to the last one.
    e = basis[0].reshape(1, 1, 8, 8)
    torch.testing.assert_close(flip_basis(e, basis).reshape(-1), basis[-1])


def test_unreachable_download_fails_clearly(tmp_path, monkeypatch):
    # A proxy that refuses every connection: the download cannot succeed, online or not.
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    # urlopen builds one opener per process, with the proxies of its first call, and keeps it:
    # the one built here (through the dead proxy) must not outlive the test. It did, and every
    # later urlopen of the test process failed (tests/test_ui.py's health check, for minutes).
    monkeypatch.setattr(urllib.request, "_opener", None)
    with pytest.raises(
        SourceError,
        match="could not download CIFAR-10 from https://www.cs.toronto.edu/.*"
        "give a local copy: make repro CIFAR10=/path/to/cifar-10-python.tar.gz",
    ):
        datasets.fetch(tmp_path / "raw")


def test_fetched_copies_depend_on_content_not_on_place(tmp_path):
    tree = make_tree(tmp_path / "tree")
    (tmp_path / "a").mkdir()
    archive = tar_of(tree, tmp_path / "a" / "my-copy.tar.gz", "cifar10")
    moved = tmp_path / "b" / "renamed.tgz"
    moved.parent.mkdir()
    moved.write_bytes(archive.read_bytes())
    for i, source in enumerate((archive, moved)):
        datasets.fetch(tmp_path / f"raw{i}", str(source))
    listing = [sorted(p.relative_to(tmp_path / f"raw{i}") for p in (tmp_path / f"raw{i}").rglob("*")) for i in (0, 1)]
    assert listing[0] == listing[1] == [Path("archive.tar.gz")]
    assert (tmp_path / "raw0/archive.tar.gz").read_bytes() == (tmp_path / "raw1/archive.tar.gz").read_bytes()
    check(datasets.load_raw(tmp_path / "raw1"))
    datasets.fetch(tmp_path / "raw2", str(tree))  # a folder is copied as folder/
    check(datasets.load_raw(tmp_path / "raw2"))
    with pytest.raises(SourceError, match="CIFAR-10 source '.*nowhere': no such file or directory"):
        datasets.fetch(tmp_path / "raw3", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="holds no fetched CIFAR-10: run `make repro CIFAR10="):
        datasets.load_raw(tmp_path / "raw4")
