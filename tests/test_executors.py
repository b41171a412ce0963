"""The executors run a grid's cells to the same records as a serial run: a process pool,
a local Ray cluster (loopback only) and submitit's local executor (SLURM's stand-in). A
failing cell is reported and the others land; a killed run resumes. The grid is a GradPC
target and the two smoke GC cells that attack it (a target -> GC dependency)."""

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from poisonlib import PoisonlibError
from poisonlib.executors import TaskError, get_executor, load_slurm_config
from poisonlib.runner import Cell, run_experiment

CELLS = [Cell("target", "mnist", "lr", 1.0), Cell("gc", "mnist", "lr", 1.0, eps_d=0.03), Cell("gc", "mnist", "lr", 1.0, eps_d=0.1)]
#: Fields of a record that say where and when it ran, not what it holds.
HOST_FIELDS = ("environment", "wall_time_s", "created", "git_commit", "cached")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def records(store) -> dict:
    """Every JSON record of ``store`` (``<experiment>/<hash>.json``) without its host fields."""
    out = {}
    for folder in sorted(os.listdir(store)):
        if folder in ("manifests", "quarantine", "slurm") or not os.path.isdir(os.path.join(store, folder)):
            continue
        for name in sorted(os.listdir(os.path.join(store, folder))):
            if name.endswith(".json") and not name.startswith((".", "reference-")):  # not a temporary file a killed run left
                with open(os.path.join(store, folder, name)) as f:
                    rec = json.load(f)
                out[f"{folder}/{name}"] = {k: v for k, v in rec.items() if k not in HOST_FIELDS}
    return out


def store_files(store) -> set:
    return {os.path.relpath(os.path.join(d, n), store) for d, _, ns in os.walk(store) for n in ns
            if not os.path.relpath(d, store).split(os.sep)[0] in ("manifests", "slurm")}


def run(store, executor=None, cells=CELLS):
    return run_experiment("table2", "smoke", device="cpu", cells=cells, progress=False, results_dir=str(store), executor=executor)


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    """The serial run's rows and store (the reference)."""
    store = tmp_path_factory.mktemp("serial")
    rows = run(store)
    assert [r["status"] for r in rows] == ["computed"] * 3
    return rows, store


def _same_as_serial(serial, store, rows):
    ref_rows, ref_store = serial
    assert [r["status"] for r in rows] == ["computed"] * 3
    assert [r["record"] for r in rows] == [r["record"] for r in ref_rows]
    assert records(store) == records(ref_store) and len(records(store)) == 3
    assert store_files(store) == store_files(ref_store)  # the target's models and the kept poisons landed too


def test_a_resolved_cell_names_its_record(serial):
    """CellSpec.key / .config / .experiment are exactly what the record is stored and keyed by;
    a spec pickles (what executors ship) and re-runs to the stored record."""
    import pickle

    rows, store = serial
    for cell, row in zip(CELLS, rows):
        spec = pickle.loads(pickle.dumps(cell.resolve("smoke", device="cpu")))
        assert spec.path(str(store)) == os.path.join(store, spec.experiment, spec.key + ".json")
        with open(spec.path(str(store))) as f:
            rec = json.load(f)
        assert spec.key == row["record"] == rec["config_hash"] and json.loads(json.dumps(spec.config)) == rec["config"]
        assert spec.run(results_dir=str(store), progress=False)["cached"]
    with pytest.raises(PoisonlibError, match="eps_d='mt'"):
        Cell("gc", "mnist", "lr", 1.0, eps_d="mt").resolve("smoke")
    with pytest.raises(PoisonlibError, match="kind"):
        Cell("gcc", "mnist", "lr", 1.0, eps_d=0.1).resolve("smoke")


#: A cell that fails (gradient_canceling gets an unknown keyword: TypeError) in any process.
BAD = Cell("gc", "mnist", "lr", 1.0, eps_d=0.1, gc_options=(("no_such_option", 1),))


def test_a_process_pool_gives_the_serial_records_and_reports_a_failing_cell(serial, tmp_path, capsys):
    with get_executor("local", jobs=2) as ex:
        rows = run(tmp_path / "j2", ex, cells=CELLS + [BAD])
        assert rows[3]["status"] == "failed" and rows[3]["reason"].startswith("TypeError") and "no_such_option" in rows[3]["reason"]
        err = capsys.readouterr().err
        assert "Traceback" in err and f"{BAD.label()} failed" in err
        _same_as_serial(serial, tmp_path / "j2", rows[:3])  # the other cells landed
        assert [r["status"] for r in run(tmp_path / "j2", ex, cells=CELLS + [BAD])] == ["cached"] * 3 + ["failed"]  # a rerun resumes


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is not installed (pip install poisonlib[ray])")
def test_a_local_ray_cluster_gives_the_serial_records(serial, tmp_path):
    with get_executor("ray", jobs=2) as ex:  # ray.init(num_cpus=2) on the loopback interface; isolated workers
        assert ex.isolated
        rows = run(tmp_path / "ray", ex)
    _same_as_serial(serial, tmp_path / "ray", rows)


