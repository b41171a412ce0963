"""Calibrated GradPC budgets (App. C.1: ε_w chosen on validation data) and the
paper's reported GradPC target drops."""

import importlib
import math

import pytest
import torch

from poisonlib import paper
from poisonlib._validation import PoisonlibError
from poisonlib.attacks.gradpc import Calibration, calibrate_eps_w, gradpc
from poisonlib.data import Dataset, subsample_train
from poisonlib.models import model_for
from poisonlib.train import evaluate, train


@pytest.fixture(scope="module")
def lr_gauss():
    from poisonlib.data import load_dataset

    ds = load_dataset("gaussian10")
    m, _ = train(model_for("lr", ds, seed=0), ds.x_train, ds.y_train, ds.task, epochs=50, lr=0.1, batch_size=100, device="cpu")
    return ds, m


@pytest.fixture(scope="module")
def lr_mnist300():
    from poisonlib.data import load_dataset

    ds = subsample_train(load_dataset("mnist"), 300)
    m, _ = train(model_for("lr", ds, seed=0), ds.x_train, ds.y_train, ds.task, epochs=30, lr=0.1, batch_size=100, device="cpu")
    return ds, m


def _val_drop(clean, target, ds):
    """Independent recomputation: 100 * (val acc of target - val acc of clean)."""
    acc = lambda m: 100 * evaluate(m, ds.x_val, ds.y_val, ds.task, device="cpu")["accuracy"]
    return acc(target) - acc(clean)


def _poisoned_test_split(ds):
    """The same data with a NaN test split (bypassing Dataset's finiteness check):
    any model evaluation on it would give NaN accuracy, or fail GradPC's checks."""
    bad = Dataset(**ds.__dict__)
    bad.x_test = torch.full_like(ds.x_test, float("nan"))
    bad.y_test = torch.full_like(ds.y_test, -1)
    return bad


def _calibrate(ds, m, drop, **kw):
    return calibrate_eps_w(m, ds.x_train, ds.y_train, ds.x_val, ds.y_val, ds.task, drop, device="cpu", **kw)


@pytest.mark.parametrize("fixture, drop", [("lr_gauss", -30.0), ("lr_gauss", -10.0), ("lr_mnist300", -40.0), ("lr_mnist300", -20.0)])
def test_calibrated_radius_reaches_the_requested_validation_drop(request, fixture, drop):
    ds, m = request.getfixturevalue(fixture)
    res = _calibrate(ds, m, drop, tol=0.5)
    assert isinstance(res, Calibration)
    eps, target, rec = res
    assert rec["tolerance_met"] and rec["reachable"] and rec["stop"] == "tolerance"
    assert 0.01 <= eps <= 10.0
    # the returned target is GradPC at that radius and seed, recomputed from scratch
    again, info = gradpc(m, ds.x_train, ds.y_train, ds.task, eps, batch_size=64, seed=0, device="cpu")
    for p, q in zip(target.parameters(), again.parameters()):
        assert torch.equal(p.detach().cpu(), q.detach().cpu())
    assert abs(_val_drop(m, again, ds) - drop) <= 0.5
    assert rec["val_drop"] == pytest.approx(_val_drop(m, target, ds), abs=1e-6)
    assert info["delta_norm"] <= eps * (1 + 1e-5)
    # the record: every GradPC run, its radius inside the bracket, the returned one among them
    assert rec["gradpc_runs"] == len(rec["trials"]) == rec["iterations"] + 2
    assert all(0.01 <= t["eps_w"] <= 10.0 for t in rec["trials"])
    assert rec["trials"][-1]["eps_w"] == eps
    assert min(abs(t["val_drop"] - drop) for t in rec["trials"]) == pytest.approx(abs(rec["val_drop"] - drop))


def test_the_clean_model_is_left_untouched(lr_gauss):
    ds, m = lr_gauss
    before = [p.detach().clone() for p in m.parameters()]
    _calibrate(ds, m, -20.0)
    assert all(torch.equal(a, b.detach()) for a, b in zip(before, m.parameters()))


def test_the_test_split_is_never_evaluated(lr_mnist300):
    ds, m = lr_mnist300
    bad = _poisoned_test_split(ds)
    seen = []
    hook = m.register_forward_pre_hook(lambda mod, args: seen.append(args[0].detach().clone()))  # deep-copied into every target
    try:
        eps, target, rec = _calibrate(bad, m, -30.0)
    finally:
        hook.remove()
    assert rec["tolerance_met"]
    assert seen, "the spy saw no forward pass"
    # every input the clean model or any GradPC target ever saw is finite (no NaN test row) ...
    assert all(bool(torch.isfinite(x).all()) for x in seen)
    # ... and made of training or validation rows, and the validation split was used
    known = {tuple(r.flatten().tolist()) for r in torch.cat([ds.x_train, ds.x_val])}
    val = {tuple(r.flatten().tolist()) for r in ds.x_val}
    rows = {tuple(r.flatten().tolist()) for x in seen for r in x}
    assert rows <= known
    assert val <= rows


def test_an_unreachable_drop_raises_by_default_naming_value_and_bracket(lr_gauss):
    ds, m = lr_gauss
    with pytest.raises(PoisonlibError, match=r"-99\.5.*\[0\.01, 0\.5\]"):
        _calibrate(ds, m, -99.5, hi=0.5)
    with pytest.raises(PoisonlibError, match="not reachable"):  # lo already too damaging
        _calibrate(ds, m, -1.0, lo=5.0, hi=10.0)


def test_an_unreachable_drop_can_return_the_closest_end_point(lr_gauss):
    ds, m = lr_gauss
    eps, target, rec = _calibrate(ds, m, -99.5, hi=0.5, on_unreachable="closest")
    assert eps == 0.5 and not rec["reachable"] and not rec["tolerance_met"] and rec["stop"] == "unreachable"
    assert rec["gradpc_runs"] == 2
    assert rec["val_drop"] == pytest.approx(_val_drop(m, target, ds), abs=1e-6)


