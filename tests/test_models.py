import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from nads.models import MaxPool2x2, get_model, list_models

PAPER = ["logreg", "lenet", "vgg11_bn", "resnet18", "densenet121"]


def test_registry_lists_the_paper_architectures_and_pooling_free_variants():
    names = list_models()
    for arch in PAPER:
        assert arch in names
        if arch != "logreg":
            assert f"{arch}_nopool" in names


@pytest.mark.parametrize("arch", list_models())
@pytest.mark.parametrize("channels", [1, 3])
def test_every_architecture_builds_and_runs(arch, channels):
    torch.manual_seed(0)
    model = get_model(arch, in_channels=channels, num_classes=10).eval()
    sizes = []
    hooks = [m.register_forward_hook(lambda mod, inp, out: sizes.append(out.shape[-2:]))
             for m in model.modules() if isinstance(m, nn.Conv2d)]
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


def test_user_models_by_import_path_and_clear_errors():
    model = get_model("toy_models:smooth_mlp", 1, 1, 8)
    assert model(torch.randn(4, 1, 8, 8)).shape == (4, 1)
    with pytest.raises(ValueError, match="arch = 'lenet5': unknown architecture; allowed: densenet121"):
        get_model("lenet5")
    with pytest.raises(ValueError, match="cannot load 'missing' from module 'toy_models'"):
        get_model("toy_models:missing")
    with pytest.raises(ValueError, match="input_size = 16: vgg11_bn needs inputs of at least 32x32"):
        get_model("vgg11_bn", input_size=16)
    with pytest.raises(ValueError, match="returned str, not a torch.nn.Module"):
        get_model("toy_models:not_a_module")
