"""Baseline-attack and defense cells (Tables 2, 3, 6, 7, 9, 10) at the smoke profile: the
wiring around the attacks (targets, budgets, caching, reports), not the attacks themselves
(tests/test_tgda_gm.py, tests/test_kkt_mt.py, tests/test_defenses.py test those)."""

import json
import os

import numpy as np
import pytest
import torch

from poisonlib import PoisonlibError, report, runner
from poisonlib.baselines import attack_cell, defense_cell
from poisonlib.cli import main
from poisonlib.data import load_dataset
from poisonlib.defenses import last_layer_view, sanitize, scoring_view
from poisonlib.experiments import clean_and_target, load_for_profile
from poisonlib.models import model_for

from ._hand import accuracy, load_state


def test_defense_cell_removes_as_many_points_as_poisons():
    rec = defense_cell("mnist", "lr", 1.0, 0.1, profile="smoke", device="cpu")
    m = rec["metrics"]
    assert m["n_poison"] == 30
    for d in ("influence", "sever"):
        assert m[f"{d}_removed"] == m["n_poison"] and 0 <= m[f"{d}_removed_poisons"] <= m["n_poison"]
    # the accuracies before any defense, recomputed by hand from the stored clean model and the
    # model GC's cell retrained on clean ∪ poisons; recovered / drop measured from those
    ds = load_for_profile("mnist", "smoke")
    clean, _, _ = clean_and_target(ds, "lr", 1.0, "smoke", device="cpu")
    attacked = model_for("lr", ds)
    attacked.load_state_dict(load_state(os.path.join(os.environ["POISONLIB_RESULTS"], "poisons", f"gc-{m['gc_record']}.pt"), "retrained"))
    clean_acc, attacked_acc = accuracy(clean, ds.x_test, ds.y_test), accuracy(attacked, ds.x_test, ds.y_test)
    assert m["clean_acc"] == pytest.approx(clean_acc, abs=1e-4) and m["attacked_acc"] == pytest.approx(attacked_acc, abs=1e-4)
    for d in ("influence", "sever", "maxup"):
        assert m[f"{d}_recovered"] == pytest.approx(m[f"{d}_acc"] - attacked_acc, abs=1e-4)
        assert m[f"{d}_drop"] == pytest.approx(m[f"{d}_acc"] - clean_acc, abs=1e-4)
        assert m[f"{d}_acc"] * len(ds.y_test) / 100 == pytest.approx(round(m[f"{d}_acc"] * len(ds.y_test) / 100), abs=1e-3)
    again = defense_cell("mnist", "lr", 1.0, 0.1, profile="smoke", device="cpu")
    assert again["cached"] and again["metrics"] == m
    with pytest.raises(PoisonlibError, match="numeric eps_d"):
        defense_cell("mnist", "lr", 1.0, "tau", profile="smoke")


@pytest.mark.parametrize("attack", ["tgda", "gm", "kkt", "mt"])
def test_attack_cells_are_evaluated_like_gc(attack):
    rec = attack_cell("mnist17", "lr", 1.0, 0.1, attack, profile="smoke", device="cpu")
    m = rec["metrics"]
    assert m["n_poison"] <= round(0.1 * m["n_clean"]) and m["eps_d"] == pytest.approx(m["n_poison"] / m["n_clean"])
    # the clean accuracy recomputed by hand from the stored clean model; the retrained one is a
    # whole number of test points; the drop is measured from the hand-computed clean accuracy
    ds = load_for_profile("mnist17", "smoke")
    clean, _, _ = clean_and_target(ds, "lr", 1.0, "smoke", device="cpu")
    clean_acc = accuracy(clean, ds.x_test, ds.y_test)
    assert m["clean_acc"] == pytest.approx(clean_acc, abs=1e-4)
    assert m["retrained_acc"] * len(ds.y_test) / 100 == pytest.approx(round(m["retrained_acc"] * len(ds.y_test) / 100), abs=1e-3)
    assert m["drop"] == pytest.approx(m["retrained_acc"] - clean_acc, abs=1e-4)
    assert rec["config"]["options"] and json.dumps(m["attack_config"])  # settings recorded, JSON-safe
    if attack == "mt":
        assert isinstance(m["attack_config"]["reached"], bool)


def test_kkt_refuses_a_network():
    with pytest.raises(PoisonlibError, match="linear"):
        attack_cell("mnist17", "nn", 0.5, 0.1, "kkt", profile="smoke", device="cpu")


