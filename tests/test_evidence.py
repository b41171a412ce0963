"""The claims' sweeps (poisonlib.claims.evidence): computed once, kept in the store keyed by what they
were computed from, read back by the pages that judge the claims; what the store lacks is left out."""

import glob
import os

from poisonlib import results
from poisonlib.claims import evidence, judge


def _records(store):
    return sorted(glob.glob(os.path.join(store, "evidence", "*.json")))


def test_a_sweep_is_computed_once_and_a_changed_setting_is_a_new_record(tmp_path, monkeypatch):
    store = str(tmp_path / "results")
    monkeypatch.setenv("POISONLIB_RESULTS", store)
    first = evidence.or_sweep("smoke")
    assert len(_records(store)) == 1 and first["tau"] > 0 and len(first["rows"]) > 3
    with results.store_only():  # served from the store: computing again would raise
        again = evidence.or_sweep("smoke")
    assert again["rows"] == first["rows"] and again["tau"] == first["tau"]
    moved = evidence.or_sweep("smoke", or_target=(-2.0, -1.5, 0.25))  # another target: another key, another tau
    assert len(_records(store)) == 2 and moved["tau"] != first["tau"]


def test_store_only_leaves_missing_sweeps_out_and_the_claims_say_what_they_need(tmp_path, monkeypatch):
    monkeypatch.setenv("POISONLIB_RESULTS", str(tmp_path / "results"))
    ev = evidence.collect("smoke", compute=False)
    assert ev == {"sweeps": {}, "transition": None} and not _records(str(tmp_path / "results"))
    c4 = next(c for c in judge([], {"paper": []}, "smoke", compute=False) if c["id"] == 4)
    assert c4["verdict"] == "not testable at this profile" and "transition" in c4["evidence"]


def test_judge_reads_the_plateau_grids_the_report_tables_leave_out(tmp_path, monkeypatch):
    """Claim 7 is judged on the Fig. 3 / Fig. 7 grids (the GC-curves chapter's), which the report's table
    grids do not include: judge() adds them, from the store when compute=False."""
    import poisonlib.scheduler as sched

    monkeypatch.setenv("POISONLIB_RESULTS", str(tmp_path / "results"))
    fig7 = [{"status": "cached", "kind": "gc", "model": "lr", "tau2": 3.0, "tauc": 0.7, "eps_d_used": e, "grad_mixed": g, "defense": None}
            for e, g in ((0.03, 0.9), (0.1, 0.8), (0.3, 0.5), (1.0, 0.2))]
    asked = []

    def fake(grid, profile, **kw):
        asked.append((grid, results._STORE_ONLY[0]))
        return fig7 if grid == "fig7" else []

    monkeypatch.setattr(sched, "run_experiment", fake)
    c7 = next(c for c in judge([], {"paper": {}}, "smoke", compute=False) if c["id"] == 7)
    assert sorted(asked) == [("fig3", True), ("fig7", True)]
    assert c7["verdict"] == "holds in part" and "LR ρ = 1.00 over 4 cells" in c7["evidence"]
    fig7[0]["grad_mixed"] = 0.1  # the plateau no longer rises with τ − ε_d
    c7 = next(c for c in judge([], {"paper": {}}, "smoke", compute=False) if c["id"] == 7)
    assert c7["verdict"] == "does not hold"
