"""The ``poisonlib`` command line.

Bad input gives one line on stderr naming the bad value and what is allowed,
exit status 2, and no output files.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time

import numpy as np

from ._validation import PoisonlibError


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump) and exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _positive(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return v


def _eps_w(text: str):
    return "calibrated" if text == "calibrated" else _positive(text)


def _eps_d(text: str):
    return "tau" if text == "tau" else _positive(text)


def _int_at_least(minimum: int):
    """An argparse type: an integer >= ``minimum``, else one line naming the value."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            v = None
        if v is None or v < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {text!r}")
        return v

    return parse


_nonneg_int = _int_at_least(0)
_jobs = _int_at_least(1)


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


def _add_common(p, *, eps_w_default=None):
    from .data import list_datasets
    from .experiments import PROFILES
    from .models import list_models

    p.add_argument("--dataset", required=True, help=f"one of {', '.join(list_datasets())}, or a .npz file")
    p.add_argument("--model", required=True, help=f"one of {', '.join(list_models())}")
    p.add_argument("--profile", default="cpu", choices=sorted(PROFILES), help="training protocol and data size (default: cpu)")
    p.add_argument("--data-root", default=None, help="folder with the full datasets (torchvision layout); default: embedded data")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="default: auto (CUDA when present)")
    p.add_argument("--seed", type=_nonneg_int, default=0, help="seed of the poisons' start and of retraining (default 0)")
    p.add_argument("--eps-w", type=_eps_w, default=eps_w_default, required=eps_w_default is None,
                   help="GradPC budget: L2 radius of the parameter change, or 'calibrated' (the radius whose target loses the "
                   "paper's GradPC drop on the validation split)" + (f" (default {eps_w_default})" if eps_w_default else ""))
    p.add_argument("--eps-w-norm", default="absolute", choices=["absolute", "relative"],
                   help="absolute radius eps_w (default, as the authors' code) or eps_w * ||w_clean||")
    _add_protocol(p)


