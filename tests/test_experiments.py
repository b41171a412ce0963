import glob
import os

import pytest
import torch

from poisonlib import PoisonlibError, paper
from poisonlib.experiments import PROFILES, clean_and_target, gc_cell, get_profile, load_for_profile, target_cell
from poisonlib.models import model_for
from poisonlib.report import table2, target_comparison, target_info, targets_table, verdict
from poisonlib.runner import Cell, get_experiment, list_experiments, run_experiment

from ._hand import accuracy, load_state


def test_profiles():
    assert set(PROFILES) == {"smoke", "cpu", "cpu-full", "paper"}
    assert get_profile("paper").train_config("cnn").batch_size == 1000
    assert get_profile("paper").train_config("lr").batch_size == 10000
    assert get_profile("paper").gc_batch_size["cifar10"] == 1000 and get_profile("paper").max_poisons("cnn") is None
    full, cpu = get_profile("cpu-full"), get_profile("cpu")
    assert full.gc_epochs_for("lr") == 1000 and full.seeds_for("lr") == (0, 1, 2) and full.max_poisons("cnn") == 300
    assert cpu.gc_epochs_for("lr") == 500 and cpu.seeds_for("lr") == (0,) and cpu.max_poisons("cnn") == 100
    with pytest.raises(PoisonlibError, match="unknown profile 'huge'"):
        get_profile("huge")
    with pytest.raises(PoisonlibError, match="data_root"):
        load_for_profile("mnist", "paper")
    with pytest.raises(PoisonlibError, match="'cifar10' has no embedded copy"):
        load_for_profile("cifar10", "cpu")


def test_gc_cell_end_to_end_cached_and_deterministic():
    kw = dict(profile="smoke", device="cpu")
    r1 = gc_cell("mnist", "lr", 1.0, 0.1, keep_poisons=True, **kw)
    m = r1["metrics"]
    assert not r1["cached"] and m["n_poison"] == 30 and m["n_clean"] == 300
    # the accuracies recomputed by hand from the stored models, and the drop from those
    ds = load_for_profile("mnist", "smoke")
    clean, _, _ = clean_and_target(ds, "lr", 1.0, "smoke", device="cpu")
    retrained = model_for("lr", ds)
    retrained.load_state_dict(load_state(r1["poisons"], "retrained"))
    clean_acc, retrained_acc = accuracy(clean, ds.x_test, ds.y_test), accuracy(retrained, ds.x_test, ds.y_test)
    assert m["clean_acc"] == pytest.approx(clean_acc, abs=1e-4) and m["retrained_acc"] == pytest.approx(retrained_acc, abs=1e-4)
    assert m["drop"] == pytest.approx(retrained_acc - clean_acc, abs=1e-4)
    x_p = load_state(r1["poisons"], "x")
    assert len(x_p) == 30
    assert [float(x_p.min()), float(x_p.max())] == pytest.approx(m["poison_range"])
    assert m["tau2"] >= m["tauc"] >= 0 and len(m["gc_residual_curve"]) == 20
    assert 0.0 <= m["poison_range"][0] <= m["poison_range"][1] <= 1.0
    ex = m["examples"]
    assert ex["shape"] == [1, 28, 28] and len(ex["poison"]) == 8 and len(ex["clean"][0]) == 1
    assert gc_cell("mnist", "lr", 1.0, 0.1, **kw)["cached"]
    again = gc_cell("mnist", "lr", 1.0, 0.1, force=True, **kw)["metrics"]  # same config + seed on CPU: same numbers
    assert again["retrained_acc"] == m["retrained_acc"] and again["gc_residual_curve"] == m["gc_residual_curve"]


def test_eps_d_tau_uses_the_targets_threshold():
    m = gc_cell("mnist", "lr", 1.0, "tau", profile="smoke", device="cpu", gc_epochs=2)["metrics"]
    assert m["eps_d"] == pytest.approx(m["tau2"], rel=1e-2) and m["eps_d_requested"] == "tau"


