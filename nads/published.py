"""The results published with the paper, as a reference for this run.

From the authors' repository, github.com/LTS4/neural-anisotropy-directions at
commit 45df872f16fff850537afc611fa8606e5e5c19eb (Apache License 2.0; its
LICENSE travels with the data): their NADs and eigenvalue spectra of five
architectures, their Fourier-grid accuracies and their NAD-curve accuracies.
`fetch` downloads each file, or copies it from a local copy (the archive of
these files, or a checkout); every file is checked against its recorded sha256.
"""

from __future__ import annotations

import csv
import errno
import shutil
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError
from .files import file_digest

REPOSITORY = "LTS4/neural-anisotropy-directions"
COMMIT = "45df872f16fff850537afc611fa8606e5e5c19eb"
SHA256 = {
    "LICENSE": "c71d239df91726fc519c6eb72d318ec65820627232b2f796219e87dcf35d0ab4",
    "NADs/DenseNet121_NADs.npy": "2434b5bd8670b93ac07d4489b50350314567aa377f47552043f56dfa12ac4bb1",
    "NADs/DenseNet121_eigenvals.npy": "5a5d65bfc88a71a5ec888f9301e35533ff0116403ce3f41e754f4c1f880f90c4",
    "NADs/LeNet_NADs.npy": "58bb4ca8d28dd73ea380f7c864557b0f48bf9d25d9632076e813ffea058de2bc",
    "NADs/LeNet_eigenvals.npy": "6a72a747ca141a2305d5d5074b44f70e1c56f712efe03ac35735dcbebbd6a822",
    "NADs/LogReg_NADs.npy": "41fa67a1be6728a5b0d1220f851492e573aedb5dcda989b69f18c24a076cf1ea",
    "NADs/LogReg_eigenvals.npy": "094d4709f6fa13c7aaff9bb2dd6e6cc13229a7ee54851990a5e815baef4e8ed1",
    "NADs/ResNet18_NADs.npy": "3d432df94b4f1a67d502d9fcabab222a55aa902bde5fef0d45aad16bc8c5d459",
    "NADs/ResNet18_eigenvals.npy": "484eb56630665acd6db2003d6fc78610adeedf62087df783c2bcbc7d15e8f2b7",
    "NADs/VGG11_NADs.npy": "53b9a78554972ff73bf2828795a60d667b17ccd8687f5b81a5dbf77d6ecb6a4d",
    "NADs/VGG11_eigenvals.npy": "02fa74c9201341ef714b06974030c37b0531480be40f30416c195ebf4db395fb",
    "docs/data/dft_accuracies.csv": "ba013c0b094f7a8eabf611848a134366c28dc4a9daacefa1fb9b825ceda208c2",
    "docs/data/nads.csv": "2c568563e206a56a1d301395f575de7f4a6fef7c63563856972cf25f6054d295",
}
# Our architecture -> (their file prefix, Fourier-grid column, NAD-curve column or None).
ARCHS = {
    "logreg": ("LogReg", "acc_lr", None),
    "lenet": ("LeNet", "acc_ln", "acc_ln"),
    "vgg11_bn": ("VGG11", "acc_vgg", "acc_vgg"),
    "resnet18": ("ResNet18", "acc_rn", "acc_rn"),
    "densenet121": ("DenseNet121", "acc_dn", "acc_dn"),
}
N_NETWORKS = 10_000  # gradient samples behind their spectra


class ReferenceError(InputError):
    """Published data that cannot be used."""


def files_of(arch: str) -> list[str]:
    """The published files `arch`'s comparison needs: its NADs and spectrum, both tables, the license."""
    if arch not in ARCHS:
        raise ReferenceError(f"arch = {arch!r}: the paper published no results for it; published: {', '.join(ARCHS)}")
    prefix = ARCHS[arch][0]
    return [
        "LICENSE",
        f"NADs/{prefix}_NADs.npy",
        f"NADs/{prefix}_eigenvals.npy",
        "docs/data/dft_accuracies.csv",
        "docs/data/nads.csv",
    ]


def fetch(dest, source: str | None = None, arch: str = "lenet") -> None:
    """Fill the new folder `dest` with the published files of `arch` (at their repository's
    paths), each checked against its sha256. source: None (download), the archive, or a checkout."""
    names = files_of(arch)
    dest = Path(dest)
    dest.mkdir(parents=True)
    if source is None:
        _download(dest, names)
    else:
        path = Path(source).expanduser()
        if path.is_dir():
            for name in names:
                if not (path / name).is_file():
                    raise ReferenceError(f"published results {source!r}: {name} is missing")
                (dest / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path / name, dest / name)
        elif path.is_file() and tarfile.is_tarfile(path):
            _copy_from_archive(path, dest, names, source)
        else:
            raise ReferenceError(f"published results {source!r}: not a folder or a .tar.gz archive")
    verify(dest, names, source or "the download")


