import subprocess
import sys

import numpy as np
import pytest
import torch
from toy_models import SUPPORT

from nads.errors import ParamError
from nads.estimate import Engine, Spec, estimate_nads, fd_inputs, nads_from_moments, subspace_agreement
from nads.shortcut import LocalForward, Window


def test_linear_gaussian_model_has_isotropic_covariance():
    r = estimate_nads("toy_models:linear_gaussian", (1, 4, 4), n_networks=4000, seed=1)
    # Covariance of a ~ N(0, I) from 4000 samples: every eigenvalue 1 up to
    # Marchenko-Pastur spread (1 ± sqrt(16/4000))^2 = 1 ± 0.13.
    assert r.eigenvalues.shape == (16,)
    assert np.all(np.abs(r.eigenvalues - 1) < 0.2)
    np.testing.assert_allclose(r.nads @ r.nads.T, np.eye(16), atol=1e-5)


@pytest.mark.parametrize("estimator,step", [("fd", 100.0), ("autograd", 100.0)])
def test_model_seeing_a_subspace_has_nads_spanning_exactly_that_subspace(estimator, step):
    r = estimate_nads("toy_models:selected_mlp", (1, 4, 4), n_networks=200, estimator=estimator, step=step)
    k = len(SUPPORT)
    assert r.eigenvalues[k - 1] > 1e-6
    assert np.all(np.abs(r.eigenvalues[k:]) < 1e-9 * r.eigenvalues[0])
    inside = np.zeros(16, bool)
    inside[SUPPORT] = True
    # The top-k NADs live on the support; together they span all of it.
    assert np.abs(r.nads[:k][:, ~inside]).max() < 1e-5
    np.testing.assert_allclose(np.linalg.svd(r.nads[:k][:, inside].astype(np.float64))[1], 1.0, atol=1e-5)


def test_fd_with_a_small_step_agrees_with_autograd_on_a_smooth_model():
    fd = Engine("cpu").gradients(Spec("toy_models:smooth_mlp", (1, 6, 6), "fd", step=1e-2), [0, 1, 2])
    ag = Engine("cpu").gradients(Spec("toy_models:smooth_mlp", (1, 6, 6), "autograd"), [0, 1, 2])
    torch.testing.assert_close(fd, ag, rtol=2e-3, atol=2e-5)
    # ... and the large published step does not (the point of keeping both).
    fd100 = Engine("cpu").gradients(Spec("toy_models:smooth_mlp", (1, 6, 6), "fd", step=100.0), [0])
    assert (fd100[0] - ag[0]).norm() > 0.5 * ag[0].norm()


def naive_fd(spec, i):
    """The original procedure, written plainly: one network, all 2D inputs in one batch."""
    x = fd_inputs(spec.x0(), spec.step, 0, spec.dim)
    with torch.no_grad():
        out = spec.network(i)(x).reshape(-1)
    return (out[: spec.dim] - out[spec.dim :]) / (2 * spec.step)


@pytest.mark.parametrize("arch", ["lenet", "logreg", "toy_models:tiny_bn", "toy_models:input_twice"])
def test_every_engine_configuration_equals_the_plain_loop(arch):
    spec = Spec(arch, (1, 16, 16) if arch != "lenet" else (1, 32, 32))
    ref = torch.stack([naive_fd(spec, i) for i in range(4)])
    scale = ref.abs().max()
    for engine in (
        Engine("cpu"),
        Engine("cpu", forward="eager"),
        Engine("cpu", networks_per_batch=4),
        Engine("cpu", networks_per_batch=2, inputs_per_chunk=100),
        Engine("cpu", forward="channels_last"),
        Engine("cpu", networks_per_batch=2, forward="channels_last"),
    ):
        got = torch.cat(
            [
                engine.gradients(spec, list(range(b, b + engine.networks_per_batch)))
                for b in range(0, 4, engine.networks_per_batch)
            ]
        )
        torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5 * scale.item())


