"""Stage `model@<arch>`: the code that builds `arch`'s networks, by content.

Writes results/models/<arch>.json, the sha256 of each file nads.codedeps.model_files
names (the family's module and the shared layers it uses; for a user's model, its
module). The stages that build `arch` depend on that file, not on the model code,
so editing one family reruns only its architectures' stages. This stage reruns for
every architecture when anything under nads/models or archs/ changes: it takes a
fraction of a second, and what reads its output reruns only if its hashes changed.
"""

import sys
from pathlib import Path

from nads import errors, files
from nads.codedeps import ROOT, model_files
from nads.models import ARCHS, ZOOS

WATCHED = ("nads/models", "archs")  # the folders this stage's DVC entry depends on


def fingerprint(arch: str) -> dict:
    """{file: sha256} of the code that builds `arch`, paths relative to the repository
    (an installed module: its dotted name)."""
    try:
        found = model_files(arch)  # (imports a user's module, to check it; a family's is only read)
    except ValueError as e:
        raise errors.ParamError(f"archs.nads: {e}") from None
    out = {}
    for f in found:
        if f.is_relative_to(ROOT):
            key = f.relative_to(ROOT).as_posix()
            if not key.startswith(tuple(w + "/" for w in WATCHED)):
                raise errors.ParamError(
                    f"archs.nads: {arch!r}: its module {key} is in the repository but outside archs/, where DVC "
                    f"would not see it change; move it to archs/ and list it as archs.{Path(key).stem}:"
                    f"{arch.partition(':')[2]}"
                )
        else:  # installed elsewhere (its version is the environment's): its name, the same on any machine
            key = arch.partition(":")[0]
        out[key] = files.file_digest(f, "sha256")
    return {
        "arch": arch,
        "kind": "registry" if arch in ARCHS else "zoo" if arch.partition(":")[0] in ZOOS else "user",
        "files": out,
    }


def main(arch: str) -> None:
    try:
        files.write_json(Path("results/models") / f"{arch}.json", fingerprint(arch))
    except errors.InputError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main(sys.argv[1])
