"""Fig. 3: GC learning curves ‖g(χ)‖ at ε_d = 1 for several ε_w (and the plateau table shared with Fig. 7)."""

from __future__ import annotations


import pandas as pd

from ..rows import eps_label, finished
from ._base import MNIST_MODELS, gc_cells, register_experiment


#: Fig. 3's radii; NN and CNN run three of them below the paper profile (each NN cell at ε_d = 1 costs about a minute on a CPU).
EPS_W = (0.1, 0.25, 0.5, 1.0, 2.0)
EPS_W_SHORT = (0.1, 0.5, 2.0)
#: Fig. 3's ε_d.
EPS_D = (1.0,)


@register_experiment("fig3", "GC learning curves ||g(chi)|| at eps_d = 1 for several eps_w (one seed; NN / CNN: 3 eps_w below the paper profile)")
def cells(prof):
    def eps_ws(m):
        return EPS_W if m == "lr" or prof.full_grids else EPS_W_SHORT

    return [c for m in MNIST_MODELS for w in eps_ws(m) for c in gc_cells(prof, "mnist", m, w, EPS_D, seeds=(0,))]


def plateau_table(rows: list[dict]) -> pd.DataFrame:
    """Where each GC learning curve ends (Figs. 3, 7): ε_d against τ(c) and τ(2) (the
    *regime*), ‖g(μ)‖, the final ‖g(χ)‖, its reduction from the first epoch and how much
    it still fell during the last tenth of the run (near 0: a plateau)."""
    out = []
    for r in rows:
        if not finished(r):  # not run at this profile, or failed (the reason says which)
            out.append({"model": r["model"].upper(), "ε_w": r["eps_w"], "ε_d": eps_label(r["eps_d"]),
                        "note": r.get("reason", "") if r["status"] == "skipped" else f"{r['status']}: {r.get('reason', '')}"})
            continue
        curve = r["gc_residual_curve"]
        e = r["eps_d_used"]
        below = "ε_d < τ(c)" if e < r["tauc"] else "τ(c) ≤ ε_d < τ(2)" if e < r["tau2"] else "ε_d ≥ τ(2)"
        out.append({
            "model": r["model"].upper(), "ε_w": r["eps_w"], "ε_d": round(e, 3), "τ(c)": round(r["tauc"], 3), "τ(2)": round(r["tau2"], 3),
            "regime": below, "‖g(μ)‖": round(r["grad_clean"], 4), "‖g(χ)‖ final": round(r["grad_mixed"], 4),
            "reduction ×": round(curve[0] / max(curve[-1], 1e-300), 1),  # of GC's own objective (its parameters)
            "last 10% change": f"{(curve[int(0.9 * len(curve))] - curve[-1]) / curve[-1]:.1%}",
            "note": "",
        })
    return pd.DataFrame(out)
