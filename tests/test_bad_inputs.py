"""Every bad input to the command line ends the same way: exit status 2, one line on
stderr that names the bad value (and what is allowed), and nothing written -- neither
into the results store nor an output folder. Run in process (``cli.main``) for speed.

Each case is ``(argv, text the message must contain)``; ``{tmp}`` is the test's folder
and ``FILE:<kind>`` is replaced by a file of that kind made there.
"""

import os
import pickle

import numpy as np
import pytest
import torch

from poisonlib import PoisonlibError
from poisonlib.cli import main

GC = ["attack", "gc", "--dataset", "mnist", "--model", "lr", "--eps-w", "1", "--eps-d", "0.1", "--profile", "smoke", "--epochs", "2"]
TAU = ["tau", "--dataset", "mnist", "--model", "lr", "--profile", "smoke"]


def gc(**over):
    """``attack gc`` with some options replaced (``eps_d="x"`` sets ``--eps-d x``)."""
    argv = list(GC)
    for k, v in over.items():
        flag = "--" + k.replace("_", "-")
        if flag in argv:
            argv[argv.index(flag) + 1] = v
        else:
            argv += [flag, v]
    return argv + ["--out", "{tmp}/out"]


CASES = {
    # attack gc: numbers
    "gc eps_d negative": (gc(eps_d="-1"), "'-1'"),
    "gc eps_d zero": (gc(eps_d="0"), "got '0'"),
    "gc eps_d text": (gc(eps_d="lots"), "'lots'"),
    "gc eps_d nan": (gc(eps_d="nan"), "'nan'"),
    "gc eps_d inf": (gc(eps_d="inf"), "'inf'"),
    "gc eps_d too large for memory": (gc(eps_d="1e9"), "eps_d=1e+09 asks for 300,000,000,000 poisons"),
    "gc eps_w zero": (gc(eps_w="0"), "--eps-w: must be a finite number > 0, got '0'"),
    "gc eps_w negative": (gc(eps_w="-2"), "'-2'"),
    "gc eps_w text": (gc(eps_w="big"), "'big'"),
    "gc eps_w calibrated for randompc": (gc(eps_w="calibrated", target="randompc"), "eps_w='calibrated' is for GradPC targets"),
    "gc seed negative": (gc(seed="-1"), "'-1'"),
    "gc epochs negative": (gc(epochs="-5"), "'-5'"),
    "gc epochs fraction": (gc(epochs="2.5"), "'2.5'"),
    # attack gc: names
    "gc unknown dataset": (gc(dataset="cifar100"), "unknown dataset 'cifar100'; choose from:"),
    "gc unknown model": (gc(model="vgg"), "unknown model 'vgg'; choose from:"),
    "gc unknown profile": (gc(profile="huge"), "invalid choice: 'huge'"),
    "gc unknown protocol": (gc(protocol="authors"), "invalid choice: 'authors'"),
    "gc unknown device": (gc(device="tpu"), "invalid choice: 'tpu'"),
    "gc unknown variant": (gc(variant="fast"), "invalid choice: 'fast'"),
    "gc unknown clip": (gc(clip="sometimes"), "invalid choice: 'sometimes'"),
    "gc unknown target": (gc(target="magic"), "invalid choice: 'magic'"),
    "gc unknown option": (gc(frobnicate="1"), "--frobnicate"),
    "gc eps_norm unknown": (gc(eps_w_norm="square"), "invalid choice: 'square'"),
    # attack gc: files
    "gc data_root missing": (gc(data_root="{tmp}/NOWHERE"), "NOWHERE"),
    "gc data_root wrong MNIST files": (gc(data_root="FILE:bad_mnist_root"), "train-images-idx3-ubyte' has magic number 0x74686573"),
    "gc cifar10 without data_root": (gc(dataset="cifar10"), "'cifar10' has no embedded copy"),
    "gc cifar10 pickled code under data_root": (gc(dataset="cifar10", data_root="FILE:evil_cifar_root"), "refusing"),
    "gc npz missing": (gc(dataset="{tmp}/none.npz"), "none.npz' does not exist"),
    "gc npz not an npz": (gc(dataset="FILE:text.npz"), "text.npz' is not an npz file"),
    "gc npz lacks arrays": (gc(dataset="FILE:partial.npz"), "lacks array(s) x_test, y_test"),
    "gc npz with NaN": (gc(dataset="FILE:nan.npz"), "contains 1 NaN or infinite value(s)"),
    "gc out is a file": (GC + ["--out", "FILE:plain.txt"], "plain.txt' exists and is not a folder"),
    # baselines
    "tgda eps_d too large": (["attack", "tgda", "--dataset", "mnist", "--model", "lr", "--eps-d", "1e9", "--profile", "smoke", "--out", "{tmp}/o"],
                             "eps_d=1e+09"),
    "mt eps_d zero": (["attack", "mt", "--dataset", "mnist", "--model", "lr", "--eps-d", "0", "--out", "{tmp}/o"], "got '0'"),
    "unknown attack": (["attack", "fgsm"], "invalid choice: 'fgsm'"),
    # tau --checkpoint
    "tau checkpoint missing": (TAU + ["--checkpoint", "{tmp}/none.pt"], "none.pt' does not exist"),
    "tau checkpoint text file": (TAU + ["--checkpoint", "FILE:text.pt"], "text.pt' is not a torch state dict"),
    "tau checkpoint truncated": (TAU + ["--checkpoint", "FILE:truncated.pt"], "truncated.pt' is not a torch state dict"),
    "tau checkpoint pickled code": (TAU + ["--checkpoint", "FILE:evil.pt"], "refusing checkpoint"),
    "tau checkpoint a tensor": (TAU + ["--checkpoint", "FILE:tensor.pt"], "tensor.pt' holds Tensor"),
    "tau checkpoint other model": (TAU + ["--checkpoint", "FILE:other.npz"], "other.npz' does not fit model 'lr'"),
    "tau checkpoint npz garbage": (TAU + ["--checkpoint", "FILE:text.npz"], "text.npz' is not a torch state dict"),
    "tau checkpoint folder": (TAU + ["--checkpoint", "{tmp}"], "is a folder"),
    "tau eps_w zero": (TAU + ["--eps-w", "0"], "got '0'"),
    # run, report
    "run unknown experiment": (["run", "table99"], "invalid choice: 'table99'"),
    "run unknown profile": (["run", "table1", "--profile", "huge"], "invalid choice: 'huge'"),
    "run unknown protocol": (["run", "table1", "--protocol", "authors"], "invalid choice: 'authors'"),
    "run seeds negative": (["run", "table1", "--seeds", "-1"], "'-1'"),
    "run csv is a folder": (["run", "table1", "--csv", "{tmp}"], "is a folder"),
    # run, book: executors
    "run unknown executor": (["run", "table1", "--executor", "dask"], "invalid choice: 'dask'"),
    "run jobs zero": (["run", "table1", "-j", "0"], "-j/--jobs: must be an integer >= 1, got '0'"),
    "run jobs text": (["run", "table1", "--jobs", "many"], "got 'many'"),
    "run ray option without ray": (["run", "table1", "--ray-address", "auto"], "--ray-address is an option of --executor ray, not --executor local"),
    "run ray gpus zero": (["run", "table1", "--executor", "ray", "--ray-gpus-per-task", "0"], "got '0'"),
    "run slurm option without slurm": (["run", "table1", "--slurm-partition", "gpu"], "--slurm-partition is an option of --executor slurm"),
    "run slurm timeout zero": (["run", "table1", "--executor", "slurm", "--slurm-timeout-min", "0"], "got '0'"),
    "run slurm gpus negative": (["run", "table1", "--executor", "slurm", "--slurm-gpus", "-1"], "got '-1'"),
    "run slurm config missing": (["run", "table1", "--executor", "slurm", "--slurm-config", "{tmp}/none.yaml"], "none.yaml' does not exist"),
    "run slurm config unknown key": (["run", "table1", "--executor", "slurm", "--slurm-config", "FILE:typo.yaml"], "unknown key(s) ['partiton']"),
    "run slurm config not a mapping": (["run", "table1", "--executor", "slurm", "--slurm-config", "FILE:list.yaml"], "must be a mapping"),
    "book jobs zero": (["book", "-j", "0"], "got '0'"),
    "book ray option without ray": (["book", "--ray-address", "auto", "--no-build"], "--ray-address is an option of --executor ray"),
    "report unknown profile": (["report", "--profile", "huge"], "invalid choice: 'huge'"),
    "report unknown protocol": (["report", "--protocol", "authors"], "invalid choice: 'authors'"),
    # data fetch (fails before any network)
    "fetch unknown dataset": (["data", "fetch", "svhn", "--data-root", "{tmp}/d"], "invalid choice: 'svhn'"),
    "fetch without data_root": (["data", "fetch", "mnist"], "--data-root"),
    "fetch data_root is a file": (["data", "fetch", "mnist", "--data-root", "FILE:plain.txt"], "plain.txt' exists and is not a folder"),
    # the command itself
    "unknown command": (["frobnicate"], "invalid choice: 'frobnicate'"),
    "no command": ([], "required"),
}


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _make(kind: str, tmp) -> str:
    path = os.path.join(tmp, kind)
    if kind == "bad_mnist_root":
        raw = os.path.join(path, "MNIST", "raw")
        os.makedirs(raw)
        for f in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
            with open(os.path.join(raw, f), "wb") as fh:
                fh.write(b"these are not IDX files")
    elif kind == "evil_cifar_root":
        folder = os.path.join(path, "cifar-10-batches-py")
        os.makedirs(folder)
        for f in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            with open(os.path.join(folder, f), "wb") as fh:
                pickle.dump({b"data": _Evil(os.path.join(tmp, "PWNED")), b"labels": [0]}, fh, protocol=2)
    elif kind in ("text.npz", "text.pt", "plain.txt"):
        with open(path, "w") as fh:
            fh.write("just some text\n")
    elif kind == "typo.yaml":
        with open(path, "w") as fh:
            fh.write("partiton: gpu\n")
    elif kind == "list.yaml":
        with open(path, "w") as fh:
            fh.write("- partition\n- gpu\n")
    elif kind == "partial.npz":
        np.savez(path, x_train=np.zeros((4, 2)), y_train=np.zeros(4, dtype=np.int64))
    elif kind == "nan.npz":
        rng = np.random.default_rng(0)
        x = rng.normal(size=(40, 3))
        x[0, 0] = np.nan
        np.savez(path, x_train=x, y_train=rng.integers(0, 2, 40), x_test=rng.normal(size=(8, 3)), y_test=rng.integers(0, 2, 8))
    elif kind == "truncated.pt":
        torch.save({"0.weight": torch.ones(10, 784)}, path)
        with open(path, "r+b") as fh:
            fh.truncate(200)
    elif kind == "evil.pt":
        torch.save({"0.weight": _Evil(os.path.join(tmp, "PWNED"))}, path)
    elif kind == "tensor.pt":
        torch.save(torch.ones(3), path)
    elif kind == "other.npz":
        np.savez(path, **{"0.weight": np.ones((2, 5), np.float32)})
    return path


