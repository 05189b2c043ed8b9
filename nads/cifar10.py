"""CIFAR-10 from any of its usual forms into one cached format; poisoning; NAD-basis flip.

Raw sources (`fetch`: the download, or a local copy named by CIFAR10=...):
  (none)                      the original release, downloaded (md5-checked)
  .../cifar-10-python.tar.gz  the original release (md5-checked)
  .../cifar-10-batches-py/    its extracted folder
  .../tree/ or .../tree.tar.gz  an image-folder tree: train/<class>/*, test/<class>/*,
                              classes in CIFAR-10's label order
`fetch` copies the source into data/raw/cifar10/ under a fixed name, so the
pipeline depends on its content, never on where it lay. `load_source` turns
any of them into uint8 arrays (N, 32, 32, 3), int64 labels and the class names.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import numpy as np

from . import files
from .errors import InputError

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
ORIGINAL_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
ORIGINAL_MD5 = "c58f30108f718f92721af3b95e74349a"
BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
# The release's batch files are pickles, which can run code: only these exact files are unpickled.
BATCH_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


@dataclass
class Cifar10:
    x_train: np.ndarray  # (N, 32, 32, 3) uint8
    y_train: np.ndarray  # (N,) int64
    x_test: np.ndarray
    y_test: np.ndarray
    classes: tuple

    def save(self, out_dir) -> None:
        with files.atomic_path(out_dir) as tmp:
            tmp.mkdir()
            for name in ("x_train", "y_train", "x_test", "y_test"):
                files.save_npy(tmp / f"{name}.npy", getattr(self, name))
            files.write_json(tmp / "classes.json", list(self.classes))

    @classmethod
    def load(cls, data_dir) -> "Cifar10":
        data_dir = Path(data_dir)
        if not (data_dir / "classes.json").is_file():
            raise FileNotFoundError(f"{data_dir}: no converted CIFAR-10 here; run `dvc repro cifar10` first")
        arrays = {
            n: files.load_npy(data_dir / f"{n}.npy", "dvc checkout data/cifar10 (or dvc repro -f cifar10)")
            for n in ("x_train", "y_train", "x_test", "y_test")
        }
        return cls(**arrays, classes=tuple(files.read_json(data_dir / "classes.json")))


class SourceError(InputError):
    """A CIFAR-10 source that cannot be read."""


def _member(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    f = tar.extractfile(member)
    if f is None:  # (members are regular files: the caller filtered them)
        raise tarfile.TarError(f"{member.name}: not a regular file")
    return f.read()


def _bad(source, found: str) -> NoReturn:
    raise SourceError(
        f"CIFAR-10 source {str(source)!r}: {found}. Allowed: the original cifar-10-python.tar.gz or "
        "its cifar-10-batches-py/ folder, or an image-folder tree (train/<class>/*, test/<class>/*) "
        "or a .tar.gz of one"
    )


def fetch(dest, source: str | None = None) -> None:
    """Fill the new folder `dest` with CIFAR-10's raw form: a copy of `source` (a file or
    a folder), or the original release downloaded (md5-checked) when source is None.

    The copy has a fixed name (archive.tar.gz, archive.tar or folder/), so the same
    content fetched from anywhere gives the same bytes, and DVC the same hash."""
    dest = Path(dest)
    dest.mkdir(parents=True)
    if source is None:
        _download(dest)
        return
    path = Path(source).expanduser()
    if path.is_dir():
        shutil.copytree(path, dest / "folder")
    elif path.is_file():
        with open(path, "rb") as f:
            gzipped = f.read(2) == b"\x1f\x8b"
        shutil.copyfile(path, dest / ("archive.tar.gz" if gzipped else "archive.tar"))
    else:
        _bad(source, "no such file or directory")


def load_raw(raw_dir) -> Cifar10:
    """CIFAR-10 from the folder `fetch` filled."""
    raw_dir = Path(raw_dir)
    entries = sorted(raw_dir.iterdir()) if raw_dir.is_dir() else []
    if len(entries) != 1:
        raise FileNotFoundError(
            f"{raw_dir} holds no fetched CIFAR-10: run `make repro CIFAR10=/path/to/copy` or `dvc repro fetch@cifar10`"
        )
    return load_source(str(entries[0]))


def load_source(source: str) -> Cifar10:
    """Read CIFAR-10 from a local `source`; any problem is a one-line SourceError saying what was found."""
    path = Path(source).expanduser()
    if not path.exists():
        _bad(source, "no such file or directory")
    if path.is_dir():
        if (path / "cifar-10-batches-py").is_dir():
            path = path / "cifar-10-batches-py"
        if (path / "data_batch_1").exists():
            return _from_batches(source, lambda name: (path / name).read_bytes() if (path / name).is_file() else None)
        if (path / "train").is_dir() or (path / "test").is_dir():
            found = {str(p.relative_to(path)): p for p in path.rglob("*") if p.is_file()}
            return _from_image_tree(source, {k: (lambda p=p: p.read_bytes()) for k, p in found.items()})
        _bad(
            source,
            "a folder with neither data_batch_* files nor train/ and test/ "
            f"({sorted(p.name for p in path.iterdir())[:5]})",
        )
    if tarfile.is_tarfile(path):
        return _from_archive(source, path)
    _bad(source, f"a file that is not a (.tar.gz) archive ({path.name})")


def _from_archive(source, path: Path) -> Cifar10:
    try:
        with tarfile.open(path) as tar:
            members = {m.name: m for m in tar.getmembers() if m.isfile()}
            if any(n.endswith("cifar-10-batches-py/data_batch_1") for n in members):
                digest = files.file_digest(path, "md5")
                if digest != ORIGINAL_MD5:
                    _bad(
                        source,
                        f"an archive of the original release whose md5 is {digest}, not {ORIGINAL_MD5} "
                        "(truncated or corrupt)",
                    )
                by_base = {n.rsplit("/", 1)[-1]: m for n, m in members.items()}
                return _from_batches(source, lambda name: _member(tar, by_base[name]) if name in by_base else None)
            # An image tree, possibly under one top-level folder.
            data = {n: _member(tar, m) for n, m in members.items() if n.lower().endswith(IMAGE_SUFFIXES)}
    except (tarfile.TarError, EOFError, OSError) as e:
        _bad(source, f"an unreadable archive ({type(e).__name__}: {e}); it may be truncated or corrupt")
    roots = {n.split("/train/")[0] if "/train/" in n else n.split("/test/")[0] if "/test/" in n else None for n in data}
    prefix = {r for r in roots if r} or {""}
    strip = (prefix.pop() + "/") if len(prefix) == 1 and "" not in prefix else ""
    return _from_image_tree(source, {n[len(strip) :]: (lambda b=b: b) for n, b in data.items()})


def _from_batches(source, read) -> Cifar10:
    def batch(name):
        raw = read(name)
        if raw is None:
            _bad(source, f"the original release's folder without its {name} file")
        if (digest := hashlib.md5(raw).hexdigest()) != BATCH_MD5[name]:
            _bad(
                source,
                f"a {name} whose md5 is {digest}, not the release's {BATCH_MD5[name]} "
                "(only the original batch files are read: they are pickles, which can run code)",
            )
        try:
            d = pickle.loads(raw, encoding="bytes")
            x = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
            return x, np.asarray(d[b"labels"], dtype=np.int64)
        except Exception as e:  # noqa: BLE001 - any failure here is a corrupt batch file
            _bad(source, f"a corrupt {name} ({type(e).__name__})")

    parts = [batch(n) for n in BATCHES]
    x_test, y_test = batch("test_batch")
    return Cifar10(
        np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), x_test, y_test, CLASSES
    )


def _from_image_tree(source, files: dict) -> Cifar10:
    """files: {"train/<class>/<name>": () -> bytes}. Sorted by class, then file name."""
    from PIL import Image

    splits = {}
    for split in ("train", "test"):
        names = sorted(
            n for n in files if n.startswith(f"{split}/") and n.count("/") == 2 and n.lower().endswith(IMAGE_SUFFIXES)
        )
        classes = sorted({n.split("/")[1] for n in names})
        if not names:
            _bad(source, f"an image tree without {split}/<class>/ images")
        if tuple(classes) != CLASSES:
            _bad(source, f"an image tree whose {split}/ classes are {classes}, not CIFAR-10's {list(CLASSES)}")
        xs = np.empty((len(names), 32, 32, 3), dtype=np.uint8)
        for i, n in enumerate(names):
            try:
                img = Image.open(io.BytesIO(files[n]())).convert("RGB")
            except Exception as e:  # noqa: BLE001
                _bad(source, f"an unreadable image {n} ({type(e).__name__})")
            if img.size != (32, 32):
                _bad(source, f"an image {n} of size {img.size[0]}x{img.size[1]}, not 32x32")
            xs[i] = np.asarray(img)
        ys = np.array([CLASSES.index(n.split("/")[1]) for n in names], dtype=np.int64)
        splits[split] = (xs, ys)
    return Cifar10(*splits["train"], *splits["test"], CLASSES)


def _download(dest: Path) -> None:
    from torchvision.datasets.utils import download_url

    try:
        download_url(ORIGINAL_URL, str(dest), "archive.tar.gz", md5=ORIGINAL_MD5)
        if files.file_digest(dest / "archive.tar.gz", "md5") != ORIGINAL_MD5:
            raise OSError("the downloaded archive's md5 is not the release's")
    except Exception as e:  # noqa: BLE001 - offline, proxy, corrupt download: all mean "use a local copy"
        raise SourceError(
            f"could not download CIFAR-10 from {ORIGINAL_URL} ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}); give a local copy: "
            "make repro CIFAR10=/path/to/cifar-10-python.tar.gz"
        ) from None
