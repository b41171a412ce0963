"""Fault injection on the results store: pickled code planted in it, truncated / foreign
records and ``.pt`` files, a read-only store, a write that fails half-way, two writers on
one record, and a process killed with SIGKILL in the middle of a cell.

Each fault must end in one of two ways: the store heals (the bad file goes to
``results/quarantine/`` with one warning line and the cell is recomputed, giving the same
record as a clean run), or a one-line :class:`PoisonlibError` and nothing half-written.
"""

import errno
import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from poisonlib import PoisonlibError, results
from poisonlib.attacks.gc import gradient_canceling
from poisonlib.experiments import clean_and_target, gc_cell, load_for_profile
from poisonlib.results import atomic_write_json, cached_run, load_result, load_torch, result_path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Evil:
    """A pickle that would create ``marker`` when loaded."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _plant(path, marker, fmt):
    """Overwrite ``path`` with a pickle whose loading would run ``touch marker``."""
    if fmt == "torch":  # torch.save's zip container around the payload
        torch.save({"clean": Evil(marker), "target": {}, "info": {}}, path)
    else:  # a bare pickle, protocol 2 (reaches the GLOBAL opcode)
        with open(path, "wb") as f:
            pickle.dump({"clean": Evil(marker)}, f, protocol=2)


def _quarantined(root):
    q = os.path.join(root, "quarantine")
    return sorted(os.listdir(q)) if os.path.isdir(q) else []


def _files(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


@pytest.fixture(scope="module")
def tiny():
    return load_for_profile("gaussian10", "smoke")


# --------------------------------------------------------------------------- 1. pickled code
@pytest.mark.parametrize("fmt", ["torch", "pickle"])
def test_pickled_code_in_the_store_is_refused_and_never_runs(fmt, tiny, results_dir, tmp_path):
    clean_and_target(tiny, "lr", 0.5, "smoke", device="cpu")
    (model_file,) = [p for p in (results_dir / "models").iterdir() if not p.name.startswith("clean-")]
    marker = tmp_path / "PWNED"
    _plant(model_file, marker, fmt)
    with pytest.raises(PoisonlibError, match="refusing to load .*could run code") as e:
        clean_and_target(tiny, "lr", 0.5, "smoke", device="cpu")
    assert "\n" not in str(e.value)
    assert not marker.exists()
    assert model_file.exists() and _quarantined(results_dir) == []  # left for the user to inspect, not loaded


def test_pickled_code_as_a_gc_checkpoint_is_refused(tiny, tmp_path):
    _, target, _ = clean_and_target(tiny, "lr", 0.5, "smoke", device="cpu")
    ck, marker = tmp_path / "ck.pt", tmp_path / "PWNED"
    _plant(ck, marker, "torch")
    with pytest.raises(PoisonlibError, match="refusing to load"):
        gradient_canceling(target, tiny.x_train, tiny.y_train, tiny.task, 0.05, epochs=3, checkpoint=str(ck))
    assert not marker.exists()


# --------------------------------------------------------------------------- 2. corrupt files heal
def _counting(calls):
    def compute():
        calls.append(1)
        return {"acc": 50.0 + len(calls)}

    return compute


@pytest.mark.parametrize("fault", ["truncated", "empty", "not_json", "a_list", "schema", "other_config"])
def test_a_bad_record_is_quarantined_and_recomputed(fault, tmp_path, capsys):
    cfg, calls, root = {"seed": 3}, [], str(tmp_path / "store")
    cached_run("demo", cfg, _counting(calls), results_dir=root)
    path = result_path("demo", cfg, root)
    text = open(path).read()
    bad = {"truncated": text[: len(text) // 2], "empty": "", "not_json": "\x00\xffgarbage", "a_list": "[1, 2]",
           "schema": json.dumps({k: v for k, v in json.loads(text).items() if k != "metrics"}),
           "other_config": json.dumps({**json.loads(text), "config_hash": "0" * 16})}[fault]
    with open(path, "w", encoding="latin1") as f:
        f.write(bad)
    capsys.readouterr()
    rec = cached_run("demo", cfg, _counting(calls), results_dir=root)
    assert len(calls) == 2 and not rec["cached"] and rec["metrics"] == {"acc": 52.0}
    assert load_result("demo", cfg, root)["metrics"] == {"acc": 52.0}  # the healed record
    (q,) = _quarantined(root)
    assert q.startswith("demo-" + os.path.basename(path))
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("poisonlib: warning:") and "recomputing" in err[0]


@pytest.mark.parametrize("fault", ["truncated", "garbage", "empty", "wrong_keys", "wrong_shapes"])
def test_a_bad_model_file_is_quarantined_and_rebuilt_identically(fault, tiny, results_dir, capsys):
    _, t1, info1 = clean_and_target(tiny, "lr", 0.5, "smoke", device="cpu")
    (path,) = [p for p in (results_dir / "models").iterdir() if not p.name.startswith("clean-")]
    blob = path.read_bytes()
    if fault == "wrong_keys":
        torch.save({"something": torch.ones(2)}, path)
    elif fault == "wrong_shapes":
        torch.save({"clean": {"0.weight": torch.ones(3, 3)}, "target": {"0.weight": torch.ones(3, 3)}, "info": {}}, path)
    else:
        path.write_bytes({"truncated": blob[: len(blob) // 2], "garbage": b"not a torch file", "empty": b""}[fault])
    capsys.readouterr()
    _, t2, info2 = clean_and_target(tiny, "lr", 0.5, "smoke", device="cpu")
    assert info2 == info1
    assert all(torch.equal(a, b) for a, b in zip(t1.state_dict().values(), t2.state_dict().values()))
    assert len(_quarantined(results_dir)) == 1 and path.exists()
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_a_truncated_gc_checkpoint_restarts_the_run_with_the_same_result(tiny, tmp_path):
    _, target, _ = clean_and_target(tiny, "lr", 0.5, "smoke", device="cpu")
    kw = dict(epochs=30, seed=1, box=tiny.feature_box)
    ref = gradient_canceling(target, tiny.x_train, tiny.y_train, tiny.task, 0.05, **kw)
    ck = tmp_path / "ckpts" / "gc.pt"
    gradient_canceling(target, tiny.x_train, tiny.y_train, tiny.task, 0.05, checkpoint=str(ck), checkpoint_every=10, **{**kw, "epochs": 10})
    ck.write_bytes(ck.read_bytes()[:100])
    res = gradient_canceling(target, tiny.x_train, tiny.y_train, tiny.task, 0.05, checkpoint=str(ck), checkpoint_every=10, **kw)
    assert torch.equal(res.x, ref.x) and os.listdir(tmp_path / "quarantine")


def test_load_torch_reads_good_files_and_reports_missing_ones(tmp_path):
    p = tmp_path / "m" / "ok.pt"
    results.atomic_torch_save({"a": torch.arange(3)}, str(p))
    assert torch.equal(load_torch(str(p), ("a",))["a"], torch.arange(3))
    assert load_torch(str(tmp_path / "none.pt")) is None


# --------------------------------------------------------------------------- 3. writes that fail
def test_a_read_only_store_gives_one_clean_line(tmp_path, monkeypatch, capsys):
    store = tmp_path / "ro"
    store.mkdir()
    if os.geteuid() == 0:  # root writes through 0o555: refuse the write the way a read-only mount does
        def refuse(*a, **k):
            raise OSError(errno.EROFS, "Read-only file system")

        monkeypatch.setattr(results.tempfile, "mkstemp", refuse)
    else:
        store.chmod(0o555)
    try:
        with pytest.raises(PoisonlibError, match="cannot write .*Read-only file system|Permission denied") as e:
            cached_run("demo", {"seed": 1}, lambda: {"acc": 1.0}, results_dir=str(store))
        assert "\n" not in str(e.value)
        monkeypatch.setenv("POISONLIB_RESULTS", str(store))
        from poisonlib.cli import main

        assert main(["run", "table1", "--profile", "smoke", "--device", "cpu"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("poisonlib: error: cannot write"), err
    finally:
        store.chmod(0o755)
    assert _files(store) == []


@pytest.mark.parametrize("kind", ["json", "torch"])
def test_a_write_that_fails_half_way_leaves_no_partial_file(kind, tmp_path, monkeypatch):
    path = tmp_path / "s" / ("r.json" if kind == "json" else "m.pt")

    def half_then_fail(obj, f, *a, **k):
        f.write("{\"experiment\": \"demo\", \"conf" if kind == "json" else b"PK\x03\x04partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    if kind == "json":
        monkeypatch.setattr(results.json, "dump", half_then_fail)
        with pytest.raises(PoisonlibError, match="No space left"):
            cached_run("demo", {"seed": 1}, lambda: {"acc": 1.0}, results_dir=str(path.parent))
    else:
        def save(obj, target, *a, **k):
            with open(target, "wb") as f:
                half_then_fail(obj, f)

        monkeypatch.setattr(results.torch, "save", save)
        with pytest.raises(PoisonlibError, match="No space left"):
            results.atomic_torch_save({"a": torch.ones(2)}, str(path))
    assert [f for f in _files(tmp_path)] == []


WRITER = textwrap.dedent("""
    import sys
    from poisonlib.results import cached_run
    root, tag = sys.argv[1], int(sys.argv[2])
    for i in range(25):
        cached_run("race", {"seed": 0}, lambda: {"who": tag, "i": i, "pad": [tag] * 20000}, results_dir=root, force=True)
