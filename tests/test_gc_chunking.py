"""GC's gradient in chunks over the poisons equals the one-piece gradient (float64, 1e-6).

The residual r = g(μ) + ε g(ν̂) needs every poison; the gradient for poison j (Eq. 34) needs r
and poison j's own double derivative only, so the chunked two-pass computation must give the
same vector and objective for every method, chunk size (dividing n_p or not), parameter subset
and for labels; and a whole GC run (both variants, full batch and mini-batches) must end at the
same poisons.
"""

import pytest
import torch

import poisonlib.attacks.gc_grad as gcg
from poisonlib import data, models
from poisonlib.attacks.gc import gc_gradient, gradient_canceling
from poisonlib.attacks.gc_grad import chunked_gc_gradient, resolve_chunk_size
from poisonlib.grads import mean_gradient, target_params

TOL = 1e-6


@pytest.fixture(scope="module")
def mnist():
    return data.load_dataset("mnist")


def _model(name, ds, seed=0):
    return models.model_for(name, ds, seed=seed).double().eval()


def _close(a, b):
    a, b = a.detach(), b.detach()
    scale = max(float(b.abs().max()), 1e-300)
    return float((a - b).abs().max()) / scale


@pytest.mark.parametrize("name,method", [("lr", "closed_form"), ("lr", "double_backward"), ("nn", "double_backward"),
                                         ("nn", "jvp"), ("cnn", "double_backward")])
@pytest.mark.parametrize("chunk", [4, 7])
def test_chunked_gradient_equals_whole(mnist, name, method, chunk):
    ds = mnist
    m = _model(name, ds)
    x, y = ds.x_train[:300].double(), ds.y_train[:300]
    w = target_params(m)
    g_mu = mean_gradient(m, x, y, ds.task)
    x_p = (x[:30] + 0.05 * torch.randn(30, *x.shape[1:], generator=torch.Generator().manual_seed(1), dtype=x.dtype)).clamp(0, 1)
    y_p = (y[:30] + 3) % 10  # labels unlike the clean points', so that the residual moves
    g1, o1 = gc_gradient(m, w, x_p, y_p, g_mu, 0.1, ds.task, method)
    g2, o2 = gc_gradient(m, w, x_p, y_p, g_mu, 0.1, ds.task, method, chunk_size=chunk)
    assert float(g1.abs().max()) > 0
    assert _close(g2, g1) < TOL
    assert abs(float(o2) - float(o1)) <= TOL * abs(float(o1))


@pytest.mark.parametrize("method", ["closed_form", "double_backward", "jvp"])
@pytest.mark.parametrize("subset", ["all", "first"])
def test_chunked_gradient_labels_and_subsets(method, subset):
    """Regression with gradients to the labels (closed form and autograd), all or only the first tensor."""
    gen = torch.Generator().manual_seed(0)
    m = models.LinearModel(5, 1).double()
    with torch.no_grad():
        m.weight.copy_(torch.randn(1, 5, generator=gen, dtype=torch.float64))
    x, y = torch.randn(40, 5, generator=gen, dtype=torch.float64), torch.randn(40, generator=gen, dtype=torch.float64)
    w = target_params(m, subset)
    g_mu = mean_gradient(m, x, y, "regression", params=w)
    x_p, y_p = x[:11] + 0.3, y[:11] - 0.2
    (ax, ay), oa = gc_gradient(m, w, x_p, y_p, g_mu, 0.3, "regression", method, True)
    (bx, by), ob = chunked_gc_gradient(m, w, x_p, y_p, g_mu, 0.3, "regression", method, True, chunk_size=3)
    assert _close(bx, ax) < TOL and _close(by, ay) < TOL
    assert abs(float(ob) - float(oa)) <= TOL * abs(float(oa))


@pytest.mark.parametrize("name,kw", [("lr", {}), ("nn", {}), ("cnn", {}), ("nn", {"batch_size": 8}),
                                     ("nn", {"variant": "official", "lr": 1e-3}), ("lr", {"variant": "official", "lr": 1e-3})])
