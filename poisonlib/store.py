"""Files of the results store, written atomically and read defensively.

Every write goes through a temporary file in the target folder and a rename (a killed
process leaves no partial file); an ``OSError`` (disk full, read-only, permission,
cross-device) or torch's writer failing on a full disk becomes one :class:`StoreError`
line naming the path. JSON is written without NaN or infinity (:func:`encode_nonfinite`).
A store file that cannot be used -- unparsable, nested too deeply, failing its
validation, or not a regular file (moved aside without being opened) -- is
:func:`quarantine` d with one warning line; pickles that would run code are refused.
Everything here is importable from :mod:`poisonlib.results` as well.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import math
import os
import pickle
import stat
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterable
from datetime import datetime, timezone

import torch

from ._validation import PoisonlibError, describe_os_error

QUARANTINE = "quarantine"


class StoreError(PoisonlibError):
    """The results store cannot be written (read-only, full, not a folder): no cell can be kept."""



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
        hint = "" if e.errno in (errno.ENOSPC, errno.EDQUOT) else " (is the results store read-only? set POISONLIB_RESULTS to a writable folder)"
        raise StoreError(f"cannot write {path!r}: {describe_os_error(e)}{hint}") from None
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise StoreError(f"cannot write {path!r}: {describe_os_error(e)}") from None
        if isinstance(e, RuntimeError) and ("write" in str(e).lower() or _full(folder)):  # torch.save's PytorchStreamWriter on a full disk
            why = "no space left on device (disk full)" if _full(folder) else (str(e).strip().splitlines() or ["write failed"])[0][:160]
            raise StoreError(f"cannot write {path!r}: {why}") from None
        raise
    return path


def _full(folder: str) -> bool:
    """Whether the filesystem of ``folder`` has no block left for this user."""
    try:
        return os.statvfs(folder).f_bavail == 0
    except OSError:
        return False


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_json(obj, path: str, *, nonfinite: str = "null") -> str:
    """Write ``obj`` as indented JSON to ``path`` atomically. JSON has no NaN or infinity:
    ``nonfinite="null"`` writes them as ``null``; ``"error"`` refuses the write with one line
    naming the first such value (a record uses :func:`encode_nonfinite` first)."""
    if nonfinite not in ("null", "error"):
        raise PoisonlibError(f"nonfinite must be 'null' or 'error', got {nonfinite!r}")
    clean, found = encode_nonfinite(obj)
    if found and nonfinite == "error":
        where, value = found[0]
        raise PoisonlibError(f"cannot write {path!r}: {'.'.join(map(str, where)) or 'the value'} is {value}, and JSON has no NaN or "
                             "infinity")

    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(clean, f, indent=2, sort_keys=True, default=str, allow_nan=False)
            f.write("\n")

    return _atomic(path, write)


def encode_nonfinite(obj, where=()):
    """``(copy of obj with every NaN / ±inf float replaced by None, [(path, "nan"|"inf"|"-inf")])``."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None, [(list(where), "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf"))]
    if isinstance(obj, dict):
        out, found = {}, []
        for k, v in obj.items():
            out[k], f = encode_nonfinite(v, (*where, k))
            found += f
        return out, found
    if isinstance(obj, (list, tuple)):
        pairs = [encode_nonfinite(v, (*where, i)) for i, v in enumerate(obj)]
        return [p[0] for p in pairs], [f for p in pairs for f in p[1]]
    return obj, []


def decode_nonfinite(rec: dict) -> dict:
    """Put back the NaN / ±inf values that :func:`encode_nonfinite` listed under ``rec["nonfinite"]``."""
    for where, value in rec.pop("nonfinite", None) or []:
        node = rec
        for k in where[:-1]:
            node = node[k]
        node[where[-1]] = float(value)
    return rec


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
    if not _regular_or_quarantined(path):
        return None
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
        quarantine(path, f"is not valid JSON ({(str(e).splitlines() or [type(e).__name__])[0][:160]})")
        return None
    except RecursionError:
        quarantine(path, "is nested too deeply to be a record")
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
    if not _regular_or_quarantined(path, quarantine_dir):
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


def _regular_or_quarantined(path: str, quarantine_dir: str | None = None) -> bool:
    """Whether ``path`` is a regular file (follows symlinks); a FIFO, socket or device in its
    place is quarantined without being opened (opening a FIFO would block) and ``False``."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return False
    except OSError as e:  # a symlink loop, a parent that is a file
        if os.path.lexists(path) and e.errno in (errno.ELOOP, errno.ENOTDIR):
            quarantine(path, f"cannot be opened ({describe_os_error(e)})", quarantine_dir)
            return False
        raise PoisonlibError(f"cannot read {path!r}: {describe_os_error(e)}") from None
    if stat.S_ISDIR(mode):
        raise PoisonlibError(f"{path!r} is a folder where a store file was expected")
    if not stat.S_ISREG(mode):
        quarantine(path, "is not a regular file (a FIFO, socket or device)", quarantine_dir)
        return False
    return True


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
