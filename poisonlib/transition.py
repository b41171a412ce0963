"""The phase transition at τ on real data where the theory is exact (Cor. 2, Fig. 1, Fig. 2 made quantitative).

Setting. Binary logistic regression h = wᵀx + b on MNIST-17 (digits 1 vs 7 of MNIST-5k, labels y ∈ {0, 1},
one logit, σ(h) = P(y = 1)); with x̃ = s (x, 1), s = 2y − 1 and w̃ = (w, b) the loss is the margin loss
l(w̃ᵀx̃) = log(1 + e^{−w̃ᵀx̃}) of Eq. (17), which is also scikit-learn's parametrisation (``coef_``, ``intercept_``).
For a target w̃ with c = ⟨w̃, g(μ)⟩ > 0 (g(μ) the mean clean gradient), Eq. (18) bounds E_ν⟨w̃, ∇ℓ⟩ ≥ −W(1/e) for
any poisoning distribution ν, so ε_d ≥ τ = c / W(1/e) is necessary (Eq. 20); ``theory.tau_model`` computes τ from the
logits (h (σ(h) − y) = t l'(t) with t = s h), bias included. Cor. 2 makes τ also sufficient when ν ranges over all
distributions on x̃ ∈ ℝ^{d+1}. Two departures from that premise are computed here, not assumed away:

* the poisons' features are unbounded (``box=None``: Cor. 2's 𝕏 = ℝ^d; in the [0, 1] pixel box τ is only necessary);
* the bias coordinate of x̃ is s = ±1, fixed by the kept label (GC moves features only, Sec. 5.1). Writing
  v = σ(−t) ∈ (0, 1), t l'(t) = f(v) = v log(v / (1 − v)) is convex with minimum −W(1/e) at v* = σ(−t*),
  t* = 1 + W(1/e). With a fraction q of label-1 poisons, the residual vanishes iff some a₊, a₋ ∈ (0, 1) satisfy
  (1 − q) a₋ − q a₊ = −β/ε (the bias coordinate, β = g_b(μ)) and q f(a₊) + (1 − q) f(a₋) ≤ −c/ε (the
  direction w̃; Jensen, and f → ∞ as v → 1); the remaining d coordinates are then always solvable. The set of
  reachable g(ν) is convex and contains 0, so feasibility is monotone in ε and :func:`exact_threshold` ≥ τ is
  this family's exact threshold (= τ iff the bias row is met at a₊ = a₋ = v*).

Retraining is independent of GC: the mean logistic loss on clean ∪ poisons, unpenalised, in float64, minimised from 0
by scipy's ``trust-exact`` (exact gradient and Hessian) in the coordinates of the data's row space. The design is
rank-deficient (n = 560 < d + 1 = 785; 265 pixels are 0 in every training digit), but in its row space the logistic
loss is strictly convex, and every target here lies in that space (``target_offspan`` ≈ 0), so no ridge is needed —
and a ridge would be wrong: the loss is nearly flat along the confidently classified digits (σ'(t) ~ 1e-9), and
scikit-learn's Newton with C = 1e8 (a 1e-8 ridge) landed 26 % of ‖w̃‖ away from a target whose residual the poisons
cancel to 1e-8, whatever ε_d; unpenalised it lands within 4-5 % (the flat directions leave that much to float64). The clean training data
are linearly separable (:func:`separability`): the clean loss has no finite minimiser, the clean model uses a ridge
(C = 1), and retraining has a finite minimiser only if the poisons break separability — a finite target can only be
reached that way; a separable mixture makes the refit run off (‖w‖ grows), which the criterion counts as a failure.

Two ways to place the poisons, run on the same grid. ``GC``: the attack (``attacks.gradient_canceling``, default
settings, unbounded). ``construction``: the proof's witness (:func:`construct`, bias-free targets): n_p copies of one
point z = κ g(μ)/ε with margin u = wᵀz solving u σ(−u) = c/ε on (0, 1 + W(1/e)] and κ = u/c·ε, so that
−σ(−u) z = −g(μ)/ε and the residual vanishes; u exists iff c/ε ≤ W(1/e), i.e. iff ε ≥ τ. It shows what *some* poisons
reach, GC what the attack finds. GC keeps its poisons' labels and moves features from clean digits; a poison the
target classifies with a large margin t has gradient −s σ(−t) x̃ ≈ 0 and receives none, so it stays where it is
(``dead_frac``: the share with σ(−t) < 10⁻³ at the end) and the budget GC actually uses is the live share of ε_d.

The criterion (fixed before any run, :func:`reaches_target`): a point reaches the target iff
(i) ‖g(μ) + ε_d g(ν̂)‖ ≤ ``RESIDUAL_RTOL`` ‖g(μ)‖ = 1 %: GC cancelled 99 % of the clean gradient (the residual is
recomputed here in float64), and (ii) ‖w̃_refit − w̃‖ ≤ ``REFIT_RTOL`` ‖w̃‖ = 10 %, the ε-closeness ε = 0.1 the paper
uses for MNIST 1-7 (App. C.6, after Suya et al. 2021), here in parameters. Below τ, Eq. (18) gives the floor
‖r‖ ≥ W(1/e)(τ − ε)/‖w̃‖ (``floor_rel``). The empirical threshold ε* of a (target, seed) is the smallest grid value
of ε_d/τ from which every larger grid point reaches the target; seeds vary GC's initial poisons (and so their labels).
"""

