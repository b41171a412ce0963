"""The reproducibility report: every number of the paper's Tables 1-10 beside ours.

:func:`entries` runs (or, when they are stored, loads) the grids of every table at a
profile and returns one row per number the paper reports: table, entry, the paper's
value (from :mod:`poisonlib.paper` only), ours (mean ± std over the seeds run), Δ, the
profile and device that produced it, the records behind it and a verdict:

* accuracies and drops (points): *reproduced* within ±2 points
  (:data:`poisonlib.report.TOLERANCE`), *qualitatively* (same sign, at least half the
  size), else *not reproduced*;
* thresholds τ: *reproduced* within ±25 % of the paper's value, else *not reproduced*;
* *not run at this profile* (with the reason) where the profile's grid leaves it out.

:mod:`poisonlib.claims` judges the paper's claims on the same runs (the claims ledger);
:func:`write` exports the entries and the ledger to ``results/report.csv`` and ``results/report.json``.
"""

from __future__ import annotations

import math
import os

from . import paper
from .grids import CHAPTER_GRIDS, REPORT_GRIDS, get_experiment, table7
from .profiles import get_profile
from .results import atomic_write_json, default_results_dir
from .rows import TAU_TOLERANCE, TOLERANCE, finished, select, summarize, verdict  # noqa: F401

#: The grids of the report (:data:`poisonlib.grids.REPORT_GRIDS`).
EXPERIMENTS = REPORT_GRIDS
_verdict = verdict  # the one verdict rule (:func:`poisonlib.rows.verdict`)


class _Collector:
    def __init__(self, profile: str, protocol: str = "paper"):
        self.profile, self.protocol, self.rows = profile, protocol, []

    def add(self, table, entry, reported, rs, key="drop", kind="drop", reason=""):
        """One entry from the run rows ``rs`` (mean of ``key`` over them)."""
        done = [r for r in rs if finished(r)]
        vals = [r[key] for r in done if r.get(key) is not None]
        mean, sd = summarize(vals) if vals else (None, float("nan"))
        if kind == "std":
            mean, sd = (sd if len(vals) > 1 else None), float("nan")
        why = reason or next((r.get("reason", "") for r in rs if not finished(r)), "") or ("" if rs else "not in this profile's grid")
        if kind == "std" and len(vals) == 1:
            why = "one seed run: no standard deviation"
        self.rows.append({
            "table": table, "entry": entry, "paper": reported, "ours": None if mean is None else round(mean, 4),
            "ours_std": None if (isinstance(sd, float) and math.isnan(sd)) else round(sd, 4), "seeds": len(vals),
            "delta": None if mean is None or reported is None else round(mean - reported, 4),
            "verdict": _verdict(mean, reported, kind), "profile": self.profile, "protocol": self.protocol,
            "device": ", ".join(sorted({str(r.get("device")) for r in done})) or None,
            "hardware": "; ".join(sorted({str(r["hardware"]) for r in done if r.get("hardware")})) or None,
            "records": ",".join(sorted({r["record"] for r in done if r.get("record")})), "note": "" if done and mean is not None else why,
        })
        if kind == "std" and len(vals) == 1:
            self.rows[-1]["verdict"] = "informational"
        if not done and any(r.get("status") == "missing" for r in rs) and reported is not None:
            self.rows[-1]["verdict"] = "not in the store"  # poisonlib report without --run: the note says how to compute it


def _targets(c, rows):
    t1 = rows["table1"]
    for m, rep in paper.TABLE1.items():
        c.add("Table 1", f"MNIST {m.upper()}: clean accuracy", rep["clean"], select(t1, model=m, eps_w=0.5), "clean_acc", "acc")
        for w, (acc, _) in rep["gradpc"].items():
            c.add("Table 1", f"MNIST {m.upper()}: GradPC ε_w={w:g} accuracy", acc, select(t1, model=m, eps_w=w), "target_acc", "acc")
        c.add("Table 1", f"MNIST {m.upper()}: TGDA (ε_d=0.03) accuracy", rep["tgda"][0],
              select(rows["table2_baselines"], model=m, attack="tgda", eps_d=0.03), "retrained_acc", "acc")
    t5 = rows["table5"]
    for m, rep in paper.TABLE5.items():
        for kind in ("randompc", "gradpc"):
            for w, (acc, _) in rep[kind].items():
                rs = [r for r in select(t5, model=m, eps_w=w, target=kind) if kind == "gradpc" or r.get("noise") == "parameter"]
                c.add("Table 5", f"MNIST {m.upper()}: {'RandomPC' if kind == 'randompc' else 'GradPC'} ε_w={w:g} accuracy", acc, rs,
                      "target_acc", "acc")


