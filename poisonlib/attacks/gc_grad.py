"""The gradient of the GC objective with respect to the poisons (Eq. 33, 34), whole or in chunks.

𝓛(x) = ½‖r‖², r = g(μ) + ε g(ν̂) = g(μ) + (ε/n_p) Σ_j ∇_w ℓ(z_j; w) (Eq. 31, 33), and by
Eq. (34) the gradient for poison j is ∂𝓛/∂x_j = (ε/n_p) ∇_x ⟨∇_w ℓ(z_j; w), r⟩: it needs r
(one number per parameter, the same for every poison) and poison j's own double
derivative only. :func:`gc_gradient` builds the graph over all poisons at once;
with ``chunk_size`` it runs in two passes over chunks of the poisons instead
(:func:`chunked_gc_gradient`): the first accumulates Σ_j ∇_w ℓ(z_j) without a graph and
forms r (detached, a constant), the second differentiates (ε/n_p) ⟨Σ_{j∈chunk} ∇_w ℓ(z_j), r⟩
chunk by chunk. The result is the same vector (up to rounding: sums in another order);
peak memory is one chunk's graph instead of all poisons', for one extra forward and
backward over the poisons.

Memory budget. ``chunk_size="auto"`` (the default of
:func:`~poisonlib.attacks.gc.gradient_canceling`) keeps the GC gradient's graph within
:data:`GC_MEMORY_BUDGET`: 16 GiB of host memory on a CPU, 40 GiB on one GPU
(fixed numbers, not read from the machine, so that a run's result does not depend on
where it runs). :func:`gc_bytes_per_poison` measures the tensors the graph saves per
poison (the difference between a graph over two poisons and over one), doubled for the
second backward's temporaries; poisons are chunked only when n_p times that exceeds the
budget. MNIST-5k runs (≤ 10,000 LR, 2,800 NN, 300 CNN poisons) stay far below it and run
unchunked, exactly as before; at ε_d = 1 on the full MNIST (60,000 poisons) the CNN is
chunked, LR (closed form, a few KB per poison) is not.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.func import functional_call

from .._meter import capped
from .._validation import PoisonlibError, check_choice, check_int
from ..grads import sum_gradient
from ..models import LinearModel, loss_fn

METHODS = ("auto", "closed_form", "double_backward", "jvp")

#: Memory the GC gradient's graph may take at once, per device type (bytes); see the module docstring.
GC_MEMORY_BUDGET = {"cpu": 16 * 2**30, "cuda": 40 * 2**30}


def resolve_method(model, params, method: str = "auto") -> str:
    """``"auto"``: ``"closed_form"`` for a :class:`~poisonlib.models.LinearModel`, else ``"double_backward"``."""
    check_choice("method", method, METHODS)
    linear = isinstance(model, LinearModel) and set(params) <= {"weight", "bias"}
    if method == "closed_form" and not linear:
        raise PoisonlibError(f"method 'closed_form' needs a linear model (lr, linreg), not {type(model).__name__}")
    if method == "auto":
        return "closed_form" if linear else "double_backward"
    return method


def gc_gradient(model, params, x_p, y_p, g_mu, eps, task, method="auto", wrt_labels: bool = False, *, chunk_size: int | None = None):
    """(∂𝓛/∂x_p, 𝓛) at poisons ``x_p`` for 𝓛 = ½‖g(μ) + eps · g(ν̂)‖² (Eq. 33, 34).

    ``double_backward`` differentiates through the poison gradient built with
    ``create_graph=True`` (reverse-over-reverse). ``jvp`` computes r = g(μ) +
    eps g(ν̂) first, then ∇_x eps ⟨g(ν̂), stop_grad(r)⟩ with the directional
    derivative ⟨∇_w ℓ, r⟩ from ``torch.func.jvp`` (reverse-over-forward).
    ``closed_form`` (linear models; what ``auto`` picks for them) evaluates
    Eq. (34) in matrix products, see :func:`linear_gc_gradient`.
    All give the same vector. With ``wrt_labels`` (continuous labels, i.e.
    regression) the first element is the pair (∂𝓛/∂x_p, ∂𝓛/∂y_p).
    ``chunk_size`` smaller than the number of poisons computes it in chunks
    (:func:`chunked_gc_gradient`); ``None`` (default) in one piece.
    """
    method = resolve_method(model, params, method)
    if chunk_size is not None and chunk_size < len(x_p):
        return chunked_gc_gradient(model, params, x_p, y_p, g_mu, eps, task, method, wrt_labels, chunk_size=chunk_size)
    out = None
    for _ in capped(range(1), "GC gradient"):  # one item, so that a dry run can price a repeat of it (_meter.repeated)
        out = _whole_gc_gradient(model, params, x_p, y_p, g_mu, eps, task, method, wrt_labels)
    if out is None:  # a repeat priced, not run (dry runs only): zeros
        gx = torch.zeros_like(x_p)
        return ((gx, torch.zeros_like(y_p)) if wrt_labels else gx), torch.zeros((), dtype=x_p.dtype, device=x_p.device)
    return out


def _whole_gc_gradient(model, params, x_p, y_p, g_mu, eps, task, method, wrt_labels):
    """:func:`gc_gradient` in one piece."""
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
    X, W, h, p, delta = _linear_terms(model, params, x_p, y_p, task)
    c = eps / len(X)
    r_w = g_mu["weight"] + c * (delta.T @ X) if "weight" in params else None
    r_b = g_mu["bias"] + c * delta.sum(0) if "bias" in params else None
    obj = 0.5 * sum((t * t).sum() for t in (r_w, r_b) if t is not None)
    return _linear_pullback(X, W, h, p, delta, r_w, r_b, c, task, x_p, y_p, wrt_labels), obj.detach()


def _linear_terms(model, params, x_p, y_p, task):
    """(X, W, h, p, δ) of :func:`linear_gc_gradient` at poisons ``x_p``."""
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
        p = None
        delta = h - y_p.to(h.dtype).reshape(-1, 1)
    return X, W, h, p, delta


def _linear_pullback(X, W, h, p, delta, r_w, r_b, c, task, x_p, y_p, wrt_labels):
    """c (Wᵀ H_j u_j + R_Wᵀ δ_j) per poison (and −c u_j for labels) given the residual (R_W, R_b)."""
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
        return gx, (-c * u).reshape(y_p.shape)
    return gx.detach()


def chunked_gc_gradient(model, params, x_p, y_p, g_mu, eps, task, method="auto", wrt_labels: bool = False, *, chunk_size: int):
    """:func:`gc_gradient` in chunks of ``chunk_size`` poisons (module docstring).

    Pass 1: S = Σ_j ∇_w ℓ(z_j; w) accumulated chunk by chunk (no graph), r = g(μ) + (ε/n_p) S,
    𝓛 = ½‖r‖² (Eq. 33). Pass 2, for each chunk C: ∂𝓛/∂x_C = ∇_{x_C} (ε/n_p) ⟨Σ_{j∈C} ∇_w ℓ(z_j; w), r⟩
    with r held constant (Eq. 34), by the chunk's own reverse-over-reverse (``double_backward``),
    reverse-over-forward (``jvp``) or matrix products (``closed_form``)."""
    method = resolve_method(model, params, method)
    chunk_size = check_int("chunk_size", chunk_size, minimum=1)
    c = eps / len(x_p)
    s = sum_gradient(model, params, x_p.detach(), y_p.detach(), task, chunk=chunk_size, loop="GC residual chunks")
    r = {k: g_mu[k] + c * s[k] for k in params}
    obj = 0.5 * sum((t * t).sum() for t in r.values())
    gx = torch.zeros_like(x_p)
    gy = torch.zeros_like(y_p) if wrt_labels else None
    for i in capped(range(0, len(x_p), chunk_size), "GC poison chunks"):  # written in place: no second copy
        part = _chunk_pullback(model, params, x_p[i : i + chunk_size], y_p[i : i + chunk_size], r, c, task, method, wrt_labels)
        if wrt_labels:
            gx[i : i + chunk_size], gy[i : i + chunk_size] = part
        else:
            gx[i : i + chunk_size] = part
    return ((gx, gy) if wrt_labels else gx), obj.detach()


def _chunk_pullback(model, params, x, y, r, c, task, method, wrt_labels):
    """∇_x c ⟨Σ_{j∈chunk} ∇_w ℓ(z_j; w), r⟩ (and ∇_y, with ``wrt_labels``) for a constant residual r."""
    if method == "closed_form":
        X, W, h, p, delta = _linear_terms(model, params, x, y, task)
        return _linear_pullback(X, W, h, p, delta, r.get("weight"), r.get("bias"), c, task, x, y, wrt_labels)
    loss = loss_fn(task, reduction="sum")
    if method == "jvp":
        from torch.func import grad, jvp

        def directional(xc, yc):
            return c * jvp(lambda q: loss(functional_call(model, q, (xc,)), yc), (params,), (r,))[1]

        g = grad(directional, argnums=(0, 1) if wrt_labels else 0)(x.detach(), y.detach())
        return tuple(g) if wrt_labels else g
    x = x.detach().requires_grad_(True)
    y = y.detach().requires_grad_(wrt_labels)
    q = {k: v.detach().requires_grad_(True) for k, v in params.items()}
    gs = torch.autograd.grad(loss(functional_call(model, q, (x,)), y), list(q.values()), create_graph=True)
    g = torch.autograd.grad(c * sum((gk * r[k]).sum() for k, gk in zip(q, gs)), [x, y] if wrt_labels else [x])
    return tuple(g) if wrt_labels else g[0]


def gc_bytes_per_poison(model, params, x, y, task, method="auto") -> int:
    """Estimated bytes the GC gradient needs per poison, from examples ``x[:2]``, ``y[:2]``.

    Autograd methods: the bytes of the tensors saved by the graph of :func:`gc_gradient` over
    two poisons minus over one (parameter-sized tensors cancel), times 2 for the second
    backward's temporaries. ``closed_form``: 12 values per feature and output of a poison."""
    method = resolve_method(model, params, method)
    if method == "closed_form":
        return 12 * x.element_size() * (x[0].numel() + params.get("weight", model.weight).shape[0])

    def saved(k):
        total = [0]

        def pack(t):
            total[0] += t.numel() * t.element_size()
            return t

        xk = x[:k].detach().requires_grad_(True)
        q = {n: v.detach().requires_grad_(True) for n, v in params.items()}
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            gs = torch.autograd.grad(loss_fn(task, reduction="sum")(functional_call(model, q, (xk,)), y[:k]), list(q.values()),
                                     create_graph=True)
            obj = sum((g * g).sum() for g in gs)
        torch.autograd.grad(obj, [xk])
        return total[0]

    return max(2 * (saved(2) - saved(1)), x[0].numel() * x.element_size())


def resolve_chunk_size(chunk_size, model, params, x, y, task, method, n_poison: int, device) -> int | None:
    """The chunk size GC uses: ``None`` (one piece) or an int < ``n_poison``.

    ``"auto"`` / ``None``: the largest chunk whose estimated memory
    (:func:`gc_bytes_per_poison`) fits :data:`GC_MEMORY_BUDGET` of ``device``'s type; ``None``
    when all ``n_poison`` poisons fit. An int is taken as given."""
    if chunk_size is None or chunk_size == "auto":
        per = gc_bytes_per_poison(model, params, x[:2].to(device), y[:2].to(device), task, method)
        budget = GC_MEMORY_BUDGET.get(torch.device(device).type, GC_MEMORY_BUDGET["cpu"])
        chunk_size = max(1, budget // per)
    elif isinstance(chunk_size, str):
        raise PoisonlibError(f"chunk_size must be a positive integer, None or 'auto', got {chunk_size!r}")
    chunk_size = check_int("chunk_size", chunk_size, minimum=1)
    return None if chunk_size >= n_poison else chunk_size