def test_gc_run_chunked_equals_unchunked(mnist, name, kw):
    """The whole GC loop (Alg. 1; ``variant="official"`` is the released protocol's) with a chunk size
    that does not divide n_p ends at the same poisons and residual as the unchunked run."""
    ds = mnist
    x, y = ds.x_train[:200].double(), ds.y_train[:200]
    runs = [gradient_canceling(_model(name, ds), x, y, ds.task, 0.1, epochs=4, box=ds.feature_box, device="cpu", progress=False,
                               chunk_size=c, **kw) for c in (None, 7)]
    assert "chunk_size" not in runs[0].config and runs[1].config["chunk_size"] == 7
    assert _close(runs[1].x, runs[0].x) < TOL
    assert _close(torch.tensor(runs[1].history["residual"]), torch.tensor(runs[0].history["residual"])) < TOL
    assert abs(runs[1].history["final_residual"] - runs[0].history["final_residual"]) <= TOL * runs[0].history["final_residual"]
    assert (runs[1].x - x[runs[1].init_index]).abs().max() > 0  # the poisons moved


def test_auto_chunks_only_above_the_budget(mnist, monkeypatch):
    ds = mnist
    m = models.model_for("cnn", ds, seed=0).eval()
    w = target_params(m)
    assert resolve_chunk_size("auto", m, w, ds.x_train, ds.y_train, ds.task, "auto", 300, "cpu") is None  # today's CNN cells: one piece
    chunk = resolve_chunk_size("auto", m, w, ds.x_train, ds.y_train, ds.task, "auto", 60000, "cpu")
    assert chunk is not None and 1000 < chunk < 60000  # ε_d = 1 on the full MNIST: chunked within 16 GiB
    assert resolve_chunk_size(None, m, w, ds.x_train, ds.y_train, ds.task, "auto", 60000, "cpu") == chunk
    monkeypatch.setitem(gcg.GC_MEMORY_BUDGET, "cpu", 10 * 2**20)  # a 10 MiB budget chunks even 30 poisons
    res = gradient_canceling(m, ds.x_train[:300], ds.y_train[:300], ds.task, 0.1, epochs=1, device="cpu", progress=False)
    assert 1 <= res.config["chunk_size"] < 30
    assert resolve_chunk_size(50, m, w, ds.x_train, ds.y_train, ds.task, "auto", 30, "cpu") is None


def test_bad_chunk_size(mnist):
    from poisonlib._validation import PoisonlibError

    m = models.model_for("lr", mnist, seed=0)
    for bad in (0, "big", 2.5):
        with pytest.raises(PoisonlibError, match="chunk_size"):
            gradient_canceling(m, mnist.x_train[:100], mnist.y_train[:100], mnist.task, 0.1, epochs=1, device="cpu", chunk_size=bad)


@pytest.mark.parametrize("name", ["lr", "nn", "cnn"])
def test_tgda_total_gradient_chunked_equals_whole(mnist, name):
    """TGDA's total gradient (∇L_val, the Hessian products of CG, the poisons' pullback) summed over
    chunks of the points (a size dividing nothing) equals the one-graph computation."""
    from poisonlib.attacks.tgda import total_gradient

    ds = mnist
    m = _model(name, ds)
    x, y = ds.x_train[:120].double(), ds.y_train[:120]
    w = target_params(m)
    x_p = (x[:25] + 0.05 * torch.randn(25, *x.shape[1:], generator=torch.Generator().manual_seed(1), dtype=x.dtype)).clamp(0, 1)
    y_p = (y[:25] + 3) % 10
    xv, yv = ds.x_train[200:260].double(), ds.y_train[200:260]
    g1, l1 = total_gradient(m, w, x, y, x_p, y_p, xv, yv, ds.task, cg_iters=5)
    g2, l2 = total_gradient(m, w, x, y, x_p, y_p, xv, yv, ds.task, cg_iters=5, chunk=17)
    assert float(g1.abs().max()) > 0
    assert _close(g2, g1) < TOL and abs(l2 - l1) <= TOL * abs(l1)


