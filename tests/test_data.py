import hashlib
import os

import numpy as np
import pytest
import torch

from poisonlib import PoisonlibError
from poisonlib.data import MNIST_FILES, list_datasets, load_dataset
from poisonlib.testing import write_cifar10, write_mnist


def _row_hashes(x):
    return {hashlib.sha1(r.numpy().tobytes()).hexdigest() for r in x.reshape(len(x), -1)}


def test_registry_lists_the_issue_datasets():
    assert {"mnist", "mnist17", "or2d", "gaussian10", "gaussian2d"} <= set(list_datasets())


def test_unknown_dataset_names_the_value_and_the_choices():
    with pytest.raises(PoisonlibError, match=r"unknown dataset 'cifar100'; choose from: .*mnist"):
        load_dataset("cifar100")


def test_embedded_mnist_shapes_ranges_and_splits(mnist):
    ds = mnist
    assert ds.x_train.shape == (2800, 1, 28, 28) and ds.x_val.shape == (1200, 1, 28, 28) and ds.x_test.shape == (1000, 1, 28, 28)
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    for x in (ds.x_train, ds.x_val, ds.x_test):
        assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert ds.feature_box == (0.0, 1.0) and ds.num_classes == 10 and ds.num_outputs == 10
    # 70/30 train/val split, stratified; test is 100 digits per class
    assert torch.bincount(ds.y_test).tolist() == [100] * 10
    assert torch.bincount(ds.y_train).tolist() == [280] * 10
    # the csv is sorted by label: a split must shuffle
    assert len(set(ds.y_train[:20].tolist())) > 3
    # disjoint splits
    tr, va, te = _row_hashes(ds.x_train), _row_hashes(ds.x_val), _row_hashes(ds.x_test)
    assert not (tr & te) and not (tr & va) and not (va & te)


def test_split_is_fixed_by_split_seed():
    a, b, c = load_dataset("mnist"), load_dataset("mnist"), load_dataset("mnist", split_seed=1)
    assert torch.equal(a.x_train, b.x_train)
    assert not torch.equal(a.y_train, c.y_train)


def test_mnist17_is_binary_ones_and_sevens():
    ds = load_dataset("mnist17")
    assert ds.task == "binary" and ds.num_outputs == 1
    assert set(ds.y_train.unique().tolist()) == {0, 1}
    assert len(ds.x_train) + len(ds.x_val) + len(ds.x_test) == 1000  # 500 ones + 500 sevens in MNIST-5k


def test_or2d_follows_appendix_c():
    ds = load_dataset("or2d")
    assert ds.x_train.shape == (200, 2) and ds.feature_box is None
    corners = ds.x_train.round()
    assert torch.equal(ds.y_train, (corners.sum(1) > 0).long())


def test_gaussian_sets():
    g10 = load_dataset("gaussian10")
    assert g10.x_train.shape == (560, 10) and g10.x_val.shape == (240, 10) and g10.x_test.shape == (200, 10)
    assert g10.task == "binary" and float(g10.x_train.abs().max()) > 1.0  # unbounded features
    g2 = load_dataset("gaussian2d")
    assert g2.task == "regression" and g2.y_train.dtype == torch.float32 and g2.x_train.shape == (200, 1)


def test_n_train_subsample_is_stratified(mnist):
    ds = load_dataset("mnist", n_train=300)
    assert len(ds.x_train) == 300 and torch.bincount(ds.y_train).tolist() == [30] * 10
    assert torch.equal(ds.x_test, mnist.x_test)


# ---------------------------------------------------------------- full MNIST in its real IDX format
@pytest.fixture
def tiny_mnist_root(tmp_path):
    rng = np.random.default_rng(0)
    tr_x, tr_y = rng.integers(0, 256, (40, 28, 28)), np.repeat(np.arange(10), 4)
    te_x, te_y = rng.integers(0, 256, (20, 28, 28)), np.repeat(np.arange(10), 2)
    write_mnist(str(tmp_path), (tr_x, tr_y), (te_x, te_y))
    return tmp_path, tr_x, te_x


def test_full_mnist_loads_the_idx_files_through_torchvision(tiny_mnist_root):
    root, tr_x, te_x = tiny_mnist_root
    ds = load_dataset("mnist", data_root=str(root))
    assert len(ds.x_train) == 28 and len(ds.x_val) == 12 and len(ds.x_test) == 20
    assert np.allclose(ds.x_test.numpy().reshape(20, 28, 28), te_x / 255.0)
    assert "torchvision MNIST" in ds.source
    train_pixels = np.concatenate([ds.x_train.numpy(), ds.x_val.numpy()]).reshape(40, -1)
    assert {r.tobytes() for r in (train_pixels * 255).round().astype(np.uint8)} == {r.tobytes() for r in tr_x.reshape(40, -1).astype(np.uint8)}


def test_missing_mnist_files_say_how_to_get_them(tmp_path):
    with pytest.raises(PoisonlibError, match="download=True") as e:
        load_dataset("mnist", data_root=str(tmp_path))
    assert MNIST_FILES[0] in str(e.value) and "\n" not in str(e.value)


