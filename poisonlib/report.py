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
from ._validation import PoisonlibError
from .experiments import summarize

#: What a table says of an entry that the profile's grid leaves out altogether.
NOT_IN_GRID = "not in this profile's grid (see the chapter)"

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
    """*reproduced* (within ``tol`` points **and of the paper's sign**: a drop of −1.5 is not
    a −0.4 rise, nor is 0), *qualitatively* (same sign, at least half the size), *not
    reproduced*, or *no paper value*."""
    if reported is None or ours is None or (isinstance(ours, float) and math.isnan(ours)):
        return "no paper value" if reported is None else "not run at this profile"
    same_sign = ours * reported > 0 or ours == reported == 0
    if abs(ours - reported) <= tol and same_sign:
        return "reproduced"
    if same_sign and abs(ours) >= abs(reported) / 2:
        return "qualitatively"
    return "not reproduced"


def by_protocol(table, rows_by_protocol: dict) -> pd.DataFrame:
    """One table with a column group per protocol: ``table(rows)`` is built for each
    protocol's rows; the columns that agree across protocols (the entry, the paper's
    number) are shown once, the others once per protocol, suffixed ``[protocol]``."""
    frames = {p: table(rs).reset_index(drop=True) for p, rs in rows_by_protocol.items()}
    if len(frames) == 1:
        return next(iter(frames.values()))
    first = next(iter(frames.values()))
    if any(len(f) != len(first) or list(f.columns) != list(first.columns) for f in frames.values()):
        return pd.concat([f.assign(protocol=p) for p, f in frames.items()], ignore_index=True)
    shared = [c for c in first.columns if all(f[c].astype(str).equals(first[c].astype(str)) for f in frames.values())]
    out = first[shared].copy()
    for c in first.columns:
        if c not in shared:
            for p, f in frames.items():
                out[f"{c} [{p}]"] = f[c]
    return out


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


def table2(rows: list[dict], dataset: str, model: str, eps_ds=None) -> pd.DataFrame:
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
    keep = ("record", "kind", "attack", "clip", "dataset", "model", "eps_w", "target", "scale", "eps_d", "seed", "status", "device", "git_commit", "wall_time_s")
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
            "regime": below, "‖g(μ)‖": round(r["grad_clean"], 4), "‖g(χ)‖ final": round(r["grad_mixed"], 4),
            "reduction ×": round(curve[0] / max(curve[-1], 1e-300), 1),  # of GC's own objective (its parameters)
            "last 10% change": f"{(curve[int(0.9 * len(curve))] - curve[-1]) / curve[-1]:.1%}",
            "note": "",
        })
    return pd.DataFrame(out)


# --------------------------------------------------------------------------- issue 5: baselines and defenses
def _pair(ours, reported) -> str:
    """``"ours / paper"`` for one table entry (``–`` where either is missing)."""
    o = "–" if ours is None or (isinstance(ours, float) and math.isnan(ours)) else f"{ours:+.2f}"
    p = "–" if reported is None else f"{reported:+.2f}"
    return f"{o} / {p}"


def cell_mean(rs: list[dict], key: str = "drop"):
    """Mean of ``key`` over the run rows (``None`` when none ran) and the first skip reason."""
    done = _done(rs)
    if not done:
        return None, (rs[0].get("reason", "not run") if rs else NOT_IN_GRID)
    return summarize([r[key] for r in done])[0], ""


def baseline_table(gc_rows: list[dict], attack_rows: list[dict], dataset: str, model: str, eps_ds=None) -> pd.DataFrame:
    """Table 2 with its baseline columns for one row: per ε_d (``eps_ds``, default the paper's
    0.03, 0.1, 1) the drop of GC, TGDA and Gradient Matching, ours / paper, and whether GC beat
    both baselines on our runs."""
    rep = paper.table2_row(dataset, model)
    out = []
    for eps in _axis(eps_ds, EPS_BASELINES):
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


def defense_table(rows: list[dict], model: str, defenses=("influence", "sever", "maxup"), eps_ds=None) -> pd.DataFrame:
    """Tables 3 / 10 for one MNIST model, one line per (ε_d of ``eps_ds``, default
    :data:`DEFENSE_EPS`; GC or GC-c; defense): the attack's drop, the drop after the defense
    (GC-d / GC-cd) and the accuracy the defense recovered, each *ours / paper*, and how many
    removed points were poisons."""
    rep = paper.TABLE10[model]["rows"]
    out = []
    for eps in _axis(eps_ds, DEFENSE_EPS):
        p = rep.get(eps, {})
        for clip, name in ((False, "GC"), (True, "GC-c")):
            done = _done(select(rows, model=model, eps_d=eps, clip=clip))
            r = done[0] if done else None
            for d in defenses:
                rp = p.get(d, (None, None))[1 if clip else 0] or (None, None)
                line = {"eps_d": eps_label(eps), "attack": name, "attack drop": _pair(r["drop"] if r else None, p.get("gc_c" if clip else "gc")),
                        "defense": d, "drop after defense": _pair(r[d + "_drop"] if r else None, rp[0]),
                        "recovered": _pair(r[d + "_recovered"] if r else None, rp[1])}
                line["poisons removed"] = f"{r[d + '_removed_poisons']} of {r['n_poison']}" if r and f"{d}_removed" in r else "–"
                line["note"] = "" if r else (select(rows, model=model, eps_d=eps, clip=clip) or [{"reason": NOT_IN_GRID}])[0].get("reason", "")
                out.append(line)
    return pd.DataFrame(out)


