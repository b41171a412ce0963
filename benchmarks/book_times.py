"""Where a book build's time goes: the per-chapter seconds ``poisonlib book`` recorded
(``book/executed/timings.json``) and the compute seconds of the results-store cells the
build made, summed by (experiment, model, protocol), in one JSON document for the
performance chapter.

A chapter computes the cells no earlier chapter stored, so a cell's time falls in the
first chapter that needs it (`poisonlib book` runs them in alphabetical order); the per-cell sums say which grids cost
what whichever chapter ran them.

    make book   # from a fresh clone, on an otherwise idle machine
    python benchmarks/book_times.py --root . --store results --json benchmarks/results/book_times_cpu.json
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import subprocess

import torch


def chapters(root: str, profile: str) -> dict:
    with open(os.path.join(root, "book", "executed", "timings.json")) as f:
        return json.load(f)[profile]


def protocol_name(key) -> str:
    """``paper`` / ``released`` for those protocols' factor dicts, ``walk`` for the attribution
    chapter's intermediate ones."""
    from poisonlib.protocols import PROTOCOLS

    if isinstance(key, str):
        return key
    return next((n for n, p in PROTOCOLS.items() if json.loads(json.dumps(p.key())) == key), "walk")


def cells(store: str) -> list[dict]:
    """Compute seconds and count of the store's records, by (experiment, model, protocol)."""
    secs, count = collections.Counter(), collections.Counter()
    for folder in sorted(os.listdir(store)):
        path = os.path.join(store, folder)
        if not os.path.isdir(path) or folder in ("models", "checkpoints", "poisons", "manifests", "quarantine", "slurm"):
            continue
        for name in os.listdir(path):
            if not name.endswith(".json") or name.startswith("."):
                continue
            with open(os.path.join(path, name)) as f:
                rec = json.load(f)
            cfg = rec.get("config", {})
            key = (folder, cfg.get("model", "?"), protocol_name(cfg.get("protocol", "paper")))
            secs[key] += rec.get("wall_time_s", 0.0)
            count[key] += 1
    return [dict(experiment=e, model=m, protocol=p, cells=count[(e, m, p)], seconds=round(s, 1))
            for (e, m, p), s in secs.most_common()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=".", help="the checkout the book was built in")
    ap.add_argument("--store", default=None, help="its results store (default: ROOT/results)")
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--json", required=True)
    args = ap.parse_args()
    store = args.store or os.path.join(args.root, "results")
    commit = subprocess.run(["git", "-C", args.root, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    doc = dict(profile=args.profile, commit=commit, machine=f"{os.cpu_count()} cores, {platform.machine()}, torch {torch.__version__}",
               threads=torch.get_num_threads(), chapters=chapters(args.root, args.profile), cells=cells(store))
    doc["total_s"] = round(sum(doc["chapters"].values()), 1)
    with open(args.json, "w") as f:
        json.dump(doc, f, indent=1)
    print(f"{len(doc['chapters'])} chapters, {doc['total_s'] / 60:.1f} min; {sum(c['cells'] for c in doc['cells'])} cells -> {args.json}")


if __name__ == "__main__":
    main()
