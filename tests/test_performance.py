"""The performance chapter's tables and figures, on hand-made benchmark rows."""

import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from poisonlib import performance  # noqa: E402


def _step_row(model, n_p, ours, fb):
    cols = {f"{c} ms": v for c, v in zip(performance.STEP_COLUMNS, (fb, 10.0, 5.0, ours))}
    return dict(model=model, n_poison=n_p, method="m", threads=1, **cols, **{"ours / released f32 all": ours / 5.0, "ours / fwd+bwd": ours / fb})


def test_step_table_marks_the_goal_per_model():
    df = performance.step_table([_step_row("lr", 84, 1.2, 1.0), _step_row("nn", 84, 2.5, 1.0)])
    assert bool(df.loc[("lr", 84), "goal met"]) and not bool(df.loc[("nn", 84), "goal met"])
    assert df.loc[("nn", 84), "goal (ours / fwd+bwd)"] == 2.0
    mem = dict(_step_row("cnn", 2800, 1.0, 1.0), **{f"{c} GiB": 1.0 for c in performance.STEP_COLUMNS})
    assert performance.memory_table([mem]).loc[("cnn", 2800), "ours (GiB)"] == 1.0
    fig, ax = plt.subplots()
    performance.step_figure(ax, [_step_row("lr", 84, 1.2, 1.0)])
    assert len(ax.patches) == len(performance.STEP_COLUMNS)
    plt.close(fig)


def test_convergence_table_says_what_each_rule_reached():
    base = dict(problem="g", tau=0.5, eps_d=0.75, threshold=0.01, epochs=100, run_seconds=1.0)
    rows = [dict(base, rule="ours", steps=10, seconds=0.1, final_residual=0.001, diverged=False),
            dict(base, rule="released lr=10", steps=None, seconds=None, final_residual=0.2, diverged=False),
            dict(base, rule="released lr=100", steps=None, seconds=None, final_residual=float("nan"), diverged=True)]
    col = performance.convergence_table(rows)["to 1 % of ‖g(μ)‖"]
    assert col[("g", "ours")] == "10 steps, 0.10 s"
    assert col[("g", "released lr=10")] == "not reached (residual 0.2)" and col[("g", "released lr=100")] == "diverged"


def test_book_table_sums_and_missing_files_say_how_to_make_them(tmp_path):
    (tmp_path / "b.json").write_text(json.dumps({"chapters": {"a": 30.0, "b": 10.0}}))
    df = performance.book_table(performance.load(str(tmp_path), "b.json"))
    assert list(df.index) == ["a", "b", "total"] and df.loc["total", "cpu (s)"] == 40.0 and df.loc["a", "share"] == 0.75
    full = {"profile": "cpu-full", "chapters": {"a": 300.0, "b": 20.0}}
    both = performance.book_table(performance.load(str(tmp_path), "b.json"), full)
    assert both.loc["a", "cpu-full / cpu"] == 10.0 and both.loc["total", "cpu-full (s)"] == 320.0 and both.loc["total", "cpu-full / cpu"] == 8.0
    assert performance.load(str(tmp_path), "absent.json") is None
    timings = {"cpu": {"a": 30.0, "b": 10.0}, "smoke": {"a": 1.0}}  # a copy of book/executed/timings.json
    assert performance.book_table(timings).loc["total", "cpu (s)"] == 40.0
    assert "benchmarks/gc_step.py" in performance.step_table(None)["note"][0]


def test_book_times_sums_a_stores_cells_and_the_table_ranks_them(tmp_path):
    import subprocess
    import sys

    from poisonlib.protocols import PROTOCOLS

    root = tmp_path / "book"
    (root / "book" / "executed").mkdir(parents=True)
    (root / "book" / "executed" / "timings.json").write_text(json.dumps({"cpu": {"a": 30.0, "b": 10.0}}))
    for i, (exp, model, secs) in enumerate([("gc", "lr", 5.0), ("gc", "lr", 7.0), ("gc", "nn", 20.0), ("target", "lr", 1.0)]):
        (root / "results" / exp).mkdir(parents=True, exist_ok=True)
        rec = {"config": {"model": model, "protocol": PROTOCOLS["paper"].key()}, "wall_time_s": secs}
        (root / "results" / exp / f"{i}.json").write_text(json.dumps(rec))
    (root / "results" / "models").mkdir()
    (root / "results" / "models" / "reference-x.json").write_text(json.dumps({"accuracy": 1.0}))  # not a cell
    out = tmp_path / "t.json"
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", "book_times.py")
    subprocess.run([sys.executable, script, "--root", str(root), "--json", str(out)], check=True, capture_output=True)
    doc = json.loads(out.read_text())
    assert doc["total_s"] == 40.0 and doc["chapters"] == {"a": 30.0, "b": 10.0}
    df = performance.cells_table(doc)
    assert list(df.index) == [("gc", "nn", "paper"), ("gc", "lr", "paper"), ("target", "lr", "paper")]
    assert df.loc[("gc", "lr", "paper"), "cells"] == 2 and df.loc[("gc", "lr", "paper"), "s / cell"] == 6.0
    assert "book_times.py" in performance.cells_table(None)["note"][0]


def test_budget_table_puts_the_budgets_side_by_side():
    base = dict(model="nn", eps_w=0.5, eps_d=1.0, tau2=17.0, n_poison=2800, residual_initial=22.5, retrained_acc=91.0, target_acc=31.0,
                threads=1, commit="x")
    rows = [dict(base, epochs=100, residual_final=15.1, drop=1.2, wall_time_s=100.0, curve={"0": 45.0, "100": 15.1}),
            dict(base, epochs=1000, residual_final=14.6, drop=1.4, wall_time_s=900.0, curve={"0": 45.0, "100": 15.1, "1000": 14.6})]
    df = performance.budget_table(rows)
    assert list(df.index.get_level_values("GC steps")) == [100, 1000]
    assert df.loc[("nn", 1.0, 1000), "final residual"] == 14.6 and df["residual @1000"].isna().tolist() == [True, False]


def test_flops_table_ratio():
    # the ratio is computed from the two counts (a stale stored ratio is not shown)
    df = performance.flops_table([dict(model="nn", n_poison=84, method="double_backward", fwd_bwd_flops=2e9, ours_flops=5e9, ratio=9.9)])
    assert df.loc[("nn", 84), "ours (GFLOP)"] == 5.0 and df.loc[("nn", 84), "ours / fwd+bwd (flops)"] == 2.5
