"""Experiment cells for the other side of the paper's comparisons (App. C.5-C.10).

* :func:`attack_cell`: a baseline attack (TGDA, Gradient Matching, KKT, Model-Targeted)
  against the same clean model / target as GC, evaluated exactly like GC (retrain a
  fresh model on clean ∪ poisons, accuracy drop, distance to the target): Tables 2
  (baseline columns), 6 and 7.
* :func:`defense_cell`: GC (or GC-c, clipped to the clean data's range) and then each
  defense (Influence, Sever, MaxUp), with the accuracy the defense recovers: Tables 3, 10.

Both are cached in the results store like :func:`~poisonlib.experiments.gc_cell`.
"""

from __future__ import annotations

import torch

from ._validation import PoisonlibError, check_choice, check_poison_memory, check_positive
from .experiments import (
    clean_and_target,
    compare_to_target,
    gc_cell,
    get_profile,
    load_for_profile,
    _eps_w_key,
    reference_accuracy,
    resolve_eps_d,
    retrain,
)
from .attacks.gc import n_poison_points
from .grads import mixed_gradient_norm
from .models import model_for
from .protocols import finite_poisons, get_protocol
from .results import cached_run, load_torch
from .train import evaluate, resolve_device

ATTACKS = ("tgda", "gm", "kkt", "mt")
#: Attacks that aim at a target model (KKT, MT); TGDA and GM only use the clean model.
MODEL_TARGETED = ("kkt", "mt")


def _mt_options(options: dict, ds, model: str, eps: float, train_config, seed: int) -> dict:
    """MT's settings: ``max_rounds`` sets how many copies each round adds (the budget spread
    over at most that many retrainings); every round retrains a fresh ``model`` with the
    profile's protocol (``train_epochs`` overrides its epochs, e.g. 20 for networks, C.6)."""
    import math
    from dataclasses import replace

    from .train import train

    opts = dict(options)
    n_max = n_poison_points(eps, len(ds.x_train))
    opts.setdefault("per_round", max(1, math.ceil(n_max / opts.pop("max_rounds", n_max or 1))))
    opts.pop("max_rounds", None)
    cfg = replace(train_config, epochs=opts.pop("train_epochs", train_config.epochs))

    def fit(x, y, init_model):
        m = model_for(model, ds, seed=seed)
        return train(m, x, y, ds.task, **cfg.as_dict(), seed=seed, device=_device_of(init_model), progress=False, desc="MT refit")[0]

    return {**opts, "fit": fit}


def _in_feature_units(attack: str, opts: dict, ds) -> dict:
    """GM's eps-ball radius and step are in pixel units (16/255 as in Witches' Brew); on inputs a
    protocol normalised ((x - m) / s) they are divided by s, as Witches' Brew does."""
    norm = ds.info.get("view", {}).get("normalize")
    if attack != "gm" or not norm:
        return opts
    from .attacks.gm import EPS_WITCHES_BREW

    opts = dict(opts)
    opts["eps"] = opts.get("eps", EPS_WITCHES_BREW)
    opts = {k: (v / norm[1] if k in ("eps", "lr") and v is not None else v) for k, v in opts.items()}
    return opts


def _device_of(m) -> torch.device:
    return next(m.parameters()).device


def _run(attack, clean, tgt, ds, eps, *, seed, device, progress, options, model=None, train_config=None, box=None):
    if attack == "mt":
        options = _mt_options(options, ds, model, eps, train_config, seed)
    common = dict(box=box, seed=seed, device=device, progress=progress, **options)
    if attack == "tgda":
        from .attacks.tgda import tgda

        return tgda(clean, ds.x_train, ds.y_train, ds.task, eps, x_val=ds.x_val, y_val=ds.y_val, **common)
    if attack == "gm":
        from .attacks.gm import gradient_matching

        return gradient_matching(clean, ds.x_train, ds.y_train, ds.task, eps, **common)
    if attack == "kkt":
        from .attacks.kkt import kkt_attack

        return kkt_attack(tgt, ds.x_train, ds.y_train, ds.task, eps, **common)
    from .attacks.mt import model_targeted

    return model_targeted(tgt, ds.x_train, ds.y_train, ds.task, eps, **common)


