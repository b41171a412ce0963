"""GC against the defenses (Tables 3, 10): GC or GC-c, then Influence, Sever and MaxUp.

A ``defense`` cell reuses the poisons of its GC cell (kept on disk by that cell) and applies
each defense to clean ∪ poisons; the record holds, per defense, the accuracy after it, the
drop that remains and the accuracy it recovered.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from ._validation import PoisonlibError, check_choice
from .models import model_for
from .results import load_torch
from .train import evaluate, train

DEFENSE_NAMES = ("influence", "sever", "maxup")


def defend(defense: str, ds, model: str, x_poison, y_poison, attacked, prof, *, seed: int, device, progress=None, protocol,
           view=None) -> dict:
    """Apply ``defense`` to clean ∪ poisons and retrain; returns ``acc`` (test %), and for the
    sanitisers ``removed`` (points dropped) and ``removed_poisons`` (how many were poisons).

    Sever / Influence score the points at ``attacked`` (the model trained on the poisoned
    set) and drop as many points as there are poisons (the paper: "removes ε_d training
    points"); MaxUp retrains on the whole set with the worst case over m noisy copies. ``view``:
    the sanitisers' :func:`~poisonlib.defenses.scoring_view` of ``attacked`` on clean ∪ poisons and
    the validation set, when the caller shares one between Sever and Influence.
    """
    from .defenses import maxup_train, sanitize

    opts = prof.attack_options("defense", model)
    x = torch.cat([ds.x_train, x_poison.reshape(-1, *ds.input_shape)])
    y = torch.cat([ds.y_train, y_poison])
    n_p = len(x_poison)
    tcfg = prof.retrain_config(model, protocol, len(ds.x_train))
    if defense == "maxup":
        m = model_for(model, ds, seed=seed)
        m, _ = maxup_train(m, x, y, ds.task, m=opts.get("maxup_m", 4), sigma=opts.get("maxup_sigma", 0.1), box=protocol.poison_box(ds),
                           **tcfg.as_dict(), device=device, progress=progress)
        return {"acc": 100 * evaluate(m.cpu(), ds.x_test, ds.y_test, ds.task)["accuracy"]}
    keep = sanitize(defense, attacked, x, y, ds.task, n_p / len(x), x_val=ds.x_val, y_val=ds.y_val, l2=opts.get("influence_l2", 0.01),
                    view=view)
    is_poison = torch.arange(len(x)) >= len(ds.x_train)
    m = model_for(model, ds, seed=seed)
    m, _ = train(m, x[keep], y[keep], ds.task, **tcfg.as_dict(), seed=seed, device=device, progress=progress, desc=defense)
    return {"acc": 100 * evaluate(m.cpu(), ds.x_test, ds.y_test, ds.task)["accuracy"], "removed": int((~keep).sum()),
            "removed_poisons": int((~keep & is_poison).sum())}


def gc_spec(spec):
    """The GC (``clip=False``) or GC-c (``clip=True``: poisons clipped to the clean data's per-feature
    range) cell whose poisons the defense cell ``spec`` defends against."""
    c = spec.cell
    if isinstance(c.eps_d, str):
        raise PoisonlibError(f"defense cells take a numeric eps_d, got {c.eps_d!r}")
    gc = replace(c, kind="gc", clip=False, attack="gc", gc_options=(("clip", "range"),) if c.clip else ())
    return replace(spec, cell=gc)


def defense_metrics(spec, *, defenses=DEFENSE_NAMES, results_dir=None, progress=None) -> dict:
    """GC or GC-c at the cell's ε_d, then each defense. Metrics: ``clean_acc``, ``attacked_acc``
    and ``drop`` (GC / GC-c), and per defense ``<d>_acc``, ``<d>_drop`` (GC-d / GC-cd:
    accuracy after the defense - reference) and ``<d>_recovered`` (after - before the defense)."""
    from .defenses import DEFENSES, SANITIZERS, scoring_view

    for d in defenses:
        check_choice("defense", d, DEFENSES)
    c, dev = spec.cell, torch.device(spec.device)
    gc = gc_spec(spec)
    rec = gc.run(results_dir=results_dir, progress=progress, keep_poisons=True)
    p = load_torch(rec["poisons"], ("x", "y", "retrained"))
    if p is None:  # corrupt and quarantined: the GC cell recomputes its poisons
        rec = gc.run(results_dir=results_dir, progress=progress, keep_poisons=True)
        p = load_torch(rec["poisons"], ("x", "y", "retrained"))
    ds = spec.load_data()
    attacked = model_for(c.model, ds)
    attacked.load_state_dict(p["retrained"])  # the model GC's cell trained on clean ∪ poisons
    attacked.to(dev).eval()
    gm = rec["metrics"]
    out = {k: gm[k] for k in ("clean_acc", "target_acc", "tau2", "tauc", "eps_d", "n_poison", "n_clean")}
    out.update(attacked_acc=gm["retrained_acc"], drop=gm["drop"], reference_acc=gm.get("reference_acc", gm["clean_acc"]), gc_record=rec["config_hash"])
    view = None
    if any(d in SANITIZERS for d in defenses):  # one pass of the network over clean ∪ poisons for both sanitisers
        view = scoring_view(attacked, torch.cat([ds.x_train, p["x"].reshape(-1, *ds.input_shape)]), ds.x_val)
    for d in defenses:
        r = defend(d, ds, c.model, p["x"], p["y"], attacked, spec.profile, seed=c.seed, device=dev, progress=progress, protocol=spec.protocol,
                   view=view)
        out[f"{d}_acc"] = r["acc"]
        out[f"{d}_drop"] = r["acc"] - out["reference_acc"]
        out[f"{d}_recovered"] = r["acc"] - out["attacked_acc"]
        if "removed" in r:
            out[f"{d}_removed"], out[f"{d}_removed_poisons"] = r["removed"], r["removed_poisons"]
    return out
