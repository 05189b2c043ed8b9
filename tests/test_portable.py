"""The same bits on another x86-64 CPU (nads/portable.py).

A real Intel and a real AMD machine are not both at hand in one test run, so
the other CPUs are QEMU's: `qemu-x86_64 -cpu Haswell-v4` runs this machine's
binaries on an emulated Intel Haswell (vendor GenuineIntel, AVX2 without
AVX-512, its own cache sizes), `-cpu EPYC-Rome` on an emulated AMD Zen 2. The
libraries see that CPU and dispatch for it; QEMU's floating point is IEEE-exact.
"""

import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROBE = ROOT / "tests" / "portable_probe.py"


def start(portable: bool = True, cpu: str | None = None) -> subprocess.Popen:
    from nads.portable import SETTINGS

    # (import nads put SETTINGS into this process's environment: the child must decide alone)
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    env.update(PYTHONPATH=str(ROOT), NADS_PORTABLE="1" if portable else "0")
    cmd = [sys.executable, str(PROBE)]
    if cpu:
        cmd = ["qemu-x86_64", "-cpu", cpu, *cmd]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def result(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def fingerprints(portable: bool = True, cpu: str | None = None) -> dict:
    return result(start(portable, cpu))


CPUS = ["Haswell-v4", "EPYC-Rome"]


@pytest.fixture(scope="module")
def emulated() -> dict:
    """Both emulated CPUs' fingerprints, computed side by side (one core each)."""
    procs = {cpu: start(cpu=cpu) for cpu in CPUS}
    return {cpu: result(p) for cpu, p in procs.items()}


@pytest.fixture(scope="module")
def here() -> dict:
    return fingerprints()


def test_the_settings_change_the_bits(here):
    # Without them this CPU picks its own kernels (MKL's vendor or AVX2 path at least): other bits.
    native = fingerprints(portable=False)
    assert native != here
    assert native["lenet_fd"] != here["lenet_fd"]  # its linear layers: MKL


@pytest.mark.slow
@pytest.mark.skipif(
    platform.machine() != "x86_64" or not shutil.which("qemu-x86_64"),
    reason="needs an x86-64 machine and qemu-user (apt-get install qemu-user)",
)
@pytest.mark.long
@pytest.mark.parametrize("cpu", CPUS)
def test_an_emulated_intel_and_amd_cpu_compute_the_same_bits(here, emulated, cpu):
    assert emulated[cpu] == here
