"""The table of numbers from independent re-runs of the released code (poisonlib.independent) is well-formed."""

import re

from poisonlib import independent as I
from poisonlib import paper


def test_table_well_formed():
    assert I.TABLE
    for e in I.TABLE:
        assert re.fullmatch(r"[\w.-]+/[\w.-]+", e.repo) and e.path and re.fullmatch(r"[0-9a-f]{40}", e.commit)
        assert e.quantity in ("gc_drop", "test_acc") and isinstance(e.verified, bool) and e.note and e.protocol
        assert e.model in ("lr", "nn", "cnn") and (e.eps_d == "tau" or e.eps_d > 0)
        assert (e.value <= 0) if e.quantity == "gc_drop" else (0 <= e.value <= 100)
    assert all(e.verified for e in I.TABLE)  # only numbers we read at the source go into TABLE
    keys = [(e.repo, e.path, e.quantity, e.model, e.eps_d, e.epoch) for e in I.TABLE]
    assert len(keys) == len(set(keys))
    assert all(len(u) == 2 and u[1] for u in I.UNVERIFIED)


def test_quoted_numbers():
    lr = {e.eps_d: e.value for e in I.TABLE if e.path == "model.png" and e.model == "lr"}
    assert lr == {0.03: -21.1, 0.1: -57.01, 1.0: -67.2, "tau": -67.6}
    assert I.swing() == {"min": 12.61, "max": 70.87, "last": 21.45, "epochs": (84, 99)}
    assert len(I.rows("gc_drop")) == 12 and not hasattr(paper, "TABLE_INDEPENDENT")  # kept apart from the paper's numbers
