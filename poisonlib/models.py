"""Models, as a small registry keyed by name (torchvision style), plus the loss
of each task.

All models end in a linear layer producing logits (or the regression output),
so the last-layer results of Thm. 4 apply to every one of them.

======  ====================================================================
name    architecture (Sec. 5.1, App. C.1)
======  ====================================================================
lr      logistic regression: Flatten -> Linear(d, c) (c = 1 for binary)
nn      3-layer MLP: d -> 784 -> 784 -> c, LeakyReLU(0.2)
cnn     Conv(32, k=3) -> ReLU -> Conv(64, k=3) -> ReLU -> MaxPool(2)
        -> FC 128 -> ReLU -> FC c  (the PyTorch MNIST example used by the
        authors' code, without its dropout so that gradients are deterministic)
resnet18, resnet34
        torchvision's ResNets (He et al. 2016) with ``num_classes`` outputs;
        for inputs of at most 64x64 pixels (CIFAR-10, TinyImageNet) the
        "CIFAR stem": a 3x3, stride-1 first convolution and no max-pool
linreg  linear regression: Flatten -> Linear(d, 1)
======  ====================================================================
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ._registry import Registry
from ._validation import PoisonlibError, check_choice

MODELS = Registry("model")


def register_model(name: str):
    """Decorator registering a builder ``fn(input_shape, num_outputs, **kw) -> nn.Module``."""
    return MODELS.register(name)


def list_models() -> list[str]:
    """Names of the registered models."""
    return MODELS.names()


def build_model(name: str, input_shape, num_outputs: int, *, seed: int | None = None, **kwargs) -> nn.Module:
    """Build a freshly initialised model; ``seed`` makes its initialisation reproducible."""
    builder = MODELS.get(name)
    if seed is None:
        return builder(tuple(input_shape), int(num_outputs), **kwargs)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return builder(tuple(input_shape), int(num_outputs), **kwargs)


def model_for(name: str, dataset, *, seed: int | None = None, **kwargs) -> nn.Module:
    """Build model ``name`` sized for ``dataset`` (a :class:`poisonlib.data.Dataset`)."""
    if name == "linreg" and dataset.task != "regression":
        raise PoisonlibError(f"model 'linreg' needs a regression dataset; {dataset.name!r} is {dataset.task}")
    if name != "linreg" and dataset.task == "regression":
        raise PoisonlibError(f"dataset {dataset.name!r} is a regression task; use model 'linreg', not {name!r}")
    # a protocol's view of the data may fix an architecture (the released code's NN): see poisonlib.protocols
    kwargs = {**dataset.info.get("model_options", {}).get(name, {}), **kwargs}
    return build_model(name, dataset.input_shape, dataset.num_outputs, seed=seed, **kwargs)


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


class LinearModel(nn.Module):
    """h = W flatten(x) + b, with parameters named ``weight`` (c, d) and ``bias`` (c,);
    ``bias=False`` gives the homogeneous model h = W x of the theory (Sec. 3)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        lin = nn.Linear(in_features, out_features, bias=bias)  # PyTorch's default initialisation
        self.weight, self.bias = lin.weight, lin.bias

    def forward(self, x):
        return F.linear(x.flatten(1), self.weight, self.bias)


def linear_model(weight, bias=None) -> LinearModel:
    """A :class:`LinearModel` with the given parameters (e.g. a hand-picked target w)."""
    w = torch.as_tensor(weight, dtype=torch.float32)
    w = w.reshape(1, -1) if w.ndim == 1 else w
    m = LinearModel(w.shape[1], w.shape[0], bias=bias is not None)
    with torch.no_grad():
        m.weight.copy_(w)
        if bias is not None:
            m.bias.copy_(torch.as_tensor(bias, dtype=torch.float32).reshape(-1))
    return m.eval()


@register_model("lr")
def logistic_regression(input_shape, num_outputs, bias: bool = True):
    return LinearModel(_numel(input_shape), num_outputs, bias)


@register_model("linreg")
def linear_regression(input_shape, num_outputs=1, bias: bool = True):
    return LinearModel(_numel(input_shape), 1, bias)


@register_model("nn")
def mlp(input_shape, num_outputs, hidden: int = 784, negative_slope: float = 0.2, depth: int = 2):
    """``depth`` hidden layers of width ``hidden``: App. C.1's 784-784-784-10 LeakyReLU(0.2) by
    default; ``hidden=128, depth=1, negative_slope=0`` is the released code's 784-128-10 ReLU."""
    d = _numel(input_shape)
    layers = [("flatten", nn.Flatten())]
    for i in range(1, depth + 1):
        act = nn.LeakyReLU(negative_slope) if negative_slope else nn.ReLU()
        layers += [(f"fc{i}", nn.Linear(d if i == 1 else hidden, hidden)), (f"act{i}", act)]
    layers.append((f"fc{depth + 1}", nn.Linear(hidden, num_outputs)))
    return nn.Sequential(OrderedDict(layers))


