"""Fig. 7: GC learning curves ‖g(χ)‖ at fixed ε_w for several ε_d."""

from __future__ import annotations



from .table2 import MNIST_ROWS
from ._base import gc_cells, register_experiment


#: Fig. 7's ε_d.
EPS_D = (0.03, 0.1, 0.3, 1.0, 3.0)


@register_experiment("fig7", "GC learning curves ||g(chi)|| at fixed eps_w for several eps_d (one seed)")
def cells(prof):
    return [c for d, m, w in MNIST_ROWS for c in gc_cells(prof, d, m, w, EPS_D, seeds=(0,))]