def test_a_loose_iteration_budget_reports_the_closest_radius_without_claiming_the_tolerance(lr_gauss):
    ds, m = lr_gauss
    eps, target, rec = _calibrate(ds, m, -30.0, tol=1e-3, max_iter=2)
    assert rec["stop"] == "max_iter" and rec["iterations"] == 2 and rec["gradpc_runs"] == 4
    assert not rec["tolerance_met"]
    best = min(rec["trials"], key=lambda t: abs(t["val_drop"] + 30.0))
    assert eps == best["eps_w"]
    a, b = rec["bracket"]
    assert a < b


def test_the_same_seed_gives_the_same_calibration(lr_gauss):
    ds, m = lr_gauss
    r1, r2 = _calibrate(ds, m, -30.0, seed=3), _calibrate(ds, m, -30.0, seed=3)
    assert r1.eps_w == r2.eps_w and r1.record["trials"] == r2.record["trials"]


@pytest.mark.parametrize(
    "kw, msg",
    [
        ({"target_drop": 30.0}, "negative"),
        ({"target_drop": 0.0}, "negative"),
        ({"target_drop": -101.0}, "negative"),
        ({"target_drop": float("nan")}, "negative"),
        ({"target_drop": "a lot"}, "number"),
        ({"lo": 0.0}, "lo"),
        ({"lo": 2.0, "hi": 1.0}, "lo < hi"),
        ({"tol": -1.0}, "tol"),
        ({"max_iter": 0}, "max_iter"),
        ({"norm": "l1"}, "norm"),
        ({"on_unreachable": "ignore"}, "on_unreachable"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_bad_arguments_are_refused_before_any_gradpc_run(lr_gauss, monkeypatch, kw, msg):
    mod = importlib.import_module("poisonlib.attacks.gradpc")  # the package attribute is the function

    ds, m = lr_gauss
    monkeypatch.setattr(mod, "gradpc", lambda *a, **k: pytest.fail("GradPC ran before the arguments were checked"))
    kw = {"target_drop": -10.0, **kw}
    drop = kw.pop("target_drop")
    with pytest.raises(PoisonlibError, match=msg):
        _calibrate(ds, m, drop, **kw)


def test_regression_is_refused(lr_gauss):
    ds, m = lr_gauss
    with pytest.raises(PoisonlibError, match="classifier"):
        calibrate_eps_w(m, ds.x_train, ds.y_train.float(), ds.x_val, ds.y_val.float(), "regression", -10.0, device="cpu")


# --------------------------------------------------------------------------- the paper's GradPC target drops
@pytest.mark.parametrize(
    "args, expected",
    [
        ((2, "mnist", "lr"), -70.87),
        ((2, "mnist", "nn"), -20.03),
        ((2, "mnist", "cnn"), -24.78),
        ((2, "cifar10", "resnet18"), -21.69),
        ((2, "tinyimagenet", "resnet34"), -24.77),
        (("table2", "mnist", "lr", 1.0), -70.87),
        ((4, "mnist", "nn"), -20.03),
        ((1, "mnist", "lr"), -70.87),  # LR's Sec. 5.1 budget is 1
        ((1, "mnist", "lr", 0.5), -22.55),
        ((1, "mnist", "nn"), -20.03),  # the printed drop, not 76.51 - 98.04 = -21.53
        ((1, "mnist", "cnn", 1), -86.15),
        ((5, "mnist", "nn", 0.1), -0.99),
        ((5, "mnist", "cnn", 0.01), -0.39),
        ((7, "mnist17", "lr"), -70.55),
        ((7, "mnist17", "cnn"), -23.99),
        ((8, "mnist", "lr"), -70.87),
        ((8, "mnist", "cnn"), -24.78),
    ],
)
def test_paper_gradpc_target_drop_returns_the_reported_number(args, expected):
    assert paper.gradpc_target_drop(*args) == expected


@pytest.mark.parametrize(
    "args, msg",
    [
        ((2, "mnist", "resnet18"), "no GradPC drop for mnist/resnet18"),
        ((2, "svhn", "lr"), "no GradPC drop for svhn/lr"),
        ((2, "mnist", "lr", 0.5), "eps_w=1 only"),
        ((1, "mnist", "nn", 0.3), "eps_w=0.3"),
        ((5, "mnist", "lr", 1.0), "garbled"),
        ((5, "mnist", "nn"), "pass eps_w"),
        ((7, "mnist", "lr"), "no GradPC drop for mnist/lr"),
        ((7, "mnist17", "lr", 1.0), "does not state"),
        ((3, "mnist", "lr"), "Table 3"),
        ((10, "mnist", "nn"), "Table 10"),
        ((9, "mnist", "lr"), "TGDA"),
        ((6, "mnist17", "lr"), "label-flip"),
        ((11, "mnist", "lr"), "unknown table"),
        (("two", "mnist", "lr"), "unknown table"),
    ],
)
def test_paper_gradpc_target_drop_refuses_rows_the_paper_does_not_report(args, msg):
    with pytest.raises(PoisonlibError, match=msg):
        paper.gradpc_target_drop(*args)


def test_reported_drops_feed_the_calibration_sign_convention():
    # every reported GradPC drop is a valid target_drop (negative points)
    for n, rows in paper.GRADPC_TABLES.items():
        for d, m in rows:
            budgets = paper.TABLE5[m]["gradpc"] if n == 5 else [None]
            for e in budgets:
                v = paper.gradpc_target_drop(n, d, m, e)
                assert -100 <= v < 0 and math.isfinite(v)