def test_clean_model_is_trained_once_per_protocol():
    a = target_cell("mnist", "lr", 0.5, "smoke", device="cpu")["metrics"]
    b = target_cell("mnist", "lr", 1.0, "smoke", device="cpu")["metrics"]
    assert a["clean_acc"] == b["clean_acc"] and a["target_acc"] > b["target_acc"]
    root = os.environ["POISONLIB_RESULTS"]
    assert len(glob.glob(os.path.join(root, "models", "clean-*.pt"))) == 1


def test_scaled_target_keeps_predictions_and_lowers_tau():
    w = target_cell("mnist", "nn", 0.5, "smoke", device="cpu")["metrics"]
    w2 = target_cell("mnist", "nn", 0.5, "smoke", scale=0.5, device="cpu")["metrics"]
    assert w2["target_acc"] == w["target_acc"] and w2["tau2"] < w["tau2"]


def test_randompc_targets_by_noise_kind():
    p = target_cell("mnist", "lr", 0.1, "smoke", target="randompc", device="cpu")["metrics"]
    l2 = target_cell("mnist", "lr", 0.1, "smoke", target="randompc", noise="l2", device="cpu")["metrics"]
    assert l2["delta_norm"] == pytest.approx(0.1, rel=1e-4) and p["delta_norm"] > 5  # 0.1 * sqrt(7850) ~ 8.9
    assert p["target_acc"] < l2["target_acc"]


def test_runner_runs_skips_and_reports():
    cells = [Cell("gc", "mnist", "lr", 1.0, eps_d=0.03), Cell("gc", "mnist", "lr", 1.0, eps_d="tau"), Cell("gc", "cifar10", "resnet18", 0.5, eps_d=0.1)]
    rows = run_experiment("table2", "smoke", device="cpu", cells=cells, progress=False)
    assert [r["status"] for r in rows] == ["computed", "skipped", "skipped"]
    assert "n_p = " in rows[1]["reason"] and "needs data_root" in rows[2]["reason"]
    assert rows[0]["eps_d"] == 0.03 and rows[0]["eps_d_used"] == pytest.approx(0.03) and len(rows[0]["record"]) > 8
    assert run_experiment("table2", "smoke", device="cpu", cells=cells[:1], progress=False)[0]["status"] == "cached"
    t = table2(rows, "mnist", "lr")
    assert list(t["eps_d"]) == ["0.03", "τ(2)"] and t.loc[1, "verdict"] == "not run at this profile"
    assert t.loc[0, "paper drop (%)"].startswith(f"{paper.TABLE2[('mnist', 'lr')]['gc'][0.03]:+.2f}")
    assert target_comparison(target_info(rows, "mnist", "lr"), "mnist", "lr").loc[0, "paper"] == "92.35"
    assert table2(rows, "cifar10", "resnet18").loc[0, "verdict"] == "not run at this profile"


def test_experiment_grids_cover_the_issue():
    assert {"table1", "table2", "table4", "table5", "table8", "fig3", "fig7", "fig8", "fig9"} <= set(list_experiments())
    cpu = get_profile("cpu-full")
    t2 = get_experiment("table2").cells(cpu)
    assert {(c.dataset, c.model) for c in t2} == {("mnist", "lr"), ("mnist", "nn"), ("mnist", "cnn"), ("cifar10", "resnet18"), ("tinyimagenet", "resnet34")}
    assert len([c for c in t2 if c.model == "lr"]) == 4 * 3  # 4 eps_d x 3 seeds
    assert len([c for c in get_experiment("table2").cells(get_profile("cpu")) if c.model == "lr"]) == 4  # the miniature: one seed
    assert {c.scale for c in get_experiment("table8").cells(cpu)} == {1.0, 0.5}
    with pytest.raises(PoisonlibError, match="unknown experiment 'table99'"):
        get_experiment("table99")


def test_targets_table_and_verdicts():
    rows = run_experiment("table1", "smoke", device="cpu", progress=False, cells=get_experiment("table1").cells(get_profile("smoke"))[:2])
    t = targets_table(rows, paper.TABLE1, [("GradPC", "gradpc", "parameter")])
    assert list(t["ε_w"]) == [0.5, 1.0] and t.loc[1, "GradPC paper"] == "21.48 / 70.87"
    assert verdict(-10.0, -11.5) == "reproduced" and verdict(-6.0, -11.5) == "qualitatively" and verdict(-1.0, -11.5) == "not reproduced"


