"""Architecture registry: one name -> one constructor (CIFAR-style, 32x32 inputs).

Every constructor takes (in_channels, num_classes, input_size). `get_model` also
accepts "package.module:callable" for a user's own nn.Module factory, called
with the same keyword arguments, and "torchvision:<name>" or "timm:<name>" for
any classifier of those libraries (see `_zoo_factory`).
"""
from __future__ import annotations

import importlib
import re
from difflib import get_close_matches
from functools import partial
from typing import Callable

import torch
import torch.autograd.forward_ad as fwAD
import torch.nn as nn
import torch.nn.functional as F

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register(name: str, factory: Callable[..., nn.Module]) -> None:
    _REGISTRY[name] = factory


def list_models() -> list[str]:
    return sorted(_REGISTRY)


# "package.module:callable", each part a Python identifier. Stages use the arch
# name as a folder name under results/, so an accepted name must never be able to
# hold a path separator or '..' (ASCII and fullmatch: no look-alikes, no trailing newline).
_IMPORT_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*", re.ASCII)
_IMPORT_FORM = "'package.module:callable' (Python identifiers joined by dots, no slashes or spaces)"


def _one_line(e: BaseException) -> str:
    """'Type: first line of the message', for errors reported on one line."""
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__


def _factory(name: str) -> Callable[..., nn.Module]:
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name.partition(":")[0] in _ZOOS:   # before the import path, which these names also match
        return _zoo_factory(name)
    if ":" not in name:
        close = get_close_matches(name, list_models())
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        raise ValueError(f"arch = {name!r}: unknown architecture; {hint}allowed: {', '.join(list_models())}, "
                         f"or {_IMPORT_FORM} for your own model")
    if name.startswith("."):
        raise ValueError(f"arch = {name!r}: relative module paths are not allowed; "
                         "use an absolute import path such as mypkg.models:build")
    if not _IMPORT_PATH.fullmatch(name):
        raise ValueError(f"arch = {name!r}: not a valid import path; use {_IMPORT_FORM}")
    module_name, _, attr = name.partition(":")
    try:  # the user's module runs arbitrary code on import: any error is theirs to fix
        factory = getattr(importlib.import_module(module_name), attr)
    except Exception as e:
        raise ValueError(f"arch = {name!r}: cannot load {attr!r} from module {module_name!r} ({_one_line(e)})") from None
    if not callable(factory):
        raise ValueError(f"arch = {name!r}: {attr!r} is {type(factory).__name__}, not a callable returning a model")
    return factory


# ---------------------------------------------------------------- torchvision and timm models
# "torchvision:<name>" / "timm:<name>": that library's classifier, default initialisation
# (no pretrained weights), adapted to the input. The name is a folder name under results/
# and part of DVC stage names, so only word characters (which every model name of both
# libraries is; timm's ".tag" suffixes name pretrained weights, never used here).
_ZOOS = ("torchvision", "timm")
_ZOO_NAME = re.compile(r"\w+", re.ASCII)


def _zoo_factory(name: str) -> Callable[..., nn.Module]:
    zoo, _, model = name.partition(":")
    if not _ZOO_NAME.fullmatch(model):
        raise ValueError(f"arch = {name!r}: not a valid {zoo} model name; use {zoo}:<name> (letters, digits, "
                         f"underscores), e.g. {'torchvision:resnet18' if zoo == 'torchvision' else 'timm:resnet10t'}")
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
            raise ValueError(f"torchvision:{model}: its first convolution {layer} takes {conv.in_channels} "
                             f"channels in {conv.groups} groups, not the RGB image; cannot adapt it to "
                             f"{in_channels} channels")
        net.set_submodule(layer, nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                                           conv.padding, conv.dilation, bias=conv.bias is not None,
                                           padding_mode=conv.padding_mode))
    return net


def _timm(model: str, in_channels: int, num_classes: int, input_size: int) -> nn.Module:
    import timm

    return _with_image_size(timm.create_model, "img_size", input_size, model_name=model, pretrained=False,
                            num_classes=num_classes, in_chans=in_channels)