DEFENSE_EPS = (0.03, 0.1, 1.0)
#: ε_d of the baseline tables (Table 2's TGDA / GM columns, Table 7).
EPS_BASELINES = (0.03, 0.1, 1.0)


def _axis(values, default) -> tuple:
    """``values`` (a list, its papermill string, or ``None`` for ``default``) as the ε_d keys of a table."""
    from .runner import axis_list

    return tuple(_key(e) for e in (axis_list(values, "eps_ds") or default))


def _target_row(rows: list[dict], **fields) -> dict | None:
    """The run target cell matching ``fields`` (``None`` if it did not run)."""
    done = _done(select(rows, kind="target", **fields))
    return done[0] if done else None


def _vs(t: dict | None, key: str, reported: float, digits: int = 2) -> str:
    """``"ours / paper"`` for a target quantity (``–`` when the target did not run)."""
    return "–" if t is None else f"{t[key]:.{digits}f} / {reported:.{digits}f}"


def table6(rows: list[dict]) -> pd.DataFrame:
    """Table 6: per label-flip target, its test error, τ, MT's n_p and the KKT / MT / GC drops."""
    out = []
    for err, rep in paper.TABLE6.items():
        t = _target_row(rows, eps_w=err)
        mt = _done(select(rows, kind="attack", attack="mt", eps_w=err))
        kkt = _done(select(rows, kind="attack", attack="kkt", eps_w=err))
        gc = _done(select(rows, kind="gc", eps_w=err))
        m = mt[0] if mt else None
        out.append({
            "target (requested error)": f"{err:.0%}",
            "target test error (ours)": "–" if t is None else f"{100 - t['target_acc']:.2f} %",
            "clean ours / paper": _vs(t, "clean_acc", rep["clean"]),
            "τ ours / paper": _vs(t, "tau2", rep["tau"], 3),
            "MT n_p (n_p/n) ours": "–" if m is None else f"{m['n_poison']} ({m['eps_d_used']:.3f})" + ("" if m["attack_config"].get("reached") else ", target not reached"),
            "MT n_p paper": f"{rep['n_p']} ({rep['n_p_frac']:.3f})",
            "KKT ours / paper": _pair(kkt[0]["drop"] if kkt else None, rep["kkt"]),
            "MT ours / paper": _pair(m["drop"] if m else None, rep["mt"]),
            "GC ours / paper": _pair(gc[0]["drop"] if gc else None, rep["gc"]),
        })
    return pd.DataFrame(out)


def table7(rows: list[dict], eps_ds=None, models=None) -> pd.DataFrame:
    """Table 7: GradPC targets on MNIST-17; per model (``models``, default the paper's) and ε_d
    (``eps_ds``, default 0.03, 0.1, 1) the KKT / MT / GC drops."""
    out = []
    for model, rep in paper.TABLE7.items():
        if models is not None and model not in models:
            continue
        t = _target_row(rows, model=model)
        for eps in _axis(eps_ds, EPS_BASELINES):
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
                    line["MT reached target"] = ("yes" if _done(rs)[0]["attack_config"].get("reached") else "no") if _done(rs) else "–"
            gc, why = cell_mean(select(rows, kind="gc", model=model, eps_d=eps))
            line["GC ours / paper"] = _pair(gc, rep["gc"].get(eps)) if gc is not None else f"– ({why})"
            out.append(line)
    return pd.DataFrame(out)


def table9(rows: list[dict], eps_ds=None, models=None) -> pd.DataFrame:
    """Table 9: the TGDA-poisoned model as GC target; its drop and τ, and GC's drops, per model
    (``models``, default the paper's) and ε_d (``eps_ds``, default :data:`EPS_TABLE9`)."""
    out = []
    for model, rep in paper.TABLE9.items():
        if models is not None and model not in models:
            continue
        t = _target_row(rows, model=model)
        for eps in _axis(eps_ds, EPS_TABLE9):
            gc, why = cell_mean(select(rows, kind="gc", model=model, eps_d=eps))
            out.append({
                "model": model.upper(), "eps_d": eps_label(eps),
                "TGDA target drop ours / paper": _pair(t["target_drop"] if t else None, rep["tgda"]),
                "τ ours / paper": _vs(t, "tau2", rep["tau"]),
                "GC ours / paper": _pair(gc, rep["gc"].get(eps)) if gc is not None else f"– ({why})",
                "GC reaches target drop (ours)": "–" if gc is None or t is None else f"{gc / t['target_drop']:.0%}" if t["target_drop"] < 0 else "target not below clean",
            })
    return pd.DataFrame(out)


