"""Fetch the full datasets into a ``data_root`` (``poisonlib data fetch NAME --data-root R``).

Off by default: nothing in poisonlib downloads on its own -- the build, the tests and
every experiment read the embedded MNIST-5k or the files already under ``data_root``.
This module is the one place that goes to the network, and only when asked:

* ``mnist``: ``torchvision.datasets.MNIST(R, download=True)`` (both splits), i.e.
  ``R/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte``, checked against
  torchvision's MD5 sums;
* ``cifar10``: ``torchvision.datasets.CIFAR10(R, download=True)`` (both splits), i.e.
  ``R/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}``, MD5-checked;
* ``tinyimagenet``: the official archive :data:`TINYIMAGENET_URL` (about 248 MB),
  checked against :data:`TINYIMAGENET_MD5` and unpacked to ``R/tiny-imagenet-200``.

These are the layouts :mod:`poisonlib.data`'s loaders read. A dataset already in place
is not downloaded again.
"""

from __future__ import annotations

import os

from ._validation import PoisonlibError, check_choice

#: The official TinyImageNet archive (Stanford CS231n) and its MD5 sum.
TINYIMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
TINYIMAGENET_MD5 = "90528d7ca1a48142e341f4ef8d21d0de"

FETCHABLE = ("mnist", "cifar10", "tinyimagenet")


def _mnist(root: str) -> str:
    from torchvision.datasets import MNIST

    for train in (True, False):
        MNIST(root, train=train, download=True)
    return os.path.join(root, "MNIST", "raw")


def _cifar10(root: str) -> str:
    from torchvision.datasets import CIFAR10

    for train in (True, False):
        CIFAR10(root, train=train, download=True)
    return os.path.join(root, "cifar-10-batches-py")


def _tinyimagenet(root: str) -> str:
    from torchvision.datasets.utils import check_integrity, download_and_extract_archive

    from .data import TINY_DIR

    folder = os.path.join(root, TINY_DIR)
    if os.path.exists(os.path.join(folder, "wnids.txt")) and os.path.exists(os.path.join(folder, "val", "val_annotations.txt")):
        return folder
    archive = os.path.join(root, os.path.basename(TINYIMAGENET_URL))
    if os.path.exists(archive) and not check_integrity(archive, TINYIMAGENET_MD5):
        os.remove(archive)  # a partial download of an earlier attempt
    download_and_extract_archive(TINYIMAGENET_URL, root, md5=TINYIMAGENET_MD5)
    return folder


_FETCHERS = {"mnist": _mnist, "cifar10": _cifar10, "tinyimagenet": _tinyimagenet}


def fetch(name: str, data_root: str) -> str:
    """Download dataset ``name`` (``mnist``, ``cifar10``, ``tinyimagenet``) into ``data_root``
    where :func:`poisonlib.data.load_dataset` reads it; return the folder of its files.

    Any failure (no network, a checksum that does not match, a folder that cannot be
    written) raises :class:`PoisonlibError` with one line naming the dataset."""
    check_choice("dataset to fetch", name, FETCHABLE)
    if not data_root:
        raise PoisonlibError("data fetch needs --data-root: the folder to put the dataset in")
    root = os.path.abspath(os.path.expanduser(data_root))
    if os.path.exists(root) and not os.path.isdir(root):
        raise PoisonlibError(f"--data-root {data_root!r} exists and is not a folder")
    try:
        os.makedirs(root, exist_ok=True)
        folder = _FETCHERS[name](root)
    except PoisonlibError:
        raise
    except Exception as e:  # noqa: BLE001 - urllib, tarfile, zipfile and torchvision's checks raise many kinds
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise PoisonlibError(f"could not fetch {name} into {data_root!r}: {type(e).__name__}: {first[:200]}") from None
    return folder
