"""The low-dimensional theory experiments (Figs. 1, 2, 4, 5, 6): τ over a grid of linear targets,
ε_d sweeps of GC (or Gradient Matching) against a fixed target with retraining to optimality,
and Frank-Wolfe over a finite candidate set (App. B)."""

from __future__ import annotations

import numpy as np
import torch

from ._validation import PoisonlibError
from .attacks.gc import gradient_canceling
from .evaluation import compare_to_target, retrain
from .grads import mixed_gradient_norm
from .theory import tau_model
from .train import TrainConfig


def eps_sweep(
    ds,
    model: str,
    target: torch.nn.Module,
    eps_ds,
    *,
    gc_epochs: int = 1000,
    gc_options: dict | None = None,
    train_config: TrainConfig = TrainConfig(epochs=20, lr=1.0, optimizer="lbfgs"),
    seed: int = 0,
    device: str = "cpu",
    keep_poisons: bool = False,
    progress: bool | None = None,
    attack: str = "gc",
    clean: torch.nn.Module | None = None,
    **model_kwargs,
) -> list[dict]:
    """GC against a fixed ``target`` at each ε_d, then retraining (L-BFGS to optimality
    by default, for convex models): the phase-transition sweeps of Fig. 1, 2, 4, 5.
    ``attack="gm"`` runs Gradient Matching at the ``clean`` model instead (Fig. 6;
    ``gc_epochs`` is then its step count, ``gc_options`` its options).

    Each row: ``eps_d, n_poison, grad_mixed`` (‖g(χ)‖ after GC), ``residual``,
    the :func:`compare_to_target` numbers, and with ``keep_poisons`` the poisons ``x, y``.
    """
    from tqdm import tqdm

    from .train import show_progress

    rows = []
    for eps in tqdm(list(eps_ds), desc="eps_d sweep", disable=not show_progress(progress)):
        if attack == "gm":
            from .attacks.gm import gradient_matching

            if clean is None:
                raise PoisonlibError("attack='gm' needs the clean model: pass clean=")
            # Fig. 6: least squares on unbounded features, GM without Witches' Brew's eps-ball unless gc_options set one
            res = gradient_matching(clean, ds.x_train, ds.y_train, ds.task, eps, target=target, steps=gc_epochs, box=ds.feature_box, seed=seed,
                                    device=device, progress=False, **{"eps": None, **(gc_options or {})})
        else:
            res = gradient_canceling(target, ds.x_train, ds.y_train, ds.task, eps, epochs=gc_epochs, box=ds.feature_box, seed=seed,
                                     device=device, progress=False, **(gc_options or {}))
        retrained = retrain(ds, model, res.x, res.y, train_config, seed=seed, device=device, progress=False, **model_kwargs)
        norms = mixed_gradient_norm(target, ds.x_train, ds.y_train, res.x, res.y, ds.task)
        row = {"eps_d": res.eps_d, "n_poison": res.n_poison, "grad_mixed": norms["mixed"], "residual": norms["residual"],
               **compare_to_target(retrained, target, ds)}
        if keep_poisons:
            row.update(x=res.x, y=res.y, retrained=retrained)
        rows.append(row)
    return rows



def tau_grid(ds, w1s, w2s, bias: float | None = None):
    """τ(2) of the 2-D linear targets w = (w1, w2) (and a fixed ``bias``) over a grid: Fig. 1, left.

    Returns an array of shape (len(w2s), len(w1s)).
    """
    from .models import linear_model

    return np.array([[tau_model(linear_model([a, b], None if bias is None else [bias]), ds.x_train, ds.y_train, ds.task, device="cpu")["tau2"]
                      for a in w1s] for b in w2s])


def candidate_gradients(model, points, labels=(0, 1), task: str = "binary"):
    """Per-point gradients at ``model`` of every candidate poison (x, y), x in ``points``
    (K, d) and y in ``labels``: the finite Γ of App. B. Returns ``(X, Y, G)``."""
    from .grads import per_example_gradients

    pts = torch.as_tensor(np.asarray(points), dtype=torch.float32)
    X = torch.cat([pts] * len(labels))
    Y = torch.cat([torch.full((len(pts),), lab, dtype=torch.int64) for lab in labels])
    return X, Y, per_example_gradients(model, X, Y, task).double().numpy()


def fw_sweep(model, ds, eps_ds, candidates, *, iters: int = 200) -> list[dict]:
    """Frank-Wolfe (App. B) over a fixed candidate set at each ε_d: the smallest
    ‖g(μ) + ε_d g(ν)‖ reachable with ν supported on the candidates. Rows hold
    ``eps_d, residual, grad_mixed`` (= residual / (1 + ε_d)) and ``support``."""
    from .grads import flat, mean_gradient
    from .theory import frank_wolfe

    g_mu = flat(mean_gradient(model, ds.x_train, ds.y_train, ds.task)).double().numpy()
    rows = []
    for eps in eps_ds:
        r = frank_wolfe(g_mu, candidates, eps, iters=iters)
        rows.append({"eps_d": float(eps), "residual": r["residual"][-1], "grad_mixed": r["residual"][-1] / (1 + eps), "support": r["support"]})
    return rows


def first_eps(rows: list[dict], predicate) -> float:
    """Smallest ε_d of a sweep whose row satisfies ``predicate`` (NaN if none): where a transition appears."""
    hits = [r["eps_d"] for r in rows if predicate(r)]
    return min(hits) if hits else float("nan")


def sweep_factors(n: int, lo: float = 0.1, hi: float = 3.0) -> np.ndarray:
    """``n`` multiples of τ from ``lo`` to ``hi`` (log-spaced) plus 0.9, 1 and 1.1: the ε_d/τ of a sweep."""
    return np.unique(np.round(np.concatenate([np.geomspace(lo, hi, n), [0.9, 1.0, 1.1]]), 4))


# --------------------------------------------------------------------------- the transition events of the sweeps (Figs. 1, 2, 4)
#: Tolerances of the events, fixed before the runs: Frank-Wolfe's residual as a fraction of ‖g(μ)‖
#: (numerical zero), the refit's agreement with the target (%), its distance as a fraction of ‖w‖,
#: and its absolute distance for "equals the target".
FW_CANCEL_REL, AGREEMENT_PCT, REACH_REL, EQUAL_ABS = 1e-6, 99.0, 0.05, 1e-3


def fw_cancels(g_mu_norm: float):
    """Frank-Wolfe cancels the gradient: residual < :data:`FW_CANCEL_REL` · ‖g(μ)‖ (0 ∈ G, Thm. 1)."""
    return lambda r: r["residual"] < FW_CANCEL_REL * g_mu_norm


def predicts_like_target(r: dict) -> bool:
    """The refit predicts like the target on ≥ :data:`AGREEMENT_PCT` % of the test points."""
    return r["target_agreement"] >= AGREEMENT_PCT


def reaches_target(w_norm: float):
    """The refit (to optimality on clean ∪ poisons) lands within :data:`REACH_REL` · ‖w‖ of the target."""
    return lambda r: r["param_distance"] < REACH_REL * w_norm


def equals_target(r: dict) -> bool:
    """The refit equals the target: ‖w_refit − w‖ < :data:`EQUAL_ABS`."""
    return r["param_distance"] < EQUAL_ABS
