"""TGDA (Lu et al. 2022) and Gradient Matching (Geiping et al. 2021, Sec. 4 Eq. 35-36)."""

import copy
from collections import OrderedDict

import pytest
import torch
from torch import nn

from poisonlib import PoisonlibError
from poisonlib.attacks.gm import dissimilarity, gradient_matching, reversed_loss
from poisonlib.attacks.tgda import tgda, total_gradient
from poisonlib.data import load_dataset
from poisonlib.grads import flat, target_params
from poisonlib.models import linear_model, loss_fn, model_for
from poisonlib.train import evaluate, train


def _blobs(n, seed, d=2, shift=1.5, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.randn(n, d, generator=gen, dtype=dtype) + shift * (2 * y[:, None].to(dtype) - 1)
    return x, y


# ------------------------------------------------------------------ TGDA
def _argmin(model, x, y, lam, iters=30):
    """Newton's method on the mean logistic loss + lam/2 ||w||^2 (a tiny, strongly convex problem)."""
    p = target_params(model)
    names, shapes = list(p), [t.shape for t in p.values()]

    def f(theta):
        ps = dict(zip(names, torch.split(theta, [s.numel() for s in shapes])))
        ps = {k: v.reshape(s) for (k, v), s in zip(ps.items(), shapes)}
        return loss_fn("binary")(torch.func.functional_call(model, ps, (x,)), y) + 0.5 * lam * theta @ theta

    theta = flat(p).clone()
    for _ in range(iters):
        theta = theta - torch.linalg.solve(torch.func.hessian(f)(theta), torch.func.grad(f)(theta))
    return {k: v.reshape(s) for (k, v), s in zip(zip(names, torch.split(theta, [s.numel() for s in shapes])), shapes)}


def test_tgda_total_gradient_matches_finite_differences():
    lam = 0.1
    xc, yc = _blobs(30, 0)
    xv, yv = _blobs(20, 1)
    xp, yp = _blobs(4, 2)
    model = linear_model(torch.zeros(1, 2)).double()
    model.bias = nn.Parameter(torch.zeros(1, dtype=torch.float64))

    def l_val(x_poison):
        w = _argmin(model, torch.cat([xc, x_poison]), torch.cat([yc, yp]), lam)
        return float(loss_fn("binary")(torch.func.functional_call(model, w, (xv,)), yv))

    w = _argmin(model, torch.cat([xc, xp]), torch.cat([yc, yp]), lam)
    g, lv = total_gradient(model, w, xc, yc, xp, yp, xv, yv, "binary", cg_iters=10, damping=lam)
    assert lv == pytest.approx(l_val(xp), rel=1e-10)
    h = 1e-5
    fd = torch.zeros_like(xp)
    for i in range(xp.shape[0]):
        for j in range(xp.shape[1]):
            e = torch.zeros_like(xp)
            e[i, j] = h
            fd[i, j] = (l_val(xp + e) - l_val(xp - e)) / (2 * h)
    assert fd.abs().max() > 1e-3  # the poisons do move the validation loss
    assert torch.allclose(g, fd, rtol=1e-4, atol=1e-7), (g, fd)


@pytest.fixture(scope="module")
def g10_clean(gaussian10):
    ds = gaussian10
    m, _ = train(model_for("lr", ds, seed=0), ds.x_train, ds.y_train, ds.task, epochs=200, lr=0.5, device="cpu")
    return m


def _retrain(ds, x_p, y_p):
    m, _ = train(model_for("lr", ds, seed=0), torch.cat([ds.x_train, x_p]), torch.cat([ds.y_train, y_p]), ds.task, epochs=200, lr=0.5, device="cpu")
    return evaluate(m, ds.x_test, ds.y_test, ds.task), evaluate(m, ds.x_val, ds.y_val, ds.task)


def test_tgda_raises_validation_loss_and_lowers_accuracy(gaussian10, g10_clean):
    ds = gaussian10
    before = [p.detach().clone() for p in g10_clean.parameters()]
    res = tgda(g10_clean, ds.x_train, ds.y_train, ds.task, 0.1, x_val=ds.x_val, y_val=ds.y_val, epochs=30, leader_lr=0.1, device="cpu")
    assert all(torch.equal(a, b.detach()) for a, b in zip(before, g10_clean.parameters()))  # caller's model untouched
    assert res.n_poison == 56 and res.eps_d == pytest.approx(0.1) and len(res.history["val_loss"]) == 30
    assert res.history["val_loss"][-1] > res.history["val_loss"][0] + 0.05
    assert torch.equal(res.y, ds.y_train[res.init_index])
    test_p, val_p = _retrain(ds, res.x, res.y)
    test_0, val_0 = _retrain(ds, ds.x_train[res.init_index], res.y)
    assert val_p["loss"] > val_0["loss"] + 0.05
    assert test_p["accuracy"] < test_0["accuracy"]


def test_tgda_mlp_multiclass_box_and_determinism():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(60, 1, 4, 4, generator=gen)
    y = (x.flatten(1)[:, :3].argmax(1))
    mlp = nn.Sequential(OrderedDict(flatten=nn.Flatten(), fc1=nn.Linear(16, 8), act=nn.LeakyReLU(0.2), fc2=nn.Linear(8, 3)))
    kw = dict(epochs=3, leader_lr=0.5, follower_steps=2, cg_iters=4, box=(0.0, 1.0), seed=3, device="cpu")
    a = tgda(mlp, x, y, "multiclass", 0.1, **kw)
    b = tgda(mlp, x, y, "multiclass", 0.1, **kw)
    c = tgda(mlp, x, y, "multiclass", 0.1, **{**kw, "seed": 4})
    assert torch.equal(a.x, b.x) and a.history == b.history and not torch.equal(a.x, c.x)
    assert a.x.shape == (6, 1, 4, 4) and a.x.min() >= 0 and a.x.max() <= 1
    assert not torch.equal(a.x, x[a.init_index])  # the poisons moved
    assert a.config["n_val"] == 18 and a.config["cg_iters"] == 4


# ------------------------------------------------------------------ Gradient Matching
def test_reversed_losses():
    h = torch.tensor([[2.0, 0.0, -1.0]])
    p = torch.softmax(h, 1)[0, 0]
    assert float(reversed_loss(h, torch.tensor([0]), "multiclass")) == pytest.approx(float(-torch.log(1 - p)), rel=1e-6)
    hb = torch.tensor([[0.7], [0.7]])
    s = torch.sigmoid(torch.tensor(0.7))
    want = float(-(torch.log(1 - s) + torch.log(s)) / 2)  # y = 1: -log(1 - p); y = 0: -log(1 - (1 - p))
    assert float(reversed_loss(hb, torch.tensor([1, 0]), "binary")) == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize("task", ["multiclass", "binary"])
def test_gm_drives_dissimilarity_down(task):
    x, y = _blobs(200, 0, d=5, dtype=torch.float32)
    if task == "multiclass":
        y = (x[:, 0] > 0).long() + (x[:, 1] > 1).long()
    model = linear_model(torch.randn(3 if task == "multiclass" else 1, 5, generator=torch.Generator().manual_seed(0)), torch.zeros(3 if task == "multiclass" else 1))
    before = [p.detach().clone() for p in model.parameters()]
    res = gradient_matching(model, x, y, task, 0.05, device="cpu")
    h = res.history
    assert len(h["dissimilarity"]) == 250 and res.n_poison == 10
    assert h["final_dissimilarity"] < 0.2 and h["final_dissimilarity"] < h["dissimilarity"][0]
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    g_j = torch.cat([g.reshape(-1) for g in torch.autograd.grad(reversed_loss(model(x), y, task), list(model.parameters()))])
    assert float(dissimilarity(model, target_params(model), g_j, res.x, res.y, task)) == pytest.approx(h["final_dissimilarity"], abs=1e-5)


def _least_squares(x, y):
    a = torch.cat([x.double(), torch.ones(len(x), 1, dtype=torch.float64)], 1)
    return torch.linalg.lstsq(a, y.double()[:, None]).solution.reshape(-1)  # (weight, bias)


def test_gm_regression_moves_toward_target():
    ds = load_dataset("gaussian2d")
    w_clean = _least_squares(ds.x_train, ds.y_train)
    clean = linear_model(w_clean[:1].float(), w_clean[1:].float())
    w_target = torch.tensor([-0.5, 1.0], dtype=torch.float64)
    target = linear_model(w_target[:1].float(), w_target[1:].float())
    reached = []
    for eps_d in (0.05, 0.2):
        res = gradient_matching(clean, ds.x_train, ds.y_train, ds.task, eps_d, target=target, steps=150, lr=0.05, device="cpu")
        assert res.history["final_dissimilarity"] < 0.05
        w_re = _least_squares(torch.cat([ds.x_train, res.x]), torch.cat([ds.y_train, res.y]))
        cos = torch.nn.functional.cosine_similarity(w_re - w_clean, w_target - w_clean, dim=0)
        assert cos > 0.5, (eps_d, w_re, cos)
        reached.append(w_re)
    assert (reached[0] - reached[1]).norm() > 1e-2  # GM reaches a different model for each eps_d (App. C.5)
    again = gradient_matching(clean, ds.x_train, ds.y_train, ds.task, 0.2, target=target, steps=150, lr=0.05, device="cpu")
    assert torch.equal(again.x, res.x)


def test_gm_restarts_and_labels():
    ds = load_dataset("gaussian2d")
    w = _least_squares(ds.x_train, ds.y_train)
    clean = linear_model(w[:1].float(), w[1:].float())
    target = linear_model([[0.0]], [0.5])
    res = gradient_matching(clean, ds.x_train, ds.y_train, ds.task, 0.1, target=target, steps=20, restarts=3, optimize_labels=True, optimizer="adam", device="cpu")
    finals = res.history["restart_dissimilarity"]
    assert len(finals) == 3 and res.history["final_dissimilarity"] == min(finals)
    assert not torch.equal(res.y, ds.y_train[res.init_index])  # labels moved too


def test_bad_inputs_raise(gaussian10):
    ds = gaussian10
    m = copy.deepcopy(model_for("lr", ds, seed=0))
    with pytest.raises(PoisonlibError, match=r"eps_d.*0"):
        tgda(m, ds.x_train, ds.y_train, ds.task, 0.0, device="cpu")
    with pytest.raises(PoisonlibError, match=r"eps_d.*-0.1"):
        gradient_matching(m, ds.x_train, ds.y_train, ds.task, -0.1, device="cpu")
    with pytest.raises(PoisonlibError, match="'sgd'"):
        gradient_matching(m, ds.x_train, ds.y_train, ds.task, 0.1, optimizer="sgd", device="cpu")
    with pytest.raises(PoisonlibError, match="optimize_labels"):
        gradient_matching(m, ds.x_train, ds.y_train, ds.task, 0.1, optimize_labels=True, device="cpu")
    with pytest.raises(PoisonlibError, match="cg_iters.*0"):
        tgda(m, ds.x_train, ds.y_train, ds.task, 0.1, cg_iters=0, device="cpu")
    reg = load_dataset("gaussian2d")
    with pytest.raises(PoisonlibError, match="target"):
        gradient_matching(linear_model([[1.0]], [0.0]), reg.x_train, reg.y_train, reg.task, 0.1, device="cpu")