def check_arch(name: str) -> None:
    """Raise get_model's ValueError for a name that cannot be built, without building."""
    _factory(name)


def _as_module(name: str, model) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise ValueError(f"arch = {name!r}: the callable returned {type(model).__name__}, not a torch.nn.Module")
    return model


def get_model(name: str, in_channels: int = 1, num_classes: int = 1, input_size: int = 32) -> nn.Module:
    """A freshly initialised model (PyTorch's default initialisation)."""
    return _as_module(name, _factory(name)(in_channels=in_channels, num_classes=num_classes, input_size=input_size))


def probe_model(name: str, in_channels: int, num_classes: int, input_size: int, batch: int = 2) -> None:
    """Raise a one-line ValueError unless `name` builds a model mapping standard-normal
    (batch, in_channels, input_size, input_size) inputs to finite (batch, num_classes)
    outputs. Stages call it before any long compute, so that a model unfit for their
    data fails here, naming the architecture, not deep in training or a worker."""
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
            raise fail(f"building it with in_channels={in_channels}, num_classes={num_classes}, "
                       f"input_size={input_size} raised {_one_line(e)}") from None
        model = _as_module(name, model).eval()
        try:
            with torch.no_grad():
                out = model(torch.randn(batch, *shape))
        except Exception as e:
            zoo = name.partition(":")[0]
            hint = f" ({zoo} models made for larger images may not fit these)" if zoo in _ZOOS else ""
            raise fail(f"it cannot take inputs of shape (C, H, W) = {shape}{hint}: its forward raised "
                       f"{_one_line(e)}") from None
    if not isinstance(out, torch.Tensor):
        raise fail(f"its forward returns {type(out).__name__}, not {expected}")
    if tuple(out.shape) != (batch, num_classes):
        raise fail(f"its forward returns shape {tuple(out.shape)} for inputs of shape (C, H, W) = {shape}; "
                   f"expected {expected}")
    bad = int((~torch.isfinite(out)).sum())
    if bad:
        raise fail(f"{bad} of its {out.numel()} outputs are NaN or inf at initialisation "
                   f"(standard-normal inputs of shape (C, H, W) = {shape})")


class MaxPool2x2(nn.Module):
    """Exactly F.max_pool2d(x, 2), gradient included (NaN windows aside); faster on a CPU.

    Four strided maxima instead of max_pool2d, whose CPU forward is ~5-10x
    slower (it computes int64 argmax indices even under no_grad, and runs one
    window at a time on contiguous maps). Plain autograd on a CPU uses
    `_Max2x2`: a LeNet training step 1.3x faster, VGG-11's no slower
    (benchmarks/ablate_max_pool.py). torch.func transforms and forward-mode AD
    get max_pool2d.
    """

    def forward(self, x):
        if not (torch.is_grad_enabled() and x.requires_grad):
            return _max4(x)
        if x.device.type == "cpu" and not _transformed(x):
            return _Max2x2.apply(x)
        return F.max_pool2d(x, 2)


def _transformed(x) -> bool:
    """Under torch.func (vmap, grad, ...) or forward-mode AD, which _Max2x2 does not implement."""
    return torch._C._are_functorch_transforms_active() or fwAD.unpack_dual(x).tangent is not None


def _max4(x, winners: bool = False):
    """The 2x2 maxima of x (floor mode) [and which of each window's four won].

    Winners follow max_pool2d's scan (00, 01, 10, 11): the first maximum wins.
    max_pool2d also lets a NaN win; testing for NaN costs ~10 % of a LeNet
    training step here, and only diverged training (recorded as such) has any."""
    h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    x00, x01, x10, x11 = (x[..., i:h:2, j:w:2] for i in (0, 1) for j in (0, 1))
    top, bottom = torch.maximum(x00, x01), torch.maximum(x10, x11)
    out = torch.maximum(top, bottom)
    if not winners:
        return out
    return out, tuple(b > a for a, b in ((x00, x01), (x10, x11), (top, bottom)))


