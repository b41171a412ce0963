"""In-step caps (poisonlib._meter): untouched loops without a meter, the skipped time added linearly,
nested caps composed, a loop that ends itself not extrapolated."""

import time

import pytest

from poisonlib._meter import capped, metering


def test_no_meter_returns_the_iterable_unchanged():
    r = range(10)
    assert capped(r, "x") is r


def test_skipped_items_are_extrapolated_linearly():
    with metering(2) as m:
        seen = [i for i in capped(range(10), "loop") if time.sleep(0.02) is None]
    assert seen == [0, 1]
    assert m.loops["loop"] == {"calls": 1, "ran": 2, "total": 10}
    assert m.extra == pytest.approx(8 * 0.02, rel=0.5)


def test_nested_caps_compose():
    """4 outer items of 6 inner items of 10 ms: 240 ms in full; 2 x 2 are run, the rest is extra."""
    t0 = time.perf_counter()
    with metering(2) as m:
        for _ in capped(range(4), "outer"):
            for _ in capped(range(6), "inner"):
                time.sleep(0.01)
    wall = time.perf_counter() - t0
    assert wall < 0.1
    assert wall + m.extra == pytest.approx(0.24, rel=0.3)


def test_short_loops_and_early_stops_add_nothing():
    with metering(3) as m:
        for _ in capped(range(3), "short"):
            time.sleep(0.005)
        for i in capped(range(100), "converged"):
            if i == 1:
                break
    assert m.extra == 0.0
    with pytest.raises(ValueError, match="cap"):
        with metering(0):
            pass
