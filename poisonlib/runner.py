"""The experiment grids behind the paper's tables and figures, run cell by cell.

Each grid (a registry keyed by name, e.g. ``"table2"``) lists its cells for a
profile: *target* cells (clean model + GradPC / RandomPC target: Tables 1, 5)
and *GC* cells (target + Gradient Canceling + retraining: Tables 2, 4, 8,
Figs. 3, 7, 8, 9). :func:`run_experiment` runs the cells that the profile
allows, takes finished ones from the results store, and marks the others as
*not run at this profile* with the reason (no ``data_root`` for CIFAR-10, a
poison set larger than the profile's cap, ...), so that a table can say so.

>>> rows = run_experiment("table2", profile="smoke")      # doctest: +SKIP
>>> poisonlib run table2 --profile cpu                    # the same from a shell
"""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import asdict, dataclass, field, replace

from tqdm import tqdm

from ._registry import Registry
from ._validation import PoisonlibError, check_choice
from .attacks.gc import n_poison_points
from .baselines import attack_cell, attack_config, defense_cell, defense_config
from .experiments import gc_cell, gc_config, get_profile, target_cell, target_config
from .protocols import PROTOCOLS
from .results import (QUARANTINE, _STORE_ONLY, MissingRecord, StoreError, atomic_write_bytes, atomic_write_json, config_hash, default_results_dir,
                      hardware, result_path, store_only)
from .train import show_progress

EXPERIMENTS = Registry("experiment")

EPS_D_TABLE2 = (0.03, 0.1, 1.0, "tau")
#: (dataset, model, eps_w) rows of Table 2 (Sec. 5.1: eps_w = 0.5, except 1 for MNIST LR).
TABLE2_ROWS = (("mnist", "lr", 1.0), ("mnist", "nn", 0.5), ("mnist", "cnn", 0.5), ("cifar10", "resnet18", 0.5), ("tinyimagenet", "resnet34", 0.5))
MNIST_MODELS = ("lr", "nn", "cnn")
TABLE5_EPS_W = (0.01, 0.1, 1.0)
FIG3_EPS_W = (0.1, 0.25, 0.5, 1.0, 2.0)
FIG3_EPS_W_SHORT = (0.1, 0.5, 2.0)  # NN and CNN below the paper profile (each NN cell at eps_d = 1 costs about a minute on a CPU)
FIG7_EPS_D = (0.03, 0.1, 0.3, 1.0, 3.0)
FULL_DATA = ("cifar10", "tinyimagenet")


@dataclass(frozen=True)
class Cell:
    """One unit of work: a target (``kind="target"``), a GC run (``"gc"``), a baseline
    attack (``"attack"``, named by ``attack``) or GC / GC-c (``clip``) followed by every
    defense (``"defense"``). ``eps_w`` is the target's strength: GradPC / RandomPC radius,
    label-flip test error (``target="labelflip"``) or TGDA's ε_d (``target="tgda"``).
    ``eps_d="mt"`` means the budget MT used to reach the same target (Table 6)."""

    kind: str
    dataset: str
    model: str
    eps_w: float
    target: str = "gradpc"
    noise: str = "parameter"
    scale: float = 1.0
    eps_d: float | str | None = None
    seed: int = 0
    gc_options: tuple = ()
    attack: str = "gc"
    clip: bool = False
    protocol: str = "paper"

    def label(self) -> str:
        what = f"{self.dataset}/{self.model} {self.target} " + (self.eps_w if isinstance(self.eps_w, str) else f"{self.eps_w:g}")
        if self.kind == "target":
            return what + (f"({self.noise})" if self.target == "randompc" else "")
        how = {"gc": "GC", "attack": self.attack.upper(), "defense": "GC-c+defenses" if self.clip else "GC+defenses"}[self.kind]
        name = getattr(self.protocol, "name", self.protocol)
        proto = "" if name == "paper" else f" [{name}]"
        return f"{what} {how} eps_d={self.eps_d} seed={self.seed}" + (f" scale={self.scale:g}" if self.scale != 1 else "") + proto

    def resolve(self, profile="cpu", *, data_root: str | None = None, device: str = "auto") -> CellSpec:
        """This cell at ``profile`` on ``device`` (``"auto"`` resolved here) as a :class:`CellSpec`."""
        from .train import resolve_device

        if self.eps_d == "mt":
            raise PoisonlibError(f"cell {self.label()}: eps_d='mt' is MT's budget, known once MT's cell has run; run it through run_experiment")
        check_choice("kind", self.kind, _KINDS)
        return CellSpec(self, get_profile(profile), data_root, str(resolve_device(device)))


@dataclass(frozen=True)
class Experiment:
    name: str
    description: str
    cells: object  # fn(profile) -> list[Cell]


def register_experiment(name: str, description: str):
    """Decorator registering ``fn(profile) -> list[Cell]`` as experiment ``name``."""

    def deco(fn):
        EXPERIMENTS.register(name)(lambda: Experiment(name, description, fn))
        return fn

    return deco


