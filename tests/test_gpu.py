"""Every kind of cell on a CUDA device (skipped where there is none, as in CI).

The `paper` profile is meant for GPU machines; these tests run one small cell of each
kind (targets, GC, each baseline attack, GC + every defense, on a linear model and a
network) with ``device="cuda"`` at the smoke profile, so that a tensor left on the wrong
device fails here rather than hours into a paper-profile run. Run them on a GPU machine
with ``pytest tests/test_gpu.py``.
"""

import pytest
import torch

from poisonlib.defenses import sanitize
from poisonlib.experiments import clean_and_target, load_for_profile
from poisonlib.runner import Cell, run_cell

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device (these tests run on GPU machines only)")

CELLS = [
    Cell("target", "mnist", "nn", 0.5),
    Cell("target", "mnist17", "lr", 0.1, target="labelflip"),
    Cell("target", "mnist", "lr", 0.1, target="tgda"),
    Cell("gc", "mnist", "cnn", 0.5, eps_d=0.03),
    Cell("gc", "mnist", "lr", 1.0, eps_d="tau"),
    *[Cell("attack", "mnist17", "lr", 1.0, eps_d=0.1, attack=a) for a in ("tgda", "gm", "kkt", "mt")],
    Cell("attack", "mnist", "nn", 0.5, eps_d=0.03, attack="mt"),
    Cell("defense", "mnist", "lr", 1.0, eps_d=0.03),
    Cell("defense", "mnist", "nn", 0.5, eps_d=0.03, clip=True),
]


def spy_on_gradients(monkeypatch) -> list[str]:
    """Record the device type of every tensor that is differentiated (``Tensor.backward`` in
    training, ``torch.autograd.grad`` in the attacks and τ): where the work actually runs,
    whatever device string was passed in."""
    seen = []
    backward, grad = torch.Tensor.backward, torch.autograd.grad

    def spy_backward(self, *a, **kw):
        seen.append(self.device.type)
        return backward(self, *a, **kw)

    def spy_grad(outputs, *a, **kw):
        outs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        seen.extend(o.device.type for o in outs)
        return grad(outputs, *a, **kw)

    monkeypatch.setattr(torch.Tensor, "backward", spy_backward)
    monkeypatch.setattr(torch.autograd, "grad", spy_grad)
    return seen


@pytest.mark.parametrize("cell", CELLS, ids=[c.label() for c in CELLS])
def test_cell_runs_on_cuda(cell, monkeypatch):
    seen = spy_on_gradients(monkeypatch)
    rec = run_cell(cell, "smoke", device="cuda")
    assert seen, "no gradient was computed: nothing ran"
    on = {d: seen.count(d) for d in set(seen)}
    assert set(on) == {"cuda"}, f"gradients computed on {on} (device='cuda' was asked for)"
    assert rec["environment"]["device"].startswith("cuda")
    accs = {k: v for k, v in rec["metrics"].items() if k.endswith("_acc")}
    assert accs and all(0 <= v <= 100 for v in accs.values()), accs


@pytest.mark.parametrize("defense", ["sever", "influence"])
def test_sanitizers_score_on_the_models_device_and_agree_with_the_cpu(defense, monkeypatch):
    ds = load_for_profile("mnist", "smoke")
    clean, _, _ = clean_and_target(ds, "lr", 1.0, "smoke", device="cpu")
    x, y = ds.x_train, ds.y_train
    kw = {"x_val": ds.x_val, "y_val": ds.y_val}
    on_cpu = sanitize(defense, clean, x, y, ds.task, 0.1, **kw)
    gpu_model = clean.to("cuda")
    assert next(gpu_model.parameters()).device.type == "cuda"
    seen = spy_on_gradients(monkeypatch)
    on_gpu = sanitize(defense, gpu_model, x, y, ds.task, 0.1, **kw)
    assert seen and set(seen) == {"cuda"}, f"scores computed on {set(seen)}, the model lives on cuda"
    assert on_gpu.device.type == "cpu" and next(gpu_model.parameters()).device.type == "cuda"  # the mask for CPU data; the model stays
    assert (on_cpu == on_gpu).float().mean() > 0.95  # float64 scores; ties at the cut may differ
