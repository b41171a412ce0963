"""Poisoning attacks and the target models they aim at.

Every attack returns a :class:`GCResult` (poison features ``x``, labels ``y``, the
realised ``eps_d``, an optimisation ``history`` and its ``config``), so that all of
them are evaluated the same way: retrain on clean ∪ poisons.
"""

from .gc import GCResult, gradient_canceling, n_poison_points
from .gm import gradient_matching
from .gradpc import gradpc, randompc
from .kkt import kkt_attack
from .labelflip import label_flip_target, label_flip_targets
from .mt import model_targeted
from .tgda import tgda

PoisonResult = GCResult  # the common result type of every attack

__all__ = ["GCResult", "PoisonResult", "gradient_canceling", "gradient_matching", "gradpc", "kkt_attack", "label_flip_target",
           "label_flip_targets", "model_targeted", "n_poison_points", "randompc", "tgda"]
