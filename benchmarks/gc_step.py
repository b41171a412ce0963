"""Time per Gradient Canceling step: reverse-over-reverse vs forward-over-reverse.

Both methods of :func:`poisonlib.attacks.gc.gc_gradient` run side by side, in one
process, on the same MNIST-5k data and target, and must give the same gradient
(to 1e-5 relative). Prints seconds per step, the ratio, and peak RSS.

    python benchmarks/gc_step.py [--models lr nn cnn] [--eps 0.03 1] [--repeats 5]
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from poisonlib.attacks.gc import gc_gradient
from poisonlib.data import load_dataset
from poisonlib.grads import mean_gradient, target_params
from poisonlib.models import model_for


def time_step(fn, repeats: int) -> float:
    fn()  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["lr", "nn", "cnn"])
    ap.add_argument("--eps", nargs="+", type=float, default=[0.03, 1.0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--max-cnn-poisons", type=int, default=300, help="cap n_p for the CNN (CPU time)")
    args = ap.parse_args()

    ds = load_dataset("mnist")
    n = len(ds.x_train)
    print(f"MNIST-5k, n = {n}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'model':>5} {'eps_d':>6} {'n_p':>5} {'double_backward s':>18} {'jvp s':>10} {'ratio db/jvp':>13} {'max |diff|/max|g|':>18}")
    for name in args.models:
        model = model_for(name, ds, seed=0).eval()
        w = target_params(model)
        g_mu = mean_gradient(model, ds.x_train, ds.y_train, ds.task)
        for eps in args.eps:
            n_p = max(1, round(eps * n))
            if name == "cnn":
                n_p = min(n_p, args.max_cnn_poisons)
            x_p, y_p = ds.x_train[:n_p].clone(), ds.y_train[:n_p]
            e = n_p / n
            a, _ = gc_gradient(model, w, x_p, y_p, g_mu, e, ds.task, "double_backward")
            b, _ = gc_gradient(model, w, x_p, y_p, g_mu, e, ds.task, "jvp")
            rel = float((a - b).abs().max() / a.abs().max().clamp_min(1e-30))
            assert rel < 1e-5, f"methods disagree: {rel}"
            t_db = time_step(lambda: gc_gradient(model, w, x_p, y_p, g_mu, e, ds.task, "double_backward"), args.repeats)
            t_jvp = time_step(lambda: gc_gradient(model, w, x_p, y_p, g_mu, e, ds.task, "jvp"), args.repeats)
            print(f"{name:>5} {eps:>6g} {n_p:>5} {t_db:>18.4f} {t_jvp:>10.4f} {t_db / t_jvp:>13.2f} {rel:>18.2e}")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")


if __name__ == "__main__":
    main()
