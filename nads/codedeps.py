"""Which project files a Python file imports, read from the source (never run).

Every `import` statement counts, those inside functions included, followed from
module to module; importing a.b.c counts a/__init__.py and a/b/__init__.py too.
tests/test_dvc_yaml.py derives each stage's code deps with it, and `model_files`
names the files an architecture's networks depend on.
"""

from __future__ import annotations

import ast
import importlib.util
from collections.abc import Collection
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("nads", "stages")


def module_file(name: str, root: Path = ROOT) -> Path | None:
    parts = name.split(".")
    if parts[0] not in PACKAGES:
        return None
    path = root.joinpath(*parts)
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return None


def imports(path: Path, root: Path = ROOT) -> set[Path]:
    """Project files `path` imports, anywhere in it, with the packages they pass through."""
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            names.add(base)
            names |= {f"{base}.{a.name}" for a in node.names}  # `from nads import files` imports a module
    found = set()
    for name in names:
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            f = module_file(".".join(parts[:i]), root)
            if f:
                found.add(f)
    return found


def closure(program: Path, root: Path = ROOT, skip: Collection[Path] = frozenset()) -> set[Path]:
    """`program` and every project file it imports, directly or not (not following
    the imports of the files in `skip`)."""
    seen, todo = set(), [Path(program).resolve()]
    while todo:
        p = todo.pop()
        if p not in seen:
            seen.add(p)
            if p not in skip:
                todo.extend(imports(p, root))
    return seen


def model_files(name: str) -> list[Path]:
    """The source files whose code builds architecture `name`'s networks: its family's
    module and the modules of nads/models it imports (torchvision:/timm: names: zoo.py;
    the library's version is locked, requirements/versions.yaml); for a user's
    package.module:callable, that module's file (what it imports in turn is not
    followed). Not nads/models/__init__.py: it only finds the constructor."""
    from . import models

    here = Path(models.__file__).resolve().parent
    if name in models.ARCHS or name.partition(":")[0] in models.ZOOS:
        family = here / f"{models.ARCHS[name][0] if name in models.ARCHS else 'zoo'}.py"
        core = here / "__init__.py"
        return sorted(f for f in closure(family, skip={core}) if f.parent == here and f != core)
    models.check_arch(name)  # imports the user's module: a clear error if it cannot
    spec = importlib.util.find_spec(name.partition(":")[0])
    assert spec is not None and spec.origin is not None  # (check_arch imported it)
    return [Path(spec.origin).resolve()]
