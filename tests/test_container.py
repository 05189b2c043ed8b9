"""The image's build context is what a clone holds (the image itself: container/build.sh)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "container"))
import dockerignore  # noqa: E402


def test_dockerignore_mirrors_every_gitignore():
    assert (ROOT / ".dockerignore").read_text() == dockerignore.text(), "run: python container/dockerignore.py"
    rules = dockerignore.rules()
    # root rules anywhere below (unanchored) or at the root (anchored); nested ones under their folder
    assert {
        "**/.venv",
        "**/*.egg-info",
        "**/__pycache__",
        "mlflow.db",
        ".nads",
        ".dvc/config.local",
        ".dvc/cache",
        "data/synthetic",
        "results/nads/lenet/nads.npy",
    } <= set(rules)


def test_what_git_ignores_docker_ignores_and_nothing_tracked():
    ignored = subprocess.run(
        ["git", "ls-files", "--others", "--ignored", "--exclude-standard", "--directory"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    import fnmatch

    def excluded(path: str) -> bool:
        path = path.rstrip("/")
        parts = path.split("/")
        for rule in dockerignore.rules():
            for i in range(1, len(parts) + 1):  # a rule on a folder excludes what is under it
                prefix = "/".join(parts[:i])
                if fnmatch.fnmatch(prefix, rule) or (
                    rule.startswith("**/") and fnmatch.fnmatch(parts[i - 1], rule[3:])
                ):
                    return True
        return False

    assert [p for p in ignored if not excluded(p)] == []
    assert [p for p in tracked if excluded(p)] == []
