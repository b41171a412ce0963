"""Profile identity: does ``cpu-full`` compute what the old ``cpu`` profile computed?

Issue 24 renamed the old cpu grid ``cpu-full`` (keyed as ``cpu``) and made ``cpu`` a miniature.
This runs a sample of cells -- Table 5 (every target), Table 2 LR at eps_d 0.03 / 0.1 (three
seeds), Table 10 LR at 0.03 -- under both protocols into a fresh store, once per commit, then
compares the stores record by record: same keys, and every metric of the old record equal in
the new one (new records may hold metrics the old did not), and the model files bit for bit.

    git worktree add /tmp/old 14d8af3
    PYTHONPATH=/tmp/old POISONLIB_RESULTS=/tmp/st_old python benchmarks/profile_identity.py run cpu
    PYTHONPATH=.        POISONLIB_RESULTS=/tmp/st_new python benchmarks/profile_identity.py run cpu-full
    python benchmarks/profile_identity.py compare /tmp/st_old /tmp/st_new
"""

from __future__ import annotations

import glob
import json
import os
import sys


def run(profile: str) -> None:
    from poisonlib import runner

    for proto in ("paper", "released"):
        runner.run_experiment("table5", profile, protocol=proto, progress=False)
        runner.run_experiment("table2", profile, protocol=proto, models=["lr"], eps_ds=[0.03, 0.1], progress=False)
        runner.run_experiment("table10", profile, protocol=proto, models=["lr"], eps_ds=[0.03], progress=False)


def _records(root: str) -> dict:
    out = {}
    for p in glob.glob(os.path.join(root, "*", "*.json")):
        with open(p) as f:
            r = json.load(f)
        if "config_hash" in r:
            out[(os.path.basename(os.path.dirname(p)), r["config_hash"])] = r
    return out


def compare(old: str, new: str) -> int:
    import torch

    a, b = _records(old), _records(new)
    differ = [k for k in a if k in b and (set(a[k]["metrics"]) - set(b[k]["metrics"])
                                          or any(a[k]["metrics"][m] != b[k]["metrics"][m] for m in a[k]["metrics"]))]
    added = sorted({m for k in a if k in b for m in set(b[k]["metrics"]) - set(a[k]["metrics"])})
    def tensors(obj):  # every tensor of a saved model file, in order (state dicts may be nested)
        if torch.is_tensor(obj):
            return [obj]
        return [t for v in (obj.values() if isinstance(obj, dict) else obj if isinstance(obj, (list, tuple)) else []) for t in tensors(v)]

    def equal(m):
        x, y = (tensors(torch.load(os.path.join(d, "models", m), weights_only=True)) for d in (old, new))
        return len(x) == len(y) > 0 and all(torch.equal(u, v) for u, v in zip(x, y))

    models = sorted(os.path.basename(p) for p in glob.glob(os.path.join(old, "models", "*.pt")))
    same = sum(equal(m) for m in models if os.path.exists(os.path.join(new, "models", m)))
    print(f"records: old {len(a)}, new {len(b)}, same keys {len(set(a) & set(b))}, an old metric differs or is missing in "
          f"{len(differ)}; metrics only in the new records: {added or 'none'}; model files bit-equal {same} of {len(models)}")
    return int(bool(differ) or set(a) != set(b) or same != len(models))


if __name__ == "__main__":
    if sys.argv[1:2] == ["run"]:
        run(sys.argv[2])
    elif sys.argv[1:2] == ["compare"]:
        sys.exit(compare(sys.argv[2], sys.argv[3]))
    else:
        sys.exit(__doc__)
