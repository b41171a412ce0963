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
from .._meter import capped, filled
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


def exact_hessian(model, names, shapes, x, y, task: str, l2: float, theta: torch.Tensor, *, chunk: int | None = None) -> torch.Tensor:
    """The dense Hessian H = (1/n) Σ_i ∇²ℓ(z_i; θ) + l2·I of the mean training loss, summed over
    chunks of rows: H = Σ_c (n_c/n) H_c, with H_c the Hessian of the chunk's own mean loss + l2/2 ‖θ‖²
    (the weights sum to one, so l2 is counted once). ``torch.func.hessian`` pushes p tangents through
    every row at once (about 32·p·k bytes a row for k outputs: 18 GiB for the CNN's last layer, p =
    1,290, on 61,800 points), so ``chunk`` (default: rows for ~1 GiB) bounds the memory; the time is
    the same."""
    n = len(x)
    if chunk is None:
        with torch.no_grad():
            k = model(x[:1]).numel()
        chunk = max(1, 2**30 // (32 * theta.numel() * max(1, k)))
    h = torch.zeros(theta.numel(), theta.numel(), dtype=theta.dtype, device=theta.device)
    for a in capped(range(0, n, chunk), "Influence Hessian chunks"):
        xc, yc = x[a : a + chunk], y[a : a + chunk]
        h += (len(xc) / n) * torch.func.hessian(flat_loss(model, names, shapes, xc, yc, task, l2))(theta)
    return h


def inverse_hvp(model, x, y, task: str, v: torch.Tensor, *, l2: float = 0.0, method: str = "auto", cg_iters: int = 200, tol: float = 1e-10):
    """H⁻¹ v for the Hessian H of the mean training loss (+ l2/2 ‖w‖²) at ``model``'s parameters."""
    check_choice("method", method, METHODS)
    params = target_params(model)
    names, shapes = list(params), [tuple(p.shape) for p in params.values()]
    theta = flat(params).detach().double()
    m = copy.deepcopy(model).double()
    x, y = x.double(), (y if task == "multiclass" else y.double())
    v = v.double()
    quiet_forward_ad()  # both branches use forward AD
    if method == "exact" or (method == "auto" and theta.numel() <= 2000):
        out = torch.linalg.solve(exact_hessian(m, names, shapes, x, y, task, l2, theta), v)
    else:
        f = flat_loss(m, names, shapes, x, y, task, l2)
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
    # g_i · s chunk by chunk: the n x p matrix of per-example gradients is never held whole; under a dry run's
    # meter only the first chunks are scored and the rest stay zero, as in an evaluation (poisonlib._meter)
    scores = filled(len(x), 4096, lambda a, b: per_example_gradients(model, x[a:b], y[a:b], task, dtype=torch.float64) @ s,
                    "Influence score chunks")
    return (scores if scores is not None else s.new_zeros(0)) / len(x)
