"""Defenses against indiscriminate poisoning (Sec. 5.4, App. C.10 of the paper): the data
sanitisers Sever and Influence score every training point and drop the most suspicious
fraction (:func:`sanitize`); MaxUp trains on the worst case over random augmentations."""

from .apply import SANITIZERS, last_layer_view, sanitize, scoring_view
from .influence import influence_scores, remove_top
from .maxup import maxup_objective, maxup_train
from .sever import sever, sever_scores

DEFENSES = (*SANITIZERS, "maxup")

__all__ = ["DEFENSES", "SANITIZERS", "influence_scores", "last_layer_view", "maxup_objective", "maxup_train", "remove_top",
           "sanitize", "scoring_view", "sever", "sever_scores"]
