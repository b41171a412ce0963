"""The command line's executor options, file output and checkpoint input: atomic output folders, ``.npz`` and
JSON writers, and model parameters read from a state dict or an ``.npz`` without running
pickled code. Bad input raises :class:`~poisonlib._validation.PoisonlibError` naming the file."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile

import numpy as np

from ._validation import PoisonlibError, check_writable_location, parse_float, parse_int, parse_seed
from .formats import load_checkpoint as _load_checkpoint  # noqa: F401  (the CLI's checkpoint reader)


def _argtype(parse, message: str):
    """An argparse type from a strict parser of :mod:`poisonlib._validation`: ASCII digits only,
    finite; ``message`` (with the text given) is argparse's one-line error."""

    def convert(text: str):
        try:
            return parse(text)
        except PoisonlibError:
            raise argparse.ArgumentTypeError(f"{message}, got {text!r}") from None

    return convert


#: A finite number > 0 in ASCII (``-inf`` / ``inf`` / ``nan`` refused alike).
_positive = _argtype(lambda t: parse_float("value", t, minimum=0.0, allow_zero=False), "must be a finite number > 0")


def _eps_w(text: str):
    return "calibrated" if text == "calibrated" else _positive(text)


def _eps_d(text: str):
    """A budget ε_d > 0 (or ``tau``) that gives at least one poison per million clean points
    (a value like 1e-300 would silently round up to one poison)."""
    if text == "tau":
        return "tau"
    v = _positive(text)
    if v < 1e-6:
        raise argparse.ArgumentTypeError(f"eps_d = {text!r} is below 1e-6 (n_p = eps_d * n rounds it to one poison); give eps_d >= 1e-6")
    return v


def _int_at_least(minimum: int):
    """An argparse type: an integer >= ``minimum`` in ASCII digits, else one line naming the value."""
    return _argtype(lambda t: parse_int("value", t, minimum=minimum), f"must be an integer >= {minimum}")


_nonneg_int = _argtype(lambda t: parse_seed("seed", t), "must be an integer in [0, 2^63 - 1]")
_jobs = _int_at_least(1)


def _write_outputs(out: str, files: dict) -> None:
    """Write all files into a temporary sibling folder, then move them into ``out``."""
    out = os.path.abspath(out)
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=".poisonlib-")
    try:
        for name, write in files.items():
            write(os.path.join(tmp, name))
        os.makedirs(out, exist_ok=True)
        for name in files:
            os.replace(os.path.join(tmp, name), os.path.join(out, name))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _check_out(out: str, what: str = "--out", *, folder: bool = True) -> None:
    """Refuse, before any computation, an output location that cannot be written (one line)."""
    if not folder and os.path.isdir(out):
        raise PoisonlibError(f"{what} {out!r} is a folder; give a file name")
    check_writable_location(out, what, folder=folder)



def _savez(path, **arrays):
    """np.savez to exactly ``path`` (np.savez would append .npz to a temporary name)."""
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def _dump_json(obj, path):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, default=str)
        f.write("\n")


def _add_executor(p):
    """``--executor`` and its options (``poisonlib run``, ``poisonlib book``)."""
    from .executors import list_executors

    g = p.add_argument_group("executor", "where the cells run (default: here, one after another)")
    g.add_argument("--executor", default="local", choices=list_executors(),
                   help="local: this machine (-j N: N processes); ray: Ray tasks; slurm: a SLURM job array through submitit")
    g.add_argument("-j", "--jobs", type=_jobs, default=None,
                   help="local: processes; ray: CPUs of the local cluster started when no --ray-address is given; slurm: jobs at once")
    g.add_argument("--ray-address", default=None, help="the Ray cluster to join (e.g. auto, or ray://head:10001); default: a local one")
    g.add_argument("--ray-gpus-per-task", type=_positive, default=None, help="GPUs each cell asks for on CUDA (default 1; 0.25 packs four)")
    g.add_argument("--slurm-partition", default=None, help="SLURM partition")
    g.add_argument("--slurm-gpus", type=_nonneg_int, default=None, help="GPUs per job (default 0; cells then run on CUDA with --device auto)")
    g.add_argument("--slurm-timeout-min", type=_jobs, default=None, help="time limit of each job in minutes (default 60)")
    g.add_argument("--slurm-folder", default=None, help="submitit's logs and pickles (default: <results>/slurm; on the shared filesystem)")
    g.add_argument("--slurm-config", default=None, metavar="FILE.yaml",
                   help="YAML mapping of slurm options: folder, partition, gpus_per_node, timeout_min, array_parallelism, cpus_per_task, "
                   "mem_gb, additional_parameters (the command line wins)")


_RAY_FLAGS = {"ray_address": "--ray-address", "ray_gpus_per_task": "--ray-gpus-per-task"}
_SLURM_FLAGS = {"slurm_partition": "--slurm-partition", "slurm_gpus": "--slurm-gpus", "slurm_timeout_min": "--slurm-timeout-min",
                "slurm_folder": "--slurm-folder", "slurm_config": "--slurm-config"}


def executor_from_args(args):
    """The executor that ``--executor`` and its options name (options of another executor are an error)."""
    from .executors import get_executor, load_slurm_config

    for flags, name in ((_RAY_FLAGS, "ray"), (_SLURM_FLAGS, "slurm")):
        given = [flag for k, flag in flags.items() if getattr(args, k) is not None]
        if given and args.executor != name:
            raise PoisonlibError(f"{given[0]} is an option of --executor {name}, not --executor {args.executor}")
    if args.executor == "local":
        return get_executor("local", jobs=args.jobs or 1)
    if args.executor == "ray":
        return get_executor("ray", jobs=args.jobs, address=args.ray_address, gpus_per_task=args.ray_gpus_per_task or 1.0)
    opts = load_slurm_config(args.slurm_config) if args.slurm_config else {}
    cli = {"partition": args.slurm_partition, "gpus_per_node": args.slurm_gpus, "timeout_min": args.slurm_timeout_min,
           "folder": args.slurm_folder, "array_parallelism": args.jobs}
    opts.update({k: v for k, v in cli.items() if v is not None})
    return get_executor("slurm", **opts)


def _executor_options(args) -> list[str]:
    return [k for k in (*_RAY_FLAGS, *_SLURM_FLAGS) if getattr(args, k) is not None]
