"""Label-flip targets, the KKT attack and the Model-Targeted attack on small synthetic data with known answers."""

import pytest
import torch
from torch import nn

from poisonlib import PoisonlibError
from poisonlib.attacks.gc import GCResult
from poisonlib.attacks.kkt import kkt_attack
from poisonlib.attacks.labelflip import label_flip_target, label_flip_targets
from poisonlib.attacks.mt import model_targeted
from poisonlib.data import Dataset
from poisonlib.grads import flat, mixed_gradient_norm, target_params
from poisonlib.models import model_for
from poisonlib.train import train


def _blobs(n_per_class, classes, sep, seed, d=2):
    gen = torch.Generator().manual_seed(seed)
    centres = sep * torch.eye(max(d, classes))[:classes, :d]
    x = torch.cat([centres[k] + torch.randn(n_per_class, d, generator=gen) for k in range(classes)])
    return x, torch.arange(classes).repeat_interleave(n_per_class)


def _dataset(classes=2, sep=4.0):
    """Gaussian blobs, one per class; clean error about 1 % at sep 4 in 2-D."""
    splits = [_blobs(m, classes, sep, seed) for m, seed in ((200, 0), (100, 1), (500, 2))]
    task = "binary" if classes == 2 else "multiclass"
    return Dataset("blobs", task, *splits[0], *splits[1], *splits[2], num_classes=classes)


def _fit(ds, x, y):
    return train(model_for("lr", ds, seed=0), x, y, ds.task, epochs=20, lr=1.0, optimizer="lbfgs", device="cpu", progress=False)[0]


def _dist(a, b):
    return float((flat(target_params(a)) - flat(target_params(b))).norm())


@pytest.fixture(scope="module")
def attainable(gaussian10):
    """A target reached by retraining on clean ∪ 56 known poisons (two distinct points, 28 copies each)."""
    ds = gaussian10
    x, y = ds.x_train, ds.y_train
    xp = torch.cat([1.5 * x[y == 1].mean(0).repeat(28, 1), 1.5 * x[y == 0].mean(0).repeat(28, 1)])
    yp = torch.cat([torch.zeros(28, dtype=y.dtype), torch.ones(28, dtype=y.dtype)])
    target = _fit(ds, torch.cat([x, xp]), torch.cat([y, yp]))
    assert mixed_gradient_norm(target, x, y, xp, yp, ds.task)["residual"] < 1e-4  # trained to optimality
    return ds, target, _fit(ds, x, y), len(xp) / len(x)


# ------------------------------------------------------------------ label-flip targets
def test_label_flip_reaches_the_requested_error_and_errors_grow():
    ds = _dataset()
    results = label_flip_targets(ds, (0.05, 0.1, 0.15), quantiles=(0.2, 0.25, 0.3, 0.35), repeats=(1, 2, 3, 4, 5), device="cpu")
    errors = [info["test_error"] for _, info in results]
    assert results[0][1]["clean_error"] < 0.03
    for (model, info), want in zip(results, (0.05, 0.1, 0.15)):
        assert abs(info["val_error"] - want) < 0.025 and abs(info["test_error"] - want) < 0.04
        assert info["n_flipped"] == round(info["quantile"] * 400) and len(info["candidates"]) == 20
    assert errors == sorted(errors) and errors[-1] > errors[0] + 0.05


def test_label_flip_multiclass_and_bad_error():
    ds = _dataset(classes=3)
    model, info = label_flip_target(ds, 0.1, quantiles=(0.1, 0.2), repeats=(1, 3), device="cpu")
    assert model.weight.shape == (3, 2) and 0 < info["test_error"] < 0.5
    assert {"test_error", "quantile", "repeats", "n_flipped", "clean_error", "candidates"} <= set(info)
    with pytest.raises(PoisonlibError, match="error"):
        label_flip_target(ds, 1.5, device="cpu")


# ------------------------------------------------------------------ KKT
def test_kkt_reaches_an_attainable_target(attainable):
    ds, target, clean, eps = attainable
    res = kkt_attack(target, ds.x_train, ds.y_train, ds.task, eps, fractions=(0.3, 0.5, 0.7), device="cpu")
    assert isinstance(res, GCResult) and res.n_poison == 56 and res.eps_d == pytest.approx(eps)
    assert (res.init_index == -1).all() and len(torch.unique(res.x, dim=0)) == 2
    n_pos = int(round(res.config["alpha"] * 56))
    assert int(res.y.sum()) == n_pos
    g = mixed_gradient_norm(target, ds.x_train, ds.y_train, res.x, res.y, ds.task)
    assert g["residual"] == pytest.approx(res.history["final_residual"], rel=1e-3, abs=1e-6)
    assert g["residual"] < 1e-3 * g["clean"]
    assert res.history["residual"][-1] < res.history["residual"][0]
    retrained = _fit(ds, torch.cat([ds.x_train, res.x]), torch.cat([ds.y_train, res.y]))
    assert _dist(retrained, target) < 0.02 * _dist(clean, target)


