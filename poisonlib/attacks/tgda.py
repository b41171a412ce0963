"""Total-Gradient Descent-Ascent (TGDA), the baseline of Lu, Yu & Kamath (2022),
"Indiscriminate data poisoning attacks on neural networks" (TMLR; lu2022indiscriminate).

Data poisoning as a Stackelberg game (the bilevel problem behind Eq. 2 of the
paper). The follower (learner) minimises its mean training loss on clean data
μ (n points) and the n_p = round(ε_d n) poisons ν̂,

.. math::  f(w; x_p) = \\tfrac{1}{n + n_p} \\Big[\\sum_{z \\in \\mu} \\ell(z; w) + \\sum_{j} \\ell((x_j, y_j); w)\\Big],

and the leader (attacker) maximises the follower's loss L_val(w) on clean
validation data. With w* = w*(x_p) a minimiser of f, the implicit function
theorem gives the leader's *total* gradient

.. math::  \\frac{d L_{val}(w^*)}{d x_p} = -\\,\\partial_{x_p} \\langle \\nabla_w f(w; x_p), v \\rangle,
   \\qquad v = (H + \\text{damping}\\, I)^{-1} \\nabla_w L_{val}(w), \\quad H = \\nabla^2_w f,

where v comes from ``cg_iters`` conjugate-gradient iterations on
Hessian-vector products (``torch.func`` forward-over-reverse). Each round of
:func:`tgda` (a) moves the follower ``follower_steps`` full-batch gradient
steps on f, warm-started from the previous round (first from the pretrained
clean model), then (b) takes one ascent step of the leader,
x_p ← Proj_box(x_p + leader_lr · sign(dL_val/dx_p)).

Differences from the original (see ``official-code-notes`` §3):

* the leader's variables are **the poison features themselves** ("poison points
  as leader"); the original leader is a generator MLP (785→784→784→784, tanh)
  mapping (label, clean image) to the poison, whose weights take the steps;
* the leader's step is a signed-gradient (ℓ∞-steepest) ascent step: each
  poison's total gradient scales as 1/(n + n_p), so a plain step of fixed size
  would depend on n, while a sign step moves every feature by ``leader_lr``
  (in feature units, e.g. pixels in [0, 1]) — the usual choice for optimising
  inputs (FGSM/PGD, Witches' Brew);
* ``damping`` > 0 (the original uses λ = 0) keeps the CG system positive
  definite for non-convex followers; with damping the total gradient is exact
  for the follower objective f + damping/2 ‖w‖² at its minimiser;
* full batch: the follower sees all clean points and poisons each step (the
  original uses mini-batches of 1000 with their share of poisons); without
  ``x_val`` the validation set is a seeded 30% of the clean training points,
  which the follower also trains on (as in the original, where the last 30%
  of each batch is the leader's validation data).
"""

from __future__ import annotations

import copy

import torch
from torch.func import functional_call, grad, jvp
from tqdm import tqdm

from .._validation import PoisonlibError, check_finite, check_int, check_positive
from ..grads import conjugate_gradient, flat, flat_loss, target_params
from ..models import loss_fn
from ..train import resolve_device, show_progress
from .gc import GCResult, _init_poisons, n_poison_points

#: Fraction of the clean data used as the leader's validation set when none is given.
VAL_FRACTION = 0.3


def _follower_steps(model, params, x, y, task, steps, lr):
    """``steps`` full-batch gradient steps w ← w − lr ∇_w f(w) on the mean loss over (x, y)."""
    loss = loss_fn(task)
    g = grad(lambda p: loss(functional_call(model, p, (x,)), y))
    for _ in range(steps):
        gs = g(params)
        params = {k: params[k] - lr * gs[k] for k in params}
    return params


def total_gradient(model, params, x_clean, y_clean, x_p, y_p, x_val, y_val, task, *, cg_iters=16, damping=0.01):
    """(dL_val/dx_p, L_val) at follower parameters ``params`` (a dict of tensors).

    dL_val/dx_p = −∂_{x_p}⟨∇_w f(w; x_p), v⟩ with v = (H + damping I)⁻¹ ∇_w L_val
    solved by ``cg_iters`` CG iterations; exact (for the follower objective
    f + damping/2 ‖w‖²) when ``params`` minimise that objective and CG converges.
    """
    loss = loss_fn(task)
    names, shapes = list(params), [tuple(t.shape) for t in params.values()]
    theta = flat(params).detach()
    # ∇_w L_val and L_val at the follower
    p = {k: t.detach().requires_grad_(True) for k, t in params.items()}
    l_val = loss(functional_call(model, p, (x_val,)), y_val)
    g_val = flat(torch.autograd.grad(l_val, list(p.values())))
    # v = (H + damping I)^{-1} ∇_w L_val, H the Hessian of the follower's loss on clean ∪ poisons
    x_all, y_all = torch.cat([x_clean, x_p]), torch.cat([y_clean, y_p])
    f = flat_loss(model, names, shapes, x_all, y_all, task, damping)
    if not bool(g_val.any()):  # a flat validation loss: no direction to push
        return torch.zeros_like(x_p), float(l_val.detach())
    v = conjugate_gradient(lambda u: jvp(grad(f), (theta,), (u,))[1], g_val, cg_iters, 1e-10).detach()
    # only the poisons' share of f depends on x_p: ∂_{x_p} (1/(n+n_p)) Σ_j ⟨∇_w ℓ(z_j; w), v⟩
    x_p = x_p.detach().requires_grad_(True)
    p = {k: t.detach().requires_grad_(True) for k, t in params.items()}
    share = loss_fn(task, reduction="sum")(functional_call(model, p, (x_p,)), y_p) / len(x_all)
    gw = torch.autograd.grad(share, list(p.values()), create_graph=True)
    mixed = torch.autograd.grad(flat(gw) @ v, x_p)[0]
    return -mixed, float(l_val.detach())


