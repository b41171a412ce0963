"""One entry point for the data sanitisers: score the poisoned training set at a trained
model and return the keep-mask (Sever, Influence), as the paper's defense experiments do
(Sec. 5.4, App. C.10: remove as many points as there are poisons)."""

from __future__ import annotations

import torch

from .._meter import filled
from .._validation import PoisonlibError, check_choice
from ..models import LinearModel, linear_model, split_last_layer
from .influence import influence_scores, remove_top
from .sever import sever_scores

SANITIZERS = ("influence", "sever")
LAYERS = ("auto", "all", "last")


def last_layer_view(model: torch.nn.Module, x: torch.Tensor, *, batch_size: int = 2048):
    """``(linear, features)`` with ``model(x) == linear(features)``: the last linear layer as a
    :class:`~poisonlib.models.LinearModel` on the penultimate features φ(x) (Thm. 4's split).
    The linear model stays on the network's device, so that the scores are computed there too;
    the features are returned on the CPU (the scorers move them to the model).

    Under a dry run's meter only the first batches are computed and the rest of the (full-size)
    features stay zero, as in :func:`poisonlib.train.outputs`."""
    phi, last = split_last_layer(model)
    dev = last.weight.device
    with torch.no_grad():
        feats = filled(len(x), batch_size, lambda a, b: phi(x[a:b].to(dev)).flatten(1).cpu(), "feature batches")
        if feats is None:
            feats = phi(x[:0].to(dev)).flatten(1).cpu()
    lin = linear_model(last.weight.detach().cpu(), None if last.bias is None else last.bias.detach().cpu()).to(dev)
    return lin, feats


def scoring_view(model, x, x_val=None, *, layer: str = "auto"):
    """``(scored, features, val_features)``: what the sanitisers score. ``layer="all"``: ``model`` on
    the inputs themselves; ``"last"``: its last linear layer on the penultimate features
    (:func:`last_layer_view`); ``"auto"``: all for linear models, last otherwise. Computing it once
    lets several sanitisers share the network's pass over the training set (:func:`sanitize`'s ``view``)."""
    check_choice("layer", layer, LAYERS)
    if not (layer == "last" or (layer == "auto" and not isinstance(model, LinearModel))):
        return model, x, x_val
    lin, feats = last_layer_view(model, x)
    return lin, feats, (None if x_val is None else last_layer_view(model, x_val)[1])


def sanitize(defense: str, model, x, y, task: str, remove_frac: float, *, x_val=None, y_val=None, layer: str = "auto", l2: float = 0.01,
             view=None):
    """Keep-mask over (x, y) after removing the ``remove_frac`` most suspicious points.

    ``defense``: ``"sever"`` (largest outlier scores, Diakonikolas et al. 2019) or
    ``"influence"`` (most negative predicted change of the validation loss, Koh & Liang
    2017; needs ``x_val, y_val``; Hessian damped by ``l2``). ``layer="all"`` scores the
    gradients of every parameter; ``"last"`` only the last linear layer on the model's
    penultimate features (the usual choice for networks, whose full per-example gradient
    matrix does not fit in memory); ``"auto"``: all for linear models, last otherwise.
    Scores are computed on the device of the model that is scored (the data follow it);
    the mask is on the CPU. ``view``: :func:`scoring_view`'s result for (model, x, x_val, layer),
    computed once by a caller that runs several sanitisers on the same set.
    """
    check_choice("defense", defense, SANITIZERS)
    check_choice("layer", layer, LAYERS)
    if defense == "influence" and (x_val is None or y_val is None):
        raise PoisonlibError("the influence defense needs validation data: pass x_val and y_val")
    m, feats, fv = scoring_view(model, x, x_val, layer=layer) if view is None else view
    if defense == "sever":
        scores = sever_scores(m, feats, y, task)
    else:
        scores = -influence_scores(m, feats, y, task, fv, y_val, l2=l2)  # most harmful = most negative change
    return remove_top(scores, remove_frac)
