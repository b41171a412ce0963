"""In-step caps for dry runs: loops that run only their first few items while a meter is active.

A dry run (:mod:`poisonlib.dryrun`) caps a cell's *outer* loops (training epochs, GC steps, a
baseline's rounds) through its profile. One outer step can itself be long at the paper's sizes:
an epoch of 470 mini-batches, a GC step over 60,000 poisons in 4 chunks, g(μ) over 60,000 clean
points in 30 chunks, 16 conjugate-gradient iterations. The loops inside a step iterate through
:func:`capped`: with no meter active it returns its iterable unchanged (normal runs are not
touched); under ``with metering(cap) as m`` a loop of more than ``cap`` items runs only its first
``cap`` and the meter adds, as ``m.extra``, the time its skipped items would have taken:

    extra = (t_run + e_inner) · (total − ran) / ran + e_inner,

with t_run the measured time of the ``ran`` items it ran, ``total`` its full count and e_inner
the extra of capped loops nested inside it (so nested caps compose: an epoch of capped batches
inside a capped loop of epochs is scaled by both). A cell's extrapolated time is its wall time
plus ``m.extra``: linear in each loop's count, which holds where a loop's items cost the same
(chunks and batches of one size; the last, smaller chunk is counted as a full one, an upper bound).

Only loops whose items are *summed* or are *steps* (parameters moved, nothing collected) are capped,
and evaluations (:func:`poisonlib.train.outputs`), which fill their full-size result with zeros past
the items they run; other loops that collect one result per item (per-example gradients, features)
run whole, so the shapes and the memory of what they build stay those of the real run. A capped
run's numbers are wrong by design: the dry run reports times and memory only.
"""

from __future__ import annotations

import contextlib
import time
from contextvars import ContextVar

_ACTIVE: ContextVar = ContextVar("poisonlib_meter", default=None)


class Meter:
    """The state of one metered block: ``cap`` (items a capped loop runs), ``extra`` (seconds the
    skipped items would have taken), ``loops`` (per loop name: calls, items run, items in full)."""

    def __init__(self, cap: int):
        self.cap = int(cap)
        if self.cap < 1:
            raise ValueError(f"cap must be a positive integer, got {cap!r}")
        self.extra = 0.0
        self.loops: dict[str, dict] = {}
        self._frames: list[list[float]] = []  # pending extra of the capped loops now running, innermost last

    def _add(self, seconds: float) -> None:
        if self._frames:
            self._frames[-1][0] += seconds
        else:
            self.extra += seconds

    def _iterate(self, iterable, name: str, total: int):
        stats = self.loops.setdefault(name, {"calls": 0, "ran": 0, "total": 0})
        stats["calls"] += 1
        stats["total"] += total
        if total <= self.cap:  # nothing skipped: nested extras go to the enclosing loop unscaled
            stats["ran"] += total
            yield from iterable
            return
        frame = [0.0]
        self._frames.append(frame)
        ran, t_run, stopped = 0, 0.0, False
        try:
            for item in iterable:
                if ran == self.cap:
                    break
                t0 = time.perf_counter()
                try:
                    yield item
                except GeneratorExit:  # the loop ended itself (a break: converged): it skips nothing
                    stopped = True
                    raise
                t_run += time.perf_counter() - t0
                ran += 1
        finally:
            self._frames.pop()
            stats["ran"] += ran
            skipped = 0 if stopped or not ran else (t_run + frame[0]) * (total - ran) / ran
            self._add(frame[0] + skipped)


def capped(iterable, name: str, total: int | None = None):
    """``iterable``, or under an active :func:`metering` its first ``cap`` items (module docstring).
    ``total``: its number of items (default ``len(iterable)``)."""
    meter = _ACTIVE.get()
    if meter is None:
        return iterable
    return meter._iterate(iterable, name, len(iterable) if total is None else int(total))


@contextlib.contextmanager
def metering(cap: int):
    """Cap every :func:`capped` loop in the block at ``cap`` items; yields the :class:`Meter`."""
    meter = Meter(cap)
    token = _ACTIVE.set(meter)
    try:
        yield meter
    finally:
        _ACTIVE.reset(token)