from __future__ import annotations

import json
import sys
import time
import warnings

import numpy as np
import torch
from scipy.optimize import brentq, linprog, minimize, minimize_scalar
from sklearn.linear_model import LogisticRegression

from .attacks import gradient_canceling, gradpc
from .attacks.gc import n_poison_points
from .attacks.labelflip import margins
from .data import load_dataset
from .models import linear_model
from .theory import lambert_margin_bound, tau_model

RESIDUAL_RTOL = 1e-2
REFIT_RTOL = 0.1
#: trust-exact converges in about 20 steps where a finite minimiser exists (measured: 10-20 on MNIST-17); a mixture GC left
#: separable runs to this cap with ‖w‖ growing (its distance to the target then says only that it ran off)
REFIT_MAX_ITER = 30
GRID = (0.25, 0.5, 0.75, 0.9, 1.1, 1.25, 1.5, 2.0, 3.0)
#: a GC poison with σ(−t) below this at the end is counted as dead (its gradient and its update are ≈ 0)
DEAD_SIGMA = 1e-3
#: Per profile: ("gradpc", ε_w) or ("labelflip", margin quantile q, repeats r) targets (Suya et al.'s search, fitted
#: with C = 1), GC seeds, the ε_d/τ grid and GC steps. ``cpu`` is the miniature of the default book (two targets, one
#: seed, five points); ``cpu-full`` and ``paper`` run the issue's sweep (four targets, three seeds, nine points).
_FULL = dict(targets=(("gradpc", 0.9), ("gradpc", 1.0), ("labelflip", 0.2, 5), ("labelflip", 0.3, 5)), seeds=(0, 1, 2), grid=GRID, epochs=1000)
SIZES = {
    "smoke": dict(targets=(("gradpc", 0.9),), seeds=(0,), grid=(0.5, 1.5, 3.0), epochs=200),
    "cpu": dict(targets=(("gradpc", 0.9), ("labelflip", 0.2, 5)), seeds=(0,), grid=(0.5, 0.9, 1.1, 1.5, 3.0), epochs=500),
    "cpu-full": _FULL,
    "paper": _FULL,
}


def reaches_target(residual_rel: float, refit_rel: float) -> bool:
    """The criterion: residual ≤ 1 % of ‖g(μ)‖ and independent refit within 10 % of ‖w̃‖ (module docstring)."""
    return bool(residual_rel <= RESIDUAL_RTOL and refit_rel <= REFIT_RTOL)


