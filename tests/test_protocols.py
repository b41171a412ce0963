"""The two protocols (paper text vs released code), threaded through the pipeline."""

import math

import pytest
import torch

from poisonlib import attribution, data, report
from poisonlib._validation import PoisonlibError
from poisonlib.experiments import PROFILES, Profile, clean_and_target, gc_cell, load_for_profile
from poisonlib.models import model_for
from poisonlib.protocols import FACTORS, MNIST_NORMALIZATION, PROTOCOLS, finite_poisons, get_protocol, waterfall

from ._hand import accuracy, load_state


def test_paper_protocol_leaves_the_data_and_models_as_they_are():
    raw = data.load_dataset("mnist", n_train=50)
    ds = PROTOCOLS["paper"].prepare(raw)
    assert torch.equal(ds.x_train, raw.x_train) and ds.feature_box == (0.0, 1.0)
    net = model_for("nn", ds)
    assert [m.out_features for m in net if isinstance(m, torch.nn.Linear)] == [784, 784, 10]


def test_released_protocol_normalises_inputs_and_uses_the_released_nn():
    raw = data.load_dataset("mnist", n_train=50)
    ds = PROTOCOLS["released"].prepare(raw)
    m, s = MNIST_NORMALIZATION
    # an independent computation of torchvision's Normalize on one pixel
    assert float(ds.x_train[3, 0, 14, 14]) == pytest.approx((float(raw.x_train[3, 0, 14, 14]) - 0.1307) / 0.3081, abs=1e-6)
    assert ds.feature_box == pytest.approx(((0 - m) / s, (1 - m) / s))
    assert ds.feature_box[0] == pytest.approx(-0.4242, abs=1e-4) and ds.feature_box[1] == pytest.approx(2.8215, abs=1e-4)
    net = model_for("nn", ds)
    linears = [mod for mod in net if isinstance(mod, torch.nn.Linear)]
    assert [(lin.in_features, lin.out_features) for lin in linears] == [(784, 128), (128, 10)]
    assert any(isinstance(mod, torch.nn.ReLU) for mod in net) and not any(isinstance(mod, torch.nn.LeakyReLU) for mod in net)
    assert model_for("lr", ds).weight.shape == (10, 784)


def test_released_settings_of_each_stage():
    rel, pap = PROTOCOLS["released"], PROTOCOLS["paper"]
    assert rel.gc_options() == dict(params="first", scaling="sum", clip=None, optimizer="sgd", lr=1e-3, momentum=0.0)
    assert pap.gc_options() == dict(params="all", scaling="per_point", clip="box")
    cfg = PROFILES["cpu"].train_config("lr")
    assert pap.retrain_config("lr", cfg, 2800) == cfg
    re = rel.retrain_config("lr", cfg, 2800)
    assert math.ceil(2800 / re.batch_size) == 6 and re.epochs == 100 and re.lr == cfg.lr
    assert math.ceil(2800 / rel.retrain_config("cnn", cfg, 2800).batch_size) == 60
    clean = rel.clean_config("lr", cfg)
    assert (clean.optimizer, clean.epochs, clean.batch_size, clean.lr) == ("adadelta", 1, 64, 1.0)


def test_key_is_the_factors_not_the_name():
    walk = waterfall("paper", "released")
    assert [p.name for p in walk][0] == "paper" and len(walk) == 1 + len(FACTORS)
    assert walk[-1].key() == PROTOCOLS["released"].key() and walk[-1].name != "released"
    assert walk[1].key() != walk[0].key()
    with pytest.raises(PoisonlibError, match="unknown protocol factor"):
        PROTOCOLS["paper"].switch(boxx=False)
    with pytest.raises(PoisonlibError, match="protocol"):
        get_protocol("official")


def test_non_finite_poisons_are_refused_with_the_count():
    x = torch.zeros(5, 3)
    x[1, 2] = float("nan")
    x[4, 0] = float("inf")
    with pytest.raises(PoisonlibError, match="2 of 5 are not finite"):
        finite_poisons(x, "GC poisons")
    ok = torch.linspace(-1e30, 1e30, 6).reshape(2, 3)  # large but finite values pass unchanged
    assert torch.equal(finite_poisons(ok), ok)


