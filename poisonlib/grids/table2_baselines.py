"""Table 2's baseline columns: TGDA and Gradient Matching beside GC."""

from __future__ import annotations


import pandas as pd

from .. import paper
from ..rows import _axis, _pair, cell_mean, eps_label, select
from .table2 import ROWS
from ._base import attack_cells, below_paper, register_experiment


#: The ε_d of the baseline columns of Table 2.
EPS_D = (0.03, 0.1, 1.0)
#: The baselines of Table 2.
ATTACKS = ("tgda", "gm")


@register_experiment("table2_baselines", "TGDA and Gradient Matching at eps_d = 0.03, 0.1, 1 on Table 2's rows (one seed; below the paper "
                     "profile NN at 0.03 only)")
def cells(prof):
    return [c for d, m, w in ROWS for a in ATTACKS for c in attack_cells(d, m, w, a, below_paper(prof, m, EPS_D))]


def baseline_table(gc_rows: list[dict], attack_rows: list[dict], dataset: str, model: str, eps_ds=None) -> pd.DataFrame:
    """Table 2 with its baseline columns for one row: per ε_d (``eps_ds``, default the paper's
    0.03, 0.1, 1) the drop of GC, TGDA and Gradient Matching, ours / paper, and whether GC beat
    both baselines on our runs."""
    rep = paper.table2_row(dataset, model)
    out = []
    for eps in _axis(eps_ds, EPS_D):
        gc, why = cell_mean(select(gc_rows, dataset=dataset, model=model, scale=1.0, eps_d=eps))
        line = {"eps_d": eps_label(eps), "GC ours / paper": _pair(gc, rep["gc"].get(eps))}
        base = {}
        for a, label in (("tgda", "TGDA"), ("gm", "GM")):
            base[a], _ = cell_mean(select(attack_rows, dataset=dataset, model=model, attack=a, eps_d=eps))
            line[f"{label} ours / paper"] = _pair(base[a], rep[a].get(eps))
        ran = [v for v in base.values() if v is not None]
        line["GC larger drop than both (ours)"] = "–" if gc is None or len(ran) < 2 else ("yes" if gc < min(ran) else "no")
        line["note"] = why
        out.append(line)
    return pd.DataFrame(out)
