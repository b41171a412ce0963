"""The results store: one JSON file per run, written atomically, reused when the
same configuration runs again.

``results/<experiment>/<config-hash>.json`` records the config, seed, metrics,
package versions, device, git commit and wall time of a run. A second run with
the same config returns the stored record; ``force=True`` recomputes it.

The store survives faults: every write goes through a temporary file and a rename
(a killed process leaves no partial record), and a record or ``.pt`` file that fails
to parse or its schema is moved to ``results/quarantine/`` with a one-line warning
on stderr and recomputed. A ``.pt`` file that holds pickled objects other than
tensors and plain containers is refused (:class:`PoisonlibError`): it could run code.

Store faults are one class: a record that fails to parse (also: nested too deep), is not
a regular file (a FIFO is moved aside without being opened), or fails its full schema
(:func:`check_record`: fields, the metrics each kind of record promises, finite numbers)
is quarantined and recomputed. Records are valid JSON: a NaN or infinity in a record is
written as ``null`` and listed under ``nonfinite`` (restored on reading); elsewhere
:func:`atomic_write_json` writes ``null`` or, with ``nonfinite="error"``, refuses it.
Disk full, permission, read-only and cross-device errors while writing are one-line
:class:`StoreError` s naming the path. A cell that fails the same way every time is stored as
a *failed* record (:func:`record_failure`, :class:`CellFailed`, :func:`is_failed`) holding
its reason, so a report can show why instead of a missing number.
:func:`store_only` turns computing off, so that a reader (``poisonlib report``) can
list what the store lacks (:class:`MissingRecord`) without starting a run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import platform
import subprocess
import tempfile  # noqa: F401 - the store module writes through it (tests patch results.tempfile)
import time
from collections.abc import Callable
from datetime import datetime, timezone

import torch

from ._validation import CellFailed, PoisonlibError, results_dir_from_env  # noqa: F401  (CellFailed: re-exported)
from .store import (QUARANTINE, StoreError, _atomic, _calls_in_pickle, _regular_or_quarantined, _shown, _umask,  # noqa: F401 - as before
                    atomic_torch_save, atomic_write_bytes, atomic_write_json, decode_nonfinite, encode_nonfinite, load_torch, quarantine,
                    read_json, remove_with_partials, unsafe_pickle, warn)

#: Bumped when a change of the code invalidates stored results.
RESULTS_SCHEMA = 1


def default_results_dir() -> str:
    """``$POISONLIB_RESULTS`` or ``./results`` (set but empty, or naming a file: one line)."""
    return results_dir_from_env("results")


def config_hash(config: dict) -> str:
    """Stable 16-hex-digit hash of a JSON-serialisable config (key order ignored)."""
    blob = json.dumps({"schema": RESULTS_SCHEMA, **config}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- reading, quarantine


class MissingRecord(PoisonlibError):
    """The store holds no record of a cell, and :func:`store_only` forbids computing it."""


_STORE_ONLY = [False]


@contextlib.contextmanager
def store_only():
    """Within this block :func:`cached_run` returns stored records and raises
    :class:`MissingRecord` instead of computing a missing one."""
    prev, _STORE_ONLY[0] = _STORE_ONLY[0], True
    try:
        yield
    finally:
        _STORE_ONLY[0] = prev


def git_commit(cwd: str | None = None) -> str:
    """Commit hash of the working tree (``+dirty`` if modified), or ``"unknown"``."""
    try:
        kw = dict(cwd=cwd or os.getcwd(), capture_output=True, text=True, timeout=10)
        head = subprocess.run(["git", "rev-parse", "--verify", "--quiet", "HEAD"], **kw)
        sha = head.stdout.strip()
        if head.returncode != 0 or not sha:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], **kw).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def environment(device: str | torch.device | None = None) -> dict:
    """Package versions, platform and device of this process."""
    import numpy
    import scipy

    from . import __version__

    dev = str(device) if device is not None else "cpu"
    info = {
        "poisonlib": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "platform": platform.platform(),
        "device": dev,
        "torch_threads": torch.get_num_threads(),
        "cpu": f"{platform.machine()}, {os.cpu_count()} cores",
    }
    if dev.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def hardware(env: dict) -> str:
    """One line naming the hardware of a record's ``environment``: the GPU, else the CPU."""
    if env.get("gpu"):
        return env["gpu"]
    return env.get("cpu") or env.get("platform", "unknown")