def _table2(c, rows):
    t2, base = rows["table2"], rows["table2_baselines"]
    for (d, m), rep in paper.TABLE2.items():
        name = f"{d} {m.upper()}"
        sel = select(t2, dataset=d, model=m, scale=1.0)
        c.add("Table 2", f"{name}: clean accuracy", rep["clean"], sel[:1], "clean_acc", "acc")
        c.add("Table 2", f"{name}: GradPC drop", rep["gradpc"], sel[:1], "target_drop")
        c.add("Table 2", f"{name}: τ(2)", rep["tau"], sel[:1], "tau2", "tau")
        for e, p in rep["gc"].items():
            c.add("Table 2", f"{name}: GC ε_d={e}", p, select(sel, eps_d=e))
            c.add("Table 4", f"{name}: GC std ε_d={e}", rep["gc_std"][e], select(sel, eps_d=e), "drop", "std")
        for a, label in (("tgda", "TGDA"), ("gm", "GM")):
            for e, p in rep[a].items():
                c.add("Table 2", f"{name}: {label} ε_d={e}", p, select(base, dataset=d, model=m, attack=a, eps_d=e))


def _tables_6_to_10(c, rows):
    t8 = rows["table8"]
    for m, rep in paper.TABLE8.items():
        for s, key in ((1.0, "w"), (0.5, "w2")):
            sel = select(t8, model=m, scale=s)
            c.add("Table 8", f"MNIST {m.upper()}: τ({key.replace('w2', 'w/2')})", rep["tau_" + key], sel[:1], "tau2", "tau")
            for e, p in rep[key].items():
                c.add("Table 8", f"MNIST {m.upper()}: GC vs {key.replace('w2', 'w/2')} ε_d={e}", p, select(sel, eps_d=e))
    t9 = rows["table9"]
    for m, rep in paper.TABLE9.items():
        tgt = select(t9, kind="target", model=m)
        c.add("Table 9", f"MNIST {m.upper()}: TGDA target drop", rep["tgda"], tgt, "target_drop")
        c.add("Table 9", f"MNIST {m.upper()}: τ of the TGDA target", rep["tau"], tgt, "tau2", "tau")
        for e, p in rep["gc"].items():
            c.add("Table 9", f"MNIST {m.upper()}: GC ε_d={e}", p, select(t9, kind="gc", model=m, eps_d=e))
    t6 = rows["table6"]
    for err, rep in paper.TABLE6.items():
        name = f"MNIST-17 LR, label-flip {err:.0%}"
        c.add("Table 6", f"{name}: τ", rep["tau"], select(t6, kind="target", eps_w=err), "tau2", "tau")
        for a in ("kkt", "mt"):
            c.add("Table 6", f"{name}: {a.upper()}", rep[a], select(t6, kind="attack", attack=a, eps_w=err))
        c.add("Table 6", f"{name}: GC", rep["gc"], select(t6, kind="gc", eps_w=err))
    t7 = rows["table7"]
    for m, rep in paper.TABLE7.items():
        name = f"MNIST-17 {m.upper()}"
        c.add("Table 7", f"{name}: τ", rep["tau"], select(t7, kind="target", model=m), "tau2", "tau")
        c.add("Table 7", f"{name}: GradPC drop", rep["gradpc"], select(t7, kind="target", model=m), "target_drop")
        for e in table7.EPS_D:
            for a in ("kkt", "mt"):
                if rep[a] is not None:
                    c.add("Table 7", f"{name}: {a.upper()} ε_d={e}", rep[a][e], select(t7, kind="attack", model=m, attack=a, eps_d=e))
            c.add("Table 7", f"{name}: GC ε_d={e}", rep["gc"][e], select(t7, kind="gc", model=m, eps_d=e))
    t10 = rows["table10"]
    for m, rep in paper.TABLE10.items():
        for e, p in rep["rows"].items():
            for clip, col in ((False, "GC"), (True, "GC-c")):
                sel = select(t10, model=m, eps_d=e, clip=clip)
                c.add("Table 10", f"MNIST {m.upper()} ε_d={e}: {col}", p["gc_c" if clip else "gc"], sel)
                for d in ("influence", "sever", "maxup"):
                    table = "Table 3" if d == paper.TABLE3_DEFENSE else "Table 10"
                    c.add(table, f"MNIST {m.upper()} ε_d={e}: {col}-d after {d}", p[d][1 if clip else 0][0], sel, f"{d}_drop")


