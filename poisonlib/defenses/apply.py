"""One entry point for the data sanitisers: score the poisoned training set at a trained
model and return the keep-mask (Sever, Influence), as the paper's defense experiments do
(Sec. 5.4, App. C.10: remove as many points as there are poisons)."""

from __future__ import annotations

import torch

from .._validation import PoisonlibError, check_choice
from ..models import LinearModel, linear_model, split_last_layer
from .influence import influence_scores, remove_top
from .sever import sever_scores

SANITIZERS = ("influence", "sever")
LAYERS = ("auto", "all", "last")


def last_layer_view(model: torch.nn.Module, x: torch.Tensor):
    """``(linear, features)`` with ``model(x) == linear(features)``: the last linear layer as a
    :class:`~poisonlib.models.LinearModel` on the penultimate features φ(x) (Thm. 4's split).
    The linear model stays on the network's device, so that the scores are computed there too;
    the features are returned on the CPU (the scorers move them to the model)."""
    phi, last = split_last_layer(model)
    dev = last.weight.device
    with torch.no_grad():
        feats = torch.cat([phi(x[i : i + 2048].to(dev)).cpu() for i in range(0, len(x), 2048)]).flatten(1)
    lin = linear_model(last.weight.detach().cpu(), None if last.bias is None else last.bias.detach().cpu()).to(dev)
    return lin, feats.cpu()


def sanitize(defense: str, model, x, y, task: str, remove_frac: float, *, x_val=None, y_val=None, layer: str = "auto", l2: float = 0.01):
    """Keep-mask over (x, y) after removing the ``remove_frac`` most suspicious points.

    ``defense``: ``"sever"`` (largest outlier scores, Diakonikolas et al. 2019) or
    ``"influence"`` (most negative predicted change of the validation loss, Koh & Liang
    2017; needs ``x_val, y_val``; Hessian damped by ``l2``). ``layer="all"`` scores the
    gradients of every parameter; ``"last"`` only the last linear layer on the model's
    penultimate features (the usual choice for networks, whose full per-example gradient
    matrix does not fit in memory); ``"auto"``: all for linear models, last otherwise.
    Scores are computed on the device of the model that is scored (the data follow it);
    the mask is on the CPU.
    """
    check_choice("defense", defense, SANITIZERS)
    check_choice("layer", layer, LAYERS)
    use_last = layer == "last" or (layer == "auto" and not isinstance(model, LinearModel))
    m, feats = (last_layer_view(model, x) if use_last else (model, x))
    if defense == "sever":
        scores = sever_scores(m, feats, y, task)
    else:
        if x_val is None or y_val is None:
            raise PoisonlibError("the influence defense needs validation data: pass x_val and y_val")
        fv = last_layer_view(model, x_val)[1] if use_last else x_val
        scores = -influence_scores(m, feats, y, task, fv, y_val, l2=l2)  # most harmful = most negative change
    return remove_top(scores, remove_frac)
