import pytest
import torch

from poisonlib import PoisonlibError
from poisonlib.models import build_model, list_models, loss_fn, model_for, predict


@pytest.mark.parametrize("name", ["lr", "nn", "cnn"])
def test_image_models_output_one_logit_per_class(name, mnist):
    m = model_for(name, mnist, seed=0)
    assert m(mnist.x_train[:7]).shape == (7, 10)


def test_binary_and_regression_models_have_one_output(gaussian10):
    assert model_for("lr", gaussian10)(gaussian10.x_train[:5]).shape == (5, 1)
    assert build_model("linreg", (1,), 1)(torch.zeros(4, 1)).shape == (4, 1)


def test_architectures_match_the_paper():
    nn_ = build_model("nn", (1, 28, 28), 10)
    assert [tuple(p.shape) for p in nn_.parameters()][::2] == [(784, 784), (784, 784), (10, 784)]
    assert isinstance(nn_.act1, torch.nn.LeakyReLU) and nn_.act1.negative_slope == 0.2
    cnn = build_model("cnn", (1, 28, 28), 10)
    assert cnn.conv1.kernel_size == (3, 3) and cnn.conv2.kernel_size == (3, 3) and cnn.fc1.out_features == 128
    assert [k for k, _ in build_model("lr", (784,), 10).named_parameters()] == ["weight", "bias"]


def test_seeded_initialisation_is_reproducible():
    a, b, c = (build_model("nn", (784,), 10, seed=s) for s in (3, 3, 4))
    assert torch.equal(a.fc1.weight, b.fc1.weight) and not torch.equal(a.fc1.weight, c.fc1.weight)


def test_registry_errors(gaussian10):
    assert {"lr", "nn", "cnn", "linreg"} <= set(list_models())
    with pytest.raises(PoisonlibError, match="unknown model 'resnet1'"):
        build_model("resnet1", (3,), 2)
    with pytest.raises(PoisonlibError, match="regression"):
        model_for("linreg", gaussian10)
    with pytest.raises(PoisonlibError, match="image inputs"):
        build_model("cnn", (10,), 2)


def test_losses_match_the_paper_equations():
    h = torch.tensor([[0.3], [-1.2]])
    y = torch.tensor([1, 0])
    # Eq. (17): log(1 + exp(-y~ h)), y~ = 2y - 1
    expected = torch.log1p(torch.exp(-(2 * y - 1) * h.reshape(-1))).mean()
    assert torch.allclose(loss_fn("binary")(h, y), expected)
    # Eq. (8): 1/2 (y - w'x)^2
    assert torch.allclose(loss_fn("regression")(torch.tensor([[2.0]]), torch.tensor([1.0])), torch.tensor(0.5))
    assert predict(h, "binary").tolist() == [1, 0]


@pytest.mark.parametrize("arch, blocks", [("resnet18", [2, 2, 2, 2]), ("resnet34", [3, 4, 6, 3])])
def test_resnets_use_the_cifar_stem_for_small_images(arch, blocks):
    import torchvision

    m = build_model(arch, (3, 32, 32), 10, seed=0)
    assert m.conv1.kernel_size == (3, 3) and m.conv1.stride == (1, 1) and isinstance(m.maxpool, torch.nn.Identity)
    assert [len(getattr(m, f"layer{i}")) for i in range(1, 5)] == blocks
    assert m.eval()(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    # same parameter count as torchvision's model apart from the smaller stem
    ref = getattr(torchvision.models, arch)(num_classes=10)
    diff = sum(p.numel() for p in ref.parameters()) - sum(p.numel() for p in m.parameters())
    assert diff == 64 * 3 * (49 - 9)
    big = build_model(arch, (3, 224, 224), 200)
    assert big.conv1.kernel_size == (7, 7) and isinstance(big.maxpool, torch.nn.MaxPool2d)


def test_resnet_last_layer_splits_for_theorem_4():
    from poisonlib.models import split_last_layer

    m = build_model("resnet18", (3, 64, 64), 200, seed=0).eval()
    phi, last = split_last_layer(m)
    x = torch.rand(2, 3, 64, 64)
    assert last.in_features == 512 and torch.allclose(last(phi(x)), m(x), atol=1e-5)
    with pytest.raises(PoisonlibError, match="needs image inputs"):
        build_model("resnet18", (784,), 10)