def _design(x) -> np.ndarray:
    x = np.asarray(x.detach().cpu().double() if isinstance(x, torch.Tensor) else x, dtype=np.float64)
    return x.reshape(len(x), -1)


def separability(x, y, bias: bool = True) -> dict:
    """Is {(x_i, y_i)} linearly separable (through the origin if not ``bias``)? LP feasibility of
    s_i (wᵀx_i + b) ≥ 1 (HiGHS), and an (almost) unregularised fit (C = 1e10): 100 % training accuracy with a
    large ‖w‖ confirms it."""
    X, s = _design(x), 2 * np.asarray(y) - 1
    A = -(s[:, None] * (np.c_[X, np.ones(len(X))] if bias else X))
    lp = linprog(np.zeros(A.shape[1]), A_ub=A, b_ub=-np.ones(len(X)), bounds=[(None, None)] * A.shape[1], method="highs")
    fit = LogisticRegression(C=1e10, tol=1e-10, max_iter=5000, fit_intercept=bias).fit(X, y)
    return {"bias": bias, "separable": bool(lp.status == 0), "lp_status": int(lp.status), "train_acc_C1e10": float(fit.score(X, y)),
            "norm_C1e10": float(np.linalg.norm(fit.coef_)), "n": len(X), "d": X.shape[1],
            "rank": int(np.linalg.matrix_rank(_tilde(X, bias))), "dead_pixels": int((np.ptp(X, 0) == 0).sum())}


def _f(v):
    return v * np.log(v / (1.0 - v))  # t l'(t) at v = σ(−t)


def exact_threshold(inner: float, g_bias: float, q: float = 0.5) -> float:
    """Smallest ε with a poisoning distribution of label-1 fraction ``q`` (features free, labels kept) that cancels
    g(μ) exactly, for c = ⟨w̃, g(μ)⟩ = ``inner`` and β = ``g_bias`` (module docstring); ≥ τ = max(c, 0)/W(1/e)."""
    def feasible(eps):
        lo, hi = max(1e-12, (g_bias / eps) / q), min(1 - 1e-12, ((1 - q) + g_bias / eps) / q)  # a₋ ∈ (0, 1)
        if lo >= hi:
            return -1.0
        obj = lambda a: q * _f(a) + (1 - q) * _f((q * a - g_bias / eps) / (1 - q))
        best = minimize_scalar(obj, bounds=(lo, hi), method="bounded", options={"xatol": 1e-13}).fun
        return -inner / eps - best  # ≥ 0 iff feasible

    tau = max(inner, 0.0) / lambert_margin_bound(2)
    start = max(tau, 1e-9) * (1 + 1e-9)
    if feasible(start) >= 0:
        return tau
    hi = 2 * start
    while feasible(hi) < 0:
        hi *= 2
    return float(brentq(feasible, start, hi, xtol=1e-10 * hi))


def refit(x, y, bias: bool = False) -> tuple[np.ndarray, dict]:
    """The independent retraining (module docstring): min_w (1/n) Σ_i log(1 + exp(−s_i wᵀx̃_i)) over the row space
    of the design, from 0, by ``scipy.optimize.minimize(method="trust-exact")``; returns (w̃, info)."""
    Xt, s = _tilde(_design(x), bias), 2 * np.asarray(y) - 1
    _, S, Vt = np.linalg.svd(Xt, full_matrices=False)
    Z = Xt @ Vt[S > S[0] * 1e-10].T
    n = len(Z)

    def margins(a):
        return np.clip(s * (Z @ a), -700, 700)

    def hess(a):
        p = 1 / (1 + np.exp(-margins(a)))
        return (Z * (p * (1 - p))[:, None]).T @ Z / n

    with warnings.catch_warnings():  # a separable mixture stops at maxiter: reported through refit_grad / refit_norm
        warnings.simplefilter("ignore")
        r = minimize(lambda a: np.logaddexp(0, -margins(a)).mean(), np.zeros(Z.shape[1]), method="trust-exact", hess=hess,
                     jac=lambda a: -(s / (1 + np.exp(margins(a)))) @ Z / n, options=dict(gtol=1e-13, maxiter=REFIT_MAX_ITER))
    w = Vt[S > S[0] * 1e-10].T @ r.x
    return w, {"refit_grad": float(np.linalg.norm(_grad(Xt, y, w, n))), "refit_n_iter": int(r.nit), "refit_norm": float(np.linalg.norm(w))}


