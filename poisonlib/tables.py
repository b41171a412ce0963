"""The book's tables as HTML: the paper's number beside ours, per protocol, verdicts coloured.

:func:`paper_table` turns a frame of :mod:`poisonlib.report` (columns such as
``paper drop (%)``, ``our drop (%) [paper]``, ``our drop (%) [released]``,
``verdict [paper]``) into a :class:`PaperTable`, a pandas ``Styler`` with

* a two-level column header, *quantity* over *whose number*: ``reported`` (the
  paper's), ``ours: <protocol>`` (ours under each protocol), so that the paper's
  number stands beside ours;
* verdict cells coloured (:data:`VERDICT_COLOURS`);
* a caption and a table id derived from the caption and the columns only, so that an
  executed notebook's HTML is the same on every run;
* a plain-text form (the frame's ``to_string``) for consoles and for output comparisons.
"""

from __future__ import annotations

import hashlib
import math
import re

import pandas as pd
from pandas.io.formats.style import Styler

#: Background colour of a verdict cell, by the verdict's text (``poisonlib.report.verdict``).
VERDICT_COLOURS = {
    "reproduced": "#c8e6c9",       # green
    "qualitatively": "#ffe0b2",    # amber
    "not reproduced": "#ffcdd2",   # red
}

#: Level-2 header of the paper's own number.
REPORTED = "reported"

_PROTOCOL = re.compile(r"^(?P<q>.*\S)\s*\[(?P<p>[^\]]+)\]$")
_PAPER = re.compile(r"^(?:paper:?\s+)(?P<q>.+)$")
_OURS = re.compile(r"^(?:our:?\s+|ours:?\s+)(?P<q>.+)$")


def split_column(name) -> tuple[str, str]:
    """``(quantity, whose)`` of one column name.

    ``"our drop (%) [released]"`` → ``("drop (%)", "ours: released")``; ``"paper drop (%)"`` →
    ``("drop (%)", "reported")``; ``"verdict [paper]"`` → ``("verdict", "ours: paper")``; any
    other name ``n`` → ``(n, "")``; bare ``paper`` / ``ours [p]`` are the quantity ``value``.
    """
    name, protocol = str(name), None
    m = _PROTOCOL.match(name)
    if m:
        name, protocol = m["q"], m["p"]
    if name in ("paper", "ours"):  # a frame of values: "paper", "ours [protocol]"
        name += " value"
    m = _PAPER.match(name)
    if m and protocol is None:
        return m["q"], REPORTED
    m = _OURS.match(name)
    if m:
        name = m["q"]
        return name, f"ours: {protocol}" if protocol else "ours"
    return name, f"ours: {protocol}" if protocol else ""


def two_level(columns) -> tuple[pd.MultiIndex, list[int]]:
    """The two-level header of ``columns`` and the column order that puts each quantity's
    columns together (in order of first appearance, the paper's number first)."""
    pairs = [split_column(c) for c in columns]
    groups: dict[str, list[int]] = {}
    for i, (q, _) in enumerate(pairs):
        groups.setdefault(q, []).append(i)
    order = [i for idx in groups.values() for i in sorted(idx, key=lambda i: pairs[i][1] != REPORTED)]
    return pd.MultiIndex.from_tuples([pairs[i] for i in order], names=["quantity", "whose number"]), order


def table_uuid(text: str) -> str:
    """A table id made from the table's text: the same table gets the same id on every run,
    two tables of one page different ones."""
    return "t" + hashlib.sha256(text.encode()).hexdigest()[:10]


def _cell(v) -> str:
    """How one table entry is written: floats with up to 6 significant digits, NaN as ``–``."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def verdict_style(v) -> str:
    """CSS of a verdict cell (empty for anything but a verdict)."""
    colour = VERDICT_COLOURS.get(str(v).strip())
    return f"background-color: {colour}" if colour else ""


class PaperTable(Styler):
    """A ``Styler`` that prints as its frame's text (``repr``, ``text/plain``) and renders as HTML."""

    def __init__(self, data: pd.DataFrame, *args, text: str = "", **kw):
        super().__init__(data, *args, **kw)
        self.text = text

    def __repr__(self) -> str:
        return self.text

    def _repr_pretty_(self, p, cycle) -> None:
        p.text(self.text)


def paper_table(df: pd.DataFrame, caption: str = "", *, uuid: str | None = None, verdict_columns=None) -> PaperTable:
    """``df`` as a :class:`PaperTable`: two-level header, verdicts coloured, ``caption`` above.

    ``verdict_columns`` names the columns to colour (default: every column whose
    quantity is ``verdict``). The index is not shown.
    """
    header, order = two_level(df.columns)
    if header.has_duplicates:  # two columns would share a header cell: keep the frame's own names
        header, order = pd.MultiIndex.from_tuples([(str(c), "") for c in df.columns], names=header.names), list(range(len(df.columns)))
    out = df.iloc[:, order].copy()
    flat = list(out.columns)
    out.columns = header if any(w for _, w in header) else pd.Index([q for q, _ in header])  # one header row when nothing pairs
    text = (caption + "\n" if caption else "") + df.to_string(index=False)
    t = PaperTable(out, text=text, uuid=uuid or table_uuid(text), cell_ids=False)
    t.format(_cell)
    t.hide(axis="index")
    if caption:
        t.set_caption(caption)
    want = set(verdict_columns) if verdict_columns is not None else None
    cols = [c for f, h, c in zip(flat, header, out.columns) if (f in want if want is not None else h[0] == "verdict")]
    if cols:
        t.map(verdict_style, subset=cols)
    t.set_table_styles([
        {"selector": "caption", "props": "caption-side: top; text-align: left; font-weight: bold; padding-bottom: 0.3em"},
        {"selector": "th.col_heading.level0", "props": "text-align: center; border-bottom: 1px solid #999"},
        {"selector": "td", "props": "padding: 0.15em 0.6em"},
    ], overwrite=False)
    return t