def run_all(profile="cpu", *, data_root=None, device="auto", results_dir=None, progress=None, protocol="paper", compute: bool = True) -> dict:
    """The rows of every table's grid under ``protocol``: stored cells are loaded, missing
    ones computed -- or, with ``compute=False``, listed with status ``"missing"`` and the
    command that computes them (:func:`~poisonlib.results.store_only`)."""
    import contextlib

    from .results import store_only
    from .scheduler import run_experiment

    with contextlib.nullcontext() if compute else store_only():
        return {name: run_experiment(name, profile, data_root=data_root, device=device, results_dir=results_dir, progress=progress,
                                     protocol=protocol)
                for name in EXPERIMENTS}


def missing_cells(rows: dict) -> list[dict]:
    """The cells of ``run_all(..., compute=False)``'s rows that the store lacks, one row per
    experiment and protocol: how many, which, and the command that computes them."""
    out = {}
    for name, rs in rows.items():
        for r in rs:
            if r.get("status") == "missing":
                key = (name, r.get("protocol", "paper"))
                e = out.setdefault(key, {"experiment": name, "protocol": key[1], "cells": 0, "examples": [],
                                         "command": r["reason"].split(": ", 1)[-1]})
                e["cells"] += 1
                if len(e["examples"]) < 3:
                    from .cells import Cell

                    e["examples"].append(Cell(**{k: r[k] for k in Cell.__dataclass_fields__ if k in r}).label())
    return list(out.values())


def entries(rows: dict, profile: str, protocol: str = "paper") -> list[dict]:
    """One row per number the paper's Tables 1-10 report (see the module docstring), under ``protocol``."""
    c = _Collector(profile, protocol)
    _targets(c, rows)
    _table2(c, rows)
    _tables_6_to_10(c, rows)
    return c.rows


def write(es: list[dict], cl: list[dict], results_dir: str | None = None) -> tuple[str, str]:
    """Write ``report.csv`` (the entries) and ``report.json`` (entries and the claims ledger ``cl``), atomically."""
    import pandas as pd

    from .results import _atomic

    root = results_dir or default_results_dir()
    csv = _atomic(os.path.join(root, "report.csv"), lambda tmp: pd.DataFrame(es).to_csv(tmp, index=False))
    js = atomic_write_json({"entries": es, "claims": cl}, os.path.join(root, "report.json"))
    return csv, js


VERDICTS = ("reproduced", "qualitatively", "not reproduced", "informational", "not run at this profile", "not in the store")


def summary(es: list[dict]):
    """A table (pandas) of verdict counts: one row per paper table (and protocol, where the
    entries hold more than one), one column per verdict."""
    import pandas as pd

    protos = list(dict.fromkeys(e.get("protocol", "paper") for e in es))
    tables = pd.Series([e["table"] for e in es], name="table")
    verdicts = pd.Series([e["verdict"] for e in es], name="verdict")
    if len(protos) > 1:
        df = pd.crosstab([pd.Series([e.get("protocol", "paper") for e in es], name="protocol"), tables], verdicts)
        order = sorted(df.index, key=lambda pt: (protos.index(pt[0]), int(pt[1].split()[-1])))
    else:
        df = pd.crosstab(tables, verdicts)
        order = sorted(df.index, key=lambda t: int(t.split()[-1]))
    return df.reindex(index=order, columns=[v for v in VERDICTS if v in df.columns], fill_value=0)


# ----------------------------------------------------------------------------- paper-profile wall time
def cell_key(cell) -> tuple:
    """What a cell's cost depends on (:func:`poisonlib.dryrun.cost_class`: kind, data, model, attack, ε_d, kind of target)."""
    from .dryrun import cost_class

    return cost_class(cell)


