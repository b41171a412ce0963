"""The MNIST-17 phase-transition sweep (poisonlib.transition): criterion, ε*, exact threshold, a synthetic transition."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from poisonlib import transition as T
from poisonlib.models import linear_model
from poisonlib.theory import lambert_margin_bound


def test_criterion_needs_both_parts():
    assert T.reaches_target(0.5 * T.RESIDUAL_RTOL, 0.5 * T.REFIT_RTOL)
    assert not T.reaches_target(2 * T.RESIDUAL_RTOL, 0.5 * T.REFIT_RTOL)  # gradient not cancelled
    assert not T.reaches_target(0.5 * T.RESIDUAL_RTOL, 2 * T.REFIT_RTOL)  # refit lands elsewhere
    assert (T.RESIDUAL_RTOL, T.REFIT_RTOL) == (1e-2, 0.1)  # fixed before the runs


def _rows(pattern, target="t", seed=0):
    return [{"target": target, "seed": seed, "eps_ratio": r, "reaches": ok} for r, ok in zip(T.GRID, pattern)]


def test_eps_star_from_hand_built_rows():
    rows = (_rows([0, 0, 0, 0, 1, 0, 1, 1, 1], seed=0) + _rows([0, 0, 0, 0, 1, 1, 1, 1, 1], seed=1)
            + _rows([0] * 9, seed=2) + _rows([1] * 9, target="u"))
    th = {(t["target"], t["seed"]): t for t in T.thresholds(rows)}
    assert th["t", 0]["eps_star_over_tau"] == 1.5  # a failure at 1.25 resets the threshold
    assert th["t", 1]["eps_star_over_tau"] == 1.1
    assert th["t", 2]["eps_star_over_tau"] is None
    assert th["u", 0]["below_grid"] and th["u", 0]["eps_star_over_tau"] == 0.25
    s = {r["target"]: r for r in T.summary([dict(r, tau=1.0, exact_over_tau=1.0, target_test_acc=0.5) for r in rows])}
    assert s["t"]["mean"] == pytest.approx(1.3) and s["t"]["min"] == 1.1 and s["t"]["max"] == 1.5
    assert s["t"]["std"] == pytest.approx(0.2) and s["t"]["n_above_grid"] == 1 and s["t"]["seeds"] == [0, 1, 2]


def test_exact_threshold_with_a_bias_row():
    W = lambert_margin_bound(2)
    assert T.exact_threshold(1.0, 0.0, 0.5) == pytest.approx(1.0 / W, rel=1e-6)  # Eq. (20): the bias row is met at v*
    # β = (1 - 2q) v* ε is met at τ by a₊ = a₋ = v*: exact = τ; a larger |β| needs ε > τ, monotone in |β|
    vals = [T.exact_threshold(0.2, b, 0.5) for b in (0.0, 0.05, 0.1, 0.2)]
    assert vals[0] == pytest.approx(0.2 / W, rel=1e-6) and vals[1] >= vals[0] - 1e-9 and vals[3] > vals[2] > vals[0] * 1.1
    assert T.exact_threshold(-0.1, 0.3, 0.5) > 0  # τ = 0 but the bias row alone needs a budget


def test_mnist17_separable():
    from poisonlib.data import load_dataset

    ds = load_dataset("mnist17")
    sep = T.separability(ds.x_train, ds.y_train.numpy(), bias=False)
    assert sep["separable"] and sep["train_acc_C1e10"] == 1.0 and sep["rank"] < sep["d"]


def _synthetic(seed=0, n=300, d=4):
    g = np.random.default_rng(seed)
    y = g.integers(0, 2, n)
    x = g.normal(size=(n, d)) + 0.8 * (2 * y[:, None] - 1)  # overlapping classes: not separable
    t = lambda a: torch.tensor(a, dtype=torch.float32)
    return SimpleNamespace(name="synthetic", task="binary", x_train=t(x), y_train=torch.tensor(y), x_test=t(x), y_test=torch.tensor(y))


def test_synthetic_transition_near_tau():
    """Homogeneous LR in 4-d, unbounded features: Cor. 2 is exact, so no point below τ may pass and GC + the
    independent refit must reach the target soon above τ."""
    ds = _synthetic()
    target = linear_model(np.array([-1.5, 2.0, 0.5, 1.0]))  # a bad model with <w, g(mu)> > 0
    rows = T.sweep(ds, [("w", target, {})], grid=(0.5, 0.9, 1.5, 3.0), seeds=(0,), epochs=1500)
    assert rows[0]["tau"] > 0 and rows[0]["exact_over_tau"] == 1.0
    below = [r for r in rows if r["eps_ratio"] < 1]
    assert not any(r["reaches"] for r in below)
    gc = [r for r in rows if r["method"] == "GC"]
    assert all(r["residual_rel"] >= r["floor_rel"] * (1 - 1e-6) for r in gc)  # Eq. (18)'s floor holds for GC's poisons
    star = {t["method"]: t["eps_star_over_tau"] for t in T.thresholds(rows)}
    assert star["GC"] is not None and 1.0 < star["GC"] <= 1.5
    assert star["construction"] == 1.5  # the proof's poisons: every grid point above τ, none below


def test_the_construction_cancels_exactly_above_tau_and_does_not_exist_below():
    """Cor. 2's witness: n_p copies of one point cancel g(μ) to rounding at every ε ≥ τ (checked against the
    residual computed independently) and the unpenalised refit returns the target; below τ there is none."""
    ds = _synthetic(1)
    target = linear_model(np.array([-1.5, 2.0, 0.5, 1.0]))
    info = T._target_info(ds, target)
    X, y, w = T._design(ds.x_train), ds.y_train.numpy(), info["w"]
    for ratio in (1.001, 1.3, 4.0):
        xp, yp = T.construct(info["inner"], info["g"], ratio * info["tau"], len(X))
        assert len(xp) == round(ratio * info["tau"] * len(X)) and np.ptp(xp, 0).max() == 0
        Xa, ya = np.r_[X, xp], np.r_[y, yp]
        assert np.linalg.norm(T._grad(Xa, ya, w, len(X))) <= 1e-7 * info["g_mu_norm"]  # at ε → τ the root u → 1 + W(1/e) is double
        assert np.linalg.norm(T.refit(Xa, ya)[0] - w) <= 1e-4 * info["w_norm"]
    assert T.construct(info["inner"], info["g"], 0.98 * info["tau"], len(X)) is None


def test_refit_agrees_with_scikit_learn_where_the_minimiser_is_well_conditioned():
    from sklearn.linear_model import LogisticRegression

    ds = _synthetic(2)
    X, y = T._design(ds.x_train), ds.y_train.numpy()
    w, info = T.refit(X, y)
    sk = LogisticRegression(C=np.inf, fit_intercept=False, tol=1e-12, max_iter=10_000).fit(X, y).coef_.ravel()
    assert np.allclose(w, sk, rtol=1e-5, atol=1e-7) and info["refit_grad"] < 1e-10