def _tilde(X, bias):
    return np.c_[X, np.ones(len(X))] if bias else X


def _params(model) -> np.ndarray:
    w = model.weight.detach().double().numpy().ravel()
    return w if model.bias is None else np.r_[w, model.bias.detach().double().numpy()]


def make_targets(ds, specs, bias: bool = False) -> list[tuple[str, object, dict]]:
    """Clean model: scikit-learn C = 1 (the data are separable). GradPC (absolute ε_w, ``attacks.gradpc``) and
    label-flip targets (flip the clean points below the q-quantile of the margins, add r copies, refit with C = 1)."""
    X, y = _design(ds.x_train), ds.y_train.numpy()
    sk = LogisticRegression(C=1.0, tol=1e-10, max_iter=10000, fit_intercept=bias).fit(X, y)
    clean = linear_model(sk.coef_, sk.intercept_ if bias else None)
    out = []
    for spec in specs:
        if spec[0] == "gradpc":
            tgt, _ = gradpc(clean, ds.x_train, ds.y_train, ds.task, spec[1], progress=False)
            name = f"GradPC eps_w={spec[1]:g}"
        else:
            q, r = spec[1], spec[2]
            m, flipped = margins(torch.as_tensor(X @ sk.coef_.ravel() + sk.intercept_), torch.as_tensor(y), "binary")
            idx = np.nonzero((m < torch.quantile(m, q)).numpy())[0]
            fit = LogisticRegression(C=1.0, tol=1e-10, max_iter=10000, fit_intercept=bias).fit(
                np.r_[X, np.repeat(X[idx], r, 0)], np.r_[y, np.repeat(flipped.numpy()[idx], r)])
            tgt, name = linear_model(fit.coef_, fit.intercept_ if bias else None), f"label-flip q={q:g} r={r}"
        out.append((name, tgt.eval(), {"spec": list(spec)}))
    return out


def _grad(Xt, y, w, n) -> np.ndarray:
    """(1/n) Σ_i ∇ℓ_i at w̃ over the rows of x̃-design ``Xt`` (float64): clean ∪ poisons / n is GC's residual."""
    s = 2 * np.asarray(y) - 1
    return -(s / (1 + np.exp(np.clip(s * (Xt @ w), -700, 700)))) @ Xt / n


def _target_info(ds, tgt) -> dict:
    X, y, bias = _design(ds.x_train), ds.y_train.numpy(), tgt.bias is not None
    w, Xt = _params(tgt), _tilde(X, bias)
    g = _grad(Xt, y, w, len(X))
    t = tau_model(tgt, ds.x_train, ds.y_train, ds.task, device="cpu")
    U, S, Vt = np.linalg.svd(Xt, full_matrices=False)
    V = Vt[S > S[0] * 1e-10]
    off = w - V.T @ (V @ w)
    pred = (_tilde(_design(ds.x_test), bias) @ w > 0).astype(int)
    return {"tau": t["tau2"], "inner": t["inner"], "g_mu_norm": float(np.linalg.norm(g)), "g_bias": float(g[-1]) if bias else None,
            "w_norm": float(np.linalg.norm(w)), "cos_w_g": float(w @ g / (np.linalg.norm(w) * np.linalg.norm(g))),
            "exact_over_tau": (exact_threshold(t["inner"], float(g[-1]), float(y.mean())) / t["tau2"] if bias else 1.0) if t["tau2"] > 0 else None,
            "target_offspan": float(np.linalg.norm(off) / np.linalg.norm(w)), "target_test_acc": float((pred == ds.y_test.numpy()).mean()),
            "w": w, "g": g, "pred": pred}


