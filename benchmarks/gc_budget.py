"""What the GC step budget buys: the same cell at several step counts (default 100 and 1000,
the cpu profile's NN / CNN budget and the paper's), residual curve, final residual and the
retrained drop side by side, so that a profile's cut is a measured choice.

Each run is ``poisonlib attack gc`` (the cpu profile's target and retraining, paper
protocol); ``--from DIR ...`` collects finished runs' ``metrics.json`` instead of running.

    python benchmarks/gc_budget.py --model nn --eps-d 1 --epochs 100 1000 --json benchmarks/results/gc_budget_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

CURVE_AT = (0, 10, 50, 100, 200, 500, 1000)


def summary(metrics: dict) -> dict:
    m, cfg = metrics["metrics"], metrics["config"]
    curve = m["gc_residual_curve"]
    return dict(model=cfg["model"], eps_w=cfg["eps_w"], eps_d=cfg["eps_d"], epochs=cfg["epochs"], tau2=m["tau2"], n_poison=m["n_poison"],
                residual_initial=m["residual_initial"], residual_final=m["residual_final"], drop=m["drop"],
                retrained_acc=m["retrained_acc"], target_acc=m["target_acc"], wall_time_s=metrics["wall_time_s"],
                threads=metrics["environment"].get("torch_threads"), commit=metrics.get("git_commit"),
                curve={str(k): curve[k - 1] if k else curve[0] for k in CURVE_AT if k <= len(curve)})


def run(model: str, eps_w: float, eps_d: float, epochs: int, out: str) -> dict:
    cmd = [sys.executable, "-m", "poisonlib", "attack", "gc", "--dataset", "mnist", "--model", model, "--eps-w", str(eps_w),
           "--eps-d", str(eps_d), "--epochs", str(epochs), "--out", out]
    subprocess.run(cmd, check=True)
    with open(os.path.join(out, "metrics.json")) as f:
        return json.load(f)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="nn")
    ap.add_argument("--eps-w", type=float, default=0.5)
    ap.add_argument("--eps-d", type=float, default=1.0)
    ap.add_argument("--epochs", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--from", dest="dirs", nargs="+", help="collect these finished `poisonlib attack gc --out` folders")
    ap.add_argument("--json", help="also write the rows to this JSON file")
    args = ap.parse_args()
    if args.dirs:
        docs = [json.load(open(os.path.join(d, "metrics.json"))) for d in args.dirs]
    else:
        with tempfile.TemporaryDirectory() as tmp:
            docs = [run(args.model, args.eps_w, args.eps_d, e, os.path.join(tmp, str(e))) for e in args.epochs]
    rows = sorted((summary(d) for d in docs), key=lambda r: r["epochs"])
    for r in rows:
        print(f"{r['model']} eps_d={r['eps_d']:g} (tau2 {r['tau2']:.3g}) {r['epochs']:>5} steps: residual {r['residual_initial']:.4g} -> "
              f"{r['residual_final']:.4g}, drop {r['drop']:.2f} points, {r['wall_time_s']:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
