"""``poisonlib export``: a profile's results, ready to deposit (Zenodo and the like).

Writes under ``out``: ``records/<experiment>/<hash>.json`` -- every record of the store whose
``config.profile.name`` is the profile --, the poisons those records reference
(``poisons/…pt``, the records' ``poisons`` field), the shared clean and target models that match
them (``models/…``: a model whose stored ``key`` names a (dataset, model, training-set size) of
one of the records), and ``MANIFEST.json``: sha256 and size of every file, the profile, the
store it came from and :func:`poisonlib.results.environment`. Nothing is computed.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil

from ._validation import PoisonlibError, check_writable_location

_SKIP = ("models", "poisons", "checkpoints", "quarantine")


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def profile_records(store: str, profile: str) -> list[tuple[str, dict]]:
    """``(path, record)`` of every JSON record of ``store`` made at ``profile``."""
    out = []
    for path in sorted(glob.glob(os.path.join(store, "*", "*.json"))):
        if os.path.basename(os.path.dirname(path)) in _SKIP:
            continue
        try:
            with open(path) as f:
                rec = json.load(f)
        except (OSError, ValueError):
            continue
        prof = rec.get("config", {}).get("profile") if isinstance(rec, dict) else None
        if (prof.get("name") if isinstance(prof, dict) else prof) == profile:
            out.append((path, rec))
    return out


def _models(store: str, records: list[dict]) -> list[str]:
    """The shared models whose key names a (dataset, model, n_train) that a record used."""
    from .store import load_torch

    used = {(r["config"].get("dataset"), r["config"].get("model"), r["metrics"].get("n_train", r["metrics"].get("n_clean")))
            for r in records if isinstance(r.get("metrics"), dict)}
    out = []
    for path in sorted(glob.glob(os.path.join(store, "models", "*"))):
        if path.endswith(".json"):
            with open(path) as f:
                key = json.load(f).get("key", {})
        else:
            key = (load_torch(path) or {}).get("key", {})
        if (key.get("dataset"), key.get("model"), key.get("n_train")) in used:
            out.append(path)
    return out


def export(profile: str, out: str, store: str | None = None) -> dict:
    """Copy ``profile``'s records, poisons and models from ``store`` (default: the results store)
    to ``out`` and write ``out/MANIFEST.json``; returns the manifest. Bad input (unknown profile,
    an unwritable or non-empty ``out``, no record of the profile): :class:`PoisonlibError`, nothing written."""
    from .profiles import get_profile
    from .results import default_results_dir, environment

    get_profile(profile)
    store = os.path.abspath(store or default_results_dir())
    dest = check_writable_location(out, "--out")
    if os.path.isdir(dest) and os.listdir(dest):
        raise PoisonlibError(f"--out {out!r} is not empty: export writes into a new or empty folder")
    recs = profile_records(store, profile)
    if not recs:
        raise PoisonlibError(f"the store {store!r} holds no record of profile {profile!r} (poisonlib run ... --profile {profile} makes them)")
    files = [p for p, _ in recs]
    for _, r in recs:  # the pipeline keeps a GC cell's poisons at poisons/gc-<config hash>.pt (or names them in "poisons")
        named = r.get("poisons") if isinstance(r.get("poisons"), str) else f"poisons/{r.get('experiment')}-{r.get('config_hash')}.pt"
        p = named if os.path.isabs(named) else os.path.join(store, named)
        if os.path.isfile(p):
            files.append(p)
    files += _models(store, [r for _, r in recs])
    entries = []
    for src in dict.fromkeys(files):
        rel = os.path.relpath(src, store)
        target = os.path.join(dest, "records" if rel.split(os.sep)[0] not in _SKIP else "", rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(src, target)
        entries.append({"path": os.path.relpath(target, dest), "sha256": sha256(target), "bytes": os.path.getsize(target)})
    manifest = {"profile": profile, "store": store, "records": len(recs), "files": entries, "environment": environment(),
                "git_commits": sorted({r.get("git_commit", "unknown") for _, r in recs})}
    with open(os.path.join(dest, "MANIFEST.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    return manifest
