"""Clean models and the targets made from them (Sec. 2, 5; Tables 1, 5, 6, 9), shared by every cell.

The target makers are registered by name in :data:`poisonlib.attacks.registry.TARGETS`:
``gradpc`` and ``randompc`` corrupt the clean model's parameters within a radius ``eps_w``
(GradPC at ``eps_w="calibrated"`` picks the radius on the validation split); ``labelflip``
and ``tgda`` retrain a model on poisoned data. :func:`clean_and_target` trains (or loads)
the clean model, makes the target and caches both under ``results/models``.
"""

from __future__ import annotations

import os

import torch

from ._validation import PoisonlibError, check_positive
from .attacks.gradpc import gradpc, randompc
from .attacks.registry import TARGETS, get_attack, register_target
from .evaluation import reference_accuracy, retrain
from .keys import CALIBRATED, model_config
from .models import model_for
from .protocols import finite_poisons, get_protocol
from .results import atomic_torch_save, config_hash, default_results_dir, load_torch, quarantine
from .theory import tau_model
from .train import TrainConfig, evaluate, resolve_device, train
from .profiles import get_profile

def clean_and_target(
    ds,
    model: str,
    eps_w: float,
    profile="cpu",
    *,
    target: str = "gradpc",
    eps_w_norm: str = "absolute",
    noise: str = "parameter",
    scale: float = 1.0,
    target_seed: int = 0,
    data_root: str | None = None,
    device: str = "auto",
    results_dir: str | None = None,
    progress: bool | None = None,
    protocol="paper",
):
    """Train the clean model and corrupt it into the target; both cached under ``results/models``.

    ``ds`` is the dataset as ``protocol`` prepared it (:func:`load_for_profile`); the
    protocol also sets how the clean model is trained (:meth:`Protocol.clean_config`).

    ``target``: ``"gradpc"`` or ``"randompc"`` (with ``noise``, see
    :func:`~poisonlib.attacks.gradpc.randompc`), both at radius ``eps_w``;
    ``"labelflip"``: the label-flip target of Suya et al. (2021) whose test error is
    closest to ``eps_w`` (a fraction, Table 6); ``"tgda"``: the model retrained on
    clean data + TGDA poisons at ε_d = ``eps_w`` (Table 9). ``scale`` multiplies the
    target's last linear layer (weights and bias), e.g. 0.5 for the w/2
    targets of Table 8: same predictions, lower confidence, smaller τ (Ex. 2;
    for LR this is exactly w/2).

    Returns ``(clean_model, target_model, info)``; ``info`` holds clean / target
    test accuracy (%), ‖w_target - w_clean‖₂, τ(2), τ(c) and ⟨W, G(μ)⟩ of the target.
    """
    prof = get_profile(profile)
    maker = TARGETS.get(target)
    eps_w = resolve_eps_w(eps_w, target)
    scale = check_positive("scale", scale)
    proto = get_protocol(protocol)
    tcfg = proto.clean_config(model, prof.train_config(model))
    extra = dict(target=target, eps_w=eps_w, eps_w_norm=eps_w_norm, gradpc_batch_size=prof.gradpc_batch_size)
    if target == "randompc":
        extra["noise"] = noise
    if eps_w == CALIBRATED:
        extra["calibration"] = calibration_request(ds.name, model)
    if maker.poisoned:  # these targets are made by poisoning and retraining
        extra[target] = prof.attack_options(target, model)
        extra["protocol"] = proto.key()
    if scale != 1.0:
        extra["scale"] = scale
    key = model_config("target", ds, model=model, train=tcfg, seed=target_seed, data_root=data_root, **extra)
    path = os.path.join(results_dir or default_results_dir(), "models", config_hash(key) + ".pt")
    clean, tgt = model_for(model, ds), model_for(model, ds)
    state = _load_models(path, ("clean", "target", "info"), clean=clean, target=tgt)
    if state is not None:
        return clean.eval(), tgt.eval(), {**state["info"], "n_train": len(ds.x_train)}
    clean = clean_model(ds, model, tcfg, seed=target_seed, data_root=data_root, device=device, results_dir=results_dir, progress=progress)
    tgt, pc = maker.make(ds, model, clean, eps_w, prof, proto, seed=target_seed, device=device, progress=progress, norm=eps_w_norm, noise=noise,
                         request=key.get("calibration"))
    clean, tgt = clean.cpu(), tgt.cpu()
    if scale != 1.0:
        scale_last_layer(tgt, scale)
    info = {
        "clean_acc": 100 * evaluate(clean, ds.x_test, ds.y_test, ds.task)["accuracy"],
        "target_acc": 100 * evaluate(tgt, ds.x_test, ds.y_test, ds.task)["accuracy"],
        **{k: v for k, v in pc.items() if k in ("delta_norm", "radius", "label_flip", "tgda_eps_d", "eps_w_calibrated", "calibration")},
        **{k: v for k, v in tau_model(tgt, ds.x_train, ds.y_train, ds.task).items()},
    }
    info["target_drop"] = info["target_acc"] - info["clean_acc"]
    if maker.poisoned:  # a retrained target: its drop is measured like a retrained model's
        rcfg = prof.retrain_config(model, proto, len(ds.x_train))
        info["reference_acc"] = reference_accuracy(ds, model, rcfg, tcfg, info, seed=target_seed, device=device, results_dir=results_dir)
        info["target_drop"] = info["target_acc"] - info["reference_acc"]
    info["n_train"] = len(ds.x_train)
    atomic_torch_save({"clean": clean.state_dict(), "target": tgt.state_dict(), "info": info, "key": key}, path)
    return clean.eval(), tgt.eval(), info