def list_experiments() -> list[str]:
    return EXPERIMENTS.names()


def get_experiment(name: str) -> Experiment:
    return EXPERIMENTS.get(name)()


def _gc_cells(prof, dataset, model, eps_w, eps_ds, *, scale=1.0, seeds=None, gc_options=()):
    seeds = prof.seeds_for(model) if seeds is None else seeds
    return [Cell("gc", dataset, model, eps_w, scale=scale, eps_d=e, seed=s, gc_options=gc_options) for e in eps_ds for s in seeds]


@register_experiment("table1", "clean and GradPC target accuracies on MNIST (eps_w = 0.5, 1)")
def _table1(prof):
    return [Cell("target", "mnist", m, w) for m in MNIST_MODELS for w in (0.5, 1.0)]


@register_experiment("table5", "RandomPC (per-parameter and L2 noise) and GradPC targets on MNIST at eps_w = 0.01, 0.1, 1")
def _table5(prof):
    kinds = (("gradpc", "parameter"), ("randompc", "parameter"), ("randompc", "l2"))
    return [Cell("target", "mnist", m, w, target=t, noise=nz) for m in MNIST_MODELS for w in TABLE5_EPS_W for t, nz in kinds]


@register_experiment("table2", "GC accuracy drops at eps_d = 0.03, 0.1, 1, tau(2) (Tables 2 and 4: mean and std over seeds)")
def _table2(prof):
    return [c for d, m, w in TABLE2_ROWS for c in _gc_cells(prof, d, m, w, EPS_D_TABLE2)]


@register_experiment("table4", "Table 2's GC cells (Table 4 reports their standard deviations)")
def _table4(prof):
    return _table2(prof)


@register_experiment("table8", "GC against w and the scaled target w/2 (last layer halved) on MNIST (CNN at the paper profile only)")
def _table8(prof):
    rows = TABLE2_ROWS[:3] if prof.full_grids else TABLE2_ROWS[:2]  # CNN w/2 at the paper profile only (CPU time)
    return [c for d, m, w in rows for s in (1.0, 0.5) for c in _gc_cells(prof, d, m, w, EPS_D_TABLE2[:3], scale=s)]


@register_experiment("fig3", "GC learning curves ||g(chi)|| at eps_d = 1 for several eps_w (one seed; NN / CNN: 3 eps_w below the paper profile)")
def _fig3(prof):
    def eps_ws(m):
        return FIG3_EPS_W if m == "lr" or prof.full_grids else FIG3_EPS_W_SHORT

    return [c for m in MNIST_MODELS for w in eps_ws(m) for c in _gc_cells(prof, "mnist", m, w, (1.0,), seeds=(0,))]


@register_experiment("fig7", "GC learning curves ||g(chi)|| at fixed eps_w for several eps_d (one seed)")
def _fig7(prof):
    return [c for d, m, w in TABLE2_ROWS[:3] for c in _gc_cells(prof, d, m, w, FIG7_EPS_D, seeds=(0,))]


@register_experiment("fig8", "clean / poisoned / perturbation images of GC poisons on MNIST (eps_d = 0.1)")
def _fig8(prof):
    return _gc_cells(prof, "mnist", "lr", 1.0, (0.1,), seeds=(0,))


@register_experiment("fig9", "clean / poisoned / perturbation images of GC poisons on CIFAR-10 (eps_d = 0.1)")
def _fig9(prof):
    return _gc_cells(prof, "cifar10", "resnet18", 0.5, (0.1,), seeds=(0,))


EPS_D_BASELINES = (0.03, 0.1, 1.0)
DEFENSE_EPS_D = (0.03, 0.1, 1.0)
LABEL_FLIP_ERRORS = (0.05, 0.1, 0.15)
MT_BUDGET = 1.0  # MT's budget when no other is given


def mt_budget(cell) -> float:
    """MT's budget against ``cell``'s target. Table 6: the paper's n_p / |D_tr| for that
    label-flip target (a setting taken from the paper, so that KKT, MT and GC are compared
    at the paper's eps_d even where MT stops earlier or never reaches the target)."""
    from . import paper

    if cell.target == "labelflip" and cell.eps_w in paper.TABLE6:
        return paper.TABLE6[cell.eps_w]["n_p_frac"]
    return MT_BUDGET
TABLE7_ROWS = (("mnist17", "lr", 1.0), ("mnist17", "nn", 0.5), ("mnist17", "cnn", 0.5))


def _attack_cells(prof, dataset, model, eps_w, attack, eps_ds, *, target="gradpc", seeds=(0,)):
    return [Cell("attack", dataset, model, eps_w, target=target, eps_d=e, seed=s, attack=attack) for e in eps_ds for s in seeds]


@register_experiment("table2_baselines", "TGDA and Gradient Matching at eps_d = 0.03, 0.1, 1 on Table 2's rows (one seed; below the paper "
                     "profile NN at 0.03 only)")