EPS_TABLE9 = (0.03, 0.1, 1.0, "tau")


# --------------------------------------------------------------------------- calibrated targets (eps_w="calibrated")
def _target_metrics(protocol, dataset, model, eps_w, profile, *, scale=1.0, seed=0, data_root=None, device="auto"):
    """A target's metrics (clean / target accuracy, drop, τ, calibration), or why it did not run."""
    from .runner import Cell, run_cell, skip_reason

    cell = Cell("target", dataset, model, eps_w, scale=scale, seed=seed, protocol=protocol)
    reason = skip_reason(cell, profile, data_root)
    if reason is not None:
        return reason
    try:
        return run_cell(cell, profile, data_root=data_root, device=device, progress=False)["metrics"]
    except PoisonlibError as e:  # shown in the table rather than stopping the chapter
        return f"not run: {e}"


def calibration_info(protocol, entries, profile, *, seed=0, data_root=None, device="auto") -> list[dict]:
    """Per entry ``(label, dataset, model, literal eps_w, scale, paper's τ(2) or None)``: the literal
    and the calibrated target under ``protocol`` (metrics, or the reason it did not run)."""
    from .experiments import calibration_request

    kw = dict(seed=seed, data_root=data_root, device=device)
    return [{"label": label, "dataset": d, "model": m, "eps_w": w, "scale": s, "paper_tau": tau,
             "requested": calibration_request(d, m)["target_drop"],
             "lit": _target_metrics(protocol, d, m, w, profile, scale=s, **kw),
             "cal": _target_metrics(protocol, d, m, "calibrated", profile, scale=s, **kw)} for label, d, m, w, s, tau in entries]


def calibration_table(info: list[dict]) -> pd.DataFrame:
    """One line per target: literal ε_w, its test drop and τ(2); the paper's GradPC drop and τ(2);
    the calibrated ε_w, the validation drop it reached (tolerance met?), its test drop and τ(2)."""
    out = []
    for e in info:
        why = next((t for t in (e["lit"], e["cal"]) if isinstance(t, str)), "")
        lit, cal = ({} if isinstance(t, str) else t for t in (e["lit"], e["cal"]))
        c = cal.get("calibration", {})

        def num(t, k, fmt="{:+.2f}"):
            return fmt.format(t[k]) if k in t else "–"

        met = "–" if not c else ("yes" if c["tolerance_met"] else "no") + ("" if c["reachable"] else " (unreachable)")
        out.append({"target": e["label"], "literal ε_w": f"{e['eps_w']:g}", "literal: test drop (%)": num(lit, "target_drop"),
                    "literal: τ(2)": num(lit, "tau2", "{:.3g}"), "paper: GradPC drop (%)": f"{e['requested']:+.2f}",
                    "paper: τ(2)": "–" if e["paper_tau"] is None else f"{e['paper_tau']:.2f}",
                    "calibrated ε_w": num(cal, "eps_w_calibrated", "{:.3g}"), "calibrated: val drop (%)": num(c, "val_drop"),
                    "tolerance met": met, "calibrated: test drop (%)": num(cal, "target_drop"), "calibrated: τ(2)": num(cal, "tau2", "{:.3g}"),
                    "note": why})
    return pd.DataFrame(out)


def calibration_summary(protocol, info: list[dict]) -> list[str]:
    """Lines for the narrative: how close each target's test drop came to the paper's, and how τ(2) moved."""
    from .experiments import calibration_request

    ok = [e for e in info if not isinstance(e["lit"], str) and not isinstance(e["cal"], str)]
    if not ok:
        return [f"[{protocol}] no target ran at this profile"]
    met = sum(e["cal"]["calibration"]["tolerance_met"] for e in ok)
    gap_lit = sum(abs(e["lit"]["target_drop"] - e["requested"]) for e in ok) / len(ok)
    gap_cal = sum(abs(e["cal"]["target_drop"] - e["requested"]) for e in ok) / len(ok)
    lines = [f"[{protocol}] {met} of {len(ok)} calibrated targets reached the paper's GradPC drop on the validation split within "
             f"{calibration_request('mnist', 'lr')['tol']:g} points; mean |test drop − paper's drop|: literal ε_w "
             f"{gap_lit:.2f}, calibrated {gap_cal:.2f} points"]
    for e in ok:
        lines.append(f"[{protocol}] {e['label']}: ε_w {e['eps_w']:g} → {e['cal']['eps_w_calibrated']:.3g}, τ(2) {e['lit']['tau2']:.3g} → "
                     f"{e['cal']['tau2']:.3g}" + ("" if e["paper_tau"] is None else f" (paper {e['paper_tau']:.2f})"))
    return lines
