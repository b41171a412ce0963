"""Attacks and target makers in registries keyed by name (torchvision's ``get_model`` idea).

Every poisoning attack is registered once, with what the pipeline needs to know of it:

* ``aims_at``: ``"target"`` for the model-targeted attacks (GC, KKT, MT), which are given the
  target model; ``"clean"`` for TGDA and Gradient Matching, which attack the clean model;
* ``linear_only``: KKT needs a convex (linear) model;
* ``box``: whether its poisons obey the protocol's admissible set (``"protocol"``: GC, TGDA,
  GM) or are searched for inside the data's feature box under every protocol (``"feature"``:
  KKT and MT, whose argmax of the loss has no maximiser on an unbounded set);
* ``fixed``: the keywords the pipeline fills in; every other keyword of the function is an
  option a profile may set (:meth:`AttackSpec.option_names`, checked when a profile is built).

Target makers (GradPC, RandomPC, label flip, TGDA-poisoned model) are registered the same way
in :data:`TARGETS` by :mod:`poisonlib.targets`. The CLI, the grids, the profiles and the
pipeline look attacks up here; nothing else branches on an attack's name.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field

from .._registry import Registry

ATTACKS = Registry("attack")
TARGETS = Registry("target")

#: Keywords the pipeline passes to every attack (never profile options).
PIPELINE_KEYWORDS = frozenset({"model", "target", "x_clean", "y_clean", "task", "eps_d", "box", "seed", "device", "progress", "x_val",
                               "y_val", "fit", "ds", "error", "train_config"})


@dataclass(frozen=True)
class AttackContext:
    """What an attack's options are resolved against: the cell's data, model, budget, retraining,
    seed, profile, protocol, GC's step count and checkpoint file."""

    ds: object
    model: str
    eps_d: float
    train_config: object
    seed: int
    profile: object
    protocol: object
    epochs: int | None = None
    checkpoint: str | None = None


@dataclass(frozen=True)
class AttackSpec:
    """One registered attack: its function and metadata (see the module docstring)."""

    name: str
    label: str
    fn: Callable
    aims_at: str  # "target" or "clean"
    box: str = "protocol"  # "protocol" or "feature"
    linear_only: bool = False
    extra_options: frozenset = field(default_factory=frozenset)  # options the pipeline consumes itself
    description: str = ""
    prepare_fn: Callable | None = None  # (options, AttackContext) -> keywords of fn
    curve: bool = False  # records its learning curve and example poisons (GC)
    uses_val: bool = False  # is given the validation split (TGDA's leader objective)
    per_epoch_eval: bool = False  # its retraining is evaluated every epoch where the protocol asks (the released GC script)

    def prepare(self, options: dict, ctx: AttackContext) -> dict:
        """The keywords of its function for one cell: the profile's options (over which the
        cell's own) turned into what the function takes (:class:`AttackContext`)."""
        return self.prepare_fn(options, ctx) if self.prepare_fn is not None else dict(options)

    def option_names(self) -> set:
        """The options a profile may set for this attack: the function's keywords the pipeline does not fill, plus its own."""
        return (set(inspect.signature(self.fn).parameters) - PIPELINE_KEYWORDS) | set(self.extra_options)

    def poison_box(self, protocol, ds):
        """The admissible set of its poisons under ``protocol`` (``None``: unbounded)."""
        return protocol.poison_box(ds) if self.box == "protocol" else ds.feature_box

    def __call__(self, clean, target, ds, eps_d: float, **kw):
        """Run the attack on ``ds``'s training split; returns a :class:`~poisonlib.attacks.GCResult`."""
        model = target if self.aims_at == "target" else clean
        if self.uses_val:
            kw = dict(kw, x_val=ds.x_val, y_val=ds.y_val)
        return self.fn(model, ds.x_train, ds.y_train, ds.task, eps_d, **kw)


@dataclass(frozen=True)
class TargetSpec:
    """One registered target maker. ``poisoned``: the target is a model retrained on poisoned data
    (label flip, TGDA), so its key holds the protocol and the maker's options (``options_of``:
    the profile's option group, e.g. ``"labelflip"``); ``radius``: its strength ``eps_w`` is a
    parameter-space radius (GradPC, RandomPC), which a grid may put on another axis.
    ``options_of``: the profile's option group for it (:func:`option_names`)."""

    name: str
    make: Callable  # (ds, model, clean, strength, prof, proto, *, seed, device, progress, norm, noise, batch_size) -> (target, info)
    poisoned: bool = False
    radius: bool = True
    options_of: str | None = None


def register_attack(name: str, label: str, fn: Callable, aims_at: str, **meta) -> AttackSpec:
    spec = AttackSpec(name, label, fn, aims_at, **meta)
    ATTACKS.register(name)(spec)
    return spec


def register_target(name: str, **meta):
    """Decorator registering a target maker under ``name``."""

    def deco(make):
        TARGETS.register(name)(TargetSpec(name, make, **meta))
        return make

    return deco


