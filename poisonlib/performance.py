"""Tables and figures of the book's performance chapter, read from the JSON files that
``benchmarks/gc_step.py --json``, ``benchmarks/gc_convergence.py --json`` and
``poisonlib book`` (``book/executed/timings.json``) write."""

from __future__ import annotations

import json
import os

import pandas as pd

STEP_COLUMNS = ("fwd+bwd", "released f64", "released f32 all", "ours")


def load(folder: str, name: str):
    """The JSON document ``folder/name``, or ``None`` when it is absent (the chapter then says so)."""
    path = os.path.join(folder, name)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def _missing(what: str) -> pd.DataFrame:
    return pd.DataFrame({"note": [f"no committed measurement: run {what}"]})


def step_table(rows: list[dict] | None) -> pd.DataFrame:
    """One row per (model, n_p): milliseconds per step of each column and the two ratios."""
    if not rows:
        return _missing("python benchmarks/gc_step.py --json benchmarks/results/gc_step_cpu.json")
    df = pd.DataFrame([{"model": r["model"], "n_p": r["n_poison"], "method": r["method"], "threads": r["threads"],
                        **{f"{c} (ms)": r[f"{c} ms"] for c in STEP_COLUMNS},
                        "ours / released f32 all": r["ours / released f32 all"], "ours / fwd+bwd": r["ours / fwd+bwd"],
                        "goal (ours / fwd+bwd)": 1.5 if r["model"] == "lr" else 2.0} for r in rows])
    df["goal met"] = df["ours / fwd+bwd"] <= df["goal (ours / fwd+bwd)"]
    return df.set_index(["model", "n_p"]).round(3)


def step_figure(ax, rows: list[dict] | None):
    """Grouped bars (log scale): ms per step of each column for each (model, n_p)."""
    if not rows:
        ax.text(0.5, 0.5, "no committed measurement", ha="center", transform=ax.transAxes)
        return ax
    labels = [f"{r['model']}\nn_p={r['n_poison']}" for r in rows]
    width = 0.8 / len(STEP_COLUMNS)
    for k, c in enumerate(STEP_COLUMNS):
        ax.bar([i + k * width for i in range(len(rows))], [r[f"{c} ms"] for r in rows], width, label=c)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(rows))], labels, fontsize=8)
    ax.set(yscale="log", ylabel="ms per GC step")
    ax.legend(fontsize=7, ncol=2)
    return ax


def convergence_table(rows: list[dict] | None) -> pd.DataFrame:
    """Steps and seconds to the residual threshold per (problem, rule), or the residual reached."""
    if not rows:
        return _missing("python benchmarks/gc_convergence.py --json benchmarks/results/gc_convergence_cpu.json")

    def outcome(r):
        if r["diverged"]:
            return "diverged"
        if r["steps"] is None:
            return f"not reached (residual {r['final_residual']:.3g})"
        return f"{r['steps']} steps, {r['seconds']:.2f} s"

    df = pd.DataFrame([{"problem": r["problem"], "τ(2)": round(r["tau"], 4), "ε_d": round(r["eps_d"], 4), "rule": r["rule"],
                        "threshold": r["threshold"], "steps run": r["epochs"], "to 1 % of ‖g(μ)‖": outcome(r),
                        "run (s)": round(r["run_seconds"], 1)} for r in rows])
    return df.set_index(["problem", "rule"])


def _chapters(doc: dict) -> dict:
    """``{chapter: seconds}`` of a build: ``doc["chapters"]``, or the cpu entry of a copy of
    ``book/executed/timings.json`` (``{profile: {chapter: seconds}}``)."""
    return doc.get("chapters") or doc.get("cpu") or {}


def book_table(doc: dict | None, full: dict | None = None) -> pd.DataFrame:
    """Seconds per chapter of one build (longest first) with its share of the total; with ``full`` (a build of
    another profile, e.g. ``cpu-full``) its seconds beside them and the ratio."""
    if not doc or not _chapters(doc):
        return _missing("make book, then python benchmarks/book_times.py --json benchmarks/results/book_times_cpu.json")
    col = f"{doc.get('profile', 'cpu')} (s)"
    df = pd.Series(_chapters(doc), name=col).sort_values(ascending=False).to_frame()
    df["share"] = (df[col] / df[col].sum()).round(3)
    if full and _chapters(full):
        other = f"{full.get('profile', 'other')} (s)"
        df[other] = pd.Series(_chapters(full))
        df[f"{other[:-4]} / {col[:-4]}"] = (df[other] / df[col]).round(1)
    total = df.sum(numeric_only=True)
    total["share"] = 1.0
    if full and _chapters(full):
        total[f"{other[:-4]} / {col[:-4]}"] = round(total[other] / total[col], 1)
    df.loc["total"] = total.round(1)
    return df


