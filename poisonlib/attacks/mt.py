"""Model-Targeted (MT) poisoning, the online algorithm of Suya, Mahloujifar,
Suri, Evans & Tian 2021, "Model-targeted poisoning attacks with provable
convergence", ICML (Alg. 1; bib key ``suya2021model``).

Start with D_p = ∅. In round t:

1. θ_t = the model trained on D_c ∪ D_p (warm-started from θ_{t-1});
2. find the point of maximum loss difference to the target θ_p,

   .. math::  (x^*, y^*) = \\arg\\max_{x \\in \\mathcal X,\\, y} \\; \\ell(\\theta_t; x, y) - \\ell(\\theta_p; x, y);

3. if that maximum is below ``stop_eps``, θ_t is ε-close to the target
   (their stopping criterion) and the attack stops; otherwise add
   ``per_round`` copies of (x*, y*) to D_p. It also stops at the budget
   n_p_max = round(ε_d n) poisons.

For convex losses Suya et al. prove that θ_t converges to the target. The
search of step 2 runs projected gradient ascent (Adam, ``ascent_steps``
steps) from ``n_starts`` seeded clean examples for every label, over the
feature box; with ``box=None`` the per-feature range of the clean data is used
instead, since on ℝ^d the loss difference of two distinct linear models is
unbounded.

Deviations: Suya et al. add one point per round and solve step 2 exactly for
convex models (a convex program per label for SVM); we allow ``per_round``
copies of each maximiser to save retraining, and use a multi-start projected
ascent for every model. Retraining uses :func:`poisonlib.train.train`
(default for :class:`~poisonlib.models.LinearModel`: L-BFGS to optimality)
or any ``fit(x, y, init_model) -> model`` callable; the paper's neural
setting (App. C.6) is ``stop_eps = 10`` with 20 training epochs.

Caveat: the loss difference is in per-example loss units over the whole box,
so it scales with the weights' norm. Unregularised LR on data it separates
(the embedded MNIST-17 subset: 560 points in 784 dimensions) has no optimum;
the warm-started iterates keep growing and the maximum loss difference grows
with them (hundreds to thousands instead of falling below 0.1).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from tqdm import tqdm

from .._validation import PoisonlibError, check_finite, check_int, check_positive
from ..models import LinearModel, loss_fn
from ..train import resolve_device, show_progress, train
from .gc import GCResult, n_poison_points

LR_TRAIN = dict(epochs=20, lr=1.0, optimizer="lbfgs")


def _config_dict(train_config) -> dict:
    """Keyword arguments of :func:`poisonlib.train.train` from a dict, a ``TrainConfig`` or ``None``."""
    return train_config.as_dict() if hasattr(train_config, "as_dict") else dict(train_config or {})


def _fresh_like(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """A re-initialised copy of ``model`` (seeded), the starting point of θ_0."""
    fresh = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for m in fresh.modules():
            if hasattr(m, "reset_parameters") and m is not fresh:
                m.reset_parameters()
        if isinstance(fresh, LinearModel):  # its parameters live on the module itself
            lin = torch.nn.Linear(fresh.weight.shape[1], fresh.weight.shape[0], bias=fresh.bias is not None)
            with torch.no_grad():
                fresh.weight.copy_(lin.weight)
                if fresh.bias is not None:
                    fresh.bias.copy_(lin.bias)
    return fresh


def _default_fit(task, train_config, seed, dev):
    def fit(x, y, init_model):
        model = copy.deepcopy(init_model)
        return train(model, x, y, task, seed=seed, device=dev, progress=False, **train_config)[0]

    return fit


def _labels(task, target, y_clean):
    if task == "binary":
        return torch.tensor([0, 1], dtype=y_clean.dtype)
    if task == "multiclass":
        out = next(m for m in reversed(list(target.modules())) if isinstance(m, (torch.nn.Linear, LinearModel)))
        return torch.arange(out.weight.shape[0], dtype=y_clean.dtype)
    raise PoisonlibError(f"the MT attack needs a classification task ('binary' or 'multiclass'), got {task!r}")


def max_loss_difference(model, target, x_clean, labels, task, lo, hi, *, n_starts=4, steps=100, lr=0.1, seed=0):
    """(max value, x*, y*) of ℓ(model; x, y) − ℓ(target; x, y) over x in [lo, hi] and y in ``labels``.

    Projected Adam ascent from ``n_starts`` seeded clean examples per label, all
    starts in one batch; the best iterate of any start is returned.
    """
    loss = loss_fn(task, reduction="none")
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(len(x_clean), (n_starts * len(labels),), generator=gen)
    dev = next(model.parameters()).device
    x = x_clean[idx].clone().to(dev).clamp(lo, hi).requires_grad_(True)
    y = labels.repeat_interleave(n_starts).to(dev)
    opt = torch.optim.Adam([x], lr=lr)
    best_val, best_x, best_y = -float("inf"), None, None
    for step in range(steps + 1):
        diff = loss(model(x), y) - loss(target(x), y)
        vals = diff.detach()
        i = int(vals.argmax())
        if float(vals[i]) > best_val:
            best_val, best_x, best_y = float(vals[i]), x[i].detach().clone(), y[i].clone()
        if step == steps:
            break
        (x.grad,) = torch.autograd.grad(-diff.sum(), [x])  # parameters keep their requires_grad
        opt.step()
        with torch.no_grad():
            x.copy_(torch.maximum(torch.minimum(x, hi), lo))
    return best_val, best_x.cpu(), best_y.cpu()


def model_targeted(
    target: torch.nn.Module,
    x_clean: torch.Tensor,
    y_clean: torch.Tensor,
    task: str,
    eps_d: float,
    *,
    fit: Callable | None = None,
    stop_eps: float = 0.1,
    per_round: int = 1,
    n_starts: int = 4,
    ascent_steps: int = 100,
    ascent_lr: float = 0.1,
    train_config: dict | None = None,
    box: tuple[float, float] | None = None,
    seed: int = 0,
    device: str = "auto",
    progress: bool | None = None,
) -> GCResult:
    """Run the online Model-Targeted attack (Suya et al. 2021) towards ``target``.

    Parameters
    ----------
    target : the target model θ_p (kept fixed, eval mode).
    x_clean, y_clean : clean training data D_c (n points).
    task : ``"binary"`` or ``"multiclass"``.
    eps_d : budget; at most n_p_max = round(ε_d n) poisons.
    fit : ``fit(x, y, init_model) -> model`` retraining on D_c ∪ D_p from a copy
        of ``init_model`` (must not modify it in place). ``None``: :func:`poisonlib.train.train`
        with ``train_config`` (dict or ``TrainConfig``; ``LinearModel`` default ``epochs=20, lr=1.0,
        optimizer="lbfgs"``; other models need ``train_config``).
    stop_eps : stop once the maximum loss difference is below it (Suya et al.:
        0.1 on MNIST 1-7 LR; App. C.6 of the paper: 10 for networks).
    per_round : copies of each round's maximiser added to D_p (Suya et al.: 1).
    n_starts, ascent_steps, ascent_lr : the multi-start projected ascent of step 2.
    box : feature box, e.g. ``(0, 1)``; ``None`` uses the clean data's per-feature range.
    seed : initialisation of θ_0, training and ascent starts.

    Returns
    -------
    GCResult with the poisons in order of addition, ``init_index`` filled with -1
    (no poison is a clean point), ``history["loss_diff"]`` / ``history["n_poison"]``
    the maximum loss difference and the poisons in D_p at each round's check,
    ``config["reached"]`` whether the stopping criterion was met and
    ``config["n_p_reached"]`` the number of poisons when the attack stopped.
    """
    stop_eps = check_positive("stop_eps", stop_eps)
    per_round = check_int("per_round", per_round, minimum=1)
    n_starts = check_int("n_starts", n_starts, minimum=1)
    ascent_steps = check_int("ascent_steps", ascent_steps, minimum=0)
    ascent_lr = check_positive("ascent_lr", ascent_lr)
    check_finite("clean features", x_clean)
    if fit is not None and not callable(fit):
        raise PoisonlibError(f"fit must be a callable fit(x, y, init_model) -> model or None, got {fit!r}")
    if fit is None and train_config is None and not isinstance(target, LinearModel):
        raise PoisonlibError(f"pass train_config (or fit) to retrain a {type(target).__name__}; only LinearModel has a default")
    n = len(x_clean)
    n_p_max = n_poison_points(eps_d, n)
    dev = resolve_device(device)
    labels = _labels(task, target, y_clean)
    cfg = dict(LR_TRAIN, **_config_dict(train_config)) if isinstance(target, LinearModel) else _config_dict(train_config)
    given_fit = fit is not None
    fit = fit or _default_fit(task, cfg, seed, dev)
    target = copy.deepcopy(target).to(dev).eval()
    if box is None:
        lo, hi = x_clean.amin(dim=0), x_clean.amax(dim=0)
    else:
        lo, hi = torch.full(x_clean.shape[1:], float(box[0])), torch.full(x_clean.shape[1:], float(box[1]))
    lo, hi = lo.to(dev, x_clean.dtype), hi.to(dev, x_clean.dtype)

    xs, ys = [], []
    history = {"loss_diff": [], "n_poison": []}
    model = _fresh_like(target, seed)
    reached = False
    bar = tqdm(desc=f"MT eps_d={eps_d:g}", total=n_p_max, disable=not show_progress(progress), leave=False)
    for rnd in range(n_p_max + 1):
        x_p = torch.stack(xs) if xs else x_clean[:0]
        y_p = torch.stack(ys) if ys else y_clean[:0]
        model = fit(torch.cat([x_clean, x_p]), torch.cat([y_clean, y_p]), model).to(dev).eval()
        val, x_star, y_star = max_loss_difference(model, target, x_clean, labels, task, lo, hi, n_starts=n_starts,
                                                  steps=ascent_steps, lr=ascent_lr, seed=seed + rnd)
        history["loss_diff"].append(val)
        history["n_poison"].append(len(xs))
        bar.set_postfix(loss_diff=f"{val:.3g}")
        if val < stop_eps:
            reached = True
            break
        if len(xs) >= n_p_max:
            break
        k = min(per_round, n_p_max - len(xs))
        xs += [x_star] * k
        ys += [y_star] * k
        bar.update(k)
    bar.close()
    n_p = len(xs)
    x = torch.stack(xs) if xs else x_clean[:0].clone()
    y = torch.stack(ys) if ys else y_clean[:0].clone()
    config = dict(attack="mt", eps_d=float(eps_d), n=n, n_p_max=n_p_max, n_p_reached=n_p, reached=reached, rounds=len(history["loss_diff"]),
                  stop_eps=stop_eps, per_round=per_round, n_starts=n_starts, ascent_steps=ascent_steps, ascent_lr=ascent_lr,
                  train_config=None if given_fit else cfg, box=box, seed=seed)
    return GCResult(x=x, y=y, init_index=torch.full((n_p,), -1, dtype=torch.long), eps_d=n_p / n, history=history, config=config)
