"""The boundary, by class of fault (issue 23): generated malformed datasets (exit 2 and one
line from the command line), checkpoints (one line from the loader), damaged records
(quarantined and recomputed), failed cells recorded with their reason, strict numbers,
output locations, and a full disk on a tiny tmpfs where the machine allows mounting one."""

import errno
import json
import math
import os
import subprocess

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from poisonlib import PoisonlibError, results
from poisonlib._validation import check_feature_box, check_writable_location, parse_float, parse_int, parse_seed
from poisonlib.cli import main
from poisonlib.data import fingerprint, load_dataset
from poisonlib.formats import MAX_CLASSES, load_checkpoint, read_cifar_batch, read_idx, read_state_dict

SETTINGS = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _good(rng, n=40, d=3):
    return {"x_train": rng.normal(size=(n, d)), "y_train": np.arange(n) % 2, "x_test": rng.normal(size=(8, d)), "y_test": np.arange(8) % 2}


#: name -> (how it breaks a good dataset, text the one line must contain)
NPZ_FAULTS = {
    "feature counts disagree": (lambda a: {**a, "x_test": a["x_test"][:, :2]}, "same feature shape"),
    "1-D x": (lambda a: {**a, "x_train": a["x_train"][:, 0]}, "at least 2-D"),
    "2-D y": (lambda a: {**a, "y_train": a["y_train"][:, None]}, "labels must be 1-D"),
    "label 2^40": (lambda a: {**a, "y_train": np.where(np.arange(40) == 3, 2**40, a["y_train"])}, "found label 1099511627776"),
    "label -1": (lambda a: {**a, "y_test": a["y_test"] - 1}, "found label -1"),
    "bool labels": (lambda a: {**a, "y_train": a["y_train"].astype(bool), "y_test": a["y_test"].astype(bool)}, "labels are booleans"),
    "complex x": (lambda a: {**a, "x_train": a["x_train"] + 1j}, "not complex or bool"),
    "NaN x": (lambda a: {**a, "x_test": np.where(np.arange(24).reshape(8, 3) == 5, np.nan, a["x_test"])}, "NaN or infinite"),
    "inf x": (lambda a: {**a, "x_train": np.where(np.arange(120).reshape(40, 3) == 7, -np.inf, a["x_train"])}, "NaN or infinite"),
    "rows disagree": (lambda a: {**a, "y_train": a["y_train"][:-1]}, "has 40 rows but y_train has 39"),
    "box inverted": (lambda a: {**a, "feature_box": np.array([1.0, 0.0])}, "lo < hi"),
    "box three values": (lambda a: {**a, "feature_box": np.array([0.0, 0.5, 1.0])}, "two real numbers"),
    "box NaN": (lambda a: {**a, "feature_box": np.array([0.0, np.nan])}, "finite with lo < hi"),
    "x_val without y_val": (lambda a: {**a, "x_val": a["x_train"][:5]}, "only one of x_val, y_val"),
    "mixed label kinds": (lambda a: {**a, "y_test": a["y_test"].astype(float)}, "labels have dtypes"),
    "empty train": (lambda a: {**a, "x_train": a["x_train"][:0], "y_train": a["y_train"][:0]}, "x_train has no rows"),
    "lacks y_test": (lambda a: {k: v for k, v in a.items() if k != "y_test"}, "lacks array(s) y_test"),
}

TAU = ["tau", "--model", "lr", "--profile", "smoke", "--device", "cpu", "--dataset"]


def _one_line_exit_2(argv, capsys, text):
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert text in lines[0], lines[0]
    return lines[0]


@SETTINGS
@given(fault=st.sampled_from(sorted(NPZ_FAULTS)), seed=st.integers(0, 2**16), n=st.integers(30, 60), d=st.integers(2, 6))
def test_generated_malformed_npz_datasets_give_exit_2_and_one_line(fault, seed, n, d, tmp_path, capsys):
    rng = np.random.default_rng(seed)
    arrays = _good(rng, 40, 3)
    path = tmp_path / f"bad-{seed}.npz"
    np.savez(path, **NPZ_FAULTS[fault][0](arrays))
    line = _one_line_exit_2(TAU + [str(path)], capsys, NPZ_FAULTS[fault][1])
    assert "Traceback" not in line


@pytest.mark.parametrize("kind", ["text", "fifo", "folder"])
def test_files_that_are_not_npz_datasets_are_named(kind, tmp_path, capsys):
    path = tmp_path / "data.npz"
    if kind == "text":
        path.write_text("x,y\n1,2\n")
        text = "is not an npz file"
    elif kind == "fifo":
        os.mkfifo(path)
        text = "named pipe (FIFO), not a regular file"
    else:
        path.mkdir()
        text = "is a folder"
    _one_line_exit_2(TAU + [str(path)], capsys, text)  # a FIFO is never opened: no hang


