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
:func:`store_only` turns computing off, so that a reader (``poisonlib report``) can
list what the store lacks (:class:`MissingRecord`) without starting a run.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import pickle
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable
from datetime import datetime, timezone

import torch

from ._validation import PoisonlibError

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
    temporary files are private, 0600). A folder that cannot be written (read-only
    store, disk full) raises :class:`PoisonlibError` naming it; nothing is left behind."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
        os.close(fd)
    except OSError as e:
        raise StoreError(f"cannot write {path!r}: {e.strerror or e} (is the results store read-only? "
                             "set POISONLIB_RESULTS to a writable folder)") from None
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise StoreError(f"cannot write {path!r}: {e.strerror or e}") from None
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


def remove_with_partials(path: str) -> None:
    """Delete ``path`` and the temporary files that :func:`_atomic` writes it through
    (``.tmp-*<name>``), which a process killed mid-write (kill -9) leaves behind."""
    folder, name = os.path.split(os.path.abspath(path))
    for f in glob.glob(os.path.join(glob.escape(folder), ".tmp-*" + glob.escape(name))) + [path]:
        with contextlib.suppress(FileNotFoundError):
            os.remove(f)


def atomic_write_bytes(blob: bytes, path: str) -> str:
    """Write ``blob`` to ``path`` atomically (a store file an isolated worker made)."""

    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(blob)

    return _atomic(path, write)


def atomic_torch_save(obj, path: str) -> str:
    """``torch.save`` to ``path`` atomically."""
    return _atomic(path, lambda tmp: torch.save(obj, tmp))


# --------------------------------------------------------------------------- reading, quarantine
QUARANTINE = "quarantine"


class StoreError(PoisonlibError):
    """The results store cannot be written (read-only, full, not a folder): no cell can be kept."""


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


def warn(message: str) -> None:
    """One line on stderr (not :mod:`warnings`: its lines carry the source file's absolute path)."""
    print(f"poisonlib: warning: {message}", file=sys.stderr, flush=True)


def quarantine(path: str, reason: str, quarantine_dir: str | None = None) -> str:
    """Move a store file that cannot be used to ``quarantine_dir`` (default: ``quarantine/``
    beside the file's folder, i.e. ``results/quarantine/`` for ``results/<kind>/<file>``),
    say so in one line, and return its new path. The caller then recomputes it."""
    path = os.path.abspath(path)
    qdir = quarantine_dir or os.path.join(os.path.dirname(os.path.dirname(path)), QUARANTINE)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    dst = os.path.join(qdir, f"{os.path.basename(os.path.dirname(path))}-{os.path.basename(path)}.{stamp}-{os.getpid()}")
    try:
        os.makedirs(qdir, exist_ok=True)
        os.replace(path, dst)
    except FileNotFoundError:  # another process moved it first
        return dst
    except OSError as e:
        raise StoreError(f"{path!r} is unusable ({reason}) and cannot be moved to {qdir!r}: {e.strerror or e}; "
                             "remove it by hand or make the results store writable") from None
    warn(f"{_shown(path)} {reason}; moved to {_shown(dst)} and recomputing")
    return dst


def _shown(path: str) -> str:
    """``path`` relative to the current folder when it lies below it (no build paths in pages)."""
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def read_json(path: str, validate: Callable[[object], str | None] | None = None) -> dict | None:
    """The JSON object at ``path``; ``None`` if there is none, or if it fails to parse or
    ``validate`` (which returns a problem, or ``None``): such a file is quarantined."""
    try:
        with open(path, encoding="utf-8") as f:
            obj = json.load(f)
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise PoisonlibError(f"{path!r} is a folder where a record was expected") from None
    except PermissionError as e:
        raise PoisonlibError(f"cannot read {path!r}: {e.strerror}") from None
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
        quarantine(path, f"is not valid JSON ({str(e).splitlines()[0]})")
        return None
    problem = "is not a JSON object" if not isinstance(obj, dict) else validate(obj) if validate else None
    if problem:
        quarantine(path, problem)
        return None
    return obj


