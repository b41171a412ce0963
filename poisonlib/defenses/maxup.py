"""MaxUp (Gong et al., 2021): train on the worst case over random augmentations.

For every training example z_i = (x_i, y_i), draw m random perturbations
x_i^(1..m) ~ P(· | x_i) and minimise the *largest* of their losses,

.. math::  \\min_w \\; \\frac1n \\sum_i \\max_{k \\le m} \\ell\\big((x_i^{(k)}, y_i); w\\big),

a light-weight adversarial training that smooths the loss around each point
(App. C.10 of the paper: "generates a set of augmented data with random
perturbations and then aims at minimizing the worst case loss"). Our
perturbation is Gaussian pixel noise of standard deviation ``sigma``, clipped
to the data's box. Unlike Sever and Influence it removes nothing: it trains a
more robust model on the whole (poisoned) set.
"""

from __future__ import annotations

import torch

from .._validation import check_int, check_positive
from ..models import loss_fn
from ..train import train


def maxup_objective(task: str, *, m: int = 4, sigma: float = 0.1, box: tuple[float, float] | None = None, seed: int = 0):
    """``objective(model, xb, yb)`` = mean over the batch of the max over ``m`` noisy copies of the
    per-example loss (a seeded generator draws the noise, so training stays deterministic)."""
    m = check_int("m", m, minimum=1)
    sigma = check_positive("sigma", sigma, allow_zero=True)
    loss = loss_fn(task, reduction="none")
    gen = torch.Generator().manual_seed(seed)

    def objective(model, xb, yb):
        noise = torch.randn((m, *xb.shape), generator=gen).to(xb.device, xb.dtype) * sigma
        xs = xb.unsqueeze(0) + noise
        if box is not None:
            xs = xs.clamp(*box)
        per = loss(model(xs.reshape(-1, *xb.shape[1:])), yb.repeat(m)).reshape(m, len(xb))
        return per.max(dim=0).values.mean()

    return objective


def maxup_train(model, x, y, task: str, *, m: int = 4, sigma: float = 0.1, box=None, seed: int = 0, **train_options):
    """Train ``model`` in place with MaxUp on (x, y); ``train_options`` go to
    :func:`poisonlib.train.train` (epochs, lr, batch_size, ...). Returns ``(model, history)``."""
    obj = maxup_objective(task, m=m, sigma=sigma, box=box, seed=seed)
    return train(model, x, y, task, seed=seed, objective=obj, desc="maxup", **train_options)
