"""Typed, validated views of params.yaml.

Every stage parses and checks the whole file here, once, before any compute.
A bad value stops the stage with one line naming the key, the value and what
is allowed. This module imports only nads.errors, and no torch: architecture
names and published results are checked by check-params and by the stages.
"""

from __future__ import annotations

import dataclasses
import math
import reprlib
import typing
from dataclasses import dataclass
from pathlib import Path

from .errors import ParamError

_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict, _REPR.maxstring, _REPR.maxother = 3, 8, 8, 60, 60
SEED_LIMIT = 2**32  # seeds are 0 <= seed < 2**32: any stream mixes them with indices (runtime.item_seed)


def _fail(key: str, value, allowed: str):
    value = list(value) if isinstance(value, tuple) else value  # as params.yaml writes it
    # Bounded: a YAML alias tree can be exponentially large when written out.
    raise ParamError(f"{key} = {_REPR.repr(value)}: {allowed}")


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
        if not -(2**63) <= value < 2**63:
            _fail(key, value, "must be an integer that fits in 64 bits")
        return value
    if typ is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            _fail(key, value, "must be a number")
        try:
            number = float(value)
        except OverflowError:  # an integer beyond float's range
            number = math.inf
        if not math.isfinite(number):
            _fail(key, value, "must be a finite number")
        return number
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
        values = dataclasses.asdict(self)  # type: ignore[call-overload]  # (every Section subclass is a dataclass)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}


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
        self.require(
            "input_shape", len(shape) == 3 and all(d >= 1 for d in shape), "must be three positive integers [C, H, W]"
        )
        self.require(
            "input_shape",
            shape[1] % 2 == 0 and shape[2] % 2 == 0,
            "H and W must be even (the Fourier grid has a Nyquist row and column)",
        )
        self.require("epsilon", self.epsilon > 0, "must be > 0 (the margin of the discriminative feature)")
        self.require("sigma", self.sigma >= 0, "must be >= 0 (the noise standard deviation)")
        self.require("n_train", self.n_train >= 2, "must be an integer >= 2")
        self.require("n_test", self.n_test >= 2, "must be an integer >= 2")
        _, h, w = shape
        s = self.fourier_stride
        self.require(
            "fourier_stride",
            s >= 1 and (h // 2) % s == 0 and (w // 2) % s == 0,
            f"must be a positive integer dividing H/2 = {h // 2} and W/2 = {w // 2}",
        )
        self.require("seed", 0 <= self.seed < SEED_LIMIT, "must be an integer, 0 <= seed < 2**32")


@dataclass(frozen=True)
class Nads(Section):
    """NAD estimation, one DVC stage per architecture."""

    name: typing.ClassVar[str] = "nads"
    input_shape: tuple[int, ...] = (1, 32, 32)
    n_networks: int = 10_000
    estimator: str = "fd"
    step: float = 100.0
    seed: int = 0
    compare_autograd: bool = True
    precision: str = "float32"
    forward: str = "auto"

    def check(self) -> None:
        self.require(
            "input_shape",
            len(self.input_shape) == 3 and min(self.input_shape) >= 1,
            "must be three positive integers [C, H, W]",
        )
        self.require("n_networks", self.n_networks >= 2, "must be an integer >= 2")
        self.require("estimator", self.estimator in ESTIMATORS, f"allowed: {', '.join(ESTIMATORS)}")
        self.require("step", self.step > 0, "must be > 0 (the finite-difference step)")
        self.require("seed", 0 <= self.seed < SEED_LIMIT, "must be an integer, 0 <= seed < 2**32")
        _check_precision(self)
        self.require("forward", self.forward in FORWARDS, f"allowed: {', '.join(FORWARDS)}")


@dataclass(frozen=True)
class Schedule:
    """SGD with linear decay of the learning rate to 0, per step (nads.train runs it)."""

    epochs: int = 20
    batch_size: int = 128
    lr: float = 0.5
    momentum: float = 0.0
    weight_decay: float = 0.0
    clip: float = 0.5  # max gradient norm per model; <= 0 disables clipping
    seed: int = 0  # batch order (shared by all models) and model init
    precision: str = "float32"  # float32 | tf32 | bf16 (nads.runtime.precision)

    def steps_per_epoch(self, n: int) -> int:
        return -(-n // self.batch_size)

    def lr_at(self, step: int, total: int) -> float:
        return self.lr * (1.0 - step / total)


@dataclass(frozen=True)
class Training(Section, Schedule):
    """A section that trains (sweep, poison, flip): its schedule, checked."""

    def check(self) -> None:
        self.require("epochs", self.epochs >= 1, "must be an integer >= 1")
        self.require("batch_size", self.batch_size >= 1, "must be an integer >= 1")
        self.require("lr", self.lr > 0, "must be > 0")
        self.require("momentum", 0 <= self.momentum < 1, "must be in [0, 1)")
        self.require("weight_decay", self.weight_decay >= 0, "must be >= 0")
        self.require("clip", self.clip >= 0, "must be >= 0 (0 disables gradient clipping)")
        self.require("seed", 0 <= self.seed < SEED_LIMIT, "must be an integer, 0 <= seed < 2**32")
        _check_precision(self)

    def schedule(self) -> Schedule:
        """The schedule alone (what training needs, without the section's other fields)."""
        return Schedule(**{f.name: getattr(self, f.name) for f in dataclasses.fields(Schedule)})


@dataclass(frozen=True)
class Sweep(Training):
    """Direction sweeps: one classifier per direction, per architecture and family."""

    name: typing.ClassVar[str] = "sweep"


@dataclass(frozen=True)
class NadSweep(Section):
    """Which NADs the NAD sweeps train on, and on how many seeds (a section of its own:
    the Fourier sweep does not use it)."""

    name: typing.ClassVar[str] = "nad_sweep"
    indices: tuple[int, ...] = (0, 1, 2, 3, 5, 10, 20, 50, 100, 200, 300, 500, 700, 1000)
    seeds: int = 1  # replicate r: noise bank of synthetic.seed + r, initialisation and order of sweep.seed + r

    def check(self) -> None:
        self.require(
            "indices", len(self.indices) >= 1 and min(self.indices) >= 0, "must be a non-empty list of integers >= 0"
        )
        self.require("seeds", self.seeds >= 1, "must be an integer >= 1")


@dataclass(frozen=True)
class CifarTraining(Training):
    """Training on CIFAR-10 (the paper's recipe: momentum 0.9, weight decay 5e-4)."""

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
        self.require(
            "nad_indices",
            len(self.nad_indices) >= 1 and min(self.nad_indices) >= 0,
            "must be a non-empty list of integers >= 0",
        )
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
        self.require(
            "address",
            self.address == "auto" or ray_endpoint(self.address) is not None,
            "must be 'auto' or a cluster address such as 'ray://head:10001' or 'head:6379'",
        )
        self.require("max_retries", self.max_retries >= 0, "must be an integer >= 0 (retries of a failed task)")


def ray_endpoint(address: str) -> tuple[str, int] | None:
    """(host, port) of a Ray cluster address 'host:port' or 'ray://host:port'; None if it is not one."""
    rest = address.removeprefix("ray://")
    host, sep, port = rest.rpartition(":")
    host = host.strip("[]")  # [::1]:6379
    if not (sep and host and port.isdigit() and 0 < int(port) < 65536) or any(c in host for c in "/@ "):
        return None
    return host, int(port)


@dataclass(frozen=True)
class Archs(Section):
    """Which architectures each family of stages runs. No result depends on these lists:
    adding an architecture runs its stages and reruns no other."""

    name: typing.ClassVar[str] = "archs"
    nads: tuple[str, ...] = ("logreg", "lenet")
    sweep: tuple[str, ...] = ("logreg", "lenet")
    poison: tuple[str, ...] = ("lenet",)
    flip: tuple[str, ...] = ("lenet",)
    compare: tuple[str, ...] = ("logreg", "lenet")  # against the paper's published results ([] = none)

    def check(self) -> None:
        # Whether the names can be built is checked by check-params and by each stage
        # (nads.cli, stages.common): this module stays free of torch.
        for stage in ("nads", "sweep"):  # ([] for poison and flip: no CIFAR-10 training, as profiles/atlas.yaml)
            self.require(stage, len(getattr(self, stage)) >= 1, "must list at least one architecture")


DEVICES = "auto, cpu, cuda, cuda:N"
ESTIMATORS = ("fd", "autograd")
PRECISIONS = ("float32", "tf32", "bf16")
# How the finite-difference forward passes are computed (nads.estimate.Engine): speed, and the
# last bits of the NADs. auto: local on a CPU, eager on a GPU.
FORWARDS = ("auto", "local", "eager", "channels_last", "compiled", "compiled_channels_last")
EXECUTORS = ("local", "ray")


def is_device(name: str) -> bool:
    """A well-formed `device` value (whether it exists here is for nads.runtime to say)."""
    return name in ("auto", "cpu", "cuda") or (name.startswith("cuda:") and name[5:].isdigit())


def _check_precision(section) -> None:
    section.require(
        "precision",
        section.precision in PRECISIONS,
        f"allowed: {', '.join(PRECISIONS)} (reduced precision: see README)",
    )


SECTIONS: dict[str, type[Section]] = {
    cls.name: cls for cls in (Archs, Synthetic, Nads, Sweep, NadSweep, Poison, Flip, Ray)
}
TOP_LEVEL = {"profile", "executor", "device", "models_per_batch"}


def parse_yaml(text: str, path) -> dict:
    """params.yaml as DVC reads it: ruamel.yaml's YAML 1.2 (`5e-4` is a number, `yes`/`no`
    are strings; PyYAML's YAML 1.1 reads both the other way round)."""
    from ruamel.yaml import YAML, YAMLError

    try:
        raw = YAML(typ="safe", pure=True).load(text)
    except YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ParamError(f"{path}: not valid YAML ({where}{getattr(e, 'problem', None) or e})") from None
    if not isinstance(raw, dict):
        raise ParamError(f"{path}: must be a mapping of sections, got {type(raw).__name__}")
    return raw


def read_params(path="params.yaml") -> dict:
    path = Path(path)
    if not path.is_file():
        raise ParamError(f"{path}: file not found; run from the repository root, where params.yaml lives")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        line = e.object[: e.start].count(b"\n") + 1
        raise ParamError(f"{path}: not UTF-8 text (line {line}, byte {e.start}); save it as UTF-8") from None
    return parse_yaml(text, path)


@dataclass(frozen=True)
class Params:
    """The whole params file, checked: every section parsed, cross-section rules held."""

    raw: dict
    profile: str
    executor: str  # where the heavy work runs, with device and models_per_batch:
    device: str  # none of the three changes a result
    models_per_batch: int
    sections: dict

    def __getitem__(self, name: str):
        if name not in self.sections:
            raise ParamError(f"{name}: section missing from params.yaml")
        return self.sections[name]


def load(path="params.yaml") -> Params:
    """Parse and check the whole params file: unknown sections and keys, every value,
    and the rules between sections. Stages call this once, before any compute."""
    raw = read_params(path)
    allowed = sorted(set(SECTIONS) | TOP_LEVEL)
    for key in raw:
        if key not in allowed:
            _fail(key, raw[key], f"unknown section; allowed: {', '.join(allowed)}")
    profile = raw.get("profile", "custom")
    if not isinstance(profile, str) or not profile:
        _fail("profile", profile, "must be a non-empty string (quick, paper, or a name of yours)")
    executor = raw.get("executor", "local")
    if executor not in EXECUTORS:
        _fail("executor", executor, "allowed: local (this machine), ray (a Ray cluster; see the ray section)")
    device = raw.get("device", "auto")
    if not isinstance(device, str) or not is_device(device):
        _fail("device", device, f"allowed: {DEVICES}")
    batch = raw.get("models_per_batch", 0)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 0:
        _fail("models_per_batch", batch, "must be an integer >= 0 (0 = chosen for the device)")
    sections = {
        name: cls.parse(raw.get(name)) for name, cls in SECTIONS.items() if name in raw or name in ("ray", "archs")
    }
    params = Params(raw, profile, executor, device, batch, sections)
    _check_between(params)
    return params


# Stages that use NADs, and the input shape their NADs must have (None: the synthetic data's).
NAD_USERS = {"sweep": None, "poison": (1, 32, 32), "flip": (1, 32, 32), "compare": (1, 32, 32)}


def _check_between(params: Params) -> None:
    """Rules that involve two sections; each stage would otherwise fail late, after computing."""
    archs = params["archs"]
    for name, shape in NAD_USERS.items():
        needs = ("nads", "sweep") if name == "compare" else ("nads",)  # compare: NADs and both sweeps
        for other in needs:
            missing = [a for a in getattr(archs, name) if a not in getattr(archs, other)]
            if missing:
                _fail(
                    f"archs.{name}",
                    list(getattr(archs, name)),
                    f"{', '.join(missing)} not in archs.{other}; "
                    f"this stage needs their results: add them to archs.{other}",
                )
        if "nads" not in params.sections:
            continue
        if shape is None and "synthetic" in params.sections:
            shape = params["synthetic"].input_shape
        nads = params["nads"]
        if shape is not None and getattr(archs, name) and tuple(nads.input_shape) != tuple(shape):
            why = {
                "sweep": "the sweep trains on D(u_i) for NADs u_i of the synthetic data's shape "
                "(synthetic.input_shape)",
                "compare": "the published NADs are 1x32x32",
            }.get(name, f"{name} puts 1x32x32 NADs into CIFAR-10 images")
            _fail("nads.input_shape", list(nads.input_shape), f"must be {list(shape)}: {why}")
