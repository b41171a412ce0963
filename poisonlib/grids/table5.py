"""Table 5: RandomPC and GradPC targets on MNIST."""

from __future__ import annotations



from ..cells import Cell
from ._base import MNIST_MODELS, register_experiment


#: Table 5's radii.
EPS_W = (0.01, 0.1, 1.0)
#: (target, noise) of Table 5's columns: GradPC, RandomPC per parameter, RandomPC L2.
KINDS = (("gradpc", "parameter"), ("randompc", "parameter"), ("randompc", "l2"))


@register_experiment("table5", "RandomPC (per-parameter and L2 noise) and GradPC targets on MNIST at eps_w = 0.01, 0.1, 1")
def cells(prof):
    return [Cell("target", "mnist", m, w, target=t, noise=nz) for m in MNIST_MODELS for w in EPS_W for t, nz in KINDS]
