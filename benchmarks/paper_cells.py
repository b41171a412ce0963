"""Wall time of `paper`-profile cells on the machine at hand (a GPU machine, for the `paper` profile).

Runs a fixed list of cells of the paper's grids through ``poisonlib.runner.run_cell`` at
the ``paper`` profile (the paper's training protocol, 1000 GC steps, full-size data),
timing each one, in priority order, until ``--budget-s`` is spent; cells not reached
are listed as such. Without ``--data-root`` it first writes synthetic MNIST (60,000 /
10,000) and CIFAR-10 (50,000 / 10,000) of the real sizes, in the real on-disk formats
(``poisonlib.testing``): the times are those of the real code path at the paper's
settings, the accuracies are meaningless and are not reported.

ResNet cells take longer than one lease: ``--resnet-unit`` times one training epoch and
two GC epochs of the CIFAR-10 ResNet-18 cell instead and says so (``extrapolated``).

Then each chapter's cells at the paper profile are priced with the measured ones
(``poisonlib.reproduction.price_chapters``: same kind, data, model, attack and ε_d; other
seeds and ε_w cost the same): ``estimate_min`` covers the cells that match a measurement,
``unpriced`` counts the others. The reproducibility chapter shows the committed result
(``benchmarks/results/paper_cells_h200.json``).

    python benchmarks/paper_cells.py --device cuda --budget-s 360 --out paper_cells.json
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from poisonlib import reproduction, results, runner  # noqa: E402
from poisonlib.experiments import get_profile  # noqa: E402
from poisonlib.runner import Cell  # noqa: E402
from poisonlib.testing import write_cifar10, write_mnist  # noqa: E402

CELLS = [
    Cell("target", "mnist", "lr", 1.0),
    *[Cell("gc", "mnist", "lr", 1.0, eps_d=e) for e in (0.03, 0.1, 1.0)],
    Cell("target", "mnist", "nn", 0.5),
    *[Cell("gc", "mnist", "nn", 0.5, eps_d=e) for e in (0.03, 0.1, 1.0)],
    Cell("attack", "mnist", "lr", 1.0, eps_d=0.03, attack="tgda"),
    Cell("attack", "mnist", "lr", 1.0, eps_d=0.03, attack="gm"),
    Cell("defense", "mnist", "lr", 1.0, eps_d=0.03),
    Cell("target", "mnist", "cnn", 0.5),
    *[Cell("gc", "mnist", "cnn", 0.5, eps_d=e) for e in (0.03, 0.1)],
    Cell("defense", "mnist", "nn", 0.5, eps_d=0.03),
    Cell("attack", "mnist", "nn", 0.5, eps_d=0.03, attack="tgda"),
    Cell("attack", "mnist", "nn", 0.5, eps_d=0.03, attack="gm"),
    Cell("target", "mnist17", "lr", 1.0),
    Cell("gc", "mnist17", "lr", 1.0, eps_d=0.03),
    Cell("attack", "mnist17", "lr", 1.0, eps_d=0.03, attack="kkt"),
    Cell("attack", "mnist17", "lr", 1.0, eps_d=0.03, attack="mt"),
]
LATE_CELLS = [Cell("gc", "mnist", "cnn", 0.5, eps_d=1.0)]  # after the ResNet unit: minutes on a GPU


def time_cells(cells, prof, data_root, device, budget_s, results_dir, save):
    t_start, rows = time.perf_counter(), []
    for cell in cells:
        row = {"cell": cell.label(), **dataclasses.asdict(cell)}
        if time.perf_counter() - t_start > budget_s:
            rows.append({**row, "status": "not reached (budget spent)"})
            continue
        t0 = time.perf_counter()
        try:
            rec = runner.run_cell(cell, prof, data_root=data_root, device=device, results_dir=results_dir, force=True, progress=False)
            row.update(status="timed", wall_s=round(time.perf_counter() - t0, 2), device=rec["environment"].get("device"),
                       n_poison=rec["metrics"].get("n_poison"))
        except Exception as e:  # a failed cell is reported, the others still run
            row.update(status=f"failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}", wall_s=round(time.perf_counter() - t0, 2))
        print(f"{row['cell']:55s} {row['status']:10s} {row.get('wall_s', '')}", flush=True)
        rows.append(row)
        save(rows)
    return rows


def resnet_unit(prof, data_root, device, results_dir):
    """One training epoch + two GC epochs of the CIFAR-10 ResNet-18 cell at ε_d = 0.03 (paper batch sizes)."""
    tc = prof.train_config("resnet18")
    unit = dataclasses.replace(prof, name="paper-unit", train={**prof.train, "resnet18": dataclasses.replace(tc, epochs=1)}, gc_epochs=2)
    t0 = time.perf_counter()
    kw = {"data_root": data_root, "device": device, "results_dir": results_dir, "force": True, "progress": False}
    runner.run_cell(Cell("target", "cifar10", "resnet18", 0.5), unit, **kw)
    t_target = time.perf_counter() - t0
    t0 = time.perf_counter()
    runner.run_cell(Cell("gc", "cifar10", "resnet18", 0.5, eps_d=0.03), unit, **kw)
    t_gc = time.perf_counter() - t0  # target cached: 2 GC epochs + 1 retraining epoch
    return {"target_1_epoch_s": round(t_target, 2), "gc_2_epochs_plus_retrain_1_epoch_s": round(t_gc, 2),
            "extrapolated": f"paper settings: target ~{tc.epochs} x {t_target:.0f} s; "
                            f"a GC cell ~ 500 x GC epoch pair + {tc.epochs} retraining epochs"}


def price(rows) -> list[dict]:
    """Each chapter's paper-profile cells priced with the measured ones."""
    timed = [r for r in rows if r.get("status") == "timed"]
    fields = [f.name for f in dataclasses.fields(Cell)]
    return reproduction.price_chapters({reproduction.cell_key(Cell(**{k: r[k] for k in fields})): r["wall_s"] for r in timed})


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--data-root", default=None, help="full datasets (default: synthetic ones of the real size, in a temporary folder)")
    ap.add_argument("--budget-s", type=float, default=360.0, help="start no new cell after this many seconds")
    ap.add_argument("--resnet-unit", action="store_true", help="also time one epoch of the CIFAR-10 ResNet-18 cell")
    ap.add_argument("--only", nargs="+", default=None, metavar="TEXT", help="time only the cells whose label contains one of these")
    ap.add_argument("--merge", default=None, help="an earlier output: its timed cells are kept unless timed again")
    ap.add_argument("--out", default="paper_cells.json")
    args = ap.parse_args(argv)
    import torch

    prof = get_profile("paper")
    tmp = tempfile.mkdtemp(prefix="poisonlib-paper-cells-")
    data_root = args.data_root
    if data_root is None:
        data_root = os.path.join(tmp, "data")
        write_mnist(data_root, n_train=60000, n_test=10000)
        write_cifar10(data_root, n_per_batch=10000)
    report = {"what": "wall time of paper-profile cells (poisonlib.runner.run_cell, force=True)", "profile": prof.as_dict(),
              "data": "real" if args.data_root else "synthetic pixels of the real sizes (MNIST 60k/10k, CIFAR-10 50k/10k)",
              "budget_s": args.budget_s, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "environment": results.environment(args.device), "git_commit": results.git_commit(),
              "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}

    def save(rows, **extra):
        report.update(cells=rows, **extra)
        results.atomic_write_json(report, args.out)

    t0 = time.perf_counter()
    def chosen(cells):
        return [c for c in cells if not args.only or any(t in c.label() for t in args.only)]

    rows = time_cells(chosen(CELLS), prof, data_root, args.device, args.budget_s, os.path.join(tmp, "results"), save)
    if args.resnet_unit:
        try:
            report["resnet18_cifar10_unit"] = resnet_unit(prof, data_root, args.device, os.path.join(tmp, "results"))
        except Exception as e:
            report["resnet18_cifar10_unit"] = {"status": f"failed: {type(e).__name__}: {e}"}
        print("resnet18 unit:", report["resnet18_cifar10_unit"], flush=True)
    left = args.budget_s - (time.perf_counter() - t0)
    rows += time_cells(chosen(LATE_CELLS), prof, data_root, args.device, left, os.path.join(tmp, "results"), lambda late: save(rows + late))
    if args.merge:
        with open(args.merge) as f:
            earlier = json.load(f)
        again = {r["cell"] for r in rows if r.get("status") == "timed"}
        rows = [dict(r, run=earlier.get("date")) for r in earlier["cells"] if r["cell"] not in again and r.get("status") == "timed"] + rows
    save(rows, chapters=price(rows))
    for g in report["chapters"]:
        print(f"{g['chapter']:14s} {g['cells']:4d} cells, {g['priced']:3d} priced: {g['estimate_min']:7.1f} min; unpriced {g['unpriced_kinds']}")
    print("written", args.out)


if __name__ == "__main__":
    main()
