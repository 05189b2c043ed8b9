import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from nads.models import check_arch, get_model, list_models, probe_model
from nads.models.layers import MaxPool2x2

PAPER = ["logreg", "lenet", "vgg11_bn", "resnet18", "densenet121"]


def test_registry_lists_the_paper_architectures_and_pooling_free_variants():
    names = list_models()
    for arch in PAPER:
        assert arch in names
        if arch != "logreg":
            assert f"{arch}_nopool" in names
    assert {"vit_p4", "mixer_p4", "convnext_cifar"} <= set(names)  # the atlas (profiles/atlas.yaml)


@pytest.mark.parametrize("arch", list_models())
@pytest.mark.parametrize("channels", [1, 3])
def test_every_architecture_builds_and_runs(arch, channels):
    torch.manual_seed(0)
    model = get_model(arch, in_channels=channels, num_classes=10).eval()
    sizes = []
    hooks = [
        m.register_forward_hook(lambda mod, inp, out: sizes.append(out.shape[-2:]))
        for m in model.modules()
        if isinstance(m, nn.Conv2d)
    ]
    with torch.no_grad():
        out = model(torch.randn(2, channels, 32, 32))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    if arch.endswith("_nopool"):
        # Every feature map keeps the input's resolution, up to the classifier.
        assert sizes and all(tuple(s) == (32, 32) for s in sizes)
    elif arch != "logreg":
        assert min(s[-1] for s in sizes) < 32
    for h in hooks:
        h.remove()


def test_fast_max_pool_is_max_pool_gradient_included():
    torch.manual_seed(0)
    for shape, ties in (((3, 5, 14, 14), False), ((2, 3, 7, 9), False), ((4, 6, 10, 10), True), ((2, 2, 5, 7), True)):
        x = torch.randn(shape)
        if ties:  # values in {-1, 0, 1}: most windows hold several maxima; the first in scan order wins
            x = x.round().clamp(-1, 1)
        torch.testing.assert_close(MaxPool2x2()(x), F.max_pool2d(x, 2), rtol=0, atol=0)
        ours, ref = x.clone().requires_grad_(), x.clone().requires_grad_()
        out = MaxPool2x2()(ours)
        torch.testing.assert_close(out, F.max_pool2d(ref, 2), rtol=0, atol=0)
        g = torch.randn(out.shape)
        out.backward(g)
        F.max_pool2d(ref, 2).backward(g)
        torch.testing.assert_close(ours.grad, ref.grad, rtol=0, atol=0)
        assert (ours.grad != 0).sum() == out.numel()  # one winner per window


def test_fast_max_pool_propagates_nan_like_max_pool():
    # Every pattern of NaNs in a 2x2 window (16). (Where the gradient goes in a
    # window holding NaN is not max_pool2d's: only diverged training has NaN.)
    masks = torch.tensor([[(m >> b) & 1 for b in range(4)] for m in range(16)], dtype=torch.bool)
    x = torch.randn(16, 4).where(~masks, torch.nan).view(16, 2, 2).repeat(1, 3, 5).requires_grad_()
    torch.testing.assert_close(MaxPool2x2()(x), F.max_pool2d(x[None], 2)[0], rtol=0, atol=0, equal_nan=True)


def test_max_pool_under_torch_func_and_forward_ad():
    from torch.func import grad, vmap

    x = torch.randn(3, 1, 8, 8)
    ref = torch.func.grad(lambda t: F.max_pool2d(t, 2).pow(2).sum())(x)
    torch.testing.assert_close(grad(lambda t: MaxPool2x2()(t).pow(2).sum())(x), ref, rtol=0, atol=0)
    torch.testing.assert_close(vmap(grad(lambda t: MaxPool2x2()(t).pow(2).sum()))(x), ref, rtol=0, atol=0)
    import torch.autograd.forward_ad as fwAD

    with fwAD.dual_level():
        t = torch.randn_like(x)
        tangent = fwAD.unpack_dual(MaxPool2x2()(fwAD.make_dual(x.clone().requires_grad_(), t))).tangent
    winners = ref != 0  # the gradient of sum(out^2) is nonzero at each window's winner only
    torch.testing.assert_close(tangent, (t * winners).view(3, 1, 4, 2, 4, 2).sum((3, 5)), rtol=0, atol=0)