def test_attack_targets_tgda_and_labelflip():
    ds = load_for_profile("mnist17", "smoke")
    _, tgt, info = clean_and_target(ds, "lr", 0.3, "smoke", target="tgda", device="cpu")
    assert info["tgda_eps_d"] == pytest.approx(0.3, abs=1 / len(ds.x_train)) and info["delta_norm"] > 0
    _, tgt, info = clean_and_target(ds, "lr", 0.1, "smoke", target="labelflip", device="cpu")
    assert 0 <= info["label_flip"]["test_error"] <= 1 and info["target_acc"] == pytest.approx(100 * (1 - info["label_flip"]["test_error"]), abs=1e-3)


def test_table6_runs_kkt_and_gc_at_the_budget_mt_used():
    rows = runner.run_experiment("table6", "smoke", device="cpu")
    for err in runner.LABEL_FLIP_ERRORS:
        mt = report.select(rows, kind="attack", attack="mt", eps_w=err)[0]
        for other in (report.select(rows, kind="attack", attack="kkt", eps_w=err)[0], report.select(rows, kind="gc", eps_w=err)[0]):
            assert other["eps_d_from"] == "mt" and other["eps_d_used"] == pytest.approx(mt["eps_d_used"], abs=1e-6)
    t = report.table6(rows)
    assert len(t) == 3 and t["MT n_p paper"].tolist() == ["756 (0.058)", "2113 (0.162)", "3907 (0.300)"]


def test_tables_7_and_9_show_skipped_cells_with_their_reason():
    rows = runner.run_experiment("table7", "smoke", device="cpu", cells=[c for c in runner.get_experiment("table7").cells(
        runner.get_profile("smoke")) if c.model != "cnn"])
    t = report.table7(rows)
    assert len(t) == 9 and (t["model"] == "NN").sum() == 3
    nn = t[t["model"] == "NN"]
    assert nn["MT ours / paper"].str.contains("paper profile").all() and (nn["KKT ours / paper"] == "n/a (not convex)").all()
    assert t[t["model"] == "CNN"]["GC ours / paper"].str.startswith("–").all()  # no CNN rows run: dashes, not numbers


def test_last_layer_view_reproduces_the_network():
    ds = load_dataset("mnist", n_train=50)
    net = model_for("nn", ds, seed=0).eval()
    lin, feats = last_layer_view(net, ds.x_train)
    assert torch.allclose(lin(feats), net(ds.x_train), atol=1e-5)
    keep = sanitize("sever", net, ds.x_train, ds.y_train, ds.task, 0.1)
    assert keep.sum() == 45
    with pytest.raises(PoisonlibError, match="needs validation data"):
        sanitize("influence", net, ds.x_train, ds.y_train, ds.task, 0.1)
    with pytest.raises(PoisonlibError, match="unknown defense 'pca'"):
        sanitize("pca", net, ds.x_train, ds.y_train, ds.task, 0.1)


def test_sanitizers_sharing_one_scoring_view_keep_the_same_points():
    """A defense cell computes the network's features once for Sever and Influence (``view``):
    the masks are those each sanitiser computes on its own; a linear model is scored on its inputs."""
    ds = load_dataset("mnist", n_train=80)
    net = model_for("nn", ds, seed=0).eval()
    view = scoring_view(net, ds.x_train, ds.x_val)
    assert view[1].shape == (80, view[0].weight.shape[1]) and view[2].shape[0] == len(ds.x_val)
    kw = dict(x_val=ds.x_val, y_val=ds.y_val)
    for d in ("sever", "influence"):
        assert torch.equal(sanitize(d, net, ds.x_train, ds.y_train, ds.task, 0.1, **kw, view=view),
                           sanitize(d, net, ds.x_train, ds.y_train, ds.task, 0.1, **kw))
    lr = model_for("lr", ds, seed=0)
    assert scoring_view(lr, ds.x_train)[0] is lr and scoring_view(lr, ds.x_train)[1] is ds.x_train


def test_cli_baseline_attack_writes_poisons_and_refuses_bad_input(tmp_path, capsys):
    out = tmp_path / "kkt"
    assert main(["attack", "kkt", "--dataset", "mnist17", "--model", "lr", "--profile", "smoke", "--eps-d", "0.1", "--out", str(out),
                 "--device", "cpu"]) == 0
    assert sorted(os.listdir(out)) == ["metrics.json", "poisons.npz"]
    with np.load(out / "poisons.npz") as f:
        assert f["x"].shape == (30, 784) and f["x"].min() >= 0 and f["x"].max() <= 1
    assert json.loads((out / "metrics.json").read_text())["experiment"] == "attack-kkt"
    bad = tmp_path / "bad"
    capsys.readouterr()
    assert main(["attack", "kkt", "--dataset", "mnist17", "--model", "nn", "--profile", "smoke", "--eps-d", "0.1", "--out", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "linear" in err[0] and not bad.exists()