def test_a_good_npz_loads_and_its_fingerprint_follows_the_content_not_the_path(tmp_path):
    rng = np.random.default_rng(0)
    a = _good(rng)
    np.savez(tmp_path / "a.npz", **a)
    (tmp_path / "copy").mkdir()
    np.savez(tmp_path / "copy" / "a.npz", **a)
    b = {**a, "x_train": a["x_train"] + 1e-3}
    np.savez(tmp_path / "b.npz", **b)
    fa, fcopy, fb = (fingerprint(load_dataset(str(p))) for p in (tmp_path / "a.npz", tmp_path / "copy" / "a.npz", tmp_path / "b.npz"))
    assert fa == fcopy != fb
    ds = load_dataset(str(tmp_path / "a.npz"))
    assert ds.fingerprint == fa and len(fa) == 64
    ds.x_train.add_(1.0)  # changed in place: hashed again, from the arrays
    assert ds.fingerprint != fa


def test_same_shape_data_under_one_name_gets_its_own_tau_through_one_store(tmp_path, monkeypatch, capsys):
    """The cache-key case of issue 23: ``a/ok.npz`` and ``b/ok.npz`` (same name and shapes, other content), then
    ``a/ok.npz`` overwritten in place with ``b``'s content, all through one store. Before content keys the
    overwritten file was served the old content's cached clean model (tau(2) 6.39 where a fresh store gives
    5.92 at 968f986); now every run gets the tau(2) a fresh store gives its data."""
    rng = np.random.default_rng(0)
    arrays = {}
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        x = rng.random((300, 6))
        y = x[:, :3].argmax(1) if name == "a" else rng.integers(0, 3, 300)
        arrays[name] = dict(x_train=x[:240], y_train=y[:240], x_test=x[240:], y_test=y[240:])
        np.savez(tmp_path / name / "ok.npz", **arrays[name])

    def tau(store, name):
        monkeypatch.setenv("POISONLIB_RESULTS", str(tmp_path / store))
        assert main(TAU + [str(tmp_path / name / "ok.npz")]) == 0
        return json.loads(capsys.readouterr().out)["tau2"]

    shared_a, shared_b, fresh_b = tau("shared", "a"), tau("shared", "b"), tau("fresh", "b")
    assert shared_b == fresh_b != shared_a
    np.savez(tmp_path / "a" / "ok.npz", **arrays["b"])  # same path, same size, other content
    assert tau("shared", "a") == fresh_b


def test_mnist_fingerprint_is_stable_and_the_subset_has_its_own(mnist):
    from poisonlib.data import subsample_train

    again = load_dataset("mnist")
    assert mnist.fingerprint == again.fingerprint
    sub = subsample_train(mnist, 300)
    assert sub.fingerprint not in (mnist.fingerprint, load_dataset("mnist", split_seed=1).fingerprint)
    assert subsample_train(again, 300).fingerprint == sub.fingerprint


def _idx(path, magic, dims, data):
    with open(path, "wb") as f:
        f.write(bytes(magic) + np.asarray(dims, ">u4").tobytes() + np.asarray(data, np.uint8).tobytes())


def test_idx_and_cifar_files_are_checked_and_named(tmp_path):
    _idx(tmp_path / "labels", [0, 0, 8, 1], [3], [1, 2, 10])
    with pytest.raises(PoisonlibError, match=r"labels' holds label 10; MNIST labels are 0..9"):
        read_idx(str(tmp_path / "labels"), 1, max_label=9)
    _idx(tmp_path / "magic", [1, 2, 3, 4], [3], [1, 2, 3])
    with pytest.raises(PoisonlibError, match=r"IDX file '.*magic' has magic number 0x01020304"):
        read_idx(str(tmp_path / "magic"), 1)
    _idx(tmp_path / "short", [0, 0, 8, 3], [5, 28, 28], [0] * 100)
    with pytest.raises(PoisonlibError, match="declares shape"):
        read_idx(str(tmp_path / "short"), 3)
    import pickle

    with open(tmp_path / "batch", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 11]}, f)
    with pytest.raises(PoisonlibError, match="holds label 11; CIFAR-10 labels are 0..9"):
        read_cifar_batch(str(tmp_path / "batch"))


# --------------------------------------------------------------------------- checkpoints
def _lr():
    from poisonlib.models import model_for

    return model_for("lr", load_dataset("or2d"))


@SETTINGS
@given(bad=st.sampled_from([math.nan, math.inf, -math.inf]), where=st.integers(0, 1), fmt=st.sampled_from(["pt", "npz"]))
def test_generated_non_finite_checkpoints_are_refused(bad, where, fmt, tmp_path):
    state = {k: v.clone() for k, v in _lr().state_dict().items()}
    key = sorted(state)[where]
    state[key].view(-1)[0] = bad
    path = tmp_path / f"ck.{fmt}"
    if fmt == "pt":
        torch.save(state, path)
    else:
        np.savez(path, **{k: v.numpy() for k, v in state.items()})
    with pytest.raises(PoisonlibError, match=rf"parameter '{key}' holds 1 NaN or infinite value"):
        read_state_dict(str(path))


