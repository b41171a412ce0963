"""Table 8 (Ex. 2, App. C.8): GC against the target w and the scaled target w/2."""

from __future__ import annotations


import pandas as pd

from .. import paper
from ..rows import _fmt, eps_label, gc_summary, group_by_eps, select, verdict
from .table2 import MNIST_ROWS
from ._base import gc_cells, register_experiment


#: Table 8's ε_d.
EPS_D = (0.03, 0.1, 1.0)
#: The target scales: w and w/2 (last layer halved).
SCALES = (1.0, 0.5)


@register_experiment("table8", "GC against w and the scaled target w/2 (last layer halved) on MNIST (CNN at the paper profile only)")
def cells(prof):
    rows = MNIST_ROWS if prof.full_grids else MNIST_ROWS[:2]  # CNN w/2 at the paper profile only (CPU time)
    return [c for d, m, w in rows for s in SCALES for c in gc_cells(prof, d, m, w, EPS_D, scale=s)]


def table8(rows: list[dict], model: str, tau_w: float, tau_w2: float) -> pd.DataFrame:
    """Table 8 for one MNIST model: GC drops against w and w/2, ours beside the paper's."""
    rep = paper.TABLE8[model]
    out = []
    for scale, key, tau in ((1.0, "w", tau_w), (0.5, "w2", tau_w2)):
        for eps, rs in group_by_eps(select(rows, dataset="mnist", model=model, scale=scale)).items():
            s = gc_summary(rs)
            p = rep[key].get(eps)
            out.append({
                "target": "w" if scale == 1 else "w/2",
                "τ(2) ours / paper": f"{tau:.2f} / {rep['tau_' + key]:.2f}",
                "eps_d": eps_label(eps),
                "paper drop (%)": _fmt(p),
                "our drop (%)": _fmt(s["mean"], s["std"]) if s["seeds"] else s["reason"],
                "verdict": verdict(s["mean"], p) if s["seeds"] else "not run at this profile",
                "‖g(χ)‖ after GC": "–" if not s["seeds"] else f"{s['grad_mixed']:.3g}",
            })
    return pd.DataFrame(out)
