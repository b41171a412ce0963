"""Tables 3 and 10: GC and GC-c against Influence, Sever and MaxUp."""

from __future__ import annotations


import pandas as pd

from .. import paper
from ..cells import Cell
from ..rows import NOT_IN_GRID, _axis, _pair, done, eps_label, select
from .table2 import MNIST_ROWS
from ._base import below_paper, register_experiment


#: Table 10's ε_d.
EPS_D = (0.03, 0.1, 1.0)
#: The defenses of Tables 3 and 10.
DEFENSES = ("influence", "sever", "maxup")


@register_experiment("table10", "GC and GC-c (clipped to the clean range) on MNIST, then Influence / Sever / MaxUp (one seed; below the "
                     "paper profile NN at 0.03 only)")
def cells(prof):
    return [Cell("defense", d, m, w, eps_d=e, clip=c) for d, m, w in MNIST_ROWS for e in below_paper(prof, m, EPS_D) for c in (False, True)]


@register_experiment("table3", "Table 10's cells (Table 3 reports their Sever columns)")
def _table3(prof):
    return cells(prof)


def defended(cell: Cell) -> bool:
    """Whether Table 10 reuses this GC cell's poisons (then they are kept on disk, so that the
    defense cells need not recompute GC): plain GradPC targets on MNIST at its ε_d."""
    return (cell.kind == "gc" and cell.dataset == "mnist" and cell.target == "gradpc" and cell.scale == 1.0 and not cell.gc_options
            and cell.eps_d in EPS_D and (cell.model, cell.eps_w) in {(m, w) for _, m, w in MNIST_ROWS})


def defense_table(rows: list[dict], model: str, defenses=DEFENSES, eps_ds=None) -> pd.DataFrame:
    """Tables 3 / 10 for one MNIST model, one line per (ε_d of ``eps_ds``, default
    :data:`EPS_D`; GC or GC-c; defense): the attack's drop, the drop after the defense
    (GC-d / GC-cd) and the accuracy the defense recovered, each *ours / paper*, and how many
    removed points were poisons."""
    rep = paper.TABLE10[model]["rows"]
    out = []
    for eps in _axis(eps_ds, EPS_D):
        p = rep.get(eps, {})
        for clip, name in ((False, "GC"), (True, "GC-c")):
            ok = done(select(rows, model=model, eps_d=eps, clip=clip))
            r = ok[0] if ok else None
            for d in defenses:
                rp = p.get(d, (None, None))[1 if clip else 0] or (None, None)
                line = {"eps_d": eps_label(eps), "attack": name, "attack drop": _pair(r["drop"] if r else None, p.get("gc_c" if clip else "gc")),
                        "defense": d, "drop after defense": _pair(r[d + "_drop"] if r else None, rp[0]),
                        "recovered": _pair(r[d + "_recovered"] if r else None, rp[1])}
                line["poisons removed"] = f"{r[d + '_removed_poisons']} of {r['n_poison']}" if r and f"{d}_removed" in r else "–"
                line["note"] = "" if r else (select(rows, model=model, eps_d=eps, clip=clip) or [{"reason": NOT_IN_GRID}])[0].get("reason", "")
                out.append(line)
    return pd.DataFrame(out)
