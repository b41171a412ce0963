import math

import pytest
import torch

from poisonlib import PoisonlibError
from poisonlib.attacks import gradient_canceling, gradpc, n_poison_points, randompc
from poisonlib.attacks.gc import gc_gradient
from poisonlib.grads import global_norm, mean_gradient, mixed_gradient_norm, target_params
from poisonlib.models import loss_fn, model_for
from poisonlib.theory import lambert_margin_bound, tau_model
from poisonlib.train import train


@pytest.fixture(scope="module")
def lr_target(mnist):
    ds = mnist
    m, _ = train(model_for("lr", ds, seed=0), ds.x_train, ds.y_train, ds.task, epochs=5, batch_size=100, device="cpu")
    tgt, _ = gradpc(m, ds.x_train, ds.y_train, ds.task, 1.0, device="cpu")
    return m, tgt


@pytest.fixture(scope="module")
def binary_target(gaussian10):
    ds = gaussian10
    m, _ = train(model_for("lr", ds, seed=0), ds.x_train, ds.y_train, ds.task, epochs=200, lr=0.1, device="cpu")
    tgt, _ = gradpc(m, ds.x_train, ds.y_train, ds.task, 3.0, device="cpu")
    return tgt


# ------------------------------------------------------------------ GradPC
@pytest.mark.parametrize("norm", ["absolute", "relative"])
def test_gradpc_respects_its_budget_and_raises_the_loss(mnist, lr_target, norm):
    ds = mnist
    clean = lr_target[0]
    before = [p.detach().clone() for p in clean.parameters()]
    tgt, info = gradpc(clean, ds.x_train, ds.y_train, ds.task, 0.05, norm=norm, device="cpu")
    delta = global_norm([a.detach() - b for a, b in zip(tgt.parameters(), before)])
    radius = 0.05 if norm == "absolute" else 0.05 * global_norm(before)
    assert delta == pytest.approx(radius, rel=1e-4) and info["radius"] == pytest.approx(radius)
    assert all(torch.equal(a, b) for a, b in zip(clean.parameters(), before))  # clean model untouched
    loss = loss_fn(ds.task)
    with torch.no_grad():
        assert loss(tgt(ds.x_train), ds.y_train) > loss(clean(ds.x_train), ds.y_train)


def test_randompc_l2_has_gradpcs_radius_and_parameter_noise_scales_with_p(lr_target):
    clean = lr_target[0]
    tgt, info = randompc(clean, 0.5, noise="l2")
    delta = global_norm([a.detach() - b.detach() for a, b in zip(tgt.parameters(), clean.parameters())])
    assert delta == pytest.approx(0.5, rel=1e-5) == info["delta_norm"]
    tgt, info = randompc(clean, 0.5, seed=1)  # default: eps_w * N(0, 1) per parameter
    d = torch.cat([(a.detach() - b.detach()).reshape(-1) for a, b in zip(tgt.parameters(), clean.parameters())])
    assert float(d.std()) == pytest.approx(0.5, rel=0.05) and abs(float(d.mean())) < 0.05
    assert info["delta_norm"] == pytest.approx(float(d.norm()), rel=1e-5) and info["delta_norm"] > 40  # ~0.5 sqrt(7850)
    with pytest.raises(PoisonlibError, match="unknown noise 'l1'"):
        randompc(clean, 0.5, noise="l1")


def test_gradpc_rejects_nonpositive_budget(mnist, lr_target):
    with pytest.raises(PoisonlibError, match="eps_w must be a finite number > 0, got 0"):
        gradpc(lr_target[0], mnist.x_train, mnist.y_train, mnist.task, 0)


