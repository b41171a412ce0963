"""SIGINT and SIGTERM stop a whole run within seconds: the driver, its process-pool workers,
the Ray tasks of a local cluster, submitit's local jobs, and ``poisonlib run -j 2``. Afterwards no process the run
started is alive, no temporary file is left in the store, and a rerun resumes (finished
cells come from the store)."""

import importlib.util
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

psutil = pytest.importorskip("psutil")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SLOW = textwrap.dedent('''
    import os, sys, time
    from poisonlib.executors import get_executor
    from poisonlib.store import _atomic

    def slow(i):
        """Write cell<i>.bin slowly through the store's atomic writer (a killed write leaves .tmp-*)."""
        store = os.environ["STORE"]
        out = os.path.join(store, f"cell{i}.bin")
        if os.path.exists(out):
            return "cached"
        steps = int(os.environ["STEPS"]) if i < 2 else 1   # cells 0, 1 are slow; 2, 3 quick

        def write(tmp):
            open(os.path.join(store, f"started{i}"), "w").close()
            with open(tmp, "wb") as f:
                for _ in range(steps):
                    f.write(b"x" * 100); f.flush(); time.sleep(0.05)

        _atomic(out, write)
        return "computed"

    if __name__ == "__main__":
        name = sys.argv[1]
        opts = dict(cluster="local", folder=os.environ["STORE"] + "-slurm", poll_s=0.2) if name == "slurm" else dict(jobs=2)
        with get_executor(name, **opts) as ex:
            for t, r in ex.map(slow, range(4)):
                print(t, r, flush=True)
''')


def _prepare(tmp_path):
    """The slow script and an empty store under ``tmp_path``."""
    script, store = tmp_path / "slow.py", tmp_path / "store"
    script.write_text(SLOW)
    store.mkdir()
    return script, store


def _start(script, store, executor, steps):
    env = {**os.environ, "STORE": str(store), "STEPS": str(steps), "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen([sys.executable, str(script), executor], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # its own group: the signal goes to the driver only, as `kill PID` does


def _wait_for(cond, proc, timeout, what):
    deadline = time.monotonic() + timeout
    while not cond():
        assert proc.poll() is None, f"the run ended before {what}: {proc.stderr.read()[-2000:]}"
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.1)


def _stop_and_check(proc, sig, store, *, within=20.0):
    """Send ``sig`` to the driver; it must exit within ``within`` s and leave no process
    of its tree alive and no temporary file in ``store``."""
    tree = psutil.Process(proc.pid).children(recursive=True)
    assert tree, "the run started no worker"
    t0 = time.monotonic()
    os.kill(proc.pid, sig)
    try:
        proc.wait(timeout=within)
    finally:
        if proc.poll() is None:
            proc.kill()
    took = time.monotonic() - t0
    gone, alive = psutil.wait_procs(tree, timeout=max(5.0, within / 2))  # Ray's agents notice their raylet is gone within seconds
    leftovers = [f"{p.pid} {' '.join(p.cmdline()[:4])}" for p in alive if p.is_running()]
    for p in alive:  # clean up after a failure: only processes of this run
        p.kill()
    assert not leftovers, f"processes of the run outlived it: {leftovers}"
    assert took < within, took
    assert not [n for n in os.listdir(store) if n.startswith(".tmp-")], os.listdir(store)
    return took


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_a_process_pool_run_and_a_rerun_resumes(sig, tmp_path):
    script, store = _prepare(tmp_path)
    p = _start(script, store, "local", steps=2000)
    _wait_for(lambda: (store / "started0").exists() and (store / "started1").exists(), p, 90, "both workers at work")
    _stop_and_check(p, sig, store)
    assert not (store / "cell0.bin").exists() and not (store / "cell1.bin").exists()  # no partial record
    (store / "cell0.bin").write_bytes(b"done")  # a cell finished before the signal
    p = _start(script, store, "local", steps=1)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    assert sorted(out.split("\n")[:-1]) == ["0 cached", "1 computed", "2 computed", "3 computed"]


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is not installed (pip install poisonlib[ray])")
def test_sigterm_stops_a_local_ray_cluster_and_its_tasks(tmp_path):
    script, store = _prepare(tmp_path)
    p = _start(script, store, "ray", steps=4000)
    _wait_for(lambda: (store / "started0").exists() or (store / "started1").exists(), p, 150, "a Ray task at work")
    _stop_and_check(p, signal.SIGTERM, store, within=30)


@pytest.mark.skipif(importlib.util.find_spec("submitit") is None, reason="submitit is not installed (pip install poisonlib[slurm])")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_submitit_local_jobs(sig, tmp_path):
    """submitit's local cluster (the SLURM executor's test double): the driver cancels its
    pending jobs, whose controllers stop their tasks."""
    script, store = _prepare(tmp_path)
    p = _start(script, store, "slurm", steps=4000)
    _wait_for(lambda: (store / "started0").exists() and (store / "started1").exists(), p, 120, "both jobs at work")
    _stop_and_check(p, sig, store, within=20)
    assert not (store / "cell0.bin").exists() and not (store / "cell1.bin").exists()  # no partial record


def test_sigterm_stops_poisonlib_run_with_two_workers(tmp_path):
    """The command line's ``-j 2`` (the rerun's resumption is the process-pool test's; a whole
    smoke table would take minutes here)."""
    store = tmp_path / "results"
    env = {**os.environ, "POISONLIB_RESULTS": str(store), "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    argv = [sys.executable, "-m", "poisonlib", "run", "table1", "--profile", "smoke", "--device", "cpu", "-j", "2"]
    p = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)

    def workers_busy():
        try:
            return len(psutil.Process(p.pid).children()) >= 2 and (store / "models").is_dir()
        except psutil.NoSuchProcess:
            return False

    _wait_for(workers_busy, p, 120, "two workers training")
    _stop_and_check(p, signal.SIGTERM, store / "models", within=15)
    assert p.returncode != 0
