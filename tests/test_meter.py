"""In-step caps (poisonlib._meter): untouched loops without a meter, the skipped time added linearly,
nested caps composed, a loop that ends itself not extrapolated."""

import time

import pytest

from poisonlib._meter import capped, metering, repeated


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


def test_an_evaluation_under_a_meter_is_full_size_with_its_first_batches_computed():
    """``train.outputs`` is an evaluation loop: capped, its result keeps the full shape (zeros past the
    batches it ran), and without a meter it is the model's output on every row."""
    import torch

    from poisonlib.train import outputs

    model = torch.nn.Linear(3, 2)
    x = torch.randn(10, 3)
    whole = outputs(model, x, device="cpu", batch_size=4)
    assert torch.allclose(whole, model(x).detach())
    with metering(1) as m:
        part = outputs(model, x, device="cpu", batch_size=4)
    assert m.loops["evaluation batches"] == {"calls": 1, "ran": 1, "total": 3}
    assert part.shape == whole.shape and torch.equal(part[:4], whole[:4]) and not part[4:].any()
    assert outputs(model, x[:0], device="cpu").shape == (0, 2)


def test_a_repeated_loop_is_priced_from_the_items_timed_before():
    """Inside ``repeated``, a loop the meter has timed runs nothing and adds its full count at the
    measured mean per item; a loop not yet timed runs as usual; without a meter nothing changes."""
    with metering(1) as m:
        for _ in capped(range(4), "chunks"):
            time.sleep(0.02)
        first = m.extra
        with repeated("chunks", "other"):
            assert list(capped(range(5), "chunks")) == []
            assert list(capped(range(3), "other")) == [0]
    assert first == pytest.approx(3 * 0.02, rel=0.5)
    assert m.extra - first == pytest.approx(5 * 0.02, rel=0.5)
    assert m.loops["chunks"] == {"calls": 2, "ran": 1, "total": 9}
    with repeated("chunks"):
        assert list(capped(range(3), "chunks")) == [0, 1, 2]


def test_gcs_final_gradient_is_priced_from_the_steps_in_a_dry_run_and_computed_otherwise():
    """GC's final stationarity gradient repeats a step's (one piece or chunks): under a meter, inside ``repeated``
    it is priced, not run (zeros); without a meter ``repeated`` changes nothing."""
    import torch

    from poisonlib.attacks.gc_grad import gc_gradient
    from poisonlib.grads import target_params
    from poisonlib.models import LinearModel

    torch.manual_seed(0)
    model = LinearModel(5, 3)
    params = target_params(model)
    g_mu = {k: torch.randn_like(v) for k, v in params.items()}
    x, y = torch.randn(12, 5), torch.randint(0, 3, (12,))
    whole, _ = gc_gradient(model, params, x, y, g_mu, 0.5, "multiclass")
    names = ("GC gradient", "GC residual chunks", "GC poison chunks")
    for chunk in (None, 4):
        with metering(1) as m:
            step, _ = gc_gradient(model, params, x, y, g_mu, 0.5, "multiclass", chunk_size=chunk)
            with repeated(*names):
                final, _ = gc_gradient(model, params, x, y, g_mu, 0.5, "multiclass", chunk_size=chunk)
        assert step.abs().sum() > 0 and final.shape == x.shape and not final.any()
        assert all(v["ran"] < v["total"] for k, v in m.loops.items() if k in names)
        with repeated(*names):
            assert torch.allclose(gc_gradient(model, params, x, y, g_mu, 0.5, "multiclass", chunk_size=chunk)[0], whole, atol=1e-6)
