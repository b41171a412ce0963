"""Label-flip target models (Suya, Mahloujifar, Suri, Evans & Tian 2021,
"Model-targeted poisoning attacks with provable convergence", ICML, Sec. 5;
bib key ``suya2021model``; the procedure comes from Koh et al. 2022).

The KKT and Model-Targeted attacks need a target θ_p of a given test error.
Suya et al. obtain it with a label-flip search: train the clean model θ_c, take
the margins of the clean training points

.. math::  m_i = \\tilde y_i\\, h(x_i; \\theta_c) \\quad (\\tilde y = 2y - 1, \\text{binary}), \\qquad
   m_i = h_{y_i} - \\max_{k \\ne y_i} h_k \\quad (\\text{multiclass}),

flip the labels of the points with m_i below the q-quantile of the margins
(binary: y → 1 − y; multiclass: to the runner-up class argmax_{k≠y} h_k, our
choice), add r copies of the flipped points to the clean training set, retrain,
and keep the candidate (q, r) whose error is closest to the requested one.

Deviations: Suya et al. choose among the candidates by their test error; we
choose on the validation split and only report the test error, so that the
test set stays untouched by the target search. Every candidate is trained from
the same seeded initialisation (LR: to optimality with L-BFGS).
"""

from __future__ import annotations

import torch
from tqdm import tqdm

from .._validation import PoisonlibError, check_int, check_positive
from ..models import model_for
from ..train import evaluate, outputs, resolve_device, show_progress, train

DEFAULT_QUANTILES = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5)
DEFAULT_REPEATS = (1, 2, 3, 5, 8)
LR_TRAIN = dict(epochs=20, lr=1.0, optimizer="lbfgs")


def _config_dict(train_config) -> dict:
    """Keyword arguments of :func:`poisonlib.train.train` from a dict, a ``TrainConfig`` or ``None``."""
    return train_config.as_dict() if hasattr(train_config, "as_dict") else dict(train_config or {})


def margins(out: torch.Tensor, y: torch.Tensor, task: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(margin of each point, the label a flip gives it) from the clean model's outputs."""
    if task == "binary":
        h = out.reshape(-1)
        return (2 * y.to(h.dtype) - 1) * h, 1 - y
    if task == "multiclass":
        own = out.gather(1, y.reshape(-1, 1)).reshape(-1)
        other = out.scatter(1, y.reshape(-1, 1), float("-inf"))
        best, runner_up = other.max(dim=1)
        return own - best, runner_up.to(y.dtype)
    raise PoisonlibError(f"label flips need a classification task ('binary' or 'multiclass'), got {task!r}")


def _fit(ds, model, x, y, cfg, seed, dev):
    net = model_for(model, ds, seed=seed)
    net, _ = train(net, x, y, ds.task, seed=seed, device=dev, progress=False, **cfg)
    return net.cpu().eval()


def _error(net, x, y, task, dev) -> float:
    return 1.0 - evaluate(net, x, y, task, device=dev)["accuracy"]


def _search(ds, model, quantiles, repeats, train_config, seed, device, progress):
    """Train every candidate (q, r) once; returns (clean error, [(info, model), ...])."""
    quantiles = [check_positive("quantile", q) for q in quantiles]
    if any(q >= 1 for q in quantiles) or not quantiles:
        raise PoisonlibError(f"quantiles must be a non-empty list of values in (0, 1), got {tuple(quantiles)!r}")
    repeats = [check_int("repeats", r, minimum=1) for r in repeats]
    if not repeats:
        raise PoisonlibError("repeats must hold at least one integer >= 1")
    cfg = dict(LR_TRAIN if model == "lr" else {}, **_config_dict(train_config))
    dev = resolve_device(device)
    x, y = ds.x_train, ds.y_train
    clean = _fit(ds, model, x, y, cfg, seed, dev)
    m, flipped = margins(outputs(clean, x, device=dev), y, ds.task)
    cands = []
    grid = [(q, r) for q in quantiles for r in repeats]
    for q, r in tqdm(grid, desc="label-flip targets", disable=not show_progress(progress), leave=False):
        idx = torch.nonzero(m < torch.quantile(m.double(), q).to(m.dtype)).reshape(-1)
        xp, yp = x[idx].repeat(r, *[1] * (x.dim() - 1)), flipped[idx].repeat(r)
        net = _fit(ds, model, torch.cat([x, xp]), torch.cat([y, yp]), cfg, seed, dev)
        info = dict(quantile=q, repeats=r, n_flipped=len(idx), val_error=_error(net, ds.x_val, ds.y_val, ds.task, dev),
                    test_error=_error(net, ds.x_test, ds.y_test, ds.task, dev))
        cands.append((info, net))
    return _error(clean, ds.x_test, ds.y_test, ds.task, dev), cands


def _check_error(error) -> float:
    e = check_positive("error", error)
    if e >= 1:
        raise PoisonlibError(f"error must be a test error in (0, 1), got {error!r}")
    return e


def _pick(error, clean_error, cands):
    info, net = min(cands, key=lambda c: abs(c[0]["val_error"] - error))
    out = dict(info, requested_error=error, clean_error=clean_error, candidates=[c[0] for c in cands])
    return net, out


def label_flip_targets(
    ds,
    errors=(0.05, 0.1, 0.15),
    *,
    model: str = "lr",
    quantiles=DEFAULT_QUANTILES,
    repeats=DEFAULT_REPEATS,
    train_config: dict | None = None,
    seed: int = 0,
    device: str = "auto",
    progress: bool | None = None,
) -> list[tuple[torch.nn.Module, dict]]:
    """One label-flip target per requested error, sharing one search (every candidate trained once).

    Returns a list of ``(target_model, info)`` in the order of ``errors``; see
    :func:`label_flip_target` for ``info``.
    """
    errors = [_check_error(e) for e in errors]
    clean_error, cands = _search(ds, model, quantiles, repeats, train_config, seed, device, progress)
    return [_pick(e, clean_error, cands) for e in errors]


def label_flip_target(
    ds,
    error: float,
    *,
    model: str = "lr",
    quantiles=DEFAULT_QUANTILES,
    repeats=DEFAULT_REPEATS,
    train_config: dict | None = None,
    seed: int = 0,
    device: str = "auto",
    progress: bool | None = None,
) -> tuple[torch.nn.Module, dict]:
    """Label-flip target whose validation error is closest to ``error`` (Suya et al. 2021).

    Parameters
    ----------
    ds : a :class:`poisonlib.data.Dataset` with a classification task.
    error : requested error in (0, 1), e.g. 0.05, 0.10, 0.15 (Table 6).
    model : registered model name (``"lr"``: logistic regression).
    quantiles, repeats : the grid of margin quantiles q and copies r.
    train_config : keyword arguments of :func:`poisonlib.train.train` (dict or
        ``TrainConfig``); for
        ``"lr"`` they update ``epochs=20, lr=1.0, optimizer="lbfgs"`` (optimality).
    seed : initialisation and batch order of every training run.

    Returns
    -------
    ``(target_model, info)`` with ``info`` = ``test_error``, ``val_error``,
    ``quantile``, ``repeats``, ``n_flipped`` (distinct flipped points, each added
    ``repeats`` times), ``requested_error``, ``clean_error`` (test) and
    ``candidates`` (the same keys for every (q, r) tried).
    """
    return label_flip_targets(ds, (error,), model=model, quantiles=quantiles, repeats=repeats, train_config=train_config,
                              seed=seed, device=device, progress=progress)[0]