def _add_protocol(p, both: bool = False):
    from .protocols import PROTOCOLS

    choices = sorted(PROTOCOLS) + (["both"] if both else [])
    p.add_argument("--protocol", default="both" if both else "paper", choices=choices,
                   help="paper: the text (pixel box, all parameters, App. C.1's NN); released: the authors' code (normalised "
                   "inputs, unbounded GC on the first tensor, NN 784-128-10, their clean model and step budget)"
                   + ("; both (default): each" if both else " (default: paper)"))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="poisonlib", description="Model-targeted data poisoning: thresholds tau, GradPC targets, Gradient Canceling, the book.")
    from . import __version__

    parser.add_argument("--version", action="version", version=f"poisonlib {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    attack = sub.add_parser("attack", help="run a poisoning attack and write the poisons", description="Run a poisoning attack.")
    asub = attack.add_subparsers(dest="attack", metavar="ATTACK", parser_class=_Parser)
    asub.required = True
    gc = asub.add_parser("gc", help="Gradient Canceling (Alg. 1) against a GradPC target",
                         description="Gradient Canceling (Alg. 1): poisons that make the target's gradient vanish on clean + poisons. "
                         "Writes OUT/poisons.npz, OUT/target.npz and OUT/metrics.json.")
    _add_common(gc)
    gc.add_argument("--target", default="gradpc", choices=["gradpc", "randompc", "labelflip", "tgda"],
                    help="how the target model is made (default gradpc; labelflip: --eps-w is the test error; tgda: TGDA's eps_d)")
    gc.add_argument("--eps-d", type=_eps_d, required=True, help="poisoning budget eps_d > 0 (n_p = eps_d * n), or 'tau' for tau(2) of the target")
    gc.add_argument("--epochs", type=_nonneg_int, default=None, help="GC steps (default: the profile's, 1000 at cpu/paper)")
    gc.add_argument("--variant", default="paper", choices=["paper", "official"], help="Alg. 1 as written (default) or the released code's choices")
    gc.add_argument("--clip", default="variant", choices=["variant", "box", "range", "none"],
                    help="projection: the dataset's feature box, the clean data's per-feature range (GC-c), none; default: the variant's")
    gc.add_argument("--out", required=True, help="output folder")

    for name, what in (("tgda", "TGDA (Lu et al. 2022): total-gradient descent-ascent on the poisons"),
                       ("gm", "Gradient Matching (Geiping et al. 2021) with the reversed loss, Eq. 35-36"),
                       ("kkt", "KKT attack (Koh et al. 2022) against a linear target"),
                       ("mt", "Model-Targeted attack (Suya et al. 2021), online, until eps-close to the target or out of budget")):
        b = asub.add_parser(name, help=what, description=f"{what}. Writes OUT/poisons.npz and OUT/metrics.json.")
        _add_common(b, eps_w_default=1.0)
        b.add_argument("--target", default="gradpc", choices=["gradpc", "randompc", "labelflip", "tgda"],
                       help="the target model (KKT, MT); its strength is --eps-w (label flip: the test error; tgda: TGDA's eps_d)")
        b.add_argument("--eps-d", type=_eps_d, required=True, help="poisoning budget eps_d > 0 (MT: the most it may use), or 'tau'")
        b.add_argument("--out", required=True, help="output folder")

    tau = sub.add_parser("tau", help="thresholds tau(2), tau(c) of a target model (Eq. 20, 29; Thm. 4)",
                         description="Print JSON with tau(2), tau(c), <W, G(mu)> and the accuracy of a target model: "
                         "a checkpoint (.pt state dict or target.npz), or a GradPC target made here.")
    _add_common(tau, eps_w_default=1.0)
    tau.add_argument("--checkpoint", default=None, help="model parameters: a torch state dict (.pt) or an .npz of arrays by name")

    book = sub.add_parser("book", help="execute the notebooks with papermill and build the Jupyter Book",
                          description="Convert notebooks/*.md with jupytext, execute them with papermill at a profile, build the book.")
    from .experiments import PROFILES

    book.add_argument("--profile", default="cpu", choices=sorted(PROFILES), help="default: cpu")
    book.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    book.add_argument("--data-root", default=None, help="folder with the full datasets (needed at the paper profile)")
    book.add_argument("--only", action="append", default=None, metavar="CHAPTER", help="execute only this notebook (repeatable)")
    book.add_argument("--no-build", action="store_true", help="execute the notebooks but do not build the HTML")
    book.add_argument("--path-output", default=None, help="where _build/html goes (default: the project root)")
    book.add_argument("--root", default=None, help="project root holding _config.yml (default: found from the current folder)")
    book.add_argument("--sources-only", action="store_true",
                      help="only write the chapters as unexecuted notebooks into book/executed (what the Binder launch buttons open)")
    book.add_argument("--force", action="store_true", help="re-execute chapters even when their source, parameters and poisonlib's code are unchanged")
    _add_protocol(book, both=True)
    _add_executor(book)

    from .runner import list_experiments

    run = sub.add_parser("run", help="run the grid of a table or figure (cached cells are skipped)",
                         description="Run every cell of an experiment grid (datasets x models x eps_w x eps_d x seeds) that the profile "
                         "allows; finished cells come from the results store. Prints one line per cell.")
    run.add_argument("experiment", choices=list_experiments(), metavar="EXPERIMENT", help=f"one of {', '.join(list_experiments())}")
    run.add_argument("--profile", default="cpu", choices=sorted(PROFILES), help="default: cpu")
    run.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    run.add_argument("--data-root", default=None, help="folder with the full datasets (MNIST at the paper profile, CIFAR-10, TinyImageNet)")
    run.add_argument("--seeds", type=_nonneg_int, nargs="+", default=None, help="override the seeds of the attack cells (GC, baselines, defenses)")
    run.add_argument("--force", action="store_true", help="recompute cells even when a stored result exists")
    run.add_argument("--csv", default=None, help="also write the rows to this CSV file")
    _add_protocol(run)
    _add_executor(run)

    rep = sub.add_parser("report", help="every number of the paper's Tables 1-10 beside ours, with verdicts",
                         description="Read every table's grid at a profile from the results store, list the cells it lacks with the "
                         "command that computes them (--run computes them), print a summary of the verdicts and the qualitative "
                         "claims, and write results/report.csv and results/report.json.")
    rep.add_argument("--run", action="store_true", help="compute the cells missing from the store first (minutes to hours)")
    rep.add_argument("--profile", default="cpu", choices=sorted(PROFILES), help="default: cpu")
    rep.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    rep.add_argument("--data-root", default=None, help="folder with the full datasets (paper profile, CIFAR-10, TinyImageNet)")
    rep.add_argument("--all", action="store_true", help="print every entry, not only the summary")
    _add_protocol(rep, both=True)

    from .fetch import FETCHABLE

    data = sub.add_parser("data", help="fetch the full datasets (the only command that downloads)",
                          description="Download a full dataset into --data-root, where --data-root finds it. Nothing else downloads.")
    dsub = data.add_subparsers(dest="data_command", metavar="ACTION", parser_class=_Parser)
    dsub.required = True
    fetch = dsub.add_parser("fetch", help="download MNIST or CIFAR-10 (torchvision) or TinyImageNet (official zip, MD5-checked)",
                            description="Download a dataset into DATA_ROOT in the layout the loaders read (see the README).")
    fetch.add_argument("dataset", choices=list(FETCHABLE), metavar="DATASET", help=f"one of {', '.join(FETCHABLE)}")
    fetch.add_argument("--data-root", required=True, help="folder to put the dataset in")

    sub.add_parser("list", help="list datasets, models, profiles", description="List the registered datasets, models and profiles.")
    return parser


# --------------------------------------------------------------------------- commands
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


def _check_out(out: str) -> None:
    if os.path.exists(out) and not os.path.isdir(out):
        raise PoisonlibError(f"--out {out!r} exists and is not a folder")


def cmd_attack_baseline(args) -> int:
    from .baselines import run_attack
    from .results import environment, git_commit

    _check_out(args.out)
    t0 = time.perf_counter()
    metrics, res = run_attack(args.dataset, args.model, args.eps_w, args.eps_d, args.attack, seed=args.seed, profile=args.profile,
                              target=args.target, data_root=args.data_root, device=args.device, protocol=args.protocol)
    config = {k: v for k, v in vars(args).items() if k not in ("command", "out")}
    record = {"experiment": f"attack-{args.attack}", "config": config, "seed": args.seed, "metrics": metrics,
              "environment": environment(args.device), "git_commit": git_commit(), "wall_time_s": round(time.perf_counter() - t0, 3)}
    x = res.x.reshape(len(res.x), -1).numpy().astype(np.float32)
    _write_outputs(args.out, {"poisons.npz": lambda p: _savez(p, x=x, y=res.y.numpy()), "metrics.json": lambda p: _dump_json(record, p)})
    summary = {k: metrics[k] for k in ("clean_acc", "target_acc", "retrained_acc", "drop", "tau2", "eps_d", "n_poison", "grad_mixed")}
    print(json.dumps(summary, indent=2))
    print(f"wrote {os.path.join(args.out, 'poisons.npz')}, metrics.json", file=sys.stderr)
    return 0


def cmd_attack_gc(args) -> int:
    if args.attack != "gc":
        return cmd_attack_baseline(args)
    from .experiments import run_gc
    from .results import environment, git_commit

    _check_out(args.out)
    t0 = time.perf_counter()
    opts = {"variant": args.variant}
    if args.clip != "variant":
        opts["clip"] = None if args.clip == "none" else args.clip
    metrics, res, target, ds = run_gc(
        args.dataset, args.model, args.eps_w, args.eps_d, seed=args.seed, profile=args.profile, target=args.target,
        eps_w_norm=args.eps_w_norm, gc_epochs=args.epochs, gc_options=opts, data_root=args.data_root, device=args.device,
        protocol=args.protocol,
    )
    config = {k: v for k, v in vars(args).items() if k not in ("command", "attack", "out")}
    record = {"experiment": "attack-gc", "config": config, "seed": args.seed, "metrics": metrics, "environment": environment(args.device),
              "git_commit": git_commit(), "wall_time_s": round(time.perf_counter() - t0, 3)}
    x = res.x.reshape(len(res.x), -1).numpy().astype(np.float32)
    y = res.y.numpy()
    files = {
        "poisons.npz": lambda p: _savez(p, x=x, y=y),
        "target.npz": lambda p: _savez(p, **{k: v.detach().numpy() for k, v in target.state_dict().items()}),
        "metrics.json": lambda p: _dump_json(record, p),
    }
    _write_outputs(args.out, files)
    summary = {k: metrics[k] for k in ("clean_acc", "target_acc", "retrained_acc", "drop", "tau2", "tauc", "eps_d", "n_poison", "grad_mixed")}
    print(json.dumps(summary, indent=2))
    print(f"wrote {os.path.join(args.out, 'poisons.npz')}, target.npz, metrics.json", file=sys.stderr)
    return 0


def _savez(path, **arrays):
    """np.savez to exactly ``path`` (np.savez would append .npz to a temporary name)."""
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def _dump_json(obj, path):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, default=str)
        f.write("\n")