@register_model("cnn")
def cnn(input_shape, num_outputs, hidden: int = 128):
    if len(input_shape) != 3:
        raise PoisonlibError(f"model 'cnn' needs image inputs (C, H, W), got input shape {tuple(input_shape)}")
    c, h, w = input_shape
    flat = 64 * ((h - 4) // 2) * ((w - 4) // 2)
    layers = [
        ("conv1", nn.Conv2d(c, 32, 3)),
        ("act1", nn.ReLU()),
        ("conv2", nn.Conv2d(32, 64, 3)),
        ("act2", nn.ReLU()),
        ("pool", nn.MaxPool2d(2)),
        ("flatten", nn.Flatten()),
        ("fc1", nn.Linear(flat, hidden)),
        ("act3", nn.ReLU()),
        ("fc2", nn.Linear(hidden, num_outputs)),
    ]
    return nn.Sequential(OrderedDict(layers))


def _resnet(arch: str, input_shape, num_outputs: int, stem: str = "auto"):
    """A torchvision ResNet as an ``nn.Sequential`` ending in its ``fc`` layer.

    ``stem="cifar"`` swaps the 7x7/stride-2 convolution and max-pool of the
    ImageNet stem for a 3x3/stride-1 convolution (inputs of 32 or 64 pixels
    would otherwise shrink to 1-2 pixels before the last block); ``"auto"``
    picks it for inputs of at most 64 pixels a side.
    """
    import torchvision

    if len(input_shape) != 3:
        raise PoisonlibError(f"model {arch!r} needs image inputs (C, H, W), got input shape {tuple(input_shape)}")
    check_choice("stem", stem, ("auto", "cifar", "imagenet"))
    c, h, _ = input_shape
    net = getattr(torchvision.models, arch)(weights=None, num_classes=num_outputs)
    if stem == "cifar" or (stem == "auto" and h <= 64):
        net.conv1, net.maxpool = nn.Conv2d(c, 64, 3, 1, 1, bias=False), nn.Identity()
    elif c != 3:
        net.conv1 = nn.Conv2d(c, 64, 7, 2, 3, bias=False)
    names = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool")
    return nn.Sequential(OrderedDict([*((k, getattr(net, k)) for k in names), ("flatten", nn.Flatten()), ("fc", net.fc)]))


@register_model("resnet18")
def resnet18(input_shape, num_outputs, stem: str = "auto"):
    return _resnet("resnet18", input_shape, num_outputs, stem)


@register_model("resnet34")
def resnet34(input_shape, num_outputs, stem: str = "auto"):
    return _resnet("resnet34", input_shape, num_outputs, stem)


# --------------------------------------------------------------------------- losses
def loss_fn(task: str, reduction: str = "mean") -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The training loss ℓ of a task, as ``fn(outputs, targets)``.

    * ``multiclass``: cross-entropy, Eq. (26);
    * ``binary``: logistic loss log(1 + exp(-y~ h)) with y~ = 2y - 1, Eq. (17)
      (``binary_cross_entropy_with_logits`` on a single logit);
    * ``regression``: ½ (y - wᵀx)², Eq. (8).
    """

    def multiclass(out, y):
        return F.cross_entropy(out, y, reduction=reduction)

    def binary(out, y):
        return F.binary_cross_entropy_with_logits(out.reshape(-1), y.to(out.dtype), reduction=reduction)

    def regression(out, y):
        r = 0.5 * (out.reshape(-1) - y.to(out.dtype)) ** 2
        return r.mean() if reduction == "mean" else r.sum() if reduction == "sum" else r

    return {"multiclass": multiclass, "binary": binary, "regression": regression}[check_choice("task", task, ("multiclass", "binary", "regression"))]


def split_last_layer(model: nn.Module):
    """(φ, last) with ``model(x) == last(φ(x))`` and ``last`` linear (Thm. 4: h = Wᵀφ(x; u)).

    Works for :class:`LinearModel` (φ = flatten) and ``nn.Sequential`` models ending
    in ``nn.Linear`` (every registered model).
    """
    if isinstance(model, LinearModel):
        return (lambda x: x.flatten(1)), model
    if isinstance(model, nn.Sequential) and isinstance(model[-1], nn.Linear):
        return model[:-1], model[-1]
    raise PoisonlibError(f"cannot find the last linear layer of {type(model).__name__}; pass features and weights explicitly")


def predict(outputs: torch.Tensor, task: str) -> torch.Tensor:
    """Class predictions from logits (or the outputs themselves for regression)."""
    if task == "multiclass":
        return outputs.argmax(dim=1)
    if task == "binary":
        return (outputs.reshape(-1) > 0).long()
    return outputs.reshape(-1)
