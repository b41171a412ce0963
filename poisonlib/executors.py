"""Where the cells of a grid run: in this process, a process pool, a Ray cluster or SLURM.

Every executor has one method, :meth:`map`, that runs ``fn(task)`` for each task and
yields ``(task, result)`` in the order the tasks finish; a task that raised yields a
:class:`TaskError` (the exception's type, message and traceback) in place of its result,
and the others go on. ``fn`` and the tasks must be picklable (a module-level function and
plain data) for every executor but the serial one.

* ``local`` (default): serially in this process, or with ``jobs > 1`` a
  :class:`~concurrent.futures.ProcessPoolExecutor` (``spawn`` context);
* ``ray``: Ray tasks on ``ray.init(address=...)``, or a local cluster of ``jobs`` CPUs
  on the loopback interface; one GPU per task (or ``gpus_per_task``) on CUDA;
* ``slurm``: :mod:`submitit`'s ``AutoExecutor`` (a job array; ``cluster="local"`` runs the
  jobs as local processes, for tests).

Stopping: while an executor is open (``with get_executor(...) as ex``), SIGTERM raises
:class:`SystemExit` (143) in the driver like SIGINT raises :class:`KeyboardInterrupt`; either
ends the run within seconds: the pool's workers are terminated (SIGTERM, then SIGKILL after
:data:`STOP_GRACE_S`), Ray tasks cancelled and a local Ray cluster shut down, submitit jobs
cancelled. Workers ignore SIGINT (Ctrl-C reaches the whole process group; the driver stops
them), unwind on SIGTERM so that no temporary file stays behind, and end themselves when
the driver is gone (re-parented). Every store write is atomic, so a rerun resumes.

Each worker sets torch's thread count to the driver's (:func:`torch.get_num_threads`), so
that a cell's numbers are bit-identical to a serial run's on the same CPU.
Ray and submitit are optional (``pip install poisonlib[ray]`` / ``poisonlib[slurm]``).

>>> with get_executor("local", jobs=2) as ex:                       # doctest: +SKIP
...     for task, out in ex.map(square, [1, 2, 3]): print(task, out)
"""

from __future__ import annotations

import contextlib
import os
import time
import traceback
from collections.abc import Callable, Iterable, Iterator

import torch

from ._lifecycle import _IN_TASK, STOP_GRACE_S, WorkerStop, stop_on_signals, stop_processes, worker_init  # noqa: F401
from ._registry import Registry
from ._validation import PoisonlibError, check_int, check_positive

EXECUTORS = Registry("executor")


class TaskError:
    """A task that raised: ``exc`` (the exception itself when it could be pickled, else
    ``None``), ``type_name``, ``message`` and the formatted ``traceback``."""

    def __init__(self, exc: BaseException, tb: str):
        self.type_name = type(exc).__name__
        self.message = str(exc)
        self.traceback = tb
        self.exc = exc if _picklable(exc) else None

    @property
    def last_line(self) -> str:
        """The traceback's last line (``Type: message``)."""
        lines = [ln for ln in self.traceback.strip().splitlines() if ln.strip()]
        return lines[-1] if lines else f"{self.type_name}: {self.message}"

    def __repr__(self) -> str:
        return f"TaskError({self.last_line!r})"


def _picklable(obj) -> bool:
    import pickle

    try:
        pickle.loads(pickle.dumps(obj))
        return True
    except Exception:  # noqa: BLE001 - any failure means: do not ship it
        return False


def guarded(fn: Callable, task, threads: int | None = None):
    """``fn(task)`` with torch's thread count set to ``threads``; an exception becomes a
    :class:`TaskError` (so that it crosses process boundaries with its traceback). A worker
    told to stop (:class:`WorkerStop`) unwinds -- removing its temporary files -- and exits."""
    if threads:
        torch.set_num_threads(threads)
    _IN_TASK[0] = True
    try:
        return fn(task)
    except WorkerStop:
        os._exit(143)
    except Exception as e:  # noqa: BLE001 - reported to the driver, which decides
        return TaskError(e, traceback.format_exc())
    finally:
        _IN_TASK[0] = False


class Executor:
    """Base class: ``map(fn, tasks)``, a context manager (``close`` on exit).

    ``isolated``: the workers share no filesystem with the driver, so a task carries the
    store files it reads and returns those it writes (:mod:`poisonlib.runner`)."""

    name = "executor"
    isolated = False
    parallel = True

    def map(self, fn: Callable, tasks: Iterable) -> Iterator[tuple]:
        raise NotImplementedError

    def device(self, device: str) -> str:
        """The device a task asking for ``device`` (``auto``, ``cpu``, ``cuda``) runs on."""
        from .train import resolve_device

        return str(resolve_device(device))

    def close(self) -> None:
        """Release the workers (a no-op unless the executor started them)."""

    def stop(self) -> None:
        """Stop everything this executor started now (the run was interrupted), without
        waiting for running tasks; then :meth:`close`."""
        self.close()

    def __enter__(self):
        self._signals = stop_on_signals()
        self._signals.__enter__()
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is not None and issubclass(exc_type, (KeyboardInterrupt, SystemExit)):
                self.stop()
            else:
                self.close()
        finally:
            signals = getattr(self, "_signals", None)
            if signals is not None:
                self._signals = None
                signals.__exit__(None, None, None)


