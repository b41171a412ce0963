"""The cells of the experiment grids: what one unit of work is, and how a grid's cells are cut.

A :class:`Cell` describes one unit of work of a table's grid (a target, a GC run, a baseline
attack, or GC followed by the defenses) at no profile in particular; :meth:`Cell.resolve`
binds it to a profile, a protocol, a data root and a device, once, and returns the
:class:`~poisonlib.pipeline.CellSpec` that runs it. :func:`skip_reason` says why a profile
leaves a cell out; :func:`restrict` puts a grid on other axes (models, ε_d, ε_w, seeds).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ._validation import PoisonlibError, check_choice
from .attacks.gc import n_poison_points
from .attacks.registry import get_target
from .pipeline import CellSpec
from .profiles import get_profile
from .protocols import Protocol, get_protocol
from .train import resolve_device

#: The kinds of cell: a target, a GC run, a baseline attack, GC (or GC-c) followed by every defense.
KINDS = ("target", "gc", "attack", "defense")
#: Datasets with no embedded copy: their cells need a data root.
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
    protocol: str | Protocol = "paper"

    def label(self) -> str:
        what = f"{self.dataset}/{self.model} {self.target} " + (self.eps_w if isinstance(self.eps_w, str) else f"{self.eps_w:g}")
        if self.kind == "target":
            return what + (f"({self.noise})" if self.target == "randompc" else "")
        how = {"gc": "GC", "attack": self.attack.upper(), "defense": "GC-c+defenses" if self.clip else "GC+defenses"}[self.kind]
        proto = "" if self.protocol_name == "paper" else f" [{self.protocol_name}]"
        return f"{what} {how} eps_d={self.eps_d} seed={self.seed}" + (f" scale={self.scale:g}" if self.scale != 1 else "") + proto

    @property
    def protocol_name(self) -> str:
        """The name of its protocol (a name, or a :class:`~poisonlib.protocols.Protocol` of the attribution walk)."""
        return self.protocol.name if isinstance(self.protocol, Protocol) else self.protocol

    def resolve(self, profile="cpu", *, data_root: str | None = None, device: str = "auto", **extra) -> CellSpec:
        """This cell at ``profile`` on ``device`` (``"auto"`` resolved here) as a :class:`CellSpec`:
        profile, protocol and device are resolved here, once. ``extra``: the spec's library-call
        knobs (``gc_epochs``, ``eps_w_norm``, ``options``)."""
        if self.eps_d == "mt":
            raise PoisonlibError(f"cell {self.label()}: eps_d='mt' is MT's budget, known once MT's cell has run; run it through run_experiment")
        check_choice("kind", self.kind, KINDS)
        return CellSpec(self, get_profile(profile), get_protocol(self.protocol), data_root, str(resolve_device(device)), **extra)


def skip_reason(cell: Cell, profile, data_root: str | None, n_train: int | None = None, tau: float | None = None,
                grid: str | None = None) -> str | None:
    """Why ``cell`` does not run at ``profile`` (``None`` when it does); ``grid``: the grid asking for it."""
    prof = get_profile(profile)
    if cell.dataset in FULL_DATA and data_root is None:
        return f"not run at this profile: {cell.dataset} needs data_root"
    if cell.kind != "target" and not prof.full_grids and cell.model.startswith("resnet"):
        return f"not run at this profile: {cell.model} belongs to the paper profile"
    what = cell.attack if cell.kind == "attack" else cell.kind
    if what in prof.paper_only_attacks(cell.model):
        return f"not run at this profile: {'GC + defenses' if what == 'defense' else what.upper()} on {cell.model} belongs to the paper profile"
    if cell.eps_w == "calibrated" and not prof.calibrates(cell.model):
        return f"not run at this profile: the calibrated ε_w on {cell.model} (cpu-full and paper calibrate it)"
    if cell.eps_w == "calibrated" and grid in prof.uncalibrated_grids:
        return f"not run at this profile: {grid} at the calibrated ε_w (cpu-full and paper run it)"
    cap = prof.max_poisons(cell.model, cell.kind)
    if cell.kind != "target" and cap is not None and n_train is not None:
        eps = tau if cell.eps_d == "tau" else cell.eps_d
        if cell.eps_d == "tau" and tau is not None and tau <= 0:
            return "not run: tau(2) of the target is 0 (every eps_d > 0 reaches it)"
        if eps is not None and n_poison_points(eps, n_train) > cap:
            return f"not run at this profile: n_p = {n_poison_points(eps, n_train)} > {cap} for {cell.model}"
    return None


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
        cells = [replace(c, eps_w=w) if get_target(c.target).radius else c for c in cells for w in eps_ws]
    if seeds is not None:
        cells = [replace(c, seed=int(s)) if c.kind != "target" else c for c in cells for s in seeds]
    return list(dict.fromkeys(cells))


def calibrated_cells(cells: list[Cell], prof) -> list[Cell]:
    """The GradPC-target cells of ``cells`` with ``eps_w="calibrated"`` (duplicates merged; one seed
    below the full grids); other cells (RandomPC, label-flip, TGDA targets) are left out."""
    out = [replace(c, eps_w="calibrated") for c in cells if c.target == "gradpc" and not isinstance(c.eps_w, str)]
    if not prof.full_grids:
        base = min((c.seed for c in out), default=0)
        out = [c for c in out if c.seed == base or c.kind == "target"]
    return list(dict.fromkeys(out))
