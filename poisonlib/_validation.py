"""Parameter checks shared by the library and the CLI.

Every check raises :class:`PoisonlibError` (a ``ValueError``) with a one-line
message that names the bad value and says what is allowed; the CLI prints that
line and exits with status 2.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import torch


class PoisonlibError(ValueError):
    """Bad input given to poisonlib (one-line, user-facing message)."""


def check_positive(name: str, value, *, allow_zero: bool = False) -> float:
    """Return ``float(value)`` if it is a finite number > 0 (>= 0 with ``allow_zero``)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise PoisonlibError(f"{name} must be a number, got {value!r}") from None
    ok = v >= 0 if allow_zero else v > 0
    if not math.isfinite(v) or not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise PoisonlibError(f"{name} must be a finite number {bound}, got {value!r}")
    return v


def check_int(name: str, value, *, minimum: int = 0) -> int:
    """Return ``int(value)`` if it is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise PoisonlibError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_choice(name: str, value, choices: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``choices``."""
    choices = sorted(choices)
    if value not in choices:
        raise PoisonlibError(f"unknown {name} {value!r}; choose from: {', '.join(choices)}")
    return value


def check_finite(name: str, x) -> None:
    """Raise if the array/tensor ``x`` holds NaN or infinite values."""
    t = torch.as_tensor(x)
    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        bad = int((~torch.isfinite(t)).sum())
        raise PoisonlibError(f"{name} contains {bad} NaN or infinite value(s); clean the data first")
