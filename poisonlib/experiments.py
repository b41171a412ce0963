"""The library's entry points for single cells, and the names they were known by.

Each function here takes names (``profile="cpu"``, ``protocol="paper"``, ``device="auto"``),
resolves them once into a :class:`~poisonlib.pipeline.CellSpec` (:meth:`poisonlib.cells.Cell.resolve`)
and hands it to the pipeline; below that nothing is looked up by name again.

* :func:`target_cell` / :func:`gc_cell`: a target (Tables 1, 5) or a GC cell (Table 2) from the
  results store, or computed and stored; :func:`run_gc`: one GC cell, uncached, with its poisons.
* Profiles (:mod:`poisonlib.profiles`), targets (:mod:`poisonlib.targets`), the evaluation
  (:mod:`poisonlib.evaluation`) and the theory sweeps (:mod:`poisonlib.sweeps`) are re-exported
  under the names they had here.
"""

from __future__ import annotations

from .cells import Cell
from .evaluation import _steps, compare_to_target, reference_accuracy, retrain  # noqa: F401
from .keys import CALIBRATED  # noqa: F401
from .pipeline import poison, poison_examples, resolve_eps_d  # noqa: F401
from .pipeline import load_for_profile as _load
from .profiles import GM_STEP, PROFILES, ModelLimits, Profile, get_profile  # noqa: F401
from .protocols import get_protocol
from .rows import summarize  # noqa: F401
from .sweeps import candidate_gradients, eps_sweep, first_eps, fw_sweep, sweep_factors, tau_grid  # noqa: F401
from .targets import calibration_request, clean_and_target, clean_model, resolve_eps_w, scale_last_layer  # noqa: F401
from .train import TrainConfig  # noqa: F401


def load_for_profile(dataset: str, profile="cpu", data_root: str | None = None, protocol="paper"):
    """Load ``dataset`` as ``profile`` asks, seen through ``protocol`` (:func:`poisonlib.pipeline.load_for_profile`)."""
    return _load(dataset, get_profile(profile), data_root, get_protocol(protocol))


def _options(d: dict | None) -> tuple:
    return tuple(sorted((d or {}).items()))


def gc_spec(dataset: str, model: str, eps_w, eps_d, *, seed: int = 0, profile="cpu", target: str = "gradpc", eps_w_norm: str = "absolute",
            scale: float = 1.0, gc_epochs: int | None = None, gc_options: dict | None = None, data_root: str | None = None,
            device: str = "auto", protocol="paper"):
    """The resolved GC cell of these arguments (:class:`~poisonlib.pipeline.CellSpec`)."""
    cell = Cell("gc", dataset, model, eps_w, target=target, scale=scale, eps_d=eps_d, seed=seed, gc_options=_options(gc_options),
                protocol=protocol)
    return cell.resolve(profile, data_root=data_root, device=device, gc_epochs=gc_epochs, eps_w_norm=eps_w_norm)


def run_gc(dataset: str, model: str, eps_w, eps_d, *, results_dir: str | None = None, progress: bool | None = None,
           checkpoint: str | None = None, **kw):
    """One GC cell, uncached: returns ``(metrics, gc_result, target_model, dataset)``.

    Keywords as :func:`gc_spec` (``seed, profile, target, eps_w_norm, scale, gc_epochs,
    gc_options, data_root, device, protocol``). ``protocol`` (``"paper"``, ``"released"`` or a
    :class:`~poisonlib.protocols.Protocol`) fixes the data view, the clean model, GC's objective
    and optimiser, the admissible set and the retraining; ``gc_options`` override it (e.g.
    ``{"clip": "range"}`` for GC-c). ``checkpoint``: file where GC saves its state every 100
    steps and resumes from. Metrics: :func:`poisonlib.pipeline.poison`."""
    return poison(gc_spec(dataset, model, eps_w, eps_d, **kw), results_dir=results_dir, progress=progress, checkpoint=checkpoint)


def gc_config(dataset: str, model: str, eps_w, eps_d, **kw) -> dict:
    """What a :func:`gc_cell` record is keyed by (``results/gc/<config_hash>.json``)."""
    return gc_spec(dataset, model, eps_w, eps_d, **kw).config


def gc_cell(dataset: str, model: str, eps_w, eps_d, *, force: bool = False, results_dir: str | None = None, progress=None,
            keep_poisons: bool = False, **kw) -> dict:
    """:func:`run_gc` cached in the results store as experiment ``"gc"``; returns the record
    (:meth:`~poisonlib.pipeline.CellSpec.run`: checkpointed, resumable; ``keep_poisons`` keeps
    the poisons and the retrained model under ``results/poisons/``)."""
    return gc_spec(dataset, model, eps_w, eps_d, **kw).run(results_dir=results_dir, force=force, progress=progress, keep_poisons=keep_poisons)


def target_spec(dataset: str, model: str, eps_w, profile="cpu", *, target="gradpc", noise="parameter", scale=1.0, seed=0,
                eps_w_norm="absolute", data_root=None, device="auto", protocol="paper"):
    """The resolved target cell of these arguments."""
    cell = Cell("target", dataset, model, eps_w, target=target, noise=noise, scale=scale, seed=seed, protocol=protocol)
    return cell.resolve(profile, data_root=data_root, device=device, eps_w_norm=eps_w_norm)


def target_config(dataset: str, model: str, eps_w, profile="cpu", **kw) -> dict:
    """What a :func:`target_cell` record is keyed by (``results/target/<config_hash>.json``)."""
    return target_spec(dataset, model, eps_w, profile, **kw).config


def target_cell(dataset: str, model: str, eps_w, profile="cpu", *, results_dir=None, force=False, progress=None, **kw) -> dict:
    """Clean model and target as a record of the results store (experiment ``"target"``): the
    Table 1 / 5 numbers (clean and target accuracy, drop, ‖δ‖, τ(2), τ(c)) with provenance.
    ``seed`` seeds the clean model and the corruption (GC cells use seed 0's target)."""
    return target_spec(dataset, model, eps_w, profile, **kw).run(results_dir=results_dir, force=force, progress=progress)