def test_a_gc_cell_under_each_protocol(tmp_path):
    recs = {p: gc_cell("mnist", "lr", 1.0, 0.03, profile="smoke", protocol=p, gc_epochs=5, results_dir=str(tmp_path), progress=False,
                       keep_poisons=True) for p in ("paper", "released")}
    for p, rec in recs.items():
        assert rec["config"]["protocol"] == PROTOCOLS[p].key()
        m = rec["metrics"]
        # the retrained model's accuracy recomputed by hand, on the protocol's view of the test set
        ds = load_for_profile("mnist", "smoke", None, p)
        retrained = model_for("lr", ds)
        retrained.load_state_dict(load_state(rec["poisons"], "retrained"))
        acc = accuracy(retrained, ds.x_test, ds.y_test)
        assert m["protocol"] == p and m["retrained_acc"] == pytest.approx(acc, abs=1e-4)
        assert m["drop"] == pytest.approx(acc - m["reference_acc"], abs=1e-4)
        # reference_acc is an accuracy on the test set: a whole number of its points
        assert m["reference_acc"] * len(ds.y_test) / 100 == pytest.approx(round(m["reference_acc"] * len(ds.y_test) / 100), abs=1e-3)
    clean, _, _ = clean_and_target(load_for_profile("mnist", "smoke"), "lr", 1.0, "smoke", device="cpu", results_dir=str(tmp_path))
    ds = load_for_profile("mnist", "smoke")
    assert recs["paper"]["metrics"]["reference_acc"] == pytest.approx(accuracy(clean, ds.x_test, ds.y_test), abs=1e-4)
    # paper: clean model trained like the retrained one, so the drop is measured from it
    assert recs["paper"]["metrics"]["reference_acc"] == recs["paper"]["metrics"]["clean_acc"]
    # released: the GradPC script's 1-epoch clean model differs from the 100-epoch retraining
    assert recs["released"]["metrics"]["reference_acc"] != recs["released"]["metrics"]["clean_acc"]
    lo, hi = recs["paper"]["metrics"]["poison_range"]
    assert 0.0 <= lo and hi <= 1.0
    n, n_p = recs["paper"]["metrics"]["n_clean"], recs["paper"]["metrics"]["n_poison"]
    assert recs["paper"]["metrics"]["retrain_steps"] == 10 * math.ceil((n + n_p) / 100)  # smoke: 10 epochs of batch 100
    assert recs["released"]["metrics"]["retrain_steps"] == PROFILES["smoke"].released_epochs * math.ceil((n + n_p) / math.ceil(n / 6))
    assert recs["released"]["config_hash"] != recs["paper"]["config_hash"]


def test_verdict_needs_the_papers_sign():
    assert report.verdict(-1.0, -1.5) == "reproduced"
    assert report.verdict(+0.4, -1.5) == "not reproduced"  # within 2 points, wrong sign
    assert report.verdict(0.0, -1.57) == "not reproduced"
    assert report.verdict(-10.0, -12.0) == "reproduced"
    assert report.verdict(-7.0, -12.0) == "qualitatively"
    assert report.verdict(90.2, 91.94) == "reproduced"  # accuracies are positive


def test_by_protocol_pairs_the_columns():
    import pandas as pd

    def table(rows):
        return pd.DataFrame({"eps_d": ["0.03", "1"], "paper": [-1.0, -2.0], "ours": rows})

    out = report.by_protocol(table, {"paper": [1.0, 2.0], "released": [3.0, 4.0]})
    assert list(out.columns) == ["eps_d", "paper", "ours [paper]", "ours [released]"]
    assert out["ours [released]"].tolist() == [3.0, 4.0]


def test_profile_options_are_typed_and_checked():
    assert PROFILES["cpu-full"].max_poisons("nn", "attack") == 300 and PROFILES["cpu-full"].max_poisons("nn") == 2800
    with pytest.raises(PoisonlibError, match="unknown key"):
        Profile("x", "", False, None, limits={"nn": {"gc_epoch": 3}})
    with pytest.raises(PoisonlibError, match="leader_lrr"):
        Profile("x", "", False, None, baselines={"tgda": {"default": {"leader_lrr": 0.1}}})
    with pytest.raises(PoisonlibError, match="unknown baseline"):
        Profile("x", "", False, None, baselines={"tdga": {}})
    assert PROFILES["paper"].full_grids and not PROFILES["cpu"].full_grids


def test_attribution_walk_covers_every_factor_once():
    walk = attribution.steps()
    assert [f for f, _ in walk] == ["paper", *FACTORS]
    for (_, prev), (_, cur) in zip(walk, walk[1:]):
        changed = [k for k in FACTORS if getattr(prev, k) != getattr(cur, k)]
        assert len(changed) == 1
    cells = attribution.cells(rows=attribution.ROWS, eps_ds=(0.1,))
    assert not any(f == "nn" and c.model == "lr" for _, f, c in cells)
    per_model = attribution.cells(rows=attribution.ROWS, eps_ds={"lr": (0.1, 1.0), "nn": (0.1,)})
    assert {c.eps_d for _, _, c in per_model if c.model == "lr"} == {0.1, 1.0}
    assert {c.eps_d for _, _, c in per_model if c.model == "nn"} == {0.1}


def test_attribution_eps_d_per_model_at_cpu():
    from poisonlib.experiments import PROFILES

    cpu, paper = PROFILES["cpu"], PROFILES["paper"]
    assert "tau" not in cpu.attribution_eps_for("lr") and max(cpu.attribution_eps_for("nn")) <= 0.1
    assert paper.attribution_eps_for("nn") == paper.attribution_eps_for("lr") == attribution.EPS_DS


def test_load_for_profile_sees_the_protocol():
    ds = load_for_profile("mnist", "smoke", protocol="released")
    assert ds.info["protocol"] == "released" and ds.info["view"]["nn"] == "released"
    assert float(ds.x_train.min()) < -0.4