def test_a_checkpoint_that_does_not_fit_says_why(tmp_path):
    m = _lr()
    state = {k: torch.zeros(v.shape[0] + 1, *v.shape[1:]) for k, v in m.state_dict().items()}
    torch.save(state, tmp_path / "other.pt")
    with pytest.raises(PoisonlibError, match=r"does not fit model 'lr': size mismatch for"):
        load_checkpoint(m, str(tmp_path / "other.pt"), "lr")
    os.mkfifo(tmp_path / "fifo.pt")
    with pytest.raises(PoisonlibError, match="FIFO"):
        read_state_dict(str(tmp_path / "fifo.pt"))
    torch.save({"w": torch.ones(2, dtype=torch.complex64)}, tmp_path / "complex.pt")
    with pytest.raises(PoisonlibError, match="parameters are real numbers"):
        read_state_dict(str(tmp_path / "complex.pt"))


# --------------------------------------------------------------------------- records
METRICS = {"clean_acc": 90.0, "target_acc": 80.0, "target_drop": -10.0, "tau2": 0.5, "tauc": 0.2, "n_train": 300, "radius": math.nan}
CONFIG = {"dataset": "mnist", "model": "lr", "eps_w": 1.0}


def _damage(rec, how, key):
    m = rec["metrics"]
    if how == "missing":
        m.pop(key)
    elif how == "nan" and key != "n_train":
        m[key] = math.nan
    else:
        m[key] = {"string": "high", "bool": True, "null": None, "list": [1], "nan": "nan"}.get(how, "high")
    return rec


@SETTINGS
@given(how=st.sampled_from(["missing", "nan", "string", "bool", "null", "list"]), key=st.sampled_from(sorted(set(METRICS) - {"radius"})))
def test_generated_damaged_records_are_quarantined_and_recomputed(how, key, tmp_path):
    store = str(tmp_path / f"s-{how}-{key}")
    rec = results.cached_run("target", CONFIG, lambda: dict(METRICS), results_dir=store)
    path = results.result_path("target", CONFIG, store)
    with open(path) as f:
        stored = json.load(f)
    stored["metrics"] = {k: v for k, v in rec["metrics"].items()}
    with open(path, "w") as f:
        json.dump(_damage(stored, how, key), f)
    calls = []
    again = results.cached_run("target", CONFIG, lambda: calls.append(1) or dict(METRICS), results_dir=store)
    assert calls == [1] and not again["cached"]
    assert len(os.listdir(os.path.join(store, "quarantine"))) == 1


@pytest.mark.parametrize("fault", ["empty_metrics", "deep", "fifo", "symlink_loop"])
def test_store_faults_of_the_issue_are_quarantined(fault, tmp_path, capsys):
    store = str(tmp_path / "s")
    path = results.result_path("target", CONFIG, store)
    os.makedirs(os.path.dirname(path))
    if fault == "empty_metrics":
        results.cached_run("target", CONFIG, lambda: dict(METRICS), results_dir=store)
        rec = json.load(open(path))
        rec["metrics"] = {}
        json.dump(rec, open(path, "w"))
    elif fault == "deep":
        open(path, "w").write("[" * 200_000)
    elif fault == "fifo":
        os.mkfifo(path)
    else:
        os.symlink(os.path.basename(path), path)
    again = results.cached_run("target", CONFIG, lambda: dict(METRICS), results_dir=store)
    assert not again["cached"] and again["metrics"]["n_train"] == 300
    assert "moved to" in capsys.readouterr().err
    assert results.load_result("target", CONFIG, store)["metrics"]["tau2"] == 0.5


def test_records_are_valid_json_and_keep_their_nan(tmp_path):
    store = str(tmp_path / "s")
    results.cached_run("target", CONFIG, lambda: dict(METRICS), results_dir=store)
    text = open(results.result_path("target", CONFIG, store)).read()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in a record"))
    assert math.isnan(results.load_result("target", CONFIG, store)["metrics"]["radius"])
    with pytest.raises(PoisonlibError, match=r"cannot write .*: a.1 is inf, and JSON has no NaN"):
        results.atomic_write_json({"a": [0, math.inf]}, str(tmp_path / "x.json"), nonfinite="error")
    with pytest.raises(PoisonlibError, match="computed a record that fails the target record schema"):
        results.cached_run("target", {"other": 1}, lambda: {"clean_acc": 1.0}, results_dir=store)


