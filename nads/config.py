"""Typed, validated views of params.yaml sections.

Every stage parses its section here before any compute. A bad value stops the
stage with one line naming the key, the value and what is allowed.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from pathlib import Path

import yaml


class ParamError(ValueError):
    """A parameter that cannot be used; the message is one line."""

    def __init__(self, message: str):
        # Messages quote other errors (tarfile, torch...) that may span lines.
        super().__init__(" ".join(str(message).split()))


def _fail(key: str, value, allowed: str):
    raise ParamError(f"{key} = {value!r}: {allowed}")


def _coerce(key: str, value, typ):
    """Check `value` against a field's annotation; return it normalised."""
    origin = typing.get_origin(typ)
    if origin is tuple or origin is list:
        (elem, *_) = typing.get_args(typ)
        if not isinstance(value, (list, tuple)):
            _fail(key, value, f"must be a list of {elem.__name__}")
        items = [_coerce(f"{key}[{i}]", v, elem) for i, v in enumerate(value)]
        return tuple(items)
    if typ is bool:
        if not isinstance(value, bool):
            _fail(key, value, "must be true or false")
        return value
    if typ is int:
        if isinstance(value, bool) or not isinstance(value, int):
            _fail(key, value, "must be an integer")
        return value
    if typ is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            _fail(key, value, "must be a number")
        return float(value)
    if typ is str:
        if not isinstance(value, str):
            _fail(key, value, "must be a string")
        return value
    raise TypeError(f"unsupported parameter type {typ!r} for {key}")


class Section:
    """Base of every params section: parse a mapping, then check values."""

    name: typing.ClassVar[str]

    @classmethod
    def parse(cls, raw):
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            _fail(cls.name, raw, "must be a mapping of parameters")
        hints = typing.get_type_hints(cls)
        known = [f.name for f in dataclasses.fields(cls)]
        for key in raw:
            if key not in known:
                _fail(f"{cls.name}.{key}", raw[key], f"unknown key; allowed keys: {', '.join(known)}")
        values = {k: _coerce(f"{cls.name}.{k}", v, hints[k]) for k, v in raw.items()}
        section = cls(**values)
        section.check()
        return section

    def require(self, key: str, ok: bool, allowed: str) -> None:
        if not ok:
            _fail(f"{self.name}.{key}", getattr(self, key), allowed)

    def check(self) -> None:  # overridden by sections with constraints
        pass

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