def test_calibrated_targets_through_the_pipeline(tmp_path):
    from poisonlib.experiments import calibration_request, target_cell
    from poisonlib.runner import calibrated_cells, get_experiment

    rec = target_cell("mnist", "nn", "calibrated", "smoke", results_dir=str(tmp_path), progress=False)
    m = rec["metrics"]
    assert rec["config"]["eps_w"] == "calibrated" and m["calibration"]["target_drop"] == calibration_request("mnist", "nn")["target_drop"]
    assert m["eps_w_calibrated"] > 0 and m["radius"] == m["eps_w_calibrated"]
    if m["calibration"]["tolerance_met"]:
        assert abs(m["calibration"]["val_drop"] - m["calibration"]["target_drop"]) <= 0.5
    # Table 1's two literal rows per model collapse to one calibrated row; label-flip targets have none
    cells = calibrated_cells(get_experiment("table1").cells(PROFILES["smoke"]), PROFILES["smoke"])
    assert sorted(c.model for c in cells) == ["cnn", "lr", "nn"] and all(c.eps_w == "calibrated" for c in cells)
    assert calibrated_cells(get_experiment("table6").cells(PROFILES["smoke"]), PROFILES["smoke"]) == []
    with pytest.raises(PoisonlibError, match="calibrated"):
        target_cell("mnist", "lr", "calibrated", "smoke", target="randompc", results_dir=str(tmp_path))


def test_cli_takes_the_protocol_and_refuses_an_unknown_one(tmp_path, capsys):
    from poisonlib.cli import main

    assert main(["run", "table1", "--profile", "smoke", "--protocol", "official"]) == 2
    assert "invalid choice: 'official'" in capsys.readouterr().err
    assert main(["tau", "--dataset", "mnist", "--model", "lr", "--eps-w", "-1"]) == 2


@pytest.mark.parametrize("protocol", ["paper", "released"])
def test_same_config_and_seed_give_the_same_numbers_from_scratch(tmp_path, protocol):
    """Two fresh stores, same cell: identical metrics (the determinism nbval no longer re-checks)."""
    recs = [gc_cell("mnist", "nn", 0.5, 0.1, profile="smoke", protocol=protocol, gc_epochs=5, results_dir=str(tmp_path / str(i)),
                    progress=False)["metrics"] for i in range(2)]
    assert recs[0] == recs[1]


def test_calibration_table_and_summary_read_the_records():
    info = [{"label": "MNIST NN", "dataset": "mnist", "model": "nn", "eps_w": 0.5, "scale": 1.0, "paper_tau": 2.48, "requested": -20.03,
             "lit": {"target_drop": -58.7, "tau2": 17.1},
             "cal": {"target_drop": -21.2, "tau2": 2.25, "eps_w_calibrated": 0.2414,
                     "calibration": {"val_drop": -20.33, "tolerance_met": True, "reachable": True}}},
            {"label": "MNIST CNN", "dataset": "mnist", "model": "cnn", "eps_w": 0.5, "scale": 1.0, "paper_tau": None, "requested": -24.78,
             "lit": "not run at this profile: x", "cal": "not run at this profile: x"}]
    t = report.calibration_table(info)
    assert t.loc[0, "calibrated ε_w"] == "0.241" and t.loc[0, "tolerance met"] == "yes" and t.loc[0, "calibrated: val drop (%)"] == "-20.33"
    assert t.loc[1, "note"].startswith("not run") and t.loc[1, "calibrated ε_w"] == "–"
    lines = report.calibration_summary("paper", info)
    # |−58.7 − (−20.03)| = 38.67 and |−21.2 − (−20.03)| = 1.17, computed here by hand
    assert "1 of 1" in lines[0] and "38.67" in lines[0] and "1.17" in lines[0]
    assert "ε_w 0.5 → 0.241" in lines[1]


def test_cpu_full_is_keyed_as_the_cpu_book_and_shares_the_cells_the_miniature_keeps():
    """cpu-full computes today's cpu grid under today's keys; the cpu miniature shares a cell with it exactly
    when every setting that shapes the cell is the same (the NN's GC), and never otherwise (LR's GC at 500 steps,
    the CNN trained 5 epochs)."""
    from poisonlib.keys import record_config
    from poisonlib.protocols import get_protocol

    full, mini = PROFILES["cpu-full"], PROFILES["cpu"]
    assert full.cell_config("lr", "mnist")["name"] == "cpu" and full.seeds_for("lr") == (0, 1, 2) and mini.seeds_for("lr") == (0,)

    def key(prof, model):
        return record_config("gc", dataset="mnist", model=model, eps_w=1.0, profile=prof, protocol=get_protocol("paper"),
                             device="cpu", eps_d=0.03, gc_epochs=prof.gc_epochs_for(model))

    assert key(full, "nn") == key(mini, "nn")  # same settings: one record serves both
    assert key(full, "lr") != key(mini, "lr") and key(full, "cnn") != key(mini, "cnn")  # 500 / 1000 GC steps; 5 / 10 CNN epochs
