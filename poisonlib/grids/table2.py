"""Table 2 (and Table 4): GC's accuracy drops at ε_d = 0.03, 0.1, 1, τ(2), mean ± std over seeds."""

from __future__ import annotations

import math

import pandas as pd

from .. import paper
from ..rows import NOT_IN_GRID, _axis, _fmt, done, eps_label, gc_summary, group_by_eps, select, verdict
from ._base import gc_cells, register_experiment


#: Table 2's ε_d (τ: the target's τ(2)).
EPS_D = (0.03, 0.1, 1.0, "tau")
#: (dataset, model, eps_w) rows of Table 2 (Sec. 5.1: eps_w = 0.5, except 1 for MNIST LR).
ROWS = (("mnist", "lr", 1.0), ("mnist", "nn", 0.5), ("mnist", "cnn", 0.5), ("cifar10", "resnet18", 0.5), ("tinyimagenet", "resnet34", 0.5))
#: The MNIST rows (Tables 3, 8, 9, 10 and the attribution walk use them).
MNIST_ROWS = ROWS[:3]


@register_experiment("table2", "GC accuracy drops at eps_d = 0.03, 0.1, 1, tau(2) (Tables 2 and 4: mean and std over seeds)")
def cells(prof):
    return [c for d, m, w in ROWS for c in gc_cells(prof, d, m, w, EPS_D)]


@register_experiment("table4", "Table 2's GC cells (Table 4 reports their standard deviations)")
def _table4(prof):
    return cells(prof)


def table(rows: list[dict], dataset: str, model: str, eps_ds=None) -> pd.DataFrame:
    """Table 2 / 4 for one (dataset, model): per ε_d the paper's drop (± Table 4's std)
    beside ours (mean ± std over seeds), Δ, the verdict, ‖g(χ)‖ after GC, seeds.

    The lines are the ε_d of ``rows`` or, given ``eps_ds``, those (one not run says so)."""
    rep = paper.table2_row(dataset, model)
    out = []
    groups = group_by_eps(select(rows, dataset=dataset, model=model, scale=1.0))
    if eps_ds is not None:
        groups = {e: groups.get(e, [{"status": "skipped", "reason": NOT_IN_GRID}]) for e in _axis(eps_ds, ())}
    for eps, rs in groups.items():
        s = gc_summary(rs)
        p = rep["gc"].get(eps)
        out.append({
            "eps_d": eps_label(eps),
            "eps_d used": "–" if math.isnan(s["eps_used"]) else round(s["eps_used"], 4),
            "paper drop (%)": _fmt(p, rep["gc_std"].get(eps, float("nan"))),
            "our drop (%)": _fmt(s["mean"], s["std"]) if s["seeds"] else s["reason"],
            "Δ (ours − paper)": _fmt(s["mean"] - p) if s["seeds"] and p is not None else "–",
            "verdict": verdict(s["mean"], p) if s["seeds"] else "not run at this profile",
            "‖g(χ)‖ after GC": "–" if not s["seeds"] else f"{s['grad_mixed']:.3g}",
            "seeds": s["seeds"],
        })
    return pd.DataFrame(out)


def target_info(rows: list[dict], dataset: str, model: str, scale: float = 1.0) -> dict | None:
    """The target's numbers (clean / target accuracy, τ) from any run GC row of it."""
    ok = done(select(rows, dataset=dataset, model=model, scale=scale))
    return ok[0] if ok else None


def target_comparison(info: dict | None, dataset: str, model: str) -> pd.DataFrame:
    """Clean accuracy, the GradPC target's drop and τ: the paper's beside ours."""
    rep = paper.table2_row(dataset, model)
    get = (lambda k: float("nan")) if info is None else (lambda k: info[k])  # noqa: E731
    rows = [
        ("clean accuracy (%)", rep["clean"], get("clean_acc")),
        ("GradPC target drop (%)", rep["gradpc"], get("target_drop")),
        ("τ(2) of the target", rep["tau"], get("tau2")),
        ("τ(c) of the target", None, get("tauc")),
    ]
    return pd.DataFrame([{"quantity": q, "paper": _fmt(p, signed=False), "ours": _fmt(o, signed=False),
                          "Δ (ours − paper)": "–" if p is None or math.isnan(o) else f"{o - p:+.2f}"} for q, p, o in rows])
