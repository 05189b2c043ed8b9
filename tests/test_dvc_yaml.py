"""dvc.yaml stays honest: each stage's code deps are exactly the project modules its program imports.

The imports are read from the source (every `import` statement, those inside
functions included), followed from module to module. A stage that imports a
module DVC does not know about would not rerun when that module changes.
"""

import ast
from pathlib import Path

import pytest
import yaml

from nads import codedeps

ROOT = Path(__file__).resolve().parents[1]

# Modules that cannot change any output, and why. Nothing else may be left out.
NOT_DEPS = {
    "nads/tracking.py": "MLflow logging: writes no DVC output (the report names the git commit, which DVC "
    "does not track either)",
    "nads/models/__init__.py": "finds an architecture's constructor by name and probes it; the code that builds "
    "its networks is a dep through results/models/<arch>.json (stage model@<arch>, "
    "which depends on all of nads/models)",
    "nads/progress.py": "progress bars and step metrics for MLflow: what it hands back to the computation is "
    "nothing, or (end_job) the units of work a job reported, which only the progress display and the resume "
    "store's count read (test_the_progress_module_hands_back_nothing_a_result_uses)",
    "nads/environment.py": "checks that the installed packages are the locked ones and records them; "
    "the locked versions themselves are a dep (requirements/versions.yaml)",
    "nads/errors.py": "the exception classes: raising one ends the program with no output written (the "
    "staging is discarded), and nothing catches one to go on computing "
    "(test_the_exceptions_only_ever_end_a_program)",
}


def closure(program: Path, skip=()) -> set[str]:
    """The files `program` imports, not following the imports of those in `skip`."""
    return {str(p.relative_to(ROOT)) for p in codedeps.closure(program, skip={ROOT / f for f in skip})}


def _program(cmd: str) -> Path:
    module = cmd.split()[2]  # "python -m stages.nads ${item.arch}"
    return codedeps.module_file(module)


def expected_code_deps(cmd: str) -> set[str]:
    return closure(_program(cmd), skip=NOT_DEPS) - set(NOT_DEPS)


def stages() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


@pytest.mark.parametrize("name", sorted(stages()))
def test_each_stage_lists_exactly_the_modules_its_program_imports(name):
    stage = stages()[name]
    listed = {d for d in stage.get("deps", []) if d.endswith(".py")}
    expected = expected_code_deps(stage["cmd"])
    assert listed == expected, f"dvc.yaml stage {name}: code deps should be\n" + "".join(
        f"      - {d}\n" for d in sorted(expected)
    )


def test_the_import_reader_sees_imports_inside_functions_and_packages():
    assert "nads/models/__init__.py" in closure(ROOT / "nads/cli.py")  # imported inside check-params
    assert {"stages/common.py", "nads/files.py", "nads/__init__.py", "stages/__init__.py"} <= closure(
        ROOT / "stages/synthetic.py"
    )


def test_no_import_cycle_among_the_librarys_modules():
    """Every import counts, those inside functions too (where a cycle hides)."""
    graph = {p: codedeps.imports(p) - {p} for p in (ROOT / "nads").rglob("*.py")}
    done, path = set(), []

    def visit(p):
        assert p not in path, "import cycle: " + " -> ".join(
            str(q.relative_to(ROOT)) for q in path[path.index(p) :] + [p]
        )
        if p in done:
            return
        path.append(p)
        for q in sorted(graph.get(p, ())):
            visit(q)
        path.pop()
        done.add(p)

    for p in sorted(graph):
        visit(p)


def test_the_progress_module_hands_back_nothing_a_result_uses():
    """Every function of nads/progress.py returns nothing, but end_job, whose units the
    executor alone takes, to count progress (and resumed work) by, and _whole, the module's own
    count of finished units, which nothing outside it uses."""
    tree = ast.parse((ROOT / "nads/progress.py").read_text())
    returning = {
        f.name
        for f in ast.walk(tree)
        if isinstance(f, ast.FunctionDef)
        and any(isinstance(r, ast.Return) and r.value is not None for r in ast.walk(f))
    }
    assert returning == {"end_job", "_whole"}
    outside = [p for p in [*(ROOT / "nads").rglob("*.py"), *(ROOT / "stages").rglob("*.py")] if p.name != "progress.py"]
    assert not [p for p in outside if "_whole" in p.read_text()]
    callers = {
        str(p.relative_to(ROOT))
        for p in (ROOT / "nads").rglob("*.py")
        if "end_job()" in p.read_text() and p.name != "progress.py"
    }
    assert callers == {"nads/executor.py"}
    units = (ROOT / "nads/executor.py").read_text()
    assert "units = progress.end_job()" in units and "return result, units" in units


def test_the_exceptions_only_ever_end_a_program():
    """nads/errors.py defines exception classes and nothing else, and every handler that
    catches one exits (sys.exit, or main's `return 2`) or re-raises: what they carry never
    reaches an output."""
    tree = ast.parse((ROOT / "nads/errors.py").read_text())
    body = [n for n in tree.body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
    assert body and all(isinstance(n, ast.ClassDef) for n in body)

    def ends(node) -> bool:
        return (
            isinstance(node, ast.Raise)
            or (isinstance(node, ast.Call) and ast.unparse(node.func) == "sys.exit")
            or (isinstance(node, ast.Return) and isinstance(node.value, ast.Constant) and node.value.value == 2)
        )

    handlers = 0
    for path in [*(ROOT / "nads").rglob("*.py"), *(ROOT / "stages").rglob("*.py")]:
        for handler in ast.walk(ast.parse(path.read_text())):
            if isinstance(handler, ast.ExceptHandler) and handler.type is not None:
                if {"InputError", "ParamError"} & {
                    n.id if isinstance(n, ast.Name) else n.attr
                    for n in ast.walk(handler.type)
                    if isinstance(n, (ast.Name, ast.Attribute))
                }:
                    handlers += 1
                    assert any(ends(n) for n in ast.walk(handler)), f"{path.relative_to(ROOT)}:{handler.lineno}"
    assert handlers >= 3  # stages/common.py, stages/model.py, nads/cli.py


# Stages whose outputs no library version can change: check-params writes nothing, reference
# copies files it checks against their recorded sha256, model hashes source files.
NO_ENVIRONMENT = {"check-params", "reference", "model"}


@pytest.mark.parametrize("name", sorted(stages()))
def test_each_computing_stage_depends_on_the_locked_versions(name):
    params = [p if isinstance(p, str) else next(iter(p)) for p in stages()[name].get("params", [])]
    assert ("requirements/versions.yaml" in params) == (name not in NO_ENVIRONMENT), name


def rewrite(text: str) -> str:
    """dvc.yaml with every stage's code deps replaced by the derived ones (the rest kept as is)."""
    out, cmd, written = [], None, False
    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        if line.startswith("  ") and not line.startswith("   ") and stripped.endswith(":"):
            cmd, written = None, False  # a new stage
        if stripped.startswith("cmd: "):
            cmd = stripped[5:]
        if stripped.startswith("- ") and stripped.endswith(".py") and cmd:
            if not written:
                out += [f"      - {d}\n" for d in sorted(expected_code_deps(cmd))]
                written = True
            continue
        out.append(line)
    return "".join(out)


def test_rewriting_changes_nothing_when_the_deps_are_right():
    text = (ROOT / "dvc.yaml").read_text()
    assert rewrite(text) == text


if __name__ == "__main__":  # python tests/test_dvc_yaml.py: derive the code deps into dvc.yaml
    (ROOT / "dvc.yaml").write_text(rewrite((ROOT / "dvc.yaml").read_text()))
