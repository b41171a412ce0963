"""The registry of experiment grids and the helpers every grid module builds its cells with."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .._registry import Registry
from ..cells import Cell

EXPERIMENTS = Registry("experiment")

#: The MNIST models of the paper's tables (Tables 1, 5, Fig. 3).
MNIST_MODELS = ("lr", "nn", "cnn")


@dataclass(frozen=True)
class Experiment:
    """A grid: its name, what it computes, and ``cells(profile) -> list[Cell]``."""

    name: str
    description: str
    cells: Callable[[object], list[Cell]]


def register_experiment(name: str, description: str):
    """Decorator registering ``fn(profile) -> list[Cell]`` as experiment ``name``."""

    def deco(fn):
        EXPERIMENTS.register(name)(Experiment(name, description, fn))
        return fn

    return deco


def list_experiments() -> list[str]:
    return EXPERIMENTS.names()


def get_experiment(name: str) -> Experiment:
    return EXPERIMENTS.get(name)


def gc_cells(prof, dataset, model, eps_w, eps_ds, *, scale=1.0, seeds=None, gc_options=()) -> list[Cell]:
    """GC cells of one (dataset, model, ε_w) row at each ε_d and seed (default: the profile's seeds for ``model``)."""
    seeds = prof.seeds_for(model) if seeds is None else seeds
    return [Cell("gc", dataset, model, eps_w, scale=scale, eps_d=e, seed=s, gc_options=gc_options) for e in eps_ds for s in seeds]


def attack_cells(dataset, model, eps_w, attack, eps_ds, *, target="gradpc", seeds=(0,)) -> list[Cell]:
    """Baseline-attack cells of one row at each ε_d and seed."""
    return [Cell("attack", dataset, model, eps_w, target=target, eps_d=e, seed=s, attack=attack) for e in eps_ds for s in seeds]


def below_paper(prof, model: str, eps_ds: tuple) -> tuple:
    """Below the full grids the NN baseline / defense cells run at the smallest ε_d only (CPU time)."""
    return eps_ds if prof.full_grids or model != "nn" else eps_ds[:1]