def construct(inner: float, g: np.ndarray, eps: float, n: int):
    """The proof's poisons at realised budget ε = n_p/n (module docstring): ``(x, y)`` with n_p = round(ε n) copies of
    z = κ g(μ)/ε, label 1, or ``None`` where none exist (c/ε > W(1/e), i.e. ε < τ). Bias-free targets only."""
    n_p = n_poison_points(eps, n)
    eps = n_p / n
    b, W1 = inner / eps, lambert_margin_bound(2)
    if inner <= 0 or b > W1:
        return None
    u = brentq(lambda v: v / (1 + np.exp(v)) - b, 0.0, 1 + W1, xtol=1e-15) if b < W1 else 1 + W1
    kappa = u / b
    return np.repeat((kappa * g / eps)[None], n_p, 0), np.ones(n_p, dtype=np.int64)


def _point(ds, X, y, w, info, bias, Xte, pred, Xp, yp) -> dict:
    """Residual (float64), independent refit and agreement of clean ∪ poisons (``Xp``, ``yp``) at target ``w``."""
    Xa, ya = np.r_[X, Xp], np.r_[y, yp]
    resid = float(np.linalg.norm(_grad(_tilde(Xa, bias), ya, w, len(X))))
    wr, rinfo = refit(Xa, ya, bias)
    t = (2 * yp - 1) * (_tilde(Xp, bias) @ w)
    return {"residual_rel": resid / info["g_mu_norm"], "refit_rel": float(np.linalg.norm(wr - w) / np.linalg.norm(w)),
            "refit_agreement": float(((Xte @ wr > 0).astype(int) == pred).mean()), "dead_frac": float((1 / (1 + np.exp(np.clip(t, -700, 700))) < DEAD_SIGMA).mean()),
            "q_label1": float(yp.mean()), **rinfo}


def sweep(ds, targets, grid=GRID, seeds=(0, 1, 2), epochs=1000) -> list[dict]:
    """One row per (target, seed, ε_d/τ): GC (``attacks.gradient_canceling``, unbounded, default Adam) then refit."""
    X, y = _design(ds.x_train), ds.y_train.numpy()
    W1, rows = lambert_margin_bound(2), []
    for name, tgt, extra in targets:
        info = _target_info(ds, tgt)
        w, g, pred, tau = info.pop("w"), info.pop("g"), info.pop("pred"), info["tau"]
        bias, Xte = tgt.bias is not None, _tilde(_design(ds.x_test), tgt.bias is not None)
        if tau <= 0:
            raise ValueError(f"target {name!r} has tau = 0 (<w, g(mu)> <= 0): every eps_d > 0 suffices, no transition to sweep")
        base = {"dataset": ds.name, "target": name, **extra, **info, "epochs": epochs}
        for ratio in grid if not bias else ():  # the construction: one per point (no seed)
            n_p = n_poison_points(ratio * tau, len(X))
            made, eps = construct(info["inner"], g, ratio * tau, len(X)), n_p / len(X)
            pt = _point(ds, X, y, w, info, bias, Xte, pred, *made) if made is not None else {"residual_rel": None, "refit_rel": None}
            rows.append({**base, "method": "construction", "seed": None, "eps_ratio": ratio, "eps_d": eps, "ratio_realised": eps / tau,
                         "n_poison": n_p, **pt, "floor_rel": max(0.0, W1 * (tau - eps)) / info["w_norm"] / info["g_mu_norm"],
                         "reaches": made is not None and reaches_target(pt["residual_rel"], pt["refit_rel"]), "gc_seconds": 0.0})
        for seed in seeds:
            for ratio in grid:
                t0 = time.perf_counter()
                res = gradient_canceling(tgt, ds.x_train, ds.y_train, ds.task, ratio * tau, box=None, epochs=epochs,
                                         seed=seed, device="cpu", progress=False)
                gc_s = time.perf_counter() - t0
                pt = _point(ds, X, y, w, info, bias, Xte, pred, _design(res.x), res.y.numpy())
                print(f"{name} seed {seed} eps/tau {ratio}: residual {pt['residual_rel']:.3g} refit {pt['refit_rel']:.3g} "
                      f"dead {pt['dead_frac']:.2f}", file=sys.stderr, flush=True)
                rows.append({**base, "method": "GC", "seed": seed, "eps_ratio": ratio, "eps_d": res.eps_d, "ratio_realised": res.eps_d / tau,
                             "n_poison": res.n_poison, "gc_residual_reported": float(res.history["final_residual"]), **pt,
                             "floor_rel": max(0.0, W1 * (tau - res.eps_d)) / info["w_norm"] / info["g_mu_norm"],
                             "reaches": reaches_target(pt["residual_rel"], pt["refit_rel"]), "gc_seconds": gc_s})
    return rows


