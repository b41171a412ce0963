import pytest
import torch

from poisonlib import PoisonlibError
from poisonlib.models import model_for
from poisonlib.train import evaluate, resolve_device, train


def test_training_lowers_the_loss_and_learns(gaussian10):
    ds = gaussian10
    m, hist = train(model_for("lr", ds, seed=0), ds.x_train, ds.y_train, ds.task, epochs=30, lr=0.5, x_val=ds.x_val, y_val=ds.y_val)
    assert hist["loss"][-1] < 0.7 * hist["loss"][0]
    assert len(hist["val_accuracy"]) == 30
    assert evaluate(m, ds.x_test, ds.y_test, ds.task)["accuracy"] > 0.8


def test_same_seed_same_model_on_cpu(mnist):
    ds = mnist
    runs = [train(model_for("lr", ds, seed=1), ds.x_train[:500], ds.y_train[:500], ds.task, epochs=3, batch_size=50, seed=s, device="cpu")[0] for s in (7, 7, 8)]
    assert torch.equal(runs[0].weight, runs[1].weight)
    assert not torch.equal(runs[0].weight, runs[2].weight)


def test_adam_and_minibatches(mnist):
    ds = mnist
    _, hist = train(model_for("nn", ds, seed=0), ds.x_train[:300], ds.y_train[:300], ds.task, epochs=3, lr=1e-3, optimizer="adam", batch_size=64)
    assert hist["loss"][-1] < hist["loss"][0]


def test_bad_training_arguments():
    x, y = torch.zeros(4, 2), torch.zeros(4, dtype=torch.long)
    m = torch.nn.Linear(2, 2)
    with pytest.raises(PoisonlibError, match="lr must be"):
        train(m, x, y, "multiclass", lr=-1)
    with pytest.raises(PoisonlibError, match="unknown optimizer 'rmsprop'"):
        train(m, x, y, "multiclass", optimizer="rmsprop")
    with pytest.raises(PoisonlibError, match="NaN"):
        train(m, torch.full((4, 2), float("nan")), y, "multiclass")


def test_device_resolution():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(PoisonlibError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(PoisonlibError, match="no CUDA GPU"):
            resolve_device("cuda")
