"""Poisoning attacks and the target models they aim at."""

from .gc import GCResult, gradient_canceling, n_poison_points
from .gradpc import gradpc, randompc

__all__ = ["GCResult", "gradient_canceling", "gradpc", "n_poison_points", "randompc"]