def test_tgda_run_chunked_equals_unchunked(mnist):
    """A whole TGDA run (follower steps in chunks too) ends at the same poisons; ``"auto"`` leaves
    MNIST-sized runs in one graph (no ``chunk_size`` in the config) and records a forced chunk."""
    from poisonlib.attacks.tgda import tgda

    ds = mnist
    x, y = ds.x_train[:150].double(), ds.y_train[:150]
    runs = [tgda(_model("nn", ds), x, y, ds.task, 0.1, epochs=2, follower_steps=2, cg_iters=4, box=(0.0, 1.0), device="cpu",
                 progress=False, chunk_size=c) for c in ("auto", 11)]
    assert "chunk_size" not in runs[0].config and runs[1].config["chunk_size"] == 11
    assert _close(runs[1].x, runs[0].x) < TOL
    with pytest.raises(Exception, match="chunk_size"):
        tgda(_model("nn", ds), x, y, ds.task, 0.1, epochs=1, chunk_size="big", device="cpu", progress=False)


@pytest.mark.parametrize("name", ["lr", "nn", "cnn"])
def test_gm_run_chunked_equals_unchunked(mnist, name):
    """Gradient Matching with its dissimilarity's gradient (and g_J) in chunks ends at the same poisons
    and final dissimilarity as the one-graph run; ``"auto"`` keeps MNIST-sized runs in one graph."""
    from poisonlib.attacks.gm import gradient_matching

    ds = mnist
    x, y = ds.x_train[:150].double(), ds.y_train[:150]
    runs = [gradient_matching(_model(name, ds), x, y, ds.task, 0.1, steps=3, optimizer="adam", lr=0.01, box=(0.0, 1.0), device="cpu",
                              progress=False, chunk_size=c) for c in ("auto", 4)]
    assert "chunk_size" not in runs[0].config and "clean_chunk_size" not in runs[0].config
    assert runs[1].config["chunk_size"] == runs[1].config["clean_chunk_size"] == 4  # poisons and g_J's clean points
    assert _close(runs[1].x, runs[0].x) < TOL
    assert abs(runs[1].history["final_dissimilarity"] - runs[0].history["final_dissimilarity"]) <= TOL


def test_gm_restarts_are_an_in_step_cap_and_the_clean_set_is_chunked_on_its_own(mnist, monkeypatch):
    """Under a meter GM runs its first restarts only (the rest priced linearly); with a budget that fits
    the poisons but not the clean set, only g_J is computed in chunks, to the same poisons."""
    from poisonlib._meter import metering
    from poisonlib.attacks.gm import gradient_matching

    ds = mnist
    x, y = ds.x_train[:150].double(), ds.y_train[:150]
    kw = dict(steps=2, optimizer="adam", lr=0.01, box=(0.0, 1.0), device="cpu", progress=False)
    with metering(1) as m:
        gradient_matching(_model("nn", ds), x, y, ds.task, 0.05, restarts=3, **kw)
    assert m.loops["GM restarts"] == {"calls": 1, "ran": 1, "total": 3} and m.extra > 0
    whole = gradient_matching(_model("nn", ds), x, y, ds.task, 0.05, **kw)
    per = gcg.gc_bytes_per_poison(_model("nn", ds), target_params(_model("nn", ds)), x[:2], y[:2], ds.task, "double_backward")
    monkeypatch.setitem(gcg.GC_MEMORY_BUDGET, "cpu", 40 * per)  # 8 poisons fit, 150 clean points do not
    split = gradient_matching(_model("nn", ds), x, y, ds.task, 0.05, **kw)
    assert "chunk_size" not in split.config and split.config["clean_chunk_size"] == 40
    assert _close(split.x, whole.x) < TOL
