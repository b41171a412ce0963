"""The orchestration layer's shape (issue 21): each fact has one home.

* no module of ``poisonlib/`` is over 400 lines;
* a grid's ε_d list is written only in its own module of :mod:`poisonlib.grids`;
* a cell's profile is looked up by name once, its protocol once, whatever path it takes;
* no import circle between poisonlib's modules (imports inside functions included);
* attacks and targets are dispatched through their registries only.
"""

import ast
import os
import re

import pytest

import poisonlib
from poisonlib import grids, profiles, protocols

PKG = os.path.dirname(poisonlib.__file__)
MAX_LINES = 400


def _modules():
    for folder, _, names in os.walk(PKG):
        for n in names:
            if n.endswith(".py"):
                yield os.path.join(folder, n)


def _name(path):
    rel = os.path.relpath(path, os.path.dirname(PKG))[:-3].replace(os.sep, ".")
    return rel[: -len(".__init__")] if rel.endswith(".__init__") else rel


def test_no_module_is_over_400_lines():
    long = {os.path.relpath(p, PKG): n for p in _modules() if (n := sum(1 for _ in open(p, encoding="utf-8"))) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def _grid_eps_lists():
    out = {}
    for name in grids.__all__:
        mod = getattr(grids, name, None)
        if getattr(mod, "__name__", "").startswith("poisonlib.grids."):
            for attr in ("EPS_D",):
                v = getattr(mod, attr, None)
                if isinstance(v, tuple) and len(v) > 1:
                    out[f"{mod.__name__}.{attr}"] = v
    return out


def _literal(values) -> str:
    return "(" + ", ".join(repr(v).replace("'", '"') for v in values) + ")"


def test_each_grid_eps_list_is_written_only_in_its_module():
    lists = _grid_eps_lists()
    assert "poisonlib.grids.table2.EPS_D" in lists and lists["poisonlib.grids.table2.EPS_D"] == (0.03, 0.1, 1.0, "tau")
    offenders = []
    for path in _modules():
        if os.sep + "grids" + os.sep in path or path.endswith("profiles.py"):  # profiles hold their own cuts, not grids
            continue
        text = open(path, encoding="utf-8").read()
        for where, values in lists.items():
            if _literal(values) in text:
                offenders.append(f"{os.path.relpath(path, PKG)} restates {where} = {_literal(values)}")
    assert not offenders, offenders


def test_the_check_above_can_fail(tmp_path):
    """The literal the test looks for is the one a restatement would write."""
    assert _literal((0.03, 0.1, 1.0, "tau")) in 'EPS = (0.03, 0.1, 1.0, "tau")'


class _Counting(dict):
    def __init__(self, d):
        super().__init__(d)
        self.lookups = 0

    def __getitem__(self, k):
        self.lookups += 1
        return super().__getitem__(k)


@pytest.fixture
def counted(monkeypatch):
    profs, protos = _Counting(profiles.PROFILES), _Counting(protocols.PROTOCOLS)
    monkeypatch.setattr(profiles, "PROFILES", profs)
    monkeypatch.setattr(protocols, "PROTOCOLS", protos)
    return profs, protos


def test_a_cells_profile_and_protocol_are_resolved_once(counted, tmp_path):
    from poisonlib.cells import Cell
    from poisonlib.scheduler import run_cell

    profs, protos = counted
    run_cell(Cell("target", "mnist", "lr", 1.0), "smoke", device="cpu", results_dir=str(tmp_path), progress=False)
    assert (profs.lookups, protos.lookups) == (1, 1)
    profs.lookups = protos.lookups = 0
    run_cell(Cell("gc", "mnist", "lr", 1.0, eps_d=0.03, protocol="released"), "smoke", device="cpu", results_dir=str(tmp_path), progress=False)
    assert (profs.lookups, protos.lookups) == (1, 1)


def test_a_grid_resolves_its_profile_once_for_all_its_cells(counted, tmp_path):
    from poisonlib.scheduler import run_experiment

    profs, protos = counted
    rows = run_experiment("table1", "smoke", models=["lr"], device="cpu", results_dir=str(tmp_path), progress=False)
    assert len(rows) == 2 and profs.lookups == 1 and protos.lookups <= len(rows) + 1


def _imports():
    graph = {}
    for path in _modules():
        name = _name(path)
        pkg = name if path.endswith("__init__.py") else name.rsplit(".", 1)[0]
        deps = set()
        for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = pkg.rsplit(".", node.level - 1)[0] if node.level > 1 else pkg
                target = f"{base}.{node.module}" if node.module else base
                deps.add(target)
                deps.update(f"{target}.{a.name}" for a in node.names)
        graph[name] = deps
    mods = set(graph)
    return {m: {d for d in deps if d in mods and d != m} for m, deps in graph.items()}


def test_no_import_circle():
    graph = _imports()
    # a package's __init__ importing its own submodules is not a circle of the layers
    graph = {m: {d for d in ds if not d.startswith(m + ".")} for m, ds in graph.items()}
    state, cycle = {}, []

    def visit(m, stack):
        state[m] = 1
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                cycle.append(stack[stack.index(d):] + [d] if d in stack else [m, d])
            elif d not in state:
                visit(d, stack + [d])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycle, "import circles: " + "; ".join(" -> ".join(c) for c in cycle[:5])


def test_attacks_and_targets_are_dispatched_through_the_registry():
    """No if-chain (``if ... == "name": ... elif ... == "other"``) over attack or target names
    outside the registries: the pipeline, the CLI and the grids look them up by name."""
    pattern = re.compile(r'^\s*elif\s+.*\b(attack|target|name)\s*==\s*"(gc|tgda|gm|kkt|mt|gradpc|randompc|labelflip)"')
    allowed = {"attacks"}
    hits = []
    for path in _modules():
        rel = os.path.relpath(path, PKG)
        if rel.split(os.sep)[0] in allowed:
            continue
        for i, line in enumerate(open(path, encoding="utf-8"), 1):
            if pattern.search(line):
                hits.append(f"{rel}:{i}: {line.strip()}")
    assert not hits, hits
