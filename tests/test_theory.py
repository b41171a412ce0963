import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize, minimize_scalar
from scipy.special import lambertw

from poisonlib import PoisonlibError
from poisonlib.models import build_model
from poisonlib.theory import (
    eps_to_lambda,
    lambda_to_eps,
    lambert_margin_bound,
    margin_inner_product,
    tau_from_logits,
    tau_linear,
    tau_model,
)


def test_binary_bound_is_the_infimum_of_eq_18():
    # inf_t -t / (1 + e^t) = -W(1/e)
    res = minimize_scalar(lambda t: -t / (1 + math.exp(t)), bounds=(-5, 10), method="bounded", options={"xatol": 1e-12})
    grid = np.linspace(-5, 10, 2_000_001)
    assert res.fun == pytest.approx(-lambert_margin_bound(2), abs=1e-9)
    assert (-grid / (1 + np.exp(grid))).min() == pytest.approx(-lambert_margin_bound(2), abs=1e-6)
    assert lambert_margin_bound(2) == pytest.approx(float(lambertw(1 / math.e).real))
    assert 1 / lambert_margin_bound(2) == pytest.approx(3.59, abs=0.01)  # the paper's "tau ~ 3.6 <W, G>"


@pytest.mark.parametrize("c", [2, 3, 10])
def test_multiclass_bound_is_the_infimum_of_a8(c):
    # min over logits h of <h, softmax(h) - e_y>, y = class 0 (App. A)
    def f(h):
        p = np.exp(h - h.max())
        p /= p.sum()
        return float(h @ (p - np.eye(c)[0]))

    best = min(minimize(f, np.random.default_rng(s).normal(size=c), method="BFGS", options={"gtol": 1e-10}).fun for s in range(5))
    assert best == pytest.approx(-lambert_margin_bound(c), abs=1e-6)


@settings(max_examples=200, deadline=None)
@given(st.integers(2, 12), st.integers(0, 2**31 - 1), st.floats(0.1, 20))
def test_no_logits_beat_the_lambert_bound(c, seed, scale):
    rng = np.random.default_rng(seed)
    h = scale * rng.normal(size=(64, c))
    y = rng.integers(0, c, 64)
    hs = h - h.max(1, keepdims=True)
    p = np.exp(hs) / np.exp(hs).sum(1, keepdims=True)
    per_point = np.sum(h * (p - np.eye(c)[y]), axis=1)
    assert per_point.min() >= -lambert_margin_bound(c) - 1e-9


def test_tau_ratios_quoted_in_the_paper():
    # same <W, G(mu)>: tau(2)/tau(10) ~ 4, tau(2)/tau(200) ~ 11
    assert lambert_margin_bound(10) / lambert_margin_bound(2) == pytest.approx(4, abs=0.2)
    assert lambert_margin_bound(200) / lambert_margin_bound(2) == pytest.approx(11, abs=0.5)


def test_lambda_eps_round_trip():
    for e in (0.0, 0.03, 1.0, 7.5):
        assert lambda_to_eps(eps_to_lambda(e)) == pytest.approx(e)
    assert eps_to_lambda(1.0) == 0.5
    with pytest.raises(PoisonlibError):
        lambda_to_eps(1.0)


def test_single_logit_equals_two_class_softmax():
    rng = np.random.default_rng(0)
    h, y = rng.normal(size=100), rng.integers(0, 2, 100)
    two = np.stack([np.zeros(100), h], axis=1)
    assert margin_inner_product(h, y) == pytest.approx(margin_inner_product(two, y))


def test_tau_linear_numpy_torch_and_model_agree():
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(200, 5)), rng.integers(0, 3, 200)
    W, b = rng.normal(size=(3, 5)), rng.normal(size=3)
    t_np = tau_linear(W, b, X, y)
    t_torch = tau_linear(torch.tensor(W), torch.tensor(b), torch.tensor(X), torch.tensor(y))
    m = build_model("lr", (5,), 3).double()
    with torch.no_grad():
        m.weight.copy_(torch.tensor(W))
        m.bias.copy_(torch.tensor(b))
    t_m = tau_model(m, torch.tensor(X), torch.tensor(y), "multiclass", device="cpu")
    assert t_np["tau2"] == pytest.approx(t_torch["tau2"]) == pytest.approx(t_m["tau2"])
    assert t_np["tauc"] == pytest.approx(t_np["inner"] / float(lambertw(2 / math.e).real))
    assert t_np["tau2"] == pytest.approx(t_np["inner"] / float(lambertw(1 / math.e).real))


def test_inner_product_is_w_dot_mean_gradient():
    # <W, G(mu)> of Eq. (28) equals the parameter-space inner product with the mean CE gradient (bias included)
    torch.manual_seed(0)
    X, y = torch.randn(50, 4, dtype=torch.float64), torch.randint(0, 3, (50,))
    m = build_model("lr", (4,), 3).double()
    loss = torch.nn.functional.cross_entropy(m(X), y)
    gw, gb = torch.autograd.grad(loss, [m.weight, m.bias])
    direct = float((m.weight * gw).sum().detach() + (m.bias * gb).sum().detach())
    assert tau_from_logits(m(X).detach(), y)["inner"] == pytest.approx(direct)


def test_negative_inner_product_means_tau_zero():
    h = np.array([[5.0, -5.0]] * 10)  # confident and correct: <h, p - y> < 0
    assert tau_from_logits(h, np.zeros(10, dtype=int))["tau2"] == 0.0