def _table2_baselines(prof):
    return [c for d, m, w in TABLE2_ROWS for a in ("tgda", "gm") for c in _attack_cells(prof, d, m, w, a, _mnist_nn_eps(prof, m, EPS_D_BASELINES))]


def _mnist_nn_eps(prof, model, eps_ds):
    """Below the paper profile the NN baseline / defense cells run at the smallest eps_d only (CPU time)."""
    return eps_ds if prof.full_grids or model != "nn" else eps_ds[:1]


@register_experiment("table10", "GC and GC-c (clipped to the clean range) on MNIST, then Influence / Sever / MaxUp (one seed; below the "
                     "paper profile NN at 0.03 only)")
def _table10(prof):
    return [Cell("defense", d, m, w, eps_d=e, clip=c) for d, m, w in TABLE2_ROWS[:3] for e in _mnist_nn_eps(prof, m, DEFENSE_EPS_D)
            for c in (False, True)]


@register_experiment("table3", "Table 10's cells (Table 3 reports their Sever columns)")
def _table3(prof):
    return _table10(prof)


@register_experiment("table6", "label-flip targets (test error 5/10/15 %) of LR on MNIST-17: MT (budget: the paper's n_p/n) until it "
                     "reaches them, KKT and GC at the eps_d MT used")
def _table6(prof):
    cells = []
    for err in LABEL_FLIP_ERRORS:
        cells.append(Cell("target", "mnist17", "lr", err, target="labelflip"))
        cells += _attack_cells(prof, "mnist17", "lr", err, "mt", (mt_budget(Cell("target", "mnist17", "lr", err, target="labelflip")),),
                               target="labelflip")
        cells += _attack_cells(prof, "mnist17", "lr", err, "kkt", ("mt",), target="labelflip")
        cells.append(Cell("gc", "mnist17", "lr", err, target="labelflip", eps_d="mt"))
    return cells


@register_experiment("table7", "GradPC targets on MNIST-17: KKT (LR only), MT and GC at eps_d = 0.03, 0.1, 1 (one seed; CNN at the paper "
                     "profile)")
def _table7(prof):
    cells = []
    for d, m, w in TABLE7_ROWS if prof.full_grids else TABLE7_ROWS[:2]:  # the CNN row at the paper profile (CPU time)
        cells.append(Cell("target", d, m, w))
        for a in (("kkt", "mt") if m == "lr" else ("mt",)):
            cells += _attack_cells(prof, d, m, w, a, EPS_D_BASELINES)
        cells += _gc_cells(prof, d, m, w, EPS_D_BASELINES, seeds=(0,))
    return cells


@register_experiment("table9", "the TGDA-poisoned model (TGDA at eps_d = 1) as GC target on MNIST: tau and GC drops (one seed; NN, CNN "
                     "at the paper profile)")
def _table9(prof):
    cells = []
    for d, m, _ in TABLE2_ROWS[: 3 if prof.full_grids else 1]:
        cells.append(Cell("target", d, m, 1.0, target="tgda"))
        cells += [Cell("gc", d, m, 1.0, target="tgda", eps_d=e) for e in EPS_D_TABLE2]
    return cells


def skip_reason(cell: Cell, profile, data_root: str | None, n_train: int | None = None, tau: float | None = None) -> str | None:
    """Why ``cell`` does not run at ``profile`` (``None`` when it does)."""
    prof = get_profile(profile)
    if cell.dataset in FULL_DATA and data_root is None:
        return f"not run at this profile: {cell.dataset} needs data_root"
    if cell.kind != "target" and not prof.full_grids and cell.model.startswith("resnet"):
        return f"not run at this profile: {cell.model} belongs to the paper profile"
    what = cell.attack if cell.kind == "attack" else cell.kind
    if what in prof.paper_only_attacks(cell.model):
        return f"not run at this profile: {'GC + defenses' if what == 'defense' else what.upper()} on {cell.model} belongs to the paper profile"
    cap = prof.max_poisons(cell.model, cell.kind)
    if cell.kind != "target" and cap is not None and n_train is not None:
        eps = tau if cell.eps_d == "tau" else cell.eps_d
        if cell.eps_d == "tau" and tau is not None and tau <= 0:
            return "not run: tau(2) of the target is 0 (every eps_d > 0 reaches it)"
        if eps is not None and n_poison_points(eps, n_train) > cap:
            return f"not run at this profile: n_p = {n_poison_points(eps, n_train)} > {cap} for {cell.model}"
    return None