class _Max2x2(torch.autograd.Function):
    """max_pool2d's gradient routing: the first maximum of a window in scan
    order (00, 01, 10, 11) takes the gradient; three bool maps remember it."""

    @staticmethod
    def forward(ctx, x):
        out, wins = _max4(x, winners=True)
        ctx.shape = x.shape
        ctx.save_for_backward(*wins)
        return out

    @staticmethod
    def backward(ctx, g):
        right_top, right_bottom, bottom = ctx.saved_tensors
        top = ~bottom
        h, w = g.shape[-2] * 2, g.shape[-1] * 2
        gx = g.new_zeros(ctx.shape) if ctx.shape[-2:] != (h, w) else g.new_empty(ctx.shape)
        # Multiplying by a bool mask: ~5x faster than torch.where on CPUs (not
        # vectorised there); differs from max_pool2d only for inf/NaN gradients.
        for (i, j), won in zip(((0, 0), (0, 1), (1, 0), (1, 1)),
                               (top & ~right_top, top & right_top, bottom & ~right_bottom, bottom & right_bottom)):
            gx[..., i:h:2, j:w:2] = g * won
        return gx


def _need(ok: bool, arch: str, input_size: int, minimum: int) -> None:
    if not ok:
        raise ValueError(f"input_size = {input_size}: {arch} needs inputs of at least {minimum}x{minimum}")


# ---------------------------------------------------------------- logistic regression
class LogReg(nn.Module):
    def __init__(self, in_channels=1, num_classes=1, input_size=32):
        super().__init__()
        self.fc = nn.Linear(in_channels * input_size * input_size, num_classes)

    def forward(self, x):
        return self.fc(x.flatten(1))


