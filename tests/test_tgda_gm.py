"""TGDA (Lu et al. 2022; generator or poisons as leader) and Gradient Matching (Geiping et al. 2021, Sec. 4 Eq. 35-36, ε-ball)."""

import copy
from collections import OrderedDict

import pytest
import torch
from torch import nn

from poisonlib import PoisonlibError
from poisonlib.attacks.gm import EPS_WITCHES_BREW, dissimilarity, gradient_matching, reversed_loss
from poisonlib.attacks.tgda import PoisonGenerator, generator_total_gradient, make_generator, tgda, total_gradient
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
    """Newton's method on the mean logistic loss + lam/2 ||w||^2 (a tiny, strongly convex problem),
    until its step is at machine precision (at most ``iters`` steps)."""
    p = target_params(model)
    names, shapes = list(p), [t.shape for t in p.values()]

    def f(theta):
        ps = dict(zip(names, torch.split(theta, [s.numel() for s in shapes])))
        ps = {k: v.reshape(s) for (k, v), s in zip(ps.items(), shapes)}
        return loss_fn("binary")(torch.func.functional_call(model, ps, (x,)), y) + 0.5 * lam * theta @ theta

    theta = flat(p).clone()
    for _ in range(iters):
        step = torch.linalg.solve(torch.func.hessian(f)(theta), torch.func.grad(f)(theta))
        theta = theta - step
        if float(step.norm()) <= 1e-15 * (1 + float(theta.norm())):  # quadratic convergence: at machine precision
            break
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


@pytest.mark.parametrize("box", [None, (-4.0, 4.0)])
def test_tgda_generator_weight_gradient_matches_finite_differences(box):
    """dL_val/dθ (total gradient back-propagated through the generator) vs central differences of L_val(w*(G_θ))."""
    lam = 0.1
    xc, yc = _blobs(30, 0)
    xv, yv = _blobs(20, 1)
    xb, yp = _blobs(4, 2)
    model = linear_model(torch.zeros(1, 2)).double()
    model.bias = nn.Parameter(torch.zeros(1, dtype=torch.float64))
    gen = make_generator(2, 3, box, seed=0, dtype=torch.float64)
    with torch.no_grad():  # the last layer starts at zero; move it so that every weight matters
        gen.fc3.weight.normal_(0, 0.3, generator=torch.Generator().manual_seed(1))
        gen.fc3.bias.normal_(0, 0.3, generator=torch.Generator().manual_seed(2))
    ps = list(gen.parameters())

    def l_val():
        with torch.no_grad():
            xp = gen(yp, xb)
        w = _argmin(model, torch.cat([xc, xp]), torch.cat([yc, yp]), lam)
        return float(loss_fn("binary")(torch.func.functional_call(model, w, (xv,)), yv))

    with torch.no_grad():
        xp = gen(yp, xb)
    w = _argmin(model, torch.cat([xc, xp]), torch.cat([yc, yp]), lam)
    grads, lv, x_out = generator_total_gradient(gen, model, w, xc, yc, xb, yp, xv, yv, "binary", cg_iters=10, damping=lam)
    assert torch.equal(x_out, xp) and lv == pytest.approx(l_val(), rel=1e-10)
    h = 1e-5
    for p, g in zip(ps, grads):
        fd = torch.zeros_like(p)
        for i in range(p.numel()):
            with torch.no_grad():
                p.view(-1)[i] += h
            up = l_val()
            with torch.no_grad():
                p.view(-1)[i] -= 2 * h
            down = l_val()
            with torch.no_grad():
                p.view(-1)[i] += h
            fd.view(-1)[i] = (up - down) / (2 * h)
        assert fd.abs().max() > 1e-5  # every layer moves the validation loss
        assert torch.allclose(g, fd, rtol=1e-4, atol=1e-8), (g, fd)


def test_poison_generator_starts_at_clean_points_and_respects_box():
    x = torch.rand(50, 6, generator=torch.Generator().manual_seed(0)) * 2 - 1
    y = torch.arange(50) % 3
    free, boxed = PoisonGenerator(6), PoisonGenerator(6, 4, (-1.0, 1.0))
    assert torch.equal(free(y, x), x)  # zero last layer: exactly the clean points
    assert (boxed(y, x) - x).abs().max() <= 0.02 + 1e-6  # within the margin of the tanh range
    with torch.no_grad():
        for g in (free, boxed):
            g.fc3.bias.fill_(50.0)
    assert free(y, x).min() > 1.0  # unbounded: the poisons leave the box
    out = boxed(y, x)
    assert out.max() <= 1.0 and out.min() >= -1.0 and torch.isfinite(out).all()
    with pytest.raises(PoisonlibError, match="lo < hi"):
        PoisonGenerator(6, box=(1.0, 1.0))


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
    res = tgda(g10_clean, ds.x_train, ds.y_train, ds.task, 0.1, x_val=ds.x_val, y_val=ds.y_val, epochs=30, leader="poisons", leader_lr=0.1, device="cpu")
    assert all(torch.equal(a, b.detach()) for a, b in zip(before, g10_clean.parameters()))  # caller's model untouched
    assert res.n_poison == 56 and res.eps_d == pytest.approx(0.1) and len(res.history["val_loss"]) == 30
    assert res.history["val_loss"][-1] > res.history["val_loss"][0] + 0.05
    assert torch.equal(res.y, ds.y_train[res.init_index])
    test_p, val_p = _retrain(ds, res.x, res.y)
    test_0, val_0 = _retrain(ds, ds.x_train[res.init_index], res.y)
    assert val_p["loss"] > val_0["loss"] + 0.05
    assert test_p["accuracy"] < test_0["accuracy"]


