"""Tables that put our measured numbers beside the numbers reported in the paper."""

from __future__ import annotations

import math

import pandas as pd

from . import paper
from .experiments import summarize


def _fmt(m: float, sd: float = float("nan")) -> str:
    if m is None or (isinstance(m, float) and math.isnan(m)):
        return "–"
    return f"{m:+.2f}" if math.isnan(sd) else f"{m:+.2f} ± {sd:.2f}"


def _key(eps):
    return "tau" if eps == "tau" else float(eps)


def group_by_eps(records: list[dict]) -> dict:
    """Records of GC cells grouped by their requested ε_d (``"tau"`` kept as such)."""
    groups: dict = {}
    for r in records:
        groups.setdefault(_key(r["config"]["eps_d"]), []).append(r["metrics"])
    return groups


def table2_comparison(records: list[dict], dataset: str, model: str) -> pd.DataFrame:
    """One row per ε_d of Table 2's GC columns: paper's drop (Table 2 ± Table 4
    std) beside ours (mean ± std over seeds), their difference Δ = ours - paper,
    the realised ε_d, ‖g(χ)‖ after GC and the number of seeds."""
    rep = paper.table2_row(dataset, model)
    rows = []
    for eps, ms in group_by_eps(records).items():
        mean, sd = summarize([m["drop"] for m in ms])
        p = rep["gc"].get(eps)
        rows.append(
            {
                "eps_d": "τ(2)" if eps == "tau" else f"{eps:g}",
                "eps_d used": round(ms[0]["eps_d"], 4),
                "paper drop (%)": _fmt(p, rep["gc_std"].get(eps, float("nan"))) if p is not None else "–",
                "our drop (%)": _fmt(mean, sd),
                "Δ (ours - paper)": _fmt(mean - p) if p is not None else "–",
                "‖g(χ)‖ after GC": f"{summarize([m['grad_mixed'] for m in ms])[0]:.3g}",
                "seeds": len(ms),
            }
        )
    return pd.DataFrame(rows)


def target_comparison(info: dict, dataset: str, model: str) -> pd.DataFrame:
    """Clean accuracy, the GradPC target's drop and τ: the paper's beside ours."""
    rep = paper.table2_row(dataset, model)
    rows = [
        ("clean accuracy (%)", rep["clean"], info["clean_acc"]),
        ("GradPC target drop (%)", rep["gradpc"], info["target_drop"]),
        ("τ(2) of the target", rep["tau"], info["tau2"]),
        ("τ(c) of the target", None, info["tauc"]),
    ]
    return pd.DataFrame(
        [{"quantity": q, "paper": "–" if p is None else f"{p:.2f}", "ours": f"{o:.2f}", "Δ (ours - paper)": "–" if p is None else f"{o - p:+.2f}"} for q, p, o in rows]
    )
