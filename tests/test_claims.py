"""The claims ledger: ≥ 15 claims judged per protocol; a change of evidence flips a verdict; a claim
without evidence is *not testable* with its reason; ``poisonlib export`` writes a checked manifest."""

import hashlib
import json
import os

import pytest

from poisonlib import cli, paper
from poisonlib.claims import CLAIMS, ledger, ledger_table
from poisonlib.claims._core import FAILS, HOLDS, PART, UNTESTABLE, Part, combine
from poisonlib.claims.summary import summary


def _report(protocol="paper"):
    """A synthetic report whose numbers are the paper's own (3 seeds, std 0.05)."""
    es = []

    def add(t, e, v):
        es.append({"table": t, "entry": e, "ours": v, "ours_std": 0.05, "seeds": 3, "profile": "cpu", "protocol": protocol,
                   "records": f"r{len(es)}", "hardware": "x86_64, 2 cores"})

    for m, r in paper.TABLE1.items():
        add("Table 1", f"MNIST {m.upper()}: clean accuracy", r["clean"])
        for w, (a, _) in r["gradpc"].items():
            add("Table 1", f"MNIST {m.upper()}: GradPC ε_w={w:g} accuracy", a)
        add("Table 1", f"MNIST {m.upper()}: TGDA (ε_d=0.03) accuracy", r["tgda"][0])
    for (d, m), r in paper.TABLE2.items():
        n = f"{d} {m.upper()}"
        add("Table 2", f"{n}: GradPC drop", r["gradpc"])
        add("Table 2", f"{n}: τ(2)", r["tau"])
        for e, p in r["gc"].items():
            add("Table 2", f"{n}: GC ε_d={e}", p)
        for a, lab in (("tgda", "TGDA"), ("gm", "GM")):
            for e, p in r[a].items():
                add("Table 2", f"{n}: {lab} ε_d={e}", p)
    for m, r in paper.TABLE8.items():
        for s, k in (("w", "w"), ("w2", "w/2")):
            add("Table 8", f"MNIST {m.upper()}: τ({k})", r["tau_" + s])
            for e, p in r[s].items():
                add("Table 8", f"MNIST {m.upper()}: GC vs {k} ε_d={e}", p)
    return es


def _verdict(rows, cid, protocol="paper"):
    return next(r for r in rows if r["id"] == cid and r["protocol"] == protocol)


def test_the_ledger_has_fifteen_claims_each_with_criterion_and_verdict_per_protocol():
    rows = ledger({"paper": _report("paper"), "released": _report("released")})
    assert len(CLAIMS) >= 15
    for p in ("paper", "released"):
        mine = [r for r in rows if r["protocol"] == p]
        assert {r["id"] for r in mine} == set(CLAIMS)
        assert all(r["criterion"] and r["location"] and r["caveat"] and r["verdict"] in (HOLDS, PART, FAILS, UNTESTABLE) for r in mine)
    table = ledger_table(rows)
    assert len(table) == len(CLAIMS) and {"verdict [paper]", "verdict [released]", "criterion"} <= set(table.columns)


def test_the_papers_own_numbers_make_its_table_claims_hold():
    rows = ledger({"paper": _report()})
    for cid in (1, 8, 13):
        assert _verdict(rows, cid)["verdict"] == HOLDS, _verdict(rows, cid)
    # claims 9 and 10: MNIST rows hold, and the paper's ResNet rows as well (all numbers present)
    assert _verdict(rows, 9)["verdict"] == HOLDS and "-22.97 ± 0.05 (3 seeds)" in _verdict(rows, 9)["evidence"]


def test_gc_losing_to_tgda_at_one_eps_flips_claim_9():
    es = _report()
    assert _verdict(ledger({"paper": es}), 9)["verdict"] == HOLDS
    gc = next(e for e in es if e["entry"] == "mnist NN: GC ε_d=0.1")
    gc["ours"] = -1.0  # TGDA: -1.72
    row = _verdict(ledger({"paper": es}), 9)
    assert row["verdict"] == FAILS and "mnist NN" in row["detail"]


def test_w2_not_lowering_tau_makes_claim_13_hold_in_part():
    es = _report()
    next(e for e in es if e["entry"] == "MNIST CNN: τ(w/2)")["ours"] = 2.0
    row = _verdict(ledger({"paper": es}), 13)
    assert row["verdict"] == PART and "τ lower" in row["detail"]


def test_a_claim_without_evidence_is_not_testable_with_its_reason():
    rows = ledger({"paper": _report()})
    for cid in (4, 12, 14):
        r = _verdict(rows, cid)
        assert r["verdict"] == UNTESTABLE and r["detail"].startswith("needs:") and len(r["detail"]) > 20
    assert "MNIST-17" in _verdict(rows, 4)["detail"]