""")


def test_two_processes_writing_one_record_never_tear_it(tmp_path):
    root = str(tmp_path / "store")
    env = {**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, root, str(t)], env=env) for t in (1, 2)]
    path, seen = result_path("race", {"seed": 0}, root), set()
    while any(p.poll() is None for p in procs):
        if os.path.exists(path):
            with open(path) as f:
                rec = json.load(f)  # never a torn record: each read parses
            assert results.check_record(rec, "race", {"seed": 0}) is None
            assert set(rec["metrics"]["pad"]) == {rec["metrics"]["who"]}
            seen.add(rec["metrics"]["who"])
        time.sleep(0.005)
    assert [p.returncode for p in procs] == [0, 0]
    assert os.listdir(os.path.dirname(path)) == [os.path.basename(path)]  # no temporary files left
    assert seen  # the reader saw records while the writers ran


# --------------------------------------------------------------------------- 4. SIGKILL mid-cell
CELL = textwrap.dedent("""
    import sys, torch
    torch.set_num_threads(int(sys.argv[2]))
    from poisonlib.experiments import gc_cell
    gc_cell("gaussian10", "lr", 0.5, 0.5, profile="smoke", device="cpu", gc_epochs=1000, results_dir=sys.argv[1], progress=False)
""")


def test_kill_9_mid_cell_then_rerun_gives_the_record_of_a_clean_run(tmp_path):
    store, clean_store = str(tmp_path / "killed"), str(tmp_path / "clean")
    env = {**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", CELL, store, str(torch.get_num_threads())], env=env)
    ckdir = os.path.join(store, "checkpoints")
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None and not (os.path.isdir(ckdir) and os.listdir(ckdir)):
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the cell finished before it could be killed"
    assert not os.path.exists(os.path.join(store, "gc"))  # killed mid-cell: no record yet, a checkpoint
    kw = dict(profile="smoke", device="cpu", gc_epochs=1000, progress=False)
    resumed = gc_cell("gaussian10", "lr", 0.5, 0.5, results_dir=store, **kw)
    fresh = gc_cell("gaussian10", "lr", 0.5, 0.5, results_dir=clean_store, **kw)
    assert resumed["config_hash"] == fresh["config_hash"] and resumed["metrics"] == fresh["metrics"]
    assert not os.listdir(ckdir)  # the checkpoint goes once the record is written


def test_a_partial_checkpoint_left_by_a_kill_during_its_write_goes_with_the_checkpoint(tmp_path):
    """kill -9 while ``atomic_torch_save`` writes leaves ``.tmp-*<name>``: removing the checkpoint removes it too."""
    from poisonlib.results import atomic_torch_save, remove_with_partials

    ck = tmp_path / "checkpoints" / "gc-abc.pt"
    atomic_torch_save({"epoch": 1}, str(ck))
    (tmp_path / "checkpoints" / ".tmp-k1llgc-abc.pt").write_bytes(b"half")
    (tmp_path / "checkpoints" / ".tmp-k2llgc-other.pt").write_bytes(b"another cell's")
    remove_with_partials(str(ck))
    assert sorted(os.listdir(tmp_path / "checkpoints")) == [".tmp-k2llgc-other.pt"]
    remove_with_partials(str(ck))  # nothing left to remove: no error
