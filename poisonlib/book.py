"""Build the Jupyter Book: jupytext -> papermill (at a profile) -> jupyter-book build.

The notebooks' sources are MyST markdown files in ``notebooks/``. Each is
converted with jupytext, executed by papermill with the parameters
``profile, device, data_root`` injected after its cell tagged ``parameters``,
and written to ``book/executed/<name>.ipynb``, which ``_toc.yml`` lists. The
book is then built by Jupyter Book 1 with execution off (the executed outputs
are what the reader sees) and warnings treated as errors.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from ._validation import PoisonlibError, check_choice

EXECUTED_DIR = os.path.join("book", "executed")


def find_root(start: str | None = None) -> str:
    """The project root: the nearest folder upwards holding ``_config.yml`` and ``_toc.yml``."""
    d = os.path.abspath(start or os.getcwd())
    while True:
        if os.path.exists(os.path.join(d, "_config.yml")) and os.path.exists(os.path.join(d, "_toc.yml")):
            return d
        parent = os.path.dirname(d)
        if parent == d:
            raise PoisonlibError("no _config.yml/_toc.yml found above the current folder; run inside a poisonlib checkout or pass --root")
        d = parent


def notebook_sources(root: str, only: list[str] | None = None) -> list[str]:
    """Paths of ``notebooks/*.md``, restricted to the names in ``only``."""
    folder = os.path.join(root, "notebooks")
    names = sorted(f[:-3] for f in os.listdir(folder) if f.endswith(".md"))
    if only:
        unknown = sorted(set(only) - set(names))
        if unknown:
            raise PoisonlibError(f"unknown chapter {unknown[0]!r}; choose from: {', '.join(names)}")
        names = [n for n in names if n in only]
    return [os.path.join(folder, n + ".md") for n in names]


def _kernel_env(root: str) -> dict:
    """Environment of the kernels: this interpreter's folder first on PATH, no progress bars."""
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env.setdefault("POISONLIB_RESULTS", os.path.join(root, "results"))
    env["POISONLIB_PROGRESS"] = "0"
    env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"  # figures become notebook outputs
    return env


def _declared(src: str, params: dict) -> dict:
    """The ``params`` that ``src``'s parameters cell declares (``protocols`` only where a chapter
    uses it; ``profile``, ``device``, ``data_root`` always)."""
    import re

    with open(src, encoding="utf-8") as f:
        text = f.read()
    m = re.search(r"```\{code-cell\}[^\n]*\n:tags: \[parameters\]\n(.*?)```", text, re.S)
    cell = m.group(1) if m else ""
    return {k: v for k, v in params.items() if k != "protocols" or re.search(rf"^{k}\s*=", cell, re.M)}


def _local_kernel_manager(ip: str):
    """A kernel manager whose kernel talks over Unix sockets at ``ip`` (a path) rather than TCP
    ports: the kernel is local, nothing listens on the network, and ipykernel has no reason to
    warn that TCP is unencrypted (a warning a reader could not act on)."""
    from jupyter_client.manager import AsyncKernelManager

    class LocalKernelManager(AsyncKernelManager):
        def __init__(self, **kw):
            super().__init__(**{"transport": "ipc", "ip": ip, **kw})

    return LocalKernelManager


def execute_notebook(src: str, dst: str, parameters: dict, cwd: str) -> float:
    """Convert ``src`` (MyST) with jupytext and execute it with papermill into ``dst``; returns seconds."""
    import jupytext
    import papermill

    nb = jupytext.read(src)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    part = os.path.join(os.path.dirname(dst), "." + os.path.basename(dst)[:-6] + ".part.ipynb")
    with tempfile.TemporaryDirectory() as tmp:
        template = os.path.join(tmp, os.path.basename(dst))
        jupytext.write(nb, template)
        t0 = time.perf_counter()
        try:
            papermill.execute_notebook(template, part, parameters=parameters, kernel_name="python3", cwd=cwd, progress_bar=False,
                                       kernel_manager_class=_local_kernel_manager(os.path.join(tmp, "kernel")))
        except BaseException:
            if os.path.exists(part):
                os.unlink(part)
            raise
    os.replace(part, dst)
    return time.perf_counter() - t0


def convert_sources(root: str | None = None, only: list[str] | None = None) -> list[str]:
    """Write each chapter source as an *unexecuted* notebook ``book/executed/<name>.ipynb``, the
    path that the book's Binder launch buttons open (``.binder/postBuild`` calls this in a fresh
    clone). Notebooks already there (executed ones) are kept. Returns the paths written."""
    import jupytext

    root = find_root(root)
    written = []
    for src in notebook_sources(root, only):
        dst = os.path.join(root, EXECUTED_DIR, os.path.basename(src)[:-3] + ".ipynb")
        if os.path.exists(dst):
            continue
        nb = jupytext.read(src)
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        part = dst[:-6] + ".part.ipynb"
        jupytext.write(nb, part, fmt="ipynb")
        os.replace(part, dst)
        written.append(dst)
    return written


def _package_digest() -> str:
    """sha256 over the source files of the installed ``poisonlib`` package."""
    h = hashlib.sha256()
    pkg = os.path.dirname(os.path.abspath(__file__))
    for f in sorted(glob.glob(os.path.join(pkg, "**", "*.py"), recursive=True)):
        h.update(os.path.relpath(f, pkg).encode())
        with open(f, "rb") as fh:
            h.update(fh.read())
    return h.hexdigest()


def cache_key(src: str, parameters: dict, package_digest: str | None = None) -> str:
    """Key of an executed chapter: its source text, the papermill parameters and the package code."""
    h = hashlib.sha256()
    with open(src, "rb") as f:
        h.update(f.read())
    h.update(json.dumps(parameters, sort_keys=True, default=str).encode())
    h.update((package_digest or _package_digest()).encode())
    return h.hexdigest()[:16]


def _stored_key(dst: str) -> str | None:
    try:
        with open(dst) as f:
            return json.load(f).get("metadata", {}).get("poisonlib", {}).get("cache_key")
    except (OSError, ValueError):
        return None


def hide_injected(nb: dict) -> dict:
    """Tag papermill's ``injected-parameters`` cell ``remove-cell``: the built page shows the
    chapter's own parameters cell once (the values used are in the notebook's metadata and in
    every figure's and table's profile label)."""
    for cell in nb.get("cells", []):
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
    return nb


def _footer(secs: float, computed: int, parameters: dict) -> dict:
    """The markdown cell that closes an executed chapter: how long its cells took, at which profile, on what."""
    import platform

    import torch

    where = torch.cuda.get_device_name(0) if str(parameters.get("device")) != "cpu" and torch.cuda.is_available() else \
        f"{platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads"
    text = (f"*This page executed in {secs:.0f} s at profile `{parameters.get('profile')}` on {where}, torch {torch.__version__}; "
            f"it computed {computed} cell(s) and read the rest from the results store.*")
    return {"cell_type": "markdown", "id": "poisonlib-footer", "metadata": {"tags": ["poisonlib-footer"]}, "source": text}


def _stamp(dst: str, key: str, parameters: dict, footer: dict | None = None) -> None:
    """Record the cache key and parameters in the executed notebook's metadata (atomically),
    hide papermill's injected cell (:func:`hide_injected`), drop the build machine's
    paths from papermill's metadata and close the page with ``footer`` (:func:`_footer`)."""
    with open(dst) as f:
        nb = hide_injected(json.load(f))
    if footer is not None:
        nb["cells"] = [c for c in nb.get("cells", []) if c.get("id") != footer["id"]] + [footer]
    nb.setdefault("metadata", {})["poisonlib"] = {"cache_key": key, "parameters": parameters}
    pm = nb["metadata"].get("papermill", {})
    for k in ("input_path", "output_path"):  # the build machine's temporary paths, shipped with the page's .ipynb download
        if pm.get(k):
            pm[k] = os.path.basename(dst)
    tmp = dst + ".tmp"
    with open(tmp, "w") as f:
        json.dump(nb, f, indent=1, ensure_ascii=False)
        f.write("\n")
    os.replace(tmp, dst)


TIMINGS = "timings.json"


def _record_time(root: str, name: str, profile: str, secs: float) -> None:
    """Add a chapter's execution time to ``book/executed/timings.json`` (``{profile: {chapter:
    seconds}}``, the book's last execution of each chapter; written atomically)."""
    from .results import atomic_write_json

    path = os.path.join(root, EXECUTED_DIR, TIMINGS)
    try:
        with open(path) as f:
            times = json.load(f)
    except (OSError, ValueError):
        times = {}
    times.setdefault(profile, {})[name] = round(secs, 1)
    atomic_write_json(times, path)


def _records(store: str) -> int:
    """How many cell records (``<experiment>/<hash>.json``) the store holds; models, poisons and checkpoints aside."""
    skip = {"models", "poisons", "checkpoints"}
    try:
        return sum(n.endswith(".json") and not n.startswith(".") for d in os.scandir(store) if d.is_dir() and d.name not in skip
                   for n in os.listdir(d.path))
    except OSError:
        return 0


def chapter_grids(src: str) -> list[tuple[str, dict]]:
    """The grids the chapter ``src`` runs, as ``(experiment, extra keywords)``: its
    ``run_experiment("...")`` calls (``eps_w="calibrated"`` ones too) and, for a chapter that
    calls ``reproduction.run_all``, every table's grid."""
    import re

    from .grids import REPORT_GRIDS as EXPERIMENTS

    with open(src, encoding="utf-8") as f:
        text = f.read()
    grids = [(g, {}) for g in re.findall(r'run_(?:experiment|by_protocol)\("(\w+)"', text)]
    grids += [(g, {"eps_w": "calibrated"}) for g in re.findall(r'run_(?:experiment|by_protocol)\("(\w+)"[^\n]*eps_w="calibrated"', text)]
    if "reproduction.run_all(" in text:
        grids += [(g, {}) for g in EXPERIMENTS]
    return list({(g, tuple(kw.items())): (g, kw) for g, kw in grids}.values())


def compute_grids(sources: list[str], profile: str, *, device="auto", data_root=None, protocols=("paper",), executor=None) -> None:
    """Compute the grids of the chapters ``sources`` under each protocol through ``executor``
    (stored cells are kept), so that executing the notebooks afterwards only reads the store."""
    from .scheduler import run_experiment

    done = set()
    for src in sources:
        for grid, kw in chapter_grids(src):
            for proto in protocols:
                if (grid, proto, tuple(kw.items())) in done:
                    continue
                done.add((grid, proto, tuple(kw.items())))
                print(f"[poisonlib book] computing {grid} [{profile}, {proto}] through the {executor.name} executor ...", flush=True)
                rows = run_experiment(grid, profile, device=device, data_root=data_root, protocol=proto, executor=executor, **kw)
                failed = [r for r in rows if r["status"] == "failed"]
                if failed:
                    print(f"[poisonlib book] {grid}: {len(failed)} cell(s) failed; their chapters will retry them", flush=True)


def _jupyter_book() -> str:
    exe = os.path.join(os.path.dirname(sys.executable), "jupyter-book")
    return exe if os.path.exists(exe) else (shutil.which("jupyter-book") or "jupyter-book")


def build_book(
    profile: str = "cpu",
    *,
    device: str = "auto",
    data_root: str | None = None,
    only: list[str] | None = None,
    build: bool = True,
    path_output: str | None = None,
    root: str | None = None,
    force: bool = False,
    protocol: str = "both",
    executor=None,
) -> str | None:
    """Execute the notebooks at ``profile`` and build the HTML; returns the path of ``index.html``.

    ``protocol`` (``"paper"``, ``"released"`` or ``"both"``) becomes each chapter's
    ``protocols`` parameter: the protocols its tables show side by side (the first one
    also drives its figures).

    A chapter whose executed notebook carries the same :func:`cache_key` (same source,
    parameters and package code) is not re-run unless ``force``.

    With an ``executor`` (:mod:`poisonlib.executors`) the grids of the chapters to run are
    computed through it first (:func:`compute_grids`); the notebooks then read them from the store."""
    from .profiles import PROFILES

    from .protocols import PROTOCOLS

    check_choice("profile", profile, PROFILES)
    check_choice("protocol", protocol, [*PROTOCOLS, "both"])
    root = find_root(root)
    params = {"profile": profile, "device": device, "data_root": data_root,
              "protocols": list(PROTOCOLS) if protocol == "both" else [protocol]}
    env_before = dict(os.environ)
    os.environ.update(_kernel_env(root))
    digest = _package_digest()
    try:
        todo = []
        for src in notebook_sources(root, only):
            name = os.path.splitext(os.path.basename(src))[0]
            dst = os.path.join(root, EXECUTED_DIR, name + ".ipynb")
            nb_params = _declared(src, params)
            key = cache_key(src, nb_params, digest)
            if not force and _stored_key(dst) == key:
                print(f"[poisonlib book] {name}: unchanged since its last run at profile {profile} (cached; --force re-runs it)", flush=True)
                continue
            todo.append((src, name, dst, nb_params, key))
        if executor is not None:
            compute_grids([t[0] for t in todo], profile, device=device, data_root=data_root, protocols=params["protocols"], executor=executor)
        for src, name, dst, nb_params, key in todo:
            print(f"[poisonlib book] executing {name} at profile {profile} ...", flush=True)
            before = _records(os.environ["POISONLIB_RESULTS"])
            try:
                secs = execute_notebook(src, dst, nb_params, cwd=root)
            except Exception as e:  # papermill raises PapermillExecutionError with the cell's traceback
                raise PoisonlibError(f"notebook {name} failed at profile {profile}: {str(e).strip().splitlines()[-1]}") from e
            made = _records(os.environ["POISONLIB_RESULTS"]) - before
            _stamp(dst, key, nb_params, _footer(secs, made, nb_params))
            _record_time(root, name, profile, secs)
            print(f"[poisonlib book] {name}: {secs:.1f} s, {made} cell(s) computed (the rest read from the store)", flush=True)
    finally:
        os.environ.clear()
        os.environ.update(env_before)
    if not build:
        return None
    out = os.path.abspath(path_output or root)
    cmd = [_jupyter_book(), "build", root, "--path-output", out, "--warningiserror", "--keep-going", "--quiet"]  # warnings still show
    print("[poisonlib book] " + " ".join(cmd), flush=True)
    if subprocess.run(cmd, cwd=root).returncode != 0:
        raise PoisonlibError("jupyter-book build failed (see the messages above)")
    index = os.path.join(out, "_build", "html", "index.html")
    print(f"[poisonlib book] built {index}")
    return index