@dataclass(frozen=True)
class Synthetic(Section):
    """The distribution D(v) and the Fourier direction grid."""

    name: typing.ClassVar[str] = "synthetic"
    input_shape: tuple[int, ...] = (1, 32, 32)
    epsilon: float = 1.0
    sigma: float = 3.0
    n_train: int = 10_000
    n_test: int = 10_000
    fourier_stride: int = 1
    seed: int = 0

    def check(self) -> None:
        shape = self.input_shape
        self.require("input_shape", len(shape) == 3 and all(d >= 1 for d in shape),
                     "must be three positive integers [C, H, W]")
        self.require("input_shape", shape[1] % 2 == 0 and shape[2] % 2 == 0,
                     "H and W must be even (the Fourier grid has a Nyquist row and column)")
        self.require("epsilon", self.epsilon > 0, "must be > 0 (the margin of the discriminative feature)")
        self.require("sigma", self.sigma >= 0, "must be >= 0 (the noise standard deviation)")
        self.require("n_train", self.n_train >= 2, "must be an integer >= 2")
        self.require("n_test", self.n_test >= 2, "must be an integer >= 2")
        _, h, w = shape
        s = self.fourier_stride
        self.require("fourier_stride", s >= 1 and (h // 2) % s == 0 and (w // 2) % s == 0,
                     f"must be a positive integer dividing H/2 = {h // 2} and W/2 = {w // 2}")
        self.require("seed", self.seed >= 0, "must be an integer >= 0")


@dataclass(frozen=True)
class Nads(Section):
    """NAD estimation, one DVC stage per architecture."""

    name: typing.ClassVar[str] = "nads"
    archs: tuple[str, ...] = ("logreg", "lenet")
    input_shape: tuple[int, ...] = (1, 32, 32)
    n_networks: int = 10_000
    estimator: str = "fd"
    step: float = 100.0
    seed: int = 0
    compare_autograd: bool = True
    device: str = "auto"
    precision: str = "float32"

    def check(self) -> None:
        _check_archs(self)
        self.require("input_shape", len(self.input_shape) == 3 and min(self.input_shape) >= 1,
                     "must be three positive integers [C, H, W]")
        self.require("n_networks", self.n_networks >= 2, "must be an integer >= 2")
        self.require("estimator", self.estimator in ("fd", "autograd"), "allowed: fd, autograd")
        self.require("step", self.step > 0, "must be > 0 (the finite-difference step)")
        self.require("seed", self.seed >= 0, "must be an integer >= 0")
        _check_device(self)
        _check_precision(self)


@dataclass(frozen=True)
class Training(Section):
    """SGD with linear decay to 0, per step; shared by every section that trains."""

    epochs: int = 20
    batch_size: int = 128
    lr: float = 0.5
    momentum: float = 0.0
    weight_decay: float = 0.0
    clip: float = 0.5
    seed: int = 0
    device: str = "auto"
    precision: str = "float32"
    models_per_batch: int = 0

    def check(self) -> None:
        _check_archs(self)
        self.require("epochs", self.epochs >= 1, "must be an integer >= 1")
        self.require("batch_size", self.batch_size >= 1, "must be an integer >= 1")
        self.require("lr", self.lr > 0, "must be > 0")
        self.require("momentum", 0 <= self.momentum < 1, "must be in [0, 1)")
        self.require("weight_decay", self.weight_decay >= 0, "must be >= 0")
        self.require("clip", self.clip >= 0, "must be >= 0 (0 disables gradient clipping)")
        self.require("seed", self.seed >= 0, "must be an integer >= 0")
        self.require("models_per_batch", self.models_per_batch >= 0, "must be >= 0 (0 = chosen for the device)")
        _check_device(self)
        _check_precision(self)

    def schedule(self):
        from .train import Schedule

        return Schedule(self.epochs, self.batch_size, self.lr, self.momentum, self.weight_decay, self.clip, self.seed,
                        self.precision)


@dataclass(frozen=True)
class Sweep(Training):
    """Direction sweeps: one classifier per direction, per architecture and family."""

    name: typing.ClassVar[str] = "sweep"
    archs: tuple[str, ...] = ("logreg", "lenet")
    nad_indices: tuple[int, ...] = (0, 1, 2, 3, 5, 10, 20, 50, 100, 200, 300, 500, 700, 1000)

    def check(self) -> None:
        super().check()
        self.require("nad_indices", len(self.nad_indices) >= 1 and min(self.nad_indices) >= 0,
                     "must be a non-empty list of integers >= 0")


@dataclass(frozen=True)
class Cifar10(Section):
    """Where CIFAR-10 comes from."""

    name: typing.ClassVar[str] = "cifar10"
    source: str = "download"

    def check(self) -> None:
        self.require("source", bool(self.source), "must be 'download' or a path to a local copy")


@dataclass(frozen=True)
class CifarTraining(Training):
    """Training on CIFAR-10 (the paper's recipe: momentum 0.9, weight decay 5e-4)."""

    archs: tuple[str, ...] = ("lenet",)
    n_train: int = 0
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4

    def check(self) -> None:
        super().check()
        self.require("n_train", self.n_train >= 0, "must be >= 0 (0 = the whole training set)")


@dataclass(frozen=True)
class Poison(CifarTraining):
    """CIFAR-10 with a NAD carrier per class in the training set."""

    name: typing.ClassVar[str] = "poison"
    nad_indices: tuple[int, ...] = (0, 10, 100, 1000)
    epsilon: float = 0.05

    def check(self) -> None:
        super().check()
        self.require("nad_indices", len(self.nad_indices) >= 1 and min(self.nad_indices) >= 0,
                     "must be a non-empty list of integers >= 0")
        self.require("epsilon", self.epsilon > 0, "must be > 0 (the carrier's amplitude, pixels in [0, 1])")


@dataclass(frozen=True)
class Flip(CifarTraining):
    """CIFAR-10 re-expressed in the reversed NAD basis, against the original."""

    name: typing.ClassVar[str] = "flip"


@dataclass(frozen=True)
class Ray(Section):
    """The Ray cluster used when `executor: ray`."""

    name: typing.ClassVar[str] = "ray"
    address: str = "auto"
    max_retries: int = 3

    def check(self) -> None:
        self.require("address", bool(self.address), "must be 'auto' or a cluster address such as "
                     "'ray://head:10001' or 'head:6379'")
        self.require("max_retries", self.max_retries >= 0, "must be an integer >= 0 (retries of a failed task)")


def _check_archs(section) -> None:
    from .models import check_arch  # torch is only imported by sections that need it

    section.require("archs", len(section.archs) >= 1, "must list at least one architecture")
    for arch in section.archs:
        try:
            check_arch(arch)
        except ValueError as e:
            raise ParamError(f"{section.name}.archs: {e}") from None


DEVICES = "auto, cpu, cuda, cuda:N"
PRECISIONS = ("float32", "tf32", "bf16")
EXECUTORS = ("local", "ray")


def is_device(name: str) -> bool:
    """A well-formed `device` value (whether it exists here is for nads.runtime to say)."""
    return name in ("auto", "cpu", "cuda") or (name.startswith("cuda:") and name[5:].isdigit())


def _check_device(section) -> None:
    section.require("device", is_device(section.device), f"allowed: {DEVICES}")


def _check_precision(section) -> None:
    section.require("precision", section.precision in PRECISIONS,
                    f"allowed: {', '.join(PRECISIONS)} (reduced precision: see README)")


SECTIONS: dict[str, type[Section]] = {cls.name: cls for cls in (Synthetic, Nads, Sweep, Cifar10, Poison, Flip, Ray)}
TOP_LEVEL = {"profile", "executor"}


def read_params(path="params.yaml") -> dict:
    path = Path(path)
    if not path.is_file():
        raise ParamError(f"{path}: file not found; run from the repository root, where params.yaml lives")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ParamError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise ParamError(f"{path}: must be a mapping of sections, got {type(raw).__name__}")
    return raw


def load(section: str, path="params.yaml"):
    """The parsed, checked section `section` of the params file."""
    raw = read_params(path)
    if section not in raw:
        raise ParamError(f"{section}: section missing from {path}")
    return SECTIONS[section].parse(raw[section])


def profile(path="params.yaml") -> str:
    value = read_params(path).get("profile", "custom")
    if not isinstance(value, str) or not value:
        _fail("profile", value, "must be a non-empty string (quick, paper, or a name of yours)")
    return value


def executor_kind(path="params.yaml") -> str:
    value = read_params(path).get("executor", "local")
    if value not in EXECUTORS:
        _fail("executor", value, "allowed: local (this machine), ray (a Ray cluster; see the ray section)")
    return value


def executor(path="params.yaml"):
    """The executor the params choose (top-level `executor`, and the `ray` section)."""
    from .executor import make_executor

    raw = read_params(path).get("ray")
    ray = Ray.parse(raw)
    return make_executor(executor_kind(path), ray.address, ray.max_retries)


def check_all(path="params.yaml") -> dict:
    """Validate every section of the file; unknown sections are errors too."""
    raw = read_params(path)
    allowed = sorted(set(SECTIONS) | TOP_LEVEL)
    for key in raw:
        if key not in allowed:
            _fail(key, raw[key], f"unknown section; allowed: {', '.join(allowed)}")
    profile(path)
    executor(path)
    sections = {name: load(name, path) for name in SECTIONS if name in raw}
    for name in ("sweep", "poison", "flip"):
        if name in sections and "nads" in sections:
            check_has_nads(sections[name], sections["nads"])
    return sections


def check_has_nads(section: Section, nads: "Nads") -> None:
    """Sections that use an architecture's NADs need them estimated (on 1x32x32 inputs)."""
    missing = [a for a in section.archs if a not in nads.archs]
    if missing:
        _fail(f"{section.name}.archs", list(section.archs), f"{', '.join(missing)} not in nads.archs; "
              f"this stage needs their NADs: add them to nads.archs")
