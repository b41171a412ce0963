"""Write datasets in their real on-disk formats (for tests and timing runs; nothing is downloaded).

The full-data loaders of :mod:`poisonlib.data` read MNIST's IDX files and CIFAR-10's
pickled Python batches exactly as torchvision unpacks them. These writers produce such
files from arrays (or from seeded random pixels), so that the loaders can be tested
on small files and the ``paper`` profile can be timed on data of the real size.

>>> write_mnist("/tmp/R", n_train=60000, n_test=10000)     # doctest: +SKIP
>>> load_dataset("mnist", data_root="/tmp/R")              # doctest: +SKIP
"""

from __future__ import annotations

import os
import pickle
import struct

import numpy as np

CIFAR10_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)


def write_idx(folder: str, prefix: str, images: np.ndarray, labels: np.ndarray) -> None:
    """``<prefix>-images-idx3-ubyte`` (magic 2051, N, 28, 28, uint8) and ``<prefix>-labels-idx1-ubyte`` (2049, N)."""
    images, labels = np.asarray(images), np.asarray(labels)
    n, h, w = images.shape
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f"{prefix}-images-idx3-ubyte"), "wb") as f:
        f.write(struct.pack(">IIII", 2051, n, h, w))
        f.write(images.astype(np.uint8).tobytes())
    with open(os.path.join(folder, f"{prefix}-labels-idx1-ubyte"), "wb") as f:
        f.write(struct.pack(">II", 2049, len(labels)))
        f.write(labels.astype(np.uint8).tobytes())


def write_mnist(root: str, train=None, test=None, *, n_train: int = 60000, n_test: int = 10000, seed: int = 0) -> str:
    """MNIST under ``root/MNIST/raw`` as ``torchvision.datasets.MNIST(root)`` reads it.

    ``train`` / ``test``: ``(images (N, 28, 28), labels (N,))``; when omitted, seeded random
    pixels with balanced labels (``n_train`` / ``n_test`` images). Returns the raw folder."""
    rng = np.random.default_rng(seed)

    def fake(n):
        return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), np.arange(n) % 10

    raw = os.path.join(root, "MNIST", "raw")
    write_idx(raw, "train", *(train if train is not None else fake(n_train)))
    write_idx(raw, "t10k", *(test if test is not None else fake(n_test)))
    return raw


def write_cifar10(root: str, n_per_batch: int = 10000, seed: int = 0) -> dict:
    """CIFAR-10 as ``cifar-10-python.tar.gz`` unpacks: ``root/cifar-10-batches-py/{data_batch_1..5,test_batch}``,
    pickled dicts with Python-2 str keys, ``data`` uint8 (N, 3072) as RGB planes, ``labels`` a list.
    Random pixels, labels ``i % 10``. Returns ``{batch name: (data, labels)}``."""
    rng = np.random.default_rng(seed)
    d = os.path.join(root, "cifar-10-batches-py")
    os.makedirs(d, exist_ok=True)
    batches = {}
    for name in CIFAR10_BATCHES:
        data = rng.integers(0, 256, size=(n_per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in np.arange(n_per_batch) % 10]
        with open(os.path.join(d, name), "wb") as f:
            pickle.dump({"batch_label": name, "labels": labels, "data": data, "filenames": ["x.png"] * n_per_batch}, f, protocol=2)
        batches[name] = (data, labels)
    return batches
