"""Running a grid: cells resolved once, grouped in rounds by their dependencies, dispatched
through an executor, filed as they arrive, and returned as one row per cell.

:func:`run_experiment` runs the cells of a registered grid (:mod:`poisonlib.grids`) that
the profile allows, takes finished ones from the results store, and marks the others as
*not run at this profile* with the reason (no ``data_root`` for CIFAR-10, a poison set
larger than the profile's cap, ...), so that a table can say so.

>>> rows = run_experiment("table2", profile="smoke")      # doctest: +SKIP
>>> poisonlib run table2 --profile cpu                    # the same from a shell
"""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import asdict, dataclass, field, replace

from tqdm import tqdm

from ._validation import PoisonlibError, check_choice
from .cells import Cell, calibrated_cells, restrict, skip_reason
from .grids import get_experiment
from .grids.table6 import mt_cell
from .grids.table10 import defended
from .pipeline import CellSpec
from .profiles import get_profile
from .protocols import PROTOCOLS
from .results import (QUARANTINE, _STORE_ONLY, MissingRecord, StoreError, atomic_write_bytes, atomic_write_json, default_results_dir,
                      failure_reason, hardware, is_failed, store_only)
from .train import show_progress


def run_cell(cell: Cell, profile="cpu", *, data_root=None, device="auto", results_dir=None, force=False, progress=None) -> dict:
    """Run (or load) one cell under its protocol; returns its results-store record. A GC cell whose
    poisons Table 10 defends against keeps them on disk (:func:`~poisonlib.grids.table10.defended`)."""
    return cell.resolve(profile, data_root=data_root, device=device).run(results_dir=results_dir, force=force, progress=progress,
                                                                         keep_poisons=defended(cell))


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


def run_by_protocol(name: str, profile="cpu", *, protocols=("paper",), **kw) -> dict:
    """:func:`run_experiment` of grid ``name`` under each of ``protocols`` (a list, or what
    papermill passes: ``'["paper", "released"]'``, ``'paper'``): ``{protocol: rows}``, in that order."""
    from .protocols import protocol_list

    return {p: run_experiment(name, profile, protocol=p, **kw) for p in protocol_list(protocols)}


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
        return {"record": task.spec.run(results_dir=task.results_dir, force=task.force, progress=False, keep_poisons=defended(task.spec.cell)),
                "files": {}}
    with tempfile.TemporaryDirectory(prefix="poisonlib-cell-") as store:
        for rel, blob in task.files:
            path = os.path.join(store, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(blob)
        rec = task.spec.run(results_dir=store, force=task.force, progress=False, keep_poisons=defended(task.spec.cell))
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
            reason = skip_reason(cell, self.prof, self.data_root, grid=self.name)
            if reason is not None:
                node.status, node.reason = "skipped", reason
            else:
                node.deps = self.dependencies(cell)
                node.level = 1 + max((self.add(d, row=False).level for d in node.deps.values()), default=-1)
        if row:
            node.row = {**asdict(cell), "profile": self.prof.name, "protocol": cell.protocol_name}
            node.force = node.force or force
        return node

    def dependencies(self, cell: Cell) -> dict:
        """The cells ``cell`` waits for: MT's for ``eps_d="mt"``; the target where the profile caps
        the poison set (the cap needs its n and τ) or the workers would each build it."""
        deps = {}
        if cell.eps_d == "mt":
            deps["mt"] = mt_cell(cell)
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
            proto = node.cell.protocol_name
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
        if is_failed(rec):  # a cell that fails the same way whenever it runs: recorded, shown with its reason
            node.status, node.reason = "failed", f"{failure_reason(rec)} (recorded; --force recomputes it)"
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