def thresholds(rows) -> list[dict]:
    """ε*/τ per (target, method, seed): the smallest grid ratio from which every larger grid point reaches the target
    (``None`` if the largest does not; ``below_grid`` if even the smallest does)."""
    out = []
    for key in sorted({(r["target"], r.get("method", "GC"), r["seed"]) for r in rows}, key=str):
        pts = sorted((r["eps_ratio"], r["reaches"]) for r in rows if (r["target"], r.get("method", "GC"), r["seed"]) == key)
        star = None
        for ratio, ok in reversed(pts):
            if not ok:
                break
            star = ratio
        out.append({"target": key[0], "method": key[1], "seed": key[2], "eps_star_over_tau": star, "below_grid": star == pts[0][0]})
    return out


def summary(rows) -> list[dict]:
    """Per (target, method): ε*/τ mean, std (ddof 0), min, max over seeds (which vary GC's initial poisons; the
    construction has none), with τ, the exact threshold of the fixed-label family over τ, and GC's dead share at the
    largest ε_d; seeds whose ε* lies above the grid are counted apart."""
    th, out = thresholds(rows), []
    for name, method in dict.fromkeys((r["target"], r.get("method", "GC")) for r in rows):
        mine = [r for r in rows if r["target"] == name and r.get("method", "GC") == method]
        first, top = mine[0], max(r["eps_ratio"] for r in mine)
        vals = [t["eps_star_over_tau"] for t in th if t["target"] == name and t["method"] == method]
        ok = np.array([v for v in vals if v is not None], dtype=float)
        dead = [r["dead_frac"] for r in mine if r["eps_ratio"] == top and r.get("dead_frac") is not None]
        res_top = [r["residual_rel"] for r in mine if r["eps_ratio"] == top and r.get("residual_rel") is not None]
        out.append({"target": name, "method": method, "tau": first["tau"], "exact_over_tau": first["exact_over_tau"],
                    "target_test_acc": first["target_test_acc"], "seeds": [t["seed"] for t in th if t["target"] == name and t["method"] == method],
                    "eps_star_over_tau": vals, "mean": float(ok.mean()) if len(ok) else None,
                    "std": float(ok.std()) if len(ok) else None, "min": float(ok.min()) if len(ok) else None,
                    "max": float(ok.max()) if len(ok) else None, "n_above_grid": int(sum(v is None for v in vals)),
                    "residual_at_top": float(np.mean(res_top)) if res_top else None,
                    "dead_frac_at_top": float(np.mean(dead)) if dead else None})
    return out


