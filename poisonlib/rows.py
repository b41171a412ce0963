"""The shared rules of every table: which rows are finished, how seeds are summarised, and the verdict.

Rows are those of :func:`poisonlib.scheduler.run_experiment` (one per cell, skipped cells
included). One *finished* rule (:func:`finished`: the cell produced a record, computed or
read from the store) and one *verdict* rule (:func:`verdict`) serve every table, the
report and the claims.
"""

from __future__ import annotations

import math

from .cells import axis_list

#: What a table says of an entry that the profile's grid leaves out altogether.
NOT_IN_GRID = "not in this profile's grid (see the chapter)"

#: |ours - paper| within this many accuracy points counts as reproduced.
TOLERANCE = 2.0
#: A threshold τ within this fraction of the paper's counts as reproduced.
TAU_TOLERANCE = 0.25

#: Row statuses of a cell that produced a record.
FINISHED = ("computed", "cached")


def finished(row: dict) -> bool:
    """Whether the cell of ``row`` produced a record (computed now or read from the store)."""
    return row.get("status") in FINISHED


def done(rows: list[dict]) -> list[dict]:
    """The finished rows of ``rows`` (:func:`finished`)."""
    return [r for r in rows if finished(r)]


def summarize(values) -> tuple[float, float]:
    """Mean and (sample, ddof=1) standard deviation; std is NaN for one value."""
    vals = [float(v) for v in values]
    m = sum(vals) / len(vals)
    sd = math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else float("nan")
    return m, sd


def verdict(ours, reported, kind: str = "drop", tol: float = TOLERANCE) -> str:
    """The one verdict rule of the reproduction. For accuracies and drops (``kind`` ``"drop"``
    or ``"acc"``): *reproduced* within ``tol`` points **and of the paper's sign** (a drop of
    −1.5 is not a −0.4 rise, nor is 0), *qualitatively* (same sign, at least half the size),
    else *not reproduced*. For a threshold (``kind="tau"``): *reproduced* within
    :data:`TAU_TOLERANCE` of the paper's value. A standard deviation (``kind="std"``) is
    *informational*. *no paper value* / *not run at this profile* where either side is missing."""
    if reported is None:
        return "no paper value"
    if ours is None or (isinstance(ours, float) and math.isnan(ours)):
        return "not run at this profile"
    if kind == "tau":
        return "reproduced" if abs(ours - reported) <= TAU_TOLERANCE * abs(reported) else "not reproduced"
    if kind == "std":
        return "informational"
    same_sign = ours * reported > 0 or ours == reported == 0
    if abs(ours - reported) <= tol and same_sign:
        return "reproduced"
    if same_sign and abs(ours) >= abs(reported) / 2:
        return "qualitatively"
    return "not reproduced"


def _fmt(m, sd: float = float("nan"), signed: bool = True) -> str:
    if m is None or (isinstance(m, float) and math.isnan(m)):
        return "–"
    s = f"{m:+.2f}" if signed else f"{m:.2f}"
    return s if math.isnan(sd) else f"{s} ± {sd:.2f}"


def _key(eps):
    return "tau" if eps == "tau" else float(eps)


def eps_label(eps) -> str:
    return "τ(2)" if eps == "tau" else f"{float(eps):g}"


def select(rows: list[dict], **fields) -> list[dict]:
    """Rows whose fields equal ``fields`` (e.g. ``dataset="mnist", model="lr"``)."""
    return [r for r in rows if all(r.get(k) == v for k, v in fields.items())]


def group_by_eps(rows: list[dict]) -> dict:
    """Rows grouped by their requested ε_d (``"tau"`` kept as such), in order of appearance."""
    groups: dict = {}
    for r in rows:
        groups.setdefault(_key(r["eps_d"]), []).append(r)
    return groups


def gc_summary(rs: list[dict]) -> dict:
    """Mean ± std of the drop over the run seeds of one ε_d, with ‖g(χ)‖ and the realised ε_d."""
    ok = done(rs)
    if not ok:
        return {"mean": float("nan"), "std": float("nan"), "seeds": 0, "grad_mixed": float("nan"), "eps_used": float("nan"),
                "reason": rs[0].get("reason", "")}
    mean, sd = summarize([r["drop"] for r in ok])
    return {"mean": mean, "std": sd, "seeds": len(ok), "grad_mixed": summarize([r["grad_mixed"] for r in ok])[0],
            "eps_used": ok[0]["eps_d_used"], "reason": ""}


def _pair(ours, reported) -> str:
    """``"ours / paper"`` for one table entry (``–`` where either is missing)."""
    o = "–" if ours is None or (isinstance(ours, float) and math.isnan(ours)) else f"{ours:+.2f}"
    p = "–" if reported is None else f"{reported:+.2f}"
    return f"{o} / {p}"


def cell_mean(rs: list[dict], key: str = "drop"):
    """Mean of ``key`` over the run rows (``None`` when none ran) and the first skip reason."""
    ok = done(rs)
    if not ok:
        return None, (rs[0].get("reason", "not run") if rs else NOT_IN_GRID)
    return summarize([r[key] for r in ok])[0], ""


def _axis(values, default) -> tuple:
    """``values`` (a list, its papermill string, or ``None`` for ``default``) as the ε_d keys of a table."""
    return tuple(_key(e) for e in (axis_list(values, "eps_ds") or default))


def _target_row(rows: list[dict], **fields) -> dict | None:
    """The run target cell matching ``fields`` (``None`` if it did not run)."""
    ok = done(select(rows, kind="target", **fields))
    return ok[0] if ok else None


def _vs(t: dict | None, key: str, reported: float, digits: int = 2) -> str:
    """``"ours / paper"`` for a target quantity (``–`` when the target did not run)."""
    return "–" if t is None else f"{t[key]:.{digits}f} / {reported:.{digits}f}"