# ------------------------------------------------------------------ GC gradient
def test_gc_gradient_methods_agree_and_match_finite_differences(mnist, lr_target):
    ds, tgt = mnist, lr_target[1].double()
    w = {k: v.double() for k, v in target_params(tgt).items()}
    g_mu = mean_gradient(tgt, ds.x_train.double(), ds.y_train, ds.task)
    x_p, y_p = ds.x_train[:6].double().clone(), ds.y_train[:6]
    eps = 6 / len(ds.x_train)
    g1, o1 = gc_gradient(tgt, w, x_p, y_p, g_mu, eps, ds.task, "double_backward")
    g2, o2 = gc_gradient(tgt, w, x_p, y_p, g_mu, eps, ds.task, "jvp")
    assert torch.allclose(g1, g2, rtol=1e-5, atol=1e-12) and float(o1) == pytest.approx(float(o2))
    # central finite difference along a random direction
    d = torch.randn_like(x_p)
    h = 1e-5
    fp = gc_gradient(tgt, w, x_p + h * d, y_p, g_mu, eps, ds.task)[1]
    fm = gc_gradient(tgt, w, x_p - h * d, y_p, g_mu, eps, ds.task)[1]
    assert float((fp - fm) / (2 * h)) == pytest.approx(float((g1 * d).sum()), rel=1e-5)
    tgt.float()


@pytest.mark.parametrize("task, subset, bias", [("multiclass", "all", True), ("multiclass", "first", True), ("binary", "all", True),
                                                 ("binary", "all", False), ("regression", "all", True), ("regression", "first", False)])
def test_closed_form_gc_gradient_matches_autograd(task, subset, bias):
    """The linear closed form (Eq. 34 in matrix products) against reverse-over-reverse
    autograd in float64, features and (regression) labels, with and without the bias."""
    from poisonlib.attacks.gc import resolve_method
    from poisonlib.models import build_model

    k = 7 if task == "multiclass" else 1
    m = build_model("linreg" if task == "regression" else "lr", (1, 4, 5), k, seed=0, bias=bias).double()
    w = target_params(m, subset)
    gen = torch.Generator().manual_seed(0)
    g_mu = {name: torch.randn(v.shape, generator=gen, dtype=torch.float64) for name, v in w.items()}
    x = 3 * torch.randn(23, 1, 4, 5, generator=gen, dtype=torch.float64)
    y = {"multiclass": torch.randint(0, k, (23,), generator=gen), "binary": torch.randint(0, 2, (23,), generator=gen).double(),
         "regression": torch.randn(23, generator=gen, dtype=torch.float64)}[task]
    labels = task == "regression"
    assert resolve_method(m, w) == "closed_form"
    (ga, oa), (gb, ob) = (gc_gradient(m, w, x, y, g_mu, 0.4, task, meth, labels) for meth in ("double_backward", "closed_form"))
    for a, b in zip(ga if labels else (ga,), gb if labels else (gb,)):
        assert a.shape == b.shape and float((a - b).abs().max() / a.abs().max()) < 1e-12
    assert float(oa) == pytest.approx(float(ob), rel=1e-12)


def test_closed_form_refuses_a_nonlinear_model(mnist):
    from poisonlib.attacks.gc import resolve_method
    from poisonlib.models import model_for

    net = model_for("nn", mnist, seed=0)
    assert resolve_method(net, target_params(net)) == "double_backward"
    with pytest.raises(PoisonlibError, match="method 'closed_form' needs a linear model"):
        resolve_method(net, target_params(net), "closed_form")


def test_n_poison_points():
    assert n_poison_points(0.03, 2800) == 84 and n_poison_points(1e-9, 10) == 1 and n_poison_points(2.5, 100) == 250
    with pytest.raises(PoisonlibError, match="eps_d must be a finite number > 0, got -0.1"):
        n_poison_points(-0.1, 10)


