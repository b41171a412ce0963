"""The on-disk formats a user hands in, read and checked at the boundary.

Every reader here refuses a bad file before any computation with one
:class:`PoisonlibError` line that names the file and says what is allowed:

* ``.npz`` datasets (:func:`load_npz_arrays`): a zip of ``.npy`` arrays, no pickles;
  ``x_*`` real (not complex, not bool), finite, at least 2-D, one feature shape across
  the splits; ``y_*`` 1-D, as many rows as ``x_*``; integer labels in ``0..C-1`` with
  ``C <= MAX_CLASSES`` (a label of 2^40 is refused, never allocated); ``feature_box``
  two finite numbers ``lo < hi``;
* IDX files (MNIST, :func:`read_idx`): magic number, shape and size checked, labels 0-9;
* CIFAR-10 python batches (:func:`read_cifar_batch`): only arrays, lists and strings are
  unpickled (:class:`ArrayUnpickler`); 3,072 uint8 values per image, labels 0-9;
* checkpoints (:func:`load_checkpoint`): a torch state dict (``weights_only=True``) or an
  ``.npz``; finite parameters only; a state dict that does not fit says why.

Non-regular files (FIFOs, devices) are refused without being opened. :func:`file_sha256`
hashes a source file once per (path, size, mtime): the digest is memoised in a small
JSON sidecar in the user's cache folder (``$POISONLIB_CACHE`` or
``$XDG_CACHE_HOME/poisonlib``); :mod:`poisonlib.data` builds dataset fingerprints on it.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import zipfile

import numpy as np

from ._validation import PoisonlibError, check_feature_box, check_regular_file

#: The most classes a dataset file may declare through its labels (ImageNet-21k has ~21,841).
MAX_CLASSES = 100_000
NPZ_REQUIRED = ("x_train", "y_train", "x_test", "y_test")


def readable(load, what: str, expected: str):
    """``load()``, with any failure to read files turned into a one-line :class:`PoisonlibError`."""
    try:
        return load()
    except PoisonlibError:
        raise
    except Exception as e:  # noqa: BLE001 - numpy, pickle, PIL and torchvision raise many kinds on foreign files
        first = (str(e).strip().splitlines() or ["their content is not in the expected format"])[0][:160]
        raise PoisonlibError(f"{what} cannot be read ({type(e).__name__}: {first}); expected {expected}") from None


def need_root(name: str, data_root: str | None, how: str) -> str:
    """``data_root`` (user-expanded), or one line saying that ``name`` needs one."""
    if data_root is None:
        raise PoisonlibError(f"dataset {name!r} has no embedded copy: pass data_root (--data-root) with {how}")
    return os.path.expanduser(data_root)


# --------------------------------------------------------------------------- npz datasets
def _npz_headers(path: str) -> dict:
    """``{name: (shape, dtype)}`` of the arrays in the npz at ``path``, read from the
    ``.npy`` headers only (nothing is decompressed beyond them)."""
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic not in (b"PK\x03\x04", b"PK\x05\x06"):
        raise PoisonlibError(f"dataset file {path!r} is not an npz file (a zip of .npy arrays as numpy.savez writes); "
                             "expected arrays x_train, y_train, x_test, y_test")
    out = {}
    try:
        with zipfile.ZipFile(path) as z:
            for name in z.namelist():
                if not name.endswith(".npy"):
                    continue
                with z.open(name) as m:
                    version = np.lib.format.read_magic(m)
                    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                    shape, _, dtype = read(m)  # the header only, without the data
                out[name[:-4]] = (tuple(shape), np.dtype(dtype))
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as e:
        raise PoisonlibError(f"dataset file {path!r} is not a readable npz file ({type(e).__name__}: {str(e)[:120]})") from None
    return out


def _check_npz_headers(path: str, heads: dict) -> None:
    missing = [k for k in NPZ_REQUIRED if k not in heads]
    if missing:
        raise PoisonlibError(f"dataset file {path!r} lacks array(s) {', '.join(missing)}")
    if ("x_val" in heads) != ("y_val" in heads):
        raise PoisonlibError(f"dataset file {path!r} holds only one of x_val, y_val; give both or neither")
    splits = [s for s in ("train", "val", "test") if f"x_{s}" in heads]
    for k, (shape, dt) in heads.items():
        if dt.hasobject:
            raise PoisonlibError(f"dataset file {path!r}: {k} holds Python objects (pickled data), which could run code; save plain numeric arrays")
    for s in splits:
        (xs, xd), (ys, _) = heads[f"x_{s}"], heads[f"y_{s}"]
        if xd == np.bool_ or xd.kind not in "iuf":
            raise PoisonlibError(f"dataset file {path!r}: x_{s} has dtype {xd}; features must be real numbers (int or float, not complex or bool)")
        if len(xs) < 2:
            raise PoisonlibError(f"dataset file {path!r}: x_{s} has shape {xs}; it must be at least 2-D (one row per example)")
        if len(ys) != 1:
            raise PoisonlibError(f"dataset file {path!r}: y_{s} has shape {ys}; labels must be 1-D (one per example)")
        if xs[0] != ys[0]:
            raise PoisonlibError(f"dataset file {path!r}: x_{s} has {xs[0]} rows but y_{s} has {ys[0]}")
        if xs[0] == 0 and s != "val":
            raise PoisonlibError(f"dataset file {path!r}: x_{s} has no rows")
        if xs[1:] != heads["x_train"][0][1:]:
            raise PoisonlibError(f"dataset file {path!r}: x_{s} has examples of shape {xs[1:]} but x_train of shape "
                                 f"{heads['x_train'][0][1:]}; every split needs the same feature shape")
    kinds = {heads[f"y_{s}"][1].kind for s in splits}
    if any(heads[f"y_{s}"][1] == np.bool_ for s in splits):
        raise PoisonlibError(f"dataset file {path!r}: labels are booleans; give integer class labels 0..C-1 (y.astype(int)) "
                             "or float targets for regression")
    if not kinds <= set("iuf") or (kinds & set("iu") and "f" in kinds):
        raise PoisonlibError(f"dataset file {path!r}: labels have dtypes {sorted(str(heads[f'y_{s}'][1]) for s in splits)}; "
                             "use integers 0..C-1 in every split (classification) or floats in every split (regression)")


def load_npz_arrays(path: str) -> tuple[dict, str, int, tuple | None]:
    """The checked arrays of a dataset ``.npz``: ``(arrays, task, num_classes, feature_box)``.

    Integer labels make a classification task (``binary`` for two classes), float labels
    regression (``num_classes`` 0)."""
    check_regular_file(path, "dataset file")
    heads = _npz_headers(path)
    _check_npz_headers(path, heads)
    try:
        with np.load(path, allow_pickle=False) as f:
            arr = {k: f[k] for k in f.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise PoisonlibError(f"dataset file {path!r} cannot be read ({type(e).__name__}: {str(e)[:120]})") from None
    splits = [s for s in ("train", "val", "test") if f"x_{s}" in arr]
    for s in splits:
        x = arr[f"x_{s}"]
        if x.dtype.kind == "f" and not np.isfinite(x).all():
            raise PoisonlibError(f"{path}: x_{s} contains {int((~np.isfinite(x)).sum())} NaN or infinite value(s); clean the data first")
    ys = [arr[f"y_{s}"] for s in splits]
    if ys[0].dtype.kind in "iu":
        lo = min(int(y.min()) for y in ys if y.size)
        hi = max(int(y.max()) for y in ys if y.size)
        if lo < 0 or hi >= MAX_CLASSES:
            bad = lo if lo < 0 else hi
            raise PoisonlibError(f"dataset file {path!r}: labels must be integers in 0..C-1 with at most {MAX_CLASSES:,} classes; "
                                 f"found label {bad}")
        c = hi + 1
        task, num_classes = ("binary" if c <= 2 else "multiclass"), max(c, 2)
    else:
        bad = sum(int((~np.isfinite(y)).sum()) for y in ys)
        if bad:
            raise PoisonlibError(f"dataset file {path!r}: regression targets contain {bad} NaN or infinite value(s)")
        task, num_classes = "regression", 0
    box = check_feature_box(arr["feature_box"], f"dataset file {path!r}: feature_box") if "feature_box" in arr else None
    return arr, task, num_classes, box


# --------------------------------------------------------------------------- IDX (MNIST)
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str, ndim: int, *, max_label: int | None = None) -> np.ndarray:
    """The array of an uncompressed IDX file (the MNIST format) with ``ndim`` dimensions
    (1: labels, 3: images). Magic number, dimensions and size are checked; with
    ``max_label`` every value must lie in ``0..max_label``."""
    check_regular_file(path, "IDX file")
    with open(path, "rb") as f:
        head = f.read(4)
        if len(head) < 4 or head[:2] != b"\x00\x00" or head[2] not in _IDX_DTYPES or head[3] != ndim:
            raise PoisonlibError(f"IDX file {path!r} has magic number 0x{head.hex() or '(none)'}, not that of a {ndim}-D IDX file "
                                 f"(0x0000080{ndim} for uint8); expected the uncompressed MNIST file")
        dims_raw = f.read(4 * ndim)
        if len(dims_raw) < 4 * ndim:
            raise PoisonlibError(f"IDX file {path!r} ends inside its header")
        dims = tuple(int(d) for d in np.frombuffer(dims_raw, dtype=">u4"))
        dtype = np.dtype(_IDX_DTYPES[head[2]])
        need = int(np.prod(dims, dtype=object)) * dtype.itemsize
        have = os.fstat(f.fileno()).st_size - 4 - 4 * ndim
        if need != have:
            raise PoisonlibError(f"IDX file {path!r} declares shape {dims} ({need:,} bytes of data) but holds {have:,} bytes")
        a = np.frombuffer(f.read(), dtype=dtype).reshape(dims)
    if max_label is not None and a.size and (int(a.min()) < 0 or int(a.max()) > max_label):
        bad = int(a.min()) if int(a.min()) < 0 else int(a.max())
        raise PoisonlibError(f"IDX label file {path!r} holds label {bad}; MNIST labels are 0..{max_label}")
    return a.astype(np.uint8 if dtype == np.uint8 else a.dtype.newbyteorder("="))


def read_mnist_pair(images: str, labels: str) -> tuple[np.ndarray, np.ndarray]:
    """``(x uint8 (N, 784), y int64)`` of an MNIST image / label IDX pair, checked to agree."""
    x, y = read_idx(images, 3), read_idx(labels, 1, max_label=9).astype(np.int64)
    if x.shape[1:] != (28, 28):
        raise PoisonlibError(f"IDX file {images!r} holds images of {x.shape[1]}x{x.shape[2]} pixels; MNIST's are 28x28")
    if len(x) != len(y):
        raise PoisonlibError(f"{images!r} holds {len(x):,} images but {labels!r} {len(y):,} labels")
    return x.reshape(len(x), -1), y


# --------------------------------------------------------------------------- CIFAR-10
class ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, strings and numpy arrays only (a CIFAR-10 batch), so that a
    planted file under ``data_root`` cannot run code: any other global is refused."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"), ("numpy", "ndarray"),
               ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"), ("_codecs", "encode"),
               ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer")}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise PoisonlibError(f"refusing {getattr(self, 'path', 'a pickle')!r}: it imports {module}.{name}, "
                             "and a CIFAR-10 batch holds only arrays, labels and names (it could run code)")


def read_cifar_batch(path: str) -> tuple[np.ndarray, np.ndarray]:
    """One pickled CIFAR-10 batch (the python version torchvision downloads): uint8 (N, 3, 32, 32), labels 0-9."""
    check_regular_file(path, "CIFAR-10 batch")
    with open(path, "rb") as f:
        unpickler = ArrayUnpickler(f, encoding="latin1")
        unpickler.path = path
        d = unpickler.load()
    if not isinstance(d, dict):
        raise PoisonlibError(f"{path!r} holds {type(d).__name__}, not a CIFAR-10 batch (a dict with data and labels)")
    d = {k.decode() if isinstance(k, bytes) else k: v for k, v in d.items()}
    missing = [k for k in ("data", "labels") if k not in d]
    if missing:
        raise PoisonlibError(f"{path!r} is not a CIFAR-10 batch: it lacks {', '.join(missing)}")
    data, labels = np.asarray(d["data"]), np.asarray(d["labels"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise PoisonlibError(f"{path!r}: data is {data.dtype} of shape {data.shape}; a CIFAR-10 batch holds uint8 rows of 3,072 values")
    if labels.ndim != 1 or labels.dtype.kind not in "iu" or len(labels) != len(data):
        raise PoisonlibError(f"{path!r}: labels are {labels.dtype} of shape {labels.shape}; expected {len(data):,} integer labels")
    if labels.size and (int(labels.min()) < 0 or int(labels.max()) > 9):
        raise PoisonlibError(f"{path!r} holds label {int(labels.min()) if labels.min() < 0 else int(labels.max())}; CIFAR-10 labels are 0..9")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


# --------------------------------------------------------------------------- TinyImageNet
def _read_image(path: str) -> np.ndarray:
    from PIL import Image

    check_regular_file(path, "image")
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8).transpose(2, 0, 1)


def read_tinyimagenet(root: str, data_root=None):
    """``(x_tr, y_tr, x_te, y_te, wnids)`` of the standard ``tiny-imagenet-200`` folder
    ``root`` (``wnids.txt``, ``train/<wnid>/images/*.JPEG``, ``val/images`` labelled by
    ``val/val_annotations.txt``); uint8 images (N, 3, 64, 64)."""
    wnids_path, ann_path = os.path.join(root, "wnids.txt"), os.path.join(root, "val", "val_annotations.txt")
    for p in (wnids_path, ann_path):
        if not os.path.exists(p):
            raise PoisonlibError(f"TinyImageNet not found under data_root={data_root!r}: missing {p} (unzip tiny-imagenet-200.zip there)")
        check_regular_file(p, "TinyImageNet index")
    with open(wnids_path) as f:
        wnids = [w.strip() for w in f if w.strip()]
    label = {w: i for i, w in enumerate(wnids)}
    x_tr, y_tr = [], []
    for w in wnids:
        folder = os.path.join(root, "train", w, "images")
        for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
            x_tr.append(_read_image(os.path.join(folder, name)))
            y_tr.append(label[w])
    x_te, y_te = [], []
    with open(ann_path) as f:
        for line in f:
            parts = line.split("\t")
            if len(parts) >= 2 and parts[1] in label:
                x_te.append(_read_image(os.path.join(root, "val", "images", parts[0])))
                y_te.append(label[parts[1]])
    if not x_tr or not x_te:
        raise PoisonlibError(f"TinyImageNet under {root} has no training or validation images")
    shapes = {a.shape for a in x_tr + x_te}
    if len(shapes) != 1:
        raise PoisonlibError(f"TinyImageNet under {root} holds images of several sizes {sorted(shapes)[:3]}; all must be 64x64")
    return np.stack(x_tr), np.asarray(y_tr), np.stack(x_te), np.asarray(y_te), wnids


# --------------------------------------------------------------------------- checkpoints
CHECKPOINT_FORMATS = "a torch state dict (.pt) or an .npz of arrays by name"


def read_state_dict(path: str) -> dict:
    """The parameters in ``path`` (a torch state dict loaded with ``weights_only=True``, or an
    ``.npz``) as ``{name: tensor}``, all finite; anything else is one line naming the file."""
    import warnings

    import torch

    from .results import unsafe_pickle

    check_regular_file(path, "checkpoint")
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
        raise PoisonlibError(f"refusing checkpoint {path!r}: {why}" if why else f"checkpoint {path!r} is not {CHECKPOINT_FORMATS}") from None
    except (OSError, EOFError, KeyError, ValueError, RuntimeError, TypeError, zipfile.BadZipFile) as e:
        raise PoisonlibError(f"checkpoint {path!r} is not {CHECKPOINT_FORMATS} ({type(e).__name__}: "
                             f"{(str(e).strip().splitlines() or ['the file ends early'])[0][:120]})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):  # {"state_dict": ...} as many trainers save
        state = state["state_dict"]
    if not isinstance(state, dict) or not state or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise PoisonlibError(f"checkpoint {path!r} holds {type(state).__name__}, not {CHECKPOINT_FORMATS}")
    for k, v in state.items():
        if v.is_complex() or v.dtype == torch.bool:
            raise PoisonlibError(f"checkpoint {path!r}: parameter {k!r} has dtype {v.dtype}; parameters are real numbers")
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            raise PoisonlibError(f"checkpoint {path!r}: parameter {k!r} holds {int((~torch.isfinite(v)).sum())} NaN or infinite value(s)")
    return state


def load_checkpoint(model, path: str, name: str = "the model"):
    """``model`` (in eval mode) with the parameters of ``path`` (see :func:`read_state_dict`);
    a state dict that does not fit ``model`` gives one line with torch's reason."""
    state = read_state_dict(path)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
        reason = "; ".join(lines[1:])[:300] or lines[0][:300]
        raise PoisonlibError(f"checkpoint {path!r} does not fit model {name!r}: {reason}") from None
    return model.eval()


# --------------------------------------------------------------------------- file digests
def _cache_file() -> str:
    root = os.environ.get("POISONLIB_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "poisonlib")
    return os.path.join(root, "sha256.json")


def file_sha256(path: str) -> str:
    """sha256 of the file at ``path``, memoised by (real path, size, mtime_ns, inode) in a
    sidecar JSON (:func:`_cache_file`); a changed file (size or mtime) is hashed again. The
    memo is best effort: an unwritable cache folder only costs rehashing."""
    check_regular_file(path, "data file")
    real = os.path.realpath(path)
    st = os.stat(real)
    key = f"{real}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}"
    side = _cache_file()
    try:
        with open(side, encoding="utf-8") as f:
            memo = json.load(f)
        memo = memo if isinstance(memo, dict) else {}
    except (OSError, ValueError, RecursionError):
        memo = {}
    if isinstance(memo.get(key), str):
        return memo[key]
    h = hashlib.sha256()
    with open(real, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    memo = {k: v for k, v in memo.items() if not k.startswith(real + "\0")}
    memo[key] = h.hexdigest()
    try:
        os.makedirs(os.path.dirname(side), exist_ok=True)
        tmp = f"{side}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(memo, f)
        os.replace(tmp, side)
    except OSError:
        pass
    return memo[key]


def files_digest(paths) -> str:
    """sha256 over the digests and sizes of ``paths`` (in the given order)."""
    h = hashlib.sha256()
    for p in paths:
        h.update(f"{os.path.basename(p)}\0{os.path.getsize(p)}\0{file_sha256(p)}\n".encode())
    return h.hexdigest()
