import json
import os
import subprocess
import sys

import numpy as np
import pytest

from poisonlib.cli import main

SUBCOMMANDS = [["attack"], ["attack", "gc"], ["attack", "tgda"], ["attack", "gm"], ["attack", "kkt"], ["attack", "mt"], ["tau"], ["book"], ["run"], ["report"], ["data"], ["data", "fetch"], ["list"]]


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "poisonlib.cli", *args], capture_output=True, text=True, cwd=cwd)


def test_help_lists_every_subcommand():
    r = run_cli("--help")
    assert r.returncode == 0
    for cmd in ("attack", "tau", "book", "run", "list"):
        assert cmd in r.stdout


@pytest.mark.parametrize("cmd", SUBCOMMANDS, ids=lambda c: " ".join(c))
def test_each_subcommand_has_help(cmd, capsys):
    assert main([*cmd, "--help"]) == 0  # main returns argparse's exit status rather than raising SystemExit
    assert "usage: poisonlib" in capsys.readouterr().out


def test_attack_gc_writes_the_three_files(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["attack", "gc", "--dataset", "mnist", "--model", "lr", "--eps-w", "1", "--eps-d", "0.1", "--profile", "smoke",
               "--epochs", "5", "--seed", "1", "--out", str(out), "--device", "cpu"])
    assert rc == 0 and sorted(os.listdir(out)) == ["metrics.json", "poisons.npz", "target.npz"]
    with np.load(out / "poisons.npz") as f:
        assert f["x"].dtype == np.float32 and f["x"].shape == (30, 784) and f["y"].dtype == np.int64
        assert f["x"].min() >= 0 and f["x"].max() <= 1
    with np.load(out / "target.npz") as f:
        assert sorted(f.files) == ["bias", "weight"] and f["weight"].shape == (10, 784)
    rec = json.loads((out / "metrics.json").read_text())
    for k in ("clean_acc", "target_acc", "retrained_acc", "tau2", "tauc", "grad_mixed"):
        assert k in rec["metrics"]
    assert rec["seed"] == 1 and "torch" in rec["environment"] and "git_commit" in rec
    assert json.loads(capsys.readouterr().out)["n_poison"] == 30
    # the target it wrote is a checkpoint `poisonlib tau` can read
    assert main(["tau", "--dataset", "mnist", "--model", "lr", "--profile", "smoke", "--checkpoint", str(out / "target.npz")]) == 0
    t = json.loads(capsys.readouterr().out)
    assert t["tau2"] == pytest.approx(rec["metrics"]["tau2"], rel=1e-5)


def test_synthetic_poisons_are_unconstrained(tmp_path):
    out = tmp_path / "g"
    assert main(["attack", "gc", "--dataset", "gaussian10", "--model", "lr", "--eps-w", "3", "--eps-d", "tau", "--profile", "smoke",
                 "--epochs", "50", "--out", str(out)]) == 0
    with np.load(out / "poisons.npz") as f:
        assert f["x"].shape[1] == 10 and (f["x"].max() > 1 or f["x"].min() < 0)


def _nan_npz(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3))
    x[0, 0] = np.nan
    p = tmp_path / "nan.npz"
    np.savez(p, x_train=x, y_train=rng.integers(0, 2, 40), x_test=rng.normal(size=(8, 3)), y_test=rng.integers(0, 2, 8))
    return str(p)


BAD = {
    "eps_d_negative": (["--eps-d", "-1"], "--eps-d: must be a finite number > 0, got '-1'"),
    "eps_d_zero": (["--eps-d", "0"], "--eps-d: must be a finite number > 0, got '0'"),
    "eps_w_zero": (["--eps-w", "0"], "--eps-w: must be a finite number > 0, got '0'"),
    "unknown_dataset": (["--dataset", "cifar100"], "unknown dataset 'cifar100'; choose from:"),
    "unknown_model": (["--model", "vgg"], "unknown model 'vgg'; choose from:"),
    "missing_data_root": (["--data-root", "NOWHERE"], "MNIST not found under data_root='NOWHERE'"),
    "nan_in_data": (["--dataset", "NANFILE"], "contains 1 NaN or infinite value(s)"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_one_line_exit_2_nothing_written(case, tmp_path):
    override, message = BAD[case]
    override = [_nan_npz(tmp_path) if a == "NANFILE" else a for a in override]
    args = {"--dataset": "mnist", "--model": "lr", "--eps-w": "1", "--eps-d": "0.1", "--profile": "smoke", "--epochs": "2"}
    for k, v in zip(override[::2], override[1::2]):
        args[k] = v
    out = tmp_path / "out"
    argv = ["attack", "gc", *[x for kv in args.items() for x in kv], "--out", str(out)]
    r = run_cli(*argv, cwd=str(tmp_path))
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], r.stderr
    assert not out.exists()
    assert [p for p in os.listdir(tmp_path) if p.startswith(".poisonlib")] == []


def test_list(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "mnist17" in out and "profile smoke" in out


def test_run_table1_prints_rows_writes_csv_and_reuses_the_store(tmp_path, capsys):
    csv = tmp_path / "out" / "t1.csv"
    assert main(["run", "table1", "--profile", "smoke", "--device", "cpu", "--csv", str(csv)]) == 0
    cap = capsys.readouterr()
    assert "table1 [smoke]: 6 computed" in cap.err and "gradpc" in cap.out
    import pandas as pd

    df = pd.read_csv(csv)
    assert len(df) == 6 and set(df["model"]) == {"lr", "nn", "cnn"} and {"clean_acc", "tau2", "record"} <= set(df.columns)
    assert main(["run", "table1", "--profile", "smoke", "--device", "cpu"]) == 0
    assert "6 cached" in capsys.readouterr().err


def test_run_skips_cells_it_cannot_run_and_bad_names_fail_cleanly(tmp_path):
    r = run_cli("run", "fig9", "--profile", "smoke", "--device", "cpu")
    assert r.returncode == 0 and "needs data_root" in r.stdout and "1 skipped" in r.stderr
    r = run_cli("run", "table99")
    assert r.returncode == 2 and "invalid choice: 'table99'" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = run_cli("run", "table1", "--csv", str(tmp_path))
    assert r.returncode == 2 and "is a folder" in r.stderr
