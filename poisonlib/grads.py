"""Model gradients g(ν; w) = E_{z~ν} ∇_w ℓ(z; w) (Eq. 1, 3) over data sets, via ``torch.func``."""

from __future__ import annotations

import torch
from torch.func import functional_call

from ._meter import capped
from ._validation import check_choice
from .models import loss_fn

PARAM_SUBSETS = ("all", "first")


def target_params(model: torch.nn.Module, subset: str = "all") -> dict[str, torch.Tensor]:
    """Detached parameters w of ``model`` by name; ``subset="first"`` keeps only
    the first parameter tensor (what the authors' released GC code differentiates)."""
    check_choice("param subset", subset, PARAM_SUBSETS)
    named = {k: v.detach() for k, v in model.named_parameters()}
    if subset == "first":
        k = next(iter(named))
        return {k: named[k]}
    return named


def sum_gradient(model, params: dict, x, y, task: str, *, chunk: int = 2048, loop: str = "gradient chunks") -> dict[str, torch.Tensor]:
    """Σ_i ∇_w ℓ(z_i; w) over the rows of (x, y), accumulated in chunks; the
    parameters not in ``params`` stay fixed at the model's values. ``loop``: the chunk loop's
    name for a dry run's meter (:func:`poisonlib._meter.repeated` prices a repeat by name)."""
    loss = loss_fn(task, reduction="sum")
    dev = next(iter(params.values())).device
    total = {k: torch.zeros_like(v) for k, v in params.items()}
    for i in capped(range(0, len(x), chunk), loop):
        p = {k: v.detach().requires_grad_(True) for k, v in params.items()}
        out = functional_call(model, p, (x[i : i + chunk].to(dev),))
        gs = torch.autograd.grad(loss(out, y[i : i + chunk].to(dev)), list(p.values()))
        for k, g in zip(p, gs):
            total[k] += g
    return total


def mean_gradient(model, x, y, task: str, *, params: dict | None = None, chunk: int = 2048) -> dict[str, torch.Tensor]:
    """g(μ) = (1/n) Σ_i ∇_w ℓ(z_i; w), Eq. (3), for the empirical distribution of (x, y)."""
    model.eval()
    params = target_params(model) if params is None else params
    return {k: v / len(x) for k, v in sum_gradient(model, params, x, y, task, chunk=chunk).items()}


def global_norm(tensors) -> float:
    """Euclidean norm of a dict / list of tensors seen as one flat vector."""
    vals = tensors.values() if isinstance(tensors, dict) else tensors
    return float(torch.sqrt(sum((t.detach().double() ** 2).sum() for t in vals)))


def mixed_gradient_norm(model, x_clean, y_clean, x_poison, y_poison, task: str) -> dict:
    """Gradient norms of the target ``model`` over clean data μ, poisons ν̂ and their mixture.

    With n clean and n_p poison points, ε_d = n_p / n and λ = ε_d / (1 + ε_d):

    * ``residual`` = ‖g(μ) + ε_d g(ν̂)‖, the GC objective of Eq. (31) is ½ residual²;
    * ``mixed`` = ‖g(χ)‖ = ‖(1-λ) g(μ) + λ g(ν̂)‖ = residual / (1 + ε_d), Eq. (5);
    * ``clean`` = ‖g(μ)‖ (the residual with no poisons).
    """
    params = target_params(model)
    n, n_p = len(x_clean), len(x_poison)
    gc_sum = sum_gradient(model, params, x_clean, y_clean, task)
    gp_sum = sum_gradient(model, params, x_poison, y_poison, task) if n_p else {k: 0 * v for k, v in gc_sum.items()}
    residual = global_norm({k: (gc_sum[k] + gp_sum[k]) / n for k in params})
    return {"clean": global_norm({k: v / n for k, v in gc_sum.items()}), "residual": residual, "mixed": residual * n / (n + n_p)}


def flat(tensors) -> torch.Tensor:
    """Concatenate a dict / list of tensors into one flat vector (parameter order kept)."""
    vals = tensors.values() if isinstance(tensors, dict) else tensors
    return torch.cat([t.reshape(-1) for t in vals])


def per_example_gradients(model, x, y, task: str, *, params: dict | None = None, chunk: int = 1024, dtype=None) -> torch.Tensor:
    """Matrix (n, p) of per-example gradients ∇_w ℓ(z_i; w), via ``torch.func.vmap``; each chunk
    of rows is cast to ``dtype`` (default: the parameters') as it is made, so that a float64
    matrix never sits beside a float32 copy of itself (n·p·12 bytes at the peak, not 16)."""
    from torch.func import grad, vmap

    model.eval()
    params = target_params(model) if params is None else params
    loss = loss_fn(task)

    def one(p, xi, yi):
        return loss(functional_call(model, p, (xi.unsqueeze(0),)), yi.unsqueeze(0))

    g = vmap(grad(one), in_dims=(None, 0, 0))
    rows = []
    for i in range(0, len(x), chunk):
        gi = g(params, x[i : i + chunk], y[i : i + chunk])
        rows.append(torch.cat([gi[k].reshape(len(gi[k]), -1) for k in params], dim=1).to(dtype or gi[next(iter(params))].dtype))
    return torch.cat(rows)


def flat_loss(model, names, shapes, x, y, task, l2: float = 0.0):
    """f(θ) = mean task loss of ``model`` on (x, y) at the flat parameter vector θ (split by
    ``names`` / ``shapes``) + l2/2 ‖θ‖²: the function whose Hessian-vector products
    influence functions and TGDA's total gradient need."""
    loss = loss_fn(task)

    def f(theta):
        params, i = {}, 0
        for k, s in zip(names, shapes):
            n = int(torch.tensor(s).prod()) if len(s) else 1
            params[k] = theta[i : i + n].reshape(s)
            i += n
        return loss(functional_call(model, params, (x,)), y) + 0.5 * l2 * (theta * theta).sum()

    return f


def conjugate_gradient(hvp, b, iters: int, tol: float = 1e-10):
    """Conjugate gradient for H u = b with H given by ``hvp``."""
    u = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rs = r @ r
    for _ in capped(range(iters), "CG iterations"):
        hp = hvp(p)
        alpha = rs / (p @ hp)
        u = u + alpha * p
        r = r - alpha * hp
        new = r @ r
        if new.sqrt() <= tol * b.norm():
            break
        p = r + (new / rs) * p
        rs = new
    return u