def resolve_eps_w(eps_w, target: str = "gradpc"):
    """A positive radius, or ``"calibrated"`` (GradPC targets only)."""
    if eps_w == CALIBRATED:
        if target != "gradpc":
            raise PoisonlibError(f"eps_w='calibrated' is for GradPC targets, not target {target!r}")
        return CALIBRATED
    return check_positive("eps_w", eps_w)


def calibration_request(dataset: str, model: str, tol: float = 0.5) -> dict:
    """What a calibrated target aims at: the paper's GradPC drop of that row (Table 2 for MNIST
    and the larger datasets, Table 7 for MNIST-17), reached on the validation split within ``tol``."""
    from . import paper

    table = 7 if dataset == "mnist17" else 2
    return {"table": table, "target_drop": paper.gradpc_target_drop(table, dataset, model), "tol": tol, "lo": 0.01, "hi": 10.0}


@register_target("gradpc")
def _gradpc_target(ds, model, clean, eps_w, prof, proto, *, seed, device, progress, norm, noise, request):
    """GradPC (Alg. 2) at radius ``eps_w``, or at the calibrated radius (:func:`_calibrated_target`)."""
    if eps_w == CALIBRATED:
        return _calibrated_target(ds, model, clean, request, norm, prof, seed, device, progress)
    return gradpc(clean, ds.x_train, ds.y_train, ds.task, eps_w, norm=norm, batch_size=prof.gradpc_batch_size, seed=seed, device=device,
                  progress=progress)


@register_target("randompc")
def _randompc_target(ds, model, clean, eps_w, prof, proto, *, seed, device, progress, norm, noise, request):
    """RandomPC: random noise of radius ``eps_w`` on the parameters (Table 5)."""
    return randompc(clean, eps_w, noise=noise, norm=norm, seed=seed)


def _calibrated_target(ds, model, clean, req, norm, prof, seed, device, progress):
    """GradPC at the radius whose target loses the paper's drop on the validation split (never the test split)."""
    from .attacks.gradpc import calibrate_eps_w

    cal = calibrate_eps_w(clean, ds.x_train, ds.y_train, ds.x_val, ds.y_val, ds.task, req["target_drop"], lo=req["lo"], hi=req["hi"],
                          tol=req["tol"], norm=norm, on_unreachable="closest", batch_size=prof.gradpc_batch_size, seed=seed, device=device,
                          progress=progress)
    rec = cal.record
    keep = ("target_drop", "val_drop", "tolerance_met", "reachable", "gradpc_runs", "iterations", "stop")
    return cal.target, {"delta_norm": rec.get("delta_norm", float("nan")), "radius": cal.eps_w, "eps_w_calibrated": cal.eps_w,
                        "calibration": {k: rec[k] for k in keep if k in rec}}


