"""Why batching K LeNets into one computation does not pay on a CPU: each layer's
kernels, K separate calls (what the loop runs) against the best batched forms.

K independent models share no arithmetic: batching can only win if one big call
runs the same FLOPs faster than K small ones. This measures that per layer, on
one thread, for K LeNets on batch 128 (the sweep's shapes):

- convolutions: K separate calls; one grouped call (what vmap produces), in
  NCHW and channels-last layouts;
- the first convolution on D(v) data, x_k = sigma*z + a_k v_k: K filters banks
  on the *shared* noise z as one GEMM over its im2col (a rank-one term per model
  is left out, so this row is a lower bound on that design's cost);
- fully connected layers: K matmuls against one batched matmul.

Then the bound: one LeNet training step (registry model, torch.optim.SGD,
clip_grad_norm_) on the full batch, and on 2 samples, which is almost nothing but
per-step overhead (operator dispatch, autograd, optimizer) that batching might
also share. Giving every convolution its best form and removing all of that
overhead bounds what batching can gain on one thread.

    python benchmarks/bench_batched_kernels.py            # K = 16
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from nads.models import get_model

backward = torch.ops.aten.convolution_backward


def seconds(fn, repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _repeat(k: int, fn) -> None:
    for _ in range(k):
        fn()


def conv_cases(k: int, b: int):
    """{layer: {form: callable doing that layer's work for all K models}}."""
    cases = {}
    for name, cin, cout, side in (("conv1 (1->6, 32x32)", 1, 6, 32), ("conv2 (6->16, 14x14)", 6, 16, 14)):
        out = side - 4
        x, w, g = torch.randn(b, cin, side, side), torch.randn(cout, cin, 5, 5), torch.randn(b, cout, out, out)
        mask = [cin > 1, True, True]  # the first layer needs no input gradient
        # Each separate result is dropped before the next call, as in the loop (keeping
        # all K alive would add page faults that the loop does not pay).
        fwd = {"K separate calls": lambda x=x, w=w: _repeat(k, lambda: F.conv2d(x, w))}
        bwd = {
            "K separate calls": lambda x=x, w=w, g=g, cout=cout, mask=mask: _repeat(
                k, lambda: backward(g, x, w, [cout], [1, 1], [0, 0], [1, 1], False, [0, 0], 1, mask)
            )
        }
        for label, fmt in (("grouped, NCHW", torch.contiguous_format), ("grouped, channels-last", torch.channels_last)):
            xg = torch.randn(b, cin * k, side, side).contiguous(memory_format=fmt)
            gg = torch.randn(b, cout * k, out, out).contiguous(memory_format=fmt)
            wg = torch.randn(cout * k, cin, 5, 5)
            fwd[label] = lambda xg=xg, wg=wg: F.conv2d(xg, wg, groups=k)
            bwd[label] = lambda xg=xg, wg=wg, gg=gg, cout=cout, mask=mask: backward(
                gg, xg, wg, [cout * k], [1, 1], [0, 0], [1, 1], False, [0, 0], k, mask
            )
        if cin == 1:
            cols = F.unfold(x, 5).transpose(1, 2).reshape(-1, 25).contiguous()  # (B*784, 25), shared by all K
            wk, gk = torch.randn(25, cout * k), torch.randn(cout * k, cols.shape[0])
            fwd["shared noise, one GEMM"] = lambda cols=cols, wk=wk: cols @ wk
            bwd["shared noise, one GEMM"] = lambda cols=cols, gk=gk: gk @ cols
        cases[f"{name} forward"] = fwd
        cases[f"{name} backward"] = bwd
    for name, n_in, n_out in (("fc1 (400->120)", 400, 120), ("fc2 (120->84)", 120, 84)):
        a, w = torch.randn(b, n_in), torch.randn(n_in, n_out)
        ak, wk = torch.randn(k, b, n_in), torch.randn(k, n_in, n_out)
        cases[f"{name} forward"] = {
            "K separate calls": lambda a=a, w=w: _repeat(k, lambda: a @ w),
            "one batched matmul": lambda ak=ak, wk=wk: torch.bmm(ak, wk),
        }
    return cases


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", type=int, default=16)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(1)
    print(
        f"K={args.models} LeNets, batch {args.batch}, one thread; best of {args.repeats}; "
        "ms per model (time / K), and K separate calls' time / this form's time\n"
    )
    print("| layer | form | ms per model | speed-up vs separate |")
    print("|---|---|---|---|")
    saved = 0.0
    for layer, forms in conv_cases(args.models, args.batch).items():
        times = {form: seconds(fn, args.repeats) / args.models for form, fn in forms.items()}
        base = times["K separate calls"]
        for form, t in times.items():
            print(f"| {layer} | {form} | {1e3 * t:.3f} | {base / t:.2f}x |")
        if layer.startswith("conv"):
            saved += base - min(times.values())
    full, tiny = (training_step_seconds(b, args.repeats) for b in (args.batch, 2))
    print(
        f"\nLeNet training step: {1e3 * full:.2f} ms on {args.batch} samples, {1e3 * tiny:.2f} ms on 2 "
        f"(overhead). Best convolution forms save {1e3 * saved:.2f} ms; with no overhead either, "
        f"a step takes {1e3 * (full - saved - tiny):.2f} ms: batching gains at most "
        f"{full / (full - saved - tiny):.2f}x on one thread."
    )


def training_step_seconds(batch: int, repeats: int) -> float:
    torch.manual_seed(0)
    model = get_model("lenet", 1, 2, 32)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(batch, 1, 32, 32), torch.randint(0, 2, (batch,))

    def steps(n=20):
        for _ in range(n):
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
            opt.step()

    return seconds(steps, repeats) / 20


if __name__ == "__main__":
    main()