def _argv(argv, tmp):
    out = []
    for a in argv:
        a = a.replace("{tmp}", str(tmp))
        if a.startswith("FILE:"):
            target = os.path.join(tmp, a[5:])
            a = target if os.path.exists(target) else _make(a[5:], str(tmp))
        out.append(a)
    return out


def _written(root) -> list:
    return [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs]


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_one_line_exit_2_nothing_written(case, tmp_path, results_dir, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv, message = CASES[case]
    argv = _argv(argv, tmp_path)
    before = set(_written(tmp_path))
    assert main(argv) == 2, capsys.readouterr().err
    cap = capsys.readouterr()
    lines = cap.err.strip().splitlines()
    assert len(lines) == 1, cap.err
    assert message in lines[0], lines[0]
    assert "Traceback" not in cap.err and cap.out == ""
    assert not results_dir.exists() or _written(results_dir) == []  # nothing in the results store
    assert set(_written(tmp_path)) == before  # no output folder, no temporary file, no marker of pickled code


LIBRARY = {
    "unknown profile": (lambda: __import__("poisonlib.experiments").experiments.get_profile("huge"), "unknown profile 'huge'"),
    "unknown protocol": (lambda: __import__("poisonlib.protocols").protocols.get_protocol("authors"), "'authors'"),
    "unknown limits key": (lambda: _profile(limits={"lr": {"max_poison": 5}}), "unknown key in ['max_poison']"),
    "unknown baseline": (lambda: _profile(baselines={"fgsm": {}}), "unknown baseline 'fgsm'"),
    "unknown baseline option": (lambda: _profile(baselines={"tgda": {"default": {"epoch": 3}}}), "unknown key(s) ['epoch']"),
    "unknown paper_only attack": (lambda: _profile(baselines={"paper_only": {"nn": ("fgsm",)}}), "unknown attack(s) ['fgsm']"),
}


def _profile(**kw):
    from poisonlib.experiments import Profile

    return Profile("custom", "a test profile", needs_data_root=False, n_train=None, **kw)


@pytest.mark.parametrize("case", list(LIBRARY))
def test_unknown_profile_and_protocol_keys_are_one_line_errors(case):
    make, message = LIBRARY[case]
    with pytest.raises(PoisonlibError) as e:
        make()
    assert message in str(e.value) and "\n" not in str(e.value)


def test_the_memory_estimate_says_the_number_before_allocating():
    from poisonlib._validation import check_poison_memory

    assert check_poison_memory(0.1, 1000, 784) == 6 * 100 * 784 * 4  # fits: returns its estimate in bytes
    with pytest.raises(PoisonlibError, match=r"about 18,816,000,000,000 bytes \(18.8 TB\)"):
        check_poison_memory(1e6, 1000, 784)
