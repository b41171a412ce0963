"""The experiment grids and how they run, under the names they were known by.

A grid's cells and table live in their own module of :mod:`poisonlib.grids`; a cell is a
:class:`~poisonlib.cells.Cell`, resolved once into a :class:`~poisonlib.pipeline.CellSpec`;
:func:`~poisonlib.scheduler.run_experiment` runs a grid. This module re-exports them.

>>> rows = run_experiment("table2", profile="smoke")      # doctest: +SKIP
"""

from __future__ import annotations

from .cells import FULL_DATA, KINDS, Cell, axis_list, calibrated_cells, grid_rows, restrict, skip_reason  # noqa: F401
from .grids import EXPERIMENTS, MNIST_MODELS, Experiment, get_experiment, list_experiments, register_experiment  # noqa: F401
from .grids.table2 import EPS_D as EPS_D_TABLE2  # noqa: F401
from .grids.table2 import ROWS as TABLE2_ROWS  # noqa: F401
from .grids.table2_baselines import EPS_D as EPS_D_BASELINES  # noqa: F401
from .grids.table6 import LABEL_FLIP_ERRORS, MT_BUDGET, mt_budget  # noqa: F401
from .grids.table7 import ROWS as TABLE7_ROWS  # noqa: F401
from .pipeline import CellSpec  # noqa: F401
from .profiles import get_profile  # noqa: F401
from .scheduler import Task, execute, record_row, run_by_protocol, run_cell, run_command, run_experiment  # noqa: F401