def test_paper_module_holds_reported_numbers_only():
    assert paper.table2_row("mnist", "lr")["gc"]["tau"] == -69.66
    assert paper.TABLE5["cnn"]["gradpc"][1.0] == (12.98, 86.15) and paper.TABLE8["lr"]["tau_w2"] == 0.54
    assert "reported" in paper.SOURCE
    with pytest.raises(PoisonlibError, match="no row mnist/vit"):
        paper.table2_row("mnist", "vit")


def test_paper_path_on_cifar10_files_with_resnet18_and_minibatch_gc(tmp_path):
    """The paper profile's CIFAR-10 row end to end, shrunk: real on-disk format, ResNet-18, GC in mini-batches."""
    import dataclasses

    from poisonlib.experiments import TrainConfig
    from poisonlib.testing import write_cifar10

    write_cifar10(str(tmp_path), n_per_batch=6)
    tiny = dataclasses.replace(get_profile("paper"), name="tiny-paper", train={"default": TrainConfig(epochs=1, lr=0.01, batch_size=16)},
                               gc_epochs=2, gc_batch_size={"cifar10": 2}, seeds=(0,))
    rec = gc_cell("cifar10", "resnet18", 0.5, 0.25, profile=tiny, data_root=str(tmp_path), device="cpu")
    m = rec["metrics"]
    assert m["n_clean"] == 21 and m["n_poison"] == 5 and len(m["gc_residual_curve"]) == 2
    assert rec["config"]["profile"]["gc_batch_size"] == 2 and m["examples"]["shape"] == [3, 32, 32]
    assert 0.0 <= m["poison_range"][0] and m["poison_range"][1] <= 1.0 and m["tau2"] >= m["tauc"] >= 0


def test_interrupted_gc_cell_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    import poisonlib.attacks.gc as gcmod

    kw = dict(profile="smoke", device="cpu", gc_epochs=150)
    ref = gc_cell("mnist", "lr", 1.0, 0.1, results_dir=str(tmp_path / "ref"), **kw)["metrics"]
    real, calls = gcmod.gc_gradient, {"n": 0}

    def boom(*a, **k):
        calls["n"] += 1
        if calls["n"] == 120:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(gcmod, "gc_gradient", boom)
    with pytest.raises(KeyboardInterrupt):
        gc_cell("mnist", "lr", 1.0, 0.1, **kw)
    ckpts = glob.glob(os.path.join(os.environ["POISONLIB_RESULTS"], "checkpoints", "gc-*.pt"))
    assert len(ckpts) == 1 and torch.load(ckpts[0], weights_only=True)["epoch"] == 100
    monkeypatch.setattr(gcmod, "gc_gradient", real)
    rec = gc_cell("mnist", "lr", 1.0, 0.1, **kw)
    assert rec["metrics"]["gc_residual_curve"] == ref["gc_residual_curve"] and rec["metrics"]["retrained_acc"] == ref["retrained_acc"]
    assert not os.path.exists(ckpts[0])  # removed once the record is written


def test_cell_records_are_keyed_by_their_own_models_settings_only():
    import dataclasses

    cpu = get_profile("cpu")
    other = dataclasses.replace(cpu, limits={**cpu.limits, "cnn": {"gc_epochs": 7}})
    assert cpu.cell_config("lr", "mnist") == other.cell_config("lr", "mnist")
    assert cpu.cell_config("cnn", "mnist") != other.cell_config("cnn", "mnist")


def test_poison_grid_draws_grey_and_colour_examples():
    import matplotlib

    matplotlib.use("agg")
    from poisonlib.plots import poison_grid

    for shape in ([1, 28, 28], [3, 32, 32]):
        n = int(torch.tensor(shape).prod())
        clean = torch.rand(4, n)
        ex = {"shape": shape, "label": [0, 1, 2, 3], "clean": clean.tolist(), "poison": (clean * 0.5).tolist()}
        fig = poison_grid(ex, title="t")
        assert len(fig.axes) == 12 and fig.axes[8].images[0].get_array().shape[:2] == tuple(shape[1:])


