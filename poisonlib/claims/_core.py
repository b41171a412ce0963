"""The ledger's machinery: a registered :class:`Claim`, the :class:`Evidence` it is judged on,
the rule that combines a claim's parts into one verdict, and :func:`ledger`.

A claim is judged in *parts* (e.g. "Sever is the most effective defense" and "clipping trades
drop for robustness" are two parts of Tables 3 / 10's claim). Each part is ``holds``,
``fails`` or ``untestable`` (with the numbers or the reason). :func:`combine`:

* every part holds → **holds**; every part untestable → **not testable at this profile**
  (the reasons say what is needed);
* some part fails → **does not hold** if the claim is *universal* (one counterexample refutes
  "at every ε_d") or no part holds; otherwise **holds in part** (naming the parts);
* no part fails, some hold, some are untestable → **holds in part** (naming both).

The criteria are fixed in the claims' modules, from the paper's wording, before any run; the
thresholds they use are the module constants below, never tuned to outcomes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from ..rows import TOLERANCE, finished

HOLDS, PART, FAILS, UNTESTABLE = "holds", "holds in part", "does not hold", "not testable at this profile"
#: The four verdicts of the ledger, in the order the page lists them.
VERDICTS = (HOLDS, PART, FAILS, UNTESTABLE)

#: What varies between the seeds of a GC cell (and a baseline's): the initial poisons (drawn
#: from the clean training set) and the retraining seed; the clean model and target are shared.
VARIABILITY = "seeds vary GC's (or the baseline's) initial poisons and the retraining seed; clean model and target are fixed"

#: "approaches the target's drop" / "reaches the target" for a drop: at least this share of it.
SHARE = 0.75
#: Relative residual ‖g(χ)‖/‖g(μ)‖ at or below which GC counts as having cancelled the clean gradient.
RESIDUAL_RTOL = 1e-2
#: ‖w_refit − w‖ ≤ this · ‖w‖: the retrained model reaches the target (ε-closeness 0.1 of App. C.6).
REACH_RTOL = 0.1
#: Cor. 2's threshold is exact: the empirical ε*/τ must lie in this band (two grid steps above τ).
BAND = (1.0, 1.5)


@dataclass(frozen=True)
class Part:
    """One part of a claim: ``status`` ``holds`` / ``fails`` / ``untestable`` with its ``text``."""

    name: str
    status: str
    text: str


def part(name: str, ok, text: str) -> Part:
    """``ok`` True → holds, False → fails, None → untestable (``text`` says what is needed)."""
    return Part(name, "untestable" if ok is None else "holds" if ok else "fails", text)


def combine(parts: list[Part], universal: bool = False) -> tuple[str, str]:
    """``(verdict, detail)`` of a claim from its parts (module docstring)."""
    by = {s: [p.name for p in parts if p.status == s] for s in ("holds", "fails", "untestable")}
    if not parts or len(by["untestable"]) == len(parts):
        return UNTESTABLE, "needs: " + "; ".join(p.text for p in parts)
    if by["fails"] and (universal or not by["holds"]):
        return FAILS, "fails: " + ", ".join(by["fails"])
    if len(by["holds"]) == len(parts):
        return HOLDS, ""
    said = [f"{k}: {', '.join(v)}" for k, v in (("holds", by["holds"]), ("does not hold", by["fails"]),
                                                  ("not testable", by["untestable"])) if v]
    return PART, "; ".join(said)


@dataclass(frozen=True)
class Claim:
    """A claim of the paper: where it is, what it says, what tests it and how it is judged."""

    id: int
    location: str
    statement: str
    tests: str
    criterion: str
    caveat: str
    parts: Callable  # Evidence -> list[Part]
    universal: bool = False

    def judge(self, ev: "Evidence") -> dict:
        """``{"verdict", "detail", "evidence"}`` of this claim on ``ev``."""
        parts = self.parts(ev)
        verdict, detail = combine(parts, self.universal)
        return {"verdict": verdict, "detail": detail, "evidence": " | ".join(f"[{p.name}] {p.text}" for p in parts)}


CLAIMS: dict[int, Claim] = {}


def claim(id: int, location: str, statement: str, *, tests: str, criterion: str, caveat: str = "", universal: bool = False):
    """Decorator registering a claim whose parts the decorated function computes."""

    def deco(fn):
        if id in CLAIMS:
            raise ValueError(f"claim {id} is already registered")
        CLAIMS[id] = Claim(id, location, statement, tests, criterion, caveat, fn, universal)
        return fn

    return deco


# --------------------------------------------------------------------------- evidence
@dataclass
class Evidence:
    """What one protocol's claims are judged on: the report's ``entries`` (``reproduction.entries``),
    the grids' ``rows`` ({grid: rows}), the by-construction ``checks`` (``CheckResult`` s), the
    MNIST-17 ``transition`` (``transition.run`` 's dict, or its ``summary`` rows) and the low-dimensional
    ``sweeps`` ({"or" | "gaussian10" | "fig5": {"tau", "w_norm", "rows"}} from ``sweeps.eps_sweep``)."""

    entries: list = field(default_factory=list)
    rows: dict = field(default_factory=dict)
    checks: list | None = None
    transition: object = None
    sweeps: dict = field(default_factory=dict)
    profile: str = "cpu"
    protocol: str = "paper"

    def entry(self, table: str, name: str) -> dict | None:
        """The entry ``name`` of ``table`` when it has a number of ours, else ``None``."""
        e = next((e for e in self.entries if e["table"] == table and e["entry"] == name), None)
        return e if e is not None and e.get("ours") is not None else None

    def value(self, table: str, name: str):
        e = self.entry(table, name)
        return None if e is None else e["ours"]

    def grid(self, name: str) -> list[dict]:
        """The finished rows of grid ``name`` (empty when not given or none finished)."""
        return [r for r in self.rows.get(name, []) if finished(r)]


def num(e: dict | None, signed: bool = True) -> str:
    """An entry's number with its spread and seeds: ``-63.80 ± 0.07 (3 seeds)``; ``–`` when absent."""
    if e is None:
        return "–"
    s = f"{e['ours']:+.2f}" if signed else f"{e['ours']:.3g}"
    sd = e.get("ours_std")
    n = e.get("seeds") or 0
    spread = "" if sd is None or (isinstance(sd, float) and math.isnan(sd)) else f" ± {sd:.2f}"
    return f"{s}{spread} ({n} seed{'s' if n != 1 else ''})"


def mean_sd(vals) -> str:
    """``mean ± sd (n)`` of raw values (sample std), for numbers taken from grid rows."""
    from ..rows import summarize

    vals = [float(v) for v in vals]
    if not vals:
        return "–"
    m, sd = summarize(vals)
    return f"{m:.3g}" + ("" if math.isnan(sd) else f" ± {sd:.2g}") + f" (n={len(vals)})"


def close(a: float, b: float) -> bool:
    """Two drops *alike*: within 2·TOLERANCE points or 20 % of the larger (Tables 6 / 7's wording "like")."""
    return abs(a - b) <= max(2 * TOLERANCE, 0.2 * max(abs(a), abs(b)))


PROFILE_CAVEAT = {
    "smoke": "smoke profile: 300 digits of MNIST-5k and a few epochs; a test of the plumbing, not of the paper",
    "cpu": "cpu profile: the 5,000-digit MNIST subset (not the full 60,000), one seed, the profile's step budget for GC and "
           "retraining, ε_d ≤ 0.1 for the NN and the baselines; CIFAR-10 / TinyImageNet rows are not run",
    "cpu-full": "cpu-full profile: the 5,000-digit MNIST subset (not the full 60,000), the profile's step budget for GC and "
                "retraining; CIFAR-10 / TinyImageNet rows are not run",
    "paper": "paper profile: the paper's data and settings",
}


def ledger(entries_by_protocol: dict, *, transition=None, rows_by_protocol: dict | None = None, sweeps: dict | None = None,
           checks: list | None = None, profile: str | None = None) -> list[dict]:
    """One row per claim × protocol: ``id, location, claim, tests, criterion, protocol, verdict,
    detail, evidence, caveat``. ``checks`` defaults to :func:`theory_checks` (computed once, data-free:
    the same for every protocol); ``transition`` and ``sweeps`` are protocol-independent too."""
    if checks is None:
        checks = theory_checks()
    out = []
    for proto, es in entries_by_protocol.items():
        prof = profile or next((e.get("profile") for e in es if e.get("profile")), "cpu")
        ev = Evidence(list(es), dict((rows_by_protocol or {}).get(proto, {})), checks, transition, dict(sweeps or {}), prof, proto)
        for c in sorted(CLAIMS.values(), key=lambda c: c.id):
            caveat = "; ".join(x for x in (c.caveat, PROFILE_CAVEAT.get(prof, f"profile {prof}"), VARIABILITY) if x)
            out.append({"id": c.id, "location": c.location, "claim": c.statement, "tests": c.tests, "criterion": c.criterion,
                        "protocol": proto, **c.judge(ev), "caveat": caveat})
    return out


def theory_checks() -> list:
    """The by-construction checks the ledger uses (data-free, about a second): Cor. 2 / Thm. 1 on three
    random logistic instances at ε_d/τ ∈ {0.5, 0.9, 1, 1.5} and Ex. 1 at ε_d ∈ {0.01, 0.1, 1}."""
    from .. import checks as C

    return [C.phase_transition(s, f) for s in range(3) for f in (0.5, 0.9, 1.0, 1.5)] + [C.least_squares(e) for e in (0.01, 0.1, 1.0)]


def ledger_table(rows: list[dict]):
    """The ledger for the page (pandas): one line per claim, its criterion, one verdict column per protocol."""
    import pandas as pd

    df = pd.DataFrame(rows)
    if df.empty:
        return df
    wide = df.pivot(index="id", columns="protocol", values="verdict")
    wide.columns = [f"verdict [{p}]" for p in wide.columns]
    first = df.drop_duplicates("id").set_index("id")[["location", "claim", "criterion"]]
    return first.join(wide).reset_index()


def verdict_counts(rows: list[dict]):
    """Verdict counts per protocol (pandas; one row per protocol, one column per verdict)."""
    import pandas as pd

    df = pd.crosstab(pd.Series([r["protocol"] for r in rows], name="protocol"), pd.Series([r["verdict"] for r in rows], name="verdict"))
    return df.reindex(columns=[v for v in VERDICTS if v in df.columns], fill_value=0)