def test_user_models_by_import_path_and_clear_errors():
    model = get_model("toy_models:smooth_mlp", 1, 1, 8)
    assert model(torch.randn(4, 1, 8, 8)).shape == (4, 1)
    with pytest.raises(
        ValueError,
        match="arch = 'lenet5': unknown architecture; did you mean lenet\\? allowed: convnext_cifar, densenet121",
    ):
        get_model("lenet5")
    with pytest.raises(ValueError, match="cannot load 'missing' from module 'toy_models'"):
        get_model("toy_models:missing")
    with pytest.raises(ValueError, match="input_size = 16: vgg11_bn needs inputs of at least 32x32"):
        get_model("vgg11_bn", input_size=16)
    with pytest.raises(ValueError, match="returned str, not a torch.nn.Module"):
        get_model("toy_models:not_a_module")


def _one_line_error(call, *args) -> str:
    with pytest.raises(ValueError) as e:
        call(*args)
    message = str(e.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    "name, parts",
    [
        (
            "..toy_models:smooth_mlp",
            ["relative module paths are not allowed", "use an absolute import path such as mypkg.models:build"],
        ),
        # The name becomes a folder under results/: no separators, no '..'.
        ("toy_models:x/../../../y", ["not a valid import path", "'package.module:callable'"]),
        ("toy models:smooth_mlp", ["not a valid import path"]),
        ("toy_models:smooth_mlp\n", ["not a valid import path"]),
        (
            "lenett",
            [
                "unknown architecture; did you mean lenet? allowed: convnext_cifar, densenet121, ",
                "lenet_nopool, logreg, mixer_p4",
            ],
        ),
        ("xyzzy", ["unknown architecture; allowed: convnext_cifar, densenet121, "]),
        ("toy_models:SUPPORT", ["'SUPPORT' is list, not a callable returning a model"]),
    ],
)
def test_arch_names_are_registered_or_absolute_import_paths(name, parts):
    assert_rejected(name, parts, input_size=8)


def assert_rejected(name: str, parts, input_size: int) -> None:
    """check_arch, get_model and probe_model all refuse `name` in one line holding every part."""
    for call in (check_arch, get_model, probe_model):
        message = _one_line_error(call, name, *(() if call is check_arch else (1, 1, input_size)))
        assert message.startswith(f"arch = {name!r}: ")
        for part in parts:
            assert part in message


@pytest.mark.parametrize("arch", list_models())
def test_registered_architectures_pass_the_probe(arch):
    rng = torch.get_rng_state()
    for shape in ((1, 1, 32), (1, 2, 32), (3, 10, 32)):
        probe_model(arch, *shape)
    assert torch.equal(torch.get_rng_state(), rng)  # seeded, yet the caller's stream is untouched


@pytest.mark.parametrize(
    "factory, parts",
    [
        (
            "raises_when_built",
            ["building it with in_channels=3, num_classes=10, input_size=32 raised ValueError: bad width"],
        ),
        ("not_a_module", ["the callable returned str, not a torch.nn.Module"]),
        (
            "one_channel_only",
            [
                "it cannot take inputs of shape (C, H, W) = (3, 32, 32): its forward raised RuntimeError: ",
                "expected input[2, 3, 32, 32] to have 1 channels",
            ],
        ),
        ("returns_tuple", ["its forward returns tuple, not a tensor of shape (batch, num_classes) = (2, 10)"]),
        (
            "returns_one_output",
            [
                "its forward returns shape (2, 1) for inputs of shape (C, H, W) = (3, 32, 32); "
                "expected a tensor of shape (batch, num_classes) = (2, 10)"
            ],
        ),
        ("returns_nan", ["20 of its 20 outputs are NaN or inf at initialisation"]),
    ],
)
def test_probe_names_what_is_wrong_with_a_user_model_in_one_line(factory, parts):
    # The CIFAR-10 poisoning stage's probe: 3 channels, 10 classes, 32x32.
    message = _one_line_error(probe_model, f"toy_models:{factory}", 3, 10, 32)
    assert message.startswith(f"arch = 'toy_models:{factory}': ")
    for part in parts:
        assert part in message
    if factory != "raises_when_built":
        assert "building it" not in message


def test_probe_passes_user_models_that_fit():
    probe_model("toy_models:one_channel_only", 1, 10, 32)
    probe_model("toy_models:smooth_mlp", 1, 1, 8, batch=5)
