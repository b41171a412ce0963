"""The ``poisonlib`` command line.

Bad input gives one line on stderr naming the bad value and what is allowed,
exit status 2, and no output files.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from ._validation import CellFailed, PoisonlibError
from .cli_io import _add_executor, _eps_d, _eps_w, _jobs, _nonneg_int, _check_out, _dump_json, _executor_options, _load_checkpoint, _savez, _write_outputs, executor_from_args  # noqa: E501


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump) and exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _add_common(p, *, eps_w_default=None):
    from .data import list_datasets
    from .profiles import PROFILES
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
    from .attacks.registry import ATTACKS, TARGETS

    for name in ATTACKS.names():
        a = ATTACKS.get(name)
        writes = "OUT/poisons.npz, OUT/target.npz and OUT/metrics.json" if a.curve else "OUT/poisons.npz and OUT/metrics.json"
        b = asub.add_parser(name, help=a.description, description=f"{a.description}. Writes {writes}.")
        _add_common(b, eps_w_default=None if a.curve else 1.0)
        b.add_argument("--target", default="gradpc", choices=TARGETS.names(),
                       help="how the target model is made (default gradpc; labelflip: --eps-w is the test error; tgda: TGDA's eps_d)")
        b.add_argument("--eps-d", type=_eps_d, required=True,
                       help="poisoning budget eps_d > 0 (n_p = eps_d * n; MT: the most it may use), or 'tau' for tau(2) of the target")
        if a.curve:
            b.add_argument("--epochs", type=_nonneg_int, default=None, help="GC steps (default: the profile's, 1000 at cpu/paper)")
            b.add_argument("--variant", default="paper", choices=["paper", "official"], help="Alg. 1 as written (default) or the released code's choices")
            b.add_argument("--clip", default="variant", choices=["variant", "box", "range", "none"],
                           help="projection: the dataset's feature box, the clean data's per-feature range (GC-c), none; default: the variant's")
        b.add_argument("--out", required=True, help="output folder")

    tau = sub.add_parser("tau", help="thresholds tau(2), tau(c) of a target model (Eq. 20, 29; Thm. 4)",
                         description="Print JSON with tau(2), tau(c), <W, G(mu)> and the accuracy of a target model: "
                         "a checkpoint (.pt state dict or target.npz), or a GradPC target made here.")
    _add_common(tau, eps_w_default=1.0)
    tau.add_argument("--checkpoint", default=None, help="model parameters: a torch state dict (.pt) or an .npz of arrays by name")

    book = sub.add_parser("book", help="execute the notebooks with papermill and build the Jupyter Book",
                          description="Convert notebooks/*.md with jupytext, execute them with papermill at a profile, build the book.")
    from .profiles import PROFILES

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

    from .grids import list_experiments

    run = sub.add_parser("run", help="run the grid of a table or figure (cached cells are skipped)",
                         description="Run every cell of an experiment grid (datasets x models x eps_w x eps_d x seeds) that the profile "
                         "allows; finished cells come from the results store. Prints one line per cell.")
    run.add_argument("experiment", choices=list_experiments(), metavar="EXPERIMENT", help=f"one of {', '.join(list_experiments())}")
    run.add_argument("--profile", default="cpu", choices=sorted(PROFILES), help="default: cpu")
    run.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    run.add_argument("--data-root", default=None, help="folder with the full datasets (MNIST at the paper profile, CIFAR-10, TinyImageNet)")
    run.add_argument("--dry-run", action="store_true",
                     help="run one cell of each cost class at its real size with every loop capped, and print its extrapolated cost "
                     "and peak memory (nothing is stored); exits 1 if a cell fails at its real size")
    run.add_argument("--dry-run-steps", type=_jobs, default=1, help="steps each loop runs in a dry run (default 1)")
    run.add_argument("--dry-run-inner", type=_jobs, default=2, help="items each loop inside a step runs in a dry run (default 2)")
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

    exp = sub.add_parser("export", help="a profile's records, poisons and models with a sha256 manifest, ready to deposit",
                         description="Copy a profile's records, the poisons and models they use, and MANIFEST.json (sha256, size, environment) to --out.")
    exp.add_argument("--profile", required=True, choices=sorted(PROFILES))
    exp.add_argument("--out", required=True, help="a new or empty folder")
    sub.add_parser("list", help="list datasets, models, profiles", description="List the registered datasets, models and profiles.")
    return parser


# --------------------------------------------------------------------------- commands
def cmd_attack(args) -> int:
    """Any registered attack (:mod:`poisonlib.attacks.registry`) on one cell, uncached: writes the
    poisons, the target's parameters (attacks that aim at a target) and the metrics."""
    from .attacks.registry import get_attack
    from .cells import Cell
    from .pipeline import poison
    from .results import environment, git_commit

    _check_out(args.out)
    attack = get_attack(args.attack)
    opts = {}
    if attack.curve:  # GC's own switches
        opts = {"variant": args.variant, **({} if args.clip == "variant" else {"clip": None if args.clip == "none" else args.clip})}
    cell = Cell("attack", args.dataset, args.model, args.eps_w, target=args.target, eps_d=args.eps_d, seed=args.seed, attack=attack.name,
                protocol=args.protocol)
    spec = cell.resolve(args.profile, data_root=args.data_root, device=args.device, gc_epochs=getattr(args, "epochs", None),
                        eps_w_norm=args.eps_w_norm, options=tuple(sorted(opts.items())))
    t0 = time.perf_counter()
    metrics, res, target, _ = poison(spec)
    drop = ("command", "out") if not attack.curve else ("command", "attack", "out")
    config = {k: v for k, v in vars(args).items() if k not in drop}
    record = {"experiment": f"attack-{attack.name}", "config": config, "seed": args.seed, "metrics": metrics,
              "environment": environment(args.device), "git_commit": git_commit(), "wall_time_s": round(time.perf_counter() - t0, 3)}
    x = res.x.reshape(len(res.x), -1).numpy().astype(np.float32)
    files = {"poisons.npz": lambda p: _savez(p, x=x, y=res.y.numpy())}
    if attack.curve:
        files["target.npz"] = lambda p: _savez(p, **{k: v.detach().numpy() for k, v in target.state_dict().items()})
    files["metrics.json"] = lambda p: _dump_json(record, p)
    _write_outputs(args.out, files)
    keys = ("clean_acc", "target_acc", "retrained_acc", "drop", "tau2", "tauc", "eps_d", "n_poison", "grad_mixed")
    print(json.dumps({k: metrics[k] for k in keys if k != "tauc" or attack.curve}, indent=2))
    print(f"wrote {os.path.join(args.out, 'poisons.npz')}, {', '.join(list(files)[1:])}", file=sys.stderr)
    return 0


