"""Tables that put our measured numbers beside the numbers reported in the paper.

They take the rows of :func:`poisonlib.scheduler.run_experiment` (one per cell,
skipped cells included) and return ``pandas`` frames; the paper's numbers come
from :mod:`poisonlib.paper` only. A cell the profile did not run shows its
reason instead of a number, so that a table never silently drops it.

Each table is built by its grid's module (:mod:`poisonlib.grids`); the shared rules --
which rows are finished, the verdict, the seed summary -- are :mod:`poisonlib.rows`.
This module gathers them for the chapters, with the tables of several grids.
"""

from __future__ import annotations

import pandas as pd

from ._validation import PoisonlibError
from .grids.fig3 import plateau_table  # noqa: F401
from .grids.table1 import targets_table  # noqa: F401
from .grids.table2 import table as table2  # noqa: F401
from .grids.table2 import target_comparison, target_info  # noqa: F401
from .grids.table2_baselines import EPS_D as EPS_BASELINES  # noqa: F401
from .grids.table2_baselines import baseline_table  # noqa: F401
from .grids.table6 import table6  # noqa: F401
from .grids.table7 import table7  # noqa: F401
from .grids.table8 import table8  # noqa: F401
from .grids.table9 import EPS_D as EPS_TABLE9  # noqa: F401
from .grids.table9 import table9  # noqa: F401
from .grids.table10 import EPS_D as DEFENSE_EPS  # noqa: F401
from .grids.table10 import defense_table  # noqa: F401
from .rows import (NOT_IN_GRID, TOLERANCE, _fmt, _key, cell_mean, done, eps_label, finished, gc_summary, group_by_eps,  # noqa: F401
                   select, summarize, verdict)


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


def provenance(rows: list[dict]) -> pd.DataFrame:
    """Record hash, cell, device, commit and wall time of every run row."""
    keep = ("record", "kind", "attack", "clip", "dataset", "model", "eps_w", "target", "scale", "eps_d", "seed", "status", "device", "git_commit", "wall_time_s")
    df = pd.DataFrame([{k: r.get(k) for k in keep} for r in done(rows)])
    if not df.empty:
        df["git_commit"] = df["git_commit"].str[:12]
    return df


# --------------------------------------------------------------------------- calibrated targets (eps_w="calibrated")
def _target_metrics(protocol, dataset, model, eps_w, profile, *, scale=1.0, seed=0, data_root=None, device="auto"):
    """A target's metrics (clean / target accuracy, drop, τ, calibration), or why it did not run."""
    from .cells import Cell, skip_reason
    from .scheduler import run_cell

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
    from .targets import calibration_request

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
    from .targets import calibration_request

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