def run_attack(dataset: str, model: str, eps_w: float, eps_d, attack: str, *, seed: int = 0, profile="cpu", target: str = "gradpc",
               attack_options: dict | None = None, data_root=None, device="auto", results_dir=None, progress=None, protocol="paper"):
    """One baseline-attack cell, uncached: returns ``(metrics, result)``.

    ``protocol`` sets the data view, the clean model, the poisons' admissible set (the
    pixel box, or none under ``released``) and the retraining, as for GC.

    The clean model and target are :func:`~poisonlib.experiments.clean_and_target`'s
    (shared with the GC cells); ``attack_options`` override the profile's settings
    (``Profile.attack_options``). For MT ``eps_d`` is the budget: it stops earlier
    when the target is reached, and ``eps_d`` in the metrics is what it used.
    Metrics: those of a GC cell (accuracies, ``drop``, τ, ``residual_final``,
    ``grad_mixed``, distance / agreement with the target) plus the attack's
    ``attack_config`` (MT: ``reached``).
    """
    check_choice("attack", attack, ATTACKS)
    prof = get_profile(profile)
    proto = get_protocol(protocol)
    dev = resolve_device(device)
    ds = load_for_profile(dataset, prof, data_root, proto)
    if not isinstance(eps_d, str):  # size the poison set before training anything
        check_poison_memory(check_positive("eps_d", eps_d), len(ds.x_train), ds.n_features, dev)
    clean, tgt, info = clean_and_target(ds, model, eps_w, prof, target=target, data_root=data_root, device=dev, results_dir=results_dir,
                                        progress=progress, protocol=proto)
    eps = resolve_eps_d(eps_d, info)
    opts = _in_feature_units(attack, {**prof.attack_options(attack, model), **(attack_options or {})}, ds)
    tcfg = prof.retrain_config(model, proto, len(ds.x_train))
    # TGDA and GM obey the protocol's admissible set like GC; KKT and MT search for their points inside the
    # feature box under both protocols (an unbounded argmax of the loss has no maximiser)
    box = proto.poison_box(ds) if attack in ("tgda", "gm") else ds.feature_box
    res = _run(attack, clean.to(dev), tgt.to(dev), ds, eps, seed=seed, device=dev, progress=progress, options=opts, model=model,
               train_config=tcfg, box=box)
    retrained = retrain(ds, model, finite_poisons(res.x, f"{attack.upper()} poisons"), res.y, tcfg, seed=seed, device=dev, progress=progress)
    cmp = compare_to_target(retrained, tgt.cpu(), ds)
    ref = reference_accuracy(ds, model, tcfg, proto.clean_config(model, prof.train_config(model)), info, seed=seed, device=dev,
                             results_dir=results_dir)
    norms = mixed_gradient_norm(tgt.to(dev), ds.x_train, ds.y_train, res.x, res.y, ds.task) if len(res.x) else {"residual": float("nan"), "mixed": float("nan")}
    metrics = {
        **info, "eps_d_requested": eps_d if isinstance(eps_d, str) else float(eps_d), "eps_d": res.eps_d, "n_poison": len(res.x),
        "n_clean": len(ds.x_train), **cmp, "reference_acc": ref, "drop": cmp["retrained_acc"] - ref, "residual_final": norms["residual"],
        "grad_mixed": norms["mixed"], "attack_config": _jsonable(res.config), "protocol": proto.name,
    }
    if len(res.x):
        metrics["poison_range"] = [float(res.x.min()), float(res.x.max())]
    return metrics, res


def _jsonable(d: dict) -> dict:
    out = {}
    for k, v in (d or {}).items():
        if isinstance(v, (bool, int, float, str)) or v is None:
            out[k] = v
        elif isinstance(v, (list, tuple)) and all(isinstance(e, (bool, int, float, str)) for e in v):
            out[k] = list(v)
        elif isinstance(v, dict):
            out[k] = _jsonable(v)
    return out