def price_chapters(timed: dict, profile="paper") -> list[dict]:
    """Each chapter's cells at ``profile`` priced with measured cell times ``timed`` ({:func:`cell_key`: seconds}).

    ``estimate_s`` sums the cells that match a measurement (with the cells that another
    chapter computes first left out); ``unpriced`` counts the others, described in ``unpriced_kinds``."""
    from collections import Counter

    seen, out = set(), []
    for chapter, grids in CHAPTER_GRIDS.items():
        cells = [c for g in grids for c in get_experiment(g).cells(get_profile(profile))]
        new = list(dict.fromkeys(c for c in cells if c not in seen))
        seen.update(new)
        priced = [timed[cell_key(c)] for c in new if cell_key(c) in timed]
        missing = Counter(" ".join(str(k) for k in cell_key(c)[:4] if k) for c in new if cell_key(c) not in timed)
        out.append({"chapter": chapter, "grids": ", ".join(grids), "cells": len(new), "priced": len(priced),
                    "estimate_min": round(sum(priced) / 60, 1), "unpriced": len(new) - len(priced),
                    "unpriced_kinds": ", ".join(f"{k} ×{n}" for k, n in missing.most_common())})
    return out


#: The committed timing run that the reproducibility chapter shows (relative to the project root).
PAPER_TIMINGS = os.path.join("benchmarks", "results", "paper_cells_h200.json")


def paper_wall_times(path: str | None = None) -> tuple:
    """``(cells, chapters, meta)`` from a timing run of ``benchmarks/paper_cells.py`` (a JSON file;
    default :data:`PAPER_TIMINGS` of the project found from the current folder): the measured
    cells (pandas), :func:`price_chapters` of the paper profile with them, and the run's device,
    date and notes."""
    import json

    import pandas as pd

    from .book import find_root
    from .cells import Cell

    path = path or os.path.join(find_root(), PAPER_TIMINGS)
    with open(path) as f:
        run = json.load(f)
    timed = [r for r in run["cells"] if r.get("status") == "timed"]
    fields = [f for f in Cell.__dataclass_fields__]
    prices = {cell_key(Cell(**{k: (tuple(r[k]) if isinstance(r[k], list) else r[k]) for k in fields if k in r})): r["wall_s"] for r in timed}
    cells = pd.DataFrame([{"cell": r["cell"], "n_poison": r.get("n_poison"), "wall_s": r.get("wall_s"), "status": r["status"],
                           "profile": run.get("profile", {}).get("name", "paper"), "hardware": run.get("gpu")} for r in run["cells"]])
    meta = {"gpu": run.get("gpu"), "dates": run.get("runs") or [run.get("date")], "data": run.get("data"), "note": run.get("note", ""),
            "resnet18_cifar10_unit": run.get("resnet18_cifar10_unit"), "torch": run.get("environment", {}).get("torch")}
    return cells, pd.DataFrame(price_chapters(prices)), meta


#: The committed dry run of the paper profile's MNIST cells on 2 CPU cores (``benchmarks/paper_cost.py``).
PAPER_COST = os.path.join("benchmarks", "results", "paper_cost_cpu.json")
#: The grids priced by it: Tables 1-10 and Figs. 3, 7.
COST_GRIDS = (*REPORT_GRIDS, "fig3", "fig7")


def _bill(classes: dict, key: tuple):
    """``(seconds, peak RSS GiB or None)`` of one cell from the dry-run rows ``classes`` (by cost class), or ``None``
    when its class (or, for a defense cell priced apart from its GC cell, that GC cell's class) did not run ok.
    A defense row with ``gc_class`` prices the defenses only: its cell's bill adds the GC class's estimate."""
    rows = [classes.get(key)]
    if rows[0] is not None and rows[0].get("gc_class"):
        rows.append(classes.get(tuple(rows[0]["gc_class"])))
    if any(r is None or r["status"] != "ok" or r["extrapolated_seconds"] is None for r in rows):
        return None
    peaks = [r["peak_rss_gib"] for r in rows if r.get("peak_rss_gib") is not None]
    return sum(r["extrapolated_seconds"] for r in rows), (max(peaks) if peaks else None)


