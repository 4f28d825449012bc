"""Sources, derivations, the HDF5 schema and its errors (offline, small)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from sklearn.datasets import load_digits, make_classification

from lossatlas.dataset_specs import all_spec_errors, spec_errors
from lossatlas.datasets import (
    DatasetError,
    build_source_dataset,
    derive_dataset,
    load_dataset,
    read_index_file,
    write_dataset,
)

REPO = Path(__file__).resolve().parents[1]
DIGITS = {"source": "digits", "test_fraction": 0.3333, "standardize": True, "seed": 0}
DIGITS_COUNTS = np.bincount(load_digits().target)


def build(tmp_path: Path, name: str, spec: dict) -> object:
    path = tmp_path / f"{name}.h5"
    build_source_dataset(name, spec, str(path))
    return load_dataset(path, verify=True)


def derive(tmp_path: Path, name: str, spec: dict, parent: Path, index_file: Path | None = None):
    path = tmp_path / f"{name}.h5"
    derive_dataset(name, spec, str(parent), str(path), index_file=str(index_file) if index_file else None)
    return load_dataset(path, verify=True)


@pytest.fixture(scope="module")
def digits_h5(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("parent") / "digits.h5"
    build_source_dataset("digits", DIGITS, str(path))
    return path


# ---------------------------------------------------------------------------------------------- sources


def test_digits_default_split_is_stratified_and_standardised(digits_h5):
    ds = load_dataset(digits_h5, verify=True)
    assert ds.x_train.shape == (1198, 1, 8, 8) and ds.x_test.shape == (599, 1, 8, 8)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64 and ds.id_train.dtype == np.int64
    np.testing.assert_array_equal(ds.id_train, np.arange(1198))
    np.testing.assert_array_equal(ds.id_test, np.arange(1198, 1797))
    test_counts = np.bincount(ds.y_test, minlength=10)
    assert test_counts.sum() == 599 and np.all(np.abs(test_counts - DIGITS_COUNTS / 3) <= 1)
    flat = ds.x_train.reshape(1198, -1)
    varying = flat.std(axis=0) > 0
    np.testing.assert_allclose(flat.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(flat[:, varying].std(axis=0), 1, atol=1e-5)
    assert ds.num_classes == 10 and ds.input_shape == (1, 8, 8) and ds.task == "classification"
    assert ds.attrs["source"] == "digits" and ds.attrs["derivation"][0]["test_fraction"] == 0.3333


def test_digits_class_subset_noise_and_relabelling(tmp_path):
    # FIGURES.md §2.5 "small mammals" stand-in: classes {1,3,7,8,9}, noise 8, 598 train / 300 test.
    spec = {"source": "digits", "classes": [1, 3, 7, 8, 9], "noise_sigma": 8.0, "test_fraction": 0.3333,
            "standardize": True, "seed": 0}
    ds = build(tmp_path, "small", spec)
    assert len(ds.y_train) == 598 and len(ds.y_test) == 300
    assert ds.num_classes == 5 and ds.class_names == ["1", "3", "7", "8", "9"]
    np.testing.assert_array_equal(np.bincount(np.concatenate([ds.y_train, ds.y_test])), DIGITS_COUNTS[[1, 3, 7, 8, 9]])

    clean = build(tmp_path, "clean", {"source": "digits", "classes": [3, 1], "seed": 0})
    digits = load_digits()
    np.testing.assert_array_equal(clean.x_train[clean.y_train == 0, 0], digits.images[digits.target == 3])
    assert clean.x_test.shape == (0, 1, 8, 8)  # no split asked: all train

    noisy = build(tmp_path, "noisy", {"source": "digits", "classes": [3, 1], "noise_sigma": 2.0, "seed": 0})
    noise = noisy.x_train - clean.x_train
    assert noise.std() == pytest.approx(2.0, rel=0.05) and abs(noise.mean()) < 0.1
    again = build(tmp_path, "again", {"source": "digits", "classes": [3, 1], "noise_sigma": 2.0, "seed": 0})
    other = build(tmp_path, "other", {"source": "digits", "classes": [3, 1], "noise_sigma": 2.0, "seed": 1})
    np.testing.assert_array_equal(noisy.x_train, again.x_train)
    assert not np.array_equal(noisy.x_train, other.x_train)


def test_digits_first_n_train_split_and_flatten(tmp_path):
    ds = build(tmp_path, "d", {"source": "digits", "n_train": 1000, "flatten": True, "seed": 0})
    digits = load_digits()
    assert ds.x_train.shape == (1000, 64) and ds.x_test.shape == (797, 64)
    np.testing.assert_array_equal(ds.x_train, digits.data[:1000].astype(np.float32))
    np.testing.assert_array_equal(ds.y_test, digits.target[1000:])


def test_iris(tmp_path):
    ds = build(tmp_path, "iris", {"source": "iris", "test_fraction": 0.2, "seed": 3})
    assert ds.x_train.shape == (120, 4) and ds.x_test.shape == (30, 4) and ds.x_train.dtype == np.float32
    np.testing.assert_array_equal(np.bincount(ds.y_test), [10, 10, 10])
    assert ds.class_names == ["setosa", "versicolor", "virginica"]


def test_gaussian_mixture(tmp_path):
    spec = {"source": "gaussian_mixture", "n_samples": 600, "n_features": 5, "n_classes": 3, "cluster_std": 0.1,
            "class_sep": 3.0, "test_fraction": 0.5, "seed": 7}
    ds = build(tmp_path, "gm", spec)
    assert ds.x_train.shape == (300, 5) and ds.num_classes == 3
    np.testing.assert_array_equal(np.bincount(ds.y_train), [100, 100, 100])
    # Tight clusters: each class's train mean is close to its test mean, and classes are far apart.
    means_train = np.stack([ds.x_train[ds.y_train == k].mean(0) for k in range(3)])
    means_test = np.stack([ds.x_test[ds.y_test == k].mean(0) for k in range(3)])
    np.testing.assert_allclose(means_train, means_test, atol=0.05)
    assert np.linalg.norm(means_train[0] - means_train[1]) > 1.0
    assert build(tmp_path, "gm2", spec).attrs["content_hash"] == ds.attrs["content_hash"]


def test_make_classification_is_sklearns(tmp_path):
    spec = {"source": "make_classification", "n_samples": 300, "n_features": 64, "n_informative": 20,
            "n_classes": 20, "n_clusters_per_class": 1, "seed": 5}
    ds = build(tmp_path, "mc", spec)
    x, y = make_classification(n_samples=300, n_features=64, n_informative=20, n_classes=20,
                               n_clusters_per_class=1, random_state=5)
    np.testing.assert_array_equal(ds.x_train, x.astype(np.float32))
    np.testing.assert_array_equal(ds.y_train, y)
    assert ds.num_classes == 20


def test_regression1d_sin_quad(tmp_path):
    ds = build(tmp_path, "reg", {"source": "regression1d", "seed": 0})
    assert ds.task == "regression" and ds.num_classes == 0 and ds.class_names == []
    assert ds.x_train.shape == (8, 1) and ds.y_train.shape == (8, 1) and ds.y_train.dtype == np.float32
    np.testing.assert_allclose(ds.x_train[:, 0], np.linspace(-1, 1, 8), atol=1e-7)
    # Hand-computed: f(1) = 0.6 sin 2 + 0.3 - 0.2 = 0.645578..., f(-1) = -0.6 sin 2 + 0.1 = -0.445578...
    assert ds.y_train[-1, 0] == pytest.approx(0.6455785, abs=1e-6)
    assert ds.y_train[0, 0] == pytest.approx(-0.4455785, abs=1e-6)
    assert ds.x_test.shape == (0, 1)
    dense = build(tmp_path, "reg2", {"source": "regression1d", "n_train": 4, "n_test": 101, "x_min": 0.0,
                                     "x_max": 2.0})
    assert dense.x_test.shape == (101, 1) and dense.x_test[50, 0] == pytest.approx(1.0)
    np.testing.assert_array_equal(dense.id_test, np.arange(4, 105))


def test_fake_imagenet_tree(tmp_path):
    from PIL import Image

    root = tmp_path / "imagenet"
    colours = {"n01": (250, 0, 0), "n02": (0, 250, 0), "n03": (0, 0, 250)}
    for split, count in (("train", 3), ("val", 2)):
        for wnid, colour in colours.items():
            (root / split / wnid).mkdir(parents=True)
            for i in range(count):
                Image.new("RGB", (40 + 10 * i, 30), colour).save(root / split / wnid / f"{wnid}_{i}.JPEG")
    spec = {"source": "imagenet", "wnids": ["n03", "n01"], "image_size": 16, "train_per_class": 2}
    path = tmp_path / "in.h5"
    build_source_dataset("in2", spec, str(path), imagenet_dir=str(root))
    ds = load_dataset(path, verify=True)
    assert ds.x_train.shape == (4, 3, 16, 16) and ds.x_train.dtype == np.uint8
    assert ds.x_test.shape == (4, 3, 16, 16)  # no test cap: both val images per class
    np.testing.assert_array_equal(ds.y_train, [0, 0, 1, 1])
    assert ds.class_names == ["n03", "n01"]
    assert ds.x_train[0, 2].mean() > 200 and ds.x_train[0, 0].mean() < 30  # class 0 = n03 = blue
    assert ds.x_train[3, 0].mean() > 200  # class 1 = n01 = red
    assert len(ds.attrs["channel_mean"]) == 3

    with pytest.raises(DatasetError, match="imagenet_dir: .* does not exist"):
        build_source_dataset("in2", spec, str(tmp_path / "x.h5"), imagenet_dir=str(tmp_path / "nowhere"))
    with pytest.raises(DatasetError, match="imagenet_dir"):
        build_source_dataset("in2", spec, str(tmp_path / "x.h5"), imagenet_dir=None)
    bad = dict(spec, wnids=["n01", "n09"])
    with pytest.raises(DatasetError, match=r"lacks class folders \['n09'\].*train/<wnid>/\*\.JPEG"):
        build_source_dataset("in2", bad, str(tmp_path / "x.h5"), imagenet_dir=str(root))
    flat = tmp_path / "flat"
    (flat / "train" / "n01").mkdir(parents=True)
    (flat / "train" / "n03").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"flat/val lacks class folders \['n03', 'n01'\]"):
        build_source_dataset("in2", spec, str(tmp_path / "x.h5"), imagenet_dir=str(flat))
    assert not (tmp_path / "x.h5").exists()


def test_mnist5k_is_mlxtends_real_mnist_split_stratified(tmp_path):
    ds = build(tmp_path, "m5", {"source": "mnist5k", "seed": 0})
    assert ds.x_train.shape == (4000, 1, 28, 28) and ds.x_test.shape == (1000, 1, 28, 28)
    assert ds.x_train.dtype == np.uint8 and ds.y_train.dtype == np.int64
    assert np.bincount(ds.y_train).tolist() == [400] * 10 and np.bincount(ds.y_test).tolist() == [100] * 10
    assert ds.x_train.max() == 255 and 0.1 < ds.attrs["channel_mean"][0] < 0.15  # MNIST's mean is 0.13
    assert ds.class_names == [str(c) for c in range(10)]
    again, other = tmp_path / "again.h5", tmp_path / "other.h5"
    build_source_dataset("m5", {"source": "mnist5k", "seed": 0}, str(again))
    assert again.read_bytes() == (tmp_path / "m5.h5").read_bytes()
    build_source_dataset("m5", {"source": "mnist5k", "seed": 1, "test_fraction": 0.5}, str(other))
    half = load_dataset(other)
    assert np.bincount(half.y_test).tolist() == [250] * 10
    # the seed draws another split: seed 0's test images are not all among seed 1's (ids are renumbered)
    assert not {x.tobytes() for x in ds.x_test} <= {x.tobytes() for x in half.x_test}


def test_mnist5k_image_size_averages_pixel_blocks(tmp_path):
    full = build(tmp_path, "m28", {"source": "mnist5k", "seed": 0})
    half = build(tmp_path, "m14", {"source": "mnist5k", "seed": 0, "image_size": 14})
    assert half.x_train.shape == (4000, 1, 14, 14) and half.x_train.dtype == np.uint8
    # the same split, each pixel the rounded mean of its 2x2 block of the full image
    assert np.array_equal(half.y_train, full.y_train) and np.array_equal(half.y_test, full.y_test)
    means = full.x_test.reshape(-1, 1, 14, 2, 14, 2).astype(np.float64).mean(axis=(3, 5))
    assert np.array_equal(half.x_test, np.rint(means).astype(np.uint8))
    with pytest.raises(DatasetError, match="does not divide 28"):
        build(tmp_path, "m10", {"source": "mnist5k", "seed": 0, "image_size": 10})


def test_mnist1d_is_the_packages_make_dataset(tmp_path):
    from mnist1d.data import get_dataset_args, make_dataset

    spec = {"source": "mnist1d", "n_samples": 200, "iid_noise_scale": 0.05, "seed": 3}
    np.random.seed(123)
    ds = build(tmp_path, "m1", spec)
    assert np.random.randint(1 << 30) == np.random.RandomState(123).randint(1 << 30)  # global RNG untouched
    assert ds.x_train.shape == (160, 1, 40) and ds.x_test.shape == (40, 1, 40)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    assert np.bincount(np.concatenate([ds.y_train, ds.y_test])).tolist() == [20] * 10
    args = get_dataset_args()
    args.num_samples, args.iid_noise_scale, args.seed = 200, 0.05, 3
    reference = make_dataset(args)  # train_split 0.8: the same 160 / 40 division
    np.testing.assert_array_equal(ds.x_train[:, 0], reference["x"].astype(np.float32))
    np.testing.assert_array_equal(ds.y_test, reference["y_test"])
    again = tmp_path / "again.h5"
    build_source_dataset("m1", spec, str(again))
    assert again.read_bytes() == (tmp_path / "m1.h5").read_bytes()
    other = build(tmp_path, "m1b", {**spec, "seed": 4, "final_seq_length": 24})
    assert other.x_train.shape == (160, 1, 24)


def test_real_data_sources_bad_arguments_name_the_key():
    assert spec_errors("m", {"source": "mnist1d", "n_samples": 205}) == [
        "datasets.m.n_samples: mnist1d makes n_samples/10 examples per class; give a multiple of 10"]
    assert spec_errors("m", {"source": "mnist1d", "padding": [60, 36]})[0].startswith("datasets.m.padding:")
    assert spec_errors("m", {"source": "mnist5k", "noise_sigma": 1.0})[0].startswith(
        "datasets.m.noise_sigma: not used by source 'mnist5k'")


# ---------------------------------------------------------------------------------------- HDF5 schema


def test_rebuild_gives_identical_bytes_and_content_hash(tmp_path):
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    spec = {"source": "digits", "classes": [0, 1], "noise_sigma": 1.0, "test_fraction": 0.25, "seed": 2}
    build_source_dataset("same", spec, str(a))
    time.sleep(1.1)  # HDF5 timestamps have one-second resolution
    build_source_dataset("same", spec, str(b))
    assert a.read_bytes() == b.read_bytes()
    # The hash covers content only: another name with the same content has the same hash.
    c = tmp_path / "c.h5"
    build_source_dataset("renamed", spec, str(c))
    assert load_dataset(c).attrs["content_hash"] == load_dataset(a).attrs["content_hash"]


def test_malformed_files_raise_clear_errors(tmp_path, digits_h5):
    missing = tmp_path / "missing.h5"
    with pytest.raises(DatasetError, match="missing.h5: dataset file does not exist"):
        load_dataset(missing)

    truncated = tmp_path / "truncated.h5"
    data = digits_h5.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match="truncated.h5: cannot be read as HDF5"):
        load_dataset(truncated)

    text = tmp_path / "text.h5"
    text.write_text("not hdf5")
    with pytest.raises(DatasetError, match="text.h5: cannot be read as HDF5"):
        load_dataset(text)

    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(DatasetError, match=r"foreign.h5: missing root attributes \['name'"):
        load_dataset(foreign)

    old = tmp_path / "old.h5"
    old.write_bytes(data)
    with h5py.File(old, "r+") as f:
        f.attrs["schema_version"] = 0
    with pytest.raises(DatasetError, match="old.h5: schema_version 0"):
        load_dataset(old)

    tampered = tmp_path / "tampered.h5"
    tampered.write_bytes(data)
    with h5py.File(tampered, "r+") as f:
        f["train/y"][0] = (f["train/y"][0] + 1) % 10
    load_dataset(tampered)  # schema still fine
    with pytest.raises(DatasetError, match="tampered.h5: content hash mismatch"):
        load_dataset(tampered, verify=True)

    short = tmp_path / "short.h5"
    short.write_bytes(data)
    with h5py.File(short, "r+") as f:
        del f["test/id"]
    with pytest.raises(DatasetError, match=r"short.h5: group 'test' lacks \['id'\]"):
        load_dataset(short)


def test_writer_rejects_inconsistent_arrays_and_leaves_nothing(tmp_path):
    arrays = {s: {"x": np.zeros((4, 2), np.float32), "y": np.zeros(4, np.int64), "id": np.arange(4) + 4 * i}
              for i, s in enumerate(("train", "test"))}
    arrays["test"]["id"] = np.arange(4)  # ids collide with train
    meta = {"name": "t", "task": "classification", "num_classes": 2, "class_names": ["a", "b"],
            "source": "x", "derivation": [], "seed": 0}
    with pytest.raises(DatasetError, match="ids are not unique"):
        write_dataset(tmp_path / "t.h5", arrays, meta)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------- spec validation


def test_spec_errors_name_the_key(tmp_path):
    assert spec_errors("q", {"derive_from": "digits", "derivation": "corrupt_labels"}) == [
        "datasets.q.fraction: required by derivation 'corrupt_labels'"]
    errs = spec_errors("i", {"source": "iris", "noise_sigma": 1.0})
    assert len(errs) == 1 and errs[0].startswith("datasets.i.noise_sigma: not used by source 'iris'")
    assert "datasets.d.n_train" in spec_errors("d", {"source": "digits", "test_fraction": 0.3, "n_train": 5})[0]
    assert spec_errors("im", {"source": "imagenet", "wnids": ["a", "b"]}) == [
        "datasets.im.image_size: required by source 'imagenet'"]
    with pytest.raises(DatasetError, match="datasets.q.fraction: required"):
        derive_dataset("q", {"derive_from": "digits", "derivation": "corrupt_labels"}, "p.h5", str(tmp_path / "o"))
    with pytest.raises(DatasetError, match=r"datasets.bad.classes: \[12\] not among the 10 classes"):
        build_source_dataset("bad", {"source": "digits", "classes": [1, 12]}, str(tmp_path / "bad.h5"))
    assert list(tmp_path.iterdir()) == []


def test_default_config_datasets_are_valid():
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    assert all_spec_errors(config["datasets"] or {}) == []


# ------------------------------------------------------------------------------------------ derivations


def test_random_labels(tmp_path, digits_h5):
    parent = load_dataset(digits_h5)
    ds = derive(tmp_path, "rl", {"derive_from": "digits", "derivation": "random_labels", "seed": 1}, digits_h5)
    np.testing.assert_array_equal(ds.x_train, parent.x_train)
    np.testing.assert_array_equal(ds.y_test, parent.y_test)  # default splits: [train]
    np.testing.assert_array_equal(ds.id_train, parent.id_train)
    agree = np.mean(ds.y_train == parent.y_train)
    assert 0.05 < agree < 0.16 and set(np.unique(ds.y_train)) == set(range(10))
    again = derive(tmp_path, "rl2", {"derive_from": "digits", "derivation": "random_labels", "seed": 1}, digits_h5)
    np.testing.assert_array_equal(again.y_train, ds.y_train)
    perm = derive(tmp_path, "rlp", {"derive_from": "digits", "derivation": "random_labels", "label_mode": "permute",
                                    "splits": ["train", "test"], "seed": 1}, digits_h5)
    for split in ("train", "test"):
        y_new, y_old = perm.split(split)[1], parent.split(split)[1]
        np.testing.assert_array_equal(np.bincount(y_new), np.bincount(y_old))
        assert np.mean(y_new == y_old) < 0.2
    assert [d.get("derivation") for d in ds.attrs["derivation"]] == [None, "random_labels"]
    assert ds.attrs["derivation"][1]["parent_content_hash"] == parent.attrs["content_hash"]


def test_random_pixels_float_and_uint8(tmp_path, digits_h5):
    parent = load_dataset(digits_h5)
    ds = derive(tmp_path, "rp", {"derive_from": "digits", "derivation": "random_pixels", "seed": 0}, digits_h5)
    np.testing.assert_array_equal(ds.y_train, parent.y_train)
    assert not np.allclose(ds.x_test, parent.x_test)  # default splits: train and test
    flat, ref = ds.x_train.reshape(1198, -1), parent.x_train.reshape(1198, -1)
    np.testing.assert_allclose(flat.mean(0), ref.mean(0), atol=0.15)
    np.testing.assert_allclose(flat.std(0), ref.std(0), atol=0.1)
    assert abs(np.corrcoef(flat[:, 20], flat[:, 21])[0, 1]) < 0.15  # independent pixels

    rng = np.random.default_rng(0)
    arrays = {s: {"x": rng.integers(100, 120, size=(50, 3, 4, 4), dtype=np.uint8), "y": np.arange(50) % 2,
                  "id": np.arange(50) + 50 * i} for i, s in enumerate(("train", "test"))}
    meta = {"name": "u8", "task": "classification", "num_classes": 2, "class_names": ["a", "b"], "source": "x",
            "derivation": [], "seed": 0}
    write_dataset(tmp_path / "u8.h5", arrays, meta)
    noise = derive(tmp_path, "u8rp", {"derive_from": "u8", "derivation": "random_pixels", "seed": 0},
                   tmp_path / "u8.h5")
    assert noise.x_train.dtype == np.uint8 and noise.x_train.min() < 10 and noise.x_train.max() > 245
    assert noise.attrs["channel_mean"][0] == pytest.approx(0.5, abs=0.03)  # recomputed for the new pixels


@pytest.mark.parametrize("q", [0.0, 0.2, 0.5, 1.0])
def test_corrupt_labels(tmp_path, digits_h5, q):
    parent = load_dataset(digits_h5)
    spec = {"derive_from": "digits", "derivation": "corrupt_labels", "fraction": q, "seed": 4}
    ds = derive(tmp_path, "c", spec, digits_h5)
    np.testing.assert_array_equal(np.bincount(ds.y_train), np.bincount(parent.y_train))  # histogram kept
    np.testing.assert_array_equal(ds.y_test, parent.y_test)
    np.testing.assert_array_equal(ds.x_train, parent.x_train)
    changed = np.sum(ds.y_train != parent.y_train)
    k = int(np.floor(q * 1198))  # 0, 239, 599, 1198
    assert changed <= k
    if q == 0:
        assert ds.attrs["content_hash"] == parent.attrs["content_hash"]  # nothing changed at all
    else:
        # A random permutation of k labels over 10 near-balanced classes leaves about 10 % in place.
        assert 0.8 * k < changed
    again = derive(tmp_path, "c2", spec, digits_h5)
    np.testing.assert_array_equal(again.y_train, ds.y_train)


@pytest.mark.parametrize("q", [0.0001, 0.3, 1.0])
def test_corrupt_labels_replace_draws_each_label_with_probability_q(tmp_path, digits_h5, q):
    # The Liao et al. code's corruption: each label replaced by a uniform class with probability q, train and test.
    parent = load_dataset(digits_h5)
    spec = {"derive_from": "digits", "derivation": "corrupt_labels", "fraction": q, "corruption": "replace",
            "splits": ["train", "test"], "seed": 4}
    ds = derive(tmp_path, "r", spec, digits_h5)
    np.testing.assert_array_equal(ds.x_train, parent.x_train)
    expected = q * (10 - 1) / 10  # a replaced label keeps its class with probability 1/K
    for split in ("train", "test"):
        y, y_parent = ds.split(split)[1], parent.split(split)[1]
        n = len(y)
        changed = np.mean(y != y_parent)
        # within 4 binomial standard deviations of q·(K−1)/K
        assert abs(changed - expected) <= 4 * np.sqrt(expected * (1 - expected) / n) + 1 / n
        assert set(np.unique(y)) <= set(range(10))
    if q == 1.0:  # every label redrawn: the labels no longer follow the parent's
        assert np.mean(ds.y_train == parent.y_train) < 0.2
    again = derive(tmp_path, "r2", spec, digits_h5)
    np.testing.assert_array_equal(again.y_train, ds.y_train)
    np.testing.assert_array_equal(again.y_test, ds.y_test)
    other = derive(tmp_path, "r3", {**spec, "seed": 5}, digits_h5)
    if q == 1.0:
        assert not np.array_equal(other.y_train, ds.y_train)


def test_input_normalization_fixed_values_are_kept_through_derivations(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {s: {"x": rng.integers(0, 256, size=(40, 3, 4, 4), dtype=np.uint8), "y": np.arange(40) % 2,
                  "id": np.arange(40) + 40 * i} for i, s in enumerate(("train", "test"))}
    cifar_like = {"source": "cifar10", "input_normalization": {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}}
    meta = {"name": "u8", "task": "classification", "num_classes": 2, "class_names": ["a", "b"],
            "source": "cifar10", "derivation": [cifar_like], "seed": 0}
    write_dataset(tmp_path / "u8.h5", arrays, meta)
    ds = load_dataset(tmp_path / "u8.h5")
    assert ds.attrs["channel_mean"] == [0.5, 0.5, 0.5] and ds.attrs["channel_std"] == [0.5, 0.5, 0.5]
    # Normalize(0.5, 0.5): 0 -> -1, 255 -> 1, exactly.
    x = ds.float_inputs("train")
    np.testing.assert_allclose(x, ds.x_train.astype(np.float32) / 255 * 2 - 1, atol=1e-6)
    derived = derive(tmp_path, "u8q", {"derive_from": "u8", "derivation": "corrupt_labels", "fraction": 0.5,
                                       "corruption": "replace"}, tmp_path / "u8.h5")
    assert derived.attrs["channel_mean"] == [0.5, 0.5, 0.5] and derived.attrs["channel_std"] == [0.5, 0.5, 0.5]

    mnist_like = {"source": "mnist", "input_normalization": {"mean": [0.1307], "std": [0.3081]}}
    gray = {s: {**a, "x": a["x"][:, :1]} for s, a in arrays.items()}
    write_dataset(tmp_path / "g.h5", gray, {**meta, "derivation": [mnist_like]})
    g = load_dataset(tmp_path / "g.h5")
    assert g.attrs["channel_mean"] == [0.1307] and g.attrs["channel_std"] == [0.3081]
    np.testing.assert_allclose(g.float_inputs("test"), (g.x_test / 255.0 - 0.1307) / 0.3081, rtol=1e-5)
    with pytest.raises(DatasetError, match="3 means and stds"):
        write_dataset(tmp_path / "bad.h5", arrays, {**meta, "derivation": [mnist_like]})
    # without the key: the train split's own statistics, as before
    write_dataset(tmp_path / "s.h5", arrays, {**meta, "derivation": [{"source": "cifar10"}]})
    assert load_dataset(tmp_path / "s.h5").attrs["channel_mean"] != [0.5, 0.5, 0.5]


def test_class_subset(tmp_path, digits_h5):
    parent = load_dataset(digits_h5)
    ds = derive(tmp_path, "cs", {"derive_from": "digits", "derivation": "class_subset", "classes": [3, 1]},
                digits_h5)
    assert ds.num_classes == 2 and ds.class_names == ["3", "1"]
    for split in ("train", "test"):
        x, y, ids = ds.split(split)
        px, py, pids = parent.split(split)
        keep = np.isin(py, [3, 1])
        np.testing.assert_array_equal(ids, pids[keep])
        np.testing.assert_array_equal(y, np.where(py[keep] == 3, 0, 1))
        np.testing.assert_array_equal(x, px[keep])


def test_subsample_is_stratified(tmp_path, digits_h5):
    parent = load_dataset(digits_h5)
    ds = derive(tmp_path, "ss", {"derive_from": "digits", "derivation": "subsample", "fraction": 0.5, "seed": 0},
                digits_h5)
    assert len(ds.y_train) == 599 and len(ds.y_test) == 599
    assert np.all(np.abs(np.bincount(ds.y_train) - np.bincount(parent.y_train) / 2) <= 1)
    assert np.all(np.isin(ds.id_train, parent.id_train)) and np.all(np.diff(ds.id_train) > 0)
    rows = np.searchsorted(parent.id_train, ds.id_train)
    np.testing.assert_array_equal(ds.x_train, parent.x_train[rows])


def test_move_and_remove_examples(tmp_path, digits_h5):
    parent = load_dataset(digits_h5)
    index = tmp_path / "hard.txt"
    index.write_text("# never-learnt examples\n7\n0\n\n100\n")
    moved = derive(tmp_path, "mv", {"derive_from": "digits", "derivation": "move_examples",
                                    "index_file": str(index)}, digits_h5, index)
    assert len(moved.y_train) == 1195 and len(moved.y_test) == 602
    assert not np.isin([0, 7, 100], moved.id_train).any()
    np.testing.assert_array_equal(moved.id_test[:3], [0, 7, 100])  # test sorted by id
    np.testing.assert_array_equal(moved.x_test[:3], parent.x_train[[0, 7, 100]])
    np.testing.assert_array_equal(moved.y_test[:3], parent.y_train[[0, 7, 100]])
    assert len(moved.attrs["derivation"][1]["index_file_sha256"]) == 64

    npy = tmp_path / "ids.npy"
    np.save(npy, np.array([5, 1197]))
    removed = derive(tmp_path, "rm", {"derive_from": "digits", "derivation": "remove_examples",
                                      "index_file": str(npy)}, digits_h5, npy)
    assert len(removed.y_train) == 1196 and len(removed.y_test) == 599
    assert not np.isin([5, 1197], removed.id_train).any()

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([1500]))  # a test id: cannot move from train
    with pytest.raises(DatasetError, match=r"datasets.mv2.index_file: ids \[1500\] are not in the train split"):
        derive(tmp_path, "mv2", {"derive_from": "digits", "derivation": "move_examples",
                                 "index_file": str(bad)}, digits_h5, bad)
    assert not (tmp_path / "mv2.h5").exists()


def test_index_file_errors(tmp_path):
    dup = tmp_path / "dup.txt"
    dup.write_text("1\n1\n")
    with pytest.raises(DatasetError, match="dup.txt: repeated ids"):
        read_index_file(dup)
    junk = tmp_path / "junk.txt"
    junk.write_text("1\nabc\n")
    with pytest.raises(DatasetError, match="junk.txt: cannot read example ids"):
        read_index_file(junk)


def test_label_derivations_refuse_regression_parents(tmp_path):
    reg = tmp_path / "reg.h5"
    build_source_dataset("reg", {"source": "regression1d"}, str(reg))
    with pytest.raises(DatasetError, match="datasets.r.derivation: random_labels needs a classification parent"):
        derive_dataset("r", {"derive_from": "reg", "derivation": "random_labels"}, str(reg), str(tmp_path / "r.h5"))
    digits = tmp_path / "digits.h5"
    build_source_dataset("digits", {"source": "digits"}, str(digits))
    with pytest.raises(DatasetError, match="datasets.s.derive_from: superclass needs a CIFAR-100 parent"):
        derive_dataset("s", {"derive_from": "digits", "derivation": "superclass", "superclass": 1},
                       str(digits), str(tmp_path / "s.h5"))


@pytest.mark.slow
def test_snakemake_builds_source_and_derived_datasets_twice_identically(tmp_path, snakemake_bin):
    import subprocess

    (tmp_path / "hard.txt").write_text("3\n4\n")
    config = {
        "datasets": {
            "d": {"source": "digits", "classes": [0, 1, 2], "test_fraction": 0.25, "seed": 0},
            "d_q": {"derive_from": "d", "derivation": "corrupt_labels", "fraction": 0.5, "seed": 1},
            "d_moved": {"derive_from": "d_q", "derivation": "move_examples", "index_file": "hard.txt"},
        },
        "architectures": {}, "optimizers": {}, "studies": {},
    }
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(config))
    targets = ["data/d.h5", "data/d_q.h5", "data/d_moved.h5"]
    contents = []
    for _ in range(2):
        proc = subprocess.run([snakemake_bin, "--cores", "2", "--configfile", str(cfg), "--directory",
                               str(tmp_path), "--forceall", *targets], cwd=REPO, capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        contents.append([(tmp_path / t).read_bytes() for t in targets])
    assert contents[0] == contents[1]
    moved = load_dataset(tmp_path / "data" / "d_moved.h5", verify=True)
    assert [step.get("derivation") for step in moved.attrs["derivation"]] == [None, "corrupt_labels",
                                                                               "move_examples"]
    assert {3, 4} <= set(moved.id_test.tolist())
