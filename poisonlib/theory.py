"""Model poisonability and the Lambert-W thresholds τ (Sec. 3, App. A).

For a linear softmax model h = Wᵀx (+ b) trained with cross-entropy, taking the
trace of Thm. 3's condition gives (Eq. 27, 28)

.. math::  0 = (1-\\lambda)\\, g(\\mu) + \\lambda\\, g(\\nu), \\qquad
   g(\\nu) = \\mathbb E_{(x,y)\\sim\\nu} \\langle h, p - y \\rangle = \\langle W, G(\\nu) \\rangle,

and App. A proves the tight bound g(ν) ≥ -W((c-1)/e) (Lambert's W). Hence a
target W can be reached by poisoning only if

.. math::  \\varepsilon_d \\ge \\tau(c) = \\langle W, G(\\mu) \\rangle / \\mathscr W\\big(\\tfrac{c-1}{e}\\big)  \\quad \\text{(Eq. 29)},

and for binary logistic regression τ(2) = ⟨w, g(μ)⟩ / W(1/e) is necessary and
sufficient (Eq. 20). Because ⟨W, G(μ)⟩ = E_μ⟨h, p - y⟩ depends only on the
logits, the same numbers apply to the last layer of any network (Thm. 4, a
necessary condition). A bias is a weight on the constant feature 1; including
it keeps τ a valid (necessary) threshold.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.special import lambertw

from ._validation import PoisonlibError, check_int, check_positive


def eps_to_lambda(eps_d: float) -> float:
    """λ = ε_d / (1 + ε_d), the poisoned fraction of the mixture (Sec. 3)."""
    eps_d = check_positive("eps_d", eps_d, allow_zero=True)
    return eps_d / (1.0 + eps_d)


def lambda_to_eps(lam: float) -> float:
    """ε_d = λ / (1 - λ), the inverse of :func:`eps_to_lambda` (λ in [0, 1))."""
    lam = float(lam)
    if not 0.0 <= lam < 1.0:
        raise PoisonlibError(f"lambda must lie in [0, 1), got {lam!r}")
    return lam / (1.0 - lam)


def lambert_margin_bound(c: int = 2) -> float:
    """W((c-1)/e): minus the infimum of ⟨h, softmax(h) - y⟩ over logits h ∈ ℝ^c (App. A, Eq. A.8-A.12).

    c = 2 gives W(1/e) ≈ 0.2785, the infimum of -t/(1+eᵗ) in Eq. (18).
    """
    c = check_int("number of classes c", c, minimum=2)
    return float(lambertw((c - 1) / math.e).real)


def _to_numpy(a) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().double().numpy()
    return np.asarray(a, dtype=np.float64)


def margin_inner_product(logits, y) -> float:
    """⟨W, G(μ)⟩ = E_μ ⟨h, p - y⟩ (Eq. 28) from logits ``h`` and integer labels ``y``.

    ``logits`` of shape (n, c) are multiclass; shape (n,) or (n, 1) is a single
    binary logit h with p = σ(h), which equals the 2-class softmax with logits (0, h).
    """
    h, y = _to_numpy(logits), _to_numpy(y).astype(np.int64)
    if h.ndim == 1 or h.shape[1] == 1:
        h = h.reshape(-1)
        return float(np.mean(h * (1.0 / (1.0 + np.exp(-h)) - y)))
    hs = h - h.max(axis=1, keepdims=True)
    p = np.exp(hs)
    p /= p.sum(axis=1, keepdims=True)
    onehot = np.eye(h.shape[1])[y]
    return float(np.mean(np.sum(h * (p - onehot), axis=1)))


def tau_from_logits(logits, y, num_classes: int | None = None) -> dict:
    """Thresholds of Eq. (20) and (29) from a target model's logits on the clean training data.

    Returns ``{"inner": ⟨W, G(μ)⟩, "tau2": τ(2), "tauc": τ(c), "c": c}``.
    τ(2) ≥ τ(c); a negative inner product means every ε_d > 0 suffices
    (thresholds reported as 0, Cor. 2).
    """
    h = _to_numpy(logits)
    c = num_classes or (2 if h.ndim == 1 or h.shape[1] == 1 else h.shape[1])
    inner = margin_inner_product(h, y)
    pos = max(inner, 0.0)
    return {"inner": inner, "tau2": pos / lambert_margin_bound(2), "tauc": pos / lambert_margin_bound(c), "c": int(c)}


def tau_linear(weight, bias, X, y, num_classes: int | None = None) -> dict:
    """τ(2) and τ(c) of the linear model h = X Wᵀ + b (numpy or torch inputs), Eq. (20), (29).

    ``weight`` is (c, d) (or (d,) / (1, d) for a binary single-logit model),
    ``bias`` (c,) or None, ``X`` (n, d), ``y`` integer labels.
    """
    W = _to_numpy(weight)
    X = _to_numpy(X).reshape(len(_to_numpy(y)), -1)
    h = X @ (W.reshape(1, -1) if W.ndim == 1 else W).T
    if bias is not None:
        h = h + _to_numpy(bias).reshape(1, -1)
    return tau_from_logits(h, y, num_classes)


def tau_model(model: torch.nn.Module, x, y, task: str, *, device="auto") -> dict:
    """τ(2), τ(c) of any classifier whose last layer is linear (Thm. 4: the
    last-layer condition is necessary for the whole network)."""
    from .train import outputs

    if task == "regression":
        raise PoisonlibError("tau is defined for classifiers; least squares is poisonable at any eps_d > 0 (Ex. 1)")
    return tau_from_logits(outputs(model, x, device=device), y)


# --------------------------------------------------------------------------- binary margin losses (Thm. 2, Cor. 1, 2)
def logistic_loss(t):
    """l(t) = log(1 + e^{-t}) of Eq. (17), as a function of the margin t = wᵀx̃."""
    return np.logaddexp(0.0, -np.asarray(t, dtype=np.float64))


def exponential_loss(t):
    """l(t) = e^{-t} (AdaBoost)."""
    return np.exp(-np.asarray(t, dtype=np.float64))


def hinge_loss(t):
    """l(t) = max(0, 1 - t) (SVM)."""
    return np.maximum(0.0, 1.0 - np.asarray(t, dtype=np.float64))


def dichotomy_loss(t):
    """The smooth loss of Ex. 4, Eq. (A.7): -(4t + 1) e^{-2} for t <= -1/2,
    exp(1/t) on [-1/2, 0), 0 for t >= 0. Here a = 0 and b = ∞."""
    t = np.asarray(t, dtype=np.float64)
    mid = np.exp(1.0 / np.where(t < 0, t, -1.0))  # exp(1/t) for t < 0, a dummy elsewhere
    return np.where(t <= -0.5, -(4 * t + 1) * math.exp(-2), np.where(t < 0, mid, 0.0))


def _derivative(loss, t, h: float = 1e-6):
    t = np.asarray(t, dtype=np.float64)
    return (loss(t + h) - loss(t - h)) / (2 * h)


def margin_endpoints(loss, t_range: tuple[float, float] = (-50.0, 50.0), n_grid: int = 200_001, *, derivative=None) -> tuple[float, float]:
    """Endpoints a = inf t·l'(t) and b = sup t·l'(t) over margins t (Eq. 14, 15, 21).

    ``loss`` is any 1-D margin loss (a vectorised function of t); l' is taken by
    central differences unless ``derivative`` is given. The extremes are found on
    a dense grid over ``t_range`` and refined with ``scipy.optimize``; a value
    still growing at the edge of the range is reported as ±inf.
    """
    from scipy.optimize import minimize_scalar

    dl = derivative or (lambda t: _derivative(loss, t))
    f = lambda t: np.asarray(t) * dl(t)  # noqa: E731
    lo, hi = t_range
    t = np.linspace(lo, hi, n_grid)
    v = f(t)
    out = []
    for sign in (1.0, -1.0):  # +1: infimum, -1: supremum
        i = int(np.argmin(sign * v))
        if i in (0, n_grid - 1) and abs(v[i]) > 1e-8:
            out.append(-sign * math.inf)
            continue
        bracket = (t[max(i - 1, 0)], t[min(i + 1, n_grid - 1)])
        res = minimize_scalar(lambda s: sign * float(f(s)), bounds=bracket, method="bounded", options={"xatol": 1e-12})
        out.append(float(min(sign * v[i], res.fun) * sign))
    return out[0], out[1]


#: Closed forms of (a, b) for the standard margin losses (X = R^d unbounded).
MARGIN_ENDPOINTS = {
    "logistic": (-float(lambertw(1 / math.e).real), math.inf),
    "exponential": (-1 / math.e, math.inf),
    "hinge": (-1.0, math.inf),
    "dichotomy": (0.0, math.inf),
}


def lambda_threshold(inner: float, a: float, b: float) -> float:
    """Smallest poisoned fraction λ of Eq. (16):
    max{ ⟨w,g(μ)⟩ / (⟨w,g(μ)⟩ - a), -⟨w,g(μ)⟩ / (b - ⟨w,g(μ)⟩) } (clipped to [0, 1]).

    ``inner`` = ⟨w, g(μ)⟩ ≠ 0; ``a <= 0 <= b`` are the endpoints of Eq. (21).
    A value of 1 means no λ < 1 suffices.
    """
    terms = []
    if inner > 0:
        terms.append(1.0 if a >= 0 else inner / (inner - a))
    elif inner < 0:
        terms.append(1.0 if b <= 0 else -inner / (b - inner))
    else:
        return 0.0  # Remark 1: the degenerate case
    return float(min(max(terms[0], 0.0), 1.0))


def eps_threshold(inner: float, a: float, b: float) -> float:
    """The same threshold as an ε_d: τ = λ*/(1 - λ*) (inf when λ* = 1).

    For the logistic loss and ⟨w, g(μ)⟩ > 0 this is Eq. (20): τ = ⟨w, g(μ)⟩ / W(1/e).
    """
    lam = lambda_threshold(inner, a, b)
    return math.inf if lam >= 1.0 else lambda_to_eps(lam)


def cross_entropy_infimum(c: int) -> float:
    """inf over logits h ∈ ℝ^c and one-hot y of ⟨h, softmax(h) - y⟩ = -W((c-1)/e) (App. A, A.8-A.12)."""
    return -lambert_margin_bound(c)


def reduced_margin_function(t, c: int):
    """(c-1) t e^t / (1 + (c-1) e^t): ⟨h, p - y⟩ when all c-1 wrong logits exceed the
    right one by t (the symmetric case of Eq. A.10-A.11); its minimum is -W((c-1)/e)."""
    t = np.asarray(t, dtype=np.float64)
    return (c - 1) * t * np.exp(t) / (1 + (c - 1) * np.exp(t))


# --------------------------------------------------------------------------- constructions
def binary_poisoning_distribution(w, g_mu, eps_d: float):
    """Thm. 2 / Eq. (20) made constructive for the logistic loss on x̃ = y x ∈ ℝ^d.

    For ε_d >= τ = ⟨w, g(μ)⟩ / W(1/e) (and ⟨w, g(μ)⟩ > 0) returns a two-point
    poisoning distribution on the line of g(μ) (the image of Thm. 2's map T):
    points x̃_k = (t_k / ⟨w, g(μ)⟩) g(μ) with margins t_1 = t* = 1 + W(1/e)
    (the minimiser of t l'(t)) and t_2 = 0, weights (τ/ε_d, 1 - τ/ε_d), so that
    (1 - λ) g(μ) + λ g(ν) = 0 exactly. Returns ``(points (2, d), weights (2,))``.
    Raises when ε_d < τ: no distribution exists (Cor. 2).
    """
    w, g = np.asarray(w, dtype=np.float64), np.asarray(g_mu, dtype=np.float64)
    inner = float(w @ g)
    W1 = lambert_margin_bound(2)
    if inner <= 0:
        raise PoisonlibError(f"<w, g(mu)> = {inner:.3g} <= 0: use Cor. 2's other branch (any eps_d > 0 works)")
    tau = inner / W1
    if eps_d < tau:
        raise PoisonlibError(f"eps_d = {eps_d} < tau = {tau:.6g}: no poisoning distribution exists (Cor. 2)")
    t_star = 1.0 + W1  # argmin_t -t / (1 + e^t): W(1/e) = t*/(1 + e^{t*}) and t* = 1 + W(1/e)
    pts = np.stack([t_star / inner * g, 0.0 * g])
    return pts, np.array([tau / eps_d, 1.0 - tau / eps_d])


def logistic_gradient(w, xt, weights=None):
    """g(ν) = E_ν[-x̃ / (1 + exp(wᵀx̃))] for the logistic loss on label-absorbed points x̃ (Ex. 2)."""
    w, xt = np.asarray(w, dtype=np.float64), np.atleast_2d(np.asarray(xt, dtype=np.float64))
    coef = -1.0 / (1.0 + np.exp(xt @ w))
    wts = np.full(len(xt), 1.0 / len(xt)) if weights is None else np.asarray(weights, dtype=np.float64)
    return (wts * coef) @ xt


def least_squares_poison(X, y, w, eps_d: float, *, fit_intercept: bool = True):
    """Ex. 1 made constructive: a poison set that makes ``w`` the *exact*
    least-squares solution of clean ∪ poisons, for any ε_d > 0.

    The loss is ½(y - w̃ᵀx̃)² with x̃ = (x, 1) when ``fit_intercept``; ``w``
    includes the intercept last. With G = Σ_clean (w̃ᵀx̃_i - y_i) x̃_i (the summed
    clean gradient), n_p = max(1, round(ε_d n)) copies of one point x̃_p ∥ G with
    residual r = w̃ᵀx̃_p - y_p chosen so that n_p r x̃_p = -G cancel it. Returns
    ``(X_p (n_p, d), y_p (n_p,))``.
    """
    X, y, w = np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.float64), np.asarray(w, dtype=np.float64)
    eps_d = check_positive("eps_d", eps_d)
    Xt = np.hstack([X, np.ones((len(X), 1))]) if fit_intercept else X
    G = Xt.T @ (Xt @ w - y)
    n_p = max(1, int(round(eps_d * len(X))))
    if fit_intercept:
        if abs(G[-1]) < 1e-12:
            raise PoisonlibError("the clean gradient has no intercept component; perturb w or fit without intercept")
        xp = G / G[-1]  # last coordinate 1
    else:
        xp = G / max(np.linalg.norm(G), 1e-300)
    r = -(G @ xp) / (n_p * (xp @ xp))  # n_p r x̃_p = -G since x̃_p ∥ G
    yp = xp @ w - r
    Xp = np.repeat(xp[None, :-1] if fit_intercept else xp[None, :], n_p, axis=0)
    return Xp, np.full(n_p, yp)


# --------------------------------------------------------------------------- App. B: Frank-Wolfe over measures
def _simplex_least_squares(A, b, weight: float = 1e4):
    """min_q ‖A q - b‖ over the probability simplex, by NNLS with the row Σq = 1 weighted heavily."""
    from scipy.optimize import nnls

    scale = weight * max(1.0, float(np.abs(A).max()), float(np.abs(b).max()))
    q, _ = nnls(np.vstack([A, scale * np.ones((1, A.shape[1]))]), np.concatenate([b, [scale]]), maxiter=50 * A.shape[1])
    return q / q.sum()


def frank_wolfe(g_mu, candidate_grads, eps_d: float, *, iters: int = 200, corrective: bool = True, tol: float = 1e-10) -> dict:
    """Frank-Wolfe for the measure problem (B.1): min_ν ½‖g(μ) + ε_d g(ν)‖² over
    distributions ν on a finite candidate set with per-point gradients
    ``candidate_grads`` (K, p).

    Each step solves the linear subproblem (B.4)-(B.5): the candidate k minimising
    ⟨g(μ) + ε_d g(ν_t), g_k⟩ joins the support (B.3). ``corrective=True`` (fully
    corrective Frank-Wolfe) then re-optimises the weights on the support, an
    NNLS problem on the simplex; ``False`` takes the exact line-search step of
    the quadratic. After t steps ν has at most t + 1 support points. Stops when
    the Frank-Wolfe gap falls below ``tol``. Returns the weights ``q`` (K,), the
    ``residual`` history ‖g(μ) + ε_d g(ν_t)‖, the ``gap`` history and the ``support`` size.
    """
    g_mu = _to_numpy(g_mu).reshape(-1)
    Gk = _to_numpy(candidate_grads).reshape(len(candidate_grads), -1)
    eps = check_positive("eps_d", eps_d)
    q = np.zeros(len(Gk))
    q[int(np.argmin(Gk @ g_mu))] = 1.0
    hist, gaps = [], []
    for t in range(check_int("iters", iters, minimum=1)):
        g_nu = q @ Gk
        r = g_mu + eps * g_nu
        hist.append(float(np.linalg.norm(r)))
        k = int(np.argmin(Gk @ r))
        gaps.append(float(eps * r @ (g_nu - Gk[k])))  # upper bound on objective - optimum
        if gaps[-1] <= tol:
            break
        if corrective:
            q[k] = max(q[k], 1e-12)
            active = np.flatnonzero(q > 0)
            q = np.zeros(len(Gk))
            q[active] = _simplex_least_squares(eps * Gk[active].T, -g_mu)
        else:
            d = Gk[k] - g_nu
            dd = eps * eps * float(d @ d)
            eta = 0.0 if dd == 0 else float(np.clip(-eps * float(r @ d) / dd, 0.0, 1.0))
            q *= 1.0 - eta
            q[k] += eta
    hist.append(float(np.linalg.norm(g_mu + eps * (q @ Gk))))
    return {"q": q, "residual": hist, "gap": gaps, "support": int((q > 1e-12).sum())}


def tau_last_layer(model: torch.nn.Module, x, y, *, num_classes: int | None = None) -> dict:
    """Thm. 4 explicitly: penultimate features φ(x; u) of ``model``, then
    :func:`tau_linear` of its last layer (W, b) on them (A.16, A.17). Equal to
    :func:`tau_model` on the logits, since ⟨W, G_1(μ)⟩ = E⟨h, p - y⟩."""
    from .models import split_last_layer

    phi, last = split_last_layer(model)
    model.eval()
    with torch.no_grad():
        feats = torch.cat([phi(x[i : i + 4096]) for i in range(0, len(x), 4096)])
    return tau_linear(last.weight, last.bias, feats, y, num_classes)