def test_plateau_table_classifies_the_regime_against_both_thresholds():
    from poisonlib.report import plateau_table

    base = dict(status="computed", model="lr", eps_w=1.0, tauc=0.7, tau2=2.8, grad_clean=2.0, gc_residual_curve=[4.0] * 9 + [2.0, 1.0])
    rows = [dict(base, eps_d_used=e, grad_mixed=1.0 / (1 + e)) for e in (0.1, 1.0, 3.0)]
    rows.append(dict(status="skipped", model="cnn", eps_w=0.5, eps_d=1.0, reason="not run at this profile: n_p = 2800 > 300 for cnn"))
    rows.append(dict(status="failed", model="lr", eps_w=2.0, eps_d=1.0, reason="GC diverged"))
    t = plateau_table(rows)
    assert list(t["regime"][:3]) == ["ε_d < τ(c)", "τ(c) ≤ ε_d < τ(2)", "ε_d ≥ τ(2)"]
    assert t.loc[1, "reduction ×"] == 4.0 and t.loc[0, "last 10% change"] == "100.0%" and t.loc[3, "note"].startswith("not run")
    assert t.loc[4, "note"] == "failed: GC diverged"  # a failed cell is a row saying so, never a crash


def test_label_outputs_marks_every_displayed_figure_and_table_with_the_profile():
    import matplotlib

    matplotlib.use("agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.core.pylabtools import select_figure_formats

    from poisonlib import plots

    ip = InteractiveShell.instance()
    try:
        select_figure_formats(ip, {"png"})  # what the inline backend registers
        plots.label_outputs(get_profile("smoke"))
        assert plots.profile_label("smoke") == "profile: smoke · poisonlib " + __import__("poisonlib").__version__
        fig, ax = plt.subplots()
        ax.plot([0, 1])
        data, _ = ip.display_formatter.format(fig)
        assert data["image/png"] and [t.get_text() for t in fig.texts] == [plots.profile_label("smoke")]
        ip.display_formatter.format(fig)  # stamped once
        assert len(fig.texts) == 1
        html = ip.display_formatter.format(pd.DataFrame({"a": [1]}))[0]["text/html"]
        assert "<table" in html and html.endswith("profile: smoke · poisonlib 0.1.0</p>")
        plt.close(fig)
    finally:
        InteractiveShell.clear_instance()


def test_a_failed_cell_asked_for_its_poisons_is_not_recomputed(monkeypatch, tmp_path):
    # Table 10 asks its GC cells for their poisons; a cell whose GC diverged has none and would only diverge
    # again: its failed record is served, not recomputed by every chapter that asks
    from poisonlib import pipeline
    from poisonlib.results import CellFailed, is_failed

    calls = []

    def diverges(*a, **kw):
        calls.append(1)
        raise CellFailed("GC diverged (objective nan at epoch 3)")

    monkeypatch.setattr(pipeline, "poison", diverges)
    spec = Cell("gc", "mnist", "lr", 1.0, eps_d=0.1).resolve("smoke", device="cpu")
    first = spec.run(results_dir=str(tmp_path), keep_poisons=True)
    again = spec.run(results_dir=str(tmp_path), keep_poisons=True)
    assert is_failed(first) and is_failed(again) and again["cached"] and len(calls) == 1
    spec.run(results_dir=str(tmp_path), keep_poisons=True, force=True)  # --force still recomputes it
    assert len(calls) == 2


def test_a_profile_can_leave_out_a_grids_calibrated_version(tmp_path):
    # cpu leaves Tables 8 and 10 at the literal eps_w: their calibrated cells are rows saying so, and nothing runs
    from dataclasses import replace

    prof = replace(get_profile("smoke"), uncalibrated_grids=("table8",))
    rows = run_experiment("table8", prof, eps_w="calibrated", models=["lr"], eps_ds=[0.1], results_dir=str(tmp_path), progress=False)
    assert rows and all(r["status"] == "skipped" and "table8 at the calibrated ε_w" in r["reason"] for r in rows)
    assert not glob.glob(os.path.join(str(tmp_path), "*", "*.json"))
    assert get_profile("cpu").uncalibrated_grids == ("table8", "table10") and get_profile("cpu-full").uncalibrated_grids == ()
