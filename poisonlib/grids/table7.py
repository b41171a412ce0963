"""Table 7: GradPC targets on MNIST-17; KKT (linear models), MT and GC."""

from __future__ import annotations


import pandas as pd

from .. import paper
from ..cells import Cell
from ..rows import _axis, _pair, _target_row, _vs, cell_mean, done, eps_label, select
from ._base import attack_cells, gc_cells, register_experiment


#: Table 7's rows (MNIST-17) and ε_d.
ROWS = (("mnist17", "lr", 1.0), ("mnist17", "nn", 0.5), ("mnist17", "cnn", 0.5))
EPS_D = (0.03, 0.1, 1.0)


@register_experiment("table7", "GradPC targets on MNIST-17: KKT (LR only), MT and GC at eps_d = 0.03, 0.1, 1 (one seed; CNN at the paper "
                     "profile)")
def cells(prof):
    from ..attacks.registry import get_attack

    out = []
    for d, m, w in ROWS if prof.full_grids else ROWS[:2]:  # the CNN row at the paper profile (CPU time)
        out.append(Cell("target", d, m, w))
        for a in ("kkt", "mt"):
            if m == "lr" or not get_attack(a).linear_only:
                out += attack_cells(d, m, w, a, EPS_D)
        out += gc_cells(prof, d, m, w, EPS_D, seeds=(0,))
    return out


def table7(rows: list[dict], eps_ds=None, models=None) -> pd.DataFrame:
    """Table 7: GradPC targets on MNIST-17; per model (``models``, default the paper's) and ε_d
    (``eps_ds``, default 0.03, 0.1, 1) the KKT / MT / GC drops."""
    out = []
    for model, rep in paper.TABLE7.items():
        if models is not None and model not in models:
            continue
        t = _target_row(rows, model=model)
        for eps in _axis(eps_ds, EPS_D):
            line = {"model": model.upper(), "eps_d": eps_label(eps), "clean ours / paper": _vs(t, "clean_acc", rep["clean"]),
                    "τ ours / paper": _vs(t, "tau2", rep["tau"]),
                    "GradPC ours / paper": _pair(t["target_drop"] if t else None, rep["gradpc"])}
            for a, label in (("kkt", "KKT"), ("mt", "MT")):
                rs = select(rows, kind="attack", model=model, attack=a, eps_d=eps)
                p = None if rep[a] is None else rep[a].get(eps)
                if not rs:
                    line[f"{label} ours / paper"] = "n/a (not convex)" if a == "kkt" else "–"
                    continue
                ours, why = cell_mean(rs)
                line[f"{label} ours / paper"] = _pair(ours, p) if ours is not None else f"– / {p if p is None else f'{p:+.2f}'} ({why})"
                if a == "mt":
                    line["MT reached target"] = ("yes" if done(rs)[0]["attack_config"].get("reached") else "no") if done(rs) else "–"
            gc, why = cell_mean(select(rows, kind="gc", model=model, eps_d=eps))
            line["GC ours / paper"] = _pair(gc, rep["gc"].get(eps)) if gc is not None else f"– ({why})"
            out.append(line)
    return pd.DataFrame(out)
