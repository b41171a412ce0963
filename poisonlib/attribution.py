"""Why our numbers differ from the paper: one factor at a time from ``paper`` to ``released``.

:func:`waterfall_rows` runs Table 2's GC cells (MNIST LR and NN, ε_d ∈ {0.03, 0.1, 1, τ(2)})
under each protocol of :func:`poisonlib.protocols.waterfall`: the paper's text first,
then the released code's choices switched on one by one (the box dropped, the first
parameter tensor only, summed losses, normalised inputs, the 784-128-10 NN, the GradPC
script's clean model, the released step budget, plain gradient descent), so that the
change in each drop is attributed to the factor switched at that step. A last step
replaces the literal ε_w by the calibrated one (``eps_w="calibrated"``, App. C.1) where
that option exists.

:func:`mechanism` says, for one cell, whether its drop comes from *reaching the target*
(retraining agrees with the target and GC cancelled the gradient) or from *destabilising
retraining* (poisons far outside the clean data's scale, the target not reached), by the
thresholds stated there. :func:`separability` measures the MNIST-5k fact that decides what
"residual ≈ 0" can mean for LR.
"""

from __future__ import annotations

import torch

from .cells import Cell
from .grids.table2 import EPS_D as EPS_DS
from .grids.table2 import MNIST_ROWS
from .profiles import get_profile
from .protocols import FACTORS, get_protocol, waterfall
from .rows import finished

#: Table 2's MNIST rows of the attribution (dataset, model, literal ε_w): LR and NN.
ROWS = MNIST_ROWS[:2]
#: What each factor means, for the chapter's table.
FACTOR_LABELS = {
    "paper": "the paper's text (our `paper` protocol)",
    "box": "box → unbounded poisons",
    "gc_params": "all parameters → first tensor in GC's objective",
    "gc_scaling": "mean → summed losses in GC's objective",
    "normalize": "pixels in [0, 1] → normalised (0.1307, 0.3081)",
    "nn": "NN 784-784-784-10 LeakyReLU → 784-128-10 ReLU",
    "clean": "clean model: profile's SGD → GradPC script's Adadelta, 1 epoch",
    "retrain_steps": "retraining: profile's batch → released step budget (6 steps / epoch)",
    "gc_optimizer": "GC optimiser: poisonlib's converging default (Adam) → plain gradient descent (step 1e-3)",
    "eps_w": "literal ε_w → calibrated ε_w (the paper's GradPC drop on the validation split)",
}


def steps(start="paper", end="released", factors=FACTORS) -> list[tuple[str, object]]:
    """``(factor switched, protocol)`` pairs of the walk, the first being ``("paper", paper)``."""
    protos = waterfall(start, end, factors)
    a, b = get_protocol(start), get_protocol(end)
    changed = [f for f in factors if getattr(a, f) != getattr(b, f)]
    return [(get_protocol(start).name, protos[0])] + list(zip(changed, protos[1:]))


def eps_for(eps_ds, model: str) -> tuple:
    """The ε_d of ``model``'s walk: ``eps_ds`` is one tuple for every model or ``{model: tuple}``."""
    return tuple(eps_ds[model] if isinstance(eps_ds, dict) else eps_ds)


def walk_eps(profile, rows=ROWS) -> dict:
    """``{model: ε_d of its walk}`` at ``profile`` (:meth:`~poisonlib.experiments.Profile.attribution_eps_for`)."""
    prof = get_profile(profile)
    return {m: prof.attribution_eps_for(m) for _, m, _ in rows}


def cells(*, rows=ROWS, eps_ds=EPS_DS, seed: int = 0, start="paper", end="released", factors=FACTORS, calibrated: bool = True):
    """``(step, factor, Cell)`` for every (step, row, ε_d) of the walk, one seed (``eps_ds``: a
    tuple, or ``{model: tuple}``); with ``calibrated`` a last step keeps ``end`` and replaces
    the literal ε_w by the calibrated one."""
    out = []
    walk = steps(start, end, factors)
    for i, (factor, proto) in enumerate(walk):
        for d, m, w in rows:
            if factor == "nn" and m != "nn":
                continue  # the architecture switch only concerns the NN row
            out += [(i, factor, Cell("gc", d, m, w, eps_d=e, seed=seed, protocol=proto)) for e in eps_for(eps_ds, m)]
    if calibrated:
        out += [(len(walk), "eps_w", Cell("gc", d, m, "calibrated", eps_d=e, seed=seed, protocol=walk[-1][1]))
                for d, m, _ in rows for e in eps_for(eps_ds, m)]
    return out


def waterfall_rows(profile="cpu", *, rows=ROWS, eps_ds=None, seed: int = 0, start="paper", end="released", calibrated: bool = True,
                   data_root=None, device="auto", results_dir=None, progress=None) -> list[dict]:
    """Run (or load) every cell of the walk (``eps_ds``: a tuple or ``{model: tuple}``; by default
    each model's :meth:`~poisonlib.experiments.Profile.attribution_eps_for`); one row per cell with ``step``, ``factor`` and the cell's metrics (``drop``, ``tau2``, ``grad_mixed``, ``target_agreement``, ``param_distance``, ...)."""
    from .scheduler import run_experiment

    eps_ds = walk_eps(profile, rows) if eps_ds is None else eps_ds
    cs = cells(rows=rows, eps_ds=eps_ds, seed=seed, start=start, end=end, calibrated=calibrated)
    out = run_experiment("table2", profile, cells=[c for _, _, c in cs], data_root=data_root, device=device, results_dir=results_dir,
                         progress=progress)
    for (i, factor, _), r in zip(cs, out):
        r.update(step=i, factor=factor, factor_label=FACTOR_LABELS.get(factor, factor))
    # a step that does not concern a row carries the previous step's numbers for it (the NN switch for LR)
    return _fill(out, rows, eps_ds)


