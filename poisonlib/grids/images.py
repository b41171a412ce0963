"""Figs. 8, 9: clean, poisoned and perturbation images of GC poisons."""

from __future__ import annotations



from ._base import gc_cells, register_experiment


#: The ε_d of the example images.
EPS_D = (0.1,)


@register_experiment("fig8", "clean / poisoned / perturbation images of GC poisons on MNIST (eps_d = 0.1)")
def fig8(prof):
    return gc_cells(prof, "mnist", "lr", 1.0, EPS_D, seeds=(0,))


@register_experiment("fig9", "clean / poisoned / perturbation images of GC poisons on CIFAR-10 (eps_d = 0.1)")
def fig9(prof):
    return gc_cells(prof, "cifar10", "resnet18", 0.5, EPS_D, seeds=(0,))
