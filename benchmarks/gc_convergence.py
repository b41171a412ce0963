"""Time to stationarity: seconds and GC steps until the residual ‖g(μ) + ε_d g(ν̂)‖ falls to
a fixed fraction of ‖g(μ)‖, above τ, our default against the released code's loop.

Problems (unbounded features, so that above τ the target is reachable):

* ``gaussian10``: the Sec. 3.2 binary problem of ``tests/test_gc_convergence.py``
  (GradPC ε_w = 1 on an L-BFGS clean model);
* ``mnist-lr`` / ``mnist-nn``: MNIST-5k, the cpu profile's GradPC targets (LR ε_w = 1,
  NN ε_w = 0.5, paper protocol), GC over all parameters, ``clip=None``.

Rules compared, each a :func:`poisonlib.attacks.gc.gradient_canceling` run of the same
problem, seed and poison initialisation:

* ``ours``: the default (Adam, lr 0.1, betas (0.5, 0.9), cosine);
* ``released lr=L``: the released code's loop, plain gradient descent on the summed
  objective ‖Σ_clean ∇ℓ + Σ_poison ∇ℓ‖² with a cosine step, all parameters in the
  objective so that it minimises the same residual (``variant="official",
  params="all"``), at the released step 10 and at every step of ``--released-lrs``;
  the best stable one is reported beside it; it gets ``--released-epochs`` steps
  (default 5 × ours), since its cosine step is what the released scripts run to T;
* ``paper``: App. C.1's setting (SGD, momentum 0.9, lr 0.5, cosine).

Seconds to the residual = the run's wall time × (steps to the residual / steps run)
(every step costs the same); a run that never gets there reports the residual it
reached. Peak resident memory of the whole process is printed at the end.

    python benchmarks/gc_convergence.py [--problems gaussian10 mnist-lr mnist-nn] [--rtol 0.01] [--epochs 1000]
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import torch

from poisonlib import data, experiments, models, theory, train
from poisonlib.attacks.gc import gradient_canceling
from poisonlib.attacks.gradpc import gradpc
from poisonlib._validation import PoisonlibError
from poisonlib.grads import global_norm, mean_gradient


def problem(name: str):
    """(clean features, labels, task, target model, τ(2)) of a named problem."""
    if name == "gaussian10":
        ds = data.load_dataset("gaussian10")
        clean, _ = train.train(models.model_for("lr", ds, seed=0), ds.x_train, ds.y_train, ds.task, epochs=20, lr=1.0,
                               optimizer="lbfgs", progress=False)
        tgt, _ = gradpc(clean, ds.x_train, ds.y_train, ds.task, 1.0, seed=0, progress=False)
    else:
        model, eps_w = {"mnist-lr": ("lr", 1.0), "mnist-nn": ("nn", 0.5)}[name]
        ds = experiments.load_for_profile("mnist", "cpu")
        _, tgt, _ = experiments.clean_and_target(ds, model, eps_w, experiments.get_profile("cpu"), progress=False)
    tgt = tgt.eval()
    return ds.x_train, ds.y_train, ds.task, tgt, float(theory.tau_model(tgt, ds.x_train, ds.y_train, ds.task)["tau2"])


def time_to(res, seconds: float, thr: float) -> dict:
    hist = res.history["residual"] + [res.history["final_residual"]]
    hit = next((i for i, r in enumerate(hist) if r <= thr), None)
    steps = len(hist) - 1
    return dict(steps=hit, seconds=None if hit is None else seconds * hit / max(steps, 1), final_residual=res.history["final_residual"],
                run_seconds=seconds, diverged=False)


def run_rule(x, y, task, tgt, eps_d, epochs, thr, **kw) -> dict:
    t0 = time.perf_counter()
    try:
        res = gradient_canceling(tgt, x, y, task, eps_d, epochs=epochs, clip=None, device="cpu", progress=False, seed=0, **kw)
    except PoisonlibError as e:  # diverged
        return dict(steps=None, seconds=None, final_residual=float("nan"), run_seconds=time.perf_counter() - t0, diverged=True, error=str(e))
    return time_to(res, time.perf_counter() - t0, thr)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", nargs="+", default=["gaussian10", "mnist-lr", "mnist-nn"])
    ap.add_argument("--factor", type=float, default=1.5, help="ε_d = factor × τ(2)")
    ap.add_argument("--rtol", type=float, default=0.01, help="stop criterion: residual ≤ rtol × ‖g(μ)‖")
    ap.add_argument("--epochs", type=int, default=1000)
    ap.add_argument("--released-epochs", type=int, default=None, help="steps given to the released loop (default: 5 × --epochs)")
    ap.add_argument("--released-lrs", nargs="+", type=float, default=[1e-3, 1e-2, 1e-1, 1.0, 10.0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="also write the rows to this JSON file")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for name in args.problems:
        x, y, task, tgt, tau = problem(name)
        eps_d = args.factor * tau
        thr = args.rtol * global_norm(mean_gradient(tgt, x, y, task))
        print(f"\n{name}: n = {len(x)}, τ(2) = {tau:.3g}, ε_d = {eps_d:.3g} ({round(eps_d * len(x))} poisons), "
              f"target residual {thr:.3g} ({args.rtol:g} ‖g(μ)‖), {args.epochs} steps, {torch.get_num_threads()} threads", flush=True)
        rules = {"ours": {}, "paper (App. C.1)": dict(optimizer="paper")}
        rules.update({f"released lr={lr:g}": dict(variant="official", params="all", lr=lr) for lr in args.released_lrs})
        out = {}
        for rule, kw in rules.items():
            epochs = (args.released_epochs or 5 * args.epochs) if rule.startswith("released") else args.epochs
            out[rule] = r = run_rule(x, y, task, tgt, eps_d, epochs, thr, **kw)
            rows.append(dict(problem=name, tau=tau, eps_d=eps_d, rule=rule, threshold=thr, epochs=epochs, **r))
            got = "diverged" if r["diverged"] else (f"{r['steps']:>5d} steps {r['seconds']:>8.2f} s" if r["steps"] is not None
                                                    else f"not reached, residual {r['final_residual']:.3g}")
            print(f"  {rule:>22}: {got}   ({epochs} steps run in {r['run_seconds']:.1f} s)", flush=True)
            if args.json:  # after every run, so that a long benchmark stopped early keeps what it measured
                with open(args.json, "w") as f:
                    json.dump(rows, f, indent=1)
        rel = {k: v for k, v in out.items() if k.startswith("released") and v["seconds"] is not None}
        best = min(rel, key=lambda k: rel[k]["seconds"]) if rel else None
        ours = out["ours"]
        if best and ours["seconds"]:
            print(f"  best released step: {best}; released / ours seconds = {rel[best]['seconds'] / ours['seconds']:.1f}")
        else:
            stable = {k: v for k, v in out.items() if k.startswith("released") and not v["diverged"]}
            lowest = min(stable, key=lambda k: stable[k]["final_residual"]) if stable else None
            print(f"  no released step reaches it in {args.released_epochs or 5 * args.epochs} steps" + (f"; lowest residual {stable[lowest]['final_residual']:.3g} at {lowest}" if lowest else ""))
    print(f"\npeak resident memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
