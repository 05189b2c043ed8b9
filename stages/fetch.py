"""Stage `fetch@<input>` (and `reference@<arch>`): an external input's raw bytes into data/raw/.

The local copy comes from an environment variable (make repro CIFAR10=/path
NADS_PUBLISHED=/path), never from a tracked file: DVC records the content's
hash, so the same bytes from another place rerun nothing, and no path of this
machine is committed. Without the variable, a copy fetched before is kept (a
code change reruns this stage: it must not re-download); with none, the input
is downloaded from its original release.
"""

import os
import sys
from pathlib import Path

from nads import cifar10, published
from stages.common import stage

# input -> (environment variable, fetcher(dest, source, *part))
SOURCES = {"cifar10": ("CIFAR10", cifar10.fetch), "published": ("NADS_PUBLISHED", published.fetch)}


def main(name: str, *part: str) -> None:
    if name not in SOURCES or len(part) != (name == "published") or (part and part[0] not in published.ARCHS):
        print(
            f"error: stages.fetch {' '.join((name, *part))}: allowed: cifar10, or published <arch> "
            f"with <arch> one of {', '.join(published.ARCHS)}",
            file=sys.stderr,
        )
        sys.exit(2)
    variable, fetch = SOURCES[name]
    source = os.environ.get(variable) or None
    folder = Path("data/raw", name, *part)
    label = f"reference@{part[0]}" if part else f"fetch@{name}"
    with stage("fetch", label, input=name, part="/".join(part), source=source or "download") as st:
        if source is None and any(folder.glob("*")):
            if name == "published":  # its files have known hashes: a kept copy is checked as a fetched one
                published.verify(folder, published.files_of(part[0]), f"kept in {folder} (dvc checkout {folder})")
            print(f"{label}: keeping {folder} (set {variable}=/path/to/copy to replace it)", file=sys.stderr)
            return
        fetch(st.folder(folder.parent) / folder.name, source, *part)


if __name__ == "__main__":
    main(*sys.argv[1:])
