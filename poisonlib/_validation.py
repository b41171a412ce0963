"""Parameter checks shared by the library and the CLI.

Every check raises :class:`PoisonlibError` (a ``ValueError``) with a one-line
message that names the bad value and says what is allowed; the CLI prints that
line and exits with status 2.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import torch


class PoisonlibError(ValueError):
    """Bad input given to poisonlib (one-line, user-facing message)."""


class CellFailed(PoisonlibError):
    """A computation that fails the same way whenever it runs (GC or TGDA diverged, non-finite
    poisons): raised inside a cell, :func:`poisonlib.results.cached_run` stores a failed record
    with this reason instead of propagating it, so a report shows the reason in place of the
    number and a rerun does not compute it again (``force`` does)."""


def check_positive(name: str, value, *, allow_zero: bool = False) -> float:
    """Return ``float(value)`` if it is a finite number > 0 (>= 0 with ``allow_zero``)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise PoisonlibError(f"{name} must be a number, got {value!r}") from None
    ok = v >= 0 if allow_zero else v > 0
    if not math.isfinite(v) or not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise PoisonlibError(f"{name} must be a finite number {bound}, got {value!r}")
    return v


def check_int(name: str, value, *, minimum: int = 0) -> int:
    """Return ``int(value)`` if it is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise PoisonlibError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_choice(name: str, value, choices: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``choices``."""
    choices = sorted(choices)
    if value not in choices:
        raise PoisonlibError(f"unknown {name} {value!r}; choose from: {', '.join(choices)}")
    return value


def check_finite(name: str, x) -> None:
    """Raise if the array/tensor ``x`` holds NaN or infinite values."""
    t = torch.as_tensor(x)
    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        bad = int((~torch.isfinite(t)).sum())
        raise PoisonlibError(f"{name} contains {bad} NaN or infinite value(s); clean the data first")


#: Copies of the poison set a GC / baseline run holds at once (poisons, their gradient, two
#: optimiser moments, the start, clean ∪ poisons for retraining), used to size it beforehand.
POISON_COPIES = 6


def available_memory(device="cpu") -> int | None:
    """Bytes of memory ``device`` offers (CUDA: free memory; CPU: physical RAM), or ``None``."""
    import os

    dev = torch.device(device) if not isinstance(device, torch.device) else device
    try:
        if dev.type == "cuda":
            return int(torch.cuda.mem_get_info(dev)[0])
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, RuntimeError, AttributeError):
        return None