def attack_config(dataset: str, model: str, eps_w, eps_d, attack: str, *, seed: int = 0, profile="cpu", target: str = "gradpc",
                  attack_options: dict | None = None, data_root=None, device="auto", protocol="paper") -> dict:
    """What an :func:`attack_cell` record is keyed by (``results/<attack>/<config_hash>.json``)."""
    prof = get_profile(profile)
    config = dict(
        dataset=dataset, model=model, eps_w=_eps_w_key(eps_w), eps_d=eps_d if isinstance(eps_d, str) else float(eps_d), seed=seed,
        target=target, profile=prof.cell_config(model, dataset),
        options={**prof.attack_options(attack, model), **(attack_options or {})},
        data="embedded" if data_root is None else "full", device=str(resolve_device(device)),
        protocol=get_protocol(protocol).key(),
    )
    if target in ("tgda", "labelflip"):
        config[target] = prof.attack_options(target, model)
    return config


def attack_cell(dataset: str, model: str, eps_w: float, eps_d, attack: str, *, seed: int = 0, profile="cpu", target: str = "gradpc",
                attack_options: dict | None = None, data_root=None, device="auto", protocol="paper", force: bool = False, results_dir=None,
                progress=None) -> dict:
    """:func:`run_attack` cached in the results store as experiment ``attack``; the keywords up
    to ``protocol`` are its, resolved once here, and what the record is keyed by (:func:`attack_config`)."""
    cell = dict(seed=seed, profile=get_profile(profile), target=target, attack_options=attack_options, data_root=data_root,
                device=str(resolve_device(device)), protocol=get_protocol(protocol))
    config = attack_config(dataset, model, eps_w, eps_d, attack, **cell)

    def compute():
        return run_attack(dataset, model, eps_w, eps_d, attack, **cell, results_dir=results_dir, progress=progress)[0]

    return cached_run(attack, config, compute, results_dir=results_dir, force=force, device=config["device"])


# --------------------------------------------------------------------------- defenses (Tables 3, 10)
def defend(defense: str, ds, model: str, x_poison, y_poison, attacked, prof, *, seed: int, device, progress=None, protocol="paper") -> dict:
    """Apply ``defense`` to clean ∪ poisons and retrain; returns ``acc`` (test %), and for the
    sanitisers ``removed`` (points dropped) and ``removed_poisons`` (how many were poisons).

    Sever / Influence score the points at ``attacked`` (the model trained on the poisoned
    set) and drop as many points as there are poisons (the paper: "removes ε_d training
    points"); MaxUp retrains on the whole set with the worst case over m noisy copies.
    """
    from .defenses import maxup_train, sanitize

    opts = prof.attack_options("defense", model)
    x = torch.cat([ds.x_train, x_poison.reshape(-1, *ds.input_shape)])
    y = torch.cat([ds.y_train, y_poison])
    n_p = len(x_poison)
    proto = get_protocol(protocol)
    tcfg = prof.retrain_config(model, proto, len(ds.x_train))
    if defense == "maxup":
        m = model_for(model, ds, seed=seed)
        m, _ = maxup_train(m, x, y, ds.task, m=opts.get("maxup_m", 4), sigma=opts.get("maxup_sigma", 0.1), box=proto.poison_box(ds),
                           **tcfg.as_dict(), device=device, progress=progress)
        return {"acc": 100 * evaluate(m.cpu(), ds.x_test, ds.y_test, ds.task)["accuracy"]}
    keep = sanitize(defense, attacked, x, y, ds.task, n_p / len(x), x_val=ds.x_val, y_val=ds.y_val, l2=opts.get("influence_l2", 0.01))
    is_poison = torch.arange(len(x)) >= len(ds.x_train)
    m = model_for(model, ds, seed=seed)
    from .train import train

    m, _ = train(m, x[keep], y[keep], ds.task, **tcfg.as_dict(), seed=seed, device=device, progress=progress, desc=defense)
    return {"acc": 100 * evaluate(m.cpu(), ds.x_test, ds.y_test, ds.task)["accuracy"], "removed": int((~keep).sum()),
            "removed_poisons": int((~keep & is_poison).sum())}