@dataclass(frozen=True)
class CellSpec:
    """One resolved cell, what an executor ships to a worker: the :class:`Cell` (ε_d a number
    or ``"tau"``, which the cell resolves against its target's τ(2); never ``"mt"``), the
    :class:`~poisonlib.experiments.Profile` object and data root, and the device it runs on
    (``"cpu"``, ``"cuda"``; never ``"auto"``). Built by :meth:`Cell.resolve`.

    Its record lives at ``results/<experiment>/<key>.json``: :attr:`config` is exactly what
    the record is keyed by (its ``config`` entry) and :attr:`key` its hash (the record's
    ``config_hash``); :meth:`run` loads or computes the record."""

    cell: Cell
    profile: object
    data_root: str | None = None
    device: str = "cpu"

    @property
    def experiment(self) -> str:
        """The store folder of its record: ``target``, ``gc``, ``defense`` or the attack's name."""
        return self.cell.attack if self.cell.kind == "attack" else self.cell.kind

    def _args(self) -> tuple[tuple, dict]:
        """The (positional, keyword) arguments shared by the kind's ``*_config`` and ``*_cell``."""
        c = self.cell
        kw = dict(profile=self.profile, data_root=self.data_root, device=self.device, protocol=c.protocol, seed=c.seed)
        if c.kind == "target":
            return (c.dataset, c.model, c.eps_w), dict(kw, target=c.target, noise=c.noise, scale=c.scale)
        if c.kind == "attack":
            return (c.dataset, c.model, c.eps_w, c.eps_d, c.attack), dict(kw, target=c.target)
        if c.kind == "defense":
            return (c.dataset, c.model, c.eps_w, c.eps_d), dict(kw, clip=c.clip)
        return (c.dataset, c.model, c.eps_w, c.eps_d), dict(kw, target=c.target, scale=c.scale, gc_options=dict(c.gc_options) or None)

    @property
    def config(self) -> dict:
        """What its record is keyed by (``record["config"]``)."""
        a, kw = self._args()
        return _KINDS[self.cell.kind][0](*a, **kw)

    @property
    def key(self) -> str:
        """Its record's ``config_hash``."""
        return config_hash(self.config)

    def path(self, results_dir: str | None = None) -> str:
        """Where its record lives in the store ``results_dir``."""
        return result_path(self.experiment, self.config, results_dir)

    def run(self, *, results_dir=None, force: bool = False, progress=None) -> dict:
        """Load its record from the store ``results_dir``, or compute and store it."""
        a, kw = self._args()
        if self.cell.kind == "gc":
            kw["keep_poisons"] = _defended(self.cell)
        return _KINDS[self.cell.kind][1](*a, **kw, results_dir=results_dir, force=force, progress=progress)


#: Per kind: (what its record is keyed by, the cached function that computes it).
_KINDS = {"target": (target_config, target_cell), "gc": (gc_config, gc_cell), "attack": (attack_config, attack_cell),
          "defense": (defense_config, defense_cell)}


def run_cell(cell: Cell, profile="cpu", *, data_root=None, device="auto", results_dir=None, force=False, progress=None) -> dict:
    """Run (or load) one cell under its protocol; returns its results-store record."""
    return cell.resolve(profile, data_root=data_root, device=device).run(results_dir=results_dir, force=force, progress=progress)


def _defended(cell: Cell) -> bool:
    """Whether Table 10 reuses this GC cell's poisons (then they are kept on disk, so that the
    defense cells need not recompute GC): plain GradPC targets on MNIST at its eps_d."""
    return (cell.kind == "gc" and cell.dataset == "mnist" and cell.target == "gradpc" and cell.scale == 1.0 and not cell.gc_options
            and cell.eps_d in DEFENSE_EPS_D and (cell.model, cell.eps_w) in {(m, w) for _, m, w in TABLE2_ROWS[:3]})


def axis_list(value, name: str = "axis") -> list | None:
    """A grid axis as a list: ``None`` (the grid's own values), a list, or the string papermill's
    ``-p`` passes (``"['lr']"``, ``"[0.3, 3]"``, ``"lr,nn"``, ``"0.3"``). Numbers become floats
    (``3`` and ``3.0`` are one ε_d); ``"tau"`` and names stay strings."""
    import ast

    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if text in ("", "None", "null"):
            return None
        try:
            value = ast.literal_eval(text) if text[0] in "[(" else [v.strip() for v in text.split(",") if v.strip()]
        except (ValueError, SyntaxError) as e:
            raise PoisonlibError(f"{name} = {value!r} is not a list (e.g. \"['lr']\" or \"[0.3, 3]\")") from e
    if not isinstance(value, (list, tuple)):
        value = [value]
    out = []
    for v in value:
        if isinstance(v, str):
            try:
                v = float(v)
            except ValueError:
                pass
        out.append(float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v)
    if not out:
        raise PoisonlibError(f"{name} is empty; give at least one value or None for the grid's own")
    return list(dict.fromkeys(out))


def grid_rows(table_rows, models=None) -> list[tuple]:
    """The ``(dataset, model, eps_w)`` rows of a table (e.g. :data:`TABLE2_ROWS`) whose model is in
    ``models`` (a list or its papermill string; ``None``: all)."""
    keep = axis_list(models, "models")
    return [r for r in table_rows if keep is None or r[1] in keep]