def _copy_from_archive(path: Path, dest: Path, names, source) -> None:
    """Copy the members `names` (at the archive's top, or under its one top folder) into `dest`.
    Only those are read, as regular files, and written where `names` say: nothing else in the
    archive (links, paths outside it) is ever extracted."""
    try:
        with tarfile.open(path) as tar:
            members = {m.name.removeprefix("./"): m for m in tar.getmembers()}
            tops = {n.split("/")[0] for n in members if n not in ("", ".")}
            prefix = tops.pop() + "/" if "LICENSE" not in members and len(tops) == 1 else ""
            for name in names:
                member = members.get(prefix + name)
                if member is None:
                    raise ReferenceError(f"published results {source!r}: {name} is missing")
                found = tar.extractfile(member) if member.isfile() else None
                if found is None:
                    raise ReferenceError(f"published results {source!r}: {name} is not a regular file in the archive")
                (dest / name).parent.mkdir(parents=True, exist_ok=True)
                with found, open(dest / name, "wb") as out:
                    shutil.copyfileobj(found, out)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        if getattr(e, "errno", None) == errno.ENOSPC:
            raise
        raise ReferenceError(
            f"published results {source!r}: an unreadable archive ({type(e).__name__}); it may be truncated or corrupt"
        ) from None


def verify(folder, names, source) -> None:
    for name in names:
        digest, found = SHA256[name], file_digest(Path(folder) / name, "sha256")
        if found != digest:
            raise ReferenceError(
                f"published results {source}: {name} has sha256 {found[:16]}..., not the "
                f"published {digest[:16]}... (corrupt, or another version)"
            )


def _download(dest: Path, names) -> None:
    import urllib.request

    for name in names:
        url = f"https://raw.githubusercontent.com/{REPOSITORY}/{COMMIT}/{name}"
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        try:
            with urllib.request.urlopen(url, timeout=60) as r, open(dest / name, "wb") as f:
                shutil.copyfileobj(r, f)
        except OSError as e:
            raise ReferenceError(
                f"could not download {url} ({e}); give a local copy: "
                "make repro NADS_PUBLISHED=/path/to/nads-published-2020.tar.gz"
            ) from None


@dataclass(frozen=True)
class Reference:
    """One architecture's published results, in this project's conventions."""

    nads: np.ndarray  # (1023, 1024) float32, row i = NAD i (1x32x32)
    eigenvalues: np.ndarray  # (1023,) covariance eigenvalues, from their singular values
    grid: dict  # {(f1, f2): test accuracy in [0, 1]}, centred even frequencies in [-16, 14]
    curve: tuple | None  # (indices, test accuracy in [0, 1]) of their NAD sweep, or None


def load(folder, arch: str) -> Reference:
    """The published results of `arch` (a key of ARCHS) from a folder `fetch` filled."""
    files_of(arch)  # a published architecture
    folder = Path(folder)
    prefix, grid_column, curve_column = ARCHS[arch]
    singular = np.load(folder / f"NADs/{prefix}_eigenvals.npy", allow_pickle=False).astype(np.float64)
    # Their `eigenvals.npy` holds PCA singular values of the n gradient samples: s = sqrt((n - 1) * lambda).
    eigenvalues = singular**2 / (N_NETWORKS - 1)
    nads = np.load(folder / f"NADs/{prefix}_NADs.npy", allow_pickle=False)
    grid = {}
    with open(folder / "docs/data/dft_accuracies.csv") as f:
        for row in csv.DictReader(f):
            # Cell (x, y) is the centred frequency (2(x - 8), 2(y - 8)); x is the vertical one (rows, our k1).
            grid[(2 * (int(row["x"]) - 8), 2 * (int(row["y"]) - 8))] = float(row[grid_column]) / 100
    curve = None
    if curve_column:
        with open(folder / "docs/data/nads.csv") as f:
            rows = list(csv.DictReader(f))
        curve = (np.array([int(r["index"]) for r in rows]), np.array([float(r[curve_column]) / 100 for r in rows]))
    return Reference(nads, eigenvalues, grid, curve)


def grid_at(grid: dict, freqs, shape) -> np.ndarray:
    """The published accuracy of each of our Fourier directions (k1, k2): the mean of the
    cells of its frequency and of its mirror (-k1, -k2) that their grid has; NaN for none
    (their grid holds even frequencies only)."""
    _, h, w = shape
    out = np.full(len(freqs), np.nan)
    for i, (k1, k2) in enumerate(np.asarray(freqs)):
        cells = []
        for a, b in ((k1, k2), (-k1, -k2)):
            a = (a + h // 2) % h - h // 2  # centred, in [-H/2, H/2): +16 is -16
            b = (b + w // 2) % w - w // 2
            if (a, b) in grid:
                cells.append(grid[(a, b)])
        if cells:
            out[i] = np.mean(cells)
    return out
