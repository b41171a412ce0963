"""Quantities recomputed by hand in the tests, independently of the code under test."""

import torch


def accuracy(model, x, y) -> float:
    """Test accuracy (%) of ``model`` on ``(x, y)``: argmax of the logits, or the sign of a single one."""
    with torch.no_grad():
        out = model.cpu().eval()(x)
    pred = (out[:, 0] > 0).long() if out.ndim == 2 and out.shape[1] == 1 else out.argmax(1)
    return 100.0 * (pred == y).sum().item() / len(y)


def load_state(path: str, key: str) -> dict:
    """``torch.load(path)[key]`` of a store file (tensors only)."""
    return torch.load(path, map_location="cpu", weights_only=True)[key]