def cmd_tau(args) -> int:
    from .experiments import clean_and_target, load_for_profile
    from .models import model_for
    from .results import encode_nonfinite
    from .theory import tau_model
    from .train import evaluate, resolve_device

    device = str(resolve_device(args.device))  # a device that is not there is refused before anything, cached or not
    ds = load_for_profile(args.dataset, args.profile, args.data_root, args.protocol)
    if args.checkpoint:
        model = _load_checkpoint(model_for(args.model, ds), args.checkpoint, args.model)
        source = args.checkpoint
    else:
        _, model, _ = clean_and_target(ds, args.model, args.eps_w, args.profile, eps_w_norm=args.eps_w_norm, data_root=args.data_root,
                                       device=device, protocol=args.protocol)
        source = f"GradPC target, eps_w={args.eps_w} ({args.eps_w_norm}), profile {args.profile}"
    t = tau_model(model, ds.x_train, ds.y_train, ds.task)
    out = {"dataset": ds.name, "model": args.model, "model_source": source, "tau2": t["tau2"], "tauc": t["tauc"], "c": t["c"],
           "inner_W_G_mu": t["inner"], "test_accuracy": 100 * evaluate(model, ds.x_test, ds.y_test, ds.task)["accuracy"]}
    print(json.dumps(encode_nonfinite(out)[0], indent=2, allow_nan=False))  # valid JSON: a non-finite τ prints as null
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


_RUN_COLUMNS = ("status", "protocol", "kind", "attack", "clip", "dataset", "model", "eps_w", "target", "noise", "scale", "eps_d", "seed", "clean_acc",
                "target_acc", "tau2", "n_poison", "retrained_acc", "drop", "attacked_acc", "influence_drop", "sever_drop", "maxup_drop",
                "grad_mixed", "wall_time_s", "reason")


def cmd_run(args) -> int:

    import pandas as pd

    from .grids import get_experiment
    from .scheduler import run_experiment

    if args.csv:
        _check_out(args.csv, "--csv", folder=False)
    exp = get_experiment(args.experiment)
    if args.dry_run:
        return _dry_run(args, exp)
    with executor_from_args(args) as ex:
        rows = run_experiment(args.experiment, args.profile, data_root=args.data_root, device=args.device, force=args.force,
                              protocol=args.protocol, seeds=args.seeds, executor=ex)
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
    failed = counts.get("failed", 0) + counts.get("missing", 0)
    if args.csv:
        df = df.drop(columns=[c for c in ("gc_residual_curve", "examples") if c in df])
        _write_outputs(os.path.dirname(os.path.abspath(args.csv)), {os.path.basename(args.csv): lambda p: df.to_csv(p, index=False)})
    if failed:
        print(f"{exp.name} [{args.profile}]: {failed} requested cell(s) did not produce a number (failed or missing); exit status 1",
              file=sys.stderr)
    return 1 if failed else 0


