"""torchvision:<name> and timm:<name>: any classifier of those libraries."""

from __future__ import annotations

import re
from difflib import get_close_matches
from functools import partial
from typing import Callable

import torch.nn as nn

# ---------------------------------------------------------------- torchvision and timm models
# "torchvision:<name>" / "timm:<name>": that library's classifier, default initialisation
# (no pretrained weights), adapted to the input. The name is a folder name under results/
# and part of DVC stage names, so only word characters (which every model name of both
# libraries is; timm's ".tag" suffixes name pretrained weights, never used here).
_ZOO_NAME = re.compile(r"\w+", re.ASCII)


def zoo_factory(name: str) -> Callable[..., nn.Module]:
    zoo, _, model = name.partition(":")
    if not _ZOO_NAME.fullmatch(model):
        raise ValueError(
            f"arch = {name!r}: not a valid {zoo} model name; use {zoo}:<name> (letters, digits, "
            f"underscores), e.g. {'torchvision:resnet18' if zoo == 'torchvision' else 'timm:resnet10t'}"
        )
    if zoo == "torchvision":
        import torchvision

        # Classifiers only: the submodules' detection, segmentation and video models do not
        # map an image to class scores.
        known, lister = torchvision.models.list_models(module=torchvision.models), "torchvision.models.list_models()"
        build = _torchvision
    else:
        try:
            import timm
        except ImportError:
            raise ValueError(f"arch = {name!r}: timm is not installed; pip install 'nads[timm]'") from None
        known, lister = timm.list_models(), "timm.list_models()"
        build = _timm
    if model not in known:
        close = [f"{zoo}:{m}" for m in get_close_matches(model, known)]
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        raise ValueError(f"arch = {name!r}: unknown {zoo} model; {hint}{lister} lists all {len(known)}")
    return partial(build, model)


def _with_image_size(build: Callable[..., nn.Module], keyword: str, input_size: int, **kwargs) -> nn.Module:
    """build(keyword=input_size, **kwargs) for models that are built for one image size
    (vision transformers and MLP-Mixers: their position embeddings or token-mixing layers
    have one size per patch grid); build(**kwargs) for those whose constructor has no such
    argument (convolutional networks take any size)."""
    try:
        return build(**kwargs, **{keyword: input_size})
    except TypeError as e:
        if f"unexpected keyword argument '{keyword}'" not in str(e):
            raise
    return build(**kwargs)


def _torchvision(model: str, in_channels: int, num_classes: int, input_size: int) -> nn.Module:
    import torchvision

    kwargs = {"weights": None, "num_classes": num_classes}
    if model in ("googlenet", "inception_v3"):
        # Their auxiliary classifiers make the training-mode forward return a tuple, not logits;
        # init_weights=True: their own initialisation (torchvision warns it may change the default).
        kwargs.update(aux_logits=False, init_weights=True)
    net = _with_image_size(torchvision.models.get_model, "image_size", input_size, name=model, **kwargs)
    if in_channels != 3:
        # torchvision's constructors are fixed to RGB: the first convolution (the stem of
        # every classifier there) becomes a new one, the same but for its input channels,
        # with PyTorch's default initialisation; every other layer keeps torchvision's.
        layer, conv = next((n, m) for n, m in net.named_modules() if isinstance(m, nn.Conv2d))
        if conv.in_channels != 3 or conv.groups != 1:
            raise ValueError(
                f"torchvision:{model}: its first convolution {layer} takes {conv.in_channels} "
                f"channels in {conv.groups} groups, not the RGB image; cannot adapt it to "
                f"{in_channels} channels"
            )
        net.set_submodule(
            layer,
            nn.Conv2d(
                in_channels,
                conv.out_channels,
                conv.kernel_size,  # type: ignore[arg-type]  # (an existing Conv2d's own settings)
                conv.stride,  # type: ignore[arg-type]
                conv.padding,  # type: ignore[arg-type]
                conv.dilation,  # type: ignore[arg-type]
                bias=conv.bias is not None,
                padding_mode=conv.padding_mode,
            ),
        )
    return net


def _timm(model: str, in_channels: int, num_classes: int, input_size: int) -> nn.Module:
    import timm

    return _with_image_size(
        timm.create_model,
        "img_size",
        input_size,
        model_name=model,
        pretrained=False,
        num_classes=num_classes,
        in_chans=in_channels,
    )
