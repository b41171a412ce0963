"""Gradient Canceling (GC), Algorithm 1 of the paper.

Given clean data μ (n points), a target model w and a budget ε_d, GC places
n_p = round(ε_d n) poison points ẑ_j = (x_j, y_j) so that the target has
(nearly) vanishing gradient on the mixture of clean and poisoned data:

.. math::  \\min_{\\hat\\nu} \\; \\mathcal L(\\hat\\nu) = \\tfrac12 \\,\\| g(\\mu) + \\varepsilon_d\\, g(\\hat\\nu) \\|_2^2
   \\qquad \\text{(Eq. 31, 33)}

with g(ν̂) the mean gradient over the poisons. g(μ) is computed once; only the
features x_j move (labels are kept from the clean points the poisons start
from); each step is projected onto the admissible box (Alg. 1, line 6).
``history["converged"]`` says whether the run cancelled the gradient or stopped
at a stationary point of 𝓛 (see ``CONVERGED_RTOL``, ``STATIONARY_RTOL``).

The gradient with respect to poison j is Eq. (34),
∂𝓛/∂x_j = (1/n) ∇_x ∇_w ℓ(z_j; w) · [g(μ) + ε_d g(ν̂)]. It shrinks with n,
so a fixed step size would mean different things on MNIST-5k and on the full
MNIST. Our default ``scaling="per_point"`` therefore takes each step along
n · ∂𝓛/∂x_j = ∇_x ∇_w ℓ(z_j; w) · r, whose size does not depend on n (the
objective and its minimisers are unchanged). ``scaling="mean"`` steps along
∂𝓛/∂x_j exactly as written, ``scaling="sum"`` along the gradient of the
released code's objective ‖Σ_clean ∇ℓ + Σ_poison ∇ℓ‖² = 2n²𝓛.

The step rule (``optimizer``, default Adam) and why: :mod:`poisonlib.attacks.gc_steps`.

``variant="official"`` reproduces the choices of the authors' released code
(see ``official-code-notes``): only the first parameter tensor enters the
objective, ``scaling="sum"``, plain gradient descent with step 10, no
projection. It does not reproduce their normalised-pixel space: our features
stay in [0, 1] units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from tqdm import tqdm

from .._meter import capped, repeated
from .._validation import CellFailed, PoisonlibError, check_choice, check_finite, check_int, check_poison_memory, check_positive
from ..grads import PARAM_SUBSETS, global_norm, mean_gradient, sum_gradient, target_params
from ..results import atomic_torch_save
from ..train import resolve_device, show_progress
from .gc_grad import GC_MEMORY_BUDGET, METHODS, chunked_gc_gradient, gc_gradient, linear_gc_gradient, resolve_chunk_size, resolve_method
from .gc_steps import (ADAM_BETA1, ADAM_BETA2, ADAM_LR, CONVERGED_RTOL, OPTIMIZER_DEFAULTS, OPTIMIZERS, PLATEAU_FLOOR, PLATEAU_RTOL, PLATEAU_WINDOW,
                       SCHEDULES, STOPS, _box_bounds, _init_poisons, _make_optimizer, _maybe_resume, _project, _scatter, plateau_reached)

__all__ = ["ADAM_LR", "DEFAULTS_KEY", "GCResult", "GC_MEMORY_BUDGET", "METHODS", "OPTIMIZERS", "OPTIMIZER_DEFAULTS", "VARIANTS",
           "chunked_gc_gradient", "gc_gradient", "gradient_canceling", "linear_gc_gradient", "n_poison_points", "plateau_reached", "resolve_method"]

SCALINGS = ("per_point", "mean", "sum")
CLIPS = (None, "box", "range")

#: Defaults of the two variants; any keyword given explicitly overrides them.
#: ``"paper"`` takes its step rule from ``OPTIMIZER_DEFAULTS`` (default ``"adam"``);
#: ``"official"`` keeps the released code's plain gradient descent with step 10.
VARIANTS = {
    "paper": dict(params="all", scaling="per_point", optimizer="adam", clip="box"),
    "official": dict(params="first", scaling="sum", optimizer="sgd", lr=10.0, momentum=0.0, beta2=None, schedule="cosine", clip=None),
}

#: What the defaults of ``variant="paper"`` resolve to; a results cache keyed on the
#: caller's options (e.g. ``experiments.gc_cell``) should include it so that records
#: made under another default optimiser are not served as this one's.
DEFAULTS_KEY = dict(optimizer="adam", lr=ADAM_LR, betas=(ADAM_BETA1, ADAM_BETA2), schedule="cosine")

#: ``history["converged"]``: the final residual is below ``CONVERGED_RTOL`` times
#: ‖g(μ)‖ (the gradient is cancelled), or the point is stationary:
#: ``history["stationarity"]`` = RMS_j ‖n ∂𝓛/∂x_j‖ / ‖r‖ (the per-poison step
#: J_jᵀ r relative to the residual, scale-free) is below ``STATIONARY_RTOL``
#: (full batch only; with mini-batches only the first test applies). ``CONVERGED_RTOL`` and the
#: ``stop="plateau"`` rule live in :mod:`.gc_steps`.
STATIONARY_RTOL = 1e-2
#: The loop reads the objective back from the device (and checks it is finite) every
#: ``SYNC_EVERY`` epochs, not every step: on a GPU a per-step ``float()`` stalls the queue.
SYNC_EVERY = 50


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


def gradient_canceling(
    target: torch.nn.Module,
    x_clean: torch.Tensor,
    y_clean: torch.Tensor,
    task: str,
    eps_d: float,
    *,
    epochs: int = 1000,
    variant: str = "paper",
    optimizer: str | None = None,
    lr: float | None = None,
    momentum: float | None = None,
    beta2: float | None = None,
    schedule: str | None = None,
    scaling: str | None = None,
    params: str | None = None,
    clip: str | None = "variant",
    box: tuple[float, float] | None = None,
    seed: int = 0,
    device: str = "auto",
    method: str = "auto",
    optimize_labels: bool = False,
    batch_size: int | None = None,
    checkpoint: str | None = None,
    checkpoint_every: int = 100,
    chunk_size: int | str | None = "auto",
    stop: str | None = None,
    progress: bool | None = None,
) -> GCResult:
    """Run Gradient Canceling (Alg. 1) against the fixed ``target`` model.

    Minimises 𝓛(x) = ½‖g(μ) + ε_d g(ν̂(x))‖² (Eq. 31, 33) over the poison
    features x (and labels, with ``optimize_labels``), with the gradient of
    Eq. (34) and the realised budget ε_d = n_p / n (Eq. 32).

    Parameters
    ----------
    target : torch.nn.Module
        The target model w (kept fixed, evaluated in ``eval()`` mode).
    x_clean, y_clean : torch.Tensor
        Clean training data μ (n points).
    task : str
        ``"multiclass"``, ``"binary"`` or ``"regression"``.
    eps_d : float
        Poisoning budget ε_d > 0; n_p = round(ε_d n) poisons (ε_d may exceed 1).
    epochs : int, default 1000
        Optimiser steps over all poisons (the paper: 1000).
    variant : {"paper", "official"}, default "paper"
        ``"paper"``: Alg. 1 as written (all parameters, per-point scaling, box
        projection), with the step rule ``optimizer``. ``"official"``: the
        released code (first tensor, summed objective, plain gradient descent
        with step 10, no projection; see ``VARIANTS``).
    optimizer : {"adam", "lbfgs", "sgd", "paper"}, default "adam" (variant "paper")
        Step rule on the poison features; its defaults are ``OPTIMIZER_DEFAULTS``.

        * ``"adam"`` (default): Adam, lr 0.1, betas (0.5, 0.9), cosine schedule
          to 0 over ``epochs``; one GC gradient per step. The measured choice
          (:mod:`~poisonlib.attacks.gc_steps`): it reaches the target where the paper's setting
          stalls.
        * ``"lbfgs"``: ``torch.optim.LBFGS`` (history 10, strong-Wolfe line
          search, one iteration per epoch, i.e. 2 or more GC gradients per
          epoch), clamped onto the box after each step; full batch only.
        * ``"sgd"``: SGD with ``momentum`` (default 0.9), lr 0.5, cosine schedule.
        * ``"paper"``: App. C.1 exactly: SGD, momentum 0.9, lr 0.5, cosine
          schedule, ``scaling="per_point"`` (kept for comparison; stalls on the
          unbounded problems of Sec. 3.2).
    lr : float, optional
        Step size (initial, before the schedule); the optimiser's default if None.
    momentum : float, optional
        SGD's momentum, or Adam's beta1.
    beta2 : float, optional
        Adam's beta2 (default 0.9).
    schedule : {"cosine", "constant"}, optional
        Learning-rate schedule over ``epochs``; the optimiser's default if None.
    scaling : {"per_point", "mean", "sum"}, optional
        Step direction: ``"per_point"`` (n · ∂𝓛/∂x, default), ``"mean"``
        (∂𝓛/∂x, Eq. 34 as written) or ``"sum"`` (the released code's 2n²·∂𝓛/∂x).
    params : {"all", "first"}, optional
        All parameters in the objective, or only the first tensor.
    clip : {"box", "range", None, "variant"}, default "variant"
        Projection after each step: ``"box"`` onto ``box`` (Alg. 1 line 6; [0, 1]
        pixels), ``"range"`` onto the per-feature range of the clean data (GC-c,
        Sec. 5.4) or ``None``; ``"variant"`` takes the variant's.
    box : tuple of float, optional
        The dataset's feature box, e.g. ``(0, 1)`` for images; ``None`` (default)
        when features are unbounded, as the theory assumes.
    seed : int, default 0
        Seeds the choice of the clean points the poisons start from.
    method : {"auto", "closed_form", "double_backward", "jvp"}, default "auto"
        How the GC gradient is computed (:func:`gc_gradient`); ``"auto"`` is the
        closed form for linear models and reverse-over-reverse otherwise.
    optimize_labels : bool, default False
        Also move the poisons' (continuous) labels, Sec. 4 "we may choose to
        optimize both the feature x and label y"; regression only.
    batch_size : int, optional
        ``None`` (default) is full batch, as on MNIST; else each epoch visits the
        poisons in shuffled mini-batches of this size (App. C.1: 1000 on CIFAR-10
        and TinyImageNet), each step using the batch's mean gradient as its
        estimate of g(ν̂). The trace then holds the mean of the batch residuals;
        the final residual is always exact. Not with ``optimizer="lbfgs"``.
    chunk_size : int, "auto" or None, default "auto"
        Poisons per chunk of the GC gradient (:func:`~poisonlib.attacks.gc_grad.chunked_gc_gradient`)
        and of g(μ) over the clean set: the same vector in two passes, peak memory one
        chunk's graph. ``"auto"`` / ``None``: chunks only when the (batch of) poisons
        would exceed :data:`~poisonlib.attacks.gc_grad.GC_MEMORY_BUDGET` (16 GiB host
        memory on a CPU, 40 GiB on one GPU); below it the run is the unchunked one, bit
        for bit. The chunk used, if any, is ``config["chunk_size"]``.
    stop : {None, "plateau"}, default None
        ``None`` runs all ``epochs``. ``"plateau"`` ends the run once the residual has converged
        or stalled (:func:`plateau_reached`: no relative progress of ``PLATEAU_RTOL`` over the last
        ``PLATEAU_WINDOW`` epochs); the learning-rate schedule still spans ``epochs``, so a run that
        stops early ends before it has annealed. ``history["steps"]`` is the number of epochs run and
        ``history["stopped"]`` why it ended (``"budget"``, ``"plateau"`` or ``"converged"``).
    checkpoint : str, optional
        File to save the state to every ``checkpoint_every`` epochs; a run finding
        a checkpoint of the same configuration resumes from it and ends with
        identical results (on CPU).

    Returns
    -------
    GCResult
        ``history`` holds ``objective`` and ``residual`` per epoch,
        ``final_residual`` (exact, at the returned poisons), ``initial_residual``
        = ‖g(μ)‖, ``stationarity`` = RMS_j ‖n ∂𝓛/∂x_j‖ / ‖r‖ at the end (full
        batch; ``None`` with mini-batches) and ``converged``: the final residual
        is below ``CONVERGED_RTOL`` = 1e-4 times ‖g(μ)‖, or ``stationarity`` is
        below ``STATIONARY_RTOL`` = 1e-2 (a stationary point: below τ, or where
        kept labels and the box make the target unreachable, GC stops at a
        positive residual).
    """
    check_choice("variant", variant, VARIANTS)
    opts = dict(VARIANTS[variant])
    if optimizer is not None and optimizer != opts["optimizer"]:  # another step rule: drop the variant's step settings
        opts = {k: v for k, v in opts.items() if k not in ("lr", "momentum", "beta2", "schedule")}
        opts["optimizer"] = optimizer
    check_choice("optimizer", opts["optimizer"], OPTIMIZERS)
    opts = {**OPTIMIZER_DEFAULTS[opts["optimizer"]], **opts}
    if opts["optimizer"] == "paper":
        opts.update(scaling="per_point")
    given = dict(lr=lr, momentum=momentum, beta2=beta2, schedule=schedule, scaling=scaling, params=params)
    opts.update({k: v for k, v in given.items() if v is not None})
    if clip != "variant":
        opts["clip"] = clip
    if stop not in STOPS:
        raise PoisonlibError(f"unknown stop {stop!r}; choose from: None, 'plateau'")
    check_choice("scaling", opts["scaling"], SCALINGS)
    check_choice("params", opts["params"], PARAM_SUBSETS)
    check_choice("schedule", opts["schedule"], SCHEDULES)
    if opts["clip"] not in CLIPS:
        raise PoisonlibError(f"unknown clip {opts['clip']!r}; choose from: None, 'box', 'range'")
    method = resolve_method(target, target_params(target, opts["params"]), method)
    if optimize_labels and task != "regression":
        raise PoisonlibError(f"optimize_labels needs continuous labels (task 'regression'), not {task!r}")
    epochs = check_int("epochs", epochs, minimum=0)
    if batch_size is not None:
        batch_size = check_int("batch_size", batch_size, minimum=1)
    lr_ = check_positive("lr", opts["lr"])
    mom = check_positive("momentum", opts["momentum"], allow_zero=True)
    if opts["beta2"] is not None:
        check_positive("beta2", opts["beta2"])
    check_finite("clean features", x_clean)
    n = len(x_clean)
    n_p = n_poison_points(eps_d, n)
    eps = n_p / n  # realised budget: ε_d g(ν̂) = (1/n) Σ_poisons ∇ℓ exactly
    dev = resolve_device(device)
    check_poison_memory(eps_d, n, x_clean[0].numel(), dev)
    config = dict(variant=variant, eps_d=float(eps_d), n=n, n_poison=n_p, epochs=epochs, seed=seed, method=method, box=box,
                  optimize_labels=optimize_labels, **opts)
    if stop is not None:
        config["stop"] = stop
    if batch_size is not None and batch_size < n_p:
        if opts["optimizer"] == "lbfgs":
            raise PoisonlibError("optimizer='lbfgs' needs the full batch (its line search compares objectives); use 'adam' with batch_size")
        config["batch_size"] = batch_size
    else:
        batch_size = n_p

    target = target.to(dev).eval()
    w = target_params(target, opts["params"])
    chunk = resolve_chunk_size(chunk_size, target, w, x_clean, y_clean, task, method, batch_size, dev)
    if chunk is not None:
        config["chunk_size"] = chunk
    clean_chunk = 2048 if chunk is None else min(2048, chunk)  # g(μ): 2048 clean points a chunk, fewer when poisons are chunked
    g_mu = mean_gradient(target, x_clean, y_clean, task, params=w, chunk=clean_chunk)
    lo, hi = _box_bounds(opts["clip"], box, x_clean)
    lo, hi = [b.to(dev) if isinstance(b, torch.Tensor) else b for b in (lo, hi)]
    x0, y_p, init_idx = _init_poisons(x_clean, y_clean, n_p, seed)
    x_p = x0.to(dev).requires_grad_(True)
    y_p = y_p.to(dev).requires_grad_(optimize_labels)
    leaves = [x_p, y_p] if optimize_labels else [x_p]
    opt = _make_optimizer(opts, leaves, lr_, mom)
    T = max(epochs, 1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, (lambda e: 0.5 * (1 + math.cos(math.pi * min(e, T) / T))) if opts["schedule"] == "cosine" else (lambda e: 1.0))
    scale = {"per_point": n, "mean": 1.0, "sum": 2.0 * n * n}[opts["scaling"]]
    history = {"objective": [], "residual": []}
    start = _maybe_resume(checkpoint, config, x_p, y_p, opt, sched, history)

    bar = tqdm(range(start, epochs), desc=f"GC eps_d={eps_d:g}", disable=not show_progress(progress), leave=False, initial=start, total=epochs)
    gen = torch.Generator().manual_seed(seed + 1)
    for _ in range(start):  # replay the batch order of the epochs already done
        torch.randperm(n_p, generator=gen)

    def evaluate(xb, yb, idx, weight):
        """GC gradient of the (batch) objective into ``.grad``, scaled; returns 𝓛 of the batch."""
        grads, obj = gc_gradient(target, w, xb, yb, g_mu, eps, task, method, optimize_labels, chunk_size=chunk)
        gx, gy = grads if optimize_labels else (grads, None)
        x_p.grad = _scatter(weight * gx, idx, x_p)
        if optimize_labels:
            y_p.grad = _scatter(weight * gy, idx, y_p)
        return obj

    pending = []  # epoch objectives not yet read back: the loop syncs with the device every SYNC_EVERY epochs only

    def flush(epoch):
        vals = torch.stack(pending).double().cpu().tolist() if pending else []
        pending.clear()
        for k, v in enumerate(vals):
            if not math.isfinite(v):
                raise CellFailed(f"GC diverged (objective {v} at epoch {epoch - len(vals) + k + 1}); lower lr={lr_}")
            history["objective"].append(v)
            history["residual"].append(math.sqrt(2 * v))
        if vals:
            bar.set_postfix(residual=f"{history['residual'][-1]:.3g}")

    stopped, steps = "budget", epochs
    initial = None if stop is None else global_norm(g_mu)
    for epoch in bar:
        if stop is not None and epoch > start and epoch % SYNC_EVERY == 0:  # the objective was just read back
            why = plateau_reached(history["residual"], initial)
            if why is not None:
                stopped, steps = why, epoch
                break
        objs = []
        if opts["optimizer"] == "lbfgs":
            def closure(objs=objs):
                obj = evaluate(x_p.detach(), y_p.detach(), None, scale)
                if not objs:  # the epoch's objective: before its step (the line search evaluates more)
                    objs.append(obj)
                return scale * obj

            opt.step(closure)
            _project(x_p, lo, hi)
        else:
            order = torch.randperm(n_p, generator=gen).to(dev) if batch_size < n_p else None
            for i in capped(range(0, n_p, batch_size), "GC batches"):
                idx = None if order is None else order[i : i + batch_size]
                xb = x_p.detach() if idx is None else x_p.detach()[idx]
                yb = y_p.detach() if idx is None else y_p.detach()[idx]
                # the batch stands in for all poisons: eps * mean over the batch
                opt.zero_grad(set_to_none=True)
                objs.append(evaluate(xb, yb, idx, scale * len(xb) / n_p))
                opt.step()
                _project(x_p, lo, hi)
        sched.step()
        pending.append(objs[0] if len(objs) == 1 else torch.stack(objs).mean())
        save = checkpoint and ((epoch + 1) % checkpoint_every == 0 or epoch + 1 == epochs)
        if save or (epoch + 1) % SYNC_EVERY == 0 or epoch + 1 == epochs:
            flush(epoch)
        if save:
            atomic_torch_save(dict(config=config, epoch=epoch + 1, x=x_p.detach().cpu(), y=y_p.detach().cpu(), opt=opt.state_dict(), sched=sched.state_dict(), history=history), checkpoint)

    stat = None
    if batch_size < n_p:  # exact final residual over all poisons, in chunks
        g_sum = sum_gradient(target, w, x_p.detach(), y_p.detach(), task, chunk=clean_chunk)
        obj = 0.5 * global_norm({k: g_mu[k] + g_sum[k] / n for k in w}) ** 2
    else:
        with repeated("GC gradient", "GC residual chunks", "GC poison chunks"):  # a dry run prices it from the steps' chunks of the same size
            grads, obj = gc_gradient(target, w, x_p.detach(), y_p.detach(), g_mu, eps, task, method, chunk_size=chunk)
        obj = float(obj)
        if lo is not None:  # projected gradient: drop the components pushing out of the box
            xd = x_p.detach()
            grads = torch.where(((xd <= lo) & (grads > 0)) | ((xd >= hi) & (grads < 0)), torch.zeros_like(grads), grads)
        # per-poison step n ∂𝓛/∂x_j = J_jᵀ r, RMS over the poisons, relative to ‖r‖
        stat = float(n * grads.double().norm() / math.sqrt(n_p)) / max(math.sqrt(2 * obj), 1e-300)
    history["final_objective"] = float(obj)
    history["final_residual"] = math.sqrt(2 * float(obj))
    history["initial_residual"] = global_norm(g_mu)
    history["stationarity"] = stat
    history["steps"], history["stopped"] = steps, stopped
    history["converged"] = bool(history["final_residual"] <= CONVERGED_RTOL * history["initial_residual"]
                                or (stat is not None and stat <= STATIONARY_RTOL))
    return GCResult(x=x_p.detach().cpu(), y=y_p.detach().cpu(), init_index=init_idx, eps_d=eps, history=history, config=config)
