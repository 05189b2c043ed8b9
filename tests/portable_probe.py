"""Fingerprints (sha256 of the bytes) of the kernels nads computes with, one JSON line.

Run by tests/test_portable.py natively and under QEMU's emulated CPUs."""

import hashlib
import json

# isort: off
import nads  # noqa: F401  (first: nads.portable's settings precede numpy and torch)
import numpy as np
import torch

# isort: on
from nads.estimate import Engine, GradientMoments, Spec, eig_desc
from nads.models import get_model
from nads.train import Schedule, init_model, train_batched


def digest(x) -> str:
    x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x
    return hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest()[:16]


out = {}
grads = Engine("cpu").gradients(Spec("lenet"), [0, 1, 2])  # convolutions, linear layers
out["lenet_fd"] = digest(grads)
moments = GradientMoments(1024)
moments.add(torch.from_numpy(np.random.default_rng(0).standard_normal((40, 1024))))
out["moments"] = digest(moments.outer)  # float64 matrix products
out["eigh"] = digest(eig_desc(moments.covariance()[:256, :256])[1])  # LAPACK
torch.manual_seed(0)
with torch.no_grad():
    out["resnet18"] = digest(get_model("resnet18", 1, 1, 32).eval()(torch.randn(2, 1, 32, 32)))
schedule = Schedule(epochs=1, batch_size=32)
x, y = torch.randn(2, 128, 1, 32, 32, generator=torch.Generator().manual_seed(1)), torch.arange(256).reshape(2, 128) % 2
trained = train_batched(
    [init_model("lenet", i, schedule, 1, 2, 32) for i in range(2)],
    lambda idx: (x[:, idx], y[:, idx]),
    128,
    schedule,
    torch.device("cpu"),
)
out["training"] = digest(torch.cat([p.flatten() for p in trained.params.values()]))  # vmap, SGD
z = np.random.default_rng(2).standard_normal(4096)
out["numpy"] = digest(np.concatenate([np.exp(z), np.sin(z), np.fft.rfft(z).real]))
print(json.dumps(out))
