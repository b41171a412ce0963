"""Write datasets in their real on-disk formats (for tests and timing runs; nothing is downloaded).

The full-data loaders of :mod:`poisonlib.data` read MNIST's IDX files, CIFAR-10's
pickled Python batches and TinyImageNet's folder of JPEGs exactly as they unpack. These
writers produce such files from arrays, from seeded random pixels or, with
``structured=True`` (TinyImageNet always), from *structured noise*: each class has its
own smooth seeded pattern and every image is that pattern plus pixel noise, so that a
model learns something and the attacks have a signal to work against. At their
default sizes they are as large as the real sets (60,000 / 10,000 digits, 50,000 /
10,000 CIFAR-10 images, 100,000 / 10,000 TinyImageNet JPEGs), so that the ``paper``
profile can be timed and its memory measured on data of the real size.

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


def structured_images(n: int, shape: tuple, n_classes: int, *, seed: int = 0, cell: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """``n`` uint8 images of ``shape`` with balanced labels ``i % n_classes``: image i is
    clip(128 + 60 P_{y_i} + 40 ε_i), P_c a seeded class pattern (N(0, 1) on a grid of
    ``cell``-pixel blocks, so that it is smooth at that scale), ε_i pixel noise N(0, 1)."""
    rng = np.random.default_rng(seed)
    *lead, h, w = shape
    coarse = rng.standard_normal((n_classes, *lead, -(-h // cell), -(-w // cell))).astype(np.float32)
    patterns = coarse.repeat(cell, axis=-2).repeat(cell, axis=-1)[..., :h, :w]
    labels = np.arange(n) % n_classes
    out = np.empty((n, *shape), dtype=np.uint8)
    for i in range(0, n, 4096):  # in blocks: the float noise of 100,000 images would take GBs
        y = labels[i : i + 4096]
        noise = rng.standard_normal((len(y), *shape), dtype=np.float32)
        out[i : i + 4096] = np.clip(128 + 60 * patterns[y] + 40 * noise, 0, 255).astype(np.uint8)
    return out, labels


def write_mnist(root: str, train=None, test=None, *, n_train: int = 60000, n_test: int = 10000, seed: int = 0,
                structured: bool = False) -> str:
    """MNIST under ``root/MNIST/raw`` as ``torchvision.datasets.MNIST(root)`` reads it.

    ``train`` / ``test``: ``(images (N, 28, 28), labels (N,))``; when omitted, seeded random
    pixels with balanced labels (``n_train`` / ``n_test`` images), class-dependent with
    ``structured`` (:func:`structured_images`). Returns the raw folder."""
    rng = np.random.default_rng(seed)

    def fake(n):
        return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), np.arange(n) % 10

    if structured and (train is None or test is None):  # one draw: the same class patterns in train and test
        x, y = structured_images(n_train + n_test, (28, 28), 10, seed=seed)
        train = (x[:n_train], y[:n_train]) if train is None else train
        test = (x[n_train:], y[n_train:]) if test is None else test
    raw = os.path.join(root, "MNIST", "raw")
    write_idx(raw, "train", *(train if train is not None else fake(n_train)))
    write_idx(raw, "t10k", *(test if test is not None else fake(n_test)))
    return raw


def write_cifar10(root: str, n_per_batch: int = 10000, seed: int = 0, *, structured: bool = False) -> dict:
    """CIFAR-10 as ``cifar-10-python.tar.gz`` unpacks: ``root/cifar-10-batches-py/{data_batch_1..5,test_batch}``,
    pickled dicts with Python-2 str keys, ``data`` uint8 (N, 3072) as RGB planes, ``labels`` a list.
    Random pixels (class-dependent with ``structured``, :func:`structured_images`), labels ``i % 10``.
    Returns ``{batch name: (data, labels)}``."""
    rng = np.random.default_rng(seed)
    d = os.path.join(root, "cifar-10-batches-py")
    os.makedirs(d, exist_ok=True)
    batches = {}
    if structured:
        every = structured_images(n_per_batch * len(CIFAR10_BATCHES), (3, 32, 32), 10, seed=seed)[0].reshape(-1, 3072)
    for b, name in enumerate(CIFAR10_BATCHES):
        data = every[b * n_per_batch : (b + 1) * n_per_batch] if structured else rng.integers(0, 256, size=(n_per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in np.arange(n_per_batch) % 10]
        with open(os.path.join(d, name), "wb") as f:
            pickle.dump({"batch_label": name, "labels": labels, "data": data, "filenames": ["x.png"] * n_per_batch}, f, protocol=2)
        batches[name] = (data, labels)
    return batches


def tiny_wnids(n_classes: int = 200) -> list[str]:
    """WordNet-style class ids ``n0…`` (fixed, not the real ones) of a synthetic TinyImageNet."""
    return [f"n{1440000 + 37 * i:08d}" for i in range(n_classes)]


def write_tinyimagenet(root: str, n_train_per_class: int = 500, n_val: int = 10000, *, n_classes: int = 200, seed: int = 0) -> str:
    """TinyImageNet as ``tiny-imagenet-200.zip`` unpacks, under ``root/tiny-imagenet-200``:
    ``wnids.txt``, ``words.txt``, ``train/<wnid>/images/<wnid>_<i>.JPEG`` with
    ``train/<wnid>/<wnid>_boxes.txt``, ``val/images/val_<i>.JPEG`` and
    ``val/val_annotations.txt`` (file, wnid, box; tab-separated). 64×64 RGB JPEGs of
    structured noise (:func:`structured_images`); val image i has class ``i % n_classes``.
    Defaults: the real sizes (200 classes × 500 training images, 10,000 validation images).
    Returns the ``tiny-imagenet-200`` folder."""
    from PIL import Image

    top = os.path.join(root, "tiny-imagenet-200")
    wnids = tiny_wnids(n_classes)
    n_train = n_train_per_class * n_classes
    x, y = structured_images(n_train + n_val, (3, 64, 64), n_classes, seed=seed, cell=8)
    x = x.transpose(0, 2, 3, 1)  # PIL wants height, width, channels
    os.makedirs(os.path.join(top, "val", "images"), exist_ok=True)
    count = [0] * n_classes
    for i in range(n_train):
        w = wnids[y[i]]
        folder = os.path.join(top, "train", w, "images")
        if count[y[i]] == 0:
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(top, "train", w, f"{w}_boxes.txt"), "w") as f:
                f.writelines(f"{w}_{k}.JPEG\t0\t0\t63\t63\n" for k in range(n_train_per_class))
        Image.fromarray(x[i]).save(os.path.join(folder, f"{w}_{count[y[i]]}.JPEG"), quality=90)
        count[y[i]] += 1
    lines = []
    for k in range(n_val):
        Image.fromarray(x[n_train + k]).save(os.path.join(top, "val", "images", f"val_{k}.JPEG"), quality=90)
        lines.append(f"val_{k}.JPEG\t{wnids[y[n_train + k]]}\t0\t0\t63\t63\n")
    with open(os.path.join(top, "val", "val_annotations.txt"), "w") as f:
        f.writelines(lines)
    with open(os.path.join(top, "wnids.txt"), "w") as f:
        f.writelines(w + "\n" for w in wnids)
    with open(os.path.join(top, "words.txt"), "w") as f:
        f.writelines(f"{w}\tsynthetic class {i}\n" for i, w in enumerate(wnids))
    return top