def _fill(out, rows, eps_ds):
    by = {(r["step"], r["model"], _k(r["eps_d"])): r for r in out}
    n_steps = max(r["step"] for r in out) + 1
    labels = {r["step"]: (r["factor"], r["factor_label"], r["protocol"]) for r in out}
    filled = []
    for i in range(n_steps):
        for _, m, _ in rows:
            for e in eps_for(eps_ds, m):
                r = by.get((i, m, _k(e)))
                if r is None:
                    prev = next(by[(j, m, _k(e))] for j in range(i - 1, -1, -1) if (j, m, _k(e)) in by)
                    f, lab, proto = labels[i]
                    r = {**prev, "step": i, "factor": f, "factor_label": lab + " (no effect on this model)", "protocol": proto, "carried": True}
                    by[(i, m, _k(e))] = r
                filled.append(r)
    return filled


def _k(e):
    return "tau" if e == "tau" else float(e)


def effects(rows: list[dict]) -> dict:
    """Per model, per factor: the change of the mean drop (over the ε_d run at both steps)
    from the step before it to the step that switched it."""
    by = {(r["step"], r["model"], _k(r["eps_d"])): r for r in rows if finished(r)}
    out = {}
    for (i, m, e), r in sorted(by.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        prev = by.get((i - 1, m, e))
        if i == 0 or prev is None or r.get("carried"):
            continue
        out.setdefault(m, {}).setdefault(r["factor"], []).append(r["drop"] - prev["drop"])
    return {m: {f: sum(v) / len(v) for f, v in eff.items()} for m, eff in out.items()}


#: Thresholds of :func:`mechanism` (stated in the chapter).
AGREEMENT_REACHED = 80.0  # % of test points where retrained model and target agree
SCALE_OUTLIER = 10.0  # poison norm / clean image norm beyond which poisons are outliers


def mechanism(row: dict, clean_norm: float) -> str:
    """How a cell's drop arises: ``"reaches the target"`` (retraining agrees with the target on
    ≥ :data:`AGREEMENT_REACHED` % of the test points), ``"destabilises retraining"`` (the target
    is not reached and the poisons' mean norm is ≥ :data:`SCALE_OUTLIER` × the clean images'),
    ``"moves toward the target"`` (neither, with a drop of at least a quarter of the target's),
    else ``"little effect"``."""
    if not finished(row):
        return "not run"
    if row["target_agreement"] >= AGREEMENT_REACHED:
        return "reaches the target"
    if row.get("poison_norm_mean", 0.0) >= SCALE_OUTLIER * clean_norm:
        return "destabilises retraining"
    if row["drop"] <= 0.25 * row["target_drop"] < 0:
        return "moves toward the target"
    return "little effect"


def clean_norm(ds) -> float:
    """Mean L2 norm of the clean training images (the scale poisons are compared with)."""
    return float(ds.x_train.flatten(1).norm(dim=1).mean())


def separability(ds, *, epochs: int = 50, seed: int = 0) -> dict:
    """Fit 10-class LR on ``ds``'s training split by L-BFGS (no regulariser) and report the
    training loss, training accuracy (%) and ‖W‖₂: a loss near 0 with 100 % accuracy and a
    large, still growing ‖W‖ means the data are linearly separable, so the retraining loss has
    no finite minimiser and a vanishing GC residual need not pin retraining to the target."""
    from .models import model_for
    from .train import evaluate, train

    m = model_for("lr", ds, seed=seed)
    m, hist = train(m, ds.x_train, ds.y_train, ds.task, epochs=epochs, lr=1.0, optimizer="lbfgs", seed=seed, device="cpu", progress=False)
    ev = evaluate(m, ds.x_train, ds.y_train, ds.task, device="cpu")
    w = torch.cat([p.detach().reshape(-1) for p in m.parameters()])
    return {"train_loss": ev["loss"], "train_accuracy": 100 * ev["accuracy"], "weight_norm": float(w.norm()),
            "loss_curve": hist["loss"], "test_accuracy": 100 * evaluate(m, ds.x_test, ds.y_test, ds.task, device="cpu")["accuracy"]}


def table(rows: list[dict], eps_ds=EPS_DS):
    """The attribution table: one line per step, per model the drop at each ε_d and τ(2)."""
    import pandas as pd

    from .report import eps_label

    recs = {}
    for r in rows:
        key = (r["step"], r["factor_label"].replace(" (no effect on this model)", ""))
        rec = recs.setdefault(key, {"step": r["step"], "switched": key[1]})
        m = r["model"].upper()
        val = "–" if not finished(r) else f"{r['drop']:+.1f}"
        rec[f"{m} ε_d={eps_label(r['eps_d'])}"] = val
        if finished(r):
            rec[f"{m} τ(2)"] = f"{r['tau2']:.3g}"
    return pd.DataFrame(list(recs.values()))
