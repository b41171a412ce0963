import pytest
import torch

from poisonlib import PoisonlibError
from poisonlib.defenses import influence_scores, remove_top, sever, sever_scores
from poisonlib.defenses.influence import exact_hessian, inverse_hvp
from poisonlib.grads import flat, flat_loss, target_params
from poisonlib.models import LinearModel, loss_fn


def _fit(x, y, l2, steps=200, n=None):
    """Binary logistic regression to optimality: (1/n) sum of logistic losses + l2/2 ||theta||^2
    (n = len(x) by default: the mean), float64."""
    m = LinearModel(x.shape[1], 1).double()
    opt = torch.optim.LBFGS(m.parameters(), lr=1, max_iter=steps, tolerance_grad=1e-12, tolerance_change=1e-15, line_search_fn="strong_wolfe")
    loss = loss_fn("binary", reduction="sum")
    n = len(x) if n is None else n

    def closure():
        opt.zero_grad()
        val = loss(m(x), y) / n + 0.5 * l2 * sum((p * p).sum() for p in m.parameters())
        val.backward()
        return val

    opt.step(closure)
    return m


def test_remove_top_drops_the_largest_scores():
    keep = remove_top(torch.tensor([0.1, 5.0, 0.3, 4.0, 0.2]), 0.4)
    assert keep.tolist() == [True, False, True, False, True]
    assert remove_top(torch.ones(3), 0).all()
    with pytest.raises(PoisonlibError, match="remove_frac must be < 1, got 1"):
        remove_top(torch.ones(3), 1.0)


def test_sever_finds_planted_gradient_outliers(gaussian10):
    ds = gaussian10
    x, y = ds.x_train.double(), ds.y_train
    # label-flipped copies of class-1 points, pushed further to the class-1 side: the
    # model cannot fit them, and their gradients all point the same way
    bad_x = 3 * x[y == 1][:30]
    bad_y = torch.zeros(30, dtype=torch.int64)
    xx, yy = torch.cat([x, bad_x]), torch.cat([y, bad_y])
    model = _fit(xx, yy, 1e-3)
    scores = sever_scores(model, xx, yy, "binary")
    assert scores.shape == (len(xx),) and bool((scores >= 0).all())
    keep, _ = sever(model, xx, yy, "binary", 30 / len(xx))
    removed = (~keep).nonzero().squeeze(1)
    # 30 of 590 points are planted: a random filter would catch about 5 % of them
    assert len(removed) == 30 and (removed >= len(x)).float().mean() >= 0.6
    # rounds retrain between filters
    calls = []
    keep2, m2 = sever(model, xx, yy, "binary", 0.02, rounds=2, retrain=lambda a, b: calls.append(len(a)) or _fit(a, b, 1e-3))
    assert calls == [len(xx) - round(0.02 * len(xx)), len(xx) - round(0.02 * len(xx)) - round(0.02 * (len(xx) - round(0.02 * len(xx))))]
    assert int((~keep2).sum()) == len(xx) - calls[-1] and isinstance(m2, LinearModel)


