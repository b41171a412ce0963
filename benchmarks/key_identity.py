"""Key identity: every record key of every grid cell, at every profile and protocol.

Dumps ``{experiment/profile/protocol/cell label: (store folder, config_hash)}`` for the code
on ``PYTHONPATH`` (``--dump FILE``), or compares it with such a dump (``--against FILE``):
a refactor of the orchestration layer must leave every key byte-identical, so that
existing results stores stay valid. Run on the old commit with ``--dump``, then on the new
one with ``--against``; it prints the number of keys compared and every difference. Cells of
data from the user's files (a data root) also hold that data's content fingerprint since
issue 23; the script leaves it out, so that what it compares is everything else.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys


def keys() -> dict:
    try:  # full data is keyed by its content too (issue 23): compare everything else, which must be unchanged
        import poisonlib.pipeline as pipeline

        pipeline._fingerprint = lambda *a: None
    except (ImportError, AttributeError):
        pass
    try:
        from poisonlib.grids import get_experiment, list_experiments
    except ImportError:  # before the grids package
        from poisonlib.runner import get_experiment, list_experiments
    from poisonlib.runner import Cell  # noqa: F401  (the cell type of either layout)

    out = {}
    for profile in ("smoke", "cpu", "paper"):
        for name in list_experiments():
            for proto in ("paper", "released"):
                for cell in get_experiment(name).cells(_profile(profile)):
                    cell = dataclasses.replace(cell, protocol=proto)
                    if cell.eps_d == "mt":
                        cell = dataclasses.replace(cell, eps_d=0.05)  # resolved from MT's record at run time
                    for data_root in (None, "/data"):
                        spec = cell.resolve(profile, data_root=data_root, device="cpu")
                        out[f"{profile}/{name}/{proto}/{data_root}/{cell.label()}"] = [spec.experiment, spec.key]
    return out


def _profile(name):
    try:
        from poisonlib.profiles import get_profile
    except ImportError:
        from poisonlib.experiments import get_profile
    return get_profile(name)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dump")
    ap.add_argument("--against")
    a = ap.parse_args()
    now = keys()
    if a.dump:
        with open(a.dump, "w") as f:
            json.dump(now, f, indent=0, sort_keys=True)
        print(f"{len(now)} keys written to {a.dump}")
        return 0
    with open(a.against) as f:
        old = json.load(f)
    diff = [k for k in old if now.get(k) != old[k]]
    extra = [k for k in now if k not in old]
    print(f"{len(old)} keys of the old code, {len(now)} of the new; {len(diff)} differ or are missing, {len(extra)} new")
    for k in (diff + extra)[:20]:
        print(" ", k, old.get(k), now.get(k))
    return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main())