def result_path(experiment: str, config: dict, results_dir: str | None = None) -> str:
    return os.path.join(results_dir or default_results_dir(), experiment, config_hash(config) + ".json")


#: Fields every record of :func:`cached_run` has, with their types.
RECORD_FIELDS = {"experiment": str, "config": dict, "config_hash": str, "metrics": dict, "environment": dict, "git_commit": str,
                 "wall_time_s": (int, float)}

_ACC = ("clean_acc", "target_acc")
_RUN = (*_ACC, "retrained_acc", "reference_acc", "drop", "tau2", "eps_d", "n_poison", "n_clean")
#: Per kind of record (its ``experiment``), the metrics that the runner and the report read,
#: each with what it must be: ``"finite"`` (a finite number), ``"number"`` (a number, NaN
#: allowed: e.g. ‖g(χ)‖ of an empty poison set), ``"tau"`` (a number that is not NaN; τ may
#: be infinite), ``"count"`` (an integer >= 0), ``"list"``, ``"dict"``. The baselines' records
#: (``tgda``, ``gm``, ``kkt``, ``mt``) share :data:`ATTACK_METRICS`.
METRIC_SCHEMA = {
    "target": {**dict.fromkeys((*_ACC, "target_drop"), "finite"), "tau2": "tau", "tauc": "tau", "n_train": "count"},
    "gc": {**dict.fromkeys(_RUN, "finite"), "tau2": "tau", "tauc": "tau", "n_poison": "count", "n_clean": "count",
           "grad_clean": "number", "grad_mixed": "number", "gc_residual_curve": "list"},
    "defense": dict.fromkeys(("clean_acc", "attacked_acc", "drop", "reference_acc"), "finite"),
}
ATTACK_METRICS = {**dict.fromkeys(_RUN, "finite"), "tau2": "tau", "n_poison": "count", "n_clean": "count", "grad_mixed": "number",
                  "attack_config": "dict"}
_KINDS = {"finite": "a finite number", "number": "a number", "tau": "a number (not NaN)", "count": "an integer >= 0", "list": "a list",
          "dict": "an object"}


def _fits(value, kind: str) -> bool:
    is_num = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "finite":
        return is_num and math.isfinite(value)
    if kind == "number":
        return is_num
    if kind == "tau":
        return is_num and not math.isnan(value)
    if kind == "count":
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0
    return isinstance(value, {"list": list, "dict": dict}[kind])


def metric_schema(experiment: str) -> dict:
    """The metrics a record of ``experiment`` must hold (:data:`METRIC_SCHEMA`); ``{}`` for kinds
    it does not know (their records are checked for the common fields only)."""
    if experiment in METRIC_SCHEMA:
        return METRIC_SCHEMA[experiment]
    return ATTACK_METRICS if experiment in ("tgda", "gm", "kkt", "mt") else {}


def check_record(rec: dict, experiment: str | None = None, config: dict | None = None) -> str | None:
    """What is wrong with a stored record (missing / mistyped fields, metrics its kind promises
    that are missing or not what they must be, another experiment or config than its file
    name says), or ``None``. A failed record (:func:`record_failure`) needs its reason
    instead of metrics."""
    bad = [k for k, t in RECORD_FIELDS.items() if not isinstance(rec.get(k), t) or isinstance(rec.get(k), bool)]
    if bad:
        return f"fails the record schema (missing or mistyped: {', '.join(bad)})"
    if experiment is not None and rec["experiment"] != experiment:
        return f"belongs to experiment {rec['experiment']!r}, not {experiment!r}"
    if config is not None and rec["config_hash"] != config_hash(config):
        return "holds another configuration than its name says"
    if "failed" in rec:
        f = rec["failed"]
        ok = isinstance(f, dict) and isinstance(f.get("reason"), str) and f["reason"].strip() and isinstance(f.get("type", ""), str)
        return None if ok else "is a failed record without a reason"
    wrong = [f"{k} ({'missing' if k not in rec['metrics'] else 'not ' + _KINDS[kind]})"
             for k, kind in metric_schema(rec["experiment"]).items() if not _fits(rec["metrics"].get(k), kind)]
    if wrong:
        return f"fails the {rec['experiment']} record schema: metrics {', '.join(wrong[:4])}{' ...' if len(wrong) > 4 else ''}"
    return None


