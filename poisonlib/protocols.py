"""The two protocols of a run: the paper's text (``paper``) and the authors' released code (``released``).

A protocol fixes every choice the paper's text and the authors' code make
differently, from the clean model to the evaluation (see
``official-code-notes``, §1, §2, §4). It is a frozen, typed object, resolved once
at an experiment's entry point and recorded (``Protocol.key()``) in every record.

=====================  ==========================================  ===============================================
factor                 ``paper`` (the text, Alg. 1, App. C.1)      ``released`` (watml/plim, GC/ and GradPC/)
=====================  ==========================================  ===============================================
inputs                 pixels in [0, 1]                            normalised, (x − 0.1307) / 0.3081 (MNIST)
admissible set         the pixel box (Alg. 1, line 6)              unbounded (the code never projects)
GC objective           all parameters, mean losses                 the first parameter tensor, summed losses
GC optimiser           poisonlib's default (converges)             plain gradient descent, cosine step (1e-3:
                                                                   the authors' 10 diverges here; zhen7gg's fork
                                                                   uses 1e-3)
NN architecture        784-784-784-10, LeakyReLU 0.2 (App. C.1)    784-128-10, ReLU (GradPC/models.py)
clean model            the profile's training protocol             the GradPC script: Adadelta lr 1, batch 64,
                                                                   one epoch
retraining             the profile's (batch size)                  the released step budget: 100 epochs of batch
                                                                   10,000 on 60,000 images (1,000 for the CNN),
                                                                   i.e. the clean set in 6 (CNN 60) steps an epoch
evaluation             last-epoch test accuracy                    last epoch, and the per-epoch minimum that
                                                                   the released script also prints
=====================  ==========================================  ===============================================

Both protocols clip GC-c to the clean data's per-feature range and refuse
non-finite poisons (a diverged GC run is reported as such, never scored).
:meth:`Protocol.switch` changes one factor at a time, which is how the chapter
*Why our numbers differ from the paper* walks from ``paper`` to ``released``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace

import torch

from ._validation import CellFailed, PoisonlibError, check_choice
from .train import TrainConfig

#: MNIST's normalisation in the released code (torchvision's Normalize((0.1307,), (0.3081,))).
MNIST_NORMALIZATION = (0.1307, 0.3081)
NORMALIZED_DATASETS = ("mnist", "mnist17")
#: The GradPC script's clean training (PyTorch's MNIST example): Adadelta lr 1, batch 64, 1 epoch.
RELEASED_CLEAN = TrainConfig(epochs=1, lr=1.0, batch_size=64, optimizer="adadelta")
#: Optimiser steps per retraining epoch in the released code: 60,000 / 10,000 (LR, NN), 60,000 / 1,000 (CNN).
RELEASED_STEPS = {"lr": 6, "nn": 6, "cnn": 60}
#: Models retrained for the released code's 100 epochs (``epochs``; the smoke profile cuts them); the CNN keeps
#: the profile's epochs (100 × 60 steps is GPU work).
RELEASED_EPOCHS = ("lr", "nn")


@dataclass(frozen=True)
class Protocol:
    """Every choice that differs between the paper's text and the released code.

    Fields
    ------
    normalize : ``(mean, std)`` applied to MNIST-family inputs, or ``None`` (pixels in [0, 1]).
    box : whether poisons are projected onto the dataset's feature box (``False``: unbounded).
    gc_params : ``"all"`` parameters in GC's objective, or the ``"first"`` tensor.
    gc_scaling : ``"per_point"`` (mean losses, n-independent step) or ``"sum"`` (summed losses).
    gc_optimizer : ``"default"`` (poisonlib's converging optimiser) or ``"released"``
        (plain gradient descent on the objective, cosine step ``gc_lr``).
    gc_lr : step of the released optimiser.
    nn : ``"appendix"`` (784-784-784-10 LeakyReLU) or ``"released"`` (784-128-10 ReLU).
    clean : ``"profile"`` (the profile's training) or ``"released"`` (:data:`RELEASED_CLEAN`).
    retrain_steps : ``"profile"`` (the profile's batch size) or ``"released"`` (:data:`RELEASED_STEPS`).
    """

    name: str
    normalize: tuple | None = None
    box: bool = True
    gc_params: str = "all"
    gc_scaling: str = "per_point"
    gc_optimizer: str = "default"
    gc_lr: float = 1e-3
    nn: str = "appendix"
    clean: str = "profile"
    retrain_steps: str = "profile"
    description: str = field(default="", compare=False)

    def __post_init__(self):
        check_choice("gc_params", self.gc_params, ("all", "first"))
        check_choice("gc_scaling", self.gc_scaling, ("per_point", "sum"))
        check_choice("gc_optimizer", self.gc_optimizer, ("default", "released"))
        check_choice("nn", self.nn, ("appendix", "released"))
        check_choice("clean", self.clean, ("profile", "released"))
        check_choice("retrain_steps", self.retrain_steps, ("profile", "released"))

    # ------------------------------------------------------------------ identity
    def key(self) -> dict:
        """What a record is keyed by: every factor (not the name or description, so that two
        protocols with the same factors share their records)."""
        d = asdict(self)
        d.pop("description")
        d.pop("name")
        d["normalize"] = list(self.normalize) if self.normalize else None
        return d

    def switch(self, **factors) -> Protocol:
        """This protocol with some factors changed; named ``<name>+factor=value,...``."""
        unknown = set(factors) - {f.name for f in fields(self)} - {"name"}
        if unknown:
            raise PoisonlibError(f"unknown protocol factor(s) {sorted(unknown)}; choose from: {', '.join(FACTORS)}")
        tag = ",".join(f"{k}={v}" for k, v in factors.items())
        return replace(self, name=factors.pop("name", f"{self.name}+{tag}"), description="", **factors)

    # ------------------------------------------------------------------ pipeline stages
    def prepare(self, ds):
        """The dataset as this protocol sees it: normalised inputs (and box), the NN architecture."""
        from .data import Dataset

        upd, view = {}, {}
        if self.normalize and ds.name in NORMALIZED_DATASETS:
            m, s = self.normalize
            upd.update({f"x_{k}": (getattr(ds, f"x_{k}") - m) / s for k in ("train", "val", "test")})
            if ds.feature_box is not None:
                upd["feature_box"] = ((ds.feature_box[0] - m) / s, (ds.feature_box[1] - m) / s)
            view["normalize"] = list(self.normalize)
        info = {**ds.info, "protocol": self.name, "view": view}
        if self.nn == "released":
            info["model_options"] = {"nn": {"hidden": 128, "depth": 1, "negative_slope": 0.0}}
            view["nn"] = "released"
        return Dataset(**{**ds.__dict__, **upd, "info": info})

    def poison_box(self, ds):
        """The admissible feature box of poisons (``None``: unbounded)."""
        return ds.feature_box if self.box else None

    def gc_options(self) -> dict:
        """Keywords of :func:`~poisonlib.attacks.gc.gradient_canceling` this protocol fixes."""
        opts = dict(params=self.gc_params, scaling=self.gc_scaling, clip="box" if self.box else None)
        if self.gc_optimizer == "released":
            opts.update(optimizer="sgd", lr=self.gc_lr, momentum=0.0)
        return opts

    def clean_config(self, model: str, profile_config: TrainConfig) -> TrainConfig:
        """How the clean model (the one GradPC corrupts) is trained."""
        return RELEASED_CLEAN if self.clean == "released" and not model.startswith("resnet") else profile_config

    def retrain_config(self, model: str, profile_config: TrainConfig, n_clean: int, epochs: int = 100) -> TrainConfig:
        """Retraining on clean ∪ poisons: the profile's, or the released step budget: ``epochs``
        (the released code's 100; the CNN: the profile's) with batch = n_clean / steps per epoch, so that the clean set
        alone takes 6 (CNN 60) steps an epoch, as batch 10,000 (1,000) on 60,000 digits does."""
        steps = RELEASED_STEPS.get(model)
        if self.retrain_steps != "released" or steps is None:
            return profile_config
        return replace(profile_config, batch_size=max(1, math.ceil(n_clean / steps)),
                       epochs=epochs if model in RELEASED_EPOCHS else profile_config.epochs)

    @property
    def per_epoch_eval(self) -> bool:
        """Whether retraining also records the test accuracy of every epoch (the released script prints them)."""
        return self.retrain_steps == "released"


PROTOCOLS = {
    "paper": Protocol("paper", description="the paper's text: pixels in [0, 1], GC projected onto the box over all parameters "
                      "(poisonlib's converging optimiser), App. C.1's NN, the profile's clean training and retraining"),
    "released": Protocol("released", normalize=MNIST_NORMALIZATION, box=False, gc_params="first", gc_scaling="sum",
                         gc_optimizer="released", nn="released", clean="released", retrain_steps="released",
                         description="the authors' released code: normalised inputs, GC unbounded on the first parameter tensor "
                         "with summed losses and plain gradient descent, NN 784-128-10 ReLU, clean model as the GradPC script "
                         "trains it (Adadelta, 1 epoch), retraining at the released step budget (6 steps per epoch, CNN 60)"),
}
#: The factors, in the order the attribution chapter switches them from ``paper`` to ``released``.
FACTORS = ("box", "gc_params", "gc_scaling", "normalize", "nn", "clean", "retrain_steps", "gc_optimizer")


def get_protocol(protocol: str | Protocol = "paper") -> Protocol:
    """A :class:`Protocol` by name (``paper``, ``released``), or the object itself."""
    if isinstance(protocol, Protocol):
        return protocol
    return PROTOCOLS[check_choice("protocol", protocol, PROTOCOLS)]


def protocol_list(value) -> list[str]:
    """The protocols a chapter's ``protocols`` parameter names, checked: a list, or the string
    papermill's ``-p`` passes (``'["paper"]'``, ``'paper'``, ``'paper,released'``)."""
    import json

    if isinstance(value, str):
        value = json.loads(value) if value.lstrip().startswith("[") else [v.strip() for v in value.split(",") if v.strip()]
    names = list(dict.fromkeys(value))
    if not names:
        raise PoisonlibError("protocols is empty; choose from: " + ", ".join(PROTOCOLS))
    for n in names:
        check_choice("protocol", n, PROTOCOLS)
    return names


def waterfall(start: str | Protocol = "paper", end: str | Protocol = "released", factors=FACTORS) -> list[Protocol]:
    """Protocols from ``start`` to ``end``, switching one factor (in ``factors`` order) at a time.

    Factors on which ``start`` and ``end`` agree are skipped; the last protocol has
    every factor of ``end`` (but keeps the derived name)."""
    a, b = get_protocol(start), get_protocol(end)
    steps, cur, done = [a], a, []
    for f in factors:
        if getattr(cur, f) != getattr(b, f):
            done.append(f)
            upd = {f: getattr(b, f), **({"gc_lr": b.gc_lr} if f == "gc_optimizer" else {})}
            cur = replace(cur, name=f"{a.name}+" + "+".join(done), description="", **upd)
            steps.append(cur)
    return steps


def finite_poisons(x: torch.Tensor, what: str = "poisons") -> torch.Tensor:
    """``x`` if every entry is finite; else a PoisonlibError saying so (never score NaN poisons)."""
    if not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).any(dim=tuple(range(1, x.ndim))).sum()) if x.ndim > 1 else int((~torch.isfinite(x)).sum())
        raise CellFailed(f"{what}: {bad} of {len(x)} are not finite (the optimiser diverged); not scored")
    return x
