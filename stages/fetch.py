"""Stage `fetch@<input>`: an external input's raw bytes into data/raw/<input>/.

The local copy comes from an environment variable (make repro CIFAR10=/path),
never from a tracked file: DVC records the content's hash, so the same bytes
from another place rerun nothing, and no path of this machine is committed.
Without the variable, a copy fetched before is kept (a code change reruns this
stage: it must not re-download); with none, the original release is downloaded.
"""
import os
import sys
from pathlib import Path

from nads import datasets
from stages.common import stage

SOURCES = {"cifar10": ("CIFAR10", datasets.fetch)}   # input -> (environment variable, fetcher)


def main(name: str) -> None:
    variable, fetch = SOURCES[name]
    source = os.environ.get(variable) or None
    with stage("fetch", f"fetch@{name}", input=name, source=source or "download") as st:
        if source is None and any(Path("data/raw", name).glob("*")):
            print(f"fetch@{name}: keeping data/raw/{name} (set {variable}=/path/to/copy to replace it)",
                  file=sys.stderr)
            return
        fetch(st.folder("data/raw") / name, source)


if __name__ == "__main__":
    main(sys.argv[1])
