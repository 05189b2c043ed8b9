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
    winners = ref != 0   # the gradient of sum(out^2) is nonzero at each window's winner only
    torch.testing.assert_close(tangent, (t * winners).view(3, 1, 4, 2, 4, 2).sum((3, 5)), rtol=0, atol=0)


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