def test_local_forward_is_used_where_the_model_traces():
    for arch, applies in [
        ("lenet", True),
        ("lenet_nopool", True),
        ("logreg", True),
        ("toy_models:input_twice", True),
        ("toy_models:branchy", False),  # branches on values: fx cannot trace it, the plain forward runs
    ]:
        engine, spec = Engine("cpu"), Spec(arch, (1, 16, 16))
        got = engine.gradients(spec, [0])
        assert (engine._local_obj is not None) == applies, arch
        ref = naive_fd(spec, 0)
        torch.testing.assert_close(got[0], ref, rtol=1e-4, atol=1e-5 * ref.abs().max().item())


def windows(arch, shape, chunk=0):
    """The window size (h, w) of each traced node in LocalForward's plan for one chunk."""
    spec = Spec(arch, shape)
    local = LocalForward(spec.network(0), [(a, min(a + 64, spec.dim)) for a in range(0, spec.dim, 64)])
    local.forward(spec.network(0), spec.x0(), spec.step, chunk)
    out = {}
    for (c, name, *_), plan in local._plans.items():
        where = plan if isinstance(plan, Window) else plan[1]
        out[name] = (where.h, where.w)
    return out


def test_windows_grow_by_the_kernel_and_stop_at_the_map():
    # LeNet at 32x32: a pixel reaches 5x5 of conv1's 28x28 outputs, 3x3 pooled cells, 7x7 of conv2's
    # 10x10 outputs and 4x4 of its 5x5 pooled cells (chunk 7, rows 14 and 15, is in the middle of the image).
    w = windows("lenet", (1, 32, 32), chunk=7)
    assert [w[n] for n in ("conv1", "pool", "conv2", "pool_1")] == [(5, 5), (3, 3), (7, 7), (4, 4)]
    # ResNet-18: 3x3 after the stem, +2 per 3x3 convolution through the first stage (11x11 after it),
    # then the stride-2 stage; the third stage is whole.
    w = windows("resnet18", (1, 32, 32), chunk=7)
    assert w["conv1"] == (3, 3)
    assert [w[f"layers_{b}_conv{c}"] for b in (0, 1) for c in (1, 2)] == [(5, 5), (7, 7), (9, 9), (11, 11)]
    assert w["layers_2_conv1"] == (7, 7) and w["layers_3_conv2"] == (13, 13)
    assert w["layers_4_conv1"] == (8, 8)


