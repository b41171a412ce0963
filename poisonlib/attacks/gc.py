"""Gradient Canceling (GC), Algorithm 1 of the paper.

Given clean data μ (n points), a target model w and a budget ε_d, GC places
n_p = round(ε_d n) poison points ẑ_j = (x_j, y_j) so that the target has
(nearly) vanishing gradient on the mixture of clean and poisoned data:

.. math::  \\min_{\\hat\\nu} \\; \\mathcal L(\\hat\\nu) = \\tfrac12 \\,\\| g(\\mu) + \\varepsilon_d\\, g(\\hat\\nu) \\|_2^2
   \\qquad \\text{(Eq. 31, 33)}

with g(ν̂) the mean gradient over the poisons. g(μ) is computed once; only the
features x_j move (labels are kept from the clean points the poisons start
from); each step is projected onto the admissible box (Alg. 1, line 6).

The gradient with respect to poison j is Eq. (34),
∂𝓛/∂x_j = (1/n) ∇_x ∇_w ℓ(z_j; w) · [g(μ) + ε_d g(ν̂)]. It shrinks with n,
so a fixed step size would mean different things on MNIST-5k and on the full
MNIST. Our default ``scaling="per_point"`` therefore takes each step along
n · ∂𝓛/∂x_j = ∇_x ∇_w ℓ(z_j; w) · r, whose size does not depend on n (the
objective and its minimisers are unchanged). ``scaling="mean"`` steps along
∂𝓛/∂x_j exactly as written, ``scaling="sum"`` along the gradient of the
released code's objective ‖Σ_clean ∇ℓ + Σ_poison ∇ℓ‖² = 2n²𝓛.

Under the per-point scaling the paper's settings (SGD, momentum 0.9, cosine
schedule from 0.5, 1000 epochs) are stable on MNIST (poisons stay finite, the
objective falls by 3 orders of magnitude at ε_d = τ(2) for our LR target);
under the summed objective of the released code the same step size diverges,
and under the mean it barely moves the poisons (steps n times smaller).

``variant="official"`` reproduces the choices of the authors' released code
(see ``official-code-notes``): only the first parameter tensor enters the
objective, ``scaling="sum"``, plain gradient descent with step 10, no
projection. It does not reproduce their normalised-pixel space: our features
stay in [0, 1] units.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import torch
from torch.func import functional_call
from tqdm import tqdm

from .._validation import PoisonlibError, check_choice, check_finite, check_int, check_positive
from ..grads import PARAM_SUBSETS, global_norm, mean_gradient, sum_gradient, target_params
from ..models import loss_fn
from ..results import atomic_torch_save
from ..train import resolve_device, show_progress

SCALINGS = ("per_point", "mean", "sum")
METHODS = ("double_backward", "jvp")
OPTIMIZERS = ("sgd", "adam")
CLIPS = (None, "box", "range")

#: Defaults of the two variants; any keyword given explicitly overrides them.
VARIANTS = {
    "paper": dict(params="all", scaling="per_point", optimizer="sgd", lr=0.5, momentum=0.9, clip="box"),
    "official": dict(params="first", scaling="sum", optimizer="sgd", lr=10.0, momentum=0.0, clip=None),
}


@dataclass
class GCResult:
    """Poisons found by :func:`gradient_canceling` and the optimisation trace.

    ``x`` has the clean data's example shape; ``y`` the kept labels;
    ``init_index`` the clean training rows the poisons started from;
    ``history["objective"]`` the GC objective 𝓛 of each epoch (before its step)
    and ``history["residual"]`` = ‖g(μ) + ε_d g(ν̂)‖ = sqrt(2𝓛);
    ``eps_d`` the realised budget n_p / n; ``retrained`` the model trained on clean ∪
    poisons when an experiment evaluated the attack (``None`` otherwise).
    """

    x: torch.Tensor
    y: torch.Tensor
    init_index: torch.Tensor
    eps_d: float
    history: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    retrained: torch.nn.Module | None = None  # the model retrained on clean ∪ poisons, where the caller evaluated one

    @property
    def n_poison(self) -> int:
        return len(self.x)


def n_poison_points(eps_d: float, n: int) -> int:
    """n_p = round(ε_d · n), at least one point (Eq. 32)."""
    return max(1, int(round(check_positive("eps_d", eps_d) * n)))


def _box_bounds(clip, box, x_clean):
    """Lower / upper bounds of the admissible set, or (None, None)."""
    if clip == "box":
        return (None, None) if box is None else (float(box[0]), float(box[1]))
    if clip == "range":  # GC-c (Sec. 5.4): per-feature range of the clean training data
        return x_clean.amin(dim=0), x_clean.amax(dim=0)
    return None, None


def gc_gradient(model, params, x_p, y_p, g_mu, eps, task, method="double_backward", wrt_labels: bool = False):
    """(∂𝓛/∂x_p, 𝓛) at poisons ``x_p`` for 𝓛 = ½‖g(μ) + eps · g(ν̂)‖² (Eq. 33, 34).

    ``double_backward`` differentiates through the poison gradient built with
    ``create_graph=True`` (reverse-over-reverse). ``jvp`` computes r = g(μ) +
    eps g(ν̂) first, then ∇_x eps ⟨g(ν̂), stop_grad(r)⟩ with the directional
    derivative ⟨∇_w ℓ, r⟩ from ``torch.func.jvp`` (reverse-over-forward).
    Both give the same vector. With ``wrt_labels`` (continuous labels, i.e.
    regression) the first element is the pair (∂𝓛/∂x_p, ∂𝓛/∂y_p).
    """
    loss = loss_fn(task)
    names = list(params)
    argnums = (0, 1) if wrt_labels else 0
    if method == "jvp":
        from torch.func import grad, jvp

        gp = grad(lambda p: loss(functional_call(model, p, (x_p,)), y_p))(params)
        r = {k: g_mu[k] + eps * gp[k] for k in names}
        obj = 0.5 * sum((t * t).sum() for t in r.values())

        def directional(x, y):
            return jvp(lambda p: loss(functional_call(model, p, (x,)), y), (params,), (r,))[1]

        g = grad(directional, argnums=argnums)(x_p, y_p)
        return (tuple(eps * t for t in g) if wrt_labels else eps * g), obj.detach()
    x_p = x_p.detach().requires_grad_(True)
    y_p = y_p.detach().requires_grad_(wrt_labels)
    p = {k: v.detach().requires_grad_(True) for k, v in params.items()}
    gp = torch.autograd.grad(loss(functional_call(model, p, (x_p,)), y_p), list(p.values()), create_graph=True)
    obj = 0.5 * sum(((g_mu[k] + eps * g) ** 2).sum() for k, g in zip(names, gp))
    g = torch.autograd.grad(obj, [x_p, y_p] if wrt_labels else [x_p])
    return (tuple(g) if wrt_labels else g[0]), obj.detach()


def _init_poisons(x_clean, y_clean, n_p, seed):
    """Random clean sample (Alg. 1, line 1): without replacement when n_p <= n."""
    gen = torch.Generator().manual_seed(seed)
    n = len(x_clean)
    idx = torch.randperm(n, generator=gen)[:n_p] if n_p <= n else torch.randint(0, n, (n_p,), generator=gen)
    return x_clean[idx].clone(), y_clean[idx].clone(), idx


def gradient_canceling(
    target: torch.nn.Module,
    x_clean: torch.Tensor,
    y_clean: torch.Tensor,
    task: str,
    eps_d: float,
    *,
    epochs: int = 1000,
    variant: str = "paper",
    lr: float | None = None,
    momentum: float | None = None,
    scaling: str | None = None,
    params: str | None = None,
    optimizer: str | None = None,
    clip: str | None = "variant",
    box: tuple[float, float] | None = None,
    seed: int = 0,
    device: str = "auto",
    method: str = "double_backward",
    optimize_labels: bool = False,
    batch_size: int | None = None,
    checkpoint: str | None = None,
    checkpoint_every: int = 100,
    progress: bool | None = None,
) -> GCResult:
    """Run Gradient Canceling (Alg. 1) against the fixed ``target`` model.

    Parameters
    ----------
    target : the target model w (kept fixed, evaluated in ``eval()`` mode).
    x_clean, y_clean : clean training data μ (n points).
    task : ``"multiclass"``, ``"binary"`` or ``"regression"``.
    eps_d : poisoning budget ε_d > 0; n_p = round(ε_d n) poisons (ε_d may exceed 1).
    epochs : full-batch GC steps (the paper: 1000).
    variant : ``"paper"`` (Alg. 1 as written) or ``"official"`` (the released code);
        sets the defaults of ``lr, momentum, scaling, params, clip`` (see ``VARIANTS``).
    lr, momentum : step size and momentum on the poison features, cosine schedule to 0
        (App. C.1: SGD, lr 0.5, momentum; our momentum is 0.9).
    optimizer : ``"sgd"`` (App. C.1, default) or ``"adam"`` (``momentum`` is then
        Adam's beta1). On MNIST-5k LR both stop at about the same objective when
        the pixel box is active (the box, not the optimiser, sets the floor).
    scaling : step direction ``"per_point"`` (n · ∂𝓛/∂x, default), ``"mean"``
        (∂𝓛/∂x, Eq. 34 as written) or ``"sum"`` (the released code's 2n²·∂𝓛/∂x).
    params : ``"all"`` parameters in the objective, or only the ``"first"`` tensor.
    clip : projection after each step: ``"box"`` onto ``box`` (Alg. 1 line 6;
        [0, 1] pixels), ``"range"`` onto the per-feature range of the clean
        data (GC-c, Sec. 5.4) or ``None``; ``"variant"`` takes the variant's.
    box : the dataset's feature box, e.g. ``(0, 1)`` for images; ``None``
        (default) when features are unbounded, as the theory assumes.
    seed : seeds the choice of the clean points the poisons start from.
    method : ``"double_backward"`` or ``"jvp"``, see :func:`gc_gradient`.
    optimize_labels : also move the poisons' (continuous) labels, Sec. 4 "we may
        choose to optimize both the feature x and label y"; regression only.
    batch_size : ``None`` (default) is full batch, as on MNIST; else each epoch
        visits the poisons in shuffled mini-batches of this size (App. C.1: 1000
        on CIFAR-10 and TinyImageNet), each step using the batch's mean gradient
        as its estimate of g(ν̂). The trace then holds the mean of the batch
        residuals; the final residual is always exact.
    checkpoint : file to save the state to every ``checkpoint_every`` epochs; a
        run finding a checkpoint of the same configuration resumes from it and
        ends with identical results (on CPU).

    Returns
    -------
    GCResult
    """
    check_choice("variant", variant, VARIANTS)
    opts = dict(VARIANTS[variant])
    given = dict(lr=lr, momentum=momentum, scaling=scaling, params=params, optimizer=optimizer)
    opts.update({k: v for k, v in given.items() if v is not None})
    if clip != "variant":
        opts["clip"] = clip
    check_choice("scaling", opts["scaling"], SCALINGS)
    check_choice("params", opts["params"], PARAM_SUBSETS)
    check_choice("optimizer", opts["optimizer"], OPTIMIZERS)
    if opts["clip"] not in CLIPS:
        raise PoisonlibError(f"unknown clip {opts['clip']!r}; choose from: None, 'box', 'range'")
    check_choice("method", method, METHODS)
    if optimize_labels and task != "regression":
        raise PoisonlibError(f"optimize_labels needs continuous labels (task 'regression'), not {task!r}")
    epochs = check_int("epochs", epochs, minimum=0)
    if batch_size is not None:
        batch_size = check_int("batch_size", batch_size, minimum=1)
    lr_ = check_positive("lr", opts["lr"])
    mom = check_positive("momentum", opts["momentum"], allow_zero=True)
    check_finite("clean features", x_clean)
    n = len(x_clean)
    n_p = n_poison_points(eps_d, n)
    eps = n_p / n  # realised budget: ε_d g(ν̂) = (1/n) Σ_poisons ∇ℓ exactly
    dev = resolve_device(device)
    config = dict(variant=variant, eps_d=float(eps_d), n=n, n_poison=n_p, epochs=epochs, seed=seed, method=method, box=box,
                  optimize_labels=optimize_labels, **opts)
    if batch_size is not None and batch_size < n_p:
        config["batch_size"] = batch_size
    else:
        batch_size = n_p

    target = target.to(dev).eval()
    w = target_params(target, opts["params"])
    g_mu = mean_gradient(target, x_clean, y_clean, task, params=w)
    lo, hi = _box_bounds(opts["clip"], box, x_clean)
    lo, hi = [b.to(dev) if isinstance(b, torch.Tensor) else b for b in (lo, hi)]
    x0, y_p, init_idx = _init_poisons(x_clean, y_clean, n_p, seed)
    x_p = x0.to(dev).requires_grad_(True)
    y_p = y_p.to(dev).requires_grad_(optimize_labels)
    leaves = [x_p, y_p] if optimize_labels else [x_p]
    if opts["optimizer"] == "adam":
        opt = torch.optim.Adam(leaves, lr=lr_, betas=(mom, 0.999) if mom else (0.9, 0.999))
    else:
        opt = torch.optim.SGD(leaves, lr=lr_, momentum=mom)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs, 1))
    scale = {"per_point": n, "mean": 1.0, "sum": 2.0 * n * n}[opts["scaling"]]
    history = {"objective": [], "residual": []}
    start = _maybe_resume(checkpoint, config, x_p, y_p, opt, sched, history)

    bar = tqdm(range(start, epochs), desc=f"GC eps_d={eps_d:g}", disable=not show_progress(progress), leave=False, initial=start, total=epochs)
    gen = torch.Generator().manual_seed(seed + 1)
    for _ in range(start):  # replay the batch order of the epochs already done
        torch.randperm(n_p, generator=gen)
    for epoch in bar:
        order = torch.randperm(n_p, generator=gen).to(dev) if batch_size < n_p else None
        objs = []
        for i in range(0, n_p, batch_size):
            idx = None if order is None else order[i : i + batch_size]
            xb = x_p.detach() if idx is None else x_p.detach()[idx]
            yb = y_p.detach() if idx is None else y_p.detach()[idx]
            # the batch stands in for all poisons: eps * mean over the batch
            grads, obj = gc_gradient(target, w, xb, yb, g_mu, eps, task, method, optimize_labels)
            objs.append(float(obj))
            if not math.isfinite(objs[-1]):
                raise PoisonlibError(f"GC diverged at epoch {epoch} (objective {objs[-1]}); lower lr={lr_}")
            step = scale * len(xb) / n_p
            gx, gy = (grads if optimize_labels else (grads, None))
            opt.zero_grad(set_to_none=True)
            x_p.grad = _scatter(step * gx, idx, x_p)
            if optimize_labels:
                y_p.grad = _scatter(step * gy, idx, y_p)
            opt.step()
            if lo is not None:
                with torch.no_grad():
                    x_p.copy_(torch.clamp(x_p, lo, hi))
        sched.step()
        obj = sum(objs) / len(objs)
        history["objective"].append(obj)
        history["residual"].append(math.sqrt(2 * obj))
        bar.set_postfix(residual=f"{history['residual'][-1]:.3g}")
        if checkpoint and ((epoch + 1) % checkpoint_every == 0 or epoch + 1 == epochs):
            atomic_torch_save(dict(config=config, epoch=epoch + 1, x=x_p.detach().cpu(), y=y_p.detach().cpu(), opt=opt.state_dict(), sched=sched.state_dict(), history=history), checkpoint)

    r = None
    if batch_size < n_p:  # exact final residual over all poisons, in chunks
        g_sum = sum_gradient(target, w, x_p.detach(), y_p.detach(), task)
        r = {k: g_mu[k] + g_sum[k] / n for k in w}
    obj = 0.5 * global_norm(r) ** 2 if r is not None else float(gc_gradient(target, w, x_p.detach(), y_p.detach(), g_mu, eps, task, method)[1])
    history["final_objective"] = float(obj)
    history["final_residual"] = math.sqrt(2 * float(obj))
    history["initial_residual"] = global_norm(g_mu)
    return GCResult(x=x_p.detach().cpu(), y=y_p.detach().cpu(), init_index=init_idx, eps_d=eps, history=history, config=config)


def _scatter(g, idx, like):
    """The full-size gradient of ``like`` with ``g`` at rows ``idx`` (all rows when ``idx`` is None)."""
    if idx is None:
        return g
    full = torch.zeros_like(like)
    full[idx] = g
    return full


def _maybe_resume(checkpoint, config, x_p, y_p, opt, sched, history) -> int:
    """Load a checkpoint of the same ``config`` into the live state; return the epoch reached."""
    if not checkpoint or not os.path.exists(checkpoint):
        return 0
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    if state.get("config") != config:
        raise PoisonlibError(f"checkpoint {checkpoint!r} belongs to another GC configuration; delete it or pass another path")
    with torch.no_grad():
        x_p.copy_(state["x"].to(x_p.device))
        y_p.copy_(state["y"].to(y_p.device))
    opt.load_state_dict(state["opt"])
    sched.load_state_dict(state["sched"])
    history.update(state["history"])
    return int(state["epoch"])