def paper_cost(path: str | None = None, timings: str | None = None, profile="paper") -> tuple:
    """``(tables, classes, meta)``: the bill of the paper profile's MNIST cells per table, from a dry run
    (``path``, default :data:`PAPER_COST`) and the GPU cell timings (``timings``, default :data:`PAPER_TIMINGS`).

    Per table (the grid at ``profile`` today, MNIST cells only): its cells, how many the profile skips, how
    many are priced by a dry-run class (same :func:`cell_key`) and the CPU estimate summed over them (hours,
    extrapolated from the capped run: see the run's ``extrapolation``; a defense cell priced apart from its GC
    cell adds that GC class's estimate and peak), the cells priced on the GPU by a
    measured cell of the same class and their sum (minutes), the peak resident memory of its classes, its
    largest cell, and the classes that failed at their real size or were not reached. Nothing is priced by
    guess: a cell no run covers is counted as unpriced."""
    import json

    import pandas as pd

    from .book import find_root

    root = find_root()
    with open(path or os.path.join(root, PAPER_COST)) as f:
        run = json.load(f)
    cls = {tuple(r["cost_class"]): r for r in run["classes"]}
    gpu = {}
    if timings is not False:
        with open(timings or os.path.join(root, PAPER_TIMINGS)) as f:
            gpu_run = json.load(f)
        gpu = {r["cell"]: r["wall_s"] for r in gpu_run["cells"] if r.get("status") == "timed"}
    prof = get_profile(profile)
    grid_cells = {g: get_experiment(g).cells(prof) for g in COST_GRIDS}
    gpu_by_class = {}
    for c in (c for cs in grid_cells.values() for c in cs if c.label() in gpu):
        gpu_by_class.setdefault(tuple(map(str, cell_key(c))), gpu[c.label()])
    unreached = {tuple(r["cost_class"]) for r in run.get("not_reached", [])}
    out = []
    for g, all_cells in grid_cells.items():
        cells = [c for c in all_cells if c.dataset == "mnist"]
        if not cells:
            continue
        keys = [tuple(map(str, cell_key(c))) for c in cells]
        ok = [(c, *b) for c, k in zip(cells, keys) if (b := _bill(cls, k)) is not None]
        failed = sorted({cls[k]["cell"] for k in keys if k in cls and cls[k]["status"] != "ok"})
        on_gpu = [gpu_by_class[k] for k in keys if k in gpu_by_class]
        big = max(ok, key=lambda t: t[1], default=None)
        rss = [r for *_, r in ok if r is not None]
        out.append({"table": g, "MNIST cells": len(cells), "priced (CPU)": len(ok),
                    "CPU estimate (h)": round(sum(s for _, s, _ in ok) / 3600, 1),
                    "priced (GPU)": len(on_gpu), "GPU, priced cells (min)": round(sum(on_gpu) / 60, 1),
                    "peak RSS (GiB)": round(max(rss), 2) if rss else None,
                    "largest cell": "–" if big is None else f"{big[0].label()} ({big[1] / 3600:.1f} h)",
                    "failed at real size": ", ".join(failed) or "–",
                    "not reached": sum(k in unreached for k in keys),
                    "command": f"poisonlib run {g} --profile paper --data-root DATA --executor slurm"})
    classes = pd.DataFrame([{"cell": r["cell"], "status": r["status"], "n_poison": r.get("n_poison"),
                             "capped run (s)": None if r["seconds_capped"] is None else round(r["seconds_capped"], 1),
                             "skipped in-step (s)": None if r.get("seconds_skipped") is None else round(r["seconds_skipped"], 1),
                             "estimate (h)": None if r["extrapolated_seconds"] is None else round(r["extrapolated_seconds"] / 3600, 2),
                             "peak RSS (GiB)": r.get("peak_rss_gib"),
                             "reason / note": r.get("reason") or r.get("note") or (
                                 f"the defenses only: a cell's bill adds its GC cell's class ({', '.join(r['gc_class'])})"
                                 if r.get("gc_class") else "")} for r in run["classes"]])
    meta = {k: run.get(k) for k in ("machine", "device", "data", "steps", "inner", "extrapolation", "wall_s", "date", "commit", "budget_s")}
    meta["not_reached"] = len(run.get("not_reached", []))
    meta["resumed"] = run.get("resumed", [])  # later sessions (paper_cost --resume) that ran classes the budget did not reach
    return pd.DataFrame(out), classes, meta
