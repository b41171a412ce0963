"""How an attack is judged (Sec. 5): retrain a fresh model on clean ∪ poisons, compare it
with the target, and measure its drop from the right reference accuracy."""

from __future__ import annotations

import math
import os

import torch

from .keys import model_config
from .models import model_for
from .protocols import finite_poisons
from .results import atomic_write_json, config_hash, default_results_dir, read_json
from .train import TrainConfig, evaluate, train


def retrain(ds, model: str, x_poison, y_poison, train_config: TrainConfig, *, seed: int, device="auto", progress=None,
            per_epoch: bool = False, **model_kwargs):
    """A fresh model trained from scratch on clean ∪ poisons (the evaluation of Sec. 5).

    With ``per_epoch`` it returns ``(model, accuracies)``: the test accuracy (%) after every
    epoch, which the released script prints (its minimum is reported beside the last)."""
    x = torch.cat([ds.x_train, finite_poisons(x_poison).reshape(-1, *ds.input_shape)])
    y = torch.cat([ds.y_train, y_poison])
    m = model_for(model, ds, seed=seed, **model_kwargs)
    val = dict(x_val=ds.x_test, y_val=ds.y_test) if per_epoch else {}
    m, hist = train(m, x, y, ds.task, **train_config.as_dict(), seed=seed, device=device, progress=progress, desc="retrain", **val)
    if per_epoch:
        return m.cpu(), [100 * a for a in hist.get("val_accuracy", [])]
    return m.cpu()


def compare_to_target(retrained, target, ds) -> dict:
    """How close retraining came to the target: test accuracy (%) of the retrained
    model, ‖w_re - w_target‖₂, the cosine between the two parameter vectors, the
    norm ratio ‖w_re‖/‖w_target‖ and the % of test points where both predict alike."""
    from .models import predict
    from .train import outputs

    out_r, out_t = outputs(retrained, ds.x_test, device="cpu"), outputs(target, ds.x_test, device="cpu")
    w_r = torch.cat([p.detach().reshape(-1).double() for p in retrained.parameters()])
    w_t = torch.cat([p.detach().reshape(-1).double() for p in target.parameters()])
    res = {
        "param_distance": float((w_r - w_t).norm()),
        "param_cosine": float(w_r @ w_t / (w_r.norm() * w_t.norm()).clamp_min(1e-300)),
        "param_norm_ratio": float(w_r.norm() / w_t.norm().clamp_min(1e-300)),
    }
    if ds.task == "regression":
        return {**res, "retrained_loss": evaluate(retrained, ds.x_test, ds.y_test, ds.task)["loss"]}
    same = (predict(out_r, ds.task) == predict(out_t, ds.task)).float().mean()
    acc = (predict(out_r, ds.task) == ds.y_test).float().mean()
    return {**res, "retrained_acc": 100 * float(acc), "target_agreement": 100 * float(same)}


def reference_accuracy(ds, model: str, retrain_config: TrainConfig, clean_config: TrainConfig, info: dict, *, seed: int, device="auto",
                       results_dir: str | None = None) -> float:
    """The accuracy a drop is measured from: the clean model's when it was trained like the
    retrained one (the ``paper`` protocol), else a model retrained on the clean data alone
    with the retraining protocol and seed (``released``: the clean model of the GradPC
    script gets one epoch of Adadelta, retraining 100 epochs of SGD); cached under
    ``results/models/reference-<hash>.json``, as every cell of that data, model and seed shares it."""
    if retrain_config == clean_config:
        return info["clean_acc"]
    key = model_config("reference", ds, model=model, train=retrain_config, seed=seed)
    path = os.path.join(results_dir or default_results_dir(), "models", "reference-" + config_hash(key) + ".json")
    rec = read_json(path, lambda r: None if isinstance(r.get("accuracy"), (int, float)) else "lacks a numeric accuracy")
    if rec is not None:
        return float(rec["accuracy"])
    m = retrain(ds, model, ds.x_train[:0], ds.y_train[:0], retrain_config, seed=seed, device=device, progress=False)
    acc = 100 * evaluate(m, ds.x_test, ds.y_test, ds.task)["accuracy"]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    atomic_write_json({"accuracy": acc, "key": key}, path)
    return acc


def _steps(n: int, cfg: TrainConfig) -> int:
    """Optimiser steps of a training run over ``n`` points."""
    return cfg.epochs * (1 if cfg.batch_size is None else math.ceil(n / min(cfg.batch_size, n)))


