"""Cost of one Gradient Canceling step, against what a user would otherwise run.

Columns, all in one process on the same MNIST-5k tensors, target and poisons:

* ``fwd+bwd``: one forward and one backward over the poisons (summed loss, gradient
  to every parameter): the unit of the floor.
* ``released f64``: the step of the authors' released code as it runs (GC/mnist_*.py,
  see official-code-notes): summed cross-entropy, poison gradient with
  ``create_graph=True``, only the FIRST parameter tensor, float64, objective
  ‖g_c + g_p‖²; LR recomputes the clean gradient over all clean data every step,
  NN and CNN load it precomputed.
* ``released f32 all``: the same step on all parameters in float32, clean gradient
  precomputed: the fair like-for-like comparison with our step.
* ``ours``: :func:`poisonlib.attacks.gc.gc_gradient` with ``method="auto"`` (closed
  form for LR, reverse-over-reverse otherwise), plus the ``jvp`` method for reference.
* ``recompute-all``: the clean ∪ poison gradient rebuilt every step, the old
  baseline of this script, kept and labelled for what it is (no user of the
  released NN / CNN code pays it).

Ratios are ours / released f32 all and ours / fwd+bwd, of medians (the JSON also keeps
each column's minimum). The columns are timed round-robin, one call each per round, so that
load from elsewhere on the machine falls on all of them alike. Peak memory is the growth
of the resident set during one warm-up call of each column (a sampling thread, not running
while the timed calls run). Our gradient must agree
with the released-style step on all parameters to 1e-5 (max abs difference relative
to max |g|) in float64.

    python benchmarks/gc_step.py [--models lr nn cnn] [--eps 0.03 1] [--repeats 5] [--threads 2] [--device cuda]

On ``--device cuda`` every call ends with ``torch.cuda.synchronize()`` and the memory column is
the CUDA peak allocated during the warm-up call (``torch.cuda.max_memory_allocated``), not RSS.
"""

from __future__ import annotations

import argparse
import gc
import json
import threading
import time

import torch

from poisonlib.attacks.gc import gc_gradient, resolve_method
from poisonlib.data import load_dataset
from poisonlib.grads import mean_gradient, sum_gradient, target_params
from poisonlib.models import loss_fn, model_for


def fwd_bwd(model, x_p, y_p, task):
    """One forward + backward over the poisons (the floor's unit)."""
    model.zero_grad(set_to_none=True)
    loss_fn(task, reduction="sum")(model(x_p), y_p).backward()


def released_step(model, x_p, y_p, task, g_c, first_only=True, x_clean=None, y_clean=None):
    """∂/∂x_p ‖g_c + g_p‖² with summed losses, as the released GC scripts compute it.

    ``g_c`` is the precomputed summed clean gradient (list, one tensor per parameter
    used); with ``x_clean`` given it is recomputed every step (the released LR script).
    """
    params = list(model.parameters())[:1] if first_only else list(model.parameters())
    loss = loss_fn(task, reduction="sum")
    if x_clean is not None:
        g_c = torch.autograd.grad(loss(model(x_clean), y_clean), params)
    x_p = x_p.detach().requires_grad_(True)
    g_p = torch.autograd.grad(loss(model(x_p), y_p), params, create_graph=True)
    obj = sum(((a + b) ** 2).sum() for a, b in zip(g_c, g_p))
    return torch.autograd.grad(obj, [x_p])[0]


def recompute_all_step(model, x_clean, y_clean, x_p, y_p, task):
    """∂/∂x_p ½‖(1/n)(Σ_clean ∇ℓ + Σ_poison ∇ℓ)‖², rebuilding the clean part every step."""
    x_p = x_p.detach().requires_grad_(True)
    out = model(torch.cat([x_clean, x_p]))
    loss = loss_fn(task, reduction="sum")(out, torch.cat([y_clean, y_p])) / len(x_clean)
    grads = torch.autograd.grad(loss, list(model.parameters()), create_graph=True)
    return torch.autograd.grad(0.5 * sum((g**2).sum() for g in grads), [x_p])[0]


def _rss_gib() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 2**20


def peak_rss(fn, device="cpu") -> float:
    """Peak extra GiB of resident memory during one call of ``fn`` (a sampling thread; also the warm-up);
    on CUDA the peak allocated memory above what was allocated before the call."""
    gc.collect()
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**30
    start, peak, done = _rss_gib(), [0.0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _rss_gib())
            time.sleep(0.002)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    fn()
    done.set()
    th.join()
    return max(peak[0] - start, 0.0)


