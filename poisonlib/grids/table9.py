"""Table 9: the TGDA-poisoned model as GC target."""

from __future__ import annotations


import pandas as pd

from .. import paper
from ..cells import Cell
from ..rows import _axis, _pair, _target_row, _vs, cell_mean, eps_label, select
from .table2 import MNIST_ROWS
from ._base import register_experiment


#: Table 9's ε_d.
EPS_D = (0.03, 0.1, 1.0, "tau")


@register_experiment("table9", "the TGDA-poisoned model (TGDA at eps_d = 1) as GC target on MNIST: tau and GC drops (one seed; NN, CNN "
                     "at the paper profile)")
def cells(prof):
    out = []
    for d, m, _ in MNIST_ROWS[: 3 if prof.full_grids else 1]:
        out.append(Cell("target", d, m, 1.0, target="tgda"))
        out += [Cell("gc", d, m, 1.0, target="tgda", eps_d=e) for e in EPS_D]
    return out


def table9(rows: list[dict], eps_ds=None, models=None) -> pd.DataFrame:
    """Table 9: the TGDA-poisoned model as GC target; its drop and τ, and GC's drops, per model
    (``models``, default the paper's) and ε_d (``eps_ds``, default :data:`EPS_D`)."""
    out = []
    for model, rep in paper.TABLE9.items():
        if models is not None and model not in models:
            continue
        t = _target_row(rows, model=model)
        for eps in _axis(eps_ds, EPS_D):
            gc, why = cell_mean(select(rows, kind="gc", model=model, eps_d=eps))
            out.append({
                "model": model.upper(), "eps_d": eps_label(eps),
                "TGDA target drop ours / paper": _pair(t["target_drop"] if t else None, rep["tgda"]),
                "τ ours / paper": _vs(t, "tau2", rep["tau"]),
                "GC ours / paper": _pair(gc, rep["gc"].get(eps)) if gc is not None else f"– ({why})",
                "GC reaches target drop (ours)": "–" if gc is None or t is None else f"{gc / t['target_drop']:.0%}" if t["target_drop"] < 0 else "target not below clean",
            })
    return pd.DataFrame(out)
