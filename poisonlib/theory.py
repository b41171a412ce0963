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