def test_exact_and_cg_inverse_hvp_agree(gaussian10):
    ds = gaussian10
    x, y = ds.x_train.double(), ds.y_train
    m = _fit(x, y, 1e-2)
    v = torch.randn(11, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    a = inverse_hvp(m, x, y, "binary", v, l2=1e-2, method="exact")
    b = inverse_hvp(m, x, y, "binary", v, l2=1e-2, method="cg")
    assert torch.allclose(a, b, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("task, k", [("binary", 1), ("multiclass", 4)])
def test_exact_hessian_in_chunks_is_the_whole_hessian(task, k):
    """Summing chunk Hessians weighted by n_c / n (uneven last chunk included) gives the Hessian of
    the mean loss + l2/2 ||theta||^2 over all rows, l2 counted once."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(103, 5, generator=g, dtype=torch.float64)
    y = (torch.randint(0, k, (103,), generator=g) if task == "multiclass" else torch.randint(0, 2, (103,), generator=g).double())
    m = LinearModel(5, k).double()
    params = target_params(m)
    names, shapes = list(params), [tuple(p.shape) for p in params.values()]
    theta = flat(params).double()
    whole = torch.func.hessian(flat_loss(m, names, shapes, x, y, task, 0.3))(theta)
    for chunk in (1, 10, 103, None):
        assert torch.allclose(exact_hessian(m, names, shapes, x, y, task, 0.3, theta, chunk=chunk), whole, atol=1e-12)
    assert not torch.allclose(exact_hessian(m, names, shapes, x, y, task, 0.0, theta, chunk=10), whole, atol=1e-3)


def test_influence_predicts_leave_one_out_retraining(gaussian10):
    ds = gaussian10
    l2 = 1e-2
    x, y = ds.x_train.double(), ds.y_train
    xv, yv = ds.x_val.double(), ds.y_val
    m = _fit(x, y, l2)
    pred = influence_scores(m, x, y, "binary", xv, yv, l2=l2)
    loss = loss_fn("binary")
    with torch.no_grad():
        base = float(loss(m(xv), yv))
    idx = torch.topk(pred.abs(), 8).indices  # the most influential points: where first order is least accurate
    actual = []
    for i in idx.tolist():
        keep = torch.arange(len(x)) != i
        # removing z_i = upweighting it by -1/n: the other points keep their weight 1/n
        with torch.no_grad():
            actual.append(float(loss(_fit(x[keep], y[keep], l2, n=len(x))(xv), yv)) - base)
    actual, p = torch.tensor(actual, dtype=torch.float64), pred[idx]
    assert torch.corrcoef(torch.stack([actual, p]))[0, 1] > 0.98
    assert bool(((actual - p).abs() <= 0.25 * actual.abs()).all())  # first order, within 25 %


# --------------------------------------------------------------------------- MaxUp
def test_maxup_with_one_clean_copy_is_plain_training(gaussian10):
    from poisonlib.defenses import maxup_train
    from poisonlib.models import model_for
    from poisonlib.train import train

    ds = gaussian10
    a, _ = train(model_for("lr", ds, seed=0), ds.x_train, ds.y_train, ds.task, epochs=5, lr=0.1, batch_size=50, seed=3, device="cpu")
    b, _ = maxup_train(model_for("lr", ds, seed=0), ds.x_train, ds.y_train, ds.task, m=1, sigma=0.0, epochs=5, lr=0.1, batch_size=50, seed=3, device="cpu")
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.allclose(p, q, atol=1e-6)  # same steps; the mean is summed in another order


def test_maxup_objective_is_the_worst_copy(gaussian10):
    from poisonlib.defenses import maxup_objective
    from poisonlib.models import model_for

    ds = gaussian10
    model = model_for("lr", ds, seed=0)
    xb, yb = ds.x_train[:20], ds.y_train[:20]
    val = maxup_objective(ds.task, m=5, sigma=0.3, seed=7)(model, xb, yb)
    noise = torch.randn((5, *xb.shape), generator=torch.Generator().manual_seed(7)) * 0.3
    per = torch.stack([loss_fn(ds.task, reduction="none")(model(xb + e), yb) for e in noise])
    assert torch.allclose(val, per.max(0).values.mean())
    assert val >= per.mean() - 1e-7  # the worst case dominates the average copy
    with pytest.raises(PoisonlibError, match="m must be an integer >= 1, got 0"):
        maxup_objective(ds.task, m=0)


@pytest.mark.parametrize("shape", [(300, 40), (40, 300)])
def test_sever_singular_vector_is_svd_lowranks(shape):
    """Sever's range finder is ``torch.svd_lowrank``'s algorithm with the transposed products rewritten:
    the same vector (sign included) on tall and wide matrices from the same seed."""
    from poisonlib.defenses.sever import top_right_singular_vector

    g = torch.randn(*shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    torch.manual_seed(0)
    v = top_right_singular_vector(g)
    torch.manual_seed(0)
    ref = torch.svd_lowrank(g, q=6, niter=6)[2][:, 0]
    assert torch.allclose(v, ref, atol=1e-12)