def book_figure(ax, doc: dict | None):
    """Horizontal bars: seconds per chapter, longest on top."""
    if not doc or not _chapters(doc):
        ax.text(0.5, 0.5, "no committed measurement", ha="center", transform=ax.transAxes)
        return ax
    s = pd.Series(_chapters(doc)).sort_values()
    ax.barh(s.index, s.values)
    ax.set(xlabel="seconds", title=f"{doc.get('profile', 'cpu')} profile, {doc.get('machine', '')}, total {s.sum() / 60:.1f} min")
    ax.tick_params(axis="y", labelsize=7)
    return ax


def cells_table(doc: dict | None, top: int = 12) -> pd.DataFrame:
    """The build's compute seconds by (experiment, model, protocol), largest first, with the
    number of cells and their share of all cell time (``benchmarks/book_times.py``)."""
    if not doc or not doc.get("cells"):
        return _missing("python benchmarks/book_times.py --json benchmarks/results/book_times_cpu.json after make book")
    df = pd.DataFrame(doc["cells"]).sort_values("seconds", ascending=False)
    df["share"] = (df["seconds"] / df["seconds"].sum()).round(3)
    df["s / cell"] = (df["seconds"] / df["cells"]).round(1)
    return df.head(top).set_index(["experiment", "model", "protocol"])


def budget_table(rows: list[dict] | None) -> pd.DataFrame:
    """One row per step budget of the same cell: the residual along the way, the final one and the drop."""
    if not rows:
        return _missing("python benchmarks/gc_budget.py --json benchmarks/results/gc_budget_cpu.json")
    df = pd.DataFrame([{"model": r["model"], "ε_d": r["eps_d"], "τ(2)": round(r["tau2"], 2), "GC steps": r["epochs"],
                        **{f"residual @{k}": round(v, 3) for k, v in r["curve"].items()},
                        "final residual": round(r["residual_final"], 3), "drop (points)": round(r["drop"], 2),
                        "wall time (s)": round(r["wall_time_s"])} for r in rows])
    steps = sorted({int(k) for r in rows for k in r["curve"]})
    first = ["model", "ε_d", "τ(2)", "GC steps"]
    df = df[first + [f"residual @{k}" for k in steps] + [c for c in df.columns if c not in first and not c.startswith("residual @")]]
    return df.set_index(["model", "ε_d", "GC steps"])


def memory_table(rows: list[dict] | None) -> pd.DataFrame:
    """Peak extra resident memory (GiB) of each step column, per (model, n_p)."""
    if not rows:
        return _missing("python benchmarks/gc_step.py --models cnn --eps 1 --json benchmarks/results/gc_step_cpu_cnn_eps1.json")
    df = pd.DataFrame([{"model": r["model"], "n_p": r["n_poison"], **{f"{c} (GiB)": round(r[f"{c} GiB"], 2) for c in STEP_COLUMNS}}
                       for r in rows])
    return df.set_index(["model", "n_p"])


def flops_table(rows: list[dict] | None) -> pd.DataFrame:
    """GFLOP of one forward + backward and of one GC step, and their ratio, per (model, n_p)."""
    if not rows:
        return _missing("python benchmarks/gc_flops.py --json benchmarks/results/gc_flops_cpu.json")
    df = pd.DataFrame([{"model": r["model"], "n_p": r["n_poison"], "method": r["method"], "fwd+bwd (GFLOP)": r["fwd_bwd_flops"] / 1e9,
                        "ours (GFLOP)": r["ours_flops"] / 1e9, "ours / fwd+bwd (flops)": r["ours_flops"] / r["fwd_bwd_flops"]} for r in rows])
    return df.set_index(["model", "n_p"]).round(3)