def _dry_run(args, exp) -> int:
    """``poisonlib run EXPERIMENT --dry-run``: one cell of each cost class at its real size with
    every loop capped (:func:`poisonlib.dryrun.dry_run_grid`); prints per class the time per
    cell extrapolated to the profile's step counts, the peak memory, and the grid's total."""
    import dataclasses

    import pandas as pd

    from .cells import restrict
    from .dryrun import dry_run_grid
    from .profiles import get_profile

    prof = get_profile(args.profile)
    cells = restrict([dataclasses.replace(c, protocol=args.protocol) for c in exp.cells(prof)], seeds=args.seeds)
    rows = dry_run_grid(cells, prof, data_root=args.data_root, device=args.device, steps=args.dry_run_steps, isolate=True, inner=args.dry_run_inner,
                        on_row=lambda r: print(f"{exp.name} [{prof.name}, dry run] {r['cell']}: {r['status']}", file=sys.stderr, flush=True))
    df = pd.DataFrame(rows)
    cols = [c for c in ("status", "cell", "cells", "n_poison", "seconds_capped", "extrapolated_seconds", "extrapolated_total_seconds",
                        "peak_rss_gib", "peak_cuda_gib", "reason") if c in df]
    with pd.option_context("display.max_rows", None, "display.width", 220, "display.max_colwidth", 70):
        print(df[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    ok = df[df["status"] == "ok"] if "status" in df else df
    total_h = ok["extrapolated_total_seconds"].sum() / 3600 if len(ok) else 0.0
    failed = int(df["status"].isin(["error", "killed"]).sum())
    print(f"{exp.name} [{prof.name}, dry run]: {len(ok)} cost classes priced, {int(ok['cells'].sum()) if len(ok) else 0} cells, "
          f"about {total_h:.2f} h on {args.device} (upper bound: capped run x full steps); {failed} failed", file=sys.stderr)
    if args.csv:
        _write_outputs(os.path.dirname(os.path.abspath(args.csv)), {os.path.basename(args.csv): lambda p: df.to_csv(p, index=False)})
    return 1 if failed else 0


def cmd_report(args) -> int:
    import pandas as pd

    from . import reproduction
    from .results import default_results_dir

    protocols = ["paper", "released"] if args.protocol == "both" else [args.protocol]
    es, missing, rows_by_protocol = [], [], {}
    for proto in protocols:
        rows = reproduction.run_all(args.profile, data_root=args.data_root, device=args.device, protocol=proto, compute=args.run)
        rows_by_protocol[proto] = rows
        es += reproduction.entries(rows, args.profile, proto)
        missing += reproduction.missing_cells(rows)
    if missing:
        print(f"the store ({default_results_dir()}) lacks {sum(m['cells'] for m in missing)} cells; nothing was computed (--run computes them):")
        for m in missing:
            print(f"  {m['command']:<62} # {m['cells']} cells, e.g. {m['examples'][0]}")
        print()
    from .claims import evidence, judge, ledger_table

    ev = evidence.collect(args.profile, data_root=args.data_root, compute=args.run)
    if lacking := evidence.lacking(ev):
        print(f"the store lacks the claims' sweeps {', '.join(lacking)} (their claims are not testable); --run computes them\n")
    cl = judge(es, rows_by_protocol, args.profile, data_root=args.data_root, compute=args.run, evidence=ev)
    csv, js = reproduction.write(es, cl)
    with pd.option_context("display.max_rows", None, "display.width", 200, "display.max_colwidth", 70):
        if args.all:
            print(pd.DataFrame(es)[["protocol", "table", "entry", "paper", "ours", "ours_std", "delta", "verdict", "note"]].to_string(index=False))
        print(reproduction.summary(es).to_string())
        print()
        print(ledger_table(cl).drop(columns="criterion").to_string(index=False))
    print(f"wrote {csv} and {js}", file=sys.stderr)
    return 0


def cmd_export(args) -> int:
    from .export import export

    m = export(args.profile, args.out)
    print(f"exported {m['records']} records, {len(m['files'])} files to {args.out} (MANIFEST.json)")
    return 0


def cmd_data(args) -> int:
    from .fetch import fetch

    folder = fetch(args.dataset, args.data_root)
    print(f"{args.dataset}: files in {folder}; use --data-root {args.data_root}")
    return 0


def cmd_list(args) -> int:
    from .data import list_datasets
    from .profiles import PROFILES
    from .models import list_models

    print("datasets:", ", ".join(list_datasets()))
    print("models:  ", ", ".join(list_models()))
    for p in PROFILES.values():
        print(f"profile {p.name}: {p.description}")
    from .grids import get_experiment, list_experiments

    for name in list_experiments():
        print(f"experiment {name}: {get_experiment(name).description}")
    return 0


def main(argv=None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``) and return the exit status:
    0; 2 for bad input (one line on stderr, nothing written); 1 when what was asked was not
    produced (a diverged attack, failed cells of a grid)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # argparse: --help, --version (0) and bad arguments (2)
        return e.code if isinstance(e.code, int) else 2
    handler = {"attack": cmd_attack, "tau": cmd_tau, "book": cmd_book, "run": cmd_run, "report": cmd_report, "data": cmd_data, "list": cmd_list,
               "export": cmd_export}[args.command]
    try:
        if args.command in ("attack", "tau", "book", "run", "report", "export"):
            from .results import default_results_dir

            default_results_dir()  # a POISONLIB_RESULTS that cannot be the store: one line, before any work
        return handler(args)
    except CellFailed as e:  # the computation itself failed (diverged): not bad input
        print(f"poisonlib: failed: {e}", file=sys.stderr)
        return 1
    except PoisonlibError as e:
        print(f"poisonlib: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