def load_torch(path: str, keys: Iterable[str] = (), *, quarantine_dir: str | None = None) -> dict | None:
    """``torch.load(path, weights_only=True)`` of a store file: ``None`` if there is none,
    or if it is truncated, corrupt or lacks one of ``keys`` (then it is quarantined).

    A file that holds pickled objects other than tensors and plain containers is
    refused with :class:`PoisonlibError`: loading it could run arbitrary code."""
    if not os.path.exists(path):
        return None
    try:
        with warnings.catch_warnings():  # torch warns about a pickle protocol before refusing a foreign pickle
            warnings.simplefilter("ignore", UserWarning)
            state = torch.load(path, map_location="cpu", weights_only=True)
    except PermissionError as e:
        raise PoisonlibError(f"cannot read {path!r}: {e.strerror}") from None
    except Exception as e:  # noqa: BLE001 - torch raises RuntimeError, EOFError, UnpicklingError, ... on bad files
        why = unsafe_pickle(e, path)
        if why:
            raise PoisonlibError(f"refusing to load {path!r}: {why}") from None
        first = (str(e).strip().splitlines() or ["the file ends early"])[0]
        quarantine(path, f"cannot be read ({type(e).__name__}: {first[:160]})", quarantine_dir)
        return None
    missing = [k for k in keys if not isinstance(state, dict) or k not in state]
    if missing:
        quarantine(path, f"lacks {', '.join(missing)}", quarantine_dir)
        return None
    return state


def unsafe_pickle(error: BaseException, path: str | None = None) -> str | None:
    """If ``error`` is ``torch.load(weights_only=True)`` refusing a pickle that would import
    and call something (code it would run), a one-line explanation; else ``None`` (the
    file is merely truncated, corrupt or not a pickle at all).

    torch names the global it refused in a ``torch.save`` archive; for a bare file the
    bytes at ``path`` are scanned (never executed) for the opcodes that call code."""
    import re

    text = str(error)
    if not isinstance(error, pickle.UnpicklingError) or "Weights only load failed" not in text:
        return None
    m = re.search(r"GLOBAL ([\w.]+)", text)
    what = f"GLOBAL {m.group(1)}" if m else _calls_in_pickle(path) if path else None
    if what is None:
        return None
    return f"it holds pickled objects other than tensors and plain containers ({what}), which could run code; delete it unless you trust it"


def _calls_in_pickle(path: str) -> str | None:
    """The first opcode of the pickle at ``path`` that imports or calls something, or ``None``
    (also when the bytes are not a well-formed pickle)."""
    import pickletools

    try:
        with open(path, "rb") as f:
            ops = list(pickletools.genops(f))
    except Exception:  # noqa: BLE001 - not a pickle: garbage, a truncated file
        return None
    for i, (op, arg, _) in enumerate(ops):
        if op.name in ("GLOBAL", "INST"):
            return f"{op.name} {str(arg).replace(' ', '.')}"
        if op.name == "STACK_GLOBAL":
            names = [a for _, a, _ in ops[max(0, i - 4):i] if isinstance(a, str)][-2:]
            return "STACK_GLOBAL " + ".".join(names)
        if op.name in ("REDUCE", "OBJ", "NEWOBJ", "NEWOBJ_EX", "BUILD"):
            return op.name
    return None


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


def check_record(rec: dict, experiment: str | None = None, config: dict | None = None) -> str | None:
    """What is wrong with a stored record (missing / mistyped fields, another experiment or
    config than its file name says), or ``None``."""
    bad = [k for k, t in RECORD_FIELDS.items() if not isinstance(rec.get(k), t)]
    if bad:
        return f"fails the record schema (missing or mistyped: {', '.join(bad)})"
    if experiment is not None and rec["experiment"] != experiment:
        return f"belongs to experiment {rec['experiment']!r}, not {experiment!r}"
    if config is not None and rec["config_hash"] != config_hash(config):
        return "holds another configuration than its name says"
    return None


def load_result(experiment: str, config: dict, results_dir: str | None = None) -> dict | None:
    """The stored record of ``config``, or ``None`` (also when the file was corrupt or
    failed :func:`check_record`: it is then quarantined)."""
    return read_json(result_path(experiment, config, results_dir), lambda rec: check_record(rec, experiment, config))


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
    if not force or _STORE_ONLY[0]:
        rec = load_result(experiment, config, results_dir)
        if rec is not None:
            return {**rec, "cached": True}
    if _STORE_ONLY[0]:
        raise MissingRecord(f"the store holds no {experiment} record {config_hash(config)}")
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
