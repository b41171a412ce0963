"""The results store: one JSON file per run, written atomically, reused when the
same configuration runs again.

``results/<experiment>/<config-hash>.json`` records the config, seed, metrics,
package versions, device, git commit and wall time of a run. A second run with
the same config returns the stored record; ``force=True`` recomputes it.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone

import torch

#: Bumped when a change of the code invalidates stored results.
RESULTS_SCHEMA = 1


def default_results_dir() -> str:
    """``$POISONLIB_RESULTS`` or ``./results``."""
    return os.environ.get("POISONLIB_RESULTS", "results")


def config_hash(config: dict) -> str:
    """Stable 16-hex-digit hash of a JSON-serialisable config (key order ignored)."""
    blob = json.dumps({"schema": RESULTS_SCHEMA, **config}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _atomic(path: str, write: Callable[[str], None]) -> str:
    """Write through a temporary file in the target folder, then rename over ``path``.

    The file gets the permissions a plain ``open(path, "w")`` would give (``mkstemp``'s
    temporary files are private, 0600)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_json(obj, path: str) -> str:
    """Write ``obj`` as indented JSON to ``path`` atomically."""

    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True, default=str)
            f.write("\n")

    return _atomic(path, write)


def atomic_torch_save(obj, path: str) -> str:
    """``torch.save`` to ``path`` atomically."""
    return _atomic(path, lambda tmp: torch.save(obj, tmp))


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


def load_result(experiment: str, config: dict, results_dir: str | None = None) -> dict | None:
    """The stored record of ``config``, or ``None``."""
    path = result_path(experiment, config, results_dir)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


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
    """
    if not force:
        rec = load_result(experiment, config, results_dir)
        if rec is not None:
            return {**rec, "cached": True}
    t0 = time.perf_counter()
    metrics = compute()
    rec = {
        "experiment": experiment,
        "config": config,
        "config_hash": config_hash(config),
        "seed": config.get("seed"),
        "metrics": metrics,
        "environment": environment(device if device is not None else config.get("device")),
        "git_commit": git_commit(),
        "wall_time_s": round(time.perf_counter() - t0, 3),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    atomic_write_json(rec, result_path(experiment, config, results_dir))
    return {**rec, "cached": False}
