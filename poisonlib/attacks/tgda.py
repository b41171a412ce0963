"""Total-Gradient Descent-Ascent (TGDA), the baseline of Lu, Yu & Kamath (2022),
"Indiscriminate data poisoning attacks on neural networks" (TMLR; lu2022indiscriminate).

Data poisoning as a Stackelberg game (the bilevel problem behind Eq. 2 of the
paper). The follower (learner) minimises its mean training loss on clean data
μ (n points) and the n_p = round(ε_d n) poisons ν̂,

.. math::  f(w; x_p) = \\tfrac{1}{n + n_p} \\Big[\\sum_{z \\in \\mu} \\ell(z; w) + \\sum_{j} \\ell((x_j, y_j); w)\\Big],

and the leader (attacker) maximises the follower's loss L_val(w) on clean
validation data. With w* = w*(x_p) a minimiser of f, the implicit function
theorem gives the *total* gradient with respect to the poisons

.. math::  \\frac{d L_{val}(w^*)}{d x_p} = -\\,\\partial_{x_p} \\langle \\nabla_w f(w; x_p), v \\rangle,
   \\qquad v = (H + \\text{damping}\\, I)^{-1} \\nabla_w L_{val}(w), \\quad H = \\nabla^2_w f,

where v comes from ``cg_iters`` conjugate-gradient iterations on
Hessian-vector products (``torch.func`` forward-over-reverse). Each round of
:func:`tgda` (a) moves the follower ``follower_steps`` full-batch gradient
steps on f, warm-started from the previous round (first from the pretrained
clean model), then (b) takes one ascent step of the leader.

The leader (``leader=``):

* ``"generator"`` (default, as in the original): a generator network
  :class:`PoisonGenerator` G_θ maps (label, clean image) to the poison,
  x_j = G_θ(y_j, x_j⁰); an MLP d+1 → hidden → hidden → d (LeakyReLU 0.2, tanh
  output; the original: 785 → 784 → 784 → 784 on MNIST, so ``generator_hidden``
  defaults to d). Its weights θ take the steps, along the total gradient
  back-propagated through G: dL_val/dθ = Σ_j (∂x_j/∂θ)ᵀ dL_val/dx_j
  (:func:`generator_total_gradient`). The step is Adam
  (``generator_optimizer="adam"``, ``generator_lr``), or the original's plain
  gradient step θ ← θ + lr · dL_val/dθ (``"sgd"``, lr 0.01);
* ``"poisons"``: the poison features themselves, with a signed ascent step
  x_p ← Proj_box(x_p + leader_lr · sign(dL_val/dx_p)).

Differences from the original (see ``official-code-notes`` §3):

* the generator starts *exactly* at the clean points instead of being
  pre-trained to reconstruct them (the original pre-trains it with 100 epochs
  of Adam on an MSE reconstruction loss, ``pretrain_leader.ipynb``): the clean
  image enters the output layer as a skip connection and the last layer starts
  at zero, G_θ(y, x⁰) = lo + (hi − lo)(1 + tanh(fc3(h) + atanh(u)))/2 with
  u = 2(x⁰ − lo)/(hi − lo) − 1 clipped to ±(1 − ``GENERATOR_MARGIN``); so the
  output is the original's tanh layer mapped onto the box [lo, hi] (the original
  scales data to [-1, 1], the range of tanh). With ``box=None`` (an unbounded
  protocol) the output head is linear, G_θ(y, x⁰) = x⁰ + fc3(h), and the poisons
  are unbounded;
* the default leader step is Adam with lr ``generator_lr`` = 1e-3 (the optimiser
  and step the original uses to pre-train its generator), not the original's
  plain step 0.01: the original takes some 12,000 leader steps (201 epochs × 60
  mini-batches), the profiles here take 10-200, and the scale of the total
  gradient (∝ 1/(n + n_p)) makes a fixed plain step depend on n (on MNIST-5k LR,
  50 plain steps of 0.01 raise L_val by 0.002); Adam's step is invariant to that
  scale. ``generator_optimizer="sgd",
  generator_lr=0.01`` is the original's step;
* ``damping`` > 0 (the original uses λ = 0) keeps the CG system positive
  definite for non-convex followers; with damping the total gradient is exact
  for the follower objective f + damping/2 ‖w‖² at its minimiser;
* full batch: the follower sees all clean points and poisons each step (the
  original uses mini-batches of 1000 with their share of poisons); without
  ``x_val`` the validation set is a seeded 30% of the clean training points,
  which the follower also trains on (as in the original, where the last 30%
  of each batch is the leader's validation data);
* one leader step, then the follower's steps is the original's order within a
  round; here the follower moves first (from the clean model), so the first
  leader step already sees a follower trained on the starting poisons. The label
  enters the generator as a number (as in the original), the poisons keep their
  labels.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, jvp
from tqdm import tqdm

from .._compat import quiet_forward_ad
from .._validation import CellFailed, PoisonlibError, check_choice, check_finite, check_int, check_positive
from .._meter import capped
from ..grads import conjugate_gradient, flat, flat_loss, sum_gradient, target_params
from ..models import loss_fn
from ..train import resolve_device, show_progress
from .gc import GCResult, _init_poisons, n_poison_points

#: Fraction of the clean data used as the leader's validation set when none is given.
VAL_FRACTION = 0.3
#: The leader's variables: a generator network (the original) or the poison features.
LEADERS = ("generator", "poisons")
#: Steps of the generator's weights: Adam, or the original's plain gradient step.
GENERATOR_OPTIMIZERS = ("adam", "sgd")
#: With a box, clean features are clipped to ±(1 − margin) of the tanh range before
#: atanh, so that the generator starts within margin·(hi − lo)/2 of the clean points.
GENERATOR_MARGIN = 0.02


class PoisonGenerator(nn.Module):
    """TGDA's leader: (label, clean features) → poison, an MLP d+1 → hidden → hidden → d.

    LeakyReLU(0.2) hidden layers (the original's ``Leader``, 785 → 784 → 784 → 784).
    The output is the clean point plus the last layer's output, taken in the
    tanh pre-activation space with a ``box`` (output lo + (hi − lo)(1 + tanh(·))/2,
    always inside the box) and added directly without one (unbounded). The last
    layer starts at zero, so the generator starts at the clean points (up to
    ``margin``·(hi − lo)/2 with a box).
    """

    def __init__(self, d: int, hidden: int | None = None, box: tuple[float, float] | None = None, *, margin: float = GENERATOR_MARGIN):
        super().__init__()
        hidden = d if hidden is None else hidden
        self.fc1 = nn.Linear(d + 1, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.fc3 = nn.Linear(hidden, d)
        nn.init.zeros_(self.fc3.weight)
        nn.init.zeros_(self.fc3.bias)
        self.box = None if box is None else (float(box[0]), float(box[1]))
        self.margin = float(margin)
        if self.box is not None and not self.box[1] > self.box[0]:
            raise PoisonlibError(f"box must be (lo, hi) with lo < hi, got {box!r}")

    def forward(self, y: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """Poisons (flattened, shape (m, d)) from labels ``y`` (m,) and clean features ``x0`` (m, d)."""
        inp = torch.cat([y.reshape(-1, 1).to(x0.dtype), x0], 1)
        h = F.leaky_relu(self.fc1(inp), 0.2)
        h = F.leaky_relu(self.fc2(h), 0.2)
        z = self.fc3(h)
        if self.box is None:
            return x0 + z
        lo, hi = self.box
        u = (2 * (x0 - lo) / (hi - lo) - 1).clamp(-1 + self.margin, 1 - self.margin)
        return lo + (hi - lo) * (1 + torch.tanh(torch.atanh(u) + z)) / 2


def _follower_steps(model, params, x, y, task, steps, lr, chunk=None):
    """``steps`` full-batch gradient steps w ← w − lr ∇_w f(w) on the mean loss over (x, y);
    with ``chunk`` the gradient is summed over chunks of that many points (:func:`~poisonlib.grads.sum_gradient`)."""
    if chunk is not None and chunk < len(x):
        g = lambda p: {k: v / len(x) for k, v in sum_gradient(model, p, x, y, task, chunk=chunk).items()}  # noqa: E731
    else:
        loss = loss_fn(task)
        g = grad(lambda p: loss(functional_call(model, p, (x,)), y))
    for _ in capped(range(steps), "TGDA follower steps"):
        gs = g(params)
        params = {k: params[k] - lr * gs[k] for k in params}
    return params


def _chunks(n: int, chunk):
    return [(0, n)] if chunk is None or chunk >= n else [(i, min(i + chunk, n)) for i in range(0, n, chunk)]


def total_gradient(model, params, x_clean, y_clean, x_p, y_p, x_val, y_val, task, *, cg_iters=16, damping=0.01, chunk=None):
    """(dL_val/dx_p, L_val) at follower parameters ``params`` (a dict of tensors).

    dL_val/dx_p = −∂_{x_p}⟨∇_w f(w; x_p), v⟩ with v = (H + damping I)⁻¹ ∇_w L_val
    solved by ``cg_iters`` CG iterations; exact (for the follower objective
    f + damping/2 ‖w‖²) when ``params`` minimise that objective and CG converges.
    ``chunk``: at most that many points in one graph (∇L_val, each Hessian-vector product
    H u = Σ_c (|c|/N) H_c u and the poisons' pullback are sums over chunks c of the points;
    the same quantities, summed in another order); ``None``: one graph over all points.
    """
    loss = loss_fn(task)
    names, shapes = list(params), [tuple(t.shape) for t in params.values()]
    theta = flat(params).detach()
    # ∇_w L_val and L_val at the follower
    if chunk is None or chunk >= len(x_val):
        p = {k: t.detach().requires_grad_(True) for k, t in params.items()}
        l_val = loss(functional_call(model, p, (x_val,)), y_val)
        g_val = flat(torch.autograd.grad(l_val, list(p.values())))
    else:
        g_val = flat(sum_gradient(model, params, x_val, y_val, task, chunk=chunk)) / len(x_val)
        with torch.no_grad():
            l_val = sum(loss_fn(task, reduction="sum")(functional_call(model, params, (x_val[a:b],)), y_val[a:b])
                        for a, b in capped(_chunks(len(x_val), chunk), "TGDA validation chunks")) / len(x_val)
    # v = (H + damping I)^{-1} ∇_w L_val, H the Hessian of the follower's loss on clean ∪ poisons
    x_all, y_all = torch.cat([x_clean, x_p]), torch.cat([y_clean, y_p])
    if not bool(g_val.any()):  # a flat validation loss: no direction to push
        return torch.zeros_like(x_p), float(l_val.detach())
    quiet_forward_ad()
    n_all = len(x_all)
    if chunk is None or chunk >= n_all:
        f = flat_loss(model, names, shapes, x_all, y_all, task, damping)
        hvp = lambda u: jvp(grad(f), (theta,), (u,))[1]  # noqa: E731
    else:
        parts = [(b - a, flat_loss(model, names, shapes, x_all[a:b], y_all[a:b], task)) for a, b in _chunks(n_all, chunk)]

        def hvp(u):
            out = damping * u
            for m, f_c in capped(parts, "TGDA Hessian chunks"):
                out = out + (m / n_all) * jvp(grad(f_c), (theta,), (u,))[1]
            return out

    v = conjugate_gradient(hvp, g_val, cg_iters, 1e-10).detach()
    # only the poisons' share of f depends on x_p: ∂_{x_p} (1/(n+n_p)) Σ_j ⟨∇_w ℓ(z_j; w), v⟩
    mixed = torch.zeros_like(x_p)
    for a, b in capped(_chunks(len(x_p), chunk), "TGDA poison chunks"):
        xc = x_p[a:b].detach().requires_grad_(True)
        p = {k: t.detach().requires_grad_(True) for k, t in params.items()}
        share = loss_fn(task, reduction="sum")(functional_call(model, p, (xc,)), y_p[a:b]) / n_all
        gw = torch.autograd.grad(share, list(p.values()), create_graph=True)
        mixed[a:b] = torch.autograd.grad(flat(gw) @ v, xc)[0]
    return -mixed, float(l_val.detach())


def generator_total_gradient(generator, model, params, x_clean, y_clean, x_base, y_p, x_val, y_val, task, *, cg_iters=16, damping=0.01, chunk=None):
    """(dL_val/dθ, L_val, x_p) for the generator's weights θ at follower parameters ``params``.

    x_p = G_θ(y_p, x_base) (reshaped to the clean data's example shape); the
    total gradient dL_val/dx_p of :func:`total_gradient` is back-propagated
    through G: dL_val/dθ = Σ_j (∂x_j/∂θ)ᵀ dL_val/dx_j. Returns the gradient as a
    list aligned with ``generator.parameters()``.
    """
    x_flat = generator(y_p, x_base.reshape(len(x_base), -1))
    x_p = x_flat.reshape(x_base.shape)
    g, l_val = total_gradient(model, params, x_clean, y_clean, x_p.detach(), y_p, x_val, y_val, task, cg_iters=cg_iters, damping=damping,
                              chunk=chunk)
    grads = torch.autograd.grad(x_p, list(generator.parameters()), grad_outputs=g)
    return list(grads), l_val, x_p.detach()


def _validation_split(x_clean, y_clean, x_val, y_val, seed):
    if x_val is None and y_val is None:
        gen = torch.Generator().manual_seed(seed + 1)
        idx = torch.randperm(len(x_clean), generator=gen)[: max(1, int(round(VAL_FRACTION * len(x_clean))))]
        return x_clean[idx], y_clean[idx]
    if x_val is None or y_val is None or len(x_val) != len(y_val) or len(x_val) == 0:
        rows = [None if t is None else len(t) for t in (x_val, y_val)]
        raise PoisonlibError(f"give both x_val and y_val with the same, non-zero number of rows (got {rows[0]} and {rows[1]})")
    return x_val, y_val


def _resolve_chunk(chunk_size, model, params, x, y, task, n_points: int, device):
    """TGDA's chunk: an int as given, or (``"auto"`` / ``None``) the largest that fits the budget at twice
    GC's per-point estimate; ``None`` when all ``n_points`` fit in one graph."""
    if chunk_size is None or chunk_size == "auto":
        from .gc_grad import GC_MEMORY_BUDGET, gc_bytes_per_poison

        per = 2 * gc_bytes_per_poison(model, params, x[:2].to(device), y[:2].to(device), task)
        chunk_size = max(1, GC_MEMORY_BUDGET.get(torch.device(device).type, GC_MEMORY_BUDGET["cpu"]) // per)
    elif isinstance(chunk_size, str):
        raise PoisonlibError(f"chunk_size must be a positive integer, None or 'auto', got {chunk_size!r}")
    chunk_size = check_int("chunk_size", chunk_size, minimum=1)
    return None if chunk_size >= n_points else chunk_size


def make_generator(d: int, hidden: int | None, box, seed: int, dtype=torch.float32) -> PoisonGenerator:
    """A :class:`PoisonGenerator` whose hidden layers are initialised from ``seed`` (PyTorch's default init)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return PoisonGenerator(d, hidden, box).to(dtype)


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
    leader: str = "generator",
    leader_lr: float = 0.01,
    generator_lr: float = 1e-3,
    generator_optimizer: str = "adam",
    generator_hidden: int | None = None,
    follower_steps: int = 20,
    follower_lr: float = 0.1,
    cg_iters: int = 16,
    damping: float = 0.01,
    box: tuple[float, float] | None = None,
    seed: int = 0,
    device: str = "auto",
    progress: bool | None = None,
    chunk_size: int | str | None = "auto",
) -> GCResult:
    """Run TGDA; the leader is a generator network (default) or the poison features.

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
    leader : ``"generator"`` (the original's: a :class:`PoisonGenerator` maps
        (label, clean point) to the poison; its weights take the steps) or
        ``"poisons"`` (the poison features take signed steps).
    leader_lr : ``leader="poisons"`` only: the signed ascent step, in feature units.
    generator_lr, generator_optimizer : ``leader="generator"`` only: the step of the
        generator's weights, ``"adam"`` (default, lr 1e-3) or ``"sgd"``, the
        original's plain ascent step θ ← θ + lr · dL_val/dθ (the original: lr 0.01).
    generator_hidden : width of the generator's two hidden layers (default: d, the
        number of features, as the original's 784 on MNIST).
    follower_steps, follower_lr : gradient steps of the follower per round (original: 20, 0.1).
    cg_iters, damping : CG iterations for (H + damping I)⁻¹ ∇L_val (original: 16, λ = 0).
    box : feature box (lo, hi) the poisons stay in, e.g. ``(0, 1)`` (the generator's
        tanh output is mapped onto it; the poisons-leader is projected onto it);
        ``None``: unbounded (the generator's output head is then linear).
    chunk_size : at most this many points in one graph (follower gradient, ∇L_val,
        Hessian-vector products, the poisons' pullback; :func:`total_gradient`).
        ``"auto"`` (default) / ``None``: one graph while the clean points and poisons fit
        :data:`~poisonlib.attacks.gc_grad.GC_MEMORY_BUDGET` (per point twice GC's estimate,
        :func:`~poisonlib.attacks.gc_grad.gc_bytes_per_poison`: the Hessian product carries
        tangents beside the graph), else the largest chunk that does; MNIST-5k runs are
        unchunked, as before. The chunk used, if any, is ``config["chunk_size"]``.

    Returns
    -------
    GCResult with ``history["val_loss"]`` = L_val of the follower in each round
    (after its steps, before the leader's step).
    """
    n_p = n_poison_points(eps_d, len(x_clean))
    epochs = check_int("epochs", epochs, minimum=0)
    leader = check_choice("leader", leader, LEADERS)
    leader_lr = check_positive("leader_lr", leader_lr)
    generator_lr = check_positive("generator_lr", generator_lr)
    generator_optimizer = check_choice("generator_optimizer", generator_optimizer, GENERATOR_OPTIMIZERS)
    if generator_hidden is not None:
        generator_hidden = check_int("generator_hidden", generator_hidden, minimum=1)
    follower_steps = check_int("follower_steps", follower_steps, minimum=0)
    follower_lr = check_positive("follower_lr", follower_lr)
    cg_iters = check_int("cg_iters", cg_iters, minimum=1)
    damping = check_positive("damping", damping, allow_zero=True)
    check_finite("clean features", x_clean)
    n = len(x_clean)
    dev = resolve_device(device)
    x_val, y_val = _validation_split(x_clean, y_clean, x_val, y_val, seed)
    d = math.prod(x_clean.shape[1:])
    config = dict(eps_d=float(eps_d), n=n, n_poison=n_p, n_val=len(x_val), epochs=epochs, leader=leader,
                  follower_steps=follower_steps, follower_lr=follower_lr, cg_iters=cg_iters, damping=damping,
                  box=box, seed=seed)
    if leader == "poisons":
        config.update(leader_lr=leader_lr, step="sign")
    else:
        config.update(generator_lr=generator_lr, step=generator_optimizer, generator_hidden=d if generator_hidden is None else generator_hidden,
                      generator_margin=GENERATOR_MARGIN if box is not None else None)

    follower = copy.deepcopy(model).to(dev).eval()
    params = target_params(follower)
    chunk = _resolve_chunk(chunk_size, follower, params, x_clean, y_clean, task, n + n_p, dev)
    if chunk is not None:
        config["chunk_size"] = chunk
    x0, y_p, init_idx = _init_poisons(x_clean, y_clean, n_p, seed)
    x0, y_p = x0.to(dev), y_p.to(dev)
    xc, yc, xv, yv = x_clean.to(dev), y_clean.to(dev), x_val.to(dev), y_val.to(dev)
    gen = opt = None
    if leader == "generator":
        gen = make_generator(d, generator_hidden, box, seed, x_clean.dtype).to(dev)
        if generator_optimizer == "adam":
            opt = torch.optim.Adam(gen.parameters(), lr=generator_lr, maximize=True)
        with torch.no_grad():
            x_p = gen(y_p, x0.reshape(n_p, -1)).reshape(x0.shape)
    else:
        x_p = x0
    history = {"val_loss": []}
    bar = tqdm(range(epochs), desc=f"TGDA eps_d={eps_d:g}", disable=not show_progress(progress), leave=False)
    for epoch in bar:
        params = _follower_steps(follower, params, torch.cat([xc, x_p]), torch.cat([yc, y_p]), task, follower_steps, follower_lr, chunk)
        params = {k: t.detach() for k, t in params.items()}
        if leader == "generator":
            gs, l_val, _ = generator_total_gradient(gen, follower, params, xc, yc, x0, y_p, xv, yv, task, cg_iters=cg_iters, damping=damping, chunk=chunk)
            finite = all(bool(torch.isfinite(t).all()) for t in gs)
        else:
            g, l_val = total_gradient(follower, params, xc, yc, x_p, y_p, xv, yv, task, cg_iters=cg_iters, damping=damping, chunk=chunk)
            finite = bool(torch.isfinite(g).all())
        if not (finite and math.isfinite(l_val)):
            raise CellFailed(f"TGDA diverged at round {epoch} (validation loss {l_val}); lower follower_lr={follower_lr}")
        history["val_loss"].append(l_val)
        if leader == "generator":
            with torch.no_grad():
                if opt is not None:
                    for t, gt in zip(gen.parameters(), gs):
                        t.grad = gt
                    opt.step()
                else:  # the original's plain ascent step
                    for t, gt in zip(gen.parameters(), gs):
                        t.add_(gt, alpha=generator_lr)
                x_p = gen(y_p, x0.reshape(n_p, -1)).reshape(x0.shape)
        else:
            x_p = x_p + leader_lr * g.sign()
            if box is not None:
                x_p = x_p.clamp(float(box[0]), float(box[1]))
        bar.set_postfix(val_loss=f"{l_val:.4g}")
    return GCResult(x=x_p.detach().cpu(), y=y_p.detach().cpu(), init_index=init_idx, eps_d=n_p / n, history=history, config=config)