def test_kkt_multiclass_one_point_per_class_in_the_box():
    ds = _dataset(classes=3)
    target = model_for("lr", ds, seed=1)
    res = kkt_attack(target, ds.x_train, ds.y_train, ds.task, 0.1, steps=50, box=(-1.0, 1.0), device="cpu")
    assert res.n_poison == 60 and torch.bincount(res.y).tolist() == [20, 20, 20] and res.config["alpha"] is None
    assert res.x.min() >= -1 and res.x.max() <= 1 and len(res.history["residual"]) == 51


def test_kkt_rejects_networks(gaussian10):
    net = model_for("nn", gaussian10, seed=0)
    with pytest.raises(PoisonlibError, match="convex"):
        kkt_attack(net, gaussian10.x_train, gaussian10.y_train, gaussian10.task, 0.1, device="cpu")


# ------------------------------------------------------------------ Model-Targeted
def test_mt_stops_at_round_zero_when_already_close(attainable):
    ds, target, _, _ = attainable
    res = model_targeted(target, ds.x_train, ds.y_train, ds.task, 0.5, stop_eps=1e6, device="cpu")
    assert res.config["reached"] and res.config["n_p_reached"] == 0 and res.n_poison == 0
    assert res.x.shape == (0, 10) and res.history["n_poison"] == [0] and len(res.history["loss_diff"]) == 1


def test_mt_stops_at_the_budget(attainable):
    ds, target, _, _ = attainable
    res = model_targeted(target, ds.x_train, ds.y_train, ds.task, 0.02, stop_eps=1e-6, per_round=3, device="cpu")
    n_p_max = round(0.02 * len(ds.x_train))
    assert not res.config["reached"] and res.config["n_p_reached"] == n_p_max == res.n_poison
    assert res.history["n_poison"] == [0, 3, 6, 9, 11] and res.eps_d == pytest.approx(n_p_max / len(ds.x_train))
    lo, hi = ds.x_train.amin(0), ds.x_train.amax(0)
    assert ((res.x >= lo - 1e-6) & (res.x <= hi + 1e-6)).all()


def test_mt_converges_to_an_attainable_target_and_is_deterministic(attainable):
    ds, target, clean, _ = attainable
    kw = dict(stop_eps=0.1, per_round=4, device="cpu")
    res = model_targeted(target, ds.x_train, ds.y_train, ds.task, 0.5, **kw)
    ld = res.history["loss_diff"]
    assert res.config["reached"] and ld[-1] < 0.1 < ld[0] and ld[-1] < ld[0] / 50
    assert res.config["n_p_reached"] < res.config["n_p_max"]
    retrained = _fit(ds, torch.cat([ds.x_train, res.x]), torch.cat([ds.y_train, res.y]))
    assert _dist(retrained, target) < 0.1 * _dist(clean, target)
    again = model_targeted(target, ds.x_train, ds.y_train, ds.task, 0.5, **kw)
    assert torch.equal(again.x, res.x) and torch.equal(again.y, res.y) and again.history == res.history


def test_mt_with_a_small_net_and_a_custom_fit():
    ds = _dataset()
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 1))
    cfg = dict(epochs=20, lr=1e-2, optimizer="adam")
    res = model_targeted(net, ds.x_train, ds.y_train, ds.task, 0.02, stop_eps=10.0, train_config=cfg, ascent_steps=20, device="cpu")
    assert res.config["n_p_reached"] <= 8 and len(res.history["loss_diff"]) >= 1
    with pytest.raises(PoisonlibError, match="train_config"):
        model_targeted(net, ds.x_train, ds.y_train, ds.task, 0.02, device="cpu")
    calls = []

    def fit(x, y, init):
        calls.append(len(x))
        return _fit(ds, x, y)

    target = _fit(ds, ds.x_train, 1 - ds.y_train)
    res = model_targeted(target, ds.x_train, ds.y_train, ds.task, 0.01, fit=fit, stop_eps=1e-3, device="cpu")
    assert calls == [400 + k for k in res.history["n_poison"]] and res.config["train_config"] is None
