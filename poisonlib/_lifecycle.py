"""Stopping a run: signals in the driver and its workers (used by :mod:`poisonlib.executors`).

The driver turns SIGTERM into ``SystemExit(143)`` while an executor is open
(:func:`stop_on_signals`), so that its ``finally`` blocks stop the workers
(:func:`stop_processes`). A worker (:func:`worker_init`) ignores SIGINT, unwinds its task
on SIGTERM (:class:`WorkerStop`: atomic writes remove their temporary files) and ends
itself when the driver is gone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time

#: Seconds a worker has to unwind after SIGTERM before it is killed.
STOP_GRACE_S = 3.0
_IN_TASK = [False]


class WorkerStop(SystemExit):
    """Raised in a worker by SIGTERM while it runs a task: the task unwinds, then the worker exits."""


def _worker_sigterm(signum, frame):
    if _IN_TASK[0]:
        raise WorkerStop(143)
    os._exit(143)  # idle: nothing to clean up


def worker_init(parent_pid: int | None = None) -> None:
    """Initialiser of every worker process: ignore SIGINT (the driver stops the workers), unwind
    on SIGTERM, and end when the driver ``parent_pid`` is gone (checked twice a second)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _worker_sigterm)
    parent = parent_pid or os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="poisonlib-parent-watch", daemon=True).start()


def _driver_sigterm(signum, frame):
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def stop_on_signals():
    """Within this block (main thread only) SIGTERM raises ``SystemExit(143)``, as SIGINT raises
    :class:`KeyboardInterrupt`, so that ``finally`` blocks stop the workers. Reentrant; a
    handler someone else installed is kept."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None):
        yield
        return
    signal.signal(signal.SIGTERM, _driver_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def stop_processes(procs, grace: float = STOP_GRACE_S) -> None:
    """SIGTERM each of ``procs`` (multiprocessing processes), wait up to ``grace`` seconds in
    all, then SIGKILL those still alive and reap them."""
    procs = [p for p in procs if p.is_alive()]
    for p in procs:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            p.terminate()
    deadline = time.monotonic() + grace
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
    for p in procs:
        if p.is_alive():
            with contextlib.suppress(OSError, ValueError, AttributeError):
                p.kill()
            p.join(1.0)