@pytest.mark.skipif(importlib.util.find_spec("submitit") is None, reason="submitit is not installed (pip install poisonlib[slurm])")
def test_submitits_local_executor_gives_the_serial_records(serial, tmp_path):
    ex = get_executor("slurm", folder=str(tmp_path / "submitit"), cluster="local", timeout_min=10, poll_s=0.2)
    rows = run(tmp_path / "slurm", ex)
    _same_as_serial(serial, tmp_path / "slurm", rows)
    assert os.listdir(tmp_path / "submitit")  # the jobs' logs and pickles


def test_a_failed_dependency_fails_its_dependents(tmp_path, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("no target today")

    monkeypatch.setattr("poisonlib.pipeline.target_metrics", boom)
    rows = run(tmp_path / "d", get_executor("local"))
    assert rows[0]["status"] == "failed" and rows[0]["reason"] == "RuntimeError: no target today"
    assert all(r["status"] == "failed" and "no target today" in r["reason"] for r in rows[1:]), rows


KILLED = """
import sys
import torch
from poisonlib.runner import Cell, run_experiment
torch.set_num_threads(int(sys.argv[2]))  # the parent's count, so that its records match the serial run's to the last digit
cells = [Cell("target", "mnist", "lr", 1.0), Cell("gc", "mnist", "lr", 1.0, eps_d=0.03), Cell("gc", "mnist", "lr", 1.0, eps_d=0.1)]
run_experiment("table2", "smoke", device="cpu", cells=cells, progress=False, results_dir=sys.argv[1])
"""


def test_a_killed_run_resumes_to_the_same_records(serial, tmp_path):
    store = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    p = subprocess.Popen([sys.executable, "-c", KILLED, str(store), str(torch.get_num_threads())], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (store / "gc").is_dir() or not [n for n in os.listdir(store / "gc") if not n.startswith(".")]:  # the first GC record landed
            assert p.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
            time.sleep(0.05)
        os.kill(p.pid, signal.SIGKILL)
    finally:
        p.wait()
    assert len(records(store)) < 3
    with get_executor("local", jobs=2, isolated=True) as ex:  # workers in private stores: the driver writes what they made
        rows = run(store, ex)
    assert sorted(r["status"] for r in rows) == ["cached", "cached", "computed"]
    assert records(store) == records(serial[1])


def test_bad_executor_options_are_one_line_errors(tmp_path, monkeypatch):
    with pytest.raises(PoisonlibError, match="unknown executor 'dask'"):
        get_executor("dask")
    with pytest.raises(PoisonlibError, match=r"jobs \(-j\) must be an integer >= 1, got 0"):
        get_executor("local", jobs=0)
    monkeypatch.setitem(sys.modules, "ray", None)  # as if ray were not installed
    with pytest.raises(PoisonlibError, match=r"pip install poisonlib\[ray\]"):
        get_executor("ray")
    monkeypatch.setitem(sys.modules, "submitit", None)
    with pytest.raises(PoisonlibError, match=r"pip install poisonlib\[slurm\]"):
        get_executor("slurm")
    cfg = tmp_path / "slurm.yaml"
    cfg.write_text("partition: gpu\ngpus_per_node: 1\ntimeout_min: 30\n")
    assert load_slurm_config(str(cfg)) == {"partition": "gpu", "gpus_per_node": 1, "timeout_min": 30}
    cfg.write_text("partiton: gpu\n")
    with pytest.raises(PoisonlibError, match=r"unknown key\(s\) \['partiton'\]"):
        load_slurm_config(str(cfg))


def _fails(x):
    if x == 2:
        raise ValueError("two")
    return x * 10


def test_executors_map_results_and_errors():
    with get_executor("local", jobs=2) as ex:
        out = dict(ex.map(_fails, [1, 2, 3]))
    assert out[1] == 10 and out[3] == 30 and isinstance(out[2], TaskError)
    assert out[2].last_line == "ValueError: two" and isinstance(out[2].exc, ValueError) and "Traceback" in out[2].traceback
