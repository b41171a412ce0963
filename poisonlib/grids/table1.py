"""Table 1: clean and GradPC target accuracies on MNIST (and the target table shared with Table 5)."""

from __future__ import annotations


import pandas as pd

from ..cells import Cell
from ..rows import finished, select
from ._base import MNIST_MODELS, register_experiment


@register_experiment("table1", "clean and GradPC target accuracies on MNIST (eps_w = 0.5, 1)")
def cells(prof):
    return [Cell("target", "mnist", m, w) for m in MNIST_MODELS for w in EPS_W]


#: Table 1's GradPC radii.
EPS_W = (0.5, 1.0)


def targets_table(rows: list[dict], reported: dict, kinds: list[tuple[str, str, str]]) -> pd.DataFrame:
    """Tables 1 and 5: per model and ε_w, target accuracy / drop of each target kind.

    ``kinds`` lists ``(column label, target, noise)``; ``reported`` maps model ->
    {"clean", target -> {eps_w: (acc, drop)}} (the paper's tables). Drops are
    positive numbers here, as in those tables.
    """
    out = []
    for model in dict.fromkeys(r["model"] for r in rows):
        for eps_w in dict.fromkeys(r["eps_w"] for r in select(rows, model=model)):
            line = {"model": model.upper(), "ε_w": eps_w}
            for label, target, noise in kinds:
                rs = [r for r in select(rows, model=model, eps_w=eps_w, target=target) if target != "randompc" or r["noise"] == noise]
                r = rs[0] if rs else None
                line["clean: ours / paper"] = f"{r['clean_acc']:.2f} / {reported[model]['clean']:.2f}" if r and r["status"] != "skipped" else "–"
                # the paper's RandomPC is the per-parameter one; the L2 variant has no reported value
                p = reported.get(model, {}).get(target, {}).get(eps_w) if noise == "parameter" else None
                ours = "–" if not r or not finished(r) else f"{r['target_acc']:.2f} / {0.0 - r['target_drop']:.2f}"
                line[f"{label} ours"] = ours
                line[f"{label} paper"] = "–" if p is None else f"{p[0]:.2f} / {p[1]:.2f}"
            out.append(line)
    return pd.DataFrame(out)