@register_target("labelflip", poisoned=True, radius=False, options_of="labelflip")
def _labelflip_target(ds, model, clean, strength, prof, proto, *, seed, device, progress, norm, noise, request):
    """The label-flip target of Suya et al. (2021) whose test error is closest to ``strength`` (Table 6)."""
    from .attacks.labelflip import label_flip_target

    tgt, lf = label_flip_target(ds, strength, model=model, train_config=prof.retrain_config(model, proto, len(ds.x_train)), seed=seed,
                                device=device, progress=progress, **prof.attack_options("labelflip", model))
    return _poisoned_target(clean, tgt, {"label_flip": {k: v for k, v in lf.items() if k != "candidates"}})


@register_target("tgda", poisoned=True, radius=False, options_of="tgda")
def _tgda_target(ds, model, clean, strength, prof, proto, *, seed, device, progress, norm, noise, request):
    """The model retrained on clean data + TGDA poisons at ε_d = ``strength`` (Table 9)."""
    tgda = get_attack("tgda")
    res = tgda(clean, None, ds, strength, box=tgda.poison_box(proto, ds), seed=seed, device=device, progress=progress,
               **prof.attack_options("tgda", model))
    tcfg = prof.retrain_config(model, proto, len(ds.x_train))
    tgt = retrain(ds, model, finite_poisons(res.x, "TGDA poisons"), res.y, tcfg, seed=seed, device=device, progress=progress)
    return _poisoned_target(clean, tgt, {"tgda_eps_d": res.eps_d})


def _poisoned_target(clean, tgt, extra: dict):
    """A target made by data poisoning, with its distance from the clean model."""
    tgt = tgt.cpu()
    w_c = torch.cat([p.detach().reshape(-1).cpu() for p in clean.parameters()])
    w_t = torch.cat([p.detach().reshape(-1) for p in tgt.parameters()])
    return tgt, {"delta_norm": float((w_t - w_c).norm()), "radius": float("nan"), **extra}


def clean_model(ds, model: str, train_config: TrainConfig, *, seed: int = 0, data_root=None, device="auto", results_dir=None, progress=None):
    """The clean model, trained once per (data, model, training protocol, seed) and cached
    under ``results/models/clean-<hash>.pt``; every target of it starts from this copy."""
    key = model_config("clean", ds, model=model, train=train_config, seed=seed, data_root=data_root)
    path = os.path.join(results_dir or default_results_dir(), "models", "clean-" + config_hash(key) + ".pt")
    m = model_for(model, ds, seed=seed)
    if _load_models(path, ("clean",), clean=m) is not None:
        return m.to(resolve_device(device))
    m, _ = train(m, ds.x_train, ds.y_train, ds.task, **train_config.as_dict(), seed=seed, device=device, progress=progress, desc="clean model")
    atomic_torch_save({"clean": {k: v.cpu() for k, v in m.state_dict().items()}, "key": key}, path)
    return m


def _load_models(path: str, keys: tuple, **models) -> dict | None:
    """A cached ``.pt`` of the store loaded into ``models`` (``name=module``: ``state[name]``
    is its state dict); ``None`` if there is none, or if it is corrupt or does not fit the
    models (then it is quarantined and the caller recomputes it)."""
    state = load_torch(path, keys)
    if state is None:
        return None
    try:
        for name, m in models.items():
            m.load_state_dict(state[name])
    except (RuntimeError, TypeError, AttributeError) as e:
        quarantine(path, f"does not fit the model ({(str(e).strip().splitlines() or [type(e).__name__])[0][:160]})")
        return None
    return state


def scale_last_layer(model: torch.nn.Module, factor: float) -> torch.nn.Module:
    """Multiply the last linear layer (weights and bias) of ``model`` by ``factor``, in place."""
    from .models import split_last_layer

    _, last = split_last_layer(model)
    with torch.no_grad():
        for p in last.parameters():
            p.mul_(factor)
    return model
