"""Tables that put our measured numbers beside the numbers reported in the paper.

They take the rows of :func:`poisonlib.runner.run_experiment` (one per cell,
skipped cells included) and return ``pandas`` frames; the paper's numbers come
from :mod:`poisonlib.paper` only. A cell the profile did not run shows its
reason instead of a number, so that a table never silently drops it.
"""

from __future__ import annotations

import math

import pandas as pd

from . import paper
from .experiments import summarize

#: |ours - paper| within this many accuracy points counts as reproduced.
TOLERANCE = 2.0


def _fmt(m, sd: float = float("nan"), signed: bool = True) -> str:
    if m is None or (isinstance(m, float) and math.isnan(m)):
        return "–"
    s = f"{m:+.2f}" if signed else f"{m:.2f}"
    return s if math.isnan(sd) else f"{s} ± {sd:.2f}"


def _key(eps):
    return "tau" if eps == "tau" else float(eps)


def eps_label(eps) -> str:
    return "τ(2)" if eps == "tau" else f"{float(eps):g}"


def verdict(ours: float, reported: float | None, tol: float = TOLERANCE) -> str:
    """*reproduced* (within ``tol`` points), *qualitatively* (same sign, at least half
    the size), *not reproduced*, or *no paper value*."""
    if reported is None or ours is None or (isinstance(ours, float) and math.isnan(ours)):
        return "no paper value" if reported is None else "not run at this profile"
    if abs(ours - reported) <= tol:
        return "reproduced"
    if ours * reported > 0 and abs(ours) >= abs(reported) / 2:
        return "qualitatively"
    return "not reproduced"


def select(rows: list[dict], **fields) -> list[dict]:
    """Rows whose fields equal ``fields`` (e.g. ``dataset="mnist", model="lr"``)."""
    return [r for r in rows if all(r.get(k) == v for k, v in fields.items())]


def group_by_eps(rows: list[dict]) -> dict:
    """Rows grouped by their requested ε_d (``"tau"`` kept as such), in order of appearance."""
    groups: dict = {}
    for r in rows:
        groups.setdefault(_key(r["eps_d"]), []).append(r)
    return groups


def _done(rs):
    return [r for r in rs if r["status"] != "skipped"]


def gc_summary(rs: list[dict]) -> dict:
    """Mean ± std of the drop over the run seeds of one ε_d, with ‖g(χ)‖ and the realised ε_d."""
    done = _done(rs)
    if not done:
        return {"mean": float("nan"), "std": float("nan"), "seeds": 0, "grad_mixed": float("nan"), "eps_used": float("nan"),
                "reason": rs[0].get("reason", "")}
    mean, sd = summarize([r["drop"] for r in done])
    return {"mean": mean, "std": sd, "seeds": len(done), "grad_mixed": summarize([r["grad_mixed"] for r in done])[0],
            "eps_used": done[0]["eps_d_used"], "reason": ""}


def table2(rows: list[dict], dataset: str, model: str) -> pd.DataFrame:
    """Table 2 / 4 for one (dataset, model): per ε_d the paper's drop (± Table 4's std)
    beside ours (mean ± std over seeds), Δ, the verdict, ‖g(χ)‖ after GC, seeds."""
    rep = paper.table2_row(dataset, model)
    out = []
    for eps, rs in group_by_eps(select(rows, dataset=dataset, model=model, scale=1.0)).items():
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
    done = _done(select(rows, dataset=dataset, model=model, scale=scale))
    return done[0] if done else None


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


def targets_table(rows: list[dict], reported: dict, kinds: list[tuple[str, str, str]]) -> pd.DataFrame:
    """Tables 1 and 5: per model and ε_w, target accuracy / drop of each target kind.

    ``kinds`` lists ``(column label, target, noise)``; ``reported`` maps model ->
    {"clean", target -> {eps_w: (acc, drop)}} (the paper's tables). Drops are
    positive numbers here, as in those tables.
    """
    out = []
    for model in dict.fromkeys(r["model"] for r in rows):
        for eps_w in dict.fromkeys(r["eps_w"] for r in select(rows, model=model)):
            line = {"model": model.upper(), "ε_w": eps_w}
            for label, target, noise in kinds:
                rs = [r for r in select(rows, model=model, eps_w=eps_w, target=target) if target != "randompc" or r["noise"] == noise]
                r = rs[0] if rs else None
                line["clean: ours / paper"] = f"{r['clean_acc']:.2f} / {reported[model]['clean']:.2f}" if r and r["status"] != "skipped" else "–"
                # the paper's RandomPC is the per-parameter one; the L2 variant has no reported value
                p = reported.get(model, {}).get(target, {}).get(eps_w) if noise == "parameter" else None
                ours = "–" if not r or r["status"] == "skipped" else f"{r['target_acc']:.2f} / {0.0 - r['target_drop']:.2f}"
                line[f"{label} ours"] = ours
                line[f"{label} paper"] = "–" if p is None else f"{p[0]:.2f} / {p[1]:.2f}"
            out.append(line)
    return pd.DataFrame(out)


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


def provenance(rows: list[dict]) -> pd.DataFrame:
    """Record hash, cell, device, commit and wall time of every run row."""
    keep = ("record", "dataset", "model", "eps_w", "target", "scale", "eps_d", "seed", "status", "device", "git_commit", "wall_time_s")
    df = pd.DataFrame([{k: r.get(k) for k in keep} for r in _done(rows)])
    if not df.empty:
        df["git_commit"] = df["git_commit"].str[:12]
    return df


def plateau_table(rows: list[dict]) -> pd.DataFrame:
    """Where each GC learning curve ends (Figs. 3, 7): ε_d against τ(c) and τ(2) (the
    *regime*), ‖g(μ)‖, the final ‖g(χ)‖, its reduction from the first epoch and how much
    it still fell during the last tenth of the run (near 0: a plateau)."""
    out = []
    for r in rows:
        if r["status"] == "skipped":
            out.append({"model": r["model"].upper(), "ε_w": r["eps_w"], "ε_d": eps_label(r["eps_d"]), "note": r["reason"]})
            continue
        curve = r["gc_residual_curve"]
        e = r["eps_d_used"]
        below = "ε_d < τ(c)" if e < r["tauc"] else "τ(c) ≤ ε_d < τ(2)" if e < r["tau2"] else "ε_d ≥ τ(2)"
        out.append({
            "model": r["model"].upper(), "ε_w": r["eps_w"], "ε_d": round(e, 3), "τ(c)": round(r["tauc"], 3), "τ(2)": round(r["tau2"], 3),
            "regime": below, "‖g(μ)‖": round(r["residual_initial"], 4), "‖g(χ)‖ final": round(r["grad_mixed"], 4),
            "reduction ×": round(curve[0] / (1 + e) / r["grad_mixed"], 1),
            "last 10% change": f"{(curve[int(0.9 * len(curve))] - curve[-1]) / curve[-1]:.1%}",
            "note": "",
        })
    return pd.DataFrame(out)
