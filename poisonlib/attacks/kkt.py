"""KKT attack for convex (linear) models (Koh, Steinhardt & Liang 2022,
"Stronger data poisoning attacks break data sanitization defenses", Machine
Learning, Sec. 4; bib key ``koh2022stronger``).

A convex learner trained on clean data μ (n points) plus n_p = round(ε_d n)
poisons returns the target θ_t exactly when θ_t satisfies the first-order
(KKT) condition on the mixture,

.. math::  g(\\mu; \\theta_t) + \\varepsilon_d\\, g(\\hat\\nu; \\theta_t) = 0 .

Koh et al. restrict the poisons to one distinct point per class: for binary
labels, x₊ (label 1) repeated α n_p times and x₋ (label 0) repeated
(1 − α) n_p times. For each α of a grid (``fractions``) we minimise the
residual

.. math::  r(x_+, x_-) = \\| g(\\mu) + \\varepsilon_d\\,[\\alpha\\, g(x_+, 1) + (1-\\alpha)\\, g(x_-, 0)] \\|_2

by projected gradient descent on x₊, x₋ (Adam, cosine step schedule, projection
onto the feature box after each step) and keep the α with the smallest final
residual. The weights α, 1 − α are the realised counts n₊ / n_p, n₋ / n_p, so
the reported residual is exact for the returned poisons. Gradient Canceling
(Alg. 1 of the paper) is the generalisation of this to any loss and any number
of distinct poisons.

Deviations from Koh et al.: they solve for the poison points with a convex
program under the defences' feasible sets (and search over α and the target
via the attack's own loop); here the only constraint is the feature box and
the inner problem is solved by projected gradient descent. Multiclass tasks
use one point per class with equal counts (``fractions`` is then ignored);
this is our extension, the paper treats binary models. The attack needs a
convex model: the paper (App. C.6) notes that the "KKT attack cannot be
directly applied to neural networks", so any model other than
:class:`~poisonlib.models.LinearModel` is rejected.
"""

from __future__ import annotations

import math

import torch
from torch.func import functional_call
from tqdm import tqdm

from .._validation import PoisonlibError, check_finite, check_int, check_positive
from ..grads import global_norm, mean_gradient, target_params
from ..models import LinearModel, loss_fn
from ..train import resolve_device, show_progress
from .gc import GCResult, n_poison_points

DEFAULT_FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def _counts(n_p: int, num_classes: int, alpha: float | None) -> list[int]:
    """Copies of each class's poison: binary [n₋ (label 0), n₊ (label 1)] from α; multiclass equal."""
    if alpha is not None:
        n_pos = int(round(alpha * n_p))
        return [n_p - n_pos, n_pos]
    base, extra = divmod(n_p, num_classes)
    return [base + (k < extra) for k in range(num_classes)]


def _init_points(x_clean, y_clean, labels, seed):
    """Start each class's point at a seeded random clean example of that class (any example if the class is absent)."""
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for k in labels:
        idx = torch.nonzero(y_clean == k).reshape(-1)
        idx = idx if len(idx) else torch.arange(len(y_clean))
        rows.append(idx[torch.randint(len(idx), (1,), generator=gen)])
    return x_clean[torch.cat(rows)].clone()


def _residual_and_grad(target, params, x_pts, y_pts, weights, g_mu, task):
    """(r = g(μ) + Σ_k w_k ∇ℓ(x_k, y_k), ∂(½‖r‖²)/∂x_pts) with w_k = count_k / n."""
    loss = loss_fn(task, reduction="none")
    x_pts = x_pts.detach().requires_grad_(True)
    p = {k: v.detach().requires_grad_(True) for k, v in params.items()}
    weighted = (loss(functional_call(target, p, (x_pts,)), y_pts) * weights).sum()
    gp = torch.autograd.grad(weighted, list(p.values()), create_graph=True)
    obj = 0.5 * sum(((g_mu[k] + g) ** 2).sum() for k, g in zip(p, gp))
    (gx,) = torch.autograd.grad(obj, [x_pts])
    return math.sqrt(2 * float(obj.detach())), gx


def _descend(target, params, x0, y_pts, weights, g_mu, task, steps, lr, lo, hi):
    """Projected Adam on the distinct points; returns (best points, residual curve, best residual)."""
    x = x0.clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1))
    curve, best, best_x = [], math.inf, x0.clone()
    for _ in range(steps + 1):  # the last pass only evaluates the final points
        res, gx = _residual_and_grad(target, params, x.detach(), y_pts, weights, g_mu, task)
        curve.append(res)
        if res < best:
            best, best_x = res, x.detach().clone()
        if len(curve) > steps:
            break
        opt.zero_grad(set_to_none=True)
        x.grad = gx
        opt.step()
        sched.step()
        if lo is not None:
            with torch.no_grad():
                x.clamp_(lo, hi)
    return best_x, curve, best