def test_a_deterministic_failure_is_recorded_with_its_reason(tmp_path):
    store = str(tmp_path / "s")

    def diverges():
        raise results.CellFailed("GC diverged: non-finite poisons after 12 steps")

    rec = results.cached_run("gc", CONFIG, diverges, results_dir=store)
    assert results.is_failed(rec) and not rec["cached"]
    back = results.cached_run("gc", CONFIG, lambda: pytest.fail("recomputed"), results_dir=store)
    assert back["cached"] and results.failure_reason(back) == "GC diverged: non-finite poisons after 12 steps"
    rec = results.record_failure("tgda", CONFIG, "TGDA poisons are not finite", results_dir=store)
    assert results.is_failed(results.load_result("tgda", CONFIG, store))


# --------------------------------------------------------------------------- numbers and locations
@pytest.mark.parametrize("text,ok", [("0", 0), ("12", 12), ("٣", None), ("1_000", None), ("+5", None), (" 5", None), ("1e3", None),
                                     (str(2**63 - 1), 2**63 - 1), (str(2**63), None), (str(2**64), None), ("-1", None), ("", None)])
def test_seeds_are_ascii_digits_in_range(text, ok):
    if ok is None:
        with pytest.raises(PoisonlibError, match="seed must be an integer"):
            parse_seed("seed", text)
    else:
        assert parse_seed("seed", text) == ok


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "Infinity", "-Infinity", "1e400", "１", "0x10"])
def test_floats_are_finite_and_minus_inf_is_like_inf(text):
    with pytest.raises(PoisonlibError, match=r"eps_d must be a (finite )?number"):
        parse_float("eps_d", text, minimum=0.0, allow_zero=False)
    assert parse_float("eps_d", "1e-3", minimum=0.0) == 1e-3
    assert parse_int("n", "7", minimum=1, maximum=9) == 7


@pytest.mark.parametrize("box", [(1.0, 0.0), (0.0, 0.5, 1.0), (0.0, math.nan), (0.0, math.inf), ("a", "b"), (True, False)])
def test_feature_boxes_must_be_two_finite_increasing_numbers(box):
    with pytest.raises(PoisonlibError, match="feature_box"):
        check_feature_box(box)


def test_output_locations_are_checked_before_computing(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    os.symlink(tmp_path / "loop", tmp_path / "loop")
    cases = {"": "must name a folder", str(tmp_path / "file" / "out"): "is a file, not a folder",
             str(tmp_path / "loop" / "out"): "symbolic link loop", str(tmp_path / "file"): "exists and is not a folder"}
    for path, text in cases.items():
        with pytest.raises(PoisonlibError, match=text):
            check_writable_location(path)
    assert check_writable_location(str(tmp_path / "new" / "deep")) == str(tmp_path / "new" / "deep")
    assert not (tmp_path / "new").exists()

    def read_only(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr("tempfile.mkstemp", read_only)
    with pytest.raises(PoisonlibError, match="cannot be written: Read-only file system"):
        check_writable_location(str(tmp_path / "out"))


@pytest.mark.parametrize("value,text", [("", "set but empty"), ("FILE", "exists and is not a folder")])
def test_poisonlib_results_must_name_a_folder(value, text, tmp_path, monkeypatch):
    if value == "FILE":
        value = str(tmp_path / "f")
        open(value, "w").close()
    monkeypatch.setenv("POISONLIB_RESULTS", value)
    with pytest.raises(PoisonlibError, match=text):
        results.default_results_dir()


def test_labels_beyond_the_class_cap_never_allocate(tmp_path, capsys):
    a = _good(np.random.default_rng(1))
    a["y_train"] = a["y_train"] + MAX_CLASSES
    np.savez(tmp_path / "big.npz", **a)
    _one_line_exit_2(TAU + [str(tmp_path / "big.npz")], capsys, f"with at most {MAX_CLASSES:,} classes; found label {MAX_CLASSES + 1}")


# --------------------------------------------------------------------------- disk full
@pytest.fixture
def tiny_disk(tmp_path):
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({(r.stderr.strip() or 'mount failed')[:100]}); the disk-full case needs root and mount")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_a_full_disk_is_one_store_error_naming_the_path(tiny_disk):
    store = str(tiny_disk / "results")
    with pytest.raises(results.StoreError, match=r"cannot write '.*big\.pt': .*(No space left on device|disk full)"):
        results.atomic_torch_save({"x": torch.zeros(200_000)}, os.path.join(store, "models", "big.pt"))
    big = {**METRICS, "curve": list(range(60_000))}
    with pytest.raises(results.StoreError, match=r"cannot write '.*\.json': No space left on device \(disk full\)"):
        results.cached_run("target", CONFIG, lambda: big, results_dir=store)
    leftovers = [n for d, _, fs in os.walk(store) for n in fs]
    assert leftovers == [], leftovers  # no partial file