def restrict(cells: list[Cell], *, models=None, eps_ds=None, eps_ws=None, seeds=None) -> list[Cell]:
    """``cells`` on other grid axes, each ``None`` (keep the grid's) or a list (:func:`axis_list`).

    ``models`` keeps the cells of those models; ``eps_ds`` replaces the ε_d of every attack cell
    (those at ε_d = ``"mt"``, Table 6's, keep it); ``eps_ws`` the radius of every GradPC / RandomPC
    target; ``seeds`` the seeds of the attack cells (the targets keep theirs)."""
    models, eps_ds = axis_list(models, "models"), axis_list(eps_ds, "eps_ds")
    eps_ws, seeds = axis_list(eps_ws, "eps_ws"), axis_list(seeds, "seeds")
    if models is not None:
        have = list(dict.fromkeys(c.model for c in cells))
        for m in models:
            check_choice("model", m, have)
        cells = [c for c in cells if c.model in models]
    if eps_ds is not None:
        for e in eps_ds:
            if e != "tau" and not (isinstance(e, float) and e > 0):
                raise PoisonlibError(f"eps_d = {e!r} is not allowed; give positive numbers or 'tau'")
        cells = [replace(c, eps_d=e) if c.eps_d not in (None, "mt") else c for c in cells for e in eps_ds]
    if eps_ws is not None:
        cells = [replace(c, eps_w=w) if c.target in ("gradpc", "randompc") else c for c in cells for w in eps_ws]
    if seeds is not None:
        cells = [replace(c, seed=int(s)) if c.kind != "target" else c for c in cells for s in seeds]
    return list(dict.fromkeys(cells))


def run_experiment(name: str, profile="cpu", *, data_root=None, device="auto", results_dir=None, force=False, progress=None,
                   cells: list[Cell] | None = None, seed: int = 0, protocol: str = "paper", eps_w: str | None = None,
                   models=None, eps_ds=None, eps_ws=None, seeds=None, executor=None) -> list[dict]:
    """Run every cell of experiment ``name`` that ``profile`` allows, with a progress bar.

    ``protocol`` (``"paper"``, ``"released"``; see :mod:`poisonlib.protocols`) is given to
    every cell of the grid (cells passed in ``cells`` keep their own). ``eps_w="calibrated"``
    replaces the radius of every GradPC target by the calibrated one (the paper's GradPC drop
    reached on the validation split, :func:`~poisonlib.attacks.gradpc.calibrate_eps_w`); below
    the full grids those cells run one seed.

    ``seed`` is added to every cell's seed (GC cells: the poisons' start and the
    retraining; target cells: the clean model and the corruption), so that
    ``seed=10`` repeats the whole grid independently.

    ``models``, ``eps_ds``, ``eps_ws``, ``seeds`` put the grid on other axes (:func:`restrict`;
    ``None`` keeps the profile's), e.g. ``eps_ds=[0.3, 3], models=["lr"]``.

    ``executor`` (:mod:`poisonlib.executors`; default: serially in this process) runs the
    cells: they are resolved here, grouped in rounds by their dependencies (a target before
    the cells attacking it, MT before the cells at the budget it used) and each round is
    dispatched at once; this process alone writes the store of workers that share no
    filesystem with it. A cell that raises becomes a ``"failed"`` row (its traceback on
    stderr) and the others go on; a rerun resumes from the store.

    Returns one row per cell: the cell's fields, ``status`` (``"computed"``,
    ``"cached"``, ``"skipped"``, ``"missing"`` or ``"failed"``), ``reason`` for the last
    three, and otherwise the record's ``metrics`` (flattened; ``eps_d_used`` is the realised
    n_p / n), ``wall_time_s``, ``record`` (its config hash), ``git_commit`` and ``device``.
    """
    from .executors import LocalExecutor, get_executor

    exp = get_experiment(name)
    prof = get_profile(profile)
    check_choice("protocol", protocol, PROTOCOLS)
    cells = [replace(c, protocol=protocol) for c in exp.cells(prof)] if cells is None else cells
    cells = restrict(cells, models=models, eps_ds=eps_ds, eps_ws=eps_ws, seeds=seeds)
    if eps_w is not None:
        cells = calibrated_cells(cells, prof) if eps_w == "calibrated" else [replace(c, eps_w=eps_w) for c in cells]
    if seed:
        cells = [replace(c, seed=c.seed + seed) for c in cells]
    if isinstance(executor, str):  # a name: built here, closed when the grid is done
        with get_executor(executor) as ex:
            return run_experiment(name, prof, data_root=data_root, device=device, results_dir=results_dir, force=force, progress=progress,
                                  cells=cells, protocol=protocol, executor=ex)
    ex = executor if executor is not None and not _STORE_ONLY[0] else LocalExecutor()  # reading the store only: here
    run = _Run(name, prof, data_root=data_root, device=ex.device(device), results_dir=results_dir, executor=ex,
               progress=progress)
    return run.execute(cells, force=force)