@pytest.mark.parametrize(
    "arch, shape",
    [
        ("lenet", (1, 32, 32)),
        ("lenet", (3, 32, 32)),
        ("lenet", (2, 18, 18)),
        ("lenet_nopool", (1, 16, 16)),
        ("toy_models:tiny_bn", (2, 16, 16)),
        ("toy_models:local_ops", (2, 15, 15)),
        ("resnet18", (1, 16, 16)),
        ("vgg11_bn", (1, 32, 32)),
        ("densenet121", (1, 16, 16)),
        ("convnext_cifar", (1, 32, 32)),
    ],
)
def test_local_forward_equals_the_plain_forward(arch, shape):
    spec = Spec(arch, shape, step=7.0)
    x0, model = spec.x0(), spec.network(1)
    chunks = [(a, min(a + 45, spec.dim)) for a in range(0, spec.dim, 45)]  # chunks cross rows and channels
    local = LocalForward(model, chunks)
    for c in sorted({0, len(chunks) // 2, len(chunks) - 1}):
        with torch.no_grad():
            ref = model(fd_inputs(x0, spec.step, *chunks[c]))
            got = local.forward(model, x0, spec.step, c)
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5 * ref.abs().max().item())


def test_local_forward_agrees_with_the_plain_forward_on_the_nads_and_reruns_bit_for_bit():
    spec = Spec("lenet", (1, 32, 32), seed=2)
    fast, again, plain = (Engine("cpu", forward=f).moments(spec, range(64)) for f in ("local", "local", "eager"))
    a, b, ref = (nads_from_moments(m, spec)[0] for m in (fast, again, plain))
    assert subspace_agreement(a, ref, 10) >= 0.9999
    assert np.array_equal(a, b)


COMPILED = """
import pickle, sys
import numpy as np
from nads.estimate import Engine, Spec, nads_from_moments, subspace_agreement
spec = Spec("lenet", (1, 32, 32), seed=2)
ref_nads, ref_vals, _ = nads_from_moments(Engine("cpu", forward="eager").moments(spec, range(32)), spec)
for forward, group in (("compiled", 1), ("compiled_channels_last", 2)):
    engines = [Engine("cpu", networks_per_batch=group, forward=forward) for _ in range(2)]
    (a, va, _), (b, vb, _) = (nads_from_moments(e.moments(spec, range(32)), spec) for e in engines)
    rel = np.abs(va[:10] / ref_vals[:10] - 1).max()
    same = np.array_equal(a, b) and np.array_equal(va, vb)
    to_worker = pickle.loads(pickle.dumps(engines[0])).forward  # without its compiled code
    print(forward, subspace_agreement(a, ref_nads, 10), rel, same, to_worker)
# More graphs than Dynamo's default limit of 8 for one code object: 10 input sizes, each with a
# last chunk of its own size. Past that limit it would run them eager, silently.
from torch._dynamo.utils import counters
engine = Engine("cpu", forward="compiled")
for size in range(4, 14):
    engine.moments(Spec("logreg", (1, size, size)), range(1))
print("graphs", counters["stats"]["unique_graphs"], counters["frames"]["ok"], counters["frames"]["total"])
"""


def test_compiled_and_channels_last_forwards_agree_with_eager_and_rerun_bit_for_bit():
    # In a process of its own: once torch.compile has run in a process, PyTorch's autograd
    # refuses to run in the children it forks (pytorch/pytorch wiki: Autograd-and-Fork), and
    # this test process goes on to fork workers for autograd estimates.
    proc = subprocess.run([sys.executable, "-c", COMPILED], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line.split() for line in proc.stdout.splitlines()]
    assert [r[0] for r in rows] == ["compiled", "compiled_channels_last", "graphs"]
    graphs, ok, total = map(int, rows.pop()[1:])
    assert graphs >= 12 and ok == total, (graphs, ok, total)  # every frame compiled, none left to eager
    for forward, agreement, rel, same, to_worker in rows:
        assert float(agreement) >= 0.9999 and float(rel) < 1e-5, (forward, agreement, rel)
        assert same == "True" and to_worker == forward
    with pytest.raises(ParamError, match="forward = 'fast': allowed: auto, local, eager, channels_last, compiled"):
        Engine("cpu", forward="fast")
    assert Engine("cpu").forward == "local"  # auto, on a CPU


def test_a_faster_forward_that_fails_its_check_fails_again_on_a_retry(monkeypatch):
    """Both edges of the input are checked (the last chunk is a shape of its own), and an engine
    keeps a forward only once it has passed: a retry in the same process (a Ray worker's) checks
    again rather than run what failed."""
    import nads.estimate as estimate

    calls = []
    real = estimate._same

    def fails_on_the_last_chunk(fast, plain, precision):
        calls.append(len(fast.reshape(-1)))
        return real(fast, plain, precision) and len(calls) % 2 == 1

    monkeypatch.setattr(estimate, "_same", fails_on_the_last_chunk)
    spec, engine = Spec("lenet", (1, 16, 16)), Engine("cpu", forward="channels_last", inputs_per_chunk=200)
    for attempt in (1, 2):
        with pytest.raises(RuntimeError, match="forward = 'channels_last' computes other outputs than the eager"):
            engine.moments(spec, range(1))
        assert len(calls) == 2 * attempt
    assert calls[0] == 200 and calls[1] == 2 * (256 % 100)  # the first chunk's inputs, the last one's
    monkeypatch.setattr(estimate, "_same", real)
    engine.moments(spec, range(1))  # passes now, and is kept
    assert len(calls) == 4


def test_estimate_equals_pca_of_the_plain_loop_and_reports_convergence():
    spec = Spec("lenet", (1, 16, 16), seed=3)
    r = estimate_nads("lenet", (1, 16, 16), n_networks=40, seed=3, networks_per_batch=3)
    g = torch.stack([naive_fd(spec, i) for i in range(40)]).double().numpy()
    cov = np.cov(g, rowvar=False)
    vals, vecs = np.linalg.eigh(cov)
    np.testing.assert_allclose(r.eigenvalues[:10], vals[::-1][:10], rtol=1e-4)
    for i in range(3):
        assert abs(np.dot(r.nads[i], vecs[:, -1 - i])) == pytest.approx(1, abs=1e-4)
    d = r.diagnostics
    assert d["n_networks"] == 40 and d["rank"] == 39
    assert 0 <= d["half_agreement_top10"] <= 1 and "half_agreement_top100" in d
    np.testing.assert_allclose(np.linalg.norm(r.nads, axis=1), 1, atol=1e-5)


def test_halves_diagnostic_grows_with_networks():
    small = estimate_nads("toy_models:selected_mlp", (1, 4, 4), n_networks=8, estimator="autograd")
    large = estimate_nads("toy_models:selected_mlp", (1, 4, 4), n_networks=400, estimator="autograd")
    assert large.diagnostics["half_agreement_top1"] > 0.9
    assert large.diagnostics["half_agreement_top1"] > small.diagnostics["half_agreement_top1"]


def test_same_seed_same_nads_bytes():
    a = estimate_nads("lenet", (1, 16, 16), n_networks=6, seed=5)
    b = estimate_nads("lenet", (1, 16, 16), n_networks=6, seed=5, networks_per_batch=3)
    c = estimate_nads("lenet", (1, 16, 16), n_networks=6, seed=6)
    assert subspace_agreement(a.nads, b.nads, 3) == pytest.approx(1, abs=1e-6)
    assert subspace_agreement(a.nads, c.nads, 3) < 0.9


def test_three_channel_inputs():
    r = estimate_nads("lenet", (3, 32, 32), n_networks=3)
    assert r.nads.shape == (3072, 3072) and r.diagnostics["dim"] == 3072


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(arch="lenet5"), "arch = 'lenet5': unknown architecture"),
        (dict(arch="lenet", n_networks=1), "nads.n_networks = 1: must be an integer >= 2"),
        (dict(arch="lenet", step=0.0), "nads.step = 0.0: must be > 0"),
        (dict(arch="lenet", estimator="pca"), "nads.estimator = 'pca': allowed: fd, autograd"),
        (
            dict(arch="lenet", input_shape=(1, 8, 8)),
            "arch = 'lenet': building it with in_channels=1, num_classes=1, input_size=8 raised ValueError: "
            "input_size = 8: lenet needs inputs of at least 16x16",
        ),
        (dict(arch="lenet", input_shape=(1, 32)), "nads.input_shape = [1, 32]: must be three positive integers"),
        (dict(arch="lenet", device="tpu"), "device = 'tpu': allowed: auto, cpu, cuda, cuda:N"),
    ],
)
def test_bad_input_fails_at_once(kwargs, message):
    kwargs = {"n_networks": 100_000, **kwargs}  # would take hours if anything ran
    with pytest.raises(ParamError) as e:
        estimate_nads(**kwargs)
    assert str(e.value).startswith(message)


def test_the_shard_list_is_made_on_demand_so_the_resume_key_does_not_grow_with_the_work():
    import pickle

    from nads.estimate import SHARD, Shards

    assert list(Shards(130)) == [range(0, 64), range(64, 128), range(128, 130)] and SHARD == 64
    assert Shards(130)[-1] == range(128, 130) and Shards(128)[1:] == [range(64, 128)]
    with pytest.raises(IndexError):
        Shards(128)[2]
    huge = Shards(10**9)
    assert len(huge) == 15_625_000 and huge[15_624_999] == range(999_999_936, 10**9)
    assert len(pickle.dumps(huge)) < 200 and Shards(10**9) == huge != Shards(10**9 - 1)
