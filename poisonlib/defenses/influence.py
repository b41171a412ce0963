"""Influence-function sanitisation (Koh & Liang, 2017).

Removing training point z_i from the mean training loss L(w) = (1/n) Σ ℓ(z_j; w)
(+ ``l2``/2 ‖w‖²) moves the minimiser by Δw ≈ (1/n) H⁻¹ ∇ℓ(z_i; ŵ), with H
the Hessian of that objective at ŵ, and changes the validation loss by

.. math::  \\Delta L_{val}(i) \\approx \\tfrac1n \\, \\nabla L_{val}(\\hat w)^\\top H^{-1} \\nabla \\ell(z_i; \\hat w).

A point whose removal *lowers* the validation loss is harmful; the defense removes
the fraction with the most negative ΔL_val. H⁻¹v is exact (dense Hessian, small
models such as LR) or by conjugate gradient on Hessian-vector products
(``torch.func``, any model; H must be positive definite: use ``l2 > 0`` for
non-convex models).
"""

from __future__ import annotations

import copy

import torch
from torch.func import grad, jvp

from .._compat import quiet_forward_ad
from .._validation import PoisonlibError, check_choice, check_int, check_positive
from ..grads import conjugate_gradient, flat, flat_loss, mean_gradient, per_example_gradients, target_params

METHODS = ("auto", "exact", "cg")


def remove_top(scores: torch.Tensor, frac: float) -> torch.Tensor:
    """Boolean keep-mask (on the CPU) dropping the ``round(frac · n)`` largest ``scores``."""
    frac = check_positive("remove_frac", frac, allow_zero=True)
    if frac >= 1:
        raise PoisonlibError(f"remove_frac must be < 1, got {frac}")
    k = int(round(frac * len(scores)))
    keep = torch.ones(len(scores), dtype=torch.bool)
    if k:
        keep[torch.topk(scores, k).indices.cpu()] = False
    return keep


def inverse_hvp(model, x, y, task: str, v: torch.Tensor, *, l2: float = 0.0, method: str = "auto", cg_iters: int = 200, tol: float = 1e-10):
    """H⁻¹ v for the Hessian H of the mean training loss (+ l2/2 ‖w‖²) at ``model``'s parameters."""
    check_choice("method", method, METHODS)
    params = target_params(model)
    names, shapes = list(params), [tuple(p.shape) for p in params.values()]
    theta = flat(params).detach().double()
    m = copy.deepcopy(model).double()
    f = flat_loss(m, names, shapes, x.double(), y if task == "multiclass" else y.double(), task, l2)
    v = v.double()
    quiet_forward_ad()  # both branches use forward AD
    if method == "exact" or (method == "auto" and theta.numel() <= 2000):
        h = torch.func.hessian(f)(theta)
        out = torch.linalg.solve(h, v)
    else:
        hvp = lambda u: jvp(grad(f), (theta,), (u,))[1]  # noqa: E731
        out = conjugate_gradient(hvp, v, check_int("cg_iters", cg_iters, minimum=1), tol)
    return out


def influence_scores(model, x, y, task: str, x_val, y_val, *, l2: float = 0.0, method: str = "auto", cg_iters: int = 200) -> torch.Tensor:
    """Predicted change ΔL_val(i) of the validation loss when training point i is removed
    (most negative = most harmful). ``model`` must be (near) the minimiser of the mean
    training loss + l2/2 ‖w‖² on (x, y). The data follow the model's device."""
    dev = next(model.parameters()).device
    x, y, x_val, y_val = x.to(dev), y.to(dev), x_val.to(dev), y_val.to(dev)
    g_val = flat(mean_gradient(model, x_val, y_val, task)).double()
    s = inverse_hvp(model, x, y, task, g_val, l2=l2, method=method, cg_iters=cg_iters)
    # g_i · s chunk by chunk: the n x p matrix of per-example gradients is never held whole
    return torch.cat([per_example_gradients(model, x[a : a + 4096], y[a : a + 4096], task, dtype=torch.float64) @ s
                      for a in range(0, len(x), 4096)]) / len(x)
