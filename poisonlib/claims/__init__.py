"""The claims ledger (issue 22): every claim of the paper, where the paper makes it, the experiments
that test it, a criterion written in code before the runs, and per protocol a verdict -- *holds*,
*holds in part* (which part), *does not hold*, *not testable at this profile* (what is needed) --
with its evidence (numbers, seeds, spread) and the caveat that applies.

``ledger(entries_by_protocol, transition=..., rows_by_protocol=..., sweeps=...)`` judges every
registered claim (:data:`CLAIMS`: 1-7 in :mod:`.theory`, 8-15 in :mod:`.tables`);
:func:`judge` does so at a profile with the sweeps of :mod:`.evidence` (Figs. 1, 2, 5 and the MNIST-17
transition, computed once and kept in the store); :func:`ledger_table` is its table for the page;
:mod:`.summary` the MLRC-style summary.
"""

from __future__ import annotations

from . import evidence, tables, theory  # noqa: F401  (tables and theory register the claims)
from ._core import (BAND, CLAIMS, REACH_RTOL, RESIDUAL_RTOL, SHARE, VARIABILITY, VERDICTS, Claim, Evidence, combine, ledger,  # noqa: F401
                    ledger_table, part, theory_checks, verdict_counts)
from .evidence import judge  # noqa: F401,E402
