"""GPU check: is the library right on a GPU, how fast is it there, and
what would the paper profile cost? One short run, for the rare and brief loan of a GPU.

1. Correctness against the CPU, same seeds, through the library's own functions:
   - LeNet NADs (estimate_nads): top-10 subspace agreement with the CPU's >= 0.999
     in float32, >= 0.99 in bf16 (against the CPU's float32);
   - batched sweeps (nads.sweep.sweep) of a few Fourier directions, lenet and
     vgg11_bn (batch norm): test accuracies within 0.02 of the CPU's, per direction;
   - one CIFAR-shaped poisoning step of the poison architecture (profiles/paper.yaml):
     the parameter update and the loss afterwards within 1e-3 (relative) of the CPU's.
2. Throughput of every registered architecture in float32, tf32 and bf16: NAD
   networks/s, sweep training samples/s at the models-per-batch the library picks,
   CIFAR training images/s (poison and flip architectures). Random CIFAR-shaped
   data: only speed is measured. Each measurement is a few seconds, after a warm-up.
   NADs also with each forward the engine offers a GPU (nads.forward: eager, channels_last,
   compiled, compiled_channels_last), with the compile time, and the top-10 agreement of
   each (forward, precision) with eager float32 on the same networks.
3. Projection: each stage of profiles/paper.yaml, hours per precision (NADs with the
   fastest forward that keeps its tolerance), and with the best choice.

On the GPU machine, from the repository root (needs torch, numpy, pyyaml, tqdm; no
dvc, mlflow or ray, no data):

    PYTHONPATH=. python3 benchmarks/gpu_check.py --out DIR             # 6 minutes (--budget-s)
    PYTHONPATH=. python benchmarks/gpu_check.py --device cpu --tiny --out DIR   # any CPU, seconds

It starts nothing that would not end within --budget-s (recorded as "skipped:
budget"), prints a line per result, and rewrites DIR/gpu_check.json (every number,
device, torch version, pass/fail) and DIR/gpu_check.md (the same as tables) after
each one, so a run killed part-way still leaves what it measured. It exits 1 when a
correctness check fails or errs. Without a GPU the "device" side runs on the CPU in
vmapped groups, as a GPU does, so the checks still compare two code paths; the
report says so.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import platform
import sys
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from nads import config, errors, files
from nads.config import Schedule, Synthetic
from nads.directions import fourier_directions, fourier_grid, random_directions
from nads.estimate import Engine, Spec, estimate_nads, nads_from_moments, subspace_agreement, total_moments
from nads.executor import LocalExecutor, cpu_workers
from nads.models import get_model, list_models, probe_model
from nads.poisoning import carrier_batches, carriers
from nads.runtime import native_bf16, resolve_device
from nads.sweep import direction_batches, sweep
from nads.synthetic import draw_noise_bank
from nads.train import auto_models_per_batch, chunks, init_model, train_batched

PROFILE = Path(__file__).resolve().parents[1] / "profiles" / "paper.yaml"
PRECISIONS = ("float32", "bf16", "tf32")  # measured in this order: the profile's default first, then the fastest
FORWARDS = ("eager", "channels_last", "compiled", "compiled_channels_last")  # a GPU's (nads.config.FORWARDS)
# Top-10 NAD agreement with eager float32 on the same networks that each precision keeps: the
# rule for a layout or compile change, and the stated tolerance of reduced precision (docs/scaling.md).
TOLERANCE = {"float32": 0.9999, "tf32": 0.99, "bf16": 0.99}
AGREE_NETWORKS = 16  # at least, in a NAD measurement: rank 15, so that the top-10 are defined
COMPILE_S_PER_MODULE = 0.5  # a guess, for the budget: torch.compile's seconds per module of a network
CIFAR_TRAIN, CIFAR_TEST = 50_000, 10_000
MAX_STEPS = 32  # distinct training batches in a throughput measurement (more steps reuse them)
EVAL_COST = 1 / 3  # a forward pass costs about a third of a training step (forward + backward)


@dataclass(frozen=True)
class Sizes:
    nad_networks: int = 256
    # (arch, directions, n_train, n_test, epochs): the CPU side of vgg11_bn is kept well under a minute
    sweeps: tuple = (("lenet", 8, 2000, 1000, 3), ("vgg11_bn", 8, 1000, 500, 1))
    poison_batch: int = 128
    archs: tuple | None = None  # throughput: None = every registered architecture
    forwards: tuple = FORWARDS
    cap_s: float = 1.5  # timed seconds per throughput measurement
    check_s: float = 15.0  # expected seconds of a correctness check (the budget test)


TINY = Sizes(
    nad_networks=16,
    sweeps=(("lenet", 2, 256, 128, 1), ("vgg11_bn", 2, 32, 32, 1)),
    poison_batch=2,
    archs=("logreg", "lenet"),
    forwards=("eager", "channels_last", "compiled"),
    cap_s=0.1,
    check_s=2.0,
)
RESERVE_S = 5.0  # kept for the projection and the last write (and the imports before the clock starts)


class Run:
    """The clock, the results so far, and their files (rewritten after every result)."""

    def __init__(self, out: Path, budget_s: float, meta: dict):
        self.out, self.budget_s, self.t0 = out, budget_s, time.perf_counter()
        self.data = {"meta": meta, "correctness": [], "throughput": [], "projection": None}

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def say(self, msg: str) -> None:
        print(f"[{self.elapsed():6.1f}s] {msg}", flush=True)

    def attempt(self, section: str, row: dict, need_s: float, fn, announce: bool = False) -> dict:
        """row | fn(), unless need_s more seconds would overrun the budget. A failure is
        recorded and the run goes on: the rest of the loan is still worth using."""
        keys = ("name", "kind", "arch", "precision", "forward")
        label = f"{section}: {' '.join(str(row[k]) for k in keys if k in row)}"
        if self.budget_s - self.elapsed() < need_s + RESERVE_S:
            row["status"] = "skipped: budget"
        else:
            if announce:
                self.say(f"{label} ...")
            t = time.perf_counter()
            try:
                row.update(fn())
            except Exception as e:  # noqa: BLE001 - one broken check must not cost the others
                lines = str(e).strip().splitlines()
                row["status"] = f"error: {type(e).__name__}" + (f": {lines[0]}" if lines else "")
            finally:
                if torch.cuda.is_initialized():
                    torch.cuda.empty_cache()
            row["seconds"] = round(time.perf_counter() - t, 2)
        self.data[section].append(row)
        self.write()
        self.say(f"{label}: {row['status']}{'  ' + row['summary'] if 'summary' in row else ''}")
        return row

    def write(self) -> None:
        self.data["meta"]["elapsed_s"] = round(self.elapsed(), 1)
        files.write_json(self.out / "gpu_check.json", self.data)
        with files.atomic_path(self.out / "gpu_check.md") as tmp:
            tmp.write_text(markdown(self.data))


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def timed(fn, dev: torch.device) -> float:
    sync(dev)
    t = time.perf_counter()
    fn()
    sync(dev)
    return time.perf_counter() - t


def verdict(ok: bool, summary: str, required: str, **numbers) -> dict:
    return {"status": "pass" if ok else "fail", "summary": summary, "required": required, **numbers}


def device_batching(dev: torch.device) -> dict:
    """How the device side batches: the library's own choice on a GPU. On a CPU, vmapped
    groups as on a GPU (smaller: a GPU's 32 networks x 2048 inputs crawl on a CPU), so that a
    CPU-only run still compares the GPU's code paths with the CPU's."""
    if dev.type == "cuda":
        return {}
    return {
        "networks_per_batch": 4,
        "inputs_per_chunk": 256,
        "models_per_batch": auto_models_per_batch(torch.device("cuda"), None),
    }


# ---------------------------------------------------------------- 1. correctness
@lru_cache(maxsize=None)
def cpu_nads(n: int):
    return estimate_nads("lenet", n_networks=n, device="cpu", executor="local")


def check_nads(dev, n: int, prec: str, tol: float) -> dict:
    ref = cpu_nads(n)
    b = device_batching(dev)
    got = estimate_nads(
        "lenet",
        n_networks=n,
        device=str(dev),
        precision=prec,
        executor="local",
        networks_per_batch=b.get("networks_per_batch"),
        inputs_per_chunk=b.get("inputs_per_chunk"),
    )
    agree = subspace_agreement(ref.nads, got.nads, 10)
    rel = float(np.abs(got.eigenvalues[:10] / ref.eigenvalues[:10] - 1).max())
    return verdict(
        agree >= tol,
        f"top-10 agreement {agree:.6f}, top-10 eigenvalues max rel. diff {rel:.1e}",
        f"agreement >= {tol}",
        agreement_top10=agree,
        eigenvalue_max_rel_diff=rel,
    )


def check_sweep(dev, arch: str, k: int, n_train: int, n_test: int, epochs: int, tol: float = 0.02) -> dict:
    bank = draw_noise_bank(Synthetic(n_train=n_train, n_test=n_test, seed=0))
    _, v = fourier_directions(bank.shape, 2)
    v = v[np.linspace(0, len(v) - 1, k).round().astype(int)]  # spread over the grid
    schedule = Schedule(epochs=epochs)
    ref = sweep(arch, bank, v, schedule, "cpu")["test_acc"]
    got = sweep(arch, bank, v, schedule, str(dev), device_batching(dev).get("models_per_batch"))["test_acc"]
    diff = np.where(np.isnan(ref) & np.isnan(got), 0.0, np.abs(got - ref))  # both diverged: they agree
    worst = float(np.max(diff))  # NaN when only one side diverged: fails
    as_list = lambda a: [None if np.isnan(x) else round(float(x), 4) for x in a]  # noqa: E731
    return verdict(
        worst <= tol,
        f"max abs. difference {worst:.4f} (CPU mean {np.nanmean(ref):.3f})",
        f"<= {tol} per direction",
        max_abs_diff=worst if np.isfinite(worst) else None,
        cpu_test_acc=as_list(ref),
        device_test_acc=as_list(got),
    )


def flat(tensors, k: int) -> torch.Tensor:
    """(k, P) float64 on the CPU: the parameters of k models, flattened and concatenated."""
    return torch.cat([t.detach().reshape(k, -1).cpu().double() for t in tensors], 1)


def poison_step(arch: str, schedule: Schedule, epsilon: float, batch: int, device, groups) -> tuple:
    """(stacked parameters, eval-mode losses on the step's batch) of a clean and a NAD-0-poisoned
    model after one training step on random CIFAR-shaped images, trained in `groups`."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (batch, 32, 32, 3), dtype=torch.uint8, generator=g).to(device)
    y = torch.randint(0, 10, (batch,), generator=g).to(device)
    basis = np.linalg.qr(random_directions(2, 1024).T.astype(np.float64))[0].T.astype(np.float32)  # NAD stand-ins
    carrier, signs = carriers(basis, 0)
    sets = torch.from_numpy(np.stack([np.zeros_like(carrier), carrier])).to(device)
    signs = torch.from_numpy(signs).to(device)
    params, losses = [], []
    for ids in groups:
        batches = carrier_batches(x, y, y, sets[ids], signs, epsilon)
        models = [init_model(arch, i, schedule, 3, 10, 32) for i in ids]
        trained = train_batched(models, batches, batch, schedule, device)
        xb, yb = batches(torch.arange(batch))
        logits = trained.predict(xb)
        losses += [F.cross_entropy(logits[j], yb[j]).item() for j in range(len(ids))]
        params.append(flat(trained.params.values(), len(ids)))
    return torch.cat(params), np.array(losses)


def check_poison_step(dev, arch: str, section, batch: int, tol: float = 1e-3) -> dict:
    schedule = dataclasses.replace(section.schedule(), epochs=1, batch_size=batch, precision="float32")
    start = torch.cat([flat(init_model(arch, i, schedule, 3, 10, 32).parameters(), 1) for i in (0, 1)])
    per_model = [[0], [1]]  # what a CPU runs: one model per step
    ref, ref_loss = poison_step(arch, schedule, section.epsilon, batch, "cpu", per_model)
    k = device_batching(dev).get("models_per_batch") or auto_models_per_batch(dev, None)
    got, got_loss = poison_step(arch, schedule, section.epsilon, batch, dev, chunks(2, k))
    update = (got - start) - (ref - start)
    rel_update = float((update.norm(dim=1) / (ref - start).norm(dim=1)).max())
    rel_loss = float(np.max(np.abs(got_loss - ref_loss) / np.abs(ref_loss)))
    return verdict(
        rel_update <= tol and rel_loss <= tol,
        f"update rel. diff {rel_update:.1e}, loss after the step rel. diff {rel_loss:.1e} "
        f"(losses {', '.join(f'{v:.4g}' for v in ref_loss)})",
        f"both <= {tol:g}",
        update_rel_diff=rel_update,
        loss_rel_diff=rel_loss,
        cpu_loss=ref_loss.tolist(),
        device_loss=got_loss.tolist(),
        batch=batch,
    )


def check_bf16_nads(dev, n: int) -> dict:
    """bf16 against float32 where the device has bf16; elsewhere nads refuses bf16 (a CPU
    without it, or one held to AVX2 by the portable arithmetic), and so does this check."""
    if not native_bf16(dev):
        return {"status": "skipped: no native bf16 on this device (nads refuses bf16 here)"}
    return check_nads(dev, n, "bf16", 0.99)


def correctness(run: Run, dev, sizes: Sizes, params) -> None:
    n = sizes.nad_networks
    poison_arch = params["archs"].poison[0]
    checks = [
        (f"NADs lenet, {n} networks, float32", 1.0, lambda: check_nads(dev, n, "float32", 0.999)),
        (f"NADs lenet, {n} networks, bf16 vs CPU float32", 0.5, lambda: check_bf16_nads(dev, n)),
    ]
    for arch, k, n_train, n_test, epochs in sizes.sweeps:
        checks.append(
            (
                f"sweep {arch}, {k} directions, n_train {n_train}, {epochs} epoch(s)",
                1.0 if arch == "lenet" else 3.0,
                lambda a=(arch, k, n_train, n_test, epochs): check_sweep(dev, *a),
            )
        )
    checks.append(
        (
            f"poisoning step {poison_arch}, batch {sizes.poison_batch}",
            1.0,
            lambda: check_poison_step(dev, poison_arch, params["poison"], sizes.poison_batch),
        )
    )
    for name, weight, fn in checks:
        run.attempt("correctness", {"name": name}, weight * sizes.check_s, fn, announce=True)  # up to a minute


# ---------------------------------------------------------------- 2. throughput
def peak_gib(dev) -> float | None:
    return round(torch.cuda.max_memory_allocated(dev) / 2**30, 2) if dev.type == "cuda" else None


def reset_peak(dev) -> None:
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)


def grow(run_at, target: int, cap: float, notes: list, what: str) -> tuple:
    """(size, seconds of run_at(size)): the batch size doubled from 1 towards the library's
    choice `target` while a run would stay within `cap` seconds and memory. Runs at the small
    sizes cost little, and a heavy model stops before one run takes too long."""
    size, t = 1, run_at(1)
    while size < target:
        nxt = min(2 * size, target)
        if t * nxt / size > cap:
            notes.append(f"time cap: {size} of the library's {target} {what} ({t:.2f} s a run at {size})")
            break
        try:
            t = run_at(nxt)
        except torch.cuda.OutOfMemoryError:
            notes.append(f"out of memory at {nxt} {what}: the library's choice does not fit")
            break
        size = nxt
    return size, t


def measured(rate: float, unit: str, size: int, target: int, dev, notes: list, **more) -> dict:
    peak = peak_gib(dev)
    if peak is not None and size < target:  # rough: memory grows about linearly with the batch
        notes.append(f"peak {peak} GiB at {size}, so ~{peak * target / size:.0f} GiB at {target}")
    return {
        "status": "ok",
        "rate": rate,
        "unit": unit,
        "batch": size,
        "default_batch": target,
        "peak_gib": peak,
        "notes": notes,
        "summary": f"{rate:.4g} {unit} ({size} per batch)",
        **more,
    }


def nad_rate(arch: str, prec: str, forward: str, dev, cap: float, refs: dict) -> dict:
    """Networks/s of total_moments (the part estimate_nads times) in vmapped groups, and the
    top-10 agreement of its NADs with eager float32's on the same networks.

    Eager float32 comes first for each arch (it is the reference, kept in `refs`): its group
    grows towards the engine's default while a run fits in `cap`. Every other forward and
    precision runs at the reference's group and networks, after a warm-up run of one group
    that includes the compilation, if any."""
    spec, executor, notes = Spec(arch, precision=prec), LocalExecutor(), []
    moments: list = []
    reset_peak(dev)

    def run_at(group: int, n: int | None = None) -> float:
        # total_moments keeps one engine per configuration in this process (shard_moments), and
        # Dynamo one set of graphs: a graph compiled for an earlier row whose guards this one
        # passes serves again, so first_group_s is what this row pays in this process.
        engine = Engine(dev, networks_per_batch=group, forward=forward)
        return timed(lambda: moments.append(total_moments(spec, engine, n or group, executor)), dev)

    if prec == "bf16" and not native_bf16(dev):
        return {"status": "skipped: no native bf16 on this device (nads refuses bf16 here)"}
    ref = refs.get(arch)
    target = Engine(dev).networks_per_batch
    if ref is None:
        if (prec, forward) != ("float32", "eager"):
            raise RuntimeError(f"no eager float32 measurement of {arch} to compare with")
        run_at(1)  # warm-up: first calls, the shared inputs
        group, t = grow(run_at, target, cap, notes, "networks per group")
        n = group * max(-(-AGREE_NETWORKS // group), round(cap / t))  # whole groups, so one compiled shape
        first = None
    else:
        group, n = ref["group"], ref["networks"]
        first = run_at(group)
    rate = n / run_at(group, n)
    vecs = nads_from_moments(moments[-1], spec)[0]
    if ref is None:
        refs[arch] = {"group": group, "networks": n, "nads": vecs}
    agree = subspace_agreement(refs[arch]["nads"], vecs, 10)
    more = {
        "forward": forward,
        "networks": n,
        "agreement_top10": agree,
        "tolerance": TOLERANCE[prec],
        "within_tolerance": agree >= TOLERANCE[prec],
        "first_group_s": first,
        "compile_s": None if first is None else max(0.0, first - group / rate),
    }
    row = measured(rate, "networks/s", group, target, dev, notes, **more)
    row["summary"] += f", top-10 agreement {agree:.6f}" + (
        f", first group {first:.1f} s" if first is not None and forward.startswith("compiled") else ""
    )
    return row


def train_rate(
    arch: str, in_channels: int, classes: int, batches_for, schedule: Schedule, target: int, dev, cap: float
) -> dict:
    """Training samples/s of train_batched with `target` models as one computation, or
    fewer where `target` would not fit in `cap` seconds per two steps, or in memory."""
    notes, batch = [], schedule.batch_size
    reset_peak(dev)
    model = init_model(arch, 0, schedule, in_channels, classes, 32).to(dev)

    def run(k: int, steps: int) -> tuple:
        models = [copy.deepcopy(model) for _ in range(k)]  # speed does not depend on the initialisation
        n = min(steps, MAX_STEPS) * batch
        s = dataclasses.replace(schedule, epochs=-(-steps // (n // batch)))
        return timed(lambda: train_batched(models, batches_for(k), n, s, dev), dev), s.epochs * (n // batch)

    run(1, 2)  # warm-up
    k, t = grow(lambda k: run(k, 2)[0], target, cap, notes, "models per batch")
    t, steps = run(k, max(2, round(cap / (t / 2))))
    return measured(k * steps * batch / t, "samples/s", k, target, dev, notes, steps=steps)


def throughput(run: Run, dev, sizes: Sizes, params) -> None:
    archs = list(sizes.archs or list_models())
    broken = {}
    for arch in archs:  # build and run each once, so that a broken one is skipped with its reason
        try:
            probe_model(arch, 1, 1, 32)
        except ValueError as e:
            broken[arch] = f"skipped: {e}"
    bank = draw_noise_bank(Synthetic(n_train=MAX_STEPS * params["sweep"].batch_size, n_test=2, seed=0))
    z, y = (torch.from_numpy(a).to(dev) for a in (bank.z_train, bank.y_train.astype(np.float32)))
    v = torch.from_numpy(fourier_directions(bank.shape, 2)[1]).to(dev)
    batched = auto_models_per_batch(dev, None)  # the library's models per batch, for sweeps and poisoning

    def sweep_batches(k):
        return direction_batches(z, y, v[:k], bank)

    def sweep_schedule(prec):
        return dataclasses.replace(params["sweep"].schedule(), precision=prec)

    g = torch.Generator().manual_seed(0)
    n_img = MAX_STEPS * max(params["poison"].batch_size, params["flip"].batch_size)
    x_img = torch.randint(0, 256, (n_img, 32, 32, 3), dtype=torch.uint8, generator=g).to(dev)
    y_img = torch.randint(0, 10, (n_img,), generator=g).to(dev)
    basis = np.linalg.qr(random_directions(2, 1024).T.astype(np.float64))[0].T.astype(np.float32)
    carrier, signs = (torch.from_numpy(a).to(dev) for a in carriers(basis, 0))

    def cifar_batches(k):
        return carrier_batches(x_img, y_img, y_img, carrier.expand(k, -1, -1), signs, params["poison"].epsilon)

    # CIFAR: the poison architectures batch models as poisoning does; flip trains one model per job.
    cifar = [("poison", a, batched) for a in params["archs"].poison] + [("flip", a, 1) for a in params["archs"].flip]
    cap, need, refs = sizes.cap_s, 4 * sizes.cap_s + 1, {}

    def nads(arch: str, prec: str, forward: str) -> None:
        compile_s = 0.0  # in the budget: a guess, from the network's size
        if forward.startswith("compiled") and arch not in broken:
            compile_s = COMPILE_S_PER_MODULE * len(list(get_model(arch, 1, 1, 32).modules()))
        run.attempt(
            "throughput",
            {"kind": "nads", "arch": arch, "precision": prec, "forward": forward},
            need + compile_s,
            (lambda: {"status": broken[arch]})
            if arch in broken
            else lambda: nad_rate(arch, prec, forward, dev, cap, refs),
        )

    # Per precision: eager NADs and training first (a whole projection), then the NADs' other
    # forwards, the cheap layout change before compilation; a short budget cuts the tail.
    for prec in PRECISIONS:
        for arch in archs:
            nads(arch, prec, "eager")
            run.attempt(
                "throughput",
                {"kind": "sweep", "arch": arch, "precision": prec},
                need,
                (lambda: {"status": broken[arch]})
                if arch in broken
                else lambda: train_rate(arch, 1, 2, sweep_batches, sweep_schedule(prec), batched, dev, cap),
            )
        for kind, arch, k_auto in cifar:
            if arch not in archs or arch in broken:
                continue
            schedule = dataclasses.replace(params[kind].schedule(), precision=prec)
            run.attempt(
                "throughput",
                {"kind": kind, "arch": arch, "precision": prec},
                need,
                lambda: train_rate(arch, 3, 10, cifar_batches, schedule, k_auto, dev, cap),
            )
        for forward in sizes.forwards[1:]:
            for arch in archs:
                nads(arch, prec, forward)


# ---------------------------------------------------------------- 3. projection
FORMULA = [
    "hours = work / measured rate / 3600, per stage and architecture, every stage at the given precision.",
    "NADs: nads.n_networks networks (the autograd comparison, ~3 forward passes a network against 2D = 2048, "
    "is left out) / NAD networks/s.",
    "Sweeps: directions x (n_train x epochs + (n_train + n_test) x 1/3) / sweep samples/s, with directions = "
    "Fourier directions at synthetic.fourier_stride + len(nad_sweep.indices) x nad_sweep.seeds x families "
    "(2 families, ours and the published NADs, for archs.compare; else 1).",
    "Poison: (len(poison.nad_indices) + 1) models x (N x epochs + (N + 2 x 10000) x 1/3) / CIFAR images/s "
    "(poisoning's models per batch); N = poison.n_train or 50000.",
    "Flip: 2 models x (N x epochs + 10000 x 1/3) / CIFAR images/s (one model per batch), per architecture.",
    "Evaluation forward passes count 1/3 of a training sample. CPU work (eigendecompositions, data loading, "
    "figures), compilation and the time to start each stage are left out.",
    "NADs at each precision use the fastest forward whose top-10 agreement with eager float32 keeps the "
    f"tolerance ({', '.join(f'{p} >= {t}' for p, t in TOLERANCE.items())}); the forward is named in brackets.",
    "Best: per stage, the fastest precision measured. For training, reduced precision's tolerance (accuracies "
    "within 0.06 of float32 in bf16, docs/scaling.md) is tested on a CPU (tests/test_precision.py), not here.",
]


UNITS = {"nads": "networks", "sweep": "samples", "poison": "images", "flip": "images"}


def stage_work(params) -> list:
    """(stage, arch, work in units of the stage's measured rate) for every stage of the profile."""
    archs, syn, ns = params["archs"], params["synthetic"], params["nad_sweep"]
    n_fourier = len(fourier_grid(syn.input_shape[1], syn.input_shape[2], syn.fourier_stride))
    rows = [("nads", a, params["nads"].n_networks) for a in archs.nads]
    for a in archs.sweep:
        directions = n_fourier + len(ns.indices) * ns.seeds * (2 if a in archs.compare else 1)
        per_direction = syn.n_train * params["sweep"].epochs + (syn.n_train + syn.n_test) * EVAL_COST
        rows.append(("sweep", a, directions * per_direction))
    po, fl = params["poison"], params["flip"]
    n = po.n_train or CIFAR_TRAIN
    rows += [
        ("poison", a, (len(po.nad_indices) + 1) * (n * po.epochs + (n + 2 * CIFAR_TEST) * EVAL_COST))
        for a in archs.poison
    ]
    n = fl.n_train or CIFAR_TRAIN
    rows += [("flip", a, 2 * (n * fl.epochs + CIFAR_TEST * EVAL_COST)) for a in archs.flip]
    return rows


def fastest(throughput: list) -> dict:
    """(kind, arch, precision) -> (rate, forward) of the fastest measurement that keeps its
    tolerance (NADs: agreement; other kinds have one measurement each)."""
    best: dict = {}
    for r in throughput:
        if "rate" not in r or not r.get("within_tolerance", True):
            continue
        key = (r["kind"], r["arch"], r["precision"])
        if key not in best or r["rate"] > best[key][0]:
            best[key] = (r["rate"], r.get("forward"))
    return best


def projection(run: Run, params) -> None:
    rates = fastest(run.data["throughput"])
    rows, totals, missing = [], {}, {}
    for stage, arch, work in stage_work(params):
        hours = {p: work / rates[stage, arch, p][0] / 3600 if (stage, arch, p) in rates else None for p in PRECISIONS}
        forward = {p: rates[stage, arch, p][1] for p in PRECISIONS if (stage, arch, p) in rates}
        done = {p: h for p, h in hours.items() if h is not None}
        best = min(done, key=done.__getitem__) if done else None
        rows.append(
            {
                "stage": stage,
                "arch": arch,
                "work": work,
                "unit": UNITS[stage],
                "hours": {**hours, "best": done.get(best)},
                "forward": {**forward, "best": forward.get(best)},
                "best": best,
            }
        )
    for p in (*PRECISIONS, "best"):
        totals[p] = sum(r["hours"][p] for r in rows if r["hours"][p] is not None)
        missing[p] = [f"{r['stage']}@{r['arch']}" for r in rows if r["hours"][p] is None]
    run.data["projection"] = {
        "profile": PROFILE.name,
        "formula": FORMULA,
        "rows": rows,
        "total_hours": totals,
        "not_measured": missing,
    }
    run.write()
    run.say(
        "projection: "
        + ", ".join(
            f"{p} {totals[p]:.2f} h" + (f" (without {len(missing[p])} unmeasured)" if missing[p] else "")
            for p in (*PRECISIONS, "best")
        )
    )


# ---------------------------------------------------------------- the report
def _fmt(x) -> str:
    return "" if x is None else f"{x:.3g}" if isinstance(x, float) else str(x)


def _row(*cells) -> str:
    return "| " + " | ".join(map(str, cells)) + " |"


def _table(*header) -> list:
    return [_row(*header), _row(*["---"] * len(header))]


def _label(r: dict) -> str:
    return r["arch"] + (f" {r['forward']}" if "forward" in r else "")


def _cell(r: dict) -> str:
    if "rate" not in r:
        return r["status"]
    cell = f"{r['rate']:.4g} ({r['batch']})"
    if "agreement_top10" in r:
        cell += f", {r['agreement_top10']:.6f}{'' if r['within_tolerance'] else ' ✗'}"
        if r["forward"].startswith("compiled") and r["first_group_s"] is not None:
            cell += f", {r['first_group_s']:.1f} s"
    return cell


def _hours(r: dict, q: str) -> str:
    h = r["hours"][q]
    if h is None:
        return "not measured"
    precision = f"{r['best']}, " if q == "best" else ""
    forward = r["forward"][q] if r["stage"] == "nads" else None
    return _fmt(h) + (f" ({precision}{forward})" if forward else f" ({r['best']})" if precision else "")


def markdown(data: dict) -> str:
    m, shown = data["meta"], ("float32", "tf32", "bf16")
    out = [
        f"# GPU check: {m['device_name']}",
        "",
        f"torch {m['torch']} (CUDA {m['cuda']}), Python {m['python']}, {m['cpus']} CPUs; "
        f"budget {m['budget_s']} s, ran {m['elapsed_s']} s{' (tiny sizes)' if m['tiny'] else ''}"
        f"{'' if m['complete'] else ' (incomplete: still running, or stopped)'}.",
        "",
        m["comparison"],
        "",
        "## 1. Correctness against the CPU (same seeds)",
        "",
    ]
    out += _table("check", "result", "measured", "required", "seconds")
    out += [
        _row(c["name"], c["status"], c.get("summary", ""), c.get("required", ""), _fmt(c.get("seconds")))
        for c in data["correctness"]
    ]
    out += [
        "",
        "## 2. Throughput",
        "",
        "Each cell: rate (networks or models per batch). Random CIFAR-shaped data; every measurement "
        "after a warm-up, timed with torch.cuda.synchronize().",
        "",
    ]
    titles = {
        "nads": "NAD estimation, networks/s (networks per vmapped group), top-10 agreement with eager float32 "
        "on the same networks (✗: below the tolerance), first group's seconds where compiled",
        "sweep": "Sweep training, samples/s (models per batch)",
        "poison": "CIFAR training as in poisoning, images/s (models per batch)",
        "flip": "CIFAR training as in flip, images/s (models per batch)",
    }
    for kind, title in titles.items():
        rows = [r for r in data["throughput"] if r["kind"] == kind]
        if not rows:
            continue
        out += [f"**{title}**", ""] + _table("arch", *shown)
        order = {a: i for i, a in enumerate(dict.fromkeys(r["arch"] for r in rows))}
        rows.sort(key=lambda r: (order[r["arch"]], FORWARDS.index(r.get("forward", "eager"))))  # stable
        for label in dict.fromkeys(_label(r) for r in rows):
            cell = {r["precision"]: _cell(r) for r in rows if _label(r) == label}
            out.append(_row(label, *(cell.get(p, "") for p in shown)))
        notes = [f"- {r['arch']} {r['precision']}: {'; '.join(r['notes'])}" for r in rows if r.get("notes")]
        out += [""] + notes + ([""] if notes else [])
    p = data["projection"]
    if p:
        out += [f"## 3. Projection: profiles/{p['profile']}", ""] + [f"- {line}" for line in p["formula"]] + [""]
        columns = (*shown, "best")
        out += _table("stage", "arch", "work", *(f"{q} hours" for q in columns))
        out += [
            _row(
                r["stage"],
                r["arch"],
                f"{r['work']:.4g} {r['unit']}",
                *(_hours(r, q) for q in columns),
            )
            for r in p["rows"]
        ]
        out.append(
            _row(
                "**total**",
                "",
                "",
                *(f"**{p['total_hours'][q]:.3g}**" + (" (partial)" if p["not_measured"][q] else "") for q in columns),
            )
        )
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, type=Path, help="folder for gpu_check.json and gpu_check.md")
    ap.add_argument("--budget-s", type=float, default=360.0, help="start nothing that would end later (default 360)")
    ap.add_argument("--device", default="auto", help="auto (cuda if available, else cpu) | cpu | cuda | cuda:N")
    ap.add_argument("--tiny", action="store_true", help="tiny sizes: the whole run in seconds on a CPU")
    ap.add_argument("--archs", help="comma-separated architectures to measure (default: every registered one)")
    args = ap.parse_args()
    try:
        dev, params = resolve_device(args.device), config.load(PROFILE)
    except errors.ParamError as e:
        ap.error(str(e))
    sizes = TINY if args.tiny else Sizes()
    if args.archs:
        unknown = sorted(set(args.archs.split(",")) - set(list_models()))
        if unknown:
            ap.error(f"--archs: unknown {', '.join(unknown)}; allowed: {', '.join(list_models())}")
        sizes = dataclasses.replace(sizes, archs=tuple(args.archs.split(",")))
    gpu = dev.type == "cuda"
    name = torch.cuda.get_device_name(dev) if gpu else f"CPU ({platform.machine()})"
    meta = {
        "device": str(dev),
        "device_name": name,
        "gpu_memory_gib": round(torch.cuda.get_device_properties(dev).total_memory / 2**30, 1) if gpu else None,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "python": platform.python_version(),
        "cpus": cpu_workers(),
        "budget_s": args.budget_s,
        "tiny": args.tiny,
        "sizes": dataclasses.asdict(sizes),
        "complete": False,
        "comparison": (
            "Correctness: the GPU against the CPU."
            if gpu
            else "Correctness: no GPU here, so the CPU against the CPU: the device side runs in vmapped "
            "groups of networks and models, as a GPU does; the reference as a CPU does."
        ),
    }
    run = Run(args.out, args.budget_s, meta)
    run.say(f"gpu_check on {meta['device_name']} ({dev}), torch {torch.__version__}, budget {args.budget_s:.0f} s")
    correctness(run, dev, sizes, params)
    throughput(run, dev, sizes, params)
    projection(run, params)
    run.data["meta"]["complete"] = True
    run.write()
    failed = [
        c["name"] for c in run.data["correctness"] if c["status"] != "pass" and not c["status"].startswith("skipped")
    ]
    run.say(f"done: {args.out / 'gpu_check.md'}" + (f"; NOT PASSING: {'; '.join(failed)}" if failed else ""))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