def run_defenses(dataset: str, model: str, eps_w: float, eps_d, *, clip: bool = False, defenses=("influence", "sever", "maxup"), seed: int = 0,
                 profile="cpu", data_root=None, device="auto", results_dir=None, progress=None, protocol="paper") -> dict:
    """GC (``clip=False``) or GC-c (``clip=True``: poisons clipped to the clean data's
    per-feature range) at ``eps_d``, then each defense. Metrics: ``clean_acc``, ``attacked_acc``
    and ``drop`` (GC / GC-c), and per defense ``<d>_acc``, ``<d>_drop`` (GC-d / GC-cd:
    accuracy after the defense - clean) and ``<d>_recovered`` (after - before the defense)."""
    from .defenses import DEFENSES

    for d in defenses:
        check_choice("defense", d, DEFENSES)
    prof = get_profile(profile)
    proto = get_protocol(protocol)
    dev = resolve_device(device)
    gc_kw = dict(seed=seed, profile=prof, gc_options={"clip": "range"} if clip else None, data_root=data_root, device=device,
                 results_dir=results_dir, progress=progress, keep_poisons=True, protocol=proto)
    rec = gc_cell(dataset, model, eps_w, eps_d, **gc_kw)
    p = load_torch(rec["poisons"], ("x", "y", "retrained"))
    if p is None:  # corrupt and quarantined: the GC cell recomputes its poisons
        rec = gc_cell(dataset, model, eps_w, eps_d, **gc_kw)
        p = load_torch(rec["poisons"], ("x", "y", "retrained"))
    ds = load_for_profile(dataset, prof, data_root, proto)
    attacked = model_for(model, ds)
    attacked.load_state_dict(p["retrained"])  # the model GC's cell trained on clean ∪ poisons
    attacked.to(dev).eval()
    gm = rec["metrics"]
    out = {k: gm[k] for k in ("clean_acc", "target_acc", "tau2", "tauc", "eps_d", "n_poison", "n_clean")}
    out.update(attacked_acc=gm["retrained_acc"], drop=gm["drop"], reference_acc=gm.get("reference_acc", gm["clean_acc"]), gc_record=rec["config_hash"])
    for d in defenses:
        r = defend(d, ds, model, p["x"], p["y"], attacked, prof, seed=seed, device=dev, progress=progress, protocol=proto)
        out[f"{d}_acc"] = r["acc"]
        out[f"{d}_drop"] = r["acc"] - out["reference_acc"]
        out[f"{d}_recovered"] = r["acc"] - out["attacked_acc"]
        if "removed" in r:
            out[f"{d}_removed"], out[f"{d}_removed_poisons"] = r["removed"], r["removed_poisons"]
    return out


def defense_config(dataset: str, model: str, eps_w, eps_d, *, clip: bool = False, seed: int = 0, profile="cpu", data_root=None,
                   device="auto", protocol="paper") -> dict:
    """What a :func:`defense_cell` record is keyed by (``results/defense/<config_hash>.json``)."""
    if isinstance(eps_d, str):
        raise PoisonlibError(f"defense cells take a numeric eps_d, got {eps_d!r}")
    prof = get_profile(profile)
    return dict(dataset=dataset, model=model, eps_w=_eps_w_key(eps_w), eps_d=float(eps_d), clip=bool(clip), seed=seed,
                profile=prof.cell_config(model, dataset), options=prof.attack_options("defense", model),
                data="embedded" if data_root is None else "full", device=str(resolve_device(device)), protocol=get_protocol(protocol).key())


def defense_cell(dataset: str, model: str, eps_w: float, eps_d, *, clip: bool = False, seed: int = 0, profile="cpu", data_root=None,
                 device="auto", results_dir=None, force: bool = False, progress=None, protocol="paper") -> dict:
    """:func:`run_defenses` (all three defenses) cached as experiment ``"defense"``."""
    prof = get_profile(profile)
    proto = get_protocol(protocol)
    config = defense_config(dataset, model, eps_w, eps_d, clip=clip, seed=seed, profile=prof, data_root=data_root, device=device, protocol=proto)

    def compute():
        return run_defenses(dataset, model, eps_w, eps_d, clip=clip, seed=seed, profile=prof, data_root=data_root, device=device,
                            results_dir=results_dir, progress=progress, protocol=proto)

    return cached_run("defense", config, compute, results_dir=results_dir, force=force, device=config["device"])