# ---------------------------------------------------------------- LeNet
class LeNet(nn.Module):
    """LeNet-5 as in the paper. pool=False removes both poolings (convolutions
    padded to keep the resolution); the first fully connected layer widens."""

    def __init__(self, in_channels=1, num_classes=1, input_size=32, pool=True):
        super().__init__()
        pad = 0 if pool else 2
        self.conv1 = nn.Conv2d(in_channels, 6, 5, padding=pad)
        self.conv2 = nn.Conv2d(6, 16, 5, padding=pad)
        self.pool = MaxPool2x2() if pool else nn.Identity()
        side = ((input_size - 4) // 2 - 4) // 2 if pool else input_size
        _need(side >= 1, "lenet", input_size, 16)
        self.fc1 = nn.Linear(16 * side * side, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x):
        # Pool, then ReLU: the same function (ReLU is monotone, so it commutes
        # with max), on 4x fewer values; NAD estimation runs this 2D times per network.
        x = F.relu(self.pool(self.conv1(x)))
        x = F.relu(self.pool(self.conv2(x)))
        x = F.relu(self.fc1(x.flatten(1)))
        return self.fc3(F.relu(self.fc2(x)))


# ---------------------------------------------------------------- VGG-11 with batch norm
class VGG11BN(nn.Module):
    CFG = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")

    def __init__(self, in_channels=1, num_classes=1, input_size=32, pool=True):
        super().__init__()
        layers, c, side = [], in_channels, input_size
        for v in self.CFG:
            if v == "M":
                if pool:
                    layers.append(MaxPool2x2())
                    side //= 2
            else:
                layers += [nn.Conv2d(c, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
                c = v
        _need(side >= 1, "vgg11_bn", input_size, 32)
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(c * side * side, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


# ---------------------------------------------------------------- ResNet-18
class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet18(nn.Module):
    def __init__(self, in_channels=1, num_classes=1, input_size=32, pool=True):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        blocks, c = [], 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            stride = stride if pool else 1
            blocks += [BasicBlock(c, cout, stride), BasicBlock(cout, cout, 1)]
            c = cout
        self.layers = nn.Sequential(*blocks)
        self.pool = pool
        self.linear = nn.Linear(c if pool else c * input_size * input_size, num_classes)

    def forward(self, x):
        out = self.layers(F.relu(self.bn1(self.conv1(x))))
        out = F.adaptive_avg_pool2d(out, 1) if self.pool else out
        return self.linear(out.flatten(1))


# ---------------------------------------------------------------- DenseNet-121
class Bottleneck(nn.Module):
    def __init__(self, cin, growth):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, 4 * growth, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(4 * growth)
        self.conv2 = nn.Conv2d(4 * growth, growth, 3, padding=1, bias=False)

    def forward(self, x):
        out = self.conv2(F.relu(self.bn2(self.conv1(F.relu(self.bn1(x))))))
        return torch.cat([out, x], 1)


class Transition(nn.Module):
    def __init__(self, cin, cout, pool):
        super().__init__()
        self.bn = nn.BatchNorm2d(cin)
        self.conv = nn.Conv2d(cin, cout, 1, bias=False)
        self.pool = nn.AvgPool2d(2) if pool else nn.Identity()

    def forward(self, x):
        return self.pool(self.conv(F.relu(self.bn(x))))


class DenseNet121(nn.Module):
    def __init__(self, in_channels=1, num_classes=1, input_size=32, pool=True, growth=32, blocks=(6, 12, 24, 16)):
        super().__init__()
        c = 2 * growth
        self.conv1 = nn.Conv2d(in_channels, c, 3, padding=1, bias=False)
        layers = []
        for i, n in enumerate(blocks):
            for _ in range(n):
                layers.append(Bottleneck(c, growth))
                c += growth
            if i < len(blocks) - 1:
                layers.append(Transition(c, c // 2, pool))
                c //= 2
        self.dense = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(c)
        self.pool = pool
        self.linear = nn.Linear(c if pool else c * input_size * input_size, num_classes)

    def forward(self, x):
        out = F.relu(self.bn(self.dense(self.conv1(x))))
        out = F.adaptive_avg_pool2d(out, 1) if self.pool else out
        return self.linear(out.flatten(1))


# ---------------------------------------------------------------- the atlas: families the paper did not study
# CIFAR-scale and small enough for NADs and a Fourier sweep on a 2-core CPU (profiles/atlas.yaml).
# Each keeps what defines its family, which is what could bias its directions: a patch-p
# stem (a linear map of non-overlapping p x p patches, stride p) in the transformer and the
# MLP-Mixer, ConvNeXt's 4x4 patchify stem and strided downsampling, 7x7 depthwise
# convolutions and layer scale (1e-6 at initialisation, so its blocks start near identity).
class ChannelsLastNorm(nn.LayerNorm):
    """LayerNorm over the channels of an (N, C, H, W) map (ConvNeXt's channels_first norm)."""

    def forward(self, x):
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def _mlp(dim: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))


class PatchTokens(nn.Module):
    """Non-overlapping p x p patches, each mapped linearly to `dim` features: (N, tokens, dim)."""

    def __init__(self, in_channels: int, dim: int, patch: int, input_size: int, arch: str):
        super().__init__()
        if input_size % patch:
            raise ValueError(f"input_size = {input_size}: {arch} needs a multiple of its patch size {patch}")
        self.proj = nn.Conv2d(in_channels, dim, patch, stride=patch)
        self.tokens = (input_size // patch) ** 2

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    # Written out (not scaled_dot_product_attention) so that it runs under torch.func.vmap
    # and forward-mode AD on every backend the project trains on.
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads, self.qkv, self.proj = heads, nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x):
        n, t, d = x.shape
        q, k, v = self.qkv(x).reshape(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attn = torch.softmax(q @ k.transpose(-2, -1) * (d // self.heads) ** -0.5, dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(n, t, d))


class TransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: int):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), Attention(dim, heads)
        self.norm2, self.mlp = nn.LayerNorm(dim), _mlp(dim, mlp_ratio * dim)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    """A vision transformer: patch-p tokens with learned position embeddings (std 0.02, as
    timm), pre-norm blocks, the tokens' mean into a linear head (no class token)."""

    def __init__(self, in_channels=1, num_classes=1, input_size=32, patch=4, dim=48, depth=2, heads=3,
                 mlp_ratio=2):
        super().__init__()
        self.patches = PatchTokens(in_channels, dim, patch, input_size, f"vit_p{patch}")
        self.pos = nn.Parameter(0.02 * torch.randn(1, self.patches.tokens, dim))
        self.blocks = nn.Sequential(*(TransformerBlock(dim, heads, mlp_ratio) for _ in range(depth)))
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, num_classes)

    def forward(self, x):
        x = self.blocks(self.patches(x) + self.pos)
        return self.head(self.norm(x).mean(1))


class MixerBlock(nn.Module):
    def __init__(self, tokens: int, dim: int, token_hidden: int, channel_hidden: int):
        super().__init__()
        self.norm1, self.token_mlp = nn.LayerNorm(dim), _mlp(tokens, token_hidden)
        self.norm2, self.channel_mlp = nn.LayerNorm(dim), _mlp(dim, channel_hidden)

    def forward(self, x):
        x = x + self.token_mlp(self.norm1(x).transpose(1, 2)).transpose(1, 2)
        return x + self.channel_mlp(self.norm2(x))


class Mixer(nn.Module):
    """An MLP-Mixer: patch-p tokens, blocks that mix across tokens then across channels."""

    def __init__(self, in_channels=1, num_classes=1, input_size=32, patch=4, dim=48, depth=2):
        super().__init__()
        self.patches = PatchTokens(in_channels, dim, patch, input_size, f"mixer_p{patch}")
        t = self.patches.tokens
        self.blocks = nn.Sequential(*(MixerBlock(t, dim, t, 2 * dim) for _ in range(depth)))
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, num_classes)

    def forward(self, x):
        return self.head(self.norm(self.blocks(self.patches(x))).mean(1))


class ConvNeXtBlock(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.dw = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm, self.mlp = nn.LayerNorm(dim), _mlp(dim, 4 * dim)
        self.scale = nn.Parameter(torch.full((dim,), 1e-6))

    def forward(self, x):
        y = self.mlp(self.norm(self.dw(x).permute(0, 2, 3, 1))) * self.scale
        return x + y.permute(0, 3, 1, 2)


class ConvNeXt(nn.Module):
    """A ConvNeXt at CIFAR scale: ConvNeXt's 4x4 patchify stem (stride 4: 8x8 maps), two stages
    of one block each, separated by a norm and a 2x2 stride-2 convolution; global mean, norm, head."""

    def __init__(self, in_channels=1, num_classes=1, input_size=32, dims=(48, 96)):
        super().__init__()
        _need(input_size >= 8, "convnext_cifar", input_size, 8)
        layers = [nn.Conv2d(in_channels, dims[0], 4, stride=4), ChannelsLastNorm(dims[0])]
        for i, d in enumerate(dims):
            if i:
                layers += [ChannelsLastNorm(dims[i - 1]), nn.Conv2d(dims[i - 1], d, 2, stride=2)]
            layers.append(ConvNeXtBlock(d))
        self.features = nn.Sequential(*layers)
        self.norm, self.head = nn.LayerNorm(dims[-1]), nn.Linear(dims[-1], num_classes)

    def forward(self, x):
        return self.head(self.norm(self.features(x).mean((2, 3))))


register("logreg", LogReg)
for _name, _cls in (("lenet", LeNet), ("vgg11_bn", VGG11BN), ("resnet18", ResNet18), ("densenet121", DenseNet121)):
    register(_name, _cls)
    register(f"{_name}_nopool", partial(_cls, pool=False))
register("vit_p4", ViT)
register("mixer_p4", Mixer)
register("convnext_cifar", ConvNeXt)
