"""One prepared GPU check (issue 25), in ≤ 8 minutes on one GPU: ``benchmarks/gpu_check.sh`` runs it.

Parts, each a subprocess with its own time cap (a part that fails or runs out of time is
recorded and the next one runs):

1. ``gpu_tests``: ``pytest tests/test_gpu.py -q`` (every kind of cell on CUDA);
2. ``gc_step``: ``benchmarks/gc_step.py`` on the device (GC step vs the released code's);
3. ``dryrun_mnist``: :func:`poisonlib.dryrun.dry_run` of the MNIST NN and CNN GC cells of
   Table 2 at ε_d = 1 (60,000 poisons) at the ``paper`` profile, on full-size synthetic MNIST
   written by :mod:`poisonlib.testing` (training epochs and GC steps capped at 1, cost fitted);
4. ``dryrun_resnet``: the same for the CIFAR-10 ResNet-18 cell at ε_d = 1 (one capped run, an
   upper-bound extrapolation) on full-size synthetic CIFAR-10.

Writes ``gpu_check.json`` (every part's status, seconds, result) and ``logs/<part>.log`` under
``$OUT`` if set, else ``benchmarks/results/``. ``--cpu`` rehearses the same steps on the CPU
with small data (a couple of minutes).

    python benchmarks/gpu_check.py [--cpu] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

#: (part, seconds allowed on the GPU, on the CPU rehearsal)
CAPS = {"gpu_tests": (120, 120), "gc_step": (60, 90), "dryrun_mnist": (150, 150), "dryrun_resnet": (120, 240)}


def _write_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, default=str)
    os.replace(tmp, path)


def _dryrun_part(which: str, cpu: bool, out: str) -> None:
    """Body of the ``dryrun_*`` parts (run in a child process): write the data, dry-run the cells."""
    import torch

    from poisonlib.dryrun import dry_run
    from poisonlib.runner import Cell
    from poisonlib.testing import write_cifar10, write_mnist

    device = "cpu" if cpu else "cuda"
    rows_path = os.path.join(out, f"{which}.jsonl")
    open(rows_path, "w").close()

    def save(row):
        print(json.dumps(row), flush=True)
        with open(rows_path, "a") as f:
            f.write(json.dumps(row, default=str) + "\n")

    with tempfile.TemporaryDirectory(prefix="poisonlib-data-") as root:
        t0 = time.perf_counter()
        if which == "dryrun_mnist":
            write_mnist(root, n_train=600 if cpu else 60000, n_test=200 if cpu else 10000, structured=True)
            # the CNN first: its 60,000-poison GC step is the memory question of this check
            cells = [Cell("gc", "mnist", "cnn", 0.5, eps_d=1.0), Cell("gc", "mnist", "nn", 0.5, eps_d=1.0)]
            fit = not cpu  # the rehearsal runs each cell once (the fit's extra runs are tested in tests/test_dryrun.py)
        else:
            write_cifar10(root, n_per_batch=10 if cpu else 10000, structured=True)  # ResNet on a CPU: minutes even for 50 images
            cells = [Cell("gc", "cifar10", "resnet18", 0.5, eps_d=1.0)]
            fit = False  # one capped run: a second would not fit the time cap
        print(f"synthetic data written in {time.perf_counter() - t0:.1f} s under {root}", flush=True)
        torch.set_num_threads(os.cpu_count() or 1)
        dry_run(cells, "paper", data_root=root, device=device, steps=1, fit=fit, on_row=save)


def _run_part(name: str, cmd: list, cap: int, out: str, env: dict) -> dict:
    log = os.path.join(out, "logs", f"{name}.log")
    t0 = time.perf_counter()
    with open(log, "w") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        try:
            rc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT, timeout=cap).returncode
            status = "ok" if rc == 0 else "failed"
        except subprocess.TimeoutExpired:
            rc, status = None, "timeout"
    secs = time.perf_counter() - t0
    with open(log) as f:
        tail = f.read()[-3000:]
    print(f"[gpu_check] {name}: {status} in {secs:.0f} s (cap {cap} s)", flush=True)
    return dict(status=status, returncode=rc, seconds=round(secs, 1), cap_s=cap, command=" ".join(cmd), log=os.path.relpath(log, out),
                log_tail=tail)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpu", action="store_true", help="rehearse on the CPU with small sizes")
    ap.add_argument("--out", default=os.environ.get("OUT") or os.path.join(HERE, "results"))
    ap.add_argument("--part", help=argparse.SUPPRESS)  # internal: run one dry-run part in this process
    args = ap.parse_args()
    out = os.path.abspath(args.out)
    os.makedirs(os.path.join(out, "logs"), exist_ok=True)
    if args.part:
        _dryrun_part(args.part, args.cpu, out)
        return 0

    import torch

    cpu = args.cpu
    py = sys.executable
    env = dict(os.environ, POISONLIB_PROGRESS="0", PYTHONPATH=os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), ROOT) if p))
    step = [py, os.path.join(HERE, "gc_step.py"), "--skip-recompute", "--json", os.path.join(out, "gc_step.json")]
    step += (["--models", "lr", "nn", "--eps", "0.03", "--repeats", "2"] if cpu else
             ["--models", "lr", "nn", "cnn", "--eps", "0.03", "1", "--repeats", "5", "--device", "cuda"])
    parts = {
        "gpu_tests": [py, "-m", "pytest", os.path.join(ROOT, "tests", "test_gpu.py"), "-q", "-p", "no:cacheprovider"],
        "gc_step": step,
        "dryrun_mnist": [py, os.path.abspath(__file__), "--part", "dryrun_mnist", "--out", out] + (["--cpu"] if cpu else []),
        "dryrun_resnet": [py, os.path.abspath(__file__), "--part", "dryrun_resnet", "--out", out] + (["--cpu"] if cpu else []),
    }
    report = dict(started=time.strftime("%Y-%m-%dT%H:%M:%S"), mode="cpu rehearsal" if cpu else "gpu", python=platform.python_version(),
                  torch=torch.__version__, cuda=torch.cuda.is_available(),
                  device=torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor() or "cpu",
                  cpu_count=os.cpu_count(), parts={})
    path = os.path.join(out, "gpu_check_cpu.json" if cpu else "gpu_check.json")
    if not cpu and not torch.cuda.is_available():
        print("[gpu_check] no CUDA device: use --cpu to rehearse", flush=True)
        report["error"] = "no CUDA device"
        _write_json(path, report)
        return 2
    for name, cmd in parts.items():
        res = _run_part(name, cmd, CAPS[name][1 if cpu else 0], out, env)
        if name.startswith("dryrun"):
            rows_path = os.path.join(out, f"{name}.jsonl")
            if os.path.exists(rows_path):
                with open(rows_path) as f:
                    res["rows"] = [json.loads(line) for line in f if line.strip()]
        elif name == "gc_step" and os.path.exists(os.path.join(out, "gc_step.json")):
            with open(os.path.join(out, "gc_step.json")) as f:
                res["rows"] = json.load(f)
        report["parts"][name] = res
        _write_json(path, report)  # after every part, so that a stopped check keeps what it measured
    report["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    _write_json(path, report)
    print(f"[gpu_check] wrote {path}", flush=True)
    return 0 if all(p["status"] == "ok" for p in report["parts"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