def test_the_phase_transition_is_judged_on_the_binary_transition_rows():
    def rows_for(star):
        return [{"target": "gradpc", "seed": s, "eps_ratio": x, "reaches": x >= star} for s in (0, 1) for x in (0.5, 0.9, 1.1, 1.5, 2.0)]

    tr = {"rows": rows_for(1.1), "summary": [{"target": "gradpc", "tau": 0.3, "seeds": [0, 1], "mean": 1.1, "std": 0.0}]}
    sweep = {"tau": 1.0, "w_norm": 1.0, "rows": [{"eps_d": x, "param_distance": 0.01 if x >= 1 else 0.5} for x in (0.5, 0.9, 1.1, 2.0)]}
    ok = _verdict(ledger({"paper": []}, transition=tr, sweeps={"or": sweep, "gaussian10": sweep}), 4)
    assert ok["verdict"] == HOLDS and "ε*/τ" in ok["evidence"]
    tr["rows"] = rows_for(0.5)  # reaching below τ contradicts Eq. 20
    assert _verdict(ledger({"paper": []}, transition=tr, sweeps={"or": sweep, "gaussian10": sweep}), 4)["verdict"] == PART


def test_combine():
    h, f, u = Part("a", "holds", ""), Part("b", "fails", ""), Part("c", "untestable", "x")
    assert combine([h, h]) == (HOLDS, "")
    assert combine([u])[0] == UNTESTABLE
    assert combine([h, f])[0] == PART and combine([h, f], universal=True)[0] == FAILS
    assert combine([h, u]) == (PART, "holds: a; not testable: c")


def test_summary_counts_verdicts_per_protocol():
    es = _report()
    s = summary(ledger({"paper": es}), es, profile="cpu", gpu_path="/nonexistent.json")
    assert len(s["scope"]) == len(CLAIMS) and sum(s["results"]["paper"].values()) == len(CLAIMS)
    assert s["communication"].startswith("None") and s["compute"][0]["cells"] > 0


def test_export_writes_records_and_a_checked_manifest(tmp_path, monkeypatch):
    store = tmp_path / "store"
    rec = {"experiment": "gc", "config": {"profile": {"name": "smoke"}, "dataset": "mnist", "model": "lr"}, "config_hash": "abc",
           "metrics": {"n_clean": 300}, "git_commit": "x"}
    other = {**rec, "config": {**rec["config"], "profile": {"name": "cpu"}}, "config_hash": "def"}
    for r in (rec, other):
        (store / "gc").mkdir(parents=True, exist_ok=True)
        (store / "gc" / f"{r['config_hash']}.json").write_text(json.dumps(r))
    (store / "poisons").mkdir()
    (store / "poisons" / "gc-abc.pt").write_bytes(b"poison")
    (store / "poisons" / "gc-def.pt").write_bytes(b"other")
    monkeypatch.setenv("POISONLIB_RESULTS", str(store))
    out = tmp_path / "out"
    assert cli.main(["export", "--profile", "smoke", "--out", str(out)]) == 0
    man = json.loads((out / "MANIFEST.json").read_text())
    assert sorted(f["path"] for f in man["files"]) == [os.path.join("poisons", "gc-abc.pt"), os.path.join("records", "gc", "abc.json")]
    for f in man["files"]:
        assert f["sha256"] == hashlib.sha256((out / f["path"]).read_bytes()).hexdigest() and f["bytes"] > 0
    assert man["environment"]["python"]


@pytest.mark.parametrize("args", [["--profile", "cpu", "--out", "{out}"], ["--profile", "smoke", "--out", "{tmp}/afile/x"]])
def test_export_bad_input_one_line_exit_2_nothing_written(tmp_path, monkeypatch, capsys, args):
    (tmp_path / "store").mkdir()
    (tmp_path / "afile").write_text("")
    monkeypatch.setenv("POISONLIB_RESULTS", str(tmp_path / "store"))
    out = tmp_path / "out"
    assert cli.main(["export", *[a.format(out=out, tmp=tmp_path) for a in args]]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("poisonlib: error:")
    assert not out.exists()


def test_label_flip_with_tau_zero_is_not_testable_and_a_ratio_outside_twice_tau_fails():
    """Claim 12 on the Table 6 rows: τ = 0 (a smoke-size target stationary on the clean data) gives no ratio to judge."""
    def rows(tau2, n_poison):
        out = []
        for err in paper.TABLE6:
            out += [{"kind": "target", "eps_w": err, "tau2": tau2, "status": "computed"},
                    {"kind": "attack", "attack": "mt", "eps_w": err, "n_poison": n_poison, "n_clean": 1000, "status": "computed"}]
        return {"table6": out}

    zero = _verdict(ledger({"paper": []}, rows_by_protocol={"paper": rows(0.0, 50)}), 12)
    assert zero["verdict"] == UNTESTABLE and "τ = 0" in zero["detail"]
    assert _verdict(ledger({"paper": []}, rows_by_protocol={"paper": rows(0.1, 100)}), 12)["verdict"] == HOLDS
    assert _verdict(ledger({"paper": []}, rows_by_protocol={"paper": rows(0.1, 300)}), 12)["verdict"] == FAILS
