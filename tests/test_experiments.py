import pytest

from poisonlib import PoisonlibError, paper
from poisonlib.experiments import PROFILES, gc_cell, gc_grid, get_profile, load_for_profile
from poisonlib.report import table2_comparison, target_comparison


def test_profiles():
    assert set(PROFILES) == {"smoke", "cpu", "paper"}
    assert get_profile("paper").train_config("cnn").batch_size == 1000
    assert get_profile("paper").train_config("lr").batch_size == 10000
    with pytest.raises(PoisonlibError, match="unknown profile 'huge'"):
        get_profile("huge")
    with pytest.raises(PoisonlibError, match="data_root"):
        load_for_profile("mnist", "paper")


def test_gc_cell_end_to_end_cached_and_deterministic():
    kw = dict(profile="smoke", device="cpu")
    r1 = gc_cell("mnist", "lr", 1.0, 0.1, **kw)
    m = r1["metrics"]
    assert not r1["cached"] and m["n_poison"] == 30 and m["n_clean"] == 300
    assert 0 <= m["retrained_acc"] <= 100 and m["drop"] == pytest.approx(m["retrained_acc"] - m["clean_acc"])
    assert m["tau2"] >= m["tauc"] >= 0 and len(m["gc_residual_curve"]) == 20
    assert 0.0 <= m["poison_range"][0] <= m["poison_range"][1] <= 1.0
    assert gc_cell("mnist", "lr", 1.0, 0.1, **kw)["cached"]
    again = gc_cell("mnist", "lr", 1.0, 0.1, force=True, **kw)["metrics"]  # same config + seed on CPU: same numbers
    assert again["retrained_acc"] == m["retrained_acc"] and again["gc_residual_curve"] == m["gc_residual_curve"]


def test_eps_d_tau_and_report_tables():
    recs = gc_grid("mnist", "lr", 1.0, [0.03, "tau"], profile="smoke", device="cpu", progress=False)
    tau_rec = [r for r in recs if r["config"]["eps_d"] == "tau"][0]
    assert tau_rec["metrics"]["eps_d"] == pytest.approx(tau_rec["metrics"]["tau2"], rel=1e-2)
    t = table2_comparison(recs, "mnist", "lr")
    assert list(t["eps_d"]) == ["0.03", "τ(2)"]
    assert t.loc[0, "paper drop (%)"].startswith(f"{paper.TABLE2[('mnist', 'lr')]['gc'][0.03]:+.2f}")
    tc = target_comparison(recs[0]["metrics"], "mnist", "lr")
    assert tc.loc[0, "paper"] == "92.35"


def test_paper_module_holds_reported_numbers_only():
    assert paper.table2_row("mnist", "lr")["gc"]["tau"] == -69.66
    assert "reported" in paper.SOURCE
    with pytest.raises(PoisonlibError, match="no row mnist/vit"):
        paper.table2_row("mnist", "vit")