def _validation_split(x_clean, y_clean, x_val, y_val, seed):
    if x_val is None and y_val is None:
        gen = torch.Generator().manual_seed(seed + 1)
        idx = torch.randperm(len(x_clean), generator=gen)[: max(1, int(round(VAL_FRACTION * len(x_clean))))]
        return x_clean[idx], y_clean[idx]
    if x_val is None or y_val is None or len(x_val) != len(y_val) or len(x_val) == 0:
        rows = [None if t is None else len(t) for t in (x_val, y_val)]
        raise PoisonlibError(f"give both x_val and y_val with the same, non-zero number of rows (got {rows[0]} and {rows[1]})")
    return x_val, y_val


def tgda(
    model: torch.nn.Module,
    x_clean: torch.Tensor,
    y_clean: torch.Tensor,
    task: str,
    eps_d: float,
    *,
    x_val: torch.Tensor | None = None,
    y_val: torch.Tensor | None = None,
    epochs: int = 100,
    leader_lr: float = 0.01,
    follower_steps: int = 20,
    follower_lr: float = 0.1,
    cg_iters: int = 16,
    damping: float = 0.01,
    box: tuple[float, float] | None = None,
    seed: int = 0,
    device: str = "auto",
    progress: bool | None = None,
) -> GCResult:
    """Run TGDA with the poison features as the leader.

    Parameters
    ----------
    model : the pretrained clean follower (copied; the caller's model is untouched).
        Evaluated in ``eval()`` mode (batch-norm uses its running statistics).
    x_clean, y_clean : clean training data μ (n points).
    task : ``"multiclass"``, ``"binary"`` (or ``"regression"``).
    eps_d : budget ε_d > 0; n_p = round(ε_d n) poisons start from a seeded sample
        of the clean points and keep their labels.
    x_val, y_val : the leader's clean validation data; default a seeded 30% of μ.
    epochs : rounds of (follower steps, one leader step); the original: 200.
    leader_lr : size of the leader's signed ascent step, in feature units.
    follower_steps, follower_lr : gradient steps of the follower per round (original: 20, 0.1).
    cg_iters, damping : CG iterations for (H + damping I)⁻¹ ∇L_val (original: 16, λ = 0).
    box : feature box (lo, hi) the poisons are projected onto, e.g. ``(0, 1)``; ``None``: unbounded.

    Returns
    -------
    GCResult with ``history["val_loss"]`` = L_val of the follower in each round
    (after its steps, before the leader's step).
    """
    n_p = n_poison_points(eps_d, len(x_clean))
    epochs = check_int("epochs", epochs, minimum=0)
    leader_lr = check_positive("leader_lr", leader_lr)
    follower_steps = check_int("follower_steps", follower_steps, minimum=0)
    follower_lr = check_positive("follower_lr", follower_lr)
    cg_iters = check_int("cg_iters", cg_iters, minimum=1)
    damping = check_positive("damping", damping, allow_zero=True)
    check_finite("clean features", x_clean)
    n = len(x_clean)
    dev = resolve_device(device)
    x_val, y_val = _validation_split(x_clean, y_clean, x_val, y_val, seed)
    config = dict(eps_d=float(eps_d), n=n, n_poison=n_p, n_val=len(x_val), epochs=epochs, leader_lr=leader_lr,
                  follower_steps=follower_steps, follower_lr=follower_lr, cg_iters=cg_iters, damping=damping,
                  box=box, seed=seed, leader="poisons", step="sign")

    follower = copy.deepcopy(model).to(dev).eval()
    params = target_params(follower)
    x0, y_p, init_idx = _init_poisons(x_clean, y_clean, n_p, seed)
    x_p, y_p = x0.to(dev), y_p.to(dev)
    xc, yc, xv, yv = x_clean.to(dev), y_clean.to(dev), x_val.to(dev), y_val.to(dev)
    history = {"val_loss": []}
    bar = tqdm(range(epochs), desc=f"TGDA eps_d={eps_d:g}", disable=not show_progress(progress), leave=False)
    for epoch in bar:
        params = _follower_steps(follower, params, torch.cat([xc, x_p]), torch.cat([yc, y_p]), task, follower_steps, follower_lr)
        params = {k: t.detach() for k, t in params.items()}
        g, l_val = total_gradient(follower, params, xc, yc, x_p, y_p, xv, yv, task, cg_iters=cg_iters, damping=damping)
        if not (torch.isfinite(g).all() and torch.isfinite(torch.tensor(l_val))):
            raise PoisonlibError(f"TGDA diverged at round {epoch} (validation loss {l_val}); lower follower_lr={follower_lr}")
        history["val_loss"].append(l_val)
        x_p = x_p + leader_lr * g.sign()
        if box is not None:
            x_p = x_p.clamp(float(box[0]), float(box[1]))
        bar.set_postfix(val_loss=f"{l_val:.4g}")
    return GCResult(x=x_p.detach().cpu(), y=y_p.detach().cpu(), init_index=init_idx, eps_d=n_p / n, history=history, config=config)
