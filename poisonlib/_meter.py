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
and passes that give a small result per row from one chunk at a time -- evaluations, feature passes
and Influence's scores (:func:`poisonlib.train.outputs`, :func:`poisonlib.defenses.last_layer_view`,
:func:`poisonlib.defenses.influence_scores`) -- which fill their full-size result with zeros past
the items they run; other loops that collect one result per item (per-example gradients) run whole,
so the shapes and the memory of what they build stay those of the real run. A capped
run's numbers are wrong by design: the dry run reports times and memory only.

A computation that repeats one the run has just timed, at the same sizes, can be priced without
running it again: inside ``with repeated(name)`` a capped loop ``name`` whose items the meter has
already timed runs none and adds its full count at their measured mean (GC's final stationarity
gradient, the same poison chunks as each step's).
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
        self._measured: dict[str, tuple[int, float]] = {}  # per loop name: items run whole, their seconds (nested extra included)
        self._repeats: set[str] = set()  # loop names :func:`repeated` prices from their measured items

    def _add(self, seconds: float) -> None:
        if self._frames:
            self._frames[-1][0] += seconds
        else:
            self.extra += seconds

    def _iterate(self, iterable, name: str, total: int):
        stats = self.loops.setdefault(name, {"calls": 0, "ran": 0, "total": 0})
        stats["calls"] += 1
        stats["total"] += total
        if name in self._repeats and self._measured.get(name, (0, 0.0))[0]:  # priced from its items measured earlier
            items, seconds = self._measured[name]
            self._add(seconds / items * total)
            return
        frame = [0.0]  # extra of the capped loops nested in this one
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
            if ran and not stopped:
                items, seconds = self._measured.get(name, (0, 0.0))
                self._measured[name] = (items + ran, seconds + t_run + frame[0])
            # a loop of at most cap items skips nothing: its nested extras go up unscaled
            skipped = 0 if stopped or not ran else (t_run + frame[0]) * (total - ran) / ran
            self._add(frame[0] + skipped)


def filled(n: int, chunk: int, compute, name: str):
    """One tensor of ``n`` rows from ``compute(a, b)`` on the row chunks [a, b) of ``range(n)`` (a chunk loop named
    ``name``, :func:`capped`): under a meter the rows past the chunks run stay zero, so the result keeps its full
    size and each chunk's memory is the real one. ``None`` when ``n == 0``."""
    out = None
    for a in capped(range(0, n, chunk), name):
        part = compute(a, min(a + chunk, n))
        if out is None:
            out = part.new_zeros((n, *part.shape[1:]))
        out[a : a + len(part)] = part
    return out


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


@contextlib.contextmanager
def repeated(*names: str):
    """Inside the block, a capped loop named in ``names`` whose items the active meter has already
    timed runs *none* of them: its full count is priced at the mean time per item measured before.
    For a computation that repeats, at the same sizes, one the metered run has just done (GC's
    final stationarity gradient: the same poison chunks as a step). Its result is then left as the
    loop's body leaves it with no item (zeros); no effect without a meter, or before a first
    measurement."""
    meter = _ACTIVE.get()
    if meter is None:
        yield
        return
    added = set(names) - meter._repeats
    meter._repeats |= added
    try:
        yield
    finally:
        meter._repeats -= added
