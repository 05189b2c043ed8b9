"""Invalidation as fine as the work, with real DVC on the built tiny pipeline: an edit
reruns the stages whose results it can change, and no other."""

import json

import pytest

pytestmark = pytest.mark.slow


def stale(repo, ran=()) -> set:
    """The stages `dvc status` lists once the model fingerprints (stage model@*) are current,
    checking that bringing them up to date ran the stages `ran`."""
    out = repo.dvc("repro", "model").stdout
    assert all(f"Running stage '{name}'" in out for name in ran), out
    return set(json.loads(repo.dvc("status", "--json").stdout))


def test_editing_one_family_reruns_only_its_architectures(built_copy):
    repo = built_copy
    lenet = repo.path / "nads/models/lenet.py"
    lenet.write_text(lenet.read_text() + "\n# an edit\n")
    assert stale(repo, ran=("model@lenet",)) == {
        "nads@lenet",
        "sweep-fourier@lenet",
        "sweep-nad@lenet",
        "poison@lenet",
        "flip@lenet",
    }


def test_a_new_family_reruns_nothing(built_copy):
    repo = built_copy
    (repo.path / "nads/models/wide.py").write_text(
        "import torch.nn as nn\n\n\nclass Wide(nn.Linear):\n"
        "    def __init__(self, in_channels=1, num_classes=1, input_size=32):\n"
        "        super().__init__(in_channels * input_size ** 2, num_classes)\n"
    )
    core = repo.path / "nads/models/__init__.py"
    core.write_text(
        core.read_text().replace(
            '    "vit_p4": ("vit", "ViT", {}),', '    "vit_p4": ("vit", "ViT", {}),\n    "wide": ("wide", "Wide", {}),'
        )
    )
    assert stale(repo, ran=("model@logreg", "model@lenet")) == set()  # they saw the edit; their hashes held


def test_a_change_of_style_redraws_and_reruns_no_computation(built_copy):
    repo = built_copy
    plots = repo.path / "nads/plots.py"
    plots.write_text(plots.read_text() + "\n# an edit\n")
    assert stale(repo) == {"figures", "report"}  # (the report draws the atlas page's figures)
    assert {"figures", "report"} == {
        line.split("'")[1] for line in repo.dvc("repro").stdout.splitlines() if line.startswith("Running stage")
    }


def test_editing_a_users_model_module_reruns_its_architectures_stages(built_copy):
    """A user's architecture (archs/mymod.py, listed as archs.mymod:build): ReLU -> Tanh in its
    module makes its NAD stage stale, and nothing else."""
    repo = built_copy
    module = repo.path / "archs/mymod.py"
    module.write_text(
        "import torch.nn as nn\n\n\ndef build(in_channels=1, num_classes=1, input_size=32):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * input_size**2, 16), nn.ReLU(),"
        " nn.Linear(16, num_classes))\n"
    )
    archs = repo.params()["archs"]
    repo.set_params(archs={**archs, "nads": [*archs["nads"], "archs.mymod:build"]})
    assert "Running stage 'nads@archs.mymod:build'" in repo.dvc("repro", "nads@archs.mymod:build").stdout
    before = stale(repo)  # (the new params' readers: check-params, figures, report)
    module.write_text(module.read_text().replace("nn.ReLU()", "nn.Tanh()"))
    assert "nads@archs.mymod:build" not in before
    assert stale(repo, ran=("model@archs.mymod:build",)) - before == {"nads@archs.mymod:build"}
