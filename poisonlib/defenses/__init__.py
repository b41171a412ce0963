"""Defenses against indiscriminate poisoning (Sec. 5.4, App. C of the paper): data
sanitisers that score every training point and drop the most suspicious fraction."""

from .influence import influence_scores, remove_top
from .sever import sever, sever_scores

__all__ = ["influence_scores", "remove_top", "sever", "sever_scores"]