def get_attack(name: str) -> AttackSpec:
    return ATTACKS.get(name)


def get_target(name: str) -> TargetSpec:
    return TARGETS.get(name)


#: Profile option groups that are not attacks: the function whose keywords they set.
_MAKERS: dict[str, Callable] = {}


def option_names(group: str) -> set:
    """Options a profile may set in option group ``group``: an attack, or a target maker (``labelflip``)."""
    if group in ATTACKS:
        return ATTACKS.get(group).option_names()
    return set(inspect.signature(_MAKERS[group]).parameters) - PIPELINE_KEYWORDS


def option_groups() -> list[str]:
    """Every option group a profile may hold (besides ``defense``)."""
    return [n for n in ATTACKS.names() if n != "gc"] + sorted(_MAKERS)


def _gc_keywords(options: dict, ctx: AttackContext) -> dict:
    """GC's step count, checkpoint, the profile's mini-batch for the dataset and the protocol's
    objective and optimiser (:meth:`~poisonlib.protocols.Protocol.gc_options`), under the cell's options."""
    stop = {"stop": ctx.profile.gc_stop} if ctx.profile.gc_stop else {}
    return {"epochs": ctx.epochs, "checkpoint": ctx.checkpoint, "batch_size": ctx.profile.gc_batch_size.get(ctx.ds.name),
            **stop, **ctx.protocol.gc_options(), **options}


def _in_feature_units(options: dict, ctx: AttackContext) -> dict:
    """GM's eps-ball radius and step are in pixel units (16/255 as in Witches' Brew); on inputs a
    protocol normalised ((x - m) / s) they are divided by s, as Witches' Brew does."""
    norm = ctx.ds.info.get("view", {}).get("normalize")
    if not norm:
        return dict(options)
    from .gm import EPS_WITCHES_BREW

    opts = {**options, "eps": options.get("eps", EPS_WITCHES_BREW)}
    return {k: (v / norm[1] if k in ("eps", "lr") and v is not None else v) for k, v in opts.items()}


def _mt_keywords(options: dict, ctx: AttackContext) -> dict:
    """MT's settings: ``max_rounds`` sets how many copies each round adds (the budget spread
    over at most that many retrainings); every round retrains a fresh model with the
    profile's protocol (``train_epochs`` overrides its epochs, e.g. 20 for networks, C.6)."""
    import math
    from dataclasses import replace

    from ..models import model_for
    from ..train import train
    from .gc import n_poison_points

    opts = dict(options)
    n_max = n_poison_points(ctx.eps_d, len(ctx.ds.x_train))
    opts.setdefault("per_round", max(1, math.ceil(n_max / opts.pop("max_rounds", n_max or 1))))
    opts.pop("max_rounds", None)
    cfg = replace(ctx.train_config, epochs=opts.pop("train_epochs", ctx.train_config.epochs))
    ds, model, seed = ctx.ds, ctx.model, ctx.seed

    def fit(x, y, init_model):
        m = model_for(model, ds, seed=seed)
        device = next(init_model.parameters()).device
        return train(m, x, y, ds.task, **cfg.as_dict(), seed=seed, device=device, progress=False, desc="MT refit")[0]

    return {**opts, "fit": fit}


def _register_builtin() -> None:
    from .gc import gradient_canceling
    from .gm import gradient_matching
    from .kkt import kkt_attack
    from .labelflip import label_flip_target
    from .mt import model_targeted
    from .tgda import tgda

    register_attack("gc", "GC", gradient_canceling, "target", prepare_fn=_gc_keywords, curve=True, per_epoch_eval=True,
                    description="Gradient Canceling (Alg. 1) against a GradPC target")
    register_attack("tgda", "TGDA", tgda, "clean", uses_val=True, description="Total Gradient Descent Ascent (Lu et al. 2022)")
    register_attack("gm", "GM", gradient_matching, "clean", prepare_fn=_in_feature_units,
                    description="Gradient Matching (Geiping et al. 2021), indiscriminate")
    register_attack("kkt", "KKT", kkt_attack, "target", box="feature", linear_only=True,
                    description="KKT attack (Koh et al. 2022) against a linear target")
    register_attack("mt", "MT", model_targeted, "target", box="feature", extra_options=frozenset({"max_rounds", "train_epochs"}),
                    prepare_fn=_mt_keywords,
                    description="Model-Targeted attack (Suya et al. 2021), online, until eps-close to the target or out of budget")
    _MAKERS["labelflip"] = label_flip_target


_register_builtin()


def model_targeted() -> tuple:
    """The attacks that aim at a target model (GC, KKT, MT)."""
    return tuple(n for n in ATTACKS.names() if ATTACKS.get(n).aims_at == "target")


def baseline_names() -> list[str]:
    """The attacks other than GC (the paper's baselines), in registry order."""
    return [n for n in ("tgda", "gm", "kkt", "mt") if n in ATTACKS]
