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


#: Copies of the poison set a GC / baseline run holds at once (poisons, their gradient, two
#: optimiser moments, the start, clean ∪ poisons for retraining), used to size it beforehand.
POISON_COPIES = 6


def available_memory(device="cpu") -> int | None:
    """Bytes of memory ``device`` offers (CUDA: free memory; CPU: physical RAM), or ``None``."""
    import os

    dev = torch.device(device) if not isinstance(device, torch.device) else device
    try:
        if dev.type == "cuda":
            return int(torch.cuda.mem_get_info(dev)[0])
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, RuntimeError, AttributeError):
        return None


def _size(n_bytes: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB", "PB"):
        if n_bytes < 1000 or unit == "PB":
            return f"{n_bytes:,.0f} {unit}" if unit == "bytes" else f"{n_bytes:,.1f} {unit}"
        n_bytes /= 1000


def check_poison_memory(eps_d: float, n_clean: int, n_features: int, device="cpu", *, bytes_per_value: int = 4) -> int:
    """Raise :class:`PoisonlibError` before allocating if a poison set of ``eps_d · n_clean``
    points of ``n_features`` values cannot fit in ``device``'s memory; return its bytes.

    The estimate is :data:`POISON_COPIES` copies of the set (float32)."""
    n_p = max(1, int(round(float(eps_d) * n_clean)))
    need = POISON_COPIES * n_p * int(n_features) * bytes_per_value
    have = available_memory(device)
    if have is not None and need > have:
        raise PoisonlibError(
            f"eps_d={eps_d:g} asks for {n_p:,} poisons of {int(n_features):,} values: about {need:,} bytes ({_size(need)}) "
            f"for the attack's state, more than the {_size(have)} of {torch.device(device).type} memory here; lower eps_d"
        )
    return need
