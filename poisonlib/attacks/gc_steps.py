"""GC's step rules on the poison features, its stopping rule, the box projection, initialisation and checkpoint resumption.

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
"""

from __future__ import annotations

import torch

from .._validation import PoisonlibError
from ..results import load_torch

ADAM_LR, ADAM_BETA1, ADAM_BETA2 = 0.1, 0.5, 0.9  # measured, see the module docstring
OPTIMIZERS = ("adam", "lbfgs", "sgd", "paper")
SCHEDULES = ("cosine", "constant")
#: ``history["converged"]`` threshold on ‖r‖ / ‖g(μ)‖, shared with :mod:`.gc`.
CONVERGED_RTOL = 1e-4
#: ``stop="plateau"``: GC ends early when it has stalled short of the target: the best residual of the last
#: ``PLATEAU_WINDOW`` epochs is not ``PLATEAU_RTOL`` (relatively) below the best before them *and* still above
#: ``PLATEAU_FLOOR``·‖g(μ)‖ (a run that is cancelling the gradient is never cut: with Adam at its initial step the
#: residual of a reachable target bounces between 1e-4 and 1e-2 of ‖g(μ)‖ mid-run and converges as the cosine
#: schedule anneals); or when the residual is below ``CONVERGED_RTOL``·‖g(μ)‖. Checked every ``gc.SYNC_EVERY`` epochs.
PLATEAU_WINDOW = 100
PLATEAU_RTOL = 1e-3
PLATEAU_FLOOR = 1e-2
STOPS = (None, "plateau")


def plateau_reached(residuals: list, initial: float, *, window: int = PLATEAU_WINDOW, rtol: float = PLATEAU_RTOL,
                    floor: float = PLATEAU_FLOOR) -> str | None:
    """Why GC may stop now (``"converged"``, ``"plateau"``) or ``None``: the rule of ``stop="plateau"``.

    ``residuals`` is ‖g(μ) + ε_d g(ν̂)‖ per epoch so far, ``initial`` = ‖g(μ)‖. A plateau: at least
    ``2·window`` epochs run, min(last ``window``) ≥ (1 − ``rtol``)·min(the epochs before them) and
    min(last ``window``) > ``floor``·``initial`` (stalled short of the target, as below τ, Cor. 2 / Eq. 29)."""
    if residuals and residuals[-1] <= CONVERGED_RTOL * initial:
        return "converged"
    if len(residuals) >= 2 * window:
        best = min(residuals[-window:])
        if best >= (1 - rtol) * min(residuals[:-window]) and best > floor * initial:
            return "plateau"
    return None



#: Step rules on the poison features and their defaults (``lr``, ``momentum``,
#: ``beta2``, learning-rate ``schedule``). ``"paper"`` is App. C.1 exactly: SGD,
#: momentum 0.9, lr 0.5, cosine schedule, per-point step scaling.
OPTIMIZER_DEFAULTS = {
    "adam": dict(optimizer="adam", lr=ADAM_LR, momentum=ADAM_BETA1, beta2=ADAM_BETA2, schedule="cosine"),
    "lbfgs": dict(optimizer="lbfgs", lr=1.0, momentum=0.0, beta2=None, schedule="constant"),
    "sgd": dict(optimizer="sgd", lr=0.5, momentum=0.9, beta2=None, schedule="cosine"),
    "paper": dict(optimizer="paper", lr=0.5, momentum=0.9, beta2=None, schedule="cosine", scaling="per_point"),
}


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


def _box_bounds(clip, box, x_clean):
    """Lower / upper bounds of the admissible set, or (None, None)."""
    if clip == "box":
        return (None, None) if box is None else (float(box[0]), float(box[1]))
    if clip == "range":  # GC-c (Sec. 5.4): per-feature range of the clean training data
        return x_clean.amin(dim=0), x_clean.amax(dim=0)
    return None, None


def _init_poisons(x_clean, y_clean, n_p, seed):
    """Random clean sample (Alg. 1, line 1): without replacement when n_p <= n."""
    gen = torch.Generator().manual_seed(seed)
    n = len(x_clean)
    idx = torch.randperm(n, generator=gen)[:n_p] if n_p <= n else torch.randint(0, n, (n_p,), generator=gen)
    return x_clean[idx].clone(), y_clean[idx].clone(), idx