def register_executor(name: str):
    """Class decorator registering an :class:`Executor` under ``name``."""

    def deco(cls):
        cls.name = name
        EXECUTORS.register(name)(cls)
        return cls

    return deco


def list_executors() -> list[str]:
    return EXECUTORS.names()


def get_executor(name: str = "local", **options) -> Executor:
    """The executor ``name`` (``local``, ``ray``, ``slurm``) built with ``options``."""
    return EXECUTORS.get(name)(**options)


@register_executor("local")
class LocalExecutor(Executor):
    """In this process (``jobs=1``) or a pool of ``jobs`` processes (``spawn``); the pool's
    workers use the store directly (same filesystem) unless ``isolated``."""

    def __init__(self, jobs: int = 1, *, isolated: bool = False, threads: int | None = None):
        self.jobs = check_int("jobs (-j)", jobs, minimum=1)
        self.parallel = self.jobs > 1
        self.isolated = bool(isolated) and self.parallel
        self.threads = threads or torch.get_num_threads()
        self._pool = None

    def map(self, fn, tasks):
        from concurrent.futures import as_completed

        tasks = list(tasks)
        if not self.parallel:
            for t in tasks:
                yield t, guarded(fn, t)
            return
        with stop_on_signals():
            try:
                futures = {self.pool().submit(guarded, fn, t, self.threads): t for t in tasks}
                for f in as_completed(futures):
                    yield futures[f], _result(f.result)
            except (KeyboardInterrupt, SystemExit):
                self.stop()
                raise

    def pool(self):
        """The process pool, started on first use and kept for the next rounds (until :meth:`close`)."""
        if self._pool is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            self._pool = ProcessPoolExecutor(max_workers=self.jobs, mp_context=multiprocessing.get_context("spawn"), initializer=worker_init,
                                             initargs=(os.getpid(),))
        return self._pool

    def close(self):
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def stop(self):
        """Terminate the workers now (SIGTERM, SIGKILL after :data:`STOP_GRACE_S`) and drop the pool."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        procs = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        stop_processes(procs)


def _result(get: Callable):
    """``get()``, or a :class:`TaskError` when the worker itself died (killed, out of memory)."""
    try:
        return get()
    except Exception as e:  # noqa: BLE001 - a lost worker fails its task only
        return TaskError(e, traceback.format_exc())


def _missing(extra: str, module: str) -> PoisonlibError:
    return PoisonlibError(f"the {extra} executor needs {module}: pip install poisonlib[{extra}]")


@register_executor("ray")
class RayExecutor(Executor):
    """Ray tasks: on the cluster at ``address`` (``"auto"``: the one this node belongs to),
    else on a local cluster of ``jobs`` CPUs bound to the loopback interface. A task asks
    for one CPU and, on CUDA, ``gpus_per_task`` GPUs (default 1; a fraction packs small
    cells on one GPU). Workers need no shared filesystem (``isolated``)."""

    isolated = True

    def __init__(self, jobs: int | None = None, *, address: str | None = None, gpus_per_task: float = 1.0, threads: int | None = None):
        try:
            import ray
        except ImportError:
            raise _missing("ray", "ray") from None
        self.ray = ray
        self.gpus_per_task = check_positive("gpus per task", gpus_per_task)
        self.threads = threads or torch.get_num_threads()
        self._started = False
        if not ray.is_initialized():
            kw = dict(include_dashboard=False, logging_level="WARNING")
            if address:
                ray.init(address=address, **kw)
            else:
                n = check_int("jobs (-j)", jobs or os.cpu_count() or 1, minimum=1)
                ray.init(num_cpus=n, num_gpus=torch.cuda.device_count(), _node_ip_address="127.0.0.1", **kw)
            self._started = True

    def device(self, device: str) -> str:
        """``auto`` is CUDA when the cluster has GPUs (the driver itself may have none)."""
        if device == "auto":
            return "cuda" if self.ray.cluster_resources().get("GPU", 0) > 0 else "cpu"
        return super().device(device) if device == "cuda" and torch.cuda.is_available() else device

    def map(self, fn, tasks):
        ray = self.ray
        remote = {gpus: ray.remote(num_cpus=1, num_gpus=gpus, max_retries=0)(guarded) for gpus in (0, self.gpus_per_task)}
        pending = {}
        for t in tasks:  # one CPU each, and GPUs for a task on CUDA
            gpus = self.gpus_per_task if str(getattr(t, "device", "cpu")).startswith("cuda") else 0
            pending[remote[gpus].remote(fn, t, self.threads)] = t
        try:
            with stop_on_signals():
                while pending:
                    done, _ = ray.wait(list(pending), num_returns=1)
                    for ref in done:
                        yield pending.pop(ref), _result(lambda: ray.get(ref))
        except (KeyboardInterrupt, SystemExit):
            self._cancel(list(pending))
            self.stop()
            raise

    def _cancel(self, refs) -> None:
        """Cancel ``refs``: a KeyboardInterrupt in each running task first (it unwinds, removing
        its temporary files), then, after :data:`STOP_GRACE_S`, the worker processes are killed."""
        ray = self.ray
        for force in (False, True):
            for ref in refs:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=force)
            if not force:
                with contextlib.suppress(Exception):
                    ray.wait(refs, num_returns=len(refs), timeout=STOP_GRACE_S)

    def close(self):
        if self._started:
            self.ray.shutdown()
            self._started = False


#: Keys of a ``--slurm-config`` YAML file (and keywords of :class:`SlurmExecutor`).
SLURM_OPTIONS = ("folder", "partition", "gpus_per_node", "timeout_min", "array_parallelism", "cpus_per_task", "mem_gb", "cluster",
                 "additional_parameters")


@register_executor("slurm")
class SlurmExecutor(Executor):
    """A SLURM job array through :mod:`submitit` (``cluster="local"``: local processes).

    ``folder`` holds submitit's logs and pickles (default ``results/slurm``); ``partition``,
    ``gpus_per_node``, ``timeout_min``, ``array_parallelism`` (jobs running at once),
    ``cpus_per_task``, ``mem_gb`` and ``additional_parameters`` (``#SBATCH`` options) are
    SLURM's. The jobs write the store directly (it lives on the shared filesystem) unless
    ``isolated``."""

    def __init__(self, folder: str | None = None, *, partition: str | None = None, gpus_per_node: int = 0, timeout_min: int = 60,
                 array_parallelism: int = 64, cpus_per_task: int | None = None, mem_gb: float | None = None, cluster: str | None = None,
                 additional_parameters: dict | None = None, isolated: bool = False, threads: int | None = None, poll_s: float = 1.0):
        try:
            import submitit
        except ImportError:
            raise _missing("slurm", "submitit") from None
        from .results import default_results_dir

        self.folder = folder or os.path.join(default_results_dir(), "slurm")
        self.gpus = check_int("slurm gpus per node", gpus_per_node, minimum=0)
        self.threads = threads or torch.get_num_threads()
        self.isolated = bool(isolated)
        self.poll_s = poll_s
        self.ex = submitit.AutoExecutor(folder=self.folder, cluster=cluster)
        params = dict(timeout_min=check_int("slurm timeout (minutes)", timeout_min, minimum=1), gpus_per_node=self.gpus,
                      slurm_array_parallelism=check_int("slurm array parallelism", array_parallelism, minimum=1))
        if partition:
            params["slurm_partition"] = partition
        if cpus_per_task:
            params["cpus_per_task"] = check_int("slurm cpus per task", cpus_per_task, minimum=1)
        if mem_gb:
            params["mem_gb"] = check_positive("slurm mem_gb", mem_gb)
        if additional_parameters:
            params["slurm_additional_parameters"] = dict(additional_parameters)
        self.ex.update_parameters(**params)

    def device(self, device: str) -> str:
        """``auto`` is CUDA when the jobs ask for GPUs."""
        if device == "auto":
            return "cuda" if self.gpus > 0 else "cpu"
        return device

    def map(self, fn, tasks):
        tasks = list(tasks)
        if not tasks:
            return
        jobs = self.ex.map_array(guarded, [fn] * len(tasks), tasks, [self.threads] * len(tasks))
        pending = dict(zip(jobs, tasks))
        try:
            with stop_on_signals():
                while pending:
                    done = [j for j in pending if j.done()]
                    if not done:
                        time.sleep(self.poll_s)
                        continue
                    for j in done:
                        yield pending.pop(j), _result(j.result)
        except (KeyboardInterrupt, SystemExit):
            for j in pending:  # local jobs: their processes; SLURM: scancel
                with contextlib.suppress(Exception):
                    j.cancel(check=False)
            raise


def load_slurm_config(path: str) -> dict:
    """The options of a ``--slurm-config`` YAML file (a mapping with keys of :data:`SLURM_OPTIONS`)."""
    try:
        import yaml
    except ImportError:
        raise PoisonlibError("--slurm-config needs PyYAML: pip install pyyaml") from None
    if not os.path.isfile(path):
        raise PoisonlibError(f"slurm config {path!r} does not exist")
    try:
        with open(path, encoding="utf-8") as f:
            opts = yaml.safe_load(f) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise PoisonlibError(f"slurm config {path!r} is not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(opts, dict):
        raise PoisonlibError(f"slurm config {path!r} must be a mapping of options, got {type(opts).__name__}")
    bad = sorted(set(map(str, opts)) - set(SLURM_OPTIONS))
    if bad:
        raise PoisonlibError(f"slurm config {path!r} has unknown key(s) {bad}; allowed: {', '.join(SLURM_OPTIONS)}")
    return opts