def test_npz_dataset_and_nan_rejection(tmp_path):
    rng = np.random.default_rng(0)
    good = tmp_path / "good.npz"
    np.savez(good, x_train=rng.normal(size=(50, 3)), y_train=rng.integers(0, 2, 50), x_test=rng.normal(size=(10, 3)), y_test=rng.integers(0, 2, 10))
    ds = load_dataset(str(good))
    assert ds.task == "binary" and len(ds.x_train) == 35 and len(ds.x_val) == 15
    bad = tmp_path / "bad.npz"
    x = rng.normal(size=(50, 3))
    x[3, 1] = np.nan
    np.savez(bad, x_train=x, y_train=rng.integers(0, 2, 50), x_test=rng.normal(size=(10, 3)), y_test=rng.integers(0, 2, 10))
    with pytest.raises(PoisonlibError, match="NaN"):
        load_dataset(str(bad))


# --------------------------------------------------------------------------- CIFAR-10 and TinyImageNet, real on-disk formats
def test_cifar10_reads_the_python_batches(tmp_path):
    batches = write_cifar10(str(tmp_path), n_per_batch=20)
    ds = load_dataset("cifar10", data_root=str(tmp_path))
    assert ds.input_shape == (3, 32, 32) and ds.num_classes == 10 and ds.feature_box == (0.0, 1.0)
    assert len(ds.x_train) + len(ds.x_val) == 100 and len(ds.x_test) == 20
    data, labels = batches["test_batch"]
    # channel-first planes: the first 1024 bytes are the red channel of image 0
    assert torch.allclose(ds.x_test[0, 0].reshape(-1), torch.tensor(data[0, :1024] / 255.0, dtype=torch.float32))
    assert ds.y_test.tolist() == labels


def test_cifar10_and_tinyimagenet_need_data_root_and_name_missing_files(tmp_path):
    with pytest.raises(PoisonlibError, match="'cifar10' has no embedded copy: pass data_root"):
        load_dataset("cifar10")
    with pytest.raises(PoisonlibError, match="missing data_batch_1"):
        load_dataset("cifar10", data_root=str(tmp_path))
    with pytest.raises(PoisonlibError, match="TinyImageNet not found .*wnids.txt"):
        load_dataset("tinyimagenet", data_root=str(tmp_path))


def test_tinyimagenet_reads_the_standard_folder_layout(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    root = tmp_path / "tiny-imagenet-200"
    wnids = ["n01443537", "n01629819", "n01641577"]
    (root / "val" / "images").mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(wnids) + "\n")
    first = None
    for w in wnids:
        d = root / "train" / w / "images"
        d.mkdir(parents=True)
        (root / "train" / w / f"{w}_boxes.txt").write_text("")
        for i in range(10):
            a = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
            Image.fromarray(a).save(d / f"{w}_{i}.JPEG", quality=100)
    lines = []
    for i in range(6):
        a = np.full((64, 64), 40 * i, dtype=np.uint8)  # grayscale files exist in the real set: converted to RGB
        Image.fromarray(a).save(root / "val" / "images" / f"val_{i}.JPEG", quality=100)
        lines.append(f"val_{i}.JPEG\t{wnids[i % 3]}\t0\t0\t63\t63")
        first = first if first is not None else a
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    ds = load_dataset("tinyimagenet", data_root=str(tmp_path))
    assert ds.input_shape == (3, 64, 64) and ds.num_classes == 3
    assert len(ds.x_train) + len(ds.x_val) == 30 and len(ds.x_test) == 6
    assert ds.y_test.tolist() == [0, 1, 2, 0, 1, 2]
    assert torch.allclose(ds.x_test[2], torch.full((3, 64, 64), 80 / 255.0), atol=2 / 255)


def test_synthetic_tinyimagenet_in_the_official_layout_loads(tmp_path):
    """``poisonlib.testing.write_tinyimagenet`` writes what the loader reads (small here: 4 classes);
    its structured noise is class-dependent: images of a class are closer to their class mean."""
    from poisonlib.testing import tiny_wnids, write_tinyimagenet

    top = write_tinyimagenet(str(tmp_path), n_train_per_class=5, n_val=8, n_classes=4)
    assert sorted(os.listdir(top)) == ["train", "val", "wnids.txt", "words.txt"]
    assert open(os.path.join(top, "val", "val_annotations.txt")).readline().split("\t")[:2] == ["val_0.JPEG", tiny_wnids(4)[0]]
    ds = load_dataset("tinyimagenet", data_root=str(tmp_path))
    assert ds.input_shape == (3, 64, 64) and ds.num_classes == 4
    assert len(ds.x_train) + len(ds.x_val) == 20 and len(ds.x_test) == 8
    assert ds.y_test.tolist() == [0, 1, 2, 3, 0, 1, 2, 3]
    x = torch.cat([ds.x_train, ds.x_val]).flatten(1)
    y = torch.cat([ds.y_train, ds.y_val])
    means = torch.stack([x[y == c].mean(0) for c in range(4)])
    assert (torch.cdist(x, means).argmin(1) == y).float().mean() == 1.0  # the classes are separable by their patterns


def test_structured_mnist_and_cifar10_are_class_dependent(tmp_path):


    write_mnist(str(tmp_path), n_train=200, n_test=50, structured=True)
    write_cifar10(str(tmp_path), n_per_batch=20, structured=True)
    for name in ("mnist", "cifar10"):
        ds = load_dataset(name, data_root=str(tmp_path))
        means = torch.stack([ds.x_train[ds.y_train == c].flatten(1).mean(0) for c in range(10)])
        assert (torch.cdist(ds.x_test.flatten(1), means).argmin(1) == ds.y_test).float().mean() > 0.9
