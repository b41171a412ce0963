"""Grid axes a reader changes from a chapter's parameters cell (papermill ``-p``)."""

import pytest

from poisonlib import PoisonlibError, report, runner
from poisonlib.experiments import get_profile


def test_axis_list_reads_lists_and_papermill_strings():
    assert runner.axis_list(None) is None and runner.axis_list("None") is None
    assert runner.axis_list("['lr']") == ["lr"] and runner.axis_list("lr, nn") == ["lr", "nn"]
    assert runner.axis_list("[0.3, 3]") == [0.3, 3.0] and runner.axis_list(["tau", 1]) == ["tau", 1.0]
    assert runner.axis_list("0.1") == [0.1] and runner.axis_list([1, 1.0]) == [1.0]
    with pytest.raises(PoisonlibError, match="is not a list"):
        runner.axis_list("[0.3,", "eps_ds")
    with pytest.raises(PoisonlibError, match="eps_ds is empty"):
        runner.axis_list("[]", "eps_ds")


def test_restrict_puts_the_grid_on_other_axes():
    cells = runner.get_experiment("table2").cells(get_profile("smoke"))
    r = runner.restrict(cells, models="['lr']", eps_ds="[0.3, 3]", seeds=[0, 1])
    assert {(c.model, c.eps_d, c.seed) for c in r} == {("lr", e, s) for e in (0.3, 3.0) for s in (0, 1)} and len(r) == 4
    assert runner.restrict(cells) == cells
    with pytest.raises(PoisonlibError, match="model"):
        runner.restrict(cells, models=["vgg"])
    with pytest.raises(PoisonlibError, match="eps_d = -1.0"):
        runner.restrict(cells, eps_ds=[-1])
    # Table 6's cells at the eps_d MT used keep it; targets keep their seed
    t6 = runner.restrict(runner.get_experiment("table6").cells(get_profile("smoke")), eps_ds=[0.5], seeds=[3])
    assert any(c.eps_d == "mt" for c in t6) and all(c.seed == 0 for c in t6 if c.kind == "target")
    assert all(c.seed == 3 for c in t6 if c.kind != "target")


def test_table_builders_take_their_eps_d_axis():
    assert list(report.baseline_table([], [], "mnist", "lr")["eps_d"]) == ["0.03", "0.1", "1"]
    assert list(report.baseline_table([], [], "mnist", "lr", eps_ds="[0.3]")["eps_d"]) == ["0.3"]
    assert set(report.defense_table([], "lr", eps_ds=[0.1])["eps_d"]) == {"0.1"}
    assert list(report.table7([], eps_ds=[1], models=["lr"])["eps_d"]) == ["1"]
    assert list(report.table9([], eps_ds=["tau"], models=["lr"])["eps_d"]) == ["τ(2)"]
    t = report.table2([], "mnist", "lr", eps_ds=[0.3, "tau"])
    assert list(t["eps_d"]) == ["0.3", "τ(2)"] and list(t["verdict"]) == ["not run at this profile"] * 2


def test_grid_rows_follow_the_models_axis():
    from poisonlib import paper

    # every (dataset, model) row of the paper's Table 2, in its order, and each model's ε_w from Sec. 5.1 (1 for MNIST LR, else 0.5)
    assert [r[:2] for r in runner.grid_rows(runner.TABLE2_ROWS)] == list(paper.TABLE2)
    assert [r[2] for r in runner.grid_rows(runner.TABLE2_ROWS)] == [1.0 if r == ("mnist", "lr") else 0.5 for r in paper.TABLE2]
    assert runner.grid_rows(runner.TABLE2_ROWS, "['lr', 'cnn']") == [("mnist", "lr", 1.0), ("mnist", "cnn", 0.5)]