# ------------------------------------------------------------------ GC runs
def test_gc_lowers_its_objective_and_stays_in_the_pixel_box(mnist, lr_target):
    ds = mnist
    res = gradient_canceling(lr_target[1], ds.x_train, ds.y_train, ds.task, 1.0, epochs=60, box=ds.feature_box, device="cpu")
    h = res.history["objective"]
    assert res.history["final_objective"] < 0.5 * h[0]
    # better than adding no poison at all: 1/2 ||g(mu)||^2
    assert res.history["final_objective"] < 0.5 * res.history["initial_residual"] ** 2
    assert float(res.x.min()) >= 0.0 and float(res.x.max()) <= 1.0
    assert res.n_poison == 2800 and res.x.shape == (2800, 1, 28, 28)
    assert torch.equal(res.y, ds.y_train[res.init_index])  # labels are kept
    norms = mixed_gradient_norm(lr_target[1], ds.x_train, ds.y_train, res.x, res.y, ds.task)
    assert norms["residual"] == pytest.approx(res.history["final_residual"], rel=1e-4)
    assert norms["mixed"] == pytest.approx(norms["residual"] / (1 + res.eps_d), rel=1e-6)


def test_gc_c_clips_to_the_clean_per_feature_range(mnist, lr_target):
    ds = mnist
    res = gradient_canceling(lr_target[1], ds.x_train, ds.y_train, ds.task, 0.05, epochs=20, clip="range", box=ds.feature_box, device="cpu")
    lo, hi = ds.x_train.amin(0), ds.x_train.amax(0)
    assert bool((res.x >= lo).all() and (res.x <= hi).all())
    assert float(res.x[:, :, 0, 0].abs().max()) == 0.0  # a corner pixel is always 0 in MNIST


def test_official_variant_uses_first_tensor_and_no_box(mnist, lr_target):
    ds = mnist
    res = gradient_canceling(lr_target[1], ds.x_train, ds.y_train, ds.task, 0.03, epochs=10, variant="official", lr=1e-3, box=ds.feature_box, device="cpu")
    assert res.config["params"] == "first" and res.config["clip"] is None and res.config["scaling"] == "sum"
    assert float(res.x.max()) > 1.0 or float(res.x.min()) < 0.0


@pytest.mark.parametrize("batch_size, stop_at", [(None, 16), (50, 40)])
def test_gc_checkpoint_resume_gives_identical_results(tmp_path, mnist, lr_target, batch_size, stop_at):
    ds = mnist
    kw = dict(epochs=30, box=ds.feature_box, device="cpu", seed=3, batch_size=batch_size)
    full = gradient_canceling(lr_target[1], ds.x_train, ds.y_train, ds.task, 0.05, **kw)
    ck = str(tmp_path / "gc.pt")
    gradient_canceling(lr_target[1], ds.x_train, ds.y_train, ds.task, 0.05, checkpoint=ck, checkpoint_every=10, **{**kw, "epochs": 30})
    state = torch.load(ck, weights_only=True)
    assert state["epoch"] == 30
    # interrupted run: keep the epoch-10 checkpoint, then resume
    part = str(tmp_path / "part.pt")
    import poisonlib.attacks.gc as gcmod

    calls = {"n": 0}
    real = gcmod.gc_gradient

    def boom(*a, **k):
        calls["n"] += 1
        if calls["n"] == stop_at:
            raise KeyboardInterrupt
        return real(*a, **k)

    gcmod.gc_gradient = boom
    try:
        with pytest.raises(KeyboardInterrupt):
            gradient_canceling(lr_target[1], ds.x_train, ds.y_train, ds.task, 0.05, checkpoint=part, checkpoint_every=10, **kw)
    finally:
        gcmod.gc_gradient = real
    assert torch.load(part, weights_only=True)["epoch"] == 10
    resumed = gradient_canceling(lr_target[1], ds.x_train, ds.y_train, ds.task, 0.05, checkpoint=part, checkpoint_every=10, **kw)
    assert torch.equal(resumed.x, full.x) and resumed.history["objective"] == full.history["objective"]
    with pytest.raises(PoisonlibError, match="another GC configuration"):
        gradient_canceling(lr_target[1], ds.x_train, ds.y_train, ds.task, 0.1, checkpoint=part, **kw)


