"""The proofs-by-check of the theory chapters, run as tests (same functions as the book)."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from poisonlib import PoisonlibError, checks, theory
from poisonlib.data import load_dataset
from poisonlib.experiments import candidate_gradients, eps_sweep, first_eps, fw_sweep, sweep_factors, tau_grid
from poisonlib.models import linear_model, model_for, split_last_layer
from poisonlib.train import train


def _assert(results):
    checks.assert_all(results if isinstance(results, list) else [results])


def test_eq18_infimum():
    _assert(checks.binary_infimum())


@pytest.mark.parametrize("c", [2, 3, 10, 200])
def test_appendix_a_bound(c):
    _assert(checks.cross_entropy_bound(c))


@pytest.mark.parametrize("c", [2, 3, 10, 200])
def test_appendix_a_proof_steps(c):
    _assert(checks.cross_entropy_proof_steps(c))


def test_quoted_ratios():
    r = checks.tau_ratios()
    _assert(r)
    assert r[1].measured == pytest.approx(3.954, abs=1e-3) and r[2].measured == pytest.approx(11.30, abs=1e-2)


@pytest.mark.parametrize("name", sorted(theory.MARGIN_ENDPOINTS))
def test_margin_endpoints(name):
    _assert(checks.margin_endpoints(name))


def test_user_loss_endpoints_and_threshold():
    a, b = theory.margin_endpoints(lambda t: np.log1p(np.exp(-2 * np.asarray(t))))  # a rescaled logistic loss
    assert a == pytest.approx(-theory.lambert_margin_bound(2), abs=1e-6) and math.isinf(b)
    assert theory.eps_threshold(0.5, a, b) == pytest.approx(0.5 / theory.lambert_margin_bound(2), rel=1e-5)
    assert theory.lambda_threshold(0.5, 0.0, math.inf) == 1.0 and math.isinf(theory.eps_threshold(0.5, 0.0, math.inf))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), factor=st.floats(1.0, 20.0))
def test_above_tau_a_poisoning_distribution_exists(seed, factor):
    _assert(checks.phase_transition(seed, factor))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), factor=st.floats(0.01, 0.99))
def test_below_tau_no_poisoning_distribution_exists(seed, factor):
    _assert(checks.phase_transition(seed, factor, n_random=300))


def test_construction_refuses_below_tau():
    X, w, g = checks.random_binary_instance(0)
    tau = float(w @ g) / theory.lambert_margin_bound(2)
    with pytest.raises(PoisonlibError, match="no poisoning distribution exists"):
        theory.binary_poisoning_distribution(w, g, 0.5 * tau)


@pytest.mark.parametrize("eps_d", [0.01, 0.1, 1.0])
def test_least_squares_any_budget(eps_d):
    _assert(checks.least_squares(eps_d))


def test_scaling_lowers_tau():
    ds = load_dataset("gaussian10")
    from poisonlib.attacks import gradpc

    m, _ = train(model_for("lr", ds, seed=0), ds.x_train, ds.y_train, ds.task, epochs=50, lr=0.5)
    target, _ = gradpc(m, ds.x_train, ds.y_train, ds.task, 3.0)
    assert theory.tau_model(target, ds.x_train, ds.y_train, ds.task)["tau2"] > 0
    _assert(checks.scaling(target, ds.x_train, ds.y_train, ds.task))


@pytest.mark.parametrize("name", ["lr", "nn", "cnn"])
def test_last_layer_inner_product(name, mnist):
    m = model_for(name, mnist, seed=0)
    _assert(checks.last_layer_inner(m, mnist.x_train[:200], mnist.y_train[:200], mnist.task))
    phi, last = split_last_layer(m)
    assert torch.allclose(last(phi(mnist.x_train[:3])), m(mnist.x_train[:3]), atol=1e-6)


def test_frank_wolfe_transition_on_or():
    ds = load_dataset("or2d")
    target = linear_model([-2.0, -1.5], [0.5])
    tau = theory.tau_model(target, ds.x_train, ds.y_train, ds.task)["tau2"]
    s = np.linspace(-6, 6, 61)
    X, Y, cand = candidate_gradients(target, np.stack(np.meshgrid(s, s), -1).reshape(-1, 2))
    assert cand.shape == (2 * 61 * 61, 3) and set(Y.tolist()) == {0, 1}
    from poisonlib.grads import flat, global_norm, mean_gradient

    g_mu = flat(mean_gradient(target, ds.x_train, ds.y_train, ds.task)).double().numpy()
    _assert(checks.frank_wolfe_transition(g_mu, cand, tau, factors=(0.5, 1.5, 2.0), w_norm=global_norm(list(target.parameters()))))
    rows = fw_sweep(target, ds, [0.5 * tau, 2 * tau], cand)
    assert rows[0]["residual"] > 1e-3 and rows[1]["residual"] < 1e-6
    assert first_eps(rows, lambda r: r["residual"] < 1e-6) == pytest.approx(2 * tau)


def test_plain_frank_wolfe_decreases_and_support_grows_by_one():
    rng = np.random.default_rng(0)
    G = rng.normal(size=(50, 4))
    r = theory.frank_wolfe(rng.normal(size=4), G, 1.0, iters=30, corrective=False)
    assert all(b <= a + 1e-12 for a, b in zip(r["residual"], r["residual"][1:]))
    assert r["support"] <= 31 and r["q"].sum() == pytest.approx(1.0) and (r["q"] >= 0).all()


def test_tau_grid_and_sweep_factors():
    ds = load_dataset("or2d")
    grid = tau_grid(ds, [-2.0, -1.0], [-3.0, -1.5, -1.0], bias=0.5)
    assert grid.shape == (3, 2) and (grid > 0).all()
    f = sweep_factors(5)
    assert {0.9, 1.0, 1.1} <= set(f.tolist()) and f.min() == pytest.approx(0.1) and f.max() == pytest.approx(3.0)


def test_gc_with_labels_reaches_a_least_squares_target():
    """Fig. 5 / Ex. 1: GC moving features and labels makes any line the least-squares fit."""
    ds = load_dataset("gaussian2d")
    target = linear_model([-1.0], [1.0])
    rows = eps_sweep(ds, "linreg", target, [0.1, 1.0], gc_epochs=1500, gc_options=dict(optimize_labels=True))
    for r in rows:
        assert r["param_distance"] < 1e-3, r


def test_optimize_labels_needs_regression(mnist):
    from poisonlib.attacks import gradient_canceling

    with pytest.raises(PoisonlibError, match="optimize_labels"):
        gradient_canceling(model_for("lr", mnist), mnist.x_train, mnist.y_train, mnist.task, 0.1, optimize_labels=True)


def test_lbfgs_solves_a_convex_problem_to_optimality():
    ds = load_dataset("gaussian10")
    m, hist = train(model_for("lr", ds, seed=0), ds.x_train, ds.y_train, ds.task, epochs=10, lr=1.0, optimizer="lbfgs")
    from poisonlib.grads import global_norm, mean_gradient

    assert global_norm(mean_gradient(m, ds.x_train, ds.y_train, ds.task)) < 1e-4


@pytest.mark.parametrize("name", ["lr", "nn", "cnn"])
def test_tau_from_penultimate_features_equals_tau_from_logits(name, mnist):
    m = model_for(name, mnist, seed=1)
    a = theory.tau_last_layer(m, mnist.x_train[:300], mnist.y_train[:300])
    b = theory.tau_model(m, mnist.x_train[:300], mnist.y_train[:300], mnist.task, device="cpu")
    assert a["inner"] == pytest.approx(b["inner"], rel=1e-5, abs=1e-7) and a["tauc"] == pytest.approx(b["tauc"], rel=1e-5, abs=1e-7)
