"""Where, with which seeds and in which arithmetic work runs: devices, per-item seeds, precision."""

from __future__ import annotations

import hashlib
import platform
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

from . import portable
from .config import DEVICES, PRECISIONS, is_device
from .errors import ParamError


def resolve_device(device: str = "auto") -> torch.device:
    """'auto' (a GPU when there is one), 'cpu', 'cuda' or 'cuda:N'."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not is_device(device):
        raise ParamError(f"device = {device!r}: allowed: {DEVICES}")
    if device == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ParamError(f"device = {device!r}: no CUDA GPU is visible here; use 'auto' or 'cpu'")
    if device != "cuda" and int(device[5:]) >= torch.cuda.device_count():
        raise ParamError(f"device = {device!r}: only {torch.cuda.device_count()} GPU(s) visible")
    return torch.device(device)


def item_seed(seed: int, *index: int) -> int:
    """A well-mixed 63-bit seed for item `index` of a run seeded `seed`.

    Every network, direction or shard draws from its own stream, so results do
    not depend on how work is batched or split between workers.
    """
    return int(np.random.SeedSequence([seed, *index]).generate_state(1, np.uint64)[0] >> 1)


def native_bf16(device) -> bool:
    """Whether `device` computes in bfloat16 natively. A CPU without AVX512-BF16 or AMX (x86)
    or the BF16 extension (Arm) emulates it: on an AVX2-only CPU a bf16 matrix product ran at
    0.9 GFLOP/s against 66 in float32, and LeNet's NADs 11x slower. So does one that has them
    under the portable arithmetic, which holds oneDNN to AVX2 (LeNet's NADs 3.4x slower)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return True  # (the backend's own affair)
    return _cpu_bf16() and not (portable.enabled() and platform.machine() in ("x86_64", "AMD64"))


def _cpu_bf16() -> bool:
    """Whether the CPU's instruction set has bfloat16 arithmetic."""
    x86 = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    if x86 or platform.machine() not in ("aarch64", "arm64"):
        return x86
    try:  # Arm: the kernel lists the extension among the CPU's features
        return " bf16" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def check_precision(mode: str, device) -> None:
    """Refuse, before any compute, a precision the device would only emulate."""
    if mode != "bf16" or native_bf16(device):
        return
    if torch.device(device).type == "cpu" and _cpu_bf16():
        raise ParamError(
            "precision = 'bf16': this CPU has bfloat16 arithmetic, but the portable arithmetic "
            "(nads/portable.py, the same bits on every x86-64 CPU) holds oneDNN to AVX2, where bf16 is "
            "emulated, slower than float32 (3.4x for LeNet's NADs): use precision 'float32', or "
            "NADS_PORTABLE=0 for this CPU's own bf16 (1.1x faster for LeNet's NADs; results then "
            "specific to this CPU)"
        )
    have = "AVX-512 without BF16" if torch.cpu._is_avx512_supported() else torch.backends.cpu.get_cpu_capability()
    raise ParamError(
        f"precision = 'bf16': this CPU has no native bfloat16 (AVX512-BF16 or AMX; it has {have}), so bf16 "
        "would be emulated, several times slower than float32 (11x for LeNet's NADs on an AVX2 CPU): "
        "use precision 'float32' here, bf16 on a GPU or a CPU that has it"
    )


@contextmanager
def precision(mode: str, device: torch.device):
    """Arithmetic for the heavy parts (forward and backward passes) inside the block.

    float32: IEEE float32. On GPUs this turns off TF32 for convolutions, which
      cuDNN otherwise uses by default, so float32 means float32 everywhere.
    tf32: TF32 matrix products and convolutions on GPUs that have it (Ampere
      and later); no effect on CPUs.
    bf16: autocast to bfloat16 (products and convolutions; reductions and
      losses stay float32). Covariances are accumulated in float64 regardless.
    """
    if mode not in PRECISIONS:
        raise ParamError(f"precision = {mode!r}: allowed: {', '.join(PRECISIONS)}")
    device = torch.device(device)
    flags = _tf32_flags() if device.type == "cuda" else []
    saved = [getattr(obj, name) for obj, name, _ in flags]
    for obj, name, values in flags:
        setattr(obj, name, values[mode == "tf32"])
    try:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=mode == "bf16"):
            yield
    finally:
        for (obj, name, _), value in zip(flags, saved):
            setattr(obj, name, value)


def _tf32_flags() -> list:
    """(object, attribute, (off, on)) for TF32 in matrix products and cuDNN convolutions."""
    if hasattr(torch.backends.cudnn, "conv"):  # torch >= 2.9
        return [
            (torch.backends.cuda.matmul, "fp32_precision", ("ieee", "tf32")),
            (torch.backends.cudnn.conv, "fp32_precision", ("ieee", "tf32")),
        ]
    return [
        (torch.backends.cuda.matmul, "allow_tf32", (False, True)),
        (torch.backends.cudnn, "allow_tf32", (False, True)),
    ]


ARCHS = Path(__file__).resolve().parents[1] / "archs"  # the repository's folder for users' model modules


def fingerprint(archs: Path = ARCHS) -> str:
    """The code this process builds and runs networks with: the nads source (every module,
    nads/models included), the user's models under archs/, and the torch, torchvision and
    timm versions. Ray tasks must run what the driver runs, and resumed work must come
    from the same code."""
    h = hashlib.sha256(torch.__version__.encode())
    for package in ("torchvision", "timm"):
        try:
            h.update(f"{package}=={metadata.version(package)}".encode())
        except metadata.PackageNotFoundError:
            h.update(f"no {package}".encode())
    for root in (Path(__file__).parent, archs):
        for path in sorted(root.rglob("*.py")):
            h.update(f"{root.name}/{path.relative_to(root).as_posix()}".encode() + path.read_bytes())
    return h.hexdigest()