def test_gc_phase_transition_on_binary_logistic_regression(gaussian10, binary_target):
    """Cor. 2: above tau GC can cancel the gradient; below tau no poison set can.

    Below tau the residual r = g(mu) + eps g(nu) obeys <w, r> >= W(1/e) (tau - eps) > 0,
    so ||r|| >= W(1/e) (tau - eps) / ||w||, whatever GC does."""
    ds, tgt = gaussian10, binary_target
    tau = tau_model(tgt, ds.x_train, ds.y_train, ds.task)["tau2"]
    assert tau > 0.5
    wnorm = global_norm(list(tgt.parameters()))
    kw = dict(epochs=1500, optimizer="sgd", lr=0.5, momentum=0.0, device="cpu")  # plain GD; the default (Adam): tests/test_gc_convergence.py
    above = gradient_canceling(tgt, ds.x_train, ds.y_train, ds.task, 2 * tau, **kw)
    below = gradient_canceling(tgt, ds.x_train, ds.y_train, ds.task, 0.5 * tau, **kw)
    assert above.history["final_residual"] < 1e-2 * above.history["residual"][0]
    bound = lambert_margin_bound(2) * (tau - below.eps_d) / wnorm
    assert below.history["final_residual"] >= bound * (1 - 1e-6)
    assert below.history["final_residual"] > 10 * above.history["final_residual"]


def test_gc_bad_arguments(mnist, lr_target):
    ds = mnist
    with pytest.raises(PoisonlibError, match="unknown variant 'authors'"):
        gradient_canceling(lr_target[1], ds.x_train, ds.y_train, ds.task, 0.1, variant="authors")
    with pytest.raises(PoisonlibError, match="eps_d must be a finite number > 0"):
        gradient_canceling(lr_target[1], ds.x_train, ds.y_train, ds.task, 0.0)
    with pytest.raises(PoisonlibError, match="unknown clip"):
        gradient_canceling(lr_target[1], ds.x_train, ds.y_train, ds.task, 0.1, clip="sometimes")
    bad = ds.x_train.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(PoisonlibError, match="NaN"):
        gradient_canceling(lr_target[1], bad, ds.y_train, ds.task, 0.1)


def test_mean_gradient_is_chunk_invariant(mnist, lr_target):
    ds, tgt = mnist, lr_target[1]
    a = mean_gradient(tgt, ds.x_train[:500], ds.y_train[:500], ds.task, chunk=64)
    b = mean_gradient(tgt, ds.x_train[:500], ds.y_train[:500], ds.task, chunk=10_000)
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert math.isclose(global_norm(a), global_norm(b), rel_tol=1e-5)


def test_minibatch_gc_lowers_the_exact_objective(mnist, lr_target):
    ds = mnist
    res = gradient_canceling(lr_target[1], ds.x_train, ds.y_train, ds.task, 0.3, epochs=15, batch_size=100, box=ds.feature_box, device="cpu")
    assert res.config["batch_size"] == 100 and res.n_poison == 840
    norms = mixed_gradient_norm(lr_target[1], ds.x_train, ds.y_train, res.x, res.y, ds.task)
    assert norms["residual"] == pytest.approx(res.history["final_residual"], rel=1e-4)
    full = gradient_canceling(lr_target[1], ds.x_train, ds.y_train, ds.task, 0.3, epochs=15, box=ds.feature_box, device="cpu")
    assert res.history["final_residual"] < 0.8 * (1 + res.eps_d) * res.history["initial_residual"]
    assert res.history["final_residual"] < 1.05 * full.history["final_residual"]  # as good as full batch here
    # a batch as large as the poison set is plain full-batch GC (same config, same result)
    a = gradient_canceling(lr_target[1], ds.x_train, ds.y_train, ds.task, 0.05, epochs=5, batch_size=10_000, device="cpu")
    b = gradient_canceling(lr_target[1], ds.x_train, ds.y_train, ds.task, 0.05, epochs=5, device="cpu")
    assert a.config == b.config and torch.equal(a.x, b.x)
