"""torchvision and timm classifiers by name: "torchvision:<name>", "timm:<name>"."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import yaml
from test_models import _one_line_error, assert_rejected

from nads import config
from nads.config import Schedule
from nads.estimate import Spec, estimate_nads
from nads.models import check_arch, get_model, probe_model
from nads.train import init_model, train_batched

ROOT = Path(__file__).resolve().parents[1]
# Two small models of each library; mobilenet_v3_small has dropout, the ViT has fixed-size
# position embeddings (built for the input size: img_size=32 here, not 224).
ZOO = ["torchvision:resnet18", "torchvision:mobilenet_v3_small", "timm:resnet10t", "timm:vit_tiny_patch16_224"]
# The smallest input each takes (the ViT: one 16x16 patch), for the NAD estimates.
SMALL = {"timm:vit_tiny_patch16_224": 16}

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def first_conv(model) -> nn.Conv2d:
    return next(m for m in model.modules() if isinstance(m, nn.Conv2d))


@pytest.mark.parametrize("arch", ZOO)
def test_zoo_models_take_the_inputs_and_give_the_outputs_asked_for(arch):
    outs = {}
    for channels, classes, seed in ((1, 1, 0), (3, 2, 0), (3, 2, 1)):
        torch.manual_seed(seed)
        model = get_model(arch, channels, classes, 32).eval()
        assert first_conv(model).in_channels == channels
        with torch.no_grad():
            outs[channels, classes, seed] = out = model(
                torch.randn(5, channels, 32, 32, generator=torch.Generator().manual_seed(0))
            )
        assert out.shape == (5, classes) and torch.isfinite(out).all()
        if arch.startswith("timm:vit"):  # built for 32x32: 2x2 patches (and the class token)
            assert model.patch_embed.img_size == (32, 32) and model.pos_embed.shape[1] == 1 + 2 * 2
    # Default initialisation from the caller's seed: another seed, another network.
    assert not torch.equal(outs[3, 2, 0], outs[3, 2, 1])


@pytest.mark.parametrize("arch", ZOO)
def test_nads_of_zoo_models_are_the_published_estimator_on_their_eval_mode_networks(arch):
    # Two networks: the covariance is d d^T / 2 with d = g_0 - g_1, so the top NAD is
    # +-d/|d| with eigenvalue |d|^2 / 2, g_i the central differences (step 100) of network i
    # at x0, computed here with the plain forward.
    size = SMALL.get(arch, 8)
    dim = size * size
    r = estimate_nads(arch, (1, size, size), n_networks=2, seed=3, device="cpu")
    assert r.nads.shape == (dim, dim) and r.eigenvalues.shape == (dim,)
    np.testing.assert_allclose(r.nads @ r.nads.T, np.eye(dim), atol=1e-4)
    assert r.diagnostics["n_networks"] == 2 and r.diagnostics["rank"] == 1
    spec = Spec(arch, (1, size, size), seed=3)
    x0, step = spec.x0().reshape(1, dim), 100.0
    inputs = torch.cat([x0 + step * torch.eye(dim), x0 - step * torch.eye(dim)]).reshape(2 * dim, 1, size, size)
    g = []
    for i in (0, 1):
        net = spec.network(i)
        # Eval mode: dropout off, batch norm on its running statistics (an input's
        # output is the same alone as in a batch).
        assert not any(m.training for m in net.modules())
        out = net(inputs).reshape(-1)
        torch.testing.assert_close(net(inputs[:1]).reshape(-1), out[:1], rtol=1e-4, atol=1e-6 * out.abs().max().item())
        g.append((out[:dim] - out[dim:]).double() / (2 * step))
    d = (g[0] - g[1]).numpy()
    np.testing.assert_allclose(r.eigenvalues[0], d @ d / 2, rtol=1e-3)
    assert abs(r.nads[0] @ d) / np.linalg.norm(d) > 0.999
    assert np.all(np.abs(r.eigenvalues[1:]) < 1e-6 * r.eigenvalues[0])


@pytest.mark.parametrize("arch", ["torchvision:mobilenet_v3_small", "timm:vit_tiny_patch16_224"])
def test_zoo_models_train_in_the_sweep_engine_reproducibly(arch):
    # K = 1 calls the model directly (CPU); K = 2 is the vmapped path (GPUs). mobilenet's
    # dropout draws its masks from a stream seeded by the run's seed and the step.
    schedule = Schedule(epochs=1, batch_size=4, lr=0.05, seed=0)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(2, 8, 1, 32, 32, generator=g), torch.randint(0, 2, (2, 8), generator=g)
    runs = []
    for k, noise in ((1, 0), (2, 0), (2, 1)):
        torch.manual_seed(noise)  # what ran before in the process must not matter
        models = [init_model(arch, i, schedule, 1, 2, 32) for i in range(k)]
        start = {n: p.detach().clone() for n, p in models[0].named_parameters()}
        trained = train_batched(models, lambda idx: (x[:k, idx], y[:k, idx]), 8, schedule, "cpu")
        assert not trained.diverged.any()
        assert all(not torch.equal(p[0], start[n]) for n, p in trained.params.items())  # two SGD steps each
        acc = trained.accuracy(lambda idx: (x[:k, idx], y[:k, idx]), 8)
        assert acc.shape == (k,) and ((acc >= 0) & (acc <= 1)).all()
        runs.append(trained.params)
    assert all(torch.equal(runs[1][n], runs[2][n]) for n in runs[1])


@pytest.mark.parametrize(
    "name, parts",
    [
        (
            "torchvision:resnet19",
            [
                "unknown torchvision model; did you mean torchvision:resnet18 or ",
                "torchvision.models.list_models() lists all 80",
            ],
        ),
        (
            "timm:vit_tiny_patch16",
            [
                "unknown timm model; did you mean timm:vit_tiny_patch16_384 or timm:vit_tiny_patch16_224",
                "timm.list_models() lists all",
            ],
        ),
        # Classifiers only: torchvision's detection models are not.
        (
            "torchvision:fasterrcnn_resnet50_fpn",
            ["unknown torchvision model; torchvision.models.list_models() lists all 80"],
        ),
        # Names become folders under results/ and DVC stage names: word characters only.
        ("timm:resnet10t.a1_in1k", ["not a valid timm model name; use timm:<name>"]),
        ("torchvision:../resnet18", ["not a valid torchvision model name"]),
        ("torchvision:", ["not a valid torchvision model name"]),
    ],
)
def test_unknown_zoo_names_list_close_matches_in_one_line(name, parts):
    assert_rejected(name, parts, input_size=32)


def test_a_model_made_for_larger_images_fails_in_the_probe_in_one_line():
    message = _one_line_error(probe_model, "torchvision:inception_v3", 1, 1, 32)
    assert message.startswith(
        "arch = 'torchvision:inception_v3': it cannot take inputs of shape (C, H, W) = "
        "(1, 32, 32) (torchvision models made for larger images may not fit these): "
        "its forward raised RuntimeError: "
    )
    probe_model("torchvision:googlenet", 1, 2, 32)  # without its auxiliary classifiers: logits, not a tuple


def test_without_timm_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # `import timm` fails, as when it is not installed
    message = _one_line_error(check_arch, "timm:resnet10t")
    assert message == "arch = 'timm:resnet10t': timm is not installed; pip install 'nads[timm]'"
    check_arch("torchvision:resnet18")


def _params(tmp_path, **archs) -> Path:
    params = yaml.safe_load((ROOT / "profiles" / "quick.yaml").read_text())
    params["archs"].update(archs)
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(params))
    return p


def test_check_params_accepts_zoo_names_and_rejects_misspelt_ones(tmp_path, monkeypatch, capsys):
    from nads import cli

    zoo = ["torchvision:resnet18", "timm:vit_tiny_patch16_224"]
    both = ["logreg", "lenet", *zoo]
    path = _params(tmp_path, nads=both, sweep=both, poison=zoo, flip=zoo)
    params = config.load(path)
    assert params["archs"].sweep == tuple(both) and params["archs"].poison == tuple(zoo)
    assert cli.main(["check-params", "--params", str(path)]) == 0
    path = _params(tmp_path, nads=["logreg", "lenet", "timm:vit_tiny_patch16_244"])
    assert cli.main(["check-params", "--params", str(path)]) == 2
    assert capsys.readouterr().err.startswith(
        "error: archs.nads: arch = 'timm:vit_tiny_patch16_244': unknown timm "
        "model; did you mean timm:vit_tiny_patch16_224"
    )
    monkeypatch.setitem(sys.modules, "timm", None)
    assert cli.main(["check-params", "--params", str(_params(tmp_path, nads=both))]) == 2
    assert capsys.readouterr().err == (
        "error: archs.nads: arch = 'timm:vit_tiny_patch16_224': timm is not installed; pip install 'nads[timm]'\n"
    )


@pytest.mark.parametrize("arch", ["torchvision:resnet18", "timm:resnet10t"])
def test_estimate_from_the_command_line(tmp_path, arch):
    out = tmp_path / "n.npz"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "nads.cli",
            "estimate",
            "--arch",
            arch,
            "--input-shape",
            "1,4,4",
            "--networks",
            "4",
            "--device",
            "cpu",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"16 NADs of {arch} from 4 networks" in proc.stdout
    with np.load(out) as f:
        np.testing.assert_allclose(f["nads"] @ f["nads"].T, np.eye(16), atol=1e-4)
        assert f["eigenvalues"][0] > 0 and f["eigenvalues"][2] > 0 and f["eigenvalues"][3] < 1e-6 * f["eigenvalues"][0]
