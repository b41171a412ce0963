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

The step rule (``optimizer``). Each poison contributes φ_j = ∇_w ℓ(z_j; w) to
the residual r = g(μ) + (1/n) Σ_j φ_j ∈ R^p, and its per-point step is
n ∂𝓛/∂x_j = J_jᵀ r with J_j = ∂φ_j/∂x_j (Eq. 34). Plain (momentum) gradient
descent therefore contracts r at the rates of M = (1/n) Σ_j J_j J_jᵀ, which is
badly conditioned: poisons whose margin saturates have J_j ≈ 0 (for the
logistic loss σ(t) − y rounds to 0 in float32 beyond |t| ≈ 17) and, just above
τ, Cor. 2 needs most poisons near the minimiser t* = 1 + W(1/e) of t l'(t),
where ∂(t l'(t))/∂t = 0, so the direction of w in r is contracted only at
second order. Measured (``optimizer=``, 1000 epochs, seed 0; refit =
scikit-learn ``LogisticRegression(C=100)`` on clean ∪ poisons, distance
‖w_refit − w‖/‖w‖; GradPC ε_w = 1 Gaussian-10 target, τ(2) = 0.119, and
the OR target (−2, −1.5, 0.5), τ(2) = 4.54; unbounded features):

=====================  ===================  ===================  ==================  ==================
optimizer              Gaussian 1.5τ        Gaussian 3τ          OR 1.5τ             OR 3τ
                       residual / refit     residual / refit     residual / refit    residual / refit
=====================  ===================  ===================  ==================  ==================
``"paper"`` (App C.1)  9.3e-3 / 3.4         5.5e-3 / 1.8         4.5e-1 / 0.96       4.4e-1 / 0.93
Adam lr .05 β(.9,.999) 3.9e-3 / 0.105       3.7e-5 / 0.003       8.5e-2 / 0.10       3.0e-8 / 0.000
``"lbfgs"``            3.7e-2 / 8.6         6.2e-2 / 9.9         8.4e-2 / 0.10       3.7e-7 / 0.000
Gauss-Newton (CG)      9.7e-3 / 3.1         3.1e-3 / 0.74        8.3e-2 / 0.094      6.7e-8 / 0.000
``"adam"`` (default)   9.8e-4 / 0.028       1.6e-9 / 0.002       8.3e-2 / 0.097      6.7e-8 / 0.000
=====================  ===================  ===================  ==================  ==================

(initial residuals 0.19 and 0.76; 0.8–2.5 s per run on one core for the
first-order rules, 2× for L-BFGS, 5× for Gauss-Newton with 20 CG steps on
JJᵀ; below τ every rule stops above Cor. 2's bound.) Adam's per-coordinate
normalisation moves the saturated poisons that gradient descent leaves in
place, and the short memories β = (0.5, 0.9) follow the slowly turning
gradient near t* instead of overshooting it (β = (0.9, 0.999): 3.9e-3 at
1.5τ; lr 0.05–0.2 all reach ≈ 1e-3 there). L-BFGS and Gauss-Newton /
Levenberg–Marquardt on r (matrix-free J, Jᵀ via ``torch.func`` jvp / vjp and
CG on JJᵀ + λI) do worse: their curvature model is dominated by the
non-saturated poisons and they leave the others where they started; L-BFGS
also needs the full batch. On OR at 1.5τ every rule stops at the same
stationary residual 8.3e-2 (the intercept's coordinate of x̃ is fixed by the
kept label); GC reaches that target from 2τ. On MNIST-5k LR inside the
[0, 1] box (ε_w = 1 GradPC target, τ(2) = 2.82) Adam reaches 0.146 at τ
in 300 epochs vs 0.282 for App. C.1's setting, and 2.07 vs 2.11 at
ε_d = 0.1 in 1000 epochs (L-BFGS clamped to the box: 2.32): the box sets
the floor there. Hence ``optimizer="adam"`` (lr 0.1, betas (0.5, 0.9),
cosine schedule) is the default; ``optimizer="paper"`` keeps App. C.1's
setting for comparison.

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
import torch.nn.functional as F
from torch.func import functional_call
from tqdm import tqdm

from .._validation import PoisonlibError, check_choice, check_finite, check_int, check_poison_memory, check_positive
from ..grads import PARAM_SUBSETS, global_norm, mean_gradient, sum_gradient, target_params
from ..models import LinearModel, loss_fn
from ..results import atomic_torch_save, load_torch
from ..train import resolve_device, show_progress

ADAM_LR, ADAM_BETA1, ADAM_BETA2 = 0.1, 0.5, 0.9  # measured, see the module docstring
SCALINGS = ("per_point", "mean", "sum")
METHODS = ("auto", "closed_form", "double_backward", "jvp")
OPTIMIZERS = ("adam", "lbfgs", "sgd", "paper")
CLIPS = (None, "box", "range")
SCHEDULES = ("cosine", "constant")

#: Step rules on the poison features and their defaults (``lr``, ``momentum``,
#: ``beta2``, learning-rate ``schedule``). ``"paper"`` is App. C.1 exactly: SGD,
#: momentum 0.9, lr 0.5, cosine schedule, per-point step scaling.
OPTIMIZER_DEFAULTS = {
    "adam": dict(optimizer="adam", lr=ADAM_LR, momentum=ADAM_BETA1, beta2=ADAM_BETA2, schedule="cosine"),
    "lbfgs": dict(optimizer="lbfgs", lr=1.0, momentum=0.0, beta2=None, schedule="constant"),
    "sgd": dict(optimizer="sgd", lr=0.5, momentum=0.9, beta2=None, schedule="cosine"),
    "paper": dict(optimizer="paper", lr=0.5, momentum=0.9, beta2=None, schedule="cosine", scaling="per_point"),
}

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
#: (full batch only; with mini-batches only the first test applies).
CONVERGED_RTOL = 1e-4
#: The loop reads the objective back from the device (and checks it is finite) every
#: ``SYNC_EVERY`` epochs, not every step: on a GPU a per-step ``float()`` stalls the queue.
SYNC_EVERY = 50
STATIONARY_RTOL = 1e-2


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


def resolve_method(model, params, method: str = "auto") -> str:
    """``"auto"``: ``"closed_form"`` for a :class:`~poisonlib.models.LinearModel`, else ``"double_backward"``."""
    check_choice("method", method, METHODS)
    linear = isinstance(model, LinearModel) and set(params) <= {"weight", "bias"}
    if method == "closed_form" and not linear:
        raise PoisonlibError(f"method 'closed_form' needs a linear model (lr, linreg), not {type(model).__name__}")
    if method == "auto":
        return "closed_form" if linear else "double_backward"
    return method


def gc_gradient(model, params, x_p, y_p, g_mu, eps, task, method="auto", wrt_labels: bool = False):
    """(∂𝓛/∂x_p, 𝓛) at poisons ``x_p`` for 𝓛 = ½‖g(μ) + eps · g(ν̂)‖² (Eq. 33, 34).

    ``double_backward`` differentiates through the poison gradient built with
    ``create_graph=True`` (reverse-over-reverse). ``jvp`` computes r = g(μ) +
    eps g(ν̂) first, then ∇_x eps ⟨g(ν̂), stop_grad(r)⟩ with the directional
    derivative ⟨∇_w ℓ, r⟩ from ``torch.func.jvp`` (reverse-over-forward).
    ``closed_form`` (linear models; what ``auto`` picks for them) evaluates
    Eq. (34) in matrix products, see :func:`linear_gc_gradient`.
    All give the same vector. With ``wrt_labels`` (continuous labels, i.e.
    regression) the first element is the pair (∂𝓛/∂x_p, ∂𝓛/∂y_p).
    """
    method = resolve_method(model, params, method)
    if method == "closed_form":
        return linear_gc_gradient(model, params, x_p, y_p, g_mu, eps, task, wrt_labels)
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


def linear_gc_gradient(model, params, x_p, y_p, g_mu, eps, task, wrt_labels: bool = False):
    """:func:`gc_gradient` for a linear model h = W x + b, in closed form.

    With δ_j = ∂ℓ/∂h at poison j (softmax p_j − e_{y_j}, σ(h_j) − y_j, or h_j − y_j)
    and c = eps / n_p, the residual is r = (R_W, R_b) = g(μ) + c Σ_j (δ_j x_jᵀ, δ_j)
    (Eq. 33) and ⟨r, ∇_w ℓ(z_j)⟩ = δ_jᵀ u_j with u_j = R_W x_j + R_b, so Eq. (34) is

        ∂𝓛/∂x_j = c (Wᵀ H_j u_j + R_Wᵀ δ_j),   H_j = ∂δ_j/∂h = ∇²_h ℓ(z_j)

    (H_j u = p ⊙ u − p (pᵀu) for softmax, σ'(h) u for the logistic loss, u for
    squares) and, for regression labels, ∂𝓛/∂y_j = −c u_j: four matrix products
    over the poisons where the autograd step builds and differentiates a graph.
    Parameters absent from ``params`` (``params="first"``) leave their block of r out.
    """
    W = params.get("weight", model.weight).detach()
    bias = params.get("bias", model.bias)
    X = x_p.flatten(1)
    h = F.linear(X, W, None if bias is None else bias.detach())
    if task == "multiclass":
        p = torch.softmax(h, dim=1)
        delta = p.clone()
        delta[torch.arange(len(X), device=X.device), y_p] -= 1
    elif task == "binary":
        p = torch.sigmoid(h)
        delta = p - y_p.to(h.dtype).reshape(-1, 1)
    else:
        delta = h - y_p.to(h.dtype).reshape(-1, 1)
    c = eps / len(X)
    r_w = g_mu["weight"] + c * (delta.T @ X) if "weight" in params else None
    r_b = g_mu["bias"] + c * delta.sum(0) if "bias" in params else None
    obj = 0.5 * sum((t * t).sum() for t in (r_w, r_b) if t is not None)
    u = (X @ r_w.T if r_w is not None else torch.zeros_like(h)) + (r_b if r_b is not None else 0)
    if task == "multiclass":
        s = p * u - p * (p * u).sum(1, keepdim=True)
    elif task == "binary":
        s = p * (1 - p) * u
    else:
        s = u
    gx = s @ W if r_w is None else torch.cat([s, delta], 1) @ torch.cat([W, r_w], 0)
    gx = (c * gx).reshape(x_p.shape)
    if wrt_labels:
        return (gx, (-c * u).reshape(y_p.shape)), obj.detach()
    return gx.detach(), obj.detach()


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
          (module docstring): it reaches the target where the paper's setting
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
    if batch_size is not None and batch_size < n_p:
        if opts["optimizer"] == "lbfgs":
            raise PoisonlibError("optimizer='lbfgs' needs the full batch (its line search compares objectives); use 'adam' with batch_size")
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
        grads, obj = gc_gradient(target, w, xb, yb, g_mu, eps, task, method, optimize_labels)
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
                raise PoisonlibError(f"GC diverged (objective {v} at epoch {epoch - len(vals) + k + 1}); lower lr={lr_}")
            history["objective"].append(v)
            history["residual"].append(math.sqrt(2 * v))
        if vals:
            bar.set_postfix(residual=f"{history['residual'][-1]:.3g}")

    for epoch in bar:
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
            for i in range(0, n_p, batch_size):
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
        g_sum = sum_gradient(target, w, x_p.detach(), y_p.detach(), task)
        obj = 0.5 * global_norm({k: g_mu[k] + g_sum[k] / n for k in w}) ** 2
    else:
        grads, obj = gc_gradient(target, w, x_p.detach(), y_p.detach(), g_mu, eps, task, method)
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
    history["converged"] = bool(history["final_residual"] <= CONVERGED_RTOL * history["initial_residual"]
                                or (stat is not None and stat <= STATIONARY_RTOL))
    return GCResult(x=x_p.detach().cpu(), y=y_p.detach().cpu(), init_index=init_idx, eps_d=eps, history=history, config=config)


def _make_optimizer(opts, leaves, lr, mom):
    """The torch optimiser of ``opts["optimizer"]`` on the poison leaves."""
    name = opts["optimizer"]
    if name == "adam":
        return torch.optim.Adam(leaves, lr=lr, betas=(mom, opts["beta2"] if opts["beta2"] is not None else ADAM_BETA2))
    if name == "lbfgs":
        return torch.optim.LBFGS(leaves, lr=lr, max_iter=1, history_size=10, line_search_fn="strong_wolfe", tolerance_grad=0.0, tolerance_change=0.0)
    return torch.optim.SGD(leaves, lr=lr, momentum=mom)  # "sgd", "paper"


def _project(x_p, lo, hi):
    """Alg. 1, line 6: clamp the poisons onto the admissible box (no-op without one)."""
    if lo is not None:
        with torch.no_grad():
            x_p.copy_(torch.clamp(x_p, lo, hi))


def _scatter(g, idx, like):
    """The full-size gradient of ``like`` with ``g`` at rows ``idx`` (all rows when ``idx`` is None)."""
    if idx is None:
        return g
    full = torch.zeros_like(like)
    full[idx] = g
    return full


def _maybe_resume(checkpoint, config, x_p, y_p, opt, sched, history) -> int:
    """Load a checkpoint of the same ``config`` into the live state; return the epoch reached."""
    state = load_torch(checkpoint, ("config", "epoch", "x", "y", "opt", "sched", "history")) if checkpoint else None
    if state is None:  # none, or corrupt (then quarantined): start from epoch 0
        return 0
    if state.get("config") != config:
        raise PoisonlibError(f"checkpoint {checkpoint!r} belongs to another GC configuration; delete it or pass another path")
    with torch.no_grad():
        x_p.copy_(state["x"].to(x_p.device))
        y_p.copy_(state["y"].to(y_p.device))
    opt.load_state_dict(state["opt"])
    sched.load_state_dict(state["sched"])
    history.update(state["history"])
    return int(state["epoch"])
