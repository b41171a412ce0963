"""Gradient Matching (Geiping et al. 2021, "Witches' Brew"; geiping2021witches),
adapted to indiscriminate poisoning as in Sec. 4 of the paper.

At the fixed clean model w, the poisons ν̂ (n_p = round(ε_d n) points) are
chosen so that their training-loss gradient points along the gradient of a
*reversed* loss J on the clean data μ (Eq. 36):

.. math::  \\min_{\\hat\\nu \\in \\Gamma} \\; \\mathcal S = 1 - \\cos\\big(\\nabla_w \\mathcal J(\\mu; w),\\; \\nabla_w \\ell(\\hat\\nu; w)\\big),

with ℓ(ν̂; w) the mean training loss over the poisons, the cosine taken over
all parameters as one flat vector, and J:

* ``multiclass``: the reversed cross-entropy J = −log(1 − softmax(h)_y) (Eq. 35,
  Fowl et al. 2021a), mean over μ;
* ``binary``: the same with the sigmoid, J = −log(1 − p_y) = log(1 + e^{ỹh}), ỹ = 2y − 1;
* ``regression``: J = ½ mean_{x∈μ} (f_w(x) − f_target(x))² for a given ``target``
  model. At the clean least-squares fit ∇_w J = Σ (w − w_target) (Σ the clean
  second-moment matrix), so training on poisons whose gradient aligns with it
  moves w toward the target (App. C.5, Fig. 6).

A gradient step of the learner on such poisons lowers J, i.e. raises the clean
loss (classification) or approaches the target (regression); nothing fixes
*how far* it goes, which is why the model reached depends on ε_d (App. C.5).

Optimisation as in Witches' Brew: ``optimizer="signadam"`` is Adam fed with the
sign of the gradient, ``"adam"`` plain Adam; step ``lr`` with the step decay of
Witches' Brew (×0.1 at 3/8, 5/8 and 7/8 of ``steps``). The admissible set Γ is
Witches' Brew's ℓ∞ ε-ball around each poison's base image intersected with the
feature box: ‖x_j − x_j^base‖_∞ ≤ ``eps`` (default 16/255, in feature units, i.e.
pixels in [0, 1]) and x_j ∈ ``box``; after every step the poisons are projected
onto it (first onto the ball, then onto the box, as Witches' Brew does). With a
ball, the base images are one seeded clean sample (``seed``) shared by all
restarts, and restart r starts from a random point of the ball,
x^base + clip(eps·N(0, I), −eps, eps) (Witches' Brew's ``init="randn"``), drawn
from seed + r, projected onto the box; the restart with the lowest final
dissimilarity is kept (Witches' Brew keeps the lowest final target loss).
``eps=None`` drops the ball (Γ is the box alone, the behaviour before the ball
was added): restart r then starts from another seeded clean sample (seed + r)
with no perturbation.

Differences from Witches' Brew (``official-code-notes`` §3), besides the
indiscriminate objective of Eq. 35-36: the gradient is taken once at the single
clean model (no ensembles, no differentiable augmentation, no retraining
between steps), full batch over the poisons, and ``lr`` is in feature units
(Witches' Brew's lr 0.1 = ``tau`` is in the data-normalised units, i.e.
0.1·σ in pixel units for a channel standard deviation σ; ε is 16/255 in pixel
units in both). ``eps`` is in feature units whatever the data; on unbounded
(non-pixel) features such as the regression data of App. C.5 pass ``eps=None``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.func import functional_call
from tqdm import tqdm

from .._validation import PoisonlibError, check_choice, check_finite, check_int, check_positive
from .._meter import capped, repeated
from ..grads import flat, sum_gradient, target_params
from ..models import loss_fn
from ..train import resolve_device, show_progress
from .gc import GCResult, _init_poisons, n_poison_points
from .gc_grad import resolve_chunk_size

OPTIMIZERS = ("signadam", "adam")
#: Witches' Brew's default ℓ∞ radius, 16/255 (pixels in [0, 1]).
EPS_WITCHES_BREW = 16 / 255


def reversed_loss(out: torch.Tensor, y: torch.Tensor, task: str, target_out: torch.Tensor | None = None) -> torch.Tensor:
    """Mean reversed loss J (Eq. 35): −log(1 − p_y), or ½(f − f_target)² for regression."""
    if task == "multiclass":  # log(1 − p_y) = logsumexp_{k≠y} h_k − logsumexp_k h_k
        others = out.masked_fill(F.one_hot(y, out.shape[1]).bool(), float("-inf"))
        return (torch.logsumexp(out, 1) - torch.logsumexp(others, 1)).mean()
    if task == "binary":
        return F.softplus((2 * y.to(out.dtype) - 1) * out.reshape(-1)).mean()
    return 0.5 * ((out.reshape(-1) - target_out.reshape(-1)) ** 2).mean()


def dissimilarity(model, params, g_j, x_p, y_p, task, *, create_graph=False):
    """S = 1 − cos(g_J, ∇_w ℓ(ν̂; w)) over the flattened parameters (Eq. 36)."""
    p = {k: t.detach().requires_grad_(True) for k, t in params.items()}
    gp = torch.autograd.grad(loss_fn(task)(functional_call(model, p, (x_p,)), y_p), list(p.values()), create_graph=create_graph)
    return _one_minus_cos(g_j, flat(gp))


def _one_minus_cos(g_j, g):
    """1 − cos(g_J, g) for flat vectors (Eq. 36's S given the poisons' gradient g)."""
    return 1 - (g_j @ g) / (g_j.norm() * g.norm()).clamp_min(1e-30)


_PASS1 = "GM poison gradient chunks"  # pass 1 of the chunked dissimilarity: Σ_j ∇_w ℓ(z_j) without a graph


def _chunked_dissimilarity(model, params, g_j, x_p, y_p, task, chunk, wrt_labels=False):
    """(S, ∂S/∂x_p, ∂S/∂y_p or None) of :func:`dissimilarity` with at most ``chunk`` poisons in one graph.

    Pass 1: G = (1/n_p) Σ_j ∇_w ℓ(z_j) without a graph and u = ∂S/∂G (a constant vector); pass 2,
    per chunk C: ∂S/∂x_C = ∇_{x_C} (1/n_p) ⟨Σ_{j∈C} ∇_w ℓ(z_j), u⟩ (GC's chunk pullback, Eq. 34 with
    r = u). The same gradient as the one-graph computation, summed in another order."""
    from .gc_grad import _chunk_pullback

    names = list(params)
    G = flat(sum_gradient(model, params, x_p.detach(), y_p.detach(), task, chunk=chunk, loop=_PASS1)).requires_grad_(True) / len(x_p)
    S = _one_minus_cos(g_j, G)
    u = torch.autograd.grad(S, G)[0]
    r, i = {}, 0
    for k in names:
        r[k] = u[i : i + params[k].numel()].reshape(params[k].shape)
        i += params[k].numel()
    gx = torch.zeros_like(x_p)
    gy = torch.zeros_like(y_p) if wrt_labels else None
    for a in capped(range(0, len(x_p), chunk), "GM poison chunks"):
        part = _chunk_pullback(model, params, x_p[a : a + chunk].detach(), y_p[a : a + chunk].detach(), r, 1 / len(x_p), task,
                               "double_backward", wrt_labels)
        if wrt_labels:
            gx[a : a + chunk], gy[a : a + chunk] = part
        else:
            gx[a : a + chunk] = part
    return S.detach(), gx, gy


def _reversed_gradient(model, params, x_clean, y_clean, task, target, chunk=None):
    """g_J = ∇_w J(μ; w) at the clean model, as one flat vector (summed over chunks of ``chunk`` points if given)."""
    if chunk is not None and chunk < len(x_clean):
        parts = [_reversed_gradient(model, params, x_clean[a : a + chunk], y_clean[a : a + chunk], task, target) * len(x_clean[a : a + chunk])
                 for a in capped(range(0, len(x_clean), chunk), "gradient chunks")]
        return sum(parts) / len(x_clean)
    target_out = None
    if task == "regression":
        with torch.no_grad():
            target_out = target(x_clean)
    p = {k: t.detach().requires_grad_(True) for k, t in params.items()}
    j = reversed_loss(functional_call(model, p, (x_clean,)), y_clean, task, target_out)
    return flat(torch.autograd.grad(j, list(p.values()))).detach()


def project(x, base, eps, box):
    """Proj_Γ: clip to the ℓ∞ ball of radius ``eps`` around ``base`` (if ``eps`` is not None), then to ``box``."""
    if eps is not None:
        x = torch.maximum(torch.minimum(x, base + eps), base - eps)
    if box is not None:
        x = x.clamp(float(box[0]), float(box[1]))
    return x


def _random_start(base, eps, box, seed):
    """Witches' Brew's ``randn`` start: base + clip(eps·N(0, I), −eps, eps), projected onto the box."""
    gen = torch.Generator().manual_seed(seed)
    delta = (eps * torch.randn(base.shape, generator=gen, dtype=base.dtype)).clamp(-eps, eps).to(base.device)
    return project(base + delta, base, eps, box)


def _one_restart(model, params, g_j, x0, y0, task, steps, lr, optimizer, box, optimize_labels, bar, base=None, eps=None, chunk=None):
    x_p = x0.clone().requires_grad_(True)
    y_p = y0.clone().requires_grad_(optimize_labels)
    leaves = [x_p, y_p] if optimize_labels else [x_p]
    opt = torch.optim.Adam(leaves, lr=lr)
    milestones = sorted({max(1, int(steps * f)) for f in (3 / 8, 5 / 8, 7 / 8)})
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=0.1)
    trace = []
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        if chunk is None:
            s = dissimilarity(model, params, g_j, x_p, y_p, task, create_graph=True)
            s.backward()
        else:
            s, x_p.grad, gy = _chunked_dissimilarity(model, params, g_j, x_p, y_p, task, chunk, optimize_labels)
            if optimize_labels:
                y_p.grad = gy
        trace.append(float(s.detach()))
        if optimizer == "signadam":
            for t in leaves:
                t.grad.sign_()
        opt.step()
        sched.step()
        if box is not None or eps is not None:
            with torch.no_grad():
                x_p.copy_(project(x_p, base, eps, box))
        bar.update()
        bar.set_postfix(dissimilarity=f"{trace[-1]:.3g}")
    return x_p.detach(), y_p.detach(), trace, _final_dissimilarity(model, params, g_j, x_p.detach(), y_p.detach(), task, chunk)


def _final_dissimilarity(model, params, g_j, x_p, y_p, task, chunk) -> float:
    """S of the returned poisons (no gradient: in chunks, pass 1 of :func:`_chunked_dissimilarity` only,
    which a dry run prices from the steps' pass 1)."""
    if chunk is None:
        return float(dissimilarity(model, params, g_j, x_p, y_p, task))
    with repeated(_PASS1):
        return float(_one_minus_cos(g_j, flat(sum_gradient(model, params, x_p, y_p, task, chunk=chunk, loop=_PASS1)) / len(x_p)))


def gradient_matching(
    model: torch.nn.Module,
    x_clean: torch.Tensor,
    y_clean: torch.Tensor,
    task: str,
    eps_d: float,
    *,
    target: torch.nn.Module | None = None,
    steps: int = 250,
    lr: float = 0.1,
    optimizer: str = "signadam",
    restarts: int = 1,
    eps: float | None = EPS_WITCHES_BREW,
    box: tuple[float, float] | None = None,
    optimize_labels: bool = False,
    seed: int = 0,
    device: str = "auto",
    progress: bool | None = None,
    chunk_size: int | str | None = "auto",
) -> GCResult:
    """Gradient Matching (Eq. 36) against the fixed clean ``model``.

    Parameters
    ----------
    model : the clean model w (kept fixed, evaluated in ``eval()`` mode; not modified).
    x_clean, y_clean : clean training data μ (n points).
    task : ``"multiclass"``, ``"binary"`` or ``"regression"`` (needs ``target``).
    eps_d : budget ε_d > 0; n_p = round(ε_d n) poisons start from a seeded clean sample.
    target : regression only: the model f_target the reversed loss pulls toward.
    steps, lr : optimiser steps and (initial) step size (Witches' Brew: 250, 0.1).
    optimizer : ``"signadam"`` (Adam on the gradient's sign, Witches' Brew) or ``"adam"``.
    restarts : independent restarts (seeds seed, seed + 1, ...); the one with the
        lowest final dissimilarity is kept (Witches' Brew: 8). With ``eps`` they share
        the base images and start from random points of the ball; without, each
        starts from its own clean sample.
    eps : radius of the ℓ∞ ball around each poison's base image, in feature units
        (Witches' Brew: 16/255, the default); ``None``: no ball.
    box : feature box (lo, hi) the poisons are projected onto; ``None``: unbounded.
    optimize_labels : also move the (continuous) labels; regression only.
    chunk_size : at most this many poisons (and clean points, for g_J) in one graph; ``"auto"``
        (default) / ``None``: one graph while the poisons (the clean points) fit GC's memory
        budget (:func:`~poisonlib.attacks.gc_grad.resolve_chunk_size`), as every MNIST-5k run
        does; the chunks used, if any, are ``config["chunk_size"]`` and ``config["clean_chunk_size"]``.

    Returns
    -------
    GCResult with ``history["dissimilarity"]`` = S before each step of the kept
    restart, ``history["final_dissimilarity"]`` = S of the returned poisons and
    ``history["restart_dissimilarity"]`` = the final S of every restart.
    """
    check_choice("task", task, ("multiclass", "binary", "regression"))
    n_p = n_poison_points(eps_d, len(x_clean))
    check_choice("optimizer", optimizer, OPTIMIZERS)
    steps = check_int("steps", steps, minimum=0)
    restarts = check_int("restarts", restarts, minimum=1)
    lr = check_positive("lr", lr)
    if eps is not None:
        eps = check_positive("eps", eps)
    if task == "regression" and target is None:
        raise PoisonlibError("gradient matching for task 'regression' needs a target model (target=None given)")
    if task != "regression" and target is not None:
        raise PoisonlibError(f"target is used only for task 'regression', not {task!r}; the reversed loss needs no target")
    if optimize_labels and task != "regression":
        raise PoisonlibError(f"optimize_labels needs continuous labels (task 'regression'), not {task!r}")
    check_finite("clean features", x_clean)
    n = len(x_clean)
    dev = resolve_device(device)
    config = dict(eps_d=float(eps_d), n=n, n_poison=n_p, steps=steps, lr=lr, optimizer=optimizer, restarts=restarts,
                  eps=eps, box=box, optimize_labels=optimize_labels, seed=seed, regression_target=target is not None)

    model = model.to(dev).eval()
    if target is not None:
        target = target.to(dev).eval()
    params = target_params(model)
    chunk = resolve_chunk_size(chunk_size, model, params, x_clean, y_clean, task, "double_backward", n_p, dev)
    clean_chunk = resolve_chunk_size(chunk_size, model, params, x_clean, y_clean, task, "double_backward", n, dev)
    for name, c in (("chunk_size", chunk), ("clean_chunk_size", clean_chunk)):
        if c is not None:
            config[name] = c
    g_j = _reversed_gradient(model, params, x_clean.to(dev), y_clean.to(dev), task, target, clean_chunk)
    best, finals = None, []
    bar = tqdm(total=steps * restarts, desc=f"GM eps_d={eps_d:g}", disable=not show_progress(progress), leave=False)
    if eps is not None:  # Witches' Brew: fixed base images, a random start in the ball per restart
        base, y_base, idx_base = _init_poisons(x_clean, y_clean, n_p, seed)
        base, y_base = base.to(dev), y_base.to(dev)
    for r in capped(range(restarts), "GM restarts"):
        if eps is None:
            x0, y0, idx = _init_poisons(x_clean, y_clean, n_p, seed + r)
            x0, y0, b = x0.to(dev), y0.to(dev), None
        else:
            x0, y0, idx, b = _random_start(base, eps, box, seed + r), y_base, idx_base, base
        x_p, y_p, trace, final = _one_restart(model, params, g_j, x0, y0, task, steps, lr, optimizer, box, optimize_labels, bar, b, eps, chunk)
        finals.append(final)
        if best is None or final < best[-1]:
            best = (x_p, y_p, idx, trace, final)
    bar.close()
    x_p, y_p, idx, trace, final = best
    history = {"dissimilarity": trace, "final_dissimilarity": final, "restart_dissimilarity": finals}
    return GCResult(x=x_p.cpu(), y=y_p.cpu(), init_index=idx, eps_d=n_p / n, history=history, config=config)
