"""The experiment grids: one module per table or figure of the paper.

Each module owns its table's facts -- its rows, ε_d and ε_w lists, what a profile below the
full grids cuts, and the table built from its rows -- and registers its grid by name
(``table2``, ``fig3``, ...) in :data:`EXPERIMENTS`. The scheduler, the report, the
reproducibility summary, the book and the notebooks import them from here.
"""

from __future__ import annotations

from . import fig3, fig7, images, table1, table2, table2_baselines, table5, table6, table7, table8, table9, table10
from ._base import EXPERIMENTS, MNIST_MODELS, Experiment, get_experiment, list_experiments, register_experiment

#: The grids behind the paper's Tables 1-10 (the reproducibility report runs them all).
REPORT_GRIDS = ("table1", "table5", "table2", "table2_baselines", "table8", "table9", "table6", "table7", "table10")

#: The grids each chapter runs; chapters run in this (alphabetical) order, and a cell shared by
#: two chapters is computed by the first and loaded by the other.
CHAPTER_GRIDS = {
    "baselines": ("table2_baselines", "table2"), "defenses": ("table10",), "gc_curves": ("fig3", "fig7"), "gc_images": ("fig8", "fig9"),
    "gc_scaling": ("table8",), "gc_table2": ("table2",), "gc_targets": ("table1", "table5"), "kkt_mt": ("table6", "table7"),
    "tgda_targets": ("table9",),
}

__all__ = ["CHAPTER_GRIDS", "EXPERIMENTS", "Experiment", "MNIST_MODELS", "REPORT_GRIDS", "fig3", "fig7", "get_experiment", "images",
           "list_experiments", "register_experiment", "table1", "table10", "table2", "table2_baselines", "table5", "table6", "table7",
           "table8", "table9"]
