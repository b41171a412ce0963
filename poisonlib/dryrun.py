"""Dry runs: every cell at its real size with each loop capped at a few steps, timed and sized.

A cell of the ``paper`` profile may take hours; whether it fits in memory shows in its
first steps. :func:`dry_run` runs each cell on its real data (real number of clean points
and poisons, real models) under :func:`capped_profile`, which caps the loops' *outer*
step counts: training epochs (every :class:`~poisonlib.train.TrainConfig` and the
released protocol's retraining), GC steps, and the baselines' ``epochs`` / ``steps`` /
``max_rounds``. Inner options (TGDA's follower steps and CG iterations, MT's retraining per
round, MaxUp's copies) keep their values in the profile, so that one capped step is a real one.

In-step caps (``inner``, default 2). At the paper's sizes one outer step is itself long (an epoch
of 470 mini-batches, a GC step over 60,000 poisons in chunks, g(μ) over the clean set in 30
chunks, TGDA's follower steps and CG iterations). Under ``inner=k`` the loops inside a step that
iterate through :func:`poisonlib._meter.capped` (training and evaluation batches, gradient chunks,
GC batches and poison chunks, CG iterations, TGDA's follower steps and Hessian chunks, the
defenses' feature batches, Influence's Hessian and score chunks, Gradient Matching's restarts,
GradPC's mini-batches) run their first k items, and the time of the items they skip is added
linearly (:mod:`poisonlib._meter`); the row's ``seconds_capped`` is the wall time actually run,
``seconds_skipped`` what the meter added, and every fit below uses their sum. Loops that collect
one result per item (per-example gradients) run whole, so that peak memory stays that of the real
step; an evaluation, a feature pass or Influence's scoring keeps its full-size output, zero past
the batches it ran. GC's final stationarity gradient and Gradient Matching's final dissimilarity
repeat a step's gradient or poison chunks at the same sizes: they are priced from the step's
without running again (:func:`poisonlib._meter.repeated`).

Extrapolation (a linear fit per loop). A cell's wall time is modelled as
t = t_fixed + Σ_g b_g · s_g over its loop groups g (``train``: training epochs; ``attack``:
GC steps, or the baseline's step count), each with s_g steps. The cell runs once with every
group at k steps (time t_k), and once more per group with that group at 2k steps
(t_{k,g}); b_g = (t_{k,g} − t_k) / k (clamped at 0: timings vary) is the group's cost per
step, and the full cost is T = t_k + Σ_g b_g (S_g − k) with S_g the profile's step count.
Where k more steps cost less than the timing noise (``NOISE_FRAC`` of t_k, at least ``NOISE_S``),
the group's run is repeated at 4k, 16k, ... steps (at most S_g; ``fit_steps``) with
b_g = (t_{s,g} − t_k) / (s − k): cheap loops are measured over many steps, costly ones over few.
With ``fit=False`` the cell runs once and T = t_k · max_g S_g / k, an upper bound (the fixed
part scaled too), marked ``extrapolation="bound"``.

Memory: the peak resident set size during each run (a sampling thread reading
``/proc/self/statm``, else ``resource.getrusage``'s lifetime peak) and, on a GPU,
``torch.cuda.max_memory_allocated`` (reset before each run); a row reports the maxima
over its runs. A cell that fails at its real size (out of memory, bad shape, ...) becomes
a row with ``status="error"`` and the error's first line; nothing is raised.

The fit assumes a loop's step costs the same at every step count; where it does not (a
conjugate-gradient solve whose iterations depend on the poisons, MT stopping early), the
per-step cost of that group is a rough figure, as its row's ``per_step_seconds`` shows.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import tempfile
import threading
import time
from dataclasses import replace

import torch

from ._meter import metering
from .attacks.gc import n_poison_points
from .experiments import get_profile

#: Baseline options that count a baseline's outer steps (capped; inner-loop options are kept).
STEP_OPTIONS = ("epochs", "steps", "max_rounds")
GIB = 2**30
#: The fit's second run of a loop group is repeated at GROW times the steps until it takes
#: NOISE_FRAC of the capped run's time (and NOISE_S seconds) longer, or runs all the steps.
GROW, NOISE_FRAC, NOISE_S = 4, 0.25, 1.0


def capped_profile(profile, steps: int = 1, *, train: int | None = None, attack: int | None = None):
    """``profile`` with its training epochs capped at ``train`` and its GC / baseline step counts
    at ``attack`` (both default ``steps``); named ``<name>-dry<train>-<attack>``."""
    prof = get_profile(profile)
    tr, at = (steps if train is None else train), (steps if attack is None else attack)
    limits = {m: replace(lim, gc_epochs=None if lim.gc_epochs is None else min(lim.gc_epochs, at)) for m, lim in prof.limits.items()}
    baselines = {kind: per if kind == "paper_only" else
                 {m: {k: (min(v, at) if k in STEP_OPTIONS and isinstance(v, int) else v) for k, v in opts.items()} for m, opts in per.items()}
                 for kind, per in prof.baselines.items()}
    return replace(prof, name=f"{prof.name}-dry{tr}-{at}", train={m: replace(c, epochs=min(c.epochs, tr)) for m, c in prof.train.items()},
                   gc_epochs=min(prof.gc_epochs, at), sweep_gc_epochs=min(prof.sweep_gc_epochs, at),
                   released_epochs=min(prof.released_epochs, tr), limits=limits, baselines=baselines)


def step_counts(cell, profile, *, gc_apart: bool = False) -> dict:
    """The full step count of each loop group of ``cell`` at ``profile``: ``train`` (epochs) and,
    where the cell has one, ``attack`` (GC steps, or the baseline's steps / epochs / rounds).
    ``gc_apart``: a defense cell whose GC cell is priced apart (:func:`_timed_run` in a shared
    store) has only its retraining epochs."""
    prof = get_profile(profile)
    counts = {"train": prof.train_config(cell.model).epochs}
    if cell.kind == "gc" or (cell.kind == "defense" and not gc_apart):
        counts["attack"] = prof.gc_epochs_for(cell.model)
    elif cell.kind == "attack" or cell.target in ("tgda", "mt"):
        opts = prof.attack_options(cell.attack if cell.kind == "attack" else cell.target, cell.model)
        hit = [opts[k] for k in STEP_OPTIONS if isinstance(opts.get(k), int)]
        if hit:
            counts["attack"] = hit[0]
    return counts


class _Peak:
    """Peak RSS (bytes) while the block runs, and the CUDA peak allocated on ``device``."""

    def __init__(self, device):
        self.cuda = torch.device(device).type == "cuda"
        self.rss, self.cuda_peak, self._done = 0, None, threading.Event()

    @staticmethod
    def _rss() -> int:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def _sample(self):
        while not self._done.is_set():
            self.rss = max(self.rss, self._rss())
            self._done.wait(0.05)

    def __enter__(self):
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._done.set()
        self._thread.join()
        self.rss = max(self.rss, self._rss())
        if self.cuda:
            torch.cuda.synchronize()
            self.cuda_peak = torch.cuda.max_memory_allocated()
        return False


def _find(record, key):
    """The first value of ``key`` anywhere in a (nested) record, else ``None``."""
    if isinstance(record, dict):
        if key in record and not isinstance(record[key], (dict, list)):
            return record[key]
        for v in record.values():
            hit = _find(v, key)
            if hit is not None:
                return hit
    return None


def _meter(inner):
    return metering(inner) if inner else contextlib.nullcontext(None)


def _timed_run(cell, prof, data_root, device, store=None, inner=None):
    """Wall seconds, seconds the in-step caps skipped, peak RSS, CUDA peak, the record and the capped loops
    (``{name: "ran/total"}``) of one run of ``cell``: in a fresh store, or for a non-target cell with ``store``
    in that one, where its clean model and target are built (or found) before the clock starts (under the same
    in-step caps). A target cell always runs in a fresh store: building its target (and clean model) is its cost; with
    ``store`` its models are then copied there (the store is keyed by content), so later cells find them built.
    In a shared store a GC cell keeps its poisons, as a grid keeps those a defense cell needs, and a defense cell
    finds its GC cell's poisons (or builds them) before its clock starts: its clock prices the defenses, and the
    GC cell is priced by its own class (:func:`gc_class`)."""
    shared = bool(store) and cell.kind != "target"
    with contextlib.ExitStack() as stack:
        root = store if shared else stack.enter_context(tempfile.TemporaryDirectory(prefix="poisonlib-dry-"))
        spec = cell.resolve(prof, data_root=data_root, device=device)
        if shared:
            from .pipeline import _target

            with _meter(inner):
                _target(spec, spec.load_data(), results_dir=root, progress=False)
                if cell.kind == "defense":
                    from .defended import gc_spec

                    gc_spec(spec).run(results_dir=root, progress=False, keep_poisons=True)
        with _Peak(device) as peak, _meter(inner) as meter:
            t0 = time.perf_counter()
            rec = spec.run(results_dir=root, force=True, progress=False, keep_poisons=shared and cell.kind == "gc")
            if peak.cuda:
                torch.cuda.synchronize()
            secs = time.perf_counter() - t0
        if store and not shared and os.path.isdir(os.path.join(root, "models")):  # a target class's models serve the later classes
            shutil.copytree(os.path.join(root, "models"), os.path.join(store, "models"), dirs_exist_ok=True)
    loops = {} if meter is None else {k: f"{v['ran']}/{v['total']}" for k, v in meter.loops.items() if v["ran"] < v["total"]}
    return secs, (0.0 if meter is None else meter.extra), peak.rss, peak.cuda_peak, rec, loops


def _row(cell, prof, device, steps, fit, store, inner=None, **status) -> dict:
    """A dry-run row before measuring (``status`` overrides, e.g. a killed cell's)."""
    gc_apart = bool(store) and cell.kind == "defense"
    deps = "in the timed run" if not store or cell.kind == "target" else (
        "clean model, target and GC cell's poisons built before the clock (shared store); the GC cell is priced by gc_class"
        if gc_apart else "built before the clock (shared store)")
    return {**dict(cell=cell.label(), kind=cell.kind, dataset=cell.dataset, model=cell.model, eps_d=cell.eps_d, device=str(device),
                   profile=prof.name, steps=steps, inner=inner, full_steps=step_counts(cell, prof, gc_apart=gc_apart), n_poison=None,
                   seconds_capped=None, seconds_skipped=None, capped_loops={},
                   per_step_seconds={}, extrapolated_seconds=None, extrapolation="fit" if fit else "bound", peak_rss_gib=None,
                   peak_cuda_gib=None, fit_steps={}, status="ok", reason=None, deps=deps),
            **({"gc_class": list(map(str, gc_class(cell)))} if gc_apart else {}), **status}


def gc_class(cell) -> tuple:
    """The :func:`cost_class` of the GC cell whose poisons the defense cell ``cell`` defends against
    (GC and GC-c cost the same): in a shared store the defense row prices the defenses only, and
    the cell's bill adds this class's (:func:`poisonlib.reproduction.paper_cost`)."""
    return cost_class(replace(cell, kind="gc", clip=False, attack="gc"))


def dry_run_cell(cell, profile, *, data_root=None, device="cpu", steps: int = 1, fit: bool = True, store: str | None = None,
                 inner: int | None = 2) -> dict:
    """One row of :func:`dry_run` for ``cell`` (a :class:`poisonlib.runner.Cell`)."""
    prof = get_profile(profile)
    row = _row(cell, prof, device, steps, fit, store, inner)
    counts = row["full_steps"]
    rss, cuda_peaks = [], []
    try:
        wall, skipped, r, c, rec, loops = _timed_run(cell, capped_profile(prof, steps), data_root, device, store, inner)
        t_k = wall + skipped
        row.update(seconds_skipped=skipped, capped_loops=loops)
        rss.append(r), cuda_peaks.append(c)
        n_p = _find(rec, "n_poison")
        row["n_poison"] = int(n_p) if n_p is not None else (n_poison_points(cell.eps_d, _find(rec, "n_clean"))
                                                            if isinstance(cell.eps_d, float) and _find(rec, "n_clean") else None)
        total = t_k
        if fit:
            for group, full in counts.items():
                s = steps
                while s < full:  # more steps until they cost clearly more than the timing noise, or all are run
                    s = min(full, 2 * steps if s == steps else GROW * s)
                    wall_g, skipped_g, r, c, _, _ = _timed_run(cell, capped_profile(prof, steps, **{group: s}), data_root, device, store, inner)
                    t_g = wall_g + skipped_g
                    rss.append(r), cuda_peaks.append(c)
                    if t_g - t_k > max(NOISE_FRAC * t_k, NOISE_S):
                        break
                if s > steps:
                    b = max(t_g - t_k, 0.0) / (s - steps)
                    row["per_step_seconds"][group] = b
                    row["fit_steps"][group] = s
                    total += b * (full - steps)
        else:
            total = t_k * max(counts.values()) / steps
        row.update(seconds_capped=wall, extrapolated_seconds=total)
    except Exception as e:  # noqa: BLE001 -- a cell failing at real size is a result, reported as a row
        msg = str(e).strip().splitlines()
        row.update(status="error", reason=f"{type(e).__name__}: {msg[0] if msg else ''}"[:500])
    finally:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    row["peak_rss_gib"] = max(rss) / GIB if rss else None
    row["peak_cuda_gib"] = max(cuda_peaks) / GIB if cuda_peaks and cuda_peaks[0] is not None else None
    return row


#: The child process of ``isolate=True`` dry runs: a one-worker :class:`~poisonlib.executors.LocalExecutor` pool
#: (spawned once, reused; its workers ignore Ctrl-C and end with the driver), replaced when killed.
_CHILD: list = [None]


def _in_child(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` in the child process; ``None`` if the child died meanwhile (a new one is started next)."""
    from concurrent.futures.process import BrokenProcessPool

    from ._lifecycle import stop_on_signals
    from .executors import LocalExecutor

    ex = _CHILD[0] = _CHILD[0] or LocalExecutor(jobs=1)
    try:
        with stop_on_signals():
            return ex.pool().submit(fn, *args, **kwargs).result()
    except BrokenProcessPool:
        ex.stop()
        return None
    except (KeyboardInterrupt, SystemExit):  # Ctrl-C / SIGTERM: the child stops now, not when its cell is done
        ex.stop()
        raise


def _warm(cell, profile, steps, data_root, device, store, inner=None):
    try:
        _timed_run(cell, capped_profile(profile, steps), data_root, device, store, inner)
    except Exception:  # noqa: BLE001 -- its row will report the error
        pass


def dry_run(cells, profile="paper", *, data_root=None, device="cpu", steps: int = 1, fit: bool = True, on_row=None,
            warmup: bool = True, store: str | None = None, isolate: bool = False, inner: int | None = 2) -> list[dict]:
    """Dry-run ``cells`` (:class:`poisonlib.runner.Cell`) at ``profile`` (module docstring).

    ``warmup`` first runs the first cell once untimed at the cap, so that one-off costs of the
    process (lazy imports, the embedded data's cache, CUDA's start) do not enter the fit.
    ``store``: one results store for all the cells, where each non-target cell's clean model and
    target are built before its clock starts (a grid computes them once, and their cost is their
    own target cells'); by default each run gets a fresh store and pays for its dependencies.
    ``isolate``: run the cells in one child process (spawned once, reused), so that a cell the
    system kills at its real size -- the out-of-memory killer sends SIGKILL, which no ``except``
    sees -- becomes a row with ``status="killed"`` instead of ending the dry run.
    ``inner``: the in-step cap (module docstring); ``None`` runs every step whole.

    Returns one plain dict per cell: ``cell`` (label), ``kind``, ``n_poison``, ``seconds_capped``,
    ``per_step_seconds`` per loop group, ``full_steps``, ``extrapolated_seconds``, ``peak_rss_gib``,
    ``peak_cuda_gib`` (``None`` off a GPU), ``status`` (``ok`` / ``error`` / ``killed``) and ``reason``.
    ``on_row(row)`` is called after each cell (e.g. to save rows as they come)."""
    from .train import resolve_device

    device = str(resolve_device(device))
    rows, cells = [], list(cells)
    call = _in_child if isolate else (lambda fn, *a, **k: fn(*a, **k))
    if warmup and cells:
        call(_warm, cells[0], profile, steps, data_root, device, store, inner)
    for cell in cells:
        row = call(dry_run_cell, cell, profile, data_root=data_root, device=device, steps=steps, fit=fit, store=store, inner=inner)
        if row is None:
            row = _row(cell, get_profile(profile), device, steps, fit, store, inner, status="killed", extrapolation=None,
                       reason="the process running it was killed at its real size (SIGKILL; the usual sender is the "
                              "out-of-memory killer: it needs more memory than this machine has)")
        rows.append(row)
        if on_row is not None:
            on_row(rows[-1])
    return rows


def cost_class(cell) -> tuple:
    """What a cell's cost depends on: kind, data, model, attack, ε_d and the kind of target
    (not the seed, ε_w, the w/2 scaling or GC-c's clipping: those cost the same)."""
    return (cell.kind, cell.dataset, cell.model, cell.attack if cell.kind == "attack" else "", cell.eps_d,
            cell.target if cell.kind == "target" else "")


def dry_run_grid(cells, profile, *, data_root=None, device="cpu", steps: int = 1, fit: bool = False, on_row=None,
                 store: str | None = None, isolate: bool = False, inner: int | None = 2) -> list[dict]:
    """Dry-run one cell of each cost class of ``cells`` (:func:`cost_class`) and price the grid:
    each row gains ``cells`` (how many of the grid's cells it stands for) and
    ``extrapolated_total_seconds``. Cells the profile does not run, and cells whose ε_d is
    another cell's outcome (``"mt"``), are rows with ``status="skipped"`` and the reason."""
    from .cells import skip_reason

    prof = get_profile(profile)
    classes: dict = {}
    skipped = []
    for c in cells:
        why = "eps_d is MT's budget, known once MT has run (priced as MT's cell)" if c.eps_d == "mt" else skip_reason(c, prof, data_root)
        if why is not None:
            skipped.append(dict(cell=c.label(), kind=c.kind, status="skipped", reason=why, cells=1))
            continue
        classes.setdefault(cost_class(c), []).append(c)

    groups = list(classes.values())
    counts = iter(len(cs) for cs in groups)

    def priced(row):
        n = next(counts)
        row["cells"] = n
        row["extrapolated_total_seconds"] = None if row["extrapolated_seconds"] is None else n * row["extrapolated_seconds"]
        if on_row is not None:
            on_row(row)

    with contextlib.ExitStack() as stack:  # one store for the grid: dependencies built once, outside the cells' clocks
        store = store or stack.enter_context(tempfile.TemporaryDirectory(prefix="poisonlib-dry-store-"))
        rows = dry_run([cs[0] for cs in groups], prof, data_root=data_root, device=device, steps=steps, fit=fit, on_row=priced, store=store,
                       isolate=isolate, inner=inner)
    return rows + skipped