@dataclass(frozen=True, eq=False)
class Task:
    """What a worker runs (:func:`execute`): the resolved cell (:class:`CellSpec`), whether to
    recompute it (``force``), the store (``results_dir``; ``None`` with ``isolated``: a private
    temporary one) and, when ``isolated``, the store files it reads as ``(path, bytes)``."""

    spec: CellSpec
    force: bool = False
    results_dir: str | None = None
    isolated: bool = False
    files: tuple = ()


def execute(task: Task) -> dict:
    """Run ``task``'s cell; returns ``{"record": ..., "files": {path: bytes}}``: with
    ``isolated``, against a temporary store seeded with ``task.files``, whose new files
    (paths relative to the store) come back for the driver to write."""
    if not task.isolated:
        return {"record": task.spec.run(results_dir=task.results_dir, force=task.force, progress=False), "files": {}}
    with tempfile.TemporaryDirectory(prefix="poisonlib-cell-") as store:
        for rel, blob in task.files:
            path = os.path.join(store, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(blob)
        rec = task.spec.run(results_dir=store, force=task.force, progress=False)
        files = {rel: blob for rel, blob in _store_files(store).items() if dict(task.files).get(rel) != blob}
    if "poisons" in rec:
        rec["poisons"] = os.path.relpath(rec["poisons"], store)
    return {"record": rec, "files": files}


def _store_files(store: str) -> dict:
    """Every file under ``store`` (but quarantined and temporary ones) as ``{relative path: bytes}``."""
    out = {}
    for folder, dirs, names in os.walk(store):
        dirs[:] = [d for d in dirs if d != QUARANTINE]
        for n in names:
            if not n.startswith(".tmp-"):
                path = os.path.join(folder, n)
                with open(path, "rb") as f:
                    out[os.path.relpath(path, store)] = f.read()
    return out


MANIFESTS = "manifests"


@dataclass
class _Node:
    """A cell of the run: its grid row (``None``: only a dependency), what it waits for, its outcome."""

    cell: Cell
    row: dict | None = None
    force: bool = False
    deps: dict = field(default_factory=dict)  # role ("target", "mt") -> Cell
    status: str | None = None  # "record", "skipped", "missing", "failed"
    reason: str | None = None
    record: dict | None = None
    files: tuple = ()  # (path, bytes) of the store files its dependents read (isolated workers)
    level: int = 0  # its round: 1 + its dependencies' latest
    resolved: Cell | None = None  # the cell as run (eps_d = MT's for "mt")
    counted: bool = False


class _Run:
    """The driver of one :func:`run_experiment` call: plan, rounds, dispatch, store, rows."""

    def __init__(self, name, prof, *, data_root, device, results_dir, executor, progress):
        self.name, self.prof, self.data_root, self.device = name, prof, data_root, device
        self.results_dir, self.ex, self.progress = results_dir, executor, progress
        self.nodes: dict = {}
        self.counts = {"done": 0, "running": 0, "failed": 0}

    # ---------------------------------------------------------------- plan
    def add(self, cell: Cell, *, row: bool, force: bool = False) -> _Node:
        """The node of ``cell`` (created with its dependencies on first sight)."""
        node = self.nodes.get(cell)
        if node is None:
            node = self.nodes[cell] = _Node(cell)
            reason = skip_reason(cell, self.prof, self.data_root)
            if reason is not None:
                node.status, node.reason = "skipped", reason
            else:
                node.deps = self.dependencies(cell)
                node.level = 1 + max((self.add(d, row=False).level for d in node.deps.values()), default=-1)
        if row:
            node.row = {**asdict(cell), "profile": self.prof.name, "protocol": getattr(cell.protocol, "name", cell.protocol)}
            node.force = node.force or force
        return node

    def dependencies(self, cell: Cell) -> dict:
        """The cells ``cell`` waits for: MT's for ``eps_d="mt"``; the target where the profile caps
        the poison set (the cap needs its n and τ) or the workers would each build it."""
        deps = {}
        if cell.eps_d == "mt":
            deps["mt"] = _mt_cell(cell)
        if cell.kind != "target" and (self.prof.max_poisons(cell.model, cell.kind) is not None or self.ex.parallel):
            deps["target"] = Cell("target", cell.dataset, cell.model, cell.eps_w, target=cell.target, scale=cell.scale, seed=0,
                                  protocol=cell.protocol)
        return deps

    # ---------------------------------------------------------------- run
    def execute(self, cells: list[Cell], *, force: bool) -> list[dict]:
        order = [self.add(c, row=True, force=force).cell for c in cells]
        self.bar = tqdm(total=len(set(order)), desc=f"{self.name} [{self.prof.name}]", disable=not show_progress(self.progress))
        self.lines = self.bar.disable and self.progress is not False and os.environ.get("POISONLIB_PROGRESS") != "0"
        try:
            for n in list(self.nodes.values()):  # skipped before any run
                self.finish(n)
            for level in sorted({n.level for n in self.nodes.values()}):
                self.round([n for n in self.nodes.values() if n.level == level and n.status is None])
        finally:
            self.bar.close()
        return [self.row_of(self.nodes[c]) for c in order]

    def round(self, nodes: list[_Node]) -> None:
        """Resolve the cells of one round against their dependencies' outcomes, then run the rest."""
        todo: dict = {}  # resolved cell -> its nodes (two grid cells may resolve to one)
        for node in nodes:
            node.resolved = cell = self.resolve(node)
            if node.status is None and not (self.ex.parallel and not node.force and self.lookup(node, cell)):
                todo.setdefault(cell, []).append(node)
            self.finish(node)
        self.dispatch(todo)

    def resolve(self, node: _Node) -> Cell:
        """``node``'s cell with ε_d = MT's for ``"mt"``; sets its status if a dependency or the
        profile's poison cap rules it out."""
        cell, deps = node.cell, {k: self.nodes[c] for k, c in node.deps.items()}
        for dep in deps.values():
            if dep.status != "record":
                node.status, node.reason = _inherit(dep)
                return cell
        if "mt" in deps:
            m = deps["mt"].record["metrics"]
            if m["n_poison"] == 0:
                node.status, node.reason = "skipped", "not run: MT reached the target without poisons"
                return cell
            cell = replace(cell, eps_d=round(m["eps_d"], 6))
        if "target" in deps and self.prof.max_poisons(cell.model, cell.kind) is not None:
            info = deps["target"].record["metrics"]
            reason = skip_reason(cell, self.prof, self.data_root, n_train=info["n_train"], tau=info["tau2"])
            if reason is not None:
                node.status, node.reason = "skipped", reason
        return cell

    def lookup(self, node: _Node, cell: Cell) -> bool:
        """Whether the store already holds ``cell``'s record (then ``node`` takes it)."""
        try:
            with store_only():
                rec = run_cell(cell, self.prof, data_root=self.data_root, device=self.device, results_dir=self.results_dir, progress=False)
        except MissingRecord:
            return False
        except PoisonlibError:  # e.g. a store file it refuses to read: the worker reports it
            return False
        self.land(node, {"record": rec, "files": {}})
        return True

    def task(self, nodes: list[_Node], cell: Cell) -> Task:
        """The task of ``cell``; an isolated one carries the files its dependencies made."""
        isolated = self.ex.parallel and self.ex.isolated
        store = None if isolated else (os.path.abspath(self.results_dir or default_results_dir()) if self.ex.parallel else self.results_dir)
        files = dict(f for n in nodes for c in n.deps.values() for f in self.nodes[c].files) if isolated else {}
        return Task(cell.resolve(self.prof, data_root=self.data_root, device=self.device), force=any(n.force for n in nodes), results_dir=store,
                    isolated=isolated, files=tuple(sorted(files.items())))

    def dispatch(self, todo: dict) -> None:
        """Run the cells of ``todo`` (resolved cell -> nodes) through the executor; file each outcome as it arrives."""
        tasks = [self.task(nodes, cell) for cell, nodes in todo.items()]
        left = len(tasks)
        self.counts["running"] = left if self.ex.parallel else min(left, 1)
        self.postfix()
        for task, out in self.ex.map(execute, tasks):
            left -= 1
            self.counts["running"] = left if self.ex.parallel else min(left, 1)
            for node in todo[task.spec.cell]:
                self.outcome(node, task, out)
                self.finish(node)

    def outcome(self, node: _Node, task: Task, out) -> None:
        """File the result (or :class:`~poisonlib.executors.TaskError`) of ``node``'s task."""
        from .executors import TaskError

        if not isinstance(out, TaskError):
            self.land(node, out)
            return
        exc = out.exc
        if isinstance(exc, StoreError):  # a store that cannot be written fails every cell: stop with its message
            raise exc
        if isinstance(exc, MissingRecord):  # results.store_only(): list the cell, compute nothing
            proto = getattr(node.cell.protocol, "name", node.cell.protocol)
            node.status, node.reason = "missing", f"not in the store: {run_command(self.name, self.prof.name, proto, self.data_root)}"
        elif isinstance(exc, PoisonlibError):
            node.status, node.reason = "skipped", f"not run: {exc}"
        else:
            node.status, node.reason = "failed", out.last_line
            print(f"poisonlib: cell {task.spec.cell.label()} failed:\n{out.traceback}", file=sys.stderr, flush=True)

    def land(self, node: _Node, out: dict) -> None:
        """Keep a finished cell's record; write the files an isolated worker made into the store."""
        rec, root = out["record"], self.results_dir or default_results_dir()
        if out["files"]:
            for rel, blob in out["files"].items():
                atomic_write_bytes(blob, os.path.join(root, rel))
            atomic_write_json(sorted(out["files"]), _manifest(root, rec))
        if "poisons" in rec and not os.path.isabs(rec["poisons"]):
            rec = {**rec, "poisons": os.path.join(root, rec["poisons"])}
        node.status, node.record = "record", rec
        if self.ex.parallel and self.ex.isolated:
            node.files = tuple(_read_files(root, out["files"] or _read_manifest(root, rec)).items())

    # ---------------------------------------------------------------- progress and rows
    def finish(self, node: _Node) -> None:
        """Count a finished grid cell, and print its line where no bar is drawn (computed, cached, failed)."""
        if node.row is None or node.counted or node.status is None:
            return
        node.counted = True
        self.counts["done"] += 1
        self.counts["failed"] += node.status == "failed"
        self.bar.update(1)
        self.postfix()
        if node.status in ("record", "failed"):
            _cell_line(self.lines, self.name, self.row_of(node), self.counts, self.bar.total)

    def postfix(self) -> None:
        self.bar.set_postfix_str(f"done {self.counts['done']}, running {self.counts['running']}, failed {self.counts['failed']}")

    def row_of(self, node: _Node) -> dict:
        row = dict(node.row)
        if node.cell.eps_d == "mt" and "mt" in node.deps:
            row["eps_d_from"] = "mt"
        if node.status != "record":
            return {**row, "status": node.status, "reason": node.reason}
        return {**row, **record_row(node.record)}


def record_row(rec: dict) -> dict:
    """The row fields of a finished cell's record: status, provenance and flattened metrics."""
    metrics = dict(rec["metrics"])
    if "eps_d" in metrics:  # the realised n_p / n; the row's eps_d stays the requested value ("tau" or a number)
        metrics["eps_d_used"] = metrics.pop("eps_d")
    metrics.pop("eps_d_requested", None)
    return {"status": "cached" if rec["cached"] else "computed", "wall_time_s": rec["wall_time_s"], "record": rec["config_hash"],
            "git_commit": rec["git_commit"], "device": rec["environment"].get("device"), "hardware": hardware(rec["environment"]), **metrics}


def _inherit(dep: _Node) -> tuple[str, str]:
    """The status and reason of a cell whose dependency ``dep`` did not finish."""
    if dep.status == "failed":
        return "failed", f"{dep.cell.label()} failed: {dep.reason}"
    return dep.status, dep.reason


def _manifest(root: str, rec: dict) -> str:
    return os.path.join(root, MANIFESTS, f"{rec['experiment']}-{rec['config_hash']}.json")


def _read_manifest(root: str, rec: dict) -> list:
    """The store files (relative paths) that the cell of ``rec`` made, if an isolated worker made it."""
    import json

    try:
        with open(_manifest(root, rec)) as f:
            names = json.load(f)
    except (OSError, ValueError):
        return []
    return [n for n in names if isinstance(n, str)] if isinstance(names, list) else []


def _read_files(root: str, names) -> dict:
    """``{name: bytes}`` of the store files ``names`` that exist."""
    out = {}
    for rel in names:
        try:
            with open(os.path.join(root, rel), "rb") as f:
                out[rel] = f.read()
        except OSError:
            continue
    return out


def _cell_line(on: bool, name: str, row: dict, counts: dict, n: int) -> None:
    """Where no progress bar is drawn (stderr not a terminal), one line on stderr per finished cell,
    with the counts of cells done, running and failed."""
    if on:
        what = row["reason"] if row["status"] == "failed" else f"{row.get('wall_time_s', 0):.1f} s"
        label = Cell(**{k: row[k] for k in Cell.__dataclass_fields__ if k in row}).label()
        state = f"running {counts['running']}, failed {counts['failed']}"
        print(f"{name} [{row['profile']}] {counts['done']}/{n} {row['status']}: {label} ({what}) [{state}]", file=sys.stderr, flush=True)


def run_command(experiment: str, profile: str, protocol: str = "paper", data_root: str | None = None) -> str:
    """The command line that computes the cells of ``experiment`` (stored ones are reused)."""
    return (f"poisonlib run {experiment} --profile {profile}" + (f" --protocol {protocol}" if protocol != "paper" else "")
            + (f" --data-root {data_root}" if data_root else ""))


def calibrated_cells(cells: list[Cell], prof) -> list[Cell]:
    """The GradPC-target cells of ``cells`` with ``eps_w="calibrated"`` (duplicates merged; one seed
    below the full grids); other cells (RandomPC, label-flip, TGDA targets) are left out."""
    out = [replace(c, eps_w="calibrated") for c in cells if c.target == "gradpc" and not isinstance(c.eps_w, str)]
    if not prof.full_grids:
        base = min((c.seed for c in out), default=0)
        out = [c for c in out if c.seed == base or c.kind == "target"]
    return list(dict.fromkeys(out))



def _mt_cell(cell: Cell) -> Cell:
    """The MT attack whose used ε_d replaces ``eps_d="mt"`` in ``cell`` (Table 6)."""
    return Cell("attack", cell.dataset, cell.model, cell.eps_w, target=cell.target, eps_d=mt_budget(cell), seed=cell.seed, attack="mt",
                protocol=cell.protocol)
