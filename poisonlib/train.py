"""Seeded training and evaluation of a model on a dataset split.

>>> from poisonlib import data, models, train
>>> ds = data.load_dataset("gaussian10")
>>> m = models.model_for("lr", ds, seed=0)
>>> m, hist = train.train(m, ds.x_train, ds.y_train, ds.task, epochs=50, lr=0.5, progress=False)
>>> train.evaluate(m, ds.x_test, ds.y_test, ds.task)["accuracy"] > 0.8
True
"""

from __future__ import annotations

import os
import sys
from dataclasses import asdict, dataclass

import torch
from tqdm import tqdm

from ._meter import capped, filled
from ._validation import PoisonlibError, check_choice, check_finite, check_int, check_positive
from .models import loss_fn, predict

OPTIMIZERS = ("sgd", "adam", "lbfgs", "adadelta")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` gives CUDA when present, else CPU; ``"cuda"`` without a GPU is an error."""
    if isinstance(device, torch.device):
        return device
    check_choice("device", str(device).split(":")[0], ("auto", "cpu", "cuda"))
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise PoisonlibError(f"device {device!r} requested but no CUDA GPU is available; use 'cpu' or 'auto'")
    return torch.device(device)


def show_progress(progress: bool | None) -> bool:
    """Whether to draw progress bars: ``progress`` if given, else ``POISONLIB_PROGRESS``
    (``0`` off, ``1`` on), else only when stderr is a terminal -- in logs and CI a bar
    would write every frame (the grids then print one line per finished cell instead)."""
    if progress is not None:
        return bool(progress)
    env = os.environ.get("POISONLIB_PROGRESS")
    if env in ("0", "1"):
        return env == "1"
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run (``batch_size=None`` is full batch)."""

    epochs: int = 100
    lr: float = 0.1
    batch_size: int | None = None
    optimizer: str = "sgd"
    momentum: float = 0.0
    weight_decay: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


def _make_optimizer(name, params, lr, momentum, weight_decay):
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "lbfgs":  # full-batch quasi-Newton, for convex problems solved to optimality
        return torch.optim.LBFGS(params, lr=lr, max_iter=50, tolerance_grad=1e-10, tolerance_change=1e-14, history_size=50, line_search_fn="strong_wolfe")
    if name == "adadelta":  # the clean training of the authors' GradPC script (PyTorch's MNIST example)
        return torch.optim.Adadelta(params, lr=lr, weight_decay=weight_decay)
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


def train(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    task: str,
    *,
    epochs: int = 100,
    lr: float = 0.1,
    batch_size: int | None = None,
    optimizer: str = "sgd",
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    seed: int = 0,
    device: str = "auto",
    x_val: torch.Tensor | None = None,
    y_val: torch.Tensor | None = None,
    progress: bool | None = None,
    desc: str = "train",
    objective=None,
):
    """Train ``model`` in place on (x, y) by minimising the mean task loss.

    Mini-batches are reshuffled each epoch from a generator seeded by ``seed``;
    ``batch_size=None`` means full-batch gradient descent. ``optimizer="lbfgs"``
    (with ``lr=1``) runs up to 50 L-BFGS iterations with a strong-Wolfe line
    search per epoch: a convex model is then trained to optimality. Returns
    ``(model, history)`` where ``history`` has the mean training loss of each
    epoch (``"loss"``) and, when a validation split is given, its accuracy
    (``"val_accuracy"``) or mean loss (regression). ``objective(model, xb, yb)``,
    when given, replaces the mean task loss of a mini-batch (e.g. MaxUp's worst
    case over augmentations, :func:`poisonlib.defenses.maxup_train`).
    """
    epochs = check_int("epochs", epochs, minimum=1)
    lr = check_positive("lr", lr)
    check_choice("optimizer", optimizer, OPTIMIZERS)
    check_finite("training features", x)
    dev = resolve_device(device)
    model.to(dev).train()
    x, y = x.to(dev), y.to(dev)
    n = len(x)
    bs = n if batch_size is None else min(check_int("batch_size", batch_size, minimum=1), n)
    opt = _make_optimizer(optimizer, model.parameters(), lr, momentum, weight_decay)
    loss = loss_fn(task)
    gen = torch.Generator().manual_seed(seed)
    history: dict[str, list[float]] = {"loss": []}
    bar = tqdm(range(epochs), desc=desc, disable=not show_progress(progress), leave=False)
    for _ in bar:
        perm = torch.randperm(n, generator=gen).to(dev) if bs < n else torch.arange(n, device=dev)
        total = 0.0
        for start in capped(range(0, n, bs), "training batches"):
            idx = perm[start : start + bs]

            def closure():
                opt.zero_grad(set_to_none=True)
                batch_loss = loss(model(x[idx]), y[idx]) if objective is None else objective(model, x[idx], y[idx])
                batch_loss.backward()
                return batch_loss

            batch_loss = opt.step(closure)
            total += float(batch_loss.detach()) * len(idx)
        history["loss"].append(total / n)
        if x_val is not None:
            m = evaluate(model, x_val, y_val, task, device=dev)
            history.setdefault("val_" + _main_metric(task), []).append(m[_main_metric(task)])
            model.train()
        bar.set_postfix(loss=f"{history['loss'][-1]:.4g}")
    if not torch.isfinite(torch.tensor(history["loss"][-1])):
        raise PoisonlibError(f"training diverged (loss {history['loss'][-1]}); lower lr={lr}")
    model.eval()
    return model, history


def _main_metric(task: str) -> str:
    return "loss" if task == "regression" else "accuracy"


@torch.no_grad()
def outputs(model: torch.nn.Module, x: torch.Tensor, *, device="auto", batch_size: int = 4096) -> torch.Tensor:
    """Model outputs on ``x`` in eval mode, computed in chunks, returned on the CPU.

    Under a dry run's meter (:mod:`poisonlib._meter`) only the first chunks are computed and the
    rest of the (full-size) result is left at zero: an evaluation's time is priced, not its numbers."""
    dev = resolve_device(device)
    model.to(dev).eval()
    out = filled(len(x), batch_size, lambda a, b: model(x[a:b].to(dev)).cpu(), "evaluation batches")
    return out if out is not None else model(x[:0].to(dev)).cpu()


def evaluate(model, x, y, task: str, *, device="auto", batch_size: int = 4096) -> dict:
    """Mean loss and, for classifiers, accuracy in [0, 1] of ``model`` on (x, y)."""
    out = outputs(model, x, device=device, batch_size=batch_size)
    res = {"loss": float(loss_fn(task)(out, y))}
    if task != "regression":
        res["accuracy"] = float((predict(out, task) == y).float().mean())
    return res


def accuracy(model, x, y, task: str, *, device="auto") -> float:
    """Classification accuracy in [0, 1]."""
    return evaluate(model, x, y, task, device=device)["accuracy"]
