"""Sever (Diakonikolas et al., 2019): filter the points whose gradients are outliers.

At the current model w, stack the per-example gradients g_i = ∇_w ℓ(z_i; w) into
a matrix G (n × p), centre it, Ĝ = G − mean_i g_i, and take its top right
singular vector v. The outlier score of z_i is s_i = ⟨ĝ_i, v⟩²: poisons that
pull the gradient in a common direction dominate the top singular direction.
Sever removes the points with the largest scores and retrains; ``rounds``
repeats score → remove → retrain.
"""

from __future__ import annotations

import torch

from .._validation import check_int
from ..grads import per_example_gradients
from .influence import remove_top


def sever_scores(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, task: str, *, chunk: int = 1024) -> torch.Tensor:
    """Outlier scores s_i = ⟨g_i − ḡ, v⟩² with v the top right singular vector of the centred
    per-example gradient matrix (computed with ``torch.func.vmap``)."""
    dev = next(model.parameters()).device  # the data follow the model
    g = per_example_gradients(model, x.to(dev), y.to(dev), task, chunk=chunk, dtype=torch.float64)
    g -= g.mean(dim=0, keepdim=True)  # in place: one n x p float64 matrix at the peak
    # top right singular vector via a randomised low-rank SVD (G is n x p, p may be large),
    # seeded so that the scores do not depend on the global random state
    with torch.random.fork_rng(devices=[g.device] if g.is_cuda else []):
        torch.manual_seed(0)
        _, _, v = torch.svd_lowrank(g, q=min(6, min(g.shape)), niter=6)
    return (g @ v[:, 0]) ** 2


def sever(model, x, y, task: str, remove_frac: float, *, rounds: int = 1, retrain=None):
    """Run Sever for ``rounds`` rounds, each removing ``remove_frac`` of the points still kept.

    ``model``: the model trained on (x, y); ``retrain(x_kept, y_kept) -> model`` trains a
    fresh model between rounds and at the end (``None``: score once, no retraining).
    Returns ``(keep, model)``: a boolean mask over the rows of ``x`` and the last model.
    """
    rounds = check_int("rounds", rounds, minimum=1)
    keep = torch.ones(len(x), dtype=torch.bool)
    for _ in range(rounds):
        idx = keep.nonzero().squeeze(1)
        scores = sever_scores(model, x[idx], y[idx], task)
        keep[idx[~remove_top(scores, remove_frac)]] = False
        if retrain is not None:
            model = retrain(x[keep], y[keep])
        elif rounds > 1:
            break
    return keep, model