def test_tgda_generator_raises_validation_loss_within_box(gaussian10, g10_clean):
    """The default leader (a generator network): the attack does something, poisons stay in the box."""
    ds = gaussian10
    box = (float(ds.x_train.min()), float(ds.x_train.max()))
    kw = dict(x_val=ds.x_val, y_val=ds.y_val, epochs=30, generator_lr=1e-2, device="cpu")
    res = tgda(g10_clean, ds.x_train, ds.y_train, ds.task, 0.1, box=box, **kw)
    assert res.config["leader"] == "generator" and res.config["step"] == "adam" and res.config["generator_hidden"] == 10
    assert torch.isfinite(res.x).all() and res.x.min() >= box[0] and res.x.max() <= box[1]
    assert torch.equal(res.y, ds.y_train[res.init_index])
    h = res.history["val_loss"]
    assert len(h) == 30 and h[-1] > h[0] + 0.1
    _, val_p = _retrain(ds, res.x, res.y)
    _, val_0 = _retrain(ds, ds.x_train[res.init_index], res.y)
    clean_val = evaluate(g10_clean, ds.x_val, ds.y_val, ds.task)
    assert val_p["loss"] > val_0["loss"] + 0.1 and val_p["loss"] > clean_val["loss"] + 0.1
    free = tgda(g10_clean, ds.x_train, ds.y_train, ds.task, 0.1, box=None, **kw)  # an unbounded protocol
    assert torch.isfinite(free.x).all() and (free.x.min() < box[0] or free.x.max() > box[1])
    assert free.history["val_loss"][-1] > free.history["val_loss"][0] + 0.1


def test_tgda_generator_original_plain_step_and_bad_options(gaussian10, g10_clean):
    ds = gaussian10
    kw = dict(x_val=ds.x_val, y_val=ds.y_val, epochs=2, follower_steps=2, cg_iters=2, device="cpu")
    res = tgda(g10_clean, ds.x_train, ds.y_train, ds.task, 0.05, generator_optimizer="sgd", generator_lr=0.01, generator_hidden=5, **kw)
    assert res.config["step"] == "sgd" and res.config["generator_hidden"] == 5 and res.x.shape == (28, 10)
    with pytest.raises(PoisonlibError, match="'gan'"):
        tgda(g10_clean, ds.x_train, ds.y_train, ds.task, 0.05, leader="gan", **kw)
    with pytest.raises(PoisonlibError, match="'rmsprop'"):
        tgda(g10_clean, ds.x_train, ds.y_train, ds.task, 0.05, generator_optimizer="rmsprop", **kw)
    with pytest.raises(PoisonlibError, match="generator_lr"):
        tgda(g10_clean, ds.x_train, ds.y_train, ds.task, 0.05, generator_lr=0.0, **kw)


@pytest.mark.parametrize("leader", ["generator", "poisons"])
def test_tgda_mlp_multiclass_box_and_determinism(leader):
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(60, 1, 4, 4, generator=gen)
    y = (x.flatten(1)[:, :3].argmax(1))
    mlp = nn.Sequential(OrderedDict(flatten=nn.Flatten(), fc1=nn.Linear(16, 8), act=nn.LeakyReLU(0.2), fc2=nn.Linear(8, 3)))
    kw = dict(epochs=3, leader=leader, leader_lr=0.5, generator_lr=1e-2, follower_steps=2, cg_iters=4, box=(0.0, 1.0), seed=3, device="cpu")
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
    res = gradient_matching(model, x, y, task, 0.05, eps=None, device="cpu")  # unbounded features: no ball
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
        res = gradient_matching(clean, ds.x_train, ds.y_train, ds.task, eps_d, target=target, steps=150, lr=0.05, eps=None, device="cpu")
        assert res.history["final_dissimilarity"] < 0.05
        w_re = _least_squares(torch.cat([ds.x_train, res.x]), torch.cat([ds.y_train, res.y]))
        cos = torch.nn.functional.cosine_similarity(w_re - w_clean, w_target - w_clean, dim=0)
        assert cos > 0.5, (eps_d, w_re, cos)
        reached.append(w_re)
    assert (reached[0] - reached[1]).norm() > 1e-2  # GM reaches a different model for each eps_d (App. C.5)
    again = gradient_matching(clean, ds.x_train, ds.y_train, ds.task, 0.2, target=target, steps=150, lr=0.05, eps=None, device="cpu")
    assert torch.equal(again.x, res.x)


