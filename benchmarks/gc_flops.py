"""Floating-point work of one GC step against one forward + backward, counted by
``torch.profiler`` (``with_flops=True``) on the same MNIST-5k tensors as ``gc_step.py``.

It says whether a step ratio is set by arithmetic (flops ratio ≈ time ratio) or by
overhead. The profiler counts flops for matrix products and forward convolutions but not
for ``convolution_backward``, so the CNN's counts are lower bounds and its ratio is left out.

    python benchmarks/gc_flops.py [--eps 0.03 1] [--json benchmarks/results/gc_flops_cpu.json]
"""

from __future__ import annotations

import argparse
import json

import torch
from torch.profiler import ProfilerActivity, profile

from poisonlib.attacks.gc import gc_gradient, resolve_method
from poisonlib.data import load_dataset
from poisonlib.grads import mean_gradient, target_params
from poisonlib.models import loss_fn, model_for


def flops(fn) -> int:
    with profile(activities=[ProfilerActivity.CPU], with_flops=True) as p:
        fn()
    return int(sum(e.flops for e in p.key_averages() if e.flops))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["lr", "nn"])
    ap.add_argument("--eps", nargs="+", type=float, default=[0.03, 1.0])
    ap.add_argument("--json")
    args = ap.parse_args()
    ds = load_dataset("mnist")
    x, y, task = ds.x_train, ds.y_train, ds.task
    rows = []
    for name in args.models:
        model = model_for(name, ds, seed=0).eval()
        w, g_mu = target_params(model), mean_gradient(model, x, y, task)
        for eps in args.eps:
            n_p = max(1, round(eps * len(x)))
            x_p, y_p = x[torch.arange(n_p) % len(x)] + 0.01, y[torch.arange(n_p) % len(x)]

            def fwd_bwd():
                model.zero_grad(set_to_none=True)
                loss_fn(task, reduction="sum")(model(x_p), y_p).backward()

            fb = flops(fwd_bwd)
            ours = flops(lambda: gc_gradient(model, w, x_p, y_p, g_mu, n_p / len(x), task, "auto"))
            rows.append(dict(model=name, n_poison=n_p, method=resolve_method(model, w), fwd_bwd_flops=fb, ours_flops=ours, ratio=ours / fb))
            print(f"{name:>4} n_p={n_p:>5} {rows[-1]['method']:>15}: fwd+bwd {fb / 1e9:.3f} GFLOP, ours {ours / 1e9:.3f} GFLOP, ratio {ours / fb:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
