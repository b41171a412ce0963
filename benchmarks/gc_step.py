"""Time per Gradient Canceling step: poisonlib against a straightforward implementation.

The straightforward ("naive") step is reverse-over-reverse autograd written
the obvious way: the gradient of the summed loss over clean ∪ poison data with
``create_graph=True`` on every step, then ``backward`` through ½‖g(χ)‖² (a
Python sum over parameter tensors). poisonlib's step (``gc_gradient``)
precomputes g(μ) once per GC run (the target is fixed) and differentiates only
through the poison term, by reverse-over-reverse (``double_backward``, the
default) or forward-over-reverse (``jvp``: ∇_x ⟨g(ν̂), stop_grad(r)⟩ with the
directional derivative from ``torch.func.jvp``).

All three run side by side in one process on the same MNIST-5k data and
target; peak memory is the growth of the resident set during each
measurement (sampled by a thread). The gradients must
agree to 1e-5 (max abs difference relative to max |g|, in float64).

    python benchmarks/gc_step.py [--models lr nn cnn] [--eps 0.03 1] [--repeats 3]
"""

from __future__ import annotations

import argparse
import gc
import threading
import time

import torch
from torch.func import functional_call

from poisonlib.attacks.gc import gc_gradient
from poisonlib.data import load_dataset
from poisonlib.grads import mean_gradient, target_params
from poisonlib.models import loss_fn, model_for


def naive_step(model, x_clean, y_clean, x_p, y_p, task):
    """∂/∂x_p of ½‖(1/n)(Σ_clean ∇ℓ + Σ_poison ∇ℓ)‖², recomputing the clean part each step."""
    x_p = x_p.detach().requires_grad_(True)
    params = [p for p in model.parameters()]
    out = model(torch.cat([x_clean, x_p]))
    loss = loss_fn(task, reduction="sum")(out, torch.cat([y_clean, y_p])) / len(x_clean)
    grads = torch.autograd.grad(loss, params, create_graph=True)
    obj = 0.5 * sum((g**2).sum() for g in grads)
    obj.backward(inputs=[x_p])
    return x_p.grad


def _rss_gib() -> float:
    with open("/proc/self/status") as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))
    return kb / 2**20


def measure(fn, repeats: int) -> tuple[float, float]:
    """(seconds per call, peak extra GiB of resident memory while ``fn`` runs).

    A thread samples the process's resident set every 2 ms; the baseline is
    taken just before the warm-up call.
    """
    start, peak, done = _rss_gib(), [0.0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _rss_gib())
            time.sleep(0.002)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    fn()  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    t = (time.perf_counter() - t0) / repeats
    done.set()
    th.join()
    return t, max(peak[0] - start, 0.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["lr", "nn", "cnn"])
    ap.add_argument("--eps", nargs="+", type=float, default=[0.03, 1.0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--n-clean", type=int, default=None, help="use only this many clean training points (default: all 2,800)")
    args = ap.parse_args()

    ds = load_dataset("mnist", n_train=args.n_clean)
    x, y = ds.x_train, ds.y_train
    n = len(x)
    print(f"MNIST-5k, n = {n} clean points, torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    head = f"{'model':>5} {'eps_d':>6} {'n_p':>5} | {'naive s':>9} {'GiB':>5} | {'ours(db) s':>10} {'GiB':>5} | {'ours(jvp) s':>11} {'GiB':>5} | {'naive/db':>8} {'naive/jvp':>9} | {'max rel diff':>12}"
    print(head)
    for name in args.models:
        model = model_for(name, ds, seed=0).eval()
        w = target_params(model)
        g_mu = mean_gradient(model, x, y, ds.task)
        for eps in args.eps:
            n_p = max(1, round(eps * n))
            x_p, y_p = x[torch.arange(n_p) % n].clone() + 0.01, y[torch.arange(n_p) % n]
            e = n_p / n
            ours = {m: (lambda m=m: gc_gradient(model, w, x_p, y_p, g_mu, e, ds.task, m)[0]) for m in ("double_backward", "jvp")}
            # correctness, in float64: our step's gradient is 1/n · J^T r, the naive one the same
            m64 = model.double()
            ref = naive_step(m64, x.double(), y, x_p.double(), y_p, ds.task)
            w64, g64 = target_params(m64), mean_gradient(m64, x.double(), y, ds.task)
            rel = max(float((gc_gradient(m64, w64, x_p.double(), y_p, g64, e, ds.task, m)[0] - ref).abs().max() / ref.abs().max()) for m in ours)
            model.float()
            assert rel < 1e-5, f"{name} eps {eps}: gradients disagree ({rel:.2e})"
            gc.collect()
            t_n, m_n = measure(lambda: naive_step(model, x, y, x_p, y_p, ds.task), args.repeats)
            t_d, m_d = measure(ours["double_backward"], args.repeats)
            t_j, m_j = measure(ours["jvp"], args.repeats)
            print(f"{name:>5} {eps:>6g} {n_p:>5} | {t_n:>9.4f} {m_n:>5.2f} | {t_d:>10.4f} {m_d:>5.2f} | {t_j:>11.4f} {m_j:>5.2f} | "
                  f"{t_n / t_d:>8.2f} {t_n / t_j:>9.2f} | {rel:>12.1e}", flush=True)


if __name__ == "__main__":
    main()