def run(profile="cpu", dataset: str = "mnist17", *, data_root: str | None = None) -> dict:
    """The sweep of ``SIZES[profile]`` on ``dataset`` loaded for ``profile`` (the embedded MNIST-5k at smoke / cpu,
    ``data_root`` at paper): ``{"rows", "summary", "separability", "criterion", "size", ...}``."""
    from .experiments import get_profile, load_for_profile

    prof = get_profile(profile)
    cfg, ds = SIZES[prof.name], load_for_profile(dataset, prof, data_root)
    t0 = time.perf_counter()
    rows = sweep(ds, make_targets(ds, cfg["targets"]), cfg["grid"], cfg["seeds"], cfg["epochs"])
    return {"size": prof.name, "dataset": dataset, "n_train": len(ds.x_train),
            "config": {k: [list(t) for t in v] if k == "targets" else v for k, v in cfg.items()},
            "criterion": {"RESIDUAL_RTOL": RESIDUAL_RTOL, "REFIT_RTOL": REFIT_RTOL}, "seconds": time.perf_counter() - t0,
            "separability": separability(ds.x_train, ds.y_train.numpy()), "summary": summary(rows), "rows": rows}


def plot(rows, axes=None):
    """Fig. 2 made quantitative: residual/‖g(μ)‖ and refit distance/‖w̃‖ against ε_d/τ (log-log), one colour per
    target; GC solid (one line per seed), the construction dashed with squares, Eq. (18)'s floor below τ dotted (no
    poisons get lower), the criterion's tolerances grey, τ (ratio 1) black, each GC seed's ε* as a triangle."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    th = [t for t in thresholds(rows) if t["method"] == "GC"]
    for k, name in enumerate(dict.fromkeys(r["target"] for r in rows)):
        col, mine = f"C{k}", [r for r in rows if r["target"] == name]
        for ax, key, tol in zip(axes, ("residual_rel", "refit_rel"), (RESIDUAL_RTOL, REFIT_RTOL)):
            for i, seed in enumerate(sorted({r["seed"] for r in mine if r["method"] == "GC"})):
                pts = sorted((r["ratio_realised"], r[key]) for r in mine if r["method"] == "GC" and r["seed"] == seed)
                ax.plot(*zip(*pts), "o-", color=col, alpha=0.7, ms=3, label=f"{name}: GC" if i == 0 else None)
            pts = sorted((r["ratio_realised"], r[key]) for r in mine if r["method"] == "construction" and r[key] is not None)
            if pts:
                ax.plot(*zip(*pts), "s--", color=col, ms=4, mfc="none", label=f"{name}: construction")
            if key == "residual_rel":
                fl = sorted((r["ratio_realised"], r["floor_rel"]) for r in mine if r["method"] == "construction" and r["floor_rel"] > 0)
                if fl:
                    ax.plot(*zip(*fl), ":", color=col, lw=1.5, label=f"{name}: Eq. (18) floor" if k == 0 else None)
            for t in th:
                if t["target"] == name and t["eps_star_over_tau"] is not None:
                    ax.plot(t["eps_star_over_tau"], tol, marker="v", color=col, ms=9, ls="none")
            ax.axhline(tol, ls="--", color="grey", lw=0.8)
    for ax, lab in zip(axes, ("‖g(μ) + ε_d g(ν̂)‖ / ‖g(μ)‖", "‖w̃_refit − w̃‖ / ‖w̃‖  (scikit-learn refit)")):
        ax.axvline(1.0, color="k", lw=1)
        ax.set(xscale="log", yscale="log", xlabel="ε_d / τ", ylabel=lab)
    axes[0].legend(fontsize=7)
    return axes


if __name__ == "__main__":  # python -m poisonlib.transition [profile] [out.json]
    torch.set_num_threads(1)
    out = run(sys.argv[1] if len(sys.argv) > 1 else "cpu")
    with open(sys.argv[2] if len(sys.argv) > 2 else f"transition_{out['size']}.json", "w") as fh:
        json.dump(out, fh, indent=1, default=float)
    print(json.dumps({k: out[k] for k in ("seconds", "separability", "summary")}, indent=1, default=float))
