"""Architecture registry: one name -> one constructor (CIFAR-style, 32x32 inputs).

Every constructor takes (in_channels, num_classes, input_size). `get_model` also
accepts "package.module:callable" for a user's own nn.Module factory, called
with the same keyword arguments, and "torchvision:<name>" or "timm:<name>" for
any classifier of those libraries (nads.models.zoo).

Each family has its own module (lenet.py, resnet.py, ...; shared layers in
layers.py and tokens.py), imported only when one of its architectures is built.
nads.codedeps.model_files names the files an architecture's numbers depend on: the
pipeline hashes them (stage model@<arch>), so that editing one family reruns only
its architectures' stages. This module imports torch only inside its functions.
"""

from __future__ import annotations

import importlib
import re
from difflib import get_close_matches
from functools import partial
from typing import Callable

# name -> (family module, class, keyword arguments). *_nopool: the same network without
# its poolings (or strided downsampling), the paper's control for where the bias comes from.
ARCHS: dict[str, tuple[str, str, dict]] = {
    "logreg": ("logreg", "LogReg", {}),
    **{
        f"{name}{suffix}": (family, cls, {} if not suffix else {"pool": False})
        for name, family, cls in (
            ("lenet", "lenet", "LeNet"),
            ("vgg11_bn", "vgg", "VGG11BN"),
            ("resnet18", "resnet", "ResNet18"),
            ("densenet121", "densenet", "DenseNet121"),
        )
        for suffix in ("", "_nopool")
    },
    # The atlas: families the paper did not study, CIFAR-scale and small enough for NADs and a
    # Fourier sweep on a 2-core CPU (profiles/atlas.yaml). Each keeps what defines its family,
    # which is what could bias its directions: a patch-p stem (a linear map of non-overlapping
    # p x p patches, stride p) in the transformer and the MLP-Mixer, ConvNeXt's 4x4 patchify
    # stem and strided downsampling, 7x7 depthwise convolutions and layer scale (1e-6 at
    # initialisation, so its blocks start near identity).
    "vit_p4": ("vit", "ViT", {}),
    "mixer_p4": ("mixer", "Mixer", {}),
    "convnext_cifar": ("convnext", "ConvNeXt", {}),
}
ZOOS = ("torchvision", "timm")


def list_models() -> list[str]:
    return sorted(ARCHS)


# "package.module:callable", each part a Python identifier. Stages use the arch
# name as a folder name under results/, so an accepted name must never be able to
# hold a path separator or '..' (ASCII and fullmatch: no look-alikes, no trailing newline).
_IMPORT_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*", re.ASCII)
_IMPORT_FORM = "'package.module:callable' (Python identifiers joined by dots, no slashes or spaces)"


def one_line(e: BaseException) -> str:
    """'Type: first line of the message', for errors reported on one line."""
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__


def _factory(name: str) -> Callable:
    if name in ARCHS:
        family, cls, kwargs = ARCHS[name]
        return partial(getattr(importlib.import_module(f"{__name__}.{family}"), cls), **kwargs)
    if name.partition(":")[0] in ZOOS:  # before the import path, which these names also match
        from .zoo import zoo_factory

        return zoo_factory(name)
    if ":" not in name:
        close = get_close_matches(name, list_models())
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        raise ValueError(
            f"arch = {name!r}: unknown architecture; {hint}allowed: {', '.join(list_models())}, "
            f"or {_IMPORT_FORM} for your own model"
        )
    if name.startswith("."):
        raise ValueError(
            f"arch = {name!r}: relative module paths are not allowed; "
            "use an absolute import path such as mypkg.models:build"
        )
    if not _IMPORT_PATH.fullmatch(name):
        raise ValueError(f"arch = {name!r}: not a valid import path; use {_IMPORT_FORM}")
    module_name, _, attr = name.partition(":")
    try:  # the user's module runs arbitrary code on import: any error is theirs to fix
        factory = getattr(importlib.import_module(module_name), attr)
    except Exception as e:
        raise ValueError(f"arch = {name!r}: cannot load {attr!r} from module {module_name!r} ({one_line(e)})") from None
    if not callable(factory):
        raise ValueError(f"arch = {name!r}: {attr!r} is {type(factory).__name__}, not a callable returning a model")
    return factory


def check_arch(name: str) -> None:
    """Raise get_model's ValueError for a name that cannot be built, without building."""
    _factory(name)


def _as_module(name: str, model):
    import torch.nn as nn

    if not isinstance(model, nn.Module):
        raise ValueError(f"arch = {name!r}: the callable returned {type(model).__name__}, not a torch.nn.Module")
    return model


def get_model(name: str, in_channels: int = 1, num_classes: int = 1, input_size: int = 32):
    """A freshly initialised torch.nn.Module (PyTorch's default initialisation)."""
    return _as_module(name, _factory(name)(in_channels=in_channels, num_classes=num_classes, input_size=input_size))


def probe_model(name: str, in_channels: int, num_classes: int, input_size: int, batch: int = 2) -> None:
    """Raise a one-line ValueError unless `name` builds a model mapping standard-normal
    (batch, in_channels, input_size, input_size) inputs to finite (batch, num_classes)
    outputs. Stages call it before any long compute, so that a model unfit for their
    data fails here, naming the architecture, not deep in training or a worker."""
    import torch

    factory = _factory(name)
    shape = (in_channels, input_size, input_size)
    expected = f"a tensor of shape (batch, num_classes) = {(batch, num_classes)}"

    def fail(what: str):
        return ValueError(f"arch = {name!r}: {what}")

    # A fixed seed makes the verdict reproducible (NaN outputs may hinge on the
    # initialisation); fork_rng leaves the caller's random stream as it was.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        try:
            model = factory(in_channels=in_channels, num_classes=num_classes, input_size=input_size)
        except Exception as e:
            raise fail(
                f"building it with in_channels={in_channels}, num_classes={num_classes}, "
                f"input_size={input_size} raised {one_line(e)}"
            ) from None
        model = _as_module(name, model).eval()
        try:
            with torch.no_grad():
                out = model(torch.randn(batch, *shape))
        except Exception as e:
            zoo = name.partition(":")[0]
            hint = f" ({zoo} models made for larger images may not fit these)" if zoo in ZOOS else ""
            raise fail(
                f"it cannot take inputs of shape (C, H, W) = {shape}{hint}: its forward raised {one_line(e)}"
            ) from None
    if not isinstance(out, torch.Tensor):
        raise fail(f"its forward returns {type(out).__name__}, not {expected}")
    if tuple(out.shape) != (batch, num_classes):
        raise fail(
            f"its forward returns shape {tuple(out.shape)} for inputs of shape (C, H, W) = {shape}; expected {expected}"
        )
    bad = int((~torch.isfinite(out)).sum())
    if bad:
        raise fail(
            f"{bad} of its {out.numel()} outputs are NaN or inf at initialisation "
            f"(standard-normal inputs of shape (C, H, W) = {shape})"
        )
