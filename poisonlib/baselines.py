"""The baseline attacks' and the defenses' cells (App. C.5-C.10), by the names they were known by.

* :func:`attack_cell`: a baseline attack (TGDA, Gradient Matching, KKT, Model-Targeted; see
  :mod:`poisonlib.attacks.registry`) against the same clean model / target as GC, evaluated
  exactly like GC by the one pipeline (:func:`poisonlib.pipeline.poison`): Tables 2, 6, 7.
* :func:`defense_cell`: GC (or GC-c) and then each defense (:mod:`poisonlib.defended`): Tables 3, 10.
"""

from __future__ import annotations

from .attacks.registry import baseline_names, model_targeted
from .cells import Cell
from .defended import defend, defense_metrics  # noqa: F401
from .experiments import _options
from .pipeline import poison

#: The baseline attacks (every registered attack but GC).
ATTACKS = tuple(baseline_names())
#: The baselines that aim at a target model (KKT, MT); TGDA and GM only use the clean model.
MODEL_TARGETED = tuple(a for a in model_targeted() if a in ATTACKS)
__all__ = ["ATTACKS", "MODEL_TARGETED", "attack_cell", "attack_config", "defend", "defense_cell", "defense_config", "run_attack",
           "run_defenses"]


def attack_spec(dataset: str, model: str, eps_w, eps_d, attack: str, *, seed: int = 0, profile="cpu", target: str = "gradpc",
                attack_options: dict | None = None, data_root=None, device="auto", protocol="paper"):
    """The resolved baseline-attack cell of these arguments (``attack_options`` over the profile's)."""
    cell = Cell("attack", dataset, model, eps_w, target=target, eps_d=eps_d, seed=seed, attack=attack, protocol=protocol)
    from .attacks.registry import get_attack

    get_attack(attack)  # an unknown attack fails here, with the registered names
    return cell.resolve(profile, data_root=data_root, device=device, options=_options(attack_options))


def run_attack(dataset: str, model: str, eps_w, eps_d, attack: str, *, results_dir=None, progress=None, **kw):
    """One baseline-attack cell, uncached: returns ``(metrics, result)`` (:func:`poisonlib.pipeline.poison`).
    For MT ``eps_d`` is the budget: it stops earlier when the target is reached."""
    metrics, res, _, _ = poison(attack_spec(dataset, model, eps_w, eps_d, attack, **kw), results_dir=results_dir, progress=progress)
    return metrics, res


def attack_config(dataset: str, model: str, eps_w, eps_d, attack: str, **kw) -> dict:
    """What an :func:`attack_cell` record is keyed by (``results/<attack>/<config_hash>.json``)."""
    return attack_spec(dataset, model, eps_w, eps_d, attack, **kw).config


def attack_cell(dataset: str, model: str, eps_w, eps_d, attack: str, *, force: bool = False, results_dir=None, progress=None, **kw) -> dict:
    """:func:`run_attack` cached in the results store as experiment ``attack``."""
    return attack_spec(dataset, model, eps_w, eps_d, attack, **kw).run(results_dir=results_dir, force=force, progress=progress)


def defense_spec(dataset: str, model: str, eps_w, eps_d, *, clip: bool = False, seed: int = 0, profile="cpu", data_root=None, device="auto",
                 protocol="paper"):
    """The resolved GC (+ defenses) cell of these arguments."""
    return Cell("defense", dataset, model, eps_w, eps_d=eps_d, seed=seed, clip=clip, protocol=protocol).resolve(
        profile, data_root=data_root, device=device)


def run_defenses(dataset: str, model: str, eps_w, eps_d, *, defenses=("influence", "sever", "maxup"), results_dir=None, progress=None,
                 **kw) -> dict:
    """GC (``clip=False``) or GC-c (``clip=True``) at ``eps_d``, then each defense (:func:`poisonlib.defended.defense_metrics`)."""
    return defense_metrics(defense_spec(dataset, model, eps_w, eps_d, **kw), defenses=defenses, results_dir=results_dir, progress=progress)


def defense_config(dataset: str, model: str, eps_w, eps_d, **kw) -> dict:
    """What a :func:`defense_cell` record is keyed by (``results/defense/<config_hash>.json``)."""
    return defense_spec(dataset, model, eps_w, eps_d, **kw).config


def defense_cell(dataset: str, model: str, eps_w, eps_d, *, results_dir=None, force: bool = False, progress=None, **kw) -> dict:
    """:func:`run_defenses` (all three defenses) cached as experiment ``"defense"``."""
    return defense_spec(dataset, model, eps_w, eps_d, **kw).run(results_dir=results_dir, force=force, progress=progress)