def load_result(experiment: str, config: dict, results_dir: str | None = None) -> dict | None:
    """The stored record of ``config``, or ``None`` (also when the file was corrupt or
    failed :func:`check_record`: it is then quarantined). NaN / ±inf are restored."""
    rec = read_json(result_path(experiment, config, results_dir), lambda r: _check_stored(r, experiment, config))
    return None if rec is None else decode_nonfinite(rec)


def _check_stored(rec: dict, experiment: str, config: dict) -> str | None:
    try:
        decoded = decode_nonfinite(json.loads(json.dumps(rec)))
    except (KeyError, IndexError, TypeError, ValueError):
        return "lists non-finite values at places it does not have"
    return check_record(decoded, experiment, config)


def is_failed(rec: dict | None) -> bool:
    """Whether ``rec`` is a failed record (:func:`record_failure`)."""
    return isinstance(rec, dict) and isinstance(rec.get("failed"), dict)


def failure_reason(rec: dict) -> str:
    """The one-line reason a failed record holds."""
    return rec["failed"]["reason"]


def _record(experiment: str, config: dict, metrics: dict, device, wall: float, **extra) -> dict:
    return {"experiment": experiment, "config": config, "config_hash": config_hash(config), "seed": config.get("seed"), "metrics": metrics,
            "environment": environment(device if device is not None else config.get("device")), "git_commit": git_commit(),
            "wall_time_s": round(wall, 3), "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), **extra}


def write_record(rec: dict, results_dir: str | None = None) -> str:
    """Write a record at its place in the store (NaN / ±inf listed under ``nonfinite``)."""
    clean, found = encode_nonfinite(rec)
    if found:
        clean["nonfinite"] = found
    return atomic_write_json(clean, result_path(rec["experiment"], rec["config"], results_dir), nonfinite="error")


def record_failure(experiment: str, config: dict, reason: str, *, error_type: str = "CellFailed", results_dir: str | None = None,
                   device=None, wall_time_s: float = 0.0) -> dict:
    """Store (and return) a failed record of ``config``: the common fields, empty ``metrics``
    and ``failed = {"reason", "type"}``. It loads back like any record (:func:`load_result`;
    :func:`is_failed` tells it apart) and ``force=True`` recomputes it."""
    reason = " ".join(str(reason).split())[:500] or error_type
    rec = _record(experiment, config, {}, device, wall_time_s, failed={"reason": reason, "type": error_type})
    write_record(rec, results_dir)
    return rec


def cached_run(
    experiment: str,
    config: dict,
    compute: Callable[[], dict],
    *,
    results_dir: str | None = None,
    force: bool = False,
    device: str | torch.device | None = None,
) -> dict:
    """Return the stored record of ``config`` or compute, store and return it.

    ``compute()`` returns the metrics dict. The record is
    ``{experiment, config, config_hash, seed, metrics, environment, git_commit,
    wall_time_s, created, cached}``; ``cached`` tells whether it came from disk.
    If ``compute`` raises :class:`CellFailed`, a failed record with its reason is stored and
    returned instead (:func:`is_failed`). Metrics that miss what the record's kind promises
    (:func:`check_record`) are refused before anything is written.
    """
    if not force or _STORE_ONLY[0]:
        rec = load_result(experiment, config, results_dir)
        if rec is not None:
            return {**rec, "cached": True}
    if _STORE_ONLY[0]:
        raise MissingRecord(f"the store holds no {experiment} record {config_hash(config)}")
    t0 = time.perf_counter()
    try:
        metrics = compute()
    except CellFailed as e:
        rec = record_failure(experiment, config, str(e), results_dir=results_dir, device=device, wall_time_s=time.perf_counter() - t0)
        return {**rec, "cached": False}
    rec = _record(experiment, config, metrics, device, time.perf_counter() - t0)
    problem = check_record(rec)
    if problem:
        raise PoisonlibError(f"the {experiment} cell {config_hash(config)} computed a record that {problem}; nothing was stored")
    write_record(rec, results_dir)
    return {**rec, "cached": False}