def kkt_attack(
    target: torch.nn.Module,
    x_clean: torch.Tensor,
    y_clean: torch.Tensor,
    task: str,
    eps_d: float,
    *,
    fractions=DEFAULT_FRACTIONS,
    steps: int = 1000,
    lr: float = 0.1,
    box: tuple[float, float] | None = None,
    seed: int = 0,
    device: str = "auto",
    progress: bool | None = None,
) -> GCResult:
    """KKT attack: poisons on one distinct point per class making ``target`` stationary on clean ∪ poisons.

    Parameters
    ----------
    target : the target θ_t, a :class:`~poisonlib.models.LinearModel` (convex loss).
    x_clean, y_clean : clean training data μ (n points).
    task : ``"binary"`` (labels 0/1, one logit) or ``"multiclass"``.
    eps_d : budget ε_d > 0; n_p = round(ε_d n) poisons.
    fractions : grid of α, the share of label-1 copies (binary only).
    steps, lr : projected Adam steps and initial step size in feature units (cosine
        schedule to 0) per α. Too large a step can park a point where the target
        classifies it with a huge margin: its gradient then vanishes and the
        residual stalls (on 10-D Gaussian data lr 0.1-0.3 converge, 0.5-1 stall).
    box : feature box, e.g. ``(0, 1)`` for pixels; ``None`` leaves features unbounded.
    seed : picks the clean examples the distinct points start from.

    Returns
    -------
    GCResult with ``x`` the n_p poisons (copies of the distinct points), ``y``
    their labels, ``init_index`` filled with -1 (no poison is a clean point),
    ``history["residual"]`` the residual curve of the chosen α, plus
    ``final_residual`` (best residual reached) and ``initial_residual`` = ‖g(μ)‖;
    ``config["alpha"]`` the chosen α (``None`` for multiclass) and
    ``config["residual_by_alpha"]`` the best residual of every α tried.
    """
    if not isinstance(target, LinearModel):
        raise PoisonlibError(
            f"the KKT attack needs a convex (linear) model, got {type(target).__name__}; use gradient_canceling for networks"
        )
    if task not in ("binary", "multiclass"):
        raise PoisonlibError(f"the KKT attack needs a classification task ('binary' or 'multiclass'), got {task!r}")
    steps = check_int("steps", steps, minimum=0)
    lr = check_positive("lr", lr)
    check_finite("clean features", x_clean)
    n = len(x_clean)
    n_p = n_poison_points(eps_d, n)
    dev = resolve_device(device)
    target = target.to(dev).eval()
    params = target_params(target)
    g_mu = mean_gradient(target, x_clean.to(dev), y_clean.to(dev), task, params=params)
    num_classes = 2 if task == "binary" else int(target.weight.shape[0])
    labels = torch.arange(num_classes, dtype=y_clean.dtype)
    alphas = [check_positive("fraction", a) for a in fractions] if task == "binary" else [None]
    if task == "binary" and any(a >= 1 for a in alphas):
        raise PoisonlibError(f"fractions must lie in (0, 1), got {tuple(fractions)!r}")
    if not alphas:
        raise PoisonlibError("fractions must hold at least one value in (0, 1)")
    lo, hi = (None, None) if box is None else (float(box[0]), float(box[1]))
    x0 = _init_points(x_clean, y_clean, labels, seed).to(dev)
    if lo is not None:
        x0 = x0.clamp(lo, hi)
    y_pts = labels.to(dev)

    best = None
    by_alpha = {}
    for alpha in tqdm(alphas, desc=f"KKT eps_d={eps_d:g}", disable=not show_progress(progress), leave=False):
        counts = _counts(n_p, num_classes, alpha)
        weights = torch.tensor(counts, dtype=x0.dtype, device=dev) / n
        pts, curve, res = _descend(target, params, x0, y_pts, weights, g_mu, task, steps, lr, lo, hi)
        by_alpha[alpha] = res
        if best is None or res < best[2]:
            best = (alpha, pts, res, curve, counts)
    alpha, pts, res, curve, counts = best
    reps = torch.tensor(counts)
    x = torch.repeat_interleave(pts.cpu(), reps, dim=0)
    y = torch.repeat_interleave(labels, reps)
    history = {"residual": curve, "final_residual": res, "initial_residual": global_norm(g_mu)}
    config = dict(attack="kkt", eps_d=float(eps_d), n=n, n_poison=n_p, alpha=alpha, counts=counts, fractions=tuple(alphas),
                  steps=steps, lr=lr, box=box, seed=seed, residual_by_alpha=by_alpha)
    return GCResult(x=x, y=y, init_index=torch.full((n_p,), -1, dtype=torch.long), eps_d=n_p / n, history=history, config=config)