def _load_checkpoint(model, path: str, name: str):
    """``model`` with the parameters of ``path`` (a torch state dict, or an ``.npz`` of arrays
    by name); anything else -- a missing, truncated or foreign file, pickled code, arrays
    that do not fit ``model`` -- raises :class:`PoisonlibError` naming the file."""
    import pickle
    import warnings
    import zipfile

    import torch

    from .results import unsafe_pickle

    if not os.path.exists(path):
        raise PoisonlibError(f"checkpoint {path!r} does not exist")
    if os.path.isdir(path):
        raise PoisonlibError(f"checkpoint {path!r} is a folder; give a .pt state dict or an .npz file")
    allowed = "a torch state dict (.pt) or an .npz of arrays by name"
    try:
        if path.endswith(".npz"):
            with np.load(path, allow_pickle=False) as f:
                state = {k: torch.as_tensor(f[k]) for k in f.files}
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        why = unsafe_pickle(e, path)
        raise PoisonlibError(f"refusing checkpoint {path!r}: {why}" if why else f"checkpoint {path!r} is not {allowed}") from None
    except (OSError, EOFError, KeyError, ValueError, RuntimeError, zipfile.BadZipFile) as e:
        raise PoisonlibError(f"checkpoint {path!r} is not {allowed} ({type(e).__name__}: "
                             f"{(str(e).strip().splitlines() or ['the file ends early'])[0][:120]})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):  # {"state_dict": ...} as many trainers save
        state = state["state_dict"]
    if not isinstance(state, dict) or not state or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise PoisonlibError(f"checkpoint {path!r} holds {type(state).__name__}, not {allowed}")
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise PoisonlibError(f"checkpoint {path!r} does not fit model {name!r}: {first}") from None
    return model.eval()


def cmd_tau(args) -> int:
    from .experiments import clean_and_target, load_for_profile
    from .models import model_for
    from .theory import tau_model
    from .train import evaluate

    ds = load_for_profile(args.dataset, args.profile, args.data_root, args.protocol)
    if args.checkpoint:
        model = _load_checkpoint(model_for(args.model, ds), args.checkpoint, args.model)
        source = args.checkpoint
    else:
        _, model, _ = clean_and_target(ds, args.model, args.eps_w, args.profile, eps_w_norm=args.eps_w_norm, data_root=args.data_root,
                                       device=args.device, protocol=args.protocol)
        source = f"GradPC target, eps_w={args.eps_w} ({args.eps_w_norm}), profile {args.profile}"
    t = tau_model(model, ds.x_train, ds.y_train, ds.task)
    out = {"dataset": ds.name, "model": args.model, "model_source": source, "tau2": t["tau2"], "tauc": t["tauc"], "c": t["c"],
           "inner_W_G_mu": t["inner"], "test_accuracy": 100 * evaluate(model, ds.x_test, ds.y_test, ds.task)["accuracy"]}
    print(json.dumps(out, indent=2))
    return 0


def cmd_book(args) -> int:
    from .book import build_book, convert_sources

    if args.sources_only:
        written = convert_sources(args.root, args.only)
        print(f"wrote {len(written)} notebook(s) into book/executed (existing ones kept)")
        return 0
    kw = dict(profile=args.profile, device=args.device, data_root=args.data_root, only=args.only, build=not args.no_build,
              path_output=args.path_output, root=args.root, force=args.force, protocol=args.protocol)
    if args.executor == "local" and not args.jobs and not _executor_options(args):
        build_book(**kw)  # the chapters compute their own cells, one after another
        return 0
    with executor_from_args(args) as ex:
        build_book(**kw, executor=ex)
    return 0


def _executor_options(args) -> list[str]:
    return [k for k in (*_RAY_FLAGS, *_SLURM_FLAGS) if getattr(args, k) is not None]


_RUN_COLUMNS = ("status", "protocol", "kind", "attack", "clip", "dataset", "model", "eps_w", "target", "noise", "scale", "eps_d", "seed", "clean_acc",
                "target_acc", "tau2", "n_poison", "retrained_acc", "drop", "attacked_acc", "influence_drop", "sever_drop", "maxup_drop",
                "grad_mixed", "wall_time_s", "reason")


def cmd_run(args) -> int:
    import dataclasses

    import pandas as pd

    from .experiments import get_profile
    from .runner import get_experiment, run_experiment

    if args.csv and os.path.isdir(args.csv):
        raise PoisonlibError(f"--csv {args.csv!r} is a folder; give a file name")
    exp = get_experiment(args.experiment)
    cells = [dataclasses.replace(c, protocol=args.protocol) for c in exp.cells(get_profile(args.profile))]
    if args.seeds is not None:
        cells = list(dict.fromkeys(dataclasses.replace(c, seed=s) if c.kind != "target" else c for c in cells for s in args.seeds))
    with executor_from_args(args) as ex:
        rows = run_experiment(args.experiment, args.profile, data_root=args.data_root, device=args.device, force=args.force, cells=cells,
                              executor=ex)
    df = pd.DataFrame(rows)
    if df.empty:
        print("no cells")
        return 0
    gc_only = ("eps_d", "seed", "n_poison", "retrained_acc", "drop", "grad_mixed")
    cols = [c for c in _RUN_COLUMNS if c in df and not (exp.name in ("table1", "table5") and c in gc_only)]
    with pd.option_context("display.max_rows", None, "display.width", 200, "display.max_colwidth", 60):
        print(df[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    counts = df["status"].value_counts().to_dict()
    print(f"{exp.name} [{args.profile}]: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())), file=sys.stderr)
    if args.csv:
        df = df.drop(columns=[c for c in ("gc_residual_curve", "examples") if c in df])
        _write_outputs(os.path.dirname(os.path.abspath(args.csv)), {os.path.basename(args.csv): lambda p: df.to_csv(p, index=False)})
    return 0


def cmd_report(args) -> int:
    import pandas as pd

    from . import reproduction
    from .results import default_results_dir

    protocols = ["paper", "released"] if args.protocol == "both" else [args.protocol]
    es, missing = [], []
    for proto in protocols:
        rows = reproduction.run_all(args.profile, data_root=args.data_root, device=args.device, protocol=proto, compute=args.run)
        es += reproduction.entries(rows, args.profile, proto)
        missing += reproduction.missing_cells(rows)
    if missing:
        print(f"the store ({default_results_dir()}) lacks {sum(m['cells'] for m in missing)} cells; nothing was computed (--run computes them):")
        for m in missing:
            print(f"  {m['command']:<62} # {m['cells']} cells, e.g. {m['examples'][0]}")
        print()
    cl = reproduction.claims(es)
    csv, js = reproduction.write(es, cl)
    with pd.option_context("display.max_rows", None, "display.width", 200, "display.max_colwidth", 70):
        if args.all:
            print(pd.DataFrame(es)[["protocol", "table", "entry", "paper", "ours", "ours_std", "delta", "verdict", "note"]].to_string(index=False))
        print(reproduction.summary(es).to_string())
        print()
        print(pd.DataFrame(cl).to_string(index=False))
    print(f"wrote {csv} and {js}", file=sys.stderr)
    return 0


def cmd_data(args) -> int:
    from .fetch import fetch

    folder = fetch(args.dataset, args.data_root)
    print(f"{args.dataset}: files in {folder}; use --data-root {args.data_root}")
    return 0


def cmd_list(args) -> int:
    from .data import list_datasets
    from .experiments import PROFILES
    from .models import list_models

    print("datasets:", ", ".join(list_datasets()))
    print("models:  ", ", ".join(list_models()))
    for p in PROFILES.values():
        print(f"profile {p.name}: {p.description}")
    from .runner import get_experiment, list_experiments

    for name in list_experiments():
        print(f"experiment {name}: {get_experiment(name).description}")
    return 0


def main(argv=None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``) and return the exit status:
    0, or 2 for bad input (one line on stderr, nothing written)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # argparse: --help, --version (0) and bad arguments (2)
        return e.code if isinstance(e.code, int) else 2
    handler = {"attack": cmd_attack_gc, "tau": cmd_tau, "book": cmd_book, "run": cmd_run, "report": cmd_report, "data": cmd_data, "list": cmd_list}[args.command]
    try:
        return handler(args)
    except PoisonlibError as e:
        print(f"poisonlib: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