def _size(n_bytes: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB", "PB"):
        if n_bytes < 1000 or unit == "PB":
            return f"{n_bytes:,.0f} {unit}" if unit == "bytes" else f"{n_bytes:,.1f} {unit}"
        n_bytes /= 1000


def check_poison_memory(eps_d: float, n_clean: int, n_features: int, device="cpu", *, bytes_per_value: int = 4) -> int:
    """Raise :class:`PoisonlibError` before allocating if a poison set of ``eps_d · n_clean``
    points of ``n_features`` values cannot fit in ``device``'s memory; return its bytes.

    The estimate is :data:`POISON_COPIES` copies of the set (float32)."""
    n_p = max(1, int(round(float(eps_d) * n_clean)))
    need = POISON_COPIES * n_p * int(n_features) * bytes_per_value
    have = available_memory(device)
    if have is not None and need > have:
        raise PoisonlibError(
            f"eps_d={eps_d:g} asks for {n_p:,} poisons of {int(n_features):,} values: about {need:,} bytes ({_size(need)}) "
            f"for the attack's state, more than the {_size(have)} of {torch.device(device).type} memory here; lower eps_d"
        )
    return need


# --------------------------------------------------------------------------- strict parsing (command line, config files)
#: Seeds run from 0 to ``MAX_SEED`` (torch's generators take 64-bit seeds; 2^63 leaves room
#: for the seed + offset a cell derives from its seed). Split seeds feed scikit-learn,
#: which takes 32-bit ones.
MAX_SEED = 2**63 - 1
MAX_SPLIT_SEED = 2**32 - 1


def parse_int(name: str, text, *, minimum: int | None = 0, maximum: int | None = None) -> int:
    """An integer written in ASCII digits (an optional leading ``-``, no ``+``, no ``_``, no
    spaces, no other scripts' digits), within ``[minimum, maximum]``; else one line."""
    s = text if isinstance(text, str) else str(text)
    body = s[1:] if s.startswith("-") else s
    bound = _range_text(minimum, maximum)
    if not body or not (body.isascii() and body.isdigit()) or len(body) > 40:
        raise PoisonlibError(f"{name} must be an integer{bound} in ASCII digits, got {_shown(text)}")
    v = int(s)
    if (minimum is not None and v < minimum) or (maximum is not None and v > maximum):
        raise PoisonlibError(f"{name} must be an integer{bound}, got {_shown(text)}")
    return v


def parse_seed(name: str, text, *, maximum: int = MAX_SEED) -> int:
    """A seed: an integer in ``[0, maximum]`` (default :data:`MAX_SEED`), ASCII digits only."""
    return parse_int(name, text, minimum=0, maximum=maximum)


def parse_float(name: str, text, *, minimum: float | None = None, maximum: float | None = None, allow_zero: bool = True,
                allow_inf: bool = False) -> float:
    """A finite float in ASCII (``1e-3``, ``0.5``); ``inf`` / ``-inf`` / ``infinity`` only with
    ``allow_inf`` (both signs treated alike: refused or bounded), never ``nan``."""
    s = text.strip() if isinstance(text, str) else str(text)
    if not s.isascii() or "_" in s:
        raise PoisonlibError(f"{name} must be a number in ASCII, got {_shown(text)}")
    try:
        v = float(s)
    except (TypeError, ValueError):
        raise PoisonlibError(f"{name} must be a number, got {_shown(text)}") from None
    bound = _range_text(minimum, maximum)
    if math.isnan(v) or (math.isinf(v) and not allow_inf):
        raise PoisonlibError(f"{name} must be a finite number{bound}, got {_shown(text)}")
    if (minimum is not None and v < minimum) or (maximum is not None and v > maximum) or (not allow_zero and v == 0):
        zero = "" if allow_zero else ", not 0"
        raise PoisonlibError(f"{name} must be a number{bound}{zero}, got {_shown(text)}")
    return v


def _range_text(lo, hi) -> str:
    if lo is not None and hi is not None:
        return f" in [{lo:,}, {hi:,}]" if isinstance(lo, int) else f" in [{lo:g}, {hi:g}]"
    if lo is not None:
        return f" >= {lo}"
    return f" <= {hi}" if hi is not None else ""


def _shown(text) -> str:
    r = repr(text)
    return r if len(r) <= 60 else r[:57] + "...'"


def check_feature_box(box, what: str = "feature_box") -> tuple[float, float] | None:
    """``None`` or ``(lo, hi)``: exactly two finite real numbers with ``lo < hi``."""
    if box is None:
        return None
    a = np.asarray(box)
    if a.dtype == bool or a.dtype.kind not in "iuf" or a.shape != (2,):
        raise PoisonlibError(f"{what} must be two real numbers [lo, hi], got {_shown(a.tolist() if a.size <= 6 else box)}")
    lo, hi = (float(v) for v in a)
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo >= hi:
        raise PoisonlibError(f"{what} must be finite with lo < hi, got [{lo:g}, {hi:g}]")
    return lo, hi


# --------------------------------------------------------------------------- files and folders
def check_regular_file(path: str, what: str = "file") -> str:
    """``path`` if it is a regular file (symlinks followed). A FIFO, socket or device is
    refused *without opening it* (opening a FIFO blocks until a writer comes)."""
    import os
    import stat

    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise PoisonlibError(f"{what} {path!r} does not exist") from None
    except OSError as e:  # ELOOP (symlink loop), ENAMETOOLONG, EACCES on a parent
        raise PoisonlibError(f"{what} {path!r} cannot be read: {e.strerror or e}") from None
    if stat.S_ISDIR(st.st_mode):
        raise PoisonlibError(f"{what} {path!r} is a folder, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise PoisonlibError(f"{what} {path!r} is a {_kind(st.st_mode)}, not a regular file; refusing to open it")
    return path


def _kind(mode: int) -> str:
    import stat

    for test, name in ((stat.S_ISFIFO, "named pipe (FIFO)"), (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device")):
        if test(mode):
            return name
    return "special file"


def check_writable_location(path: str, what: str = "--out", *, folder: bool = True) -> str:
    """Check, before any computation, that ``path`` can be created or written: not empty, no
    parent that is a file, no symlink loop, not on a read-only filesystem, permissions.
    ``folder``: ``path`` is to be a folder (else a file). Returns ``os.path.abspath(path)``."""
    import errno
    import os
    import tempfile

    if not isinstance(path, str) or not path.strip():
        raise PoisonlibError(f"{what} must name a {'folder' if folder else 'file'}, got {path!r}")
    full = os.path.abspath(os.path.expanduser(path))
    try:
        os.stat(full)  # ELOOP, ENOTDIR (a parent is a file) show here
        exists = True
    except FileNotFoundError:
        exists = False
    except OSError as e:
        raise PoisonlibError(f"{what} {path!r} cannot be used: {describe_os_error(e)}") from None
    if exists and os.path.isdir(full) != folder:
        raise PoisonlibError(f"{what} {path!r} exists and is not a {'folder' if folder else 'file'}")
    probe_in = full if exists and folder else os.path.dirname(full)
    while not os.path.exists(probe_in):  # the nearest existing ancestor is where the folders will be made
        parent = os.path.dirname(probe_in)
        if parent == probe_in:
            break
        probe_in = parent
    if not os.path.isdir(probe_in):
        raise PoisonlibError(f"{what} {path!r} cannot be created: {probe_in!r} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(dir=probe_in, prefix=".poisonlib-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            raise PoisonlibError(f"{what} {path!r} cannot be created: {describe_os_error(e)}") from None
        raise PoisonlibError(f"{what} {path!r} cannot be written: {describe_os_error(e)} (in {probe_in!r})") from None
    return full


def describe_os_error(e: OSError) -> str:
    """The OS's own words for ``e`` (``e.strerror``), with a gloss for the cases users meet
    (disk full, read-only, symlink loop, a file as a parent folder, cross-device)."""
    import errno

    gloss = {errno.ENOSPC: "disk full", errno.EDQUOT: "disk quota exceeded", errno.EROFS: "the store or output is on a read-only mount",
             errno.ELOOP: "a symbolic link loop", errno.ENOTDIR: "a part of the path is a file, not a folder",
             errno.EXDEV: "source and destination lie on different file systems"}.get(e.errno)
    text = e.strerror or str(e)
    return f"{text} ({gloss})" if gloss else text


def results_dir_from_env(default: str = "results") -> str:
    """``$POISONLIB_RESULTS`` (else ``default``), refused in one line when it is set but empty,
    or names something that exists and is not a folder."""
    import os

    value = os.environ.get("POISONLIB_RESULTS")
    if value is None:
        return default
    if not value.strip():
        raise PoisonlibError("POISONLIB_RESULTS is set but empty; unset it (results go to ./results) or name a folder")
    if os.path.exists(value) and not os.path.isdir(value):
        raise PoisonlibError(f"POISONLIB_RESULTS={value!r} exists and is not a folder; name a folder for the results store")
    return value