def test_gm_restarts_and_labels():
    ds = load_dataset("gaussian2d")
    w = _least_squares(ds.x_train, ds.y_train)
    clean = linear_model(w[:1].float(), w[1:].float())
    target = linear_model([[0.0]], [0.5])
    res = gradient_matching(clean, ds.x_train, ds.y_train, ds.task, 0.1, target=target, steps=20, restarts=3, optimize_labels=True, optimizer="adam",
                            eps=None, device="cpu")
    finals = res.history["restart_dissimilarity"]
    assert len(finals) == 3 and res.history["final_dissimilarity"] == min(finals)
    assert not torch.equal(res.y, ds.y_train[res.init_index])  # labels moved too


def _pixels(n=200, d=8, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, d, generator=gen)
    y = (x[:, 0] + x[:, 1] > 1).long() + (x[:, 2] > 0.5).long()
    model = linear_model(torch.randn(3, d, generator=gen), torch.zeros(3))
    return x, y, model


def test_gm_eps_ball_and_box():
    """Witches' Brew's admissible set: ||x_j - x_base_j||_inf <= eps and x_j in the box, after every step."""
    x, y, model = _pixels()
    res = gradient_matching(model, x, y, "multiclass", 0.1, steps=60, restarts=2, box=(0.0, 1.0), device="cpu")
    assert res.config["eps"] == pytest.approx(16 / 255) == EPS_WITCHES_BREW
    dev = (res.x - x[res.init_index]).abs()
    assert dev.max() <= EPS_WITCHES_BREW + 1e-6 and dev.max() > 0.9 * EPS_WITCHES_BREW  # inside the ball, and using it
    assert res.x.min() >= 0 and res.x.max() <= 1
    h = res.history
    assert h["final_dissimilarity"] < h["dissimilarity"][0]
    wide = gradient_matching(model, x, y, "multiclass", 0.1, steps=60, eps=None, box=(0.0, 1.0), device="cpu")
    assert (wide.x - x[wide.init_index]).abs().max() > 2 * EPS_WITCHES_BREW  # without the ball the poisons go further
    assert wide.history["final_dissimilarity"] < h["final_dissimilarity"]  # ... and match the gradient better
    tight = gradient_matching(model, x, y, "multiclass", 0.1, steps=30, eps=0.01, box=None, device="cpu")
    assert (tight.x - x[tight.init_index]).abs().max() <= 0.01 + 1e-6


def test_gm_restarts_keep_best_objective():
    x, y, model = _pixels(seed=1)
    kw = dict(steps=15, box=(0.0, 1.0), device="cpu")
    res = gradient_matching(model, x, y, "multiclass", 0.1, restarts=4, **kw)
    finals = res.history["restart_dissimilarity"]
    assert len(finals) == 4 and len(set(finals)) == 4  # random starts in the ball differ
    best = min(range(4), key=finals.__getitem__)
    assert res.history["final_dissimilarity"] == finals[best]
    g_j = torch.cat([g.reshape(-1) for g in torch.autograd.grad(reversed_loss(model(x), y, "multiclass"), list(model.parameters()))])
    assert float(dissimilarity(model, target_params(model), g_j, res.x, res.y, "multiclass")) == pytest.approx(finals[best], abs=1e-5)
    one = gradient_matching(model, x, y, "multiclass", 0.1, restarts=1, **kw)
    assert torch.equal(one.init_index, res.init_index)  # restarts share the base images
    assert one.history["final_dissimilarity"] == finals[0]  # restart 0 is the single run
    old = gradient_matching(model, x, y, "multiclass", 0.1, restarts=1, eps=None, **kw)  # no ball: starts at the clean sample
    assert torch.equal(old.init_index, res.init_index)
    assert old.history["dissimilarity"][0] == pytest.approx(float(dissimilarity(model, target_params(model), g_j, x[old.init_index], y[old.init_index], "multiclass")), abs=1e-6)


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
    with pytest.raises(PoisonlibError, match="eps.*0"):
        gradient_matching(m, ds.x_train, ds.y_train, ds.task, 0.1, eps=0.0, device="cpu")
    with pytest.raises(PoisonlibError, match="cg_iters.*0"):
        tgda(m, ds.x_train, ds.y_train, ds.task, 0.1, cg_iters=0, device="cpu")
    reg = load_dataset("gaussian2d")
    with pytest.raises(PoisonlibError, match="target"):
        gradient_matching(linear_model([[1.0]], [0.0]), reg.x_train, reg.y_train, reg.task, 0.1, device="cpu")