def measure(fns: dict, repeats: int, device="cpu") -> dict:
    """``{column: (median seconds per call, minimum, peak extra GiB)}``. The columns are timed
    round-robin, one call each per round, without the memory sampler running, so that load
    from elsewhere on the machine falls on every column alike."""
    if torch.device(device).type == "cuda":  # time the work, not its launch
        fns = {c: (lambda fn=fn: (fn(), torch.cuda.synchronize())) for c, fn in fns.items()}
    mem = {c: peak_rss(fn, device) for c, fn in fns.items()}
    times = {c: [] for c in fns}
    for _ in range(repeats):
        for c, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[c].append(time.perf_counter() - t0)
    out = {}
    for c, ts in times.items():
        ts.sort()
        out[c] = (ts[len(ts) // 2], ts[0], mem[c])
    return out


def check_agreement(model, x, y, x_p, y_p, task) -> float:
    """Max |ours − released step on all parameters| / max |released|, float64 (same objective up to 2n²)."""
    m64 = model.double()
    try:
        x64, xp64 = x.double(), x_p.double()
        n = len(x)
        w = target_params(m64)
        g_sum = sum_gradient(m64, w, x64, y, task)
        ref = released_step(m64, xp64, y_p, task, list(g_sum.values()), first_only=False) / (2 * n * n)
        ours = gc_gradient(m64, w, xp64, y_p, {k: v / n for k, v in g_sum.items()}, len(x_p) / n, task, "auto")[0]
        return float((ours - ref).abs().max() / ref.abs().max())
    finally:
        model.float()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["lr", "nn", "cnn"])
    ap.add_argument("--eps", nargs="+", type=float, default=[0.03, 1.0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-recompute", action="store_true", help="leave out the recompute-all column (slow for the CNN)")
    ap.add_argument("--json", help="also write the rows to this JSON file")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    ds = load_dataset("mnist")
    dev = torch.device(args.device)
    x, y, task = ds.x_train.to(dev), ds.y_train.to(dev), ds.task
    n = len(x)
    print(f"MNIST-5k, n = {n} clean points, torch {torch.__version__}, {torch.get_num_threads()} threads, {dev}; "
          f"median of {args.repeats} (ms); peak extra RSS (GiB) in brackets")
    cols = ["fwd+bwd", "released f64", "released f32 all", "ours", "ours jvp"] + ([] if args.skip_recompute else ["recompute-all"])
    print(f"{'model':>5} {'n_p':>5} {'method':>15} | " + " | ".join(f"{c:>18}" for c in cols) + " | ours/rel32 ours/fb | agree")
    rows = []
    for name in args.models:
        model = model_for(name, ds, seed=0).eval().to(dev)
        w = target_params(model)
        g_mu = mean_gradient(model, x, y, task)
        g_sum = {k: v * n for k, v in g_mu.items()}
        m64 = model_for(name, ds, seed=0).eval().double().to(dev)
        g64_first = [v.double() for v in list(g_sum.values())[:1]]
        x64 = x.double()
        for eps in args.eps:
            n_p = max(1, round(eps * n))
            idx = torch.arange(n_p, device=dev) % n
            x_p, y_p = (x[idx] + 0.01).clone(), y[idx]
            e = n_p / n
            rel = check_agreement(model, x, y, x_p, y_p, task)
            assert rel < 1e-5, f"{name} eps {eps}: gradients disagree ({rel:.2e})"
            xp64 = x_p.double()
            fns = {
                "fwd+bwd": lambda: fwd_bwd(model, x_p, y_p, task),
                "released f64": (lambda: released_step(m64, xp64, y_p, task, None, x_clean=x64, y_clean=y)) if name == "lr"
                else (lambda: released_step(m64, xp64, y_p, task, g64_first)),
                "released f32 all": lambda: released_step(model, x_p, y_p, task, list(g_sum.values()), first_only=False),
                "ours": lambda: gc_gradient(model, w, x_p, y_p, g_mu, e, task, "auto"),
                "ours jvp": lambda: gc_gradient(model, w, x_p, y_p, g_mu, e, task, "jvp"),
                "recompute-all": lambda: recompute_all_step(model, x, y, x_p, y_p, task),
            }
            res = measure({c: fns[c] for c in cols}, args.repeats, dev)
            row = dict(model=name, eps_d=eps, n_poison=n_p, method=resolve_method(model, w, "auto"), agreement=rel,
                       threads=torch.get_num_threads(), torch=torch.__version__, device=str(dev),
                       **{f"{c} ms": 1e3 * res[c][0] for c in cols}, **{f"{c} GiB": res[c][2] for c in cols})
            row["ours / released f32 all"] = res["ours"][0] / res["released f32 all"][0]
            row["ours / released f64"] = res["ours"][0] / res["released f64"][0]
            row["ours / fwd+bwd"] = res["ours"][0] / res["fwd+bwd"][0]
            row["ours / fwd+bwd (min)"] = res["ours"][1] / res["fwd+bwd"][1]
            row.update({f"{c} min ms": 1e3 * res[c][1] for c in cols})
            rows.append(row)
            print(f"{name:>5} {n_p:>5} {row['method']:>15} | " + " | ".join(f"{1e3 * res[c][0]:>10.2f} [{res[c][2]:>4.2f}]" for c in cols)
                  + f" | {row['ours / released f32 all']:>10.2f} {row['ours / fwd+bwd']:>6.2f} | {rel:.1e}", flush=True)
            if args.json:  # after every row, so that a run stopped early keeps what it measured
                with open(args.json, "w") as f:
                    json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
